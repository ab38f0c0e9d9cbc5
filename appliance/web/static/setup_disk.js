// Setup step "Data disk" (appliance image only): while the data dir is in
// RAM, choose a disk for it (GET /api/v1/system/disks, POST
// /api/v1/system/disks/use). An empty disk is used as is; any other needs
// its name typed (the API's "confirm"), as it is erased. Disks in use are
// never offered. The appliance restarts onto the disk; the page waits for
// it and sends the admin to log in again.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  c.pages.setup_disk = async function () {
    const st = await (await fetch("/api/v1/status")).json();
    if (st.data_persistent !== false) { location.replace("/setup/storage"); return; }
    const disks = await c.api("GET", "/system/disks");
    const form = $("#disk-form"), list = $("#disk-list");
    const usable = (disks || []).filter((d) => !d.in_use);
    $("#disk-state").textContent = usable.length ? "The data now lives in RAM and is lost at reboot. Choose a disk to keep it (it is formatted with ext4):" : "No usable disk was found: add a disk to the machine and reload, or continue without one.";
    const what = (d) => d.empty ? "empty" : (d.partitions || []).length ? (d.partitions.length + " partition(s): " + d.partitions.map((p) => p.fstype || "?").join(", ")) : (d.fstype || "data");
    list.replaceChildren(...(disks || []).map((d) => c.el("div", { class: "choice" },
      c.el("input", { type: "radio", name: "disk", id: "disk-" + d.name, value: d.name, disabled: d.in_use || null }),
      c.el("label", { for: "disk-" + d.name }, d.name + " — " + c.fmtBytes(d.size) + (d.model ? " " + d.model : "") + " — " + (d.in_use ? "in use (" + (d.in_use_by || "") + "), never formatted" : what(d))))));
    form.hidden = usable.length === 0;
    const chosen = () => (disks || []).find((d) => form.disk.value === d.name);
    for (const r of form.querySelectorAll('input[name="disk"]')) r.onchange = () => {
      const d = chosen(), box = $("#disk-confirm-box");
      box.hidden = !d || d.empty;
      if (d && !d.empty) $("#disk-warn").textContent = d.name + " is not empty (" + what(d) + "). Everything on it is erased.";
      form.confirm.value = "";
    };
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      const err = form.querySelector(".field-error"); err.hidden = true;
      const d = chosen();
      if (!d) { err.textContent = "Choose a disk."; err.hidden = false; return; }
      if (!d.empty && form.confirm.value.trim() !== d.name) { err.textContent = "Type " + d.name + " to confirm that it may be erased."; err.hidden = false; form.confirm.focus(); return; }
      const data = { disk: d.name }; if (!d.empty) data.confirm = form.confirm.value.trim();
      $("#disk-use").disabled = true;
      try {
        const r = await c.api("POST", "/system/disks/use", data);
        form.hidden = true; $("#disk-skip").hidden = true;
        const msg = $("#disk-restart"); msg.hidden = false;
        msg.textContent = r.path + " is formatted (" + r.label + "). The appliance restarts to move its data there; this takes a moment…";
        // Wait for the restart (the session ends with it), then log in.
        for (let i = 0; i < 600; i++) {
          await new Promise((res) => setTimeout(res, 1000));
          try { const h = await fetch("/api/v1/status"); if (h.ok) { const s = await h.json(); if (s.data_persistent === true) { location.href = "/login?next=" + encodeURIComponent("/setup/storage"); return; } } } catch (e) { /* restarting */ }
        }
        msg.textContent = "The appliance did not come back within 10 minutes: check its console.";
      } catch (e) { err.textContent = e.message; err.hidden = false; }
      finally { $("#disk-use").disabled = false; }
    };
    body.dataset.ready = "1";
  };
})();
