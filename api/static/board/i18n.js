/* semon console: language, texts and clocks, shared by every view (window.semon).
 * One JSON catalog per language (/board/i18n/zh-CN.json, en.json); zh-CN unless the browser asks
 * for English first (its Accept-Language, navigator.languages) or the page's switch chose it
 * (remembered in localStorage). Times: the city's zone (SEMON_TIMEZONE, from /session) and
 * ages against the server's clock, not the browser's. */
(() => {
  "use strict";
  const LANGS = ["zh-CN", "en"];
  const S = (window.semon = window.semon || {});
  S.dict = {};
  S.timezone = "Asia/Shanghai";
  S.skewMs = 0; // server clock − browser clock, from the last server answer
  S.now = () => Date.now() + S.skewMs;
  S.setServerNow = (ms) => { if (typeof ms === "number") S.skewMs = ms - Date.now(); };

  function pickLang() {
    const saved = localStorage.getItem("semon-lang");
    if (LANGS.includes(saved)) return saved;
    for (const l of navigator.languages || [navigator.language || ""]) {
      if (/^zh\b/i.test(l)) return "zh-CN";
      if (/^en\b/i.test(l)) return "en";
    }
    return "zh-CN";
  }
  S.lang = pickLang();

  S.loadLang = async (lang) => {
    const r = await fetch(`/board/i18n/${lang}.json`);
    S.dict = await r.json();
    S.lang = lang;
    document.documentElement.lang = lang;
    document.title = S.t("ui.title");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = S.t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-ph]")) el.placeholder = S.t(el.dataset.i18nPh);
  };
  S.switchLang = () => LANGS.find((l) => l !== S.lang);
  S.remember = (lang) => localStorage.setItem("semon-lang", lang);

  S.t = (key, vars) => {
    let s = S.dict[key];
    if (s === undefined) return key;
    for (const [k, v] of Object.entries(vars || {})) s = s.replaceAll(`{${k}}`, String(v));
    return s;
  };
  // A name from the catalog, or the machine id made readable when the catalog lacks it.
  S.name = (group, id) => {
    if (id === null || id === undefined || id === "") return "";
    const s = S.dict[`${group}.${id}`];
    return s !== undefined ? s : String(id).replace(/_/g, " ");
  };

  S.clock = (ms) => new Intl.DateTimeFormat("en-GB", {
    timeZone: S.timezone, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  }).format(new Date(ms));
  S.dateTime = (ms) => new Intl.DateTimeFormat(S.lang, {
    timeZone: S.timezone, dateStyle: "medium", timeStyle: "medium", hour12: false,
  }).format(new Date(ms));
  S.ago = (ms) => {
    const s = Math.max(0, Math.round((S.now() - ms) / 1000));
    if (s < 60) return S.t("ui.ago.s", { n: s });
    if (s < 3600) return S.t("ui.ago.min", { n: Math.floor(s / 60) });
    return S.t("ui.ago.h", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
  };
  // "14:03:21 · 19 秒前": the local clock time with the age beside it.
  S.when = (ms) => `${S.clock(ms)} · ${S.ago(ms)}`;
  S.mmss = (s) => {
    const a = Math.abs(Math.round(s));
    return `${Math.floor(a / 60)}:${String(a % 60).padStart(2, "0")}`;
  };

  S.h = function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  };

  // Requests: the session cookie goes by itself (same origin); writes repeat the CSRF token.
  S.me = null;
  S.api = (url, opts) => fetch(url, { credentials: "same-origin", ...(opts || {}) });
  S.post = (url, body) => S.api(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(S.me && S.me.csrf_token ? { "X-CSRF-Token": S.me.csrf_token } : {}) },
    body: JSON.stringify(body || {}),
  });
})();
