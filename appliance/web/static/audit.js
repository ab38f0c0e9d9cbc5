// Replication audit page (GET /api/v1/audit): targets and, per host, what
// the primary and each target hold.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  c.pages.audit = async function () {
    const a = await c.api("GET", "/audit");
    $("#audit-summary").className = a.lagging ? "status bad" : "status ok";
    $("#audit-summary").textContent = (a.lagging ? "Some hosts lag behind on a target." : "No host lags behind.") + " Audited " + c.fmtTime(a.time) + ".";
    c.fill($("#audit-targets tbody"), (a.targets || []).map((t) => c.el("tr", {}, c.td(t.name), c.td(t.kind), c.td(c.el("span", { class: "mono", text: t.location })),
      c.td(c.el("span", { class: t.reachable ? "status ok" : "status bad", title: t.error || "" }, t.reachable ? "yes" : "no: " + (t.error || ""))), c.td(c.fmtDur(t.lag_alert_seconds)))), $("#audit-targets-empty"));
    const rows = [];
    for (const h of a.hosts || []) for (const t of h.targets || []) {
      rows.push(c.el("tr", { "data-host": h.host, "data-target": t.target }, c.td(c.hostLink(h.host)), c.td(t.target), c.td((t.snapshots || []).length, "num"),
        c.td((t.images || []).length, "num"), c.td(t.newest_time ? c.fmtTime(t.newest_time) : "none"), c.td(c.el("span", { class: t.lagging ? "status bad" : "" }, t.target === "primary" ? "" : (t.lag_seconds > 0 ? c.fmtDur(t.lag_seconds) : "none") + (t.lagging ? " (lagging)" : ""))),
        c.td((t.missing || []).length, "num"), c.td((t.gaps || []).length, "num")));
    }
    c.fill($("#audit-hosts tbody"), rows, $("#audit-hosts-empty"));
    body.dataset.ready = "1";
  };
})();
