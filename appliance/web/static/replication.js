// Replication page: targets with their last run (GET /api/v1/replicas),
// sync now (POST …/{name}/sync), add and remove (admins), and the
// append-only tokens other appliances replicate here with.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  const admin = body.dataset.admin === "1";
  const locHelp = { pool: "A directory on the appliance (/srv/copy) or s3://key:secret@host:port/bucket/prefix.", cairn: "The other appliance's address, https://host:port.", rclone: "remote:path of a remote in the rclone.conf below." };
  async function load() {
    const ts = await c.api("GET", "/replicas");
    c.fill($("#targets tbody"), (ts || []).map((t) => {
      const sync = c.el("button", { type: "button", "data-sync": t.name, disabled: t.running || null }, t.running ? "Running…" : "Sync now");
      sync.onclick = async () => {
        sync.disabled = true; sync.textContent = "Running…"; $("#repl-msg").textContent = "";
        try { const r = await c.api("POST", "/replicas/" + encodeURIComponent(t.name) + "/sync"); $("#repl-msg").textContent = t.name + ": " + (r.last_error ? "failed: " + r.last_error : r.copied + " snapshots copied, " + c.fmtBytes(r.bytes || 0) + " sent."); }
        catch (e) { $("#repl-msg").textContent = t.name + ": " + e.message; }
        load().catch(c.showError);
      };
      const del = admin ? c.el("button", { type: "button", class: "danger" }, "Remove") : null;
      if (del) del.onclick = async () => { if (!confirm("Remove the target " + t.name + "? The copies there stay.")) return; try { await c.api("DELETE", "/replicas/" + encodeURIComponent(t.name)); load(); } catch (e) { c.showError(e); } };
      return c.el("tr", { "data-target": t.name }, c.td(t.name), c.td(t.kind), c.td(c.el("span", { class: "mono", text: t.location })),
        c.td(t.last_success ? c.fmtTime(t.last_success) : "never"), c.td(t.last_error ? c.el("span", { class: "status bad", text: "failed: " + t.last_error }) : c.fmtTime(t.last_run)),
        c.td((t.copied || 0) + " / " + (t.copied_total || 0), "num"), c.td((t.snapshots || []).length, "num"), c.td(c.el("span", { class: "actions" }, sync, del)));
    }), $("#targets-empty"));
    // A run in progress (scheduled, or just after adding): look again soon.
    clearTimeout(load.again);
    if ((ts || []).some((t) => t.running)) load.again = setTimeout(() => load().catch(c.showError), 1500);
    if (admin) {
      const toks = await c.api("GET", "/replica-tokens");
      c.fill($("#rtokens tbody"), (toks || []).map((k) => {
        const del = c.el("button", { type: "button", class: "danger" }, "Revoke");
        del.onclick = async () => { try { await c.api("DELETE", "/replica-tokens/" + encodeURIComponent(k.name)); load(); } catch (e) { c.showError(e); } };
        return c.el("tr", {}, c.td(k.name), c.td(c.fmtTime(k.created)), c.td(del));
      }), $("#rtokens-empty"));
    }
  }
  c.pages.replication = async function () {
    await load();
    const f = $("#target-form");
    if (f) {
      const kind = () => { $("#t-token-box").hidden = f.kind.value !== "cairn"; $("#t-rclone-box").hidden = f.kind.value !== "rclone"; $("#t-location-help").textContent = locHelp[f.kind.value]; };
      f.kind.onchange = kind; kind();
      f.onsubmit = async (ev) => {
        ev.preventDefault(); $("#target-error").hidden = true;
        const data = { name: f.name.value.trim(), kind: f.kind.value, location: f.location.value.trim(), retention: {} };
        if (f.kind.value === "cairn") { data.token = f.token.value; if (f.tls_fingerprint.value.trim()) data.tls_fingerprint = f.tls_fingerprint.value.trim(); }
        if (f.kind.value === "rclone") data.rclone_conf = f.rclone_conf.value;
        for (const k of ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"]) if (f[k].value) data.retention[k] = Number(f[k].value);
        if (f.lag_alert.value.trim()) data.lag_alert = f.lag_alert.value.trim();
        if (f.bytes_per_second.value) data.bytes_per_second = Number(f.bytes_per_second.value);
        try { await c.api("POST", "/replicas", data); f.reset(); kind(); $("#repl-msg").textContent = "Target " + data.name + " added."; await load(); }
        catch (e) { $("#target-error").textContent = e.message; $("#target-error").hidden = false; }
      };
    }
    const tf = $("#rtoken-form");
    if (tf) tf.onsubmit = async (ev) => {
      ev.preventDefault(); $("#rtoken-error").hidden = true;
      try { const t = await c.api("POST", "/replica-tokens", { name: tf.name.value.trim() }); $("#rtoken-value").textContent = t.token; $("#rtoken-new").hidden = false; tf.reset(); await load(); }
      catch (e) { $("#rtoken-error").textContent = e.message; $("#rtoken-error").hidden = false; }
    };
    body.dataset.ready = "1";
  };
})();
