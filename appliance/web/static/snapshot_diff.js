// Snapshot page, "Compare": the directory shown against the same
// directory in another snapshot of the same host and source. Entries are
// compared by name, type, size, modification time and mode (the API lists
// no content digests): added, changed and removed. Subdirectories present
// in both are compared when opened.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  const encPath = (p) => p.split("/").map(encodeURIComponent).join("/");
  const base = c.pages.snapshot;
  c.pages.snapshot = async function () {
    await base();
    await compare();
  };
  // diffEntries returns [{name, status, detail}] sorted by name.
  function diffEntries(cur, other) {
    const a = new Map(cur.map((e) => [e.name, e])), b = new Map(other.map((e) => [e.name, e])), out = [];
    for (const [n, e] of a) {
      const o = b.get(n);
      if (!o) { out.push({ name: n, e, status: "added", detail: e.type === "file" ? c.fmtBytes(e.size) : e.type }); continue; }
      const why = [];
      if (o.type !== e.type) why.push(o.type + " → " + e.type);
      else if (e.type !== "dir") {
        if (o.size !== e.size) why.push(c.fmtBytes(o.size) + " → " + c.fmtBytes(e.size));
        if (o.mtime !== e.mtime) why.push("modified " + c.fmtTime(e.mtime));
      }
      if (o.mode !== e.mode) why.push("mode " + o.mode + " → " + e.mode);
      if ((o.target || "") !== (e.target || "")) why.push("target " + (e.target || ""));
      if (why.length) out.push({ name: n, e, status: "changed", detail: why.join(", ") });
    }
    for (const [n, o] of b) if (!a.has(n)) out.push({ name: n, e: o, status: "removed", detail: o.type === "file" ? c.fmtBytes(o.size) : o.type });
    return out.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
  }
  async function compare() {
    const box = $("#diff-box"); if (!box) return;
    const id = body.dataset.id, path = (body.dataset.path || "").replace(/\/+$/, "");
    const snap = await c.api("GET", "/snapshots/" + encodeURIComponent(id));
    const cur = await c.api("GET", "/snapshots/" + encodeURIComponent(id) + "/tree/" + encPath(path));
    if (!cur.entries) { box.hidden = true; body.dataset.diffReady = "1"; return; } // a file: nothing to list
    const all = (await c.api("GET", "/snapshots?host=" + encodeURIComponent(snap.host))).filter((s) => s.source === snap.source && s.id !== snap.id);
    all.sort((x, y) => new Date(y.started) - new Date(x.started));
    const sel = $("#diff-with");
    if (!all.length) { $("#diff-result").textContent = "There is no other snapshot of " + snap.source + " to compare with."; sel.disabled = true; body.dataset.diffReady = "1"; return; }
    sel.replaceChildren(...all.map((s) => c.el("option", { value: s.id }, c.fmtTime(s.started) + (new Date(s.started) < new Date(snap.started) ? " (older)" : " (newer)"))));
    const older = all.find((s) => new Date(s.started) < new Date(snap.started));
    sel.value = (older || all[0]).id;
    async function run() {
      const res = $("#diff-result");
      body.dataset.diffReady = "";
      let other = [];
      try { other = (await c.api("GET", "/snapshots/" + encodeURIComponent(sel.value) + "/tree/" + encPath(path))).entries || []; }
      catch (e) { if (e.status !== 404) throw e; }
      const d = diffEntries(cur.entries, other);
      const n = (st) => d.filter((x) => x.status === st).length;
      res.textContent = d.length ? n("added") + " added, " + n("changed") + " changed, " + n("removed") + " removed in this directory, against the snapshot chosen." : "No differences in this directory.";
      c.fill($("#diff tbody"), d.map((x) => c.el("tr", { "data-status": x.status }, c.td(c.el("span", { class: x.status === "removed" ? "status bad" : x.status === "added" ? "status ok" : "status warn", text: x.status })),
        c.td(c.el("span", { class: "mono", text: x.name + (x.e.type === "dir" ? "/" : "") })), c.td(x.detail))));
      $("#diff").hidden = d.length === 0;
      body.dataset.diffReady = "1";
    }
    sel.onchange = () => run().catch(c.showError);
    await run();
  }
})();
