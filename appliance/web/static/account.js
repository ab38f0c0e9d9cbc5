// Account page: the own password (PUT /api/v1/users/me/password); the
// API tokens part is app.js's tokens page.
"use strict";
(function () {
  const c = window.cairn, $ = (s) => document.querySelector(s);
  const base = c.pages.tokens;
  c.pages.tokens = async function () {
    const f = $("#pw-form");
    f.onsubmit = async (ev) => {
      ev.preventDefault();
      for (const p of f.querySelectorAll(".field-error")) p.hidden = true;
      $("#pw-msg").textContent = "";
      const err = (k, m) => { const p = f.querySelector('.field-error[data-for="' + k + '"]'); p.textContent = m; p.hidden = false; f[k].focus(); };
      if (f.new.value !== f.new2.value) { err("new2", "The two new passwords differ."); return; }
      try { await c.api("PUT", "/users/me/password", { current: f.current.value, new: f.new.value }); f.reset(); $("#pw-msg").textContent = "Password changed."; }
      catch (e) { const m = e.message; if (/^current/.test(m)) err("current", m.replace(/^current: /, "")); else err("new", m.replace(/^new: /, "")); }
    };
    await base();
  };
})();
