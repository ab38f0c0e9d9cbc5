// Setup step "Schedule": the global default schedule and retention
// (GET/PUT /api/v1/defaults), prefilled with nightly backups and a
// 7 daily / 4 weekly / 6 monthly retention on a fresh appliance.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  const keeps = ["keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"];
  c.pages.setup_defaults = async function () {
    const form = $("#defaults-form");
    const d = (await c.api("GET", "/defaults")).settings || {};
    const fresh = Object.keys(d).length === 0;
    const v = fresh ? { schedule: "0 2 * * *", jitter: "30m", keep_daily: "7", keep_weekly: "4", keep_monthly: "6" } : d;
    form.schedule.value = v.schedule || ""; form.jitter.value = v.jitter || "";
    for (const k of keeps) form[k].value = v[k] || "";
    c.cronPreview(form.schedule, $("#d-next"));
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      for (const p of form.querySelectorAll(".field-error")) p.hidden = true;
      $("#defaults-error").hidden = true;
      const settings = {};
      for (const k of ["schedule", "jitter", ...keeps]) if (form[k].value.trim()) settings[k] = form[k].value.trim();
      try {
        await c.api("PUT", "/defaults", { settings });
        location.href = "/setup/host";
      } catch (e) {
        const m = e.message, f = /^schedule/.test(m) ? "schedule" : /^jitter/.test(m) ? "jitter" : /^keep_/.test(m) ? "keep" : null;
        const p = f && form.querySelector('.field-error[data-for="' + f + '"]');
        if (p) { p.textContent = m; p.hidden = false; } else { $("#defaults-error").textContent = m; $("#defaults-error").hidden = false; }
      }
    };
    body.dataset.ready = "1";
  };
})();
