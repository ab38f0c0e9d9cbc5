// Cairn web UI: plain JavaScript over the REST API (/api/v1), no framework.
// Every value from the API is put in the page with textContent, never as HTML.
"use strict";
(function () {
  const body = document.body;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const tz = (document.querySelector('meta[name="cairn-tz"]') || {}).content || undefined;
  const $ = (sel) => document.querySelector(sel);

  // api calls the REST API with the session cookie and the CSRF token.
  async function api(method, path, data) {
    const opts = { method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    if (data !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(data); }
    const res = await fetch("/api/v1" + path, opts);
    if (res.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); throw new Error("not logged in"); }
    if (res.status === 204) return null;
    let out = null;
    try { out = await res.json(); } catch (e) { out = null; }
    if (!res.ok) { const err = new Error((out && out.error) || res.statusText); err.status = res.status; throw err; }
    return out;
  }

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  const td = (v, cls) => el("td", { class: cls }, v);
  const enc = encodeURIComponent;
  const encPath = (p) => p.split("/").map(enc).join("/");

  function fmtBytes(n) {
    if (n === undefined || n === null) return "";
    const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]; let i = 0; let v = Number(n);
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + u[i];
  }
  function fmtDur(s) {
    if (!s || s <= 0 || !isFinite(s)) return "";
    s = Math.round(s); const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return h ? h + "h " + m + "m" : m ? m + "m " + r + "s" : r + "s";
  }
  function fmtTime(t) {
    if (!t) return "";
    const d = new Date(t); if (isNaN(d) || d.getFullYear() < 1971) return "";
    try { return d.toLocaleString(undefined, { timeZone: tz, dateStyle: "medium", timeStyle: "short" }); }
    catch (e) { return d.toLocaleString(); }
  }
  function statusClass(s) {
    if (s === "complete" || s === "succeeded" || s === "done") return "status ok";
    if (s === "failed" || s === "interrupted" || s === "corrupt") return "status bad";
    if (s === "partial" || s === "cancelled") return "status warn";
    return "status";
  }
  function showError(e) {
    const p = $("#page-error"); if (!p) return;
    p.textContent = e && e.message ? e.message : String(e); p.hidden = false;
  }
  function fill(tbody, rows, emptyEl) {
    tbody.replaceChildren(...rows);
    if (emptyEl) { emptyEl.hidden = rows.length > 0; tbody.closest("table").hidden = rows.length === 0; }
  }
  function kv(dl, pairs) {
    dl.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  }
  function hostLink(h) { return h ? el("a", { href: "/hosts/" + enc(h) }, h) : ""; }
  function jobLink(id) { return el("a", { href: "/jobs/" + id }, "#" + id); }

  // ---- dashboard -------------------------------------------------------
  const staleAfter = 48 * 3600 * 1000; // a scheduled host without a backup this long is stale
  function progressCells(j, p) {
    p = p || {};
    let bar = "";
    if (p.bytes_total > 0) bar = el("progress", { max: p.bytes_total, value: Math.min(p.bytes, p.bytes_total), "aria-label": "progress of job " + j.id });
    else if (p.sources > 0) bar = el("progress", { max: p.sources, value: p.sources_done, "aria-label": "sources of job " + j.id });
    const pct = p.bytes_total > 0 ? Math.min(100, Math.floor(100 * p.bytes / p.bytes_total)) + "%" : (p.phase || "");
    return [td(el("span", {}, bar, " ", el("span", { class: "pct", text: pct }))), td(p.files || 0, "num"), td(fmtBytes(p.bytes || 0), "num"),
      td(p.rate ? fmtBytes(p.rate) + "/s" : "", "num"), td(fmtDur(p.eta_seconds)), td(el("span", { class: "mono", text: p.path || "" }))];
  }
  // usageChart draws the pool's stored and apparent bytes over time as an
  // SVG line chart (no library): time on x, bytes on y from 0.
  function usageChart(box, pts) {
    if (!box) return;
    const ns = "http://www.w3.org/2000/svg", W = 640, H = 180, L = 64, R = 8, T = 8, B = 24;
    const svg = (tag, a) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(a || {})) e.setAttribute(k, v); return e; };
    if (pts.length < 2) { box.replaceChildren(el("p", { class: "empty", text: "The chart starts after the next backup." })); return; }
    const t0 = new Date(pts[0].time).getTime(), t1 = Math.max(new Date(pts[pts.length - 1].time).getTime(), t0 + 1);
    const ymax = Math.max(1, ...pts.map((p) => Math.max(p.stored, p.apparent)));
    const x = (p) => (L + (W - L - R) * (new Date(p.time).getTime() - t0) / (t1 - t0)).toFixed(1);
    const y = (v) => (T + (H - T - B) * (1 - v / ymax)).toFixed(1);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", class: "chart", "aria-labelledby": "pool-chart-title" });
    const title = svg("title", { id: "pool-chart-title" }); title.textContent = "Pool usage over time: stored " + fmtBytes(pts[pts.length - 1].stored) + ", apparent " + fmtBytes(pts[pts.length - 1].apparent);
    root.append(title);
    for (const f of [0, 0.5, 1]) {
      root.append(svg("line", { x1: L, x2: W - R, y1: y(ymax * f), y2: y(ymax * f), class: "grid" }));
      const lab = svg("text", { x: L - 6, y: Number(y(ymax * f)) + 4, "text-anchor": "end", class: "axis" }); lab.textContent = fmtBytes(ymax * f); root.append(lab);
    }
    for (const [t, anchor, xx] of [[pts[0].time, "start", L], [pts[pts.length - 1].time, "end", W - R]]) {
      const lab = svg("text", { x: xx, y: H - 6, "text-anchor": anchor, class: "axis" }); lab.textContent = fmtTime(t); root.append(lab);
    }
    for (const [key, cls] of [["apparent", "apparent"], ["stored", "stored"]]) {
      root.append(svg("polyline", { points: pts.map((p) => x(p) + "," + y(p[key])).join(" "), class: "series " + cls, "data-series": key }));
    }
    const legend = el("p", { class: "legend" }, el("span", { class: "key stored" }), " stored  ", el("span", { class: "key apparent" }), " apparent (before dedup and compression)");
    box.replaceChildren(root, legend);
  }
  async function dashboard() {
    const running = new Map(), live = new Map(); // live: newest progress seen on the stream
    const newer = (a, b) => !b || !b.updated || (a && a.updated && new Date(a.updated) >= new Date(b.updated));
    async function loadJobs() {
      const [run, queued] = await Promise.all([api("GET", "/jobs?state=running"), api("GET", "/jobs?state=queued")]);
      running.clear();
      for (const j of run) {
        const p = live.get(j.id);
        if (p && newer(p, j.progress)) j.progress = p;
        running.set(j.id, j);
      }
      renderRunning();
      fill($("#queue tbody"), queued.map((j) => el("tr", {}, td(jobLink(j.id)), td(hostLink(j.host)), td(j.kind), td(fmtTime(j.created)))), $("#queue-empty"));
    }
    function renderRunning() {
      fill($("#running tbody"), [...running.values()].map((j) => el("tr", { "data-job": j.id },
        td(jobLink(j.id)), td(hostLink(j.host)), td(j.kind), ...progressCells(j, j.progress))), $("#running-empty"));
    }
    async function loadHosts() {
      const [hosts, snaps] = await Promise.all([api("GET", "/hosts"), api("GET", "/snapshots")]);
      const last = new Map();
      for (const s of snaps) { const o = last.get(s.host); if (!o || new Date(s.finished) > new Date(o.finished)) last.set(s.host, s); }
      let failed = new Map();
      try { for (const j of await api("GET", "/jobs?state=failed&limit=50")) if (!failed.has(j.host)) failed.set(j.host, j); } catch (e) { failed = new Map(); }
      const attention = [];
      fill($("#host-status tbody"), hosts.map((h) => {
        const s = last.get(h.name), f = failed.get(h.name);
        let result = s ? el("span", { class: statusClass(s.status), text: s.status }) : el("span", { class: "status", text: "never backed up" });
        if (f && (!s || new Date(f.finished || f.created) > new Date(s.finished))) {
          result = el("span", { class: "status bad", title: f.error || "" }, "failed: " + (f.error || ""));
          attention.push(/host key changed|does not match the pinned|certificate mismatch/i.test(f.error || "") ? h.name + ": server identity changed (check it, then accept it on the host page)" : h.name + " failed");
        } else if (s && h.enabled && h.schedules.length && Date.now() - new Date(s.finished) > staleAfter) {
          result = el("span", { class: "status warn" }, "stale: last backup " + fmtTime(s.finished));
          attention.push(h.name + " is stale");
        }
        if (!h.enabled) result = el("span", {}, result, " (disabled)");
        return el("tr", {}, td(hostLink(h.name)), td(result), td(s ? fmtTime(s.finished) : ""), td(s ? s.files : "", "num"), td(s ? fmtBytes(s.bytes) : "", "num"));
      }), null);
      $("#hosts-empty").hidden = hosts.length > 0;
      const a = $("#attention");
      a.textContent = attention.length ? "Needs attention: " + attention.join("; ") + "." : "";
      a.hidden = attention.length === 0;
    }
    async function loadPool() {
      const dl = $("#pool"); if (!dl) return;
      const [p, h] = await Promise.all([api("GET", "/pool"), api("GET", "/pool/history").catch(() => ({ points: [] }))]);
      const ratio = p.bytes > 0 && p.logical_bytes > 0 ? (p.logical_bytes / p.bytes).toFixed(1) + "×" : "–";
      const pairs = [["Stored", fmtBytes(p.bytes) + " in " + p.objects + " objects"], ["Apparent size", fmtBytes(p.logical_bytes)],
        ["Space saved", el("span", { id: "dedup-ratio" }, ratio + " (dedup and compression)")], ["Snapshots", String(p.snapshots)],
        ["Location", el("span", { class: "mono", text: p.location })], ["Encrypted", p.encrypted ? "yes" : "no"]];
      if (p.last_check) pairs.push(["Last check", el("span", { class: p.last_check_ok ? "status ok" : "status bad" }, fmtTime(p.last_check) + " " + (p.last_check_summary || ""))]);
      kv(dl, pairs);
      usageChart($("#pool-chart"), h.points || []);
    }
    const reload = () => Promise.all([loadJobs(), loadHosts(), loadPool()]).catch(showError);
    await reload();
    let pending = null;
    const soon = () => { if (!pending) pending = setTimeout(() => { pending = null; reload(); }, 300); };
    const es = new EventSource("/api/v1/events");
    const status = $("#live-status");
    es.onopen = () => { status.textContent = "Live"; soon(); };
    es.onerror = () => { status.textContent = "Live updates interrupted; retrying…"; };
    es.onmessage = (m) => {
      let e; try { e = JSON.parse(m.data); } catch (x) { return; }
      if (e.type === "progress") {
        live.set(e.job_id, e.data);
        const j = running.get(e.job_id);
        if (j) { j.progress = e.data; renderRunning(); } else soon();
      } else if (e.type === "job" || e.type === "snapshot") soon();
    };
    body.dataset.ready = "1";
  }

  // ---- hosts -------------------------------------------------------------
  function scheduleText(h) {
    return h.schedules.length ? h.schedules.map((s) => s.cron + (s.jitter ? " ±" + s.jitter : "") + (s.source ? " (" + s.source + ")" : "")).join("; ") : "manual only";
  }
  async function runNow(host, btn, msg) {
    btn.disabled = true;
    try { const j = await api("POST", "/hosts/" + enc(host) + "/backup"); msg(el("span", {}, "Backup queued as job ", jobLink(j.id), ".")); }
    catch (e) { msg(e.message); }
    finally { btn.disabled = false; }
  }
  async function hosts() {
    const hs = await api("GET", "/hosts");
    const oper = !!document.querySelector('a[href="/hosts/new"]');
    fill($("#hosts tbody"), hs.map((h) => {
      const cell = el("td");
      if (oper) cell.append(el("button", { type: "button", onclick: (ev) => runNow(h.name, ev.target, (m) => { cell.replaceChildren(m); }) }, "Run now"));
      return el("tr", {}, td(hostLink(h.name)), td(h.address), td(h.sources.map((s) => s.name + " (" + s.method + ")").join(", ")),
        td(h.enabled ? "yes" : "no"), td(scheduleText(h)), cell);
    }), $("#hosts-empty"));
    body.dataset.ready = "1";
  }
  async function host() {
    const name = body.dataset.host;
    const msg = (m) => { const p = $("#host-msg"); p.replaceChildren(m); p.hidden = false; };
    async function load() {
      const h = await api("GET", "/hosts/" + enc(name));
      kv($("#host-info"), [["Address", h.address || ""], ["Enabled", h.enabled ? "yes" : "no"], ["Groups", h.groups.join(", ")], ["Added", fmtTime(h.created)]]);
      fill($("#sources tbody"), h.sources.map((s) => el("tr", {}, td(s.name), td(s.method), td(el("span", { class: "mono", text: s.path })),
        td((s.excludes || []).join(", ")), td(Object.entries(s.options || {}).map(([k, v]) => k + "=" + v).join(", ")), td(s.secret_keys.join(", ")))));
      const r = h.retention, keep = [["last", r.keep_last], ["hourly", r.keep_hourly], ["daily", r.keep_daily], ["weekly", r.keep_weekly], ["monthly", r.keep_monthly], ["yearly", r.keep_yearly]].filter((x) => x[1]);
      kv($("#schedule"), [["Schedule", scheduleText(h)], ["Retention", keep.length ? keep.map((x) => x[0] + " " + x[1]).join(", ") : "keep everything"]]);
      const t = $("#toggle-enabled");
      if (t) { t.textContent = h.enabled ? "Disable" : "Enable"; t.onclick = async () => { try { await api("PATCH", "/hosts/" + enc(name), { enabled: !h.enabled }); load(); } catch (e) { msg(e.message); } }; }
      const snaps = (await api("GET", "/snapshots?host=" + enc(name))).sort((a, b) => new Date(b.finished) - new Date(a.finished)).slice(0, 10);
      fill($("#snapshots tbody"), snaps.map((s) => el("tr", {}, td(fmtTime(s.finished)), td(s.source), td(el("span", { class: statusClass(s.status), text: s.status })),
        td(s.files, "num"), td(fmtBytes(s.bytes), "num"), td(fmtBytes(s.bytes_new), "num"), td(el("a", { href: "/snapshots/" + enc(s.id) + "/" }, "Browse")))));
      const plan = await api("GET", "/hosts/" + enc(name) + "/retention");
      const srcs = Object.entries(plan.sources || {});
      kv($("#retention-preview"), srcs.length ? srcs.map(([src, sp]) => [src, el("span", {},
        "would keep " + (sp.keep || []).length + ", would remove " + (sp.remove || []).length +
        ((sp.remove || []).length ? ": " + sp.remove.map((x) => fmtTime(x.time)).join(", ") : ""))]) : [["", "no snapshots yet"]]);
      const jobs = await api("GET", "/jobs?host=" + enc(name) + "&limit=10");
      fill($("#jobs tbody"), jobs.map((j) => el("tr", {}, td(jobLink(j.id)), td(j.kind), td(el("span", { class: statusClass(j.state), text: j.state })), td(fmtTime(j.created)), td(j.error || ""))));
    }
    const b = $("#run-now");
    if (b) b.onclick = () => runNow(name, b, msg);
    const tb = $("#test-conn");
    if (tb) tb.onclick = () => testConnection(name, tb, false);
    await load();
    body.dataset.ready = "1";
  }

  // keyChanged says a test result failed because the server's identity
  // is not the pinned one (sftp, tar, rsync: "host key changed"; ftp: "does
  // not match the pinned fingerprint").
  const keyChanged = (r) => !r.ok && /host key changed|does not match the pinned/i.test(r.error || "");
  // testConnection runs POST /hosts/{host}/test (accept: ?accept=true,
  // admins) and shows one result per source.
  async function testConnection(name, btn, accept) {
    const out = $("#test-results"), admin = $("#test-box").dataset.admin === "1";
    btn.disabled = true;
    out.replaceChildren(el("p", { class: "help", text: accept ? "Accepting the key the server shows now…" : "Testing…" }));
    try {
      const res = await api("POST", "/hosts/" + enc(name) + "/test" + (accept ? "?accept=true" : ""));
      out.replaceChildren(...res.map((r) => {
        const id = r.identity || {}, pairs = [["Result", el("span", { class: r.ok ? "status ok" : r.supported ? "status bad" : "status warn", text: r.ok ? "connected" : r.supported ? "failed" : "no test" })]];
        if (r.error) pairs.push(["Error", el("span", { class: "mono", text: r.error })]);
        const fp = id.host_key_fingerprint || id.tls_fingerprint || id.fingerprint;
        if (fp) pairs.push(["Fingerprint", el("span", { class: "mono", text: fp })]);
        if (r.pinned) pairs.push([accept ? "Pinned now" : "Pinned", el("span", { class: "mono", text: r.pinned })]);
        if (id.server || id.banner) pairs.push(["Banner", el("span", { class: "mono", text: id.server || id.banner })]);
        if (id.share) pairs.push(["Share", id.share]);
        if (id.path) pairs.push(["Path", el("span", { class: "mono", text: id.path })]);
        if (id.entries !== undefined) pairs.push(["Entries", String(id.entries)]);
        const dl = el("dl", { class: "kv" }); kv(dl, pairs);
        const box = el("div", { class: "test-result", "data-source": r.source }, el("h3", { text: r.source + " (" + r.method + ")" }), dl);
        if (keyChanged(r)) {
          if (admin) box.append(el("p", { class: "warning", text: "The server's key is not the one pinned. Accept the new key only if you know why it changed (a reinstalled server, a new key)." }),
            el("button", { type: "button", class: "danger", id: "accept-key", onclick: (ev) => testConnection(name, ev.target, true) }, "Accept new host key"));
          else box.append(el("p", { class: "warning", text: "The server's key is not the one pinned. An admin can accept the new key here." }));
        }
        return box;
      }));
      if (!res.length) out.replaceChildren(el("p", { class: "empty", text: "This host has no sources." }));
    } catch (e) { out.replaceChildren(el("p", { class: "error", text: e.message })); }
    finally { btn.disabled = false; }
  }

  // cronPreview shows under out the next runs of the cron in input, as the
  // appliance computes them (GET /api/v1/schedule/preview), as it is typed.
  function cronPreview(input, out, emptyText) {
    let timer = null, seq = 0;
    const run = async () => {
      const v = input.value.trim(), my = ++seq;
      if (!v) { out.textContent = emptyText || "Manual backups only."; return; }
      if (v.split(/\s+/).length !== 5) { out.textContent = "A cron expression has five fields: minute hour day month weekday."; return; }
      try {
        const p = await api("GET", "/schedule/preview?n=3&cron=" + encodeURIComponent(v));
        if (my === seq) out.textContent = "Next runs: " + p.next.map(fmtTime).join(", ") + " (the appliance runs schedules in " + p.zone + ").";
      } catch (e) { if (my === seq) out.textContent = e.message; }
    };
    const soon = () => { clearTimeout(timer); timer = setTimeout(run, 250); };
    input.addEventListener("input", soon); input.addEventListener("change", soon);
    return run();
  }

  // ---- host form: built from the registered methods ---------------------
  // GET /api/v1/methods answers [{name, title, path_label, options: [{name,
  // label, type, required, secret, default, choices, help, group}]}], so a
  // new method or option shows up here without a UI change. Fields of a
  // group other than the main one sit in a closed <details>.
  const groupTitles = { advanced: "Advanced", commands: "Commands before and after the pull (over SSH)", snapshot: "File system snapshot on the host", jump: "Jump host (ProxyJump)" };
  function fieldInput(o, id) {
    const common = { id, "data-opt": o.name, "data-secret": o.secret ? "1" : null, required: o.required || null };
    const ph = o.default ? "default: " + o.default : null;
    if (o.type === "bool") {
      const d = o.default === "true" ? "yes" : "no";
      return el("select", common, el("option", { value: "" }, "Default (" + d + ")"), el("option", { value: "true" }, "Yes"), el("option", { value: "false" }, "No"));
    }
    if (o.type === "choice") return el("select", common, ...(o.choices || []).map((c) => el("option", { value: c, selected: c === (o.default || "") || null }, c || "none")));
    if (o.type === "text") return el("textarea", { ...common, rows: 3, class: "mono", autocomplete: "off", placeholder: ph });
    return el("input", { ...common, type: o.secret ? "password" : (o.type === "number" ? "number" : "text"), min: o.type === "number" ? "0" : null,
      autocomplete: o.secret ? "new-password" : "off", placeholder: ph });
  }
  const hostCronEmpty = "No schedule of its own: its group's or the default schedule applies (none: manual backups only).";
  async function hostForm() {
    const form = $("#host-form"), sel = $("#f-method"), editing = body.dataset.host || "";
    let methods = null, storedSecrets = [], storedMethod = "";
    try { methods = await api("GET", "/methods"); } catch (e) { methods = null; }
    if (!Array.isArray(methods)) methods = (body.dataset.methods || "").split(",").filter(Boolean).map((n) => ({ name: n }));
    sel.replaceChildren(...methods.map((m) => el("option", { value: m.name }, m.title || m.name)));
    function renderFields() {
      const m = methods.find((x) => x.name === sel.value) || {};
      const box = $("#method-fields"), groups = new Map();
      for (const o of m.options || []) {
        const id = "f-opt-" + o.name, g = o.group || "";
        const help = [o.help, o.secret && editing && sel.value === storedMethod && storedSecrets.includes(o.name) ? "Stored; leave empty to keep it." : ""].filter(Boolean).join(" ");
        const f = el("div", { class: "field" }, el("label", { for: id }, (o.label || o.name) + (o.required ? " (required)" : "")), fieldInput(o, id),
          help ? el("p", { class: "help", text: help }) : null, el("p", { class: "field-error", "data-for": "opt-" + o.name, hidden: true }));
        if (!groups.has(g)) groups.set(g, []);
        groups.get(g).push(f);
      }
      const parts = [...(groups.get("") || [])];
      for (const [g, fs] of groups) if (g) parts.push(el("details", { class: "opt-group", "data-group": g }, el("summary", {}, groupTitles[g] || g), ...fs));
      box.replaceChildren(...parts);
      $("#options-help").textContent = m.options ? "Further options not listed above." : "Options depend on the method (for example port=22).";
      $('label[for="f-path"]').textContent = m.path_label || "Path on the host";
    }
    sel.onchange = renderFields;
    renderFields();
    if (editing) {
      const h = await api("GET", "/hosts/" + enc(editing));
      form.name.value = h.name; form.address.value = h.address || ""; form.groups.value = h.groups.join(", ");
      const s = h.sources[0];
      if (s) { form.src_name.value = s.name; sel.value = s.method; renderFields(); form.path.value = s.path; form.excludes.value = (s.excludes || []).join("\n");
        storedSecrets = s.secret_keys || []; storedMethod = s.method; renderFields();
        if (storedSecrets.length) { const n = $("#secret-note"); n.textContent = "Stored credentials (" + storedSecrets.join(", ") + ") are not shown. Leave a field empty to keep its stored value; type a new one to replace it."; n.hidden = false; }
        const rest = { ...(s.options || {}) };
        for (const i of form.querySelectorAll("[data-opt]")) if (!i.dataset.secret && rest[i.dataset.opt] !== undefined) { i.value = rest[i.dataset.opt]; delete rest[i.dataset.opt]; }
        for (const d of form.querySelectorAll("details.opt-group")) if ([...d.querySelectorAll("[data-opt]")].some((i) => !i.dataset.secret && i.value && i.tagName !== "SELECT")) d.open = true;
        form.options.value = Object.entries(rest).map(([k, v]) => k + "=" + v).join("\n"); if (form.options.value) $("#generic-opts").open = true; }
      if (h.schedules[0]) { form.cron.value = h.schedules[0].cron; form.jitter.value = h.schedules[0].jitter || ""; }
      cronPreview(form.cron, $("#cron-preview"), hostCronEmpty);
      for (const k of ["keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]) form[k].value = h.retention[k] || "";
    }
    const lines = (t) => t.split("\n").map((x) => x.trim()).filter(Boolean);
    const pairs = (t) => Object.fromEntries(lines(t).map((l) => { const i = l.indexOf("="); return i < 0 ? [l, ""] : [l.slice(0, i).trim(), l.slice(i + 1).trim()]; }));
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      for (const p of form.querySelectorAll(".field-error")) p.hidden = true;
      $("#form-error").hidden = true;
      const options = pairs(form.options.value), secret = pairs(form.secret.value);
      const m = methods.find((x) => x.name === sel.value) || {};
      for (const i of form.querySelectorAll("[data-opt]")) {
        const v = i.dataset.secret ? i.value : i.value.trim();
        const o = (m.options || []).find((x) => x.name === i.dataset.opt) || {};
        if (v && !(i.tagName === "SELECT" && o.type === "choice" && v === (o.default || ""))) (i.dataset.secret ? secret : options)[i.dataset.opt] = v;
      }
      // An edit keeps the stored credentials left empty: the API keeps a
      // key sent as "" for the same source and method.
      if (editing && sel.value === storedMethod) for (const k of storedSecrets) if (!(k in secret)) secret[k] = "";
      const src = { name: form.src_name.value.trim(), method: sel.value, path: form.path.value.trim(), excludes: lines(form.excludes.value), options };
      if (Object.keys(secret).length) src.secret = secret;
      const ret = {};
      for (const k of ["keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]) if (form[k].value) ret[k] = Number(form[k].value);
      const groups = form.groups.value.split(",").map((x) => x.trim()).filter(Boolean);
      const data = { address: form.address.value.trim(), groups, sources: [src], retention: ret,
        schedules: form.cron.value.trim() ? [{ cron: form.cron.value.trim(), jitter: form.jitter.value.trim() || undefined }] : [] };
      try {
        if (editing) await api("PATCH", "/hosts/" + enc(editing), data);
        else { data.name = form.name.value.trim(); await api("POST", "/hosts", data); }
        location.href = "/hosts/" + enc(editing || data.name);
      } catch (e) {
        // Put the server's message next to the field it names.
        const m = e.message, named = /needs the (?:option|credential) "?([A-Za-z0-9_]+)/.exec(m);
        const f = named && form.querySelector('.field-error[data-for="opt-' + named[1] + '"]') ? "opt-" + named[1] : /^host name|^host /.test(m) ? "name" : /credential|secret/.test(m) ? "secret" : /path/.test(m) ? "path" : /method/.test(m) ? "method"
          : /^source/.test(m) ? "src_name" : /schedule|cron/.test(m) ? "cron" : /jitter/.test(m) ? "jitter" : /retention/.test(m) ? "retention" : /group/.test(m) ? "groups" : null;
        const p = f && form.querySelector('.field-error[data-for="' + f + '"]');
        if (p) { p.textContent = m; p.hidden = false; const inp = p.parentElement.querySelector("input,select,textarea"); if (inp) inp.focus(); }
        else { $("#form-error").textContent = m; $("#form-error").hidden = false; }
      }
    };
    if (!editing) cronPreview(form.cron, $("#cron-preview"), hostCronEmpty);
    body.dataset.ready = "1";
  }

  // ---- browse and restore -----------------------------------------------
  async function browse() {
    const name = body.dataset.host;
    const snaps = (await api("GET", "/snapshots?host=" + enc(name))).sort((a, b) => new Date(b.finished) - new Date(a.finished));
    fill($("#snapshots tbody"), snaps.map((s) => el("tr", {}, td(fmtTime(s.finished)), td(s.source), td(el("span", { class: statusClass(s.status), text: s.status })),
      td(s.files, "num"), td(fmtBytes(s.bytes), "num"), td(el("a", { href: "/snapshots/" + enc(s.id) + "/" }, "Browse")))), $("#snapshots-empty"));
    body.dataset.ready = "1";
  }
  async function snapshot() {
    const id = body.dataset.id, path = (body.dataset.path || "").replace(/\/+$/, "");
    const snap = await api("GET", "/snapshots/" + enc(id));
    const tree = await api("GET", "/snapshots/" + enc(id) + "/tree/" + encPath(path));
    const crumbs = [el("a", { href: "/browse/" + enc(snap.host) }, snap.host), el("span", { text: "/" }), el("a", { href: "/snapshots/" + enc(id) + "/" }, snap.source + " @ " + fmtTime(snap.finished))];
    let acc = "";
    for (const part of path.split("/").filter(Boolean)) { acc += (acc ? "/" : "") + part; crumbs.push(el("span", { text: "/" }), el("a", { href: "/snapshots/" + enc(id) + "/" + encPath(acc) }, part)); }
    $("#crumbs").replaceChildren(...crumbs);
    const entries = tree.entries || [tree.entry];
    const base = tree.entries ? path : path.split("/").slice(0, -1).join("/");
    fill($("#entries tbody"), entries.map((e) => {
      const p = (base ? base + "/" : "") + e.name;
      const link = e.type === "dir" ? el("a", { href: "/snapshots/" + enc(id) + "/" + encPath(p) }, e.name + "/")
        : e.type === "file" ? el("a", { href: "/api/v1/snapshots/" + enc(id) + "/file/" + encPath(p), download: e.name }, e.name)
          : el("span", {}, e.name + (e.target ? " → " + e.target : ""));
      return el("tr", {}, td(link), td(e.type === "file" ? fmtBytes(e.size) : "", "num"), td(fmtTime(e.mtime)), td(el("span", { class: "mono", text: e.mode })), td((e.user || e.uid) + ":" + (e.group || e.gid)));
    }));
    // Downloads of the directory shown (a file's: its directory), and its
    // WebDAV address: /dav/<host>/<snapshot-time>/<source>/<path>, the
    // time being the snapshot's start in UTC as 2006-01-02T15-04-05Z.
    const dir = base, arch = "/api/v1/snapshots/" + enc(id) + "/archive/" + encPath(dir) + "?format=";
    const dname = (dir.split("/").pop() || snap.source) + "";
    const zip = $("#dl-zip"), tzst = $("#dl-tzst");
    if (zip) { zip.href = arch + "zip"; zip.setAttribute("download", dname + ".zip"); tzst.href = arch + "tar.zst"; tzst.setAttribute("download", dname + ".tar.zst"); }
    const dav = $("#dav-url");
    if (dav) {
      const st = new Date(snap.started).toISOString().replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
      dav.value = location.origin + "/dav/" + enc(snap.host) + "/" + st + "/" + encPath(snap.source) + (dir ? "/" + encPath(dir) : "") + "/";
      $("#dav-copy").onclick = async () => {
        const note = $("#dav-msg");
        try { await navigator.clipboard.writeText(dav.value); note.textContent = "Copied."; }
        catch (e) { dav.select(); note.textContent = "Select the address and copy it (the browser did not allow copying)."; }
      };
    }
    const form = $("#restore-form");
    if (form) {
      form.path.value = path;
      const toHost = () => form.querySelector("#r-where-host").checked, inPlace = form.querySelector("#r-in-place");
      const sync = () => {
        $("#r-dir-box").hidden = toHost(); $("#r-host-box").hidden = !toHost();
        if (inPlace) { $("#r-in-place-warn").hidden = !inPlace.checked; form.dest.disabled = inPlace.checked; }
      };
      for (const i of form.querySelectorAll('input[name="where"], #r-in-place')) i.onchange = sync;
      sync();
      form.onsubmit = async (ev) => {
        ev.preventDefault();
        const m = $("#restore-msg");
        for (const p of form.querySelectorAll(".field-error")) p.hidden = true;
        const data = { snapshot: id, path: form.path.value.trim() };
        if (toHost()) {
          data.to_host = true;
          if (inPlace && inPlace.checked) data.in_place = true;
          else if (form.dest.value.trim()) data.dest = form.dest.value.trim();
          if (data.in_place && !confirm("Overwrite the files on " + snap.host + " with the snapshot's? Changes made since the snapshot are lost.")) return;
        } else data.to = form.to.value.trim();
        try {
          const j = await api("POST", "/restores", data);
          m.replaceChildren("Restore queued as job ", jobLink(j.id), "."); m.hidden = false;
        } catch (e) {
          const f = toHost() ? (/^dest/.test(e.message) ? "dest" : "restore") : "to";
          const fe = form.querySelector('.field-error[data-for="' + f + '"]');
          fe.textContent = e.message; fe.hidden = false;
        }
      };
    }
    body.dataset.ready = "1";
  }

  // ---- jobs --------------------------------------------------------------
  async function jobs() {
    const host = new URLSearchParams(location.search).get("host");
    const js = await api("GET", "/jobs?limit=200" + (host ? "&host=" + enc(host) : ""));
    fill($("#jobs tbody"), js.map((j) => el("tr", {}, td(jobLink(j.id)), td(hostLink(j.host)), td(j.kind),
      td(el("span", { class: statusClass(j.state), text: j.state })), td(fmtTime(j.created)), td(fmtTime(j.finished)), td(j.error || ""))));
    body.dataset.ready = "1";
  }
  // showProgress fills the job page's progress line: a bar when the total
  // is known, else the phase; files, bytes, rate, ETA and the current path.
  function showProgress(p, state) {
    const box = $("#job-progress"); if (!box) return;
    p = p || {};
    const done = ["succeeded", "done"].includes(state);
    const total = p.bytes_total > 0 ? p.bytes_total : (done && p.bytes > 0 ? p.bytes : 0);
    const pct = total > 0 ? (done ? 100 : Math.min(100, Math.floor(100 * p.bytes / total))) : null;
    const bar = el("progress", { max: total > 0 ? total : null, value: total > 0 ? (done ? total : Math.min(p.bytes || 0, total)) : null, "aria-label": "progress of job " + body.dataset.id });
    const parts = [pct !== null ? pct + "%" : (p.phase || state || ""), (p.files || 0) + " files", fmtBytes(p.bytes || 0)];
    if (p.rate && !done) parts.push(fmtBytes(p.rate) + "/s");
    if (p.eta_seconds && !done) parts.push("ETA " + fmtDur(p.eta_seconds));
    box.replaceChildren(bar, " ", el("span", { id: "job-pct", text: parts.join(" · ") }), p.path && !done ? el("span", { class: "mono", text: " " + p.path }) : "");
  }
  async function job() {
    const id = body.dataset.id;
    let state = "";
    async function load() {
      const j = await api("GET", "/jobs/" + enc(id));
      const p = j.progress || {};
      state = j.state;
      showProgress(p, j.state);
      kv($("#job-info"), [["Kind", j.kind], ["Host", hostLink(j.host)], ["State", el("span", { class: statusClass(j.state), text: j.state })],
        ["Created", fmtTime(j.created)], ["Started", fmtTime(j.started)], ["Finished", fmtTime(j.finished)], ["Files", String(p.files || 0)],
        ["Bytes", fmtBytes(p.bytes || 0)], ["Error", j.error || ""]]);
      fill($("#events tbody"), (j.events || []).map((e) => el("tr", {}, td(fmtTime(e.time)), td(e.level), td(e.message))));
      const text = (j.events || []).map((e) => e.time + " " + e.level + " " + e.message).join("\n") + "\n";
      const a = $("#log-download"); a.href = URL.createObjectURL(new Blob([text], { type: "text/plain" })); a.download = "cairn-job-" + id + ".log";
      const c = $("#cancel-job");
      if (c) { c.hidden = ["succeeded", "failed", "cancelled", "interrupted", "done"].includes(j.state); c.onclick = async () => { try { await api("POST", "/jobs/" + enc(id) + "/cancel"); load(); } catch (e) { showError(e); } }; }
    }
    await load();
    // Follow a job that has not ended: reload on its events (at most 3/s).
    let pending = null;
    const es = new EventSource("/api/v1/events");
    const final = () => ["succeeded", "failed", "cancelled", "interrupted", "done"].includes(state);
    // Events before the stream opened are missed: read the job again then,
    // and every few seconds until it ends.
    es.onopen = () => { if (!final()) load().catch(showError); };
    const poll = setInterval(() => { if (final()) clearInterval(poll); else load().catch(showError); }, 3000);
    es.onmessage = (m) => {
      let e; try { e = JSON.parse(m.data); } catch (x) { return; }
      if (String(e.job_id) !== String(id)) return;
      if (e.type === "progress") { showProgress(e.data, state); body.dataset.progressEvents = String(Number(body.dataset.progressEvents || 0) + 1); }
      if (!pending) pending = setTimeout(() => { pending = null; load().catch(showError); }, 300);
    };
    body.dataset.ready = "1";
  }

  // ---- users, groups, tokens ---------------------------------------------
  async function users() {
    async function load() {
      const [us, gs] = await Promise.all([api("GET", "/users"), api("GET", "/groups")]);
      fill($("#users tbody"), us.map((u) => el("tr", {}, td(u.name), td(u.role), td(u.groups.join(", ")), td(fmtTime(u.created)),
        td(el("button", { type: "button", class: "danger", onclick: async () => { if (confirm("Remove user " + u.name + "?")) { try { await api("DELETE", "/users/" + enc(u.name)); load(); } catch (e) { showError(e); } } } }, "Remove")))));
      $("#groups").replaceChildren(...gs.map((g) => el("li", {}, g.name, " ",
        el("button", { type: "button", class: "danger", onclick: async () => { try { await api("DELETE", "/groups/" + enc(g.name)); load(); } catch (e) { showError(e); } } }, "Remove"))));
    }
    const uf = $("#user-form"), gf = $("#group-form");
    uf.onsubmit = async (ev) => {
      ev.preventDefault(); $("#user-error").hidden = true;
      try {
        await api("POST", "/users", { name: uf.name.value.trim(), password: uf.password.value, role: uf.role.value, groups: uf.groups.value.split(",").map((x) => x.trim()).filter(Boolean) });
        uf.reset(); load();
      } catch (e) { $("#user-error").textContent = e.message; $("#user-error").hidden = false; }
    };
    gf.onsubmit = async (ev) => {
      ev.preventDefault(); $("#group-error").hidden = true;
      try { await api("POST", "/groups", { name: gf.name.value.trim() }); gf.reset(); load(); }
      catch (e) { $("#group-error").textContent = e.message; $("#group-error").hidden = false; }
    };
    await load();
    body.dataset.ready = "1";
  }
  async function tokens() {
    async function load() {
      const ts = await api("GET", "/tokens");
      fill($("#tokens tbody"), ts.map((t) => el("tr", {}, td(t.id), td(t.user), td(t.name), td(fmtTime(t.created)), td(fmtTime(t.last_used)), td(t.expires ? fmtTime(t.expires) : "never"),
        td(el("button", { type: "button", class: "danger", onclick: async () => { try { await api("DELETE", "/tokens/" + t.id); load(); } catch (e) { showError(e); } } }, "Revoke")))));
    }
    const f = $("#token-form");
    f.onsubmit = async (ev) => {
      ev.preventDefault(); $("#token-error").hidden = true;
      try { const t = await api("POST", "/tokens", { name: f.name.value.trim(), expires_in: f.expires_in.value.trim() || undefined }); $("#new-token-value").textContent = t.token; $("#new-token").hidden = false; f.reset(); load(); }
      catch (e) { $("#token-error").textContent = e.message; $("#token-error").hidden = false; }
    };
    await load();
    body.dataset.ready = "1";
  }

  const pages = { dashboard, hosts, host, host_form: hostForm, browse, snapshot, jobs, job, users, tokens };
  // Pages with a script of their own (templates' "scripts" block, loaded
  // deferred after this one) add themselves to cairn.pages; every deferred
  // script has run by DOMContentLoaded.
  window.cairn = { api, el, td, enc, fmtBytes, fmtTime, fmtDur, statusClass, showError, fill, kv, hostLink, jobLink, cronPreview, pages };
  // The appliance image says in GET /api/v1/status (public) whether its
  // data dir is on a disk; while it is in RAM every page shows a banner.
  fetch("/api/v1/status", { credentials: "same-origin", headers: { "Accept": "application/json" } })
    .then((r) => (r.ok ? r.json() : null)).then((st) => { const b = $("#ram-banner"); if (b && st && st.data_persistent === false) b.hidden = false; }).catch(() => {});
  document.addEventListener("DOMContentLoaded", () => {
    const run = pages[body.dataset.page];
    if (run) run().catch((e) => { showError(e); body.dataset.ready = "error"; });
  });
})();
