// Verification page: the last pool check and the restore tests
// (GET /api/v1/verify), running them now (POST /api/v1/verify/restore-test)
// and their schedule (PUT /api/v1/verify/restore-test/schedule, admins).
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  function show(v) {
    const ck = v.check;
    if (ck) {
      c.kv($("#check"), [["Result", c.el("span", { class: ck.ok ? "status ok" : "status bad", text: ck.ok ? "ok" : "problems found" })], ["Time", c.fmtTime(ck.time)],
        ["Summary", ck.summary || ""], ["Data re-read", ck.read_data ? Math.round(100 * (ck.slice_to - ck.slice_from)) + "% this time" : "no (structure only)"],
        ["Rotation", Math.round(100 * (ck.coverage || 0)) + "% of the pool re-read since it started over"]]);
      const bad = [...(ck.affected || []), ...(ck.corrupt || []).map((x) => "corrupt object " + x), ...(ck.missing || []).map((x) => "missing object " + x)];
      $("#check-affected").replaceChildren(...bad.map((x) => c.el("li", { text: x })));
      $("#check-bad").hidden = bad.length === 0;
    } else c.kv($("#check"), [["Result", "No check has run since the appliance started."]]);
    c.fill($("#restore-tests tbody"), (v.restore_tests || []).map((r) => c.el("tr", { "data-host": r.host }, c.td(c.hostLink(r.host)),
      c.td(c.el("span", { class: r.ok ? "status ok" : "status bad", title: (r.errors || []).join("\n") }, r.ok ? "ok" : "failed: " + (r.errors || []).join("; "))),
      c.td(c.fmtTime(r.time)), c.td(r.files, "num"), c.td(c.fmtBytes(r.bytes || 0), "num"), c.td(r.dumps || 0, "num"), c.td(c.el("span", { class: "mono", text: (r.sources || []).join(", ") })))), $("#restore-tests-empty"));
    const cron = $("#rt-cron"); if (cron && document.activeElement !== cron) cron.value = v.restore_test_schedule || "";
  }
  c.pages.verify = async function () {
    show(await c.api("GET", "/verify"));
    const run = $("#rt-run");
    run.onsubmit = async (ev) => {
      ev.preventDefault();
      const err = run.querySelector(".field-error"); err.hidden = true;
      const data = {}; if (run.host.value.trim()) data.host = run.host.value.trim(); if (run.files.value) data.files = Number(run.files.value);
      $("#rt-run-btn").disabled = true; $("#rt-msg").textContent = "Running…";
      try {
        const res = await c.api("POST", "/verify/restore-test", data);
        const bad = (res || []).filter((r) => !r.ok).length;
        // The table first, then the message: the message says the run is over.
        show(await c.api("GET", "/verify"));
        $("#rt-msg").textContent = (res || []).length + " hosts tested, " + bad + " failed.";
      } catch (e) { $("#rt-msg").textContent = ""; err.textContent = e.message; err.hidden = false; }
      finally { $("#rt-run-btn").disabled = false; }
    };
    const sf = $("#rt-schedule");
    if (sf) sf.onsubmit = async (ev) => {
      ev.preventDefault();
      const err = sf.querySelector(".field-error"); err.hidden = true;
      try { show(await c.api("PUT", "/verify/restore-test/schedule", { schedule: sf.schedule.value.trim() })); $("#rt-msg").textContent = "Schedule saved."; }
      catch (e) { err.textContent = e.message; err.hidden = false; }
    };
    body.dataset.ready = "1";
  };
})();
