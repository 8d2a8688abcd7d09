/* semon live board: vanilla JS, no dependencies. State arrives over Server-Sent Events from
 * /board/stream (events "summary", "alarm", "device"); the device view opens with /board/device/{id}.
 * The URL fragment picks the view: #/ (fleet) or #/device/E000003. */
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const SEVERITIES = ["critical", "major", "minor"];
  const CHART_WINDOW_MS = 5 * 60 * 1000; // device time shown on the live chart
  const MAX_POINTS = 3000;
  const state = { device: null, summary: null, detail: null, points: [], feed: [], es: null, downTimer: null };
  // With API keys on, open the board as /board?key=smk_… (a regulator key); it is kept for the
  // tab and sent with every request — as a query parameter where EventSource allows no header.
  const KEY = new URLSearchParams(location.search).get("key") || sessionStorage.getItem("semon-key") || "";
  if (KEY) sessionStorage.setItem("semon-key", KEY);
  const api = (url) => fetch(url, KEY ? { headers: { Authorization: `Bearer ${KEY}` } } : {});

  // ------------------------------------------------------------------ helpers
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const label = (type) => String(type).replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  const fmt = (v, digits) => (typeof v === "number" ? v.toFixed(digits) : v ?? "–");
  const openDevice = (id) => { location.hash = `#/device/${encodeURIComponent(id)}`; };

  // ------------------------------------------------------------------ connection
  function setConn(live) {
    const el = $("conn");
    clearTimeout(state.downTimer);
    if (live) {
      el.className = "conn live";
      el.textContent = "live";
    } else {
      // A stream ends every ~15 s and reconnects at once: only a lasting outage is shown.
      state.downTimer = setTimeout(() => { el.className = "conn down"; el.textContent = "reconnecting"; }, 3000);
    }
  }

  function connect() {
    if (state.es) state.es.close();
    const q = new URLSearchParams();
    if (state.device) q.set("device", state.device);
    if (KEY) q.set("key", KEY);
    const url = "/board/stream" + (q.toString() ? `?${q}` : "");
    const es = new EventSource(url);
    state.es = es;
    es.addEventListener("open", () => setConn(true));
    es.addEventListener("error", () => setConn(false));
    es.addEventListener("summary", (e) => { state.summary = JSON.parse(e.data); renderFleet(); });
    es.addEventListener("alarm", (e) => onTransition(JSON.parse(e.data)));
    es.addEventListener("device", (e) => onDevice(JSON.parse(e.data)));
  }

  // ------------------------------------------------------------------ fleet view
  function alarmCard(a, extra) {
    return h("li", {
      class: `alarm ${a.severity}${a.active === false ? " cleared" : ""}${extra || ""}`,
      "data-alarm-id": a.id, "data-device": a.device_id, "data-type": a.type, "data-severity": a.severity,
      tabindex: "0", role: "link", onclick: () => openDevice(a.device_id),
      onkeydown: (e) => { if (e.key === "Enter") openDevice(a.device_id); },
    },
    h("span", { class: "sev" }, a.severity),
    h("span", { class: "what" }, `${label(a.type)} · ${a.device_id}`),
    h("span", { class: "since", "data-since": a.start_ts, title: new Date(a.start_ts).toLocaleString() },
      a.active === false ? "cleared" : ago(a.start_ts)),
    h("span", { class: "where" }, [a.district, a.firm_id && `firm ${a.firm_id}`, a.kind].filter(Boolean).join(" · ")),
    a.message ? h("span", { class: "msg" }, a.message) : null);
  }

  function renderFleet() {
    const s = state.summary;
    if (!s) return;
    const counters = [
      ["Elevators", s.devices.elevator || 0, ""],
      ["Vessels", s.devices.vessel || 0, ""],
      ...SEVERITIES.map((sev) => [`Open ${sev}`, s.open[sev] || 0, sev]),
      ["Raised 24 h", s.raised_24h, ""],
    ];
    $("counters").replaceChildren(...counters.map(([name, n, cls]) =>
      h("div", { class: `counter ${cls}${n === 0 && cls ? " zero" : ""}`, "data-counter": name }, h("b", {}, n),
        h("span", {}, name))));

    // Keep the cards already shown (so only new alarms flash), drop closed ones, add new ones.
    const list = $("alarms");
    const shown = new Map([...list.children].map((li) => [li.dataset.alarmId, li]));
    const fresh = list.dataset.ready === "1";
    const cards = s.alarms.map((a) => {
      const old = shown.get(String(a.id));
      if (old && old.dataset.severity === a.severity) return old;
      return alarmCard(a, fresh ? " new" : "");
    });
    list.replaceChildren(...cards);
    list.dataset.ready = "1";
    const total = SEVERITIES.reduce((n, sev) => n + (s.open[sev] || 0), 0);
    $("open-count").textContent = total > s.alarms.length ? `(${s.alarms.length} of ${total})` : `(${total})`;
    $("no-alarms").hidden = s.alarms.length > 0;

    $("districts").replaceChildren(...s.districts.map((d) => {
      const open = SEVERITIES.reduce((n, sev) => n + (d.open[sev] || 0), 0);
      const worst = SEVERITIES.find((sev) => d.open[sev]) || "calm";
      return h("div", { class: `district ${worst}`, "data-district": d.name, title: SEVERITIES.map(
        (sev) => `${sev}: ${d.open[sev] || 0}`).join(", ") },
      h("b", {}, d.name), h("span", { class: "n" }, open), h("span", { class: "lbl" }, " open"),
      h("small", {}, `${d.devices} devices`));
    }));

    const ids = $("device-ids");
    if (!ids.dataset.loaded) {
      ids.dataset.loaded = "1";
      api("/devices?limit=1000&sort=id").then((r) => (r.ok ? r.json() : { items: [] })).then((page) => {
        ids.replaceChildren(...page.items.map((d) => h("option", { value: d.id }, `${d.kind} · ${d.district || ""}`)));
      }).catch(() => { ids.dataset.loaded = ""; });
    }
  }

  function onTransition(t) {
    state.feed.unshift(t);
    state.feed.length = Math.min(state.feed.length, 15);
    $("feed").replaceChildren(...state.feed.map((x) => h("li", { "data-event-id": x.event_id },
      h("time", {}, clock(Date.parse(x.at))), h("span", { class: `ev ${x.event}` }, x.event),
      h("a", { href: `#/device/${encodeURIComponent(x.alarm.device_id)}` }, x.alarm.device_id),
      h("span", {}, `${label(x.alarm.type)} (${x.alarm.severity})`))));
    $("no-feed").hidden = true;
    if (state.device && t.alarm.device_id === state.device && state.detail) {
      const others = state.detail.alarms.filter((a) => a.id !== t.alarm.id);
      state.detail.alarms = [t.alarm, ...others];
      renderDeviceAlarms();
    }
  }

  // ------------------------------------------------------------------ device view
  async function loadDevice(id) {
    $("dev-title").textContent = id;
    $("dev-meta").textContent = "loading…";
    const r = await api(`/board/device/${encodeURIComponent(id)}`);
    if (!r.ok) {
      $("dev-meta").textContent = r.status === 404 ? "No such device in the registry." : `Error ${r.status}`;
      state.detail = null;
      return;
    }
    const detail = await r.json();
    if (state.device !== id) return; // the user moved on meanwhile
    state.detail = detail;
    state.points = detail.history.slice();
    const d = detail.device;
    $("dev-title").textContent = `${d.id} · ${d.kind}`;
    $("dev-meta").textContent = [d.address, d.district, d.firm_name && `maintained by ${d.firm_name}`,
      d.equipment_code].filter(Boolean).join(" · ");
    renderValues(detail.latest);
    renderDeviceAlarms();
    drawChart();
  }

  function onDevice(msg) {
    if (!state.detail || msg.device_id !== state.device) return;
    const p = msg.latest;
    const last = state.points[state.points.length - 1];
    if (!last || p.time > last.time) {
      state.points.push(p);
      if (state.points.length > MAX_POINTS) state.points.splice(0, state.points.length - MAX_POINTS);
    }
    renderValues(p);
    drawChart();
  }

  function renderValues(v) {
    const box = $("dev-values");
    if (!v) { box.replaceChildren(h("p", { class: "empty" }, "No status reported yet.")); return; }
    const d = state.detail.device;
    let items;
    if (d.kind === "elevator") {
      const faults = v.faults ? String(v.faults) : "";
      items = [
        ["Floor", v.floor], ["Direction", v.dir], ["Door", v.door], ["Speed", fmt(v.speed, 2), "m/s"],
        ["Mode", v.mode], ["Passenger", v.occupied ? "yes" : "no"], ["Load", fmt(v.load, 0), "kg"],
        ["Faults", faults || "none", "", !!faults],
      ];
    } else {
      const sp = d.set_pressure;
      const pct = sp && typeof v.pressure === "number" ? ` (${Math.round((100 * v.pressure) / sp)} %)` : "";
      items = [
        ["Pressure", fmt(v.pressure, 3), `MPa${pct}`, sp && v.pressure >= 0.9 * sp],
        ["Temperature", fmt(v.temperature, 1), "°C", d.design_temperature && v.temperature > d.design_temperature],
        ["Level", fmt(v.level, 1), v.level === undefined ? "" : "%"],
        ["Gas", fmt(v.gas_lel, 1), v.gas_lel === undefined ? "" : "% LEL", v.gas_lel >= 25],
        ["Safety valve", v.valve_discharge ? "discharging" : "closed", "", !!v.valve_discharge],
      ];
    }
    items.push(["Reported", clock(v.time)]);
    box.replaceChildren(...items.map(([k, val, unit, alert]) =>
      h("div", { class: `value${alert ? " alert" : ""}`, "data-value": k }, h("span", {}, k),
        h("b", {}, val ?? "–", unit ? h("small", {}, ` ${unit}`) : null))));
  }

  function renderDeviceAlarms() {
    const alarms = state.detail ? state.detail.alarms : [];
    $("dev-alarms").replaceChildren(...alarms.map((a) => alarmCard(a, "")));
    $("no-dev-alarms").hidden = alarms.length > 0;
  }

  // ------------------------------------------------------------------ live chart (canvas)
  function drawChart() {
    const canvas = $("chart");
    const d = state.detail && state.detail.device;
    if (!d) return;
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, hgt = canvas.clientHeight;
    if (!w || !hgt) return;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(hgt * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, hgt);

    const elevator = d.kind === "elevator";
    const key = elevator ? "floor" : "pressure";
    const pts = state.points.filter((p) => typeof p[key] === "number");
    const end = pts.length ? pts[pts.length - 1].time : Date.now();
    const start = end - CHART_WINDOW_MS;
    const shown = pts.filter((p) => p.time >= start);
    const lines = [];
    let lo, hi;
    if (elevator) {
      const bottom = d.bottom_floor ?? 1;
      lo = Math.min(bottom, ...shown.map((p) => p.floor));
      hi = Math.max(bottom + Math.max((d.floors || 2) - 1, 1), ...shown.map((p) => p.floor));
      $("chart-title").textContent = "Floor (live)";
      $("chart-legend").innerHTML = '<i style="background:#4c9aff"></i>floor<i style="background:#8b9bab"></i>speed';
    } else {
      const sp = d.set_pressure;
      if (sp) lines.push([0.9 * sp, "#f59e2b", "90 % of set"], [sp, "#f0504f", "set pressure"]);
      const vals = shown.map((p) => p.pressure);
      lo = Math.min(0, ...vals);
      hi = Math.max(...vals, ...(sp ? [sp * 1.08] : []), 0.1);
      $("chart-title").textContent = "Pressure (live), MPa";
      $("chart-legend").innerHTML = '<i style="background:#4c9aff"></i>pressure' +
        (sp ? '<i style="background:#f59e2b"></i>90 % of set<i style="background:#f0504f"></i>set pressure' : "");
    }
    if (hi === lo) hi = lo + 1;
    const L = 44, R = 12, T = 10, B = 24;
    const x = (t) => L + ((t - start) / CHART_WINDOW_MS) * (w - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (hgt - T - B);

    g.font = "11px system-ui, sans-serif";
    g.strokeStyle = "#243241";
    g.fillStyle = "#8b9bab";
    g.lineWidth = 1;
    // About five horizontal grid lines; whole floors for an elevator.
    const step = elevator ? Math.max(1, Math.ceil((hi - lo) / 5)) : (hi - lo) / 5;
    for (let v = elevator ? Math.ceil(lo) : lo; v <= hi + 1e-9; v += step) {
      g.beginPath(); g.moveTo(L, y(v)); g.lineTo(w - R, y(v)); g.stroke();
      g.fillText(elevator ? String(v) : v.toFixed(2), 4, y(v) + 4);
    }
    // Time labels every minute, fewer on a narrow screen so they never overlap.
    const every = w < 520 ? 2 : 1;
    for (let m = 0; m <= 5; m += every) {
      const t = start + m * 60000;
      const text = clock(t);
      const tw = g.measureText(text).width;
      g.fillText(text, Math.max(L - tw / 2, Math.min(x(t) - tw / 2, w - R - tw)), hgt - 6);
    }
    for (const [v, color] of lines) {
      g.setLineDash([6, 4]); g.strokeStyle = color; g.lineWidth = 1.5;
      g.beginPath(); g.moveTo(L, y(v)); g.lineTo(w - R, y(v)); g.stroke();
    }
    g.setLineDash([]);
    if (elevator && d.rated_speed) {
      // Speed on the same box, scaled to the rated speed: a faint second trace.
      g.strokeStyle = "#8b9bab"; g.lineWidth = 1;
      g.beginPath();
      shown.forEach((p, i) => {
        const py = T + (1 - Math.min((p.speed || 0) / (d.rated_speed * 1.25), 1)) * (hgt - T - B);
        i ? g.lineTo(x(p.time), py) : g.moveTo(x(p.time), py);
      });
      g.stroke();
    }
    g.strokeStyle = "#4c9aff"; g.lineWidth = 2;
    g.beginPath();
    shown.forEach((p, i) => {
      if (!i) { g.moveTo(x(p.time), y(p[key])); return; }
      if (elevator) g.lineTo(x(p.time), y(shown[i - 1][key])); // floors are steps
      g.lineTo(x(p.time), y(p[key]));
    });
    g.stroke();
    if (shown.length) {
      const p = shown[shown.length - 1];
      g.fillStyle = "#4c9aff";
      g.beginPath(); g.arc(x(p.time), y(p[key]), 3.5, 0, 2 * Math.PI); g.fill();
    }
  }

  // ------------------------------------------------------------------ routing and timers
  function route() {
    const m = location.hash.match(/^#\/device\/(.+)$/);
    const dev = m ? decodeURIComponent(m[1]) : null;
    state.device = dev;
    state.detail = null;
    $("fleet-view").hidden = !!dev;
    $("device-view").hidden = !dev;
    if (dev) loadDevice(dev);
    else renderFleet();
    connect();
    window.scrollTo(0, 0);
  }

  $("find").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("find-input").value.trim();
    if (id) openDevice(id);
    $("find-input").value = "";
    $("find-input").blur();
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => { if (state.detail) drawChart(); });
  setInterval(() => {
    for (const el of document.querySelectorAll(".alarm:not(.cleared) [data-since]")) el.textContent = ago(+el.dataset.since);
  }, 1000);
  route();
})();
