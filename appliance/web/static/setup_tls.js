// Setup step "HTTPS": the certificate of the web UI (GET /api/v1/tls);
// the admin may make a new self-signed one or upload a certificate and
// its key (POST /api/v1/tls). When the appliance serves HTTPS already
// the new one is used at once, else from the next start.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  c.pages.setup_tls = async function () {
    const form = $("#tls-form"), err = form.querySelector('.field-error[data-for="tls"]');
    function show(st) {
      $("#tls-active").textContent = st.active ? "yes, over HTTPS" : "no: this appliance serves plain HTTP (" + st.mode + ")";
      $("#tls-fpr").textContent = st.fingerprint || "none yet";
      $("#tls-subject").textContent = st.subject || "";
      $("#tls-names").textContent = (st.names || []).join(", ");
      $("#tls-until").textContent = st.not_after ? c.fmtTime(st.not_after) : "";
      $("#tls-pending").hidden = !st.pending;
      const fixed = $("#tls-fixed");
      fixed.hidden = st.changeable; fixed.textContent = st.changeable ? "" : "The certificate cannot be changed here: " + st.reason + ".";
      $("#tls-change").hidden = !st.changeable;
    }
    async function post(data, what) {
      err.hidden = true; $("#tls-msg").textContent = "";
      try {
        const st = await c.api("POST", "/tls", data);
        show(st);
        form.cert_pem.value = ""; form.key_pem.value = "";
        $("#tls-msg").textContent = what + (st.pending ? "; it is served from the next start." : "; it is served now.") + " Its fingerprint is shown above.";
      } catch (e) { err.textContent = e.message; err.hidden = false; }
    }
    show(await c.api("GET", "/tls"));
    $("#tls-generate").onclick = () => post({ generate: true }, "New self-signed certificate");
    form.onsubmit = (ev) => { ev.preventDefault(); post({ cert_pem: form.cert_pem.value, key_pem: form.key_pem.value }, "Certificate installed"); };
    body.dataset.ready = "1";
  };
})();
