// Setup step "Storage": GET /api/v1/storage shows the pool; while it was
// never used the admin may test and choose a local directory or an S3
// bucket, optionally encrypted (POST /api/v1/storage/test, /storage). The
// key of a new encrypted pool is answered once and shown here to keep.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  c.pages.setup_storage = async function () {
    const form = $("#storage-form"), next = $("#st-next");
    // On the appliance image with the data in RAM, the data disk comes first.
    const sys = await (await fetch("/api/v1/status")).json().catch(() => ({}));
    if (sys && sys.data_persistent === false && !new URLSearchParams(location.search).has("ram")) { location.replace("/setup/disk"); return; }
    function show(st) {
      $("#pool-location").textContent = st.location;
      $("#pool-enc").textContent = st.encrypted ? "encrypted" : "not encrypted";
      $("#pool-free").textContent = st.total ? ", " + c.fmtBytes(st.free) + " free of " + c.fmtBytes(st.total) : "";
      if (!st.changeable) { const f = $("#storage-fixed"); f.textContent = "The storage cannot be changed any more: " + st.reason + "."; f.hidden = false; form.hidden = true; }
      else form.hidden = false;
      if (!st.changeable) { next.textContent = "Next: timezone"; next.classList.add("primary"); }
    }
    const st = await c.api("GET", "/storage");
    show(st);
    if (st.kind === "dir") form.dir.value = st.location;
    const kind = () => form.kind.value;
    function input() {
      if (kind() === "dir") return { kind: "dir", dir: form.dir.value.trim() };
      return { kind: "s3", s3: { endpoint: form.endpoint.value.trim(), bucket: form.bucket.value.trim(), prefix: form.prefix.value.trim(),
        region: form.region.value.trim(), insecure: form.insecure.checked, access_key: form.access_key.value.trim(), secret_key: form.secret_key.value } };
    }
    function kindChanged() { $("#st-dir-box").hidden = kind() !== "dir"; $("#st-s3-box").hidden = kind() !== "s3"; $("#st-test-result").textContent = ""; }
    for (const r of form.querySelectorAll('input[name="kind"]')) r.onchange = kindChanged;
    kindChanged();
    function fieldError(m) {
      const p = form.querySelector('.field-error[data-for="' + (kind() === "dir" && /dir/.test(m) ? "dir" : "storage") + '"]');
      p.textContent = m; p.hidden = false;
    }
    async function test() {
      const out = $("#st-test-result");
      out.className = ""; out.textContent = "Testing…";
      for (const p of form.querySelectorAll(".field-error")) p.hidden = true;
      try {
        const r = await c.api("POST", "/storage/test", input());
        if (kind() === "dir") $("#st-dir-free").textContent = r.total ? "Free space there: " + c.fmtBytes(r.free) + " of " + c.fmtBytes(r.total) + "." : "";
        out.className = r.ok ? "status ok" : "status bad";
        out.textContent = r.ok ? "OK: " + r.location + " can hold the pool." : "Failed: " + r.error;
        return r.ok;
      } catch (e) { out.textContent = ""; fieldError(e.message); return false; }
    }
    $("#st-test").onclick = test;
    form.dir.onchange = test;
    if (st.changeable && st.kind === "dir") test();
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      for (const p of form.querySelectorAll(".field-error")) p.hidden = true;
      const data = input(); data.encrypt = form.encrypt.checked;
      $("#st-save").disabled = true;
      try {
        const r = await c.api("POST", "/storage", data);
        show(r);
        const done = $("#st-done"); done.textContent = "New pool " + r.pool_id + " created at " + r.location + "."; done.hidden = false;
        form.hidden = true;
        next.textContent = "Next: timezone"; next.classList.add("primary");
        if (r.key) {
          $("#st-key").value = r.key.trim();
          const a = $("#st-key-dl");
          a.href = URL.createObjectURL(new Blob([r.key], { type: "application/octet-stream" }));
          a.download = "cairn-pool-" + r.pool_id + ".key";
          $("#st-key-box").hidden = false;
          next.classList.add("disabled"); next.setAttribute("aria-disabled", "true");
          next.onclick = (e) => { if (!$("#st-key-saved").checked) { e.preventDefault(); $("#st-key-saved").focus(); } };
          $("#st-key-saved").onchange = () => { const ok = $("#st-key-saved").checked; next.classList.toggle("disabled", !ok); next.setAttribute("aria-disabled", ok ? "false" : "true"); };
        }
      } catch (e) { fieldError(e.message); }
      finally { $("#st-save").disabled = false; }
    };
    body.dataset.ready = "1";
  };
})();
