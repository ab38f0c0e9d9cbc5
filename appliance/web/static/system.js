// System page (appliance image): GET /api/v1/system, an update upload
// (POST /api/v1/system/update, the raw file as the body) and reboot.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  function show(s) {
    c.kv($("#sys-info"), [["Version", s.version], ["Data", c.el("span", { class: s.data_persistent ? "status ok" : "status bad" }, s.data_persistent ? "on " + s.data_device : "in RAM: lost at reboot")],
      ["Data directory", c.el("span", { class: "mono", text: s.data_dir })], ["Addresses", (s.urls || []).join(", ")],
      ["TLS certificate SHA-256", c.el("span", { class: "mono", text: s.tls_fingerprint || "none (plain HTTP)" })]]);
    const u = s.update || {};
    c.kv($("#sys-update"), [["Running slot", u.running_slot || ""], ["Update", u.status || "none"], ["Its version", u.version || ""], ["Uploaded", u.uploaded ? c.fmtTime(u.uploaded) : ""],
      ["SHA-256", c.el("span", { class: "mono", text: u.sha256 || "" })], ["Last error", u.last_error || ""]]);
    $("#sys-info-box").hidden = false; $("#sys-update-box").hidden = false;
  }
  c.pages.system = async function () {
    let s;
    try { s = await c.api("GET", "/system"); }
    catch (e) { if (e.status === 404) { $("#sys-none").hidden = false; body.dataset.ready = "1"; return; } throw e; }
    show(s);
    const f = $("#update-form");
    f.onsubmit = async (ev) => {
      ev.preventDefault();
      const err = f.querySelector(".field-error"); err.hidden = true;
      const file = f.file.files[0];
      if (!file) { err.textContent = "Choose the update file."; err.hidden = false; return; }
      $("#update-btn").disabled = true; $("#update-progress").hidden = false; $("#update-msg").textContent = "Uploading " + file.name + " (" + c.fmtBytes(file.size) + ")…";
      try {
        const r = await fetch("/api/v1/system/update", { method: "POST", credentials: "same-origin", body: file, headers: { "X-CSRF-Token": csrf, "Content-Type": "application/octet-stream", "Accept": "application/json" } });
        const out = await r.json().catch(() => null);
        if (!r.ok) throw new Error((out && out.error) || r.statusText);
        $("#update-msg").textContent = "Installed version " + out.version + " (SHA-256 " + out.sha256 + "): it is used at the next reboot.";
        show(await c.api("GET", "/system"));
      } catch (e) { $("#update-msg").textContent = ""; err.textContent = e.message; err.hidden = false; }
      finally { $("#update-btn").disabled = false; $("#update-progress").hidden = true; }
    };
    $("#reboot").onclick = async () => {
      if (!confirm("Reboot the appliance now? Running jobs are interrupted and re-run after the start.")) return;
      try { await c.api("POST", "/system/reboot"); $("#update-msg").textContent = "Rebooting…"; } catch (e) { c.showError(e); }
    };
    body.dataset.ready = "1";
  };
})();
