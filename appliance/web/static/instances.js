// Instances page (GET /api/v1/instances): the cluster's appliances.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s), body = document.body;
  c.pages.instances = async function () {
    const is = await c.api("GET", "/instances");
    c.fill($("#instances tbody"), (is || []).map((i) => c.el("tr", { "data-id": i.id }, c.td(i.id + (i.self ? " (this one)" : "")), c.td(i.host), c.td(c.el("span", { class: "mono", text: i.addr || "" })), c.td(i.version),
      c.td(c.el("span", { class: i.state === "up" ? "status ok" : i.state === "lost" ? "status bad" : "status warn", text: i.state })), c.td(i.running + " / " + i.capacity, "num"),
      c.td(Math.round(100 * (i.load || 0)) + "%", "num"), c.td(c.fmtTime(i.last_heartbeat)), c.td((i.jobs || []).map((j) => "#" + j).join(", ")))), $("#instances-empty"));
    body.dataset.ready = "1";
  };
})();
