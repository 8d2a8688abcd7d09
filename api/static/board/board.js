/* semon console: the regulator's live board (fleet, device, map) and the routing of every view.
 * State arrives over Server-Sent Events from /board/stream (events "summary", "alarm", "device");
 * the device view opens with /board/device/{id}. The URL fragment picks the view: #/ (fleet),
 * #/map, #/device/E000003, #/desk (a firm's dispatcher). No key ever goes in a URL: people sign
 * in (/session) and the browser carries the HttpOnly session cookie, EventSource included. */
(() => {
  "use strict";

  const S = window.semon;
  const { h, t } = S;
  const $ = (id) => document.getElementById(id);
  const SEVERITIES = ["critical", "major", "minor"];
  const CHART_WINDOW_MS = 5 * 60 * 1000; // device time shown on the live chart
  const MAX_POINTS = 3000;
  const state = { device: null, summary: null, detail: null, points: [], feed: [], es: null, downTimer: null };
  const clock = S.clock;
  const typeName = (type) => S.name("alarm_type", type);
  const sevName = (sev) => S.name("severity", sev);
  const district = (d) => (d ? S.name("district", d) : "—");
  const fmt = (v, digits) => (typeof v === "number" ? v.toFixed(digits) : v ?? "–");
  const openDevice = (id) => { location.hash = `#/device/${encodeURIComponent(id)}`; };

  // ------------------------------------------------------------------ connection
  function setConn(live) {
    const el = $("conn");
    clearTimeout(state.downTimer);
    if (live) {
      el.className = "conn live";
      el.textContent = t("ui.conn.live");
    } else {
      // A stream ends every ~15 s and reconnects at once: only a lasting outage is shown.
      state.downTimer = setTimeout(() => { el.className = "conn down"; el.textContent = t("ui.conn.reconnecting"); }, 3000);
    }
  }

  S.setConn = setConn;

  function connect() {
    if (state.es) state.es.close();
    state.es = null;
    if (!S.me || S.me.role !== "regulator") return; // the live board is the regulator's
    const q = new URLSearchParams();
    if (state.device) q.set("device", state.device);
    const es = new EventSource("/board/stream" + (q.toString() ? `?${q}` : ""));
    state.es = es;
    es.addEventListener("open", () => setConn(true));
    es.addEventListener("error", () => setConn(false));
    es.addEventListener("summary", (e) => {
      state.summary = JSON.parse(e.data);
      S.setServerNow(state.summary.at);
      renderFleet();
      if (S.map) S.map.update(state.summary);
    });
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
    h("span", { class: "sev" }, sevName(a.severity)),
    h("span", { class: "what" }, `${typeName(a.type)} · ${a.device_id}`),
    h("span", { class: "since", "data-since": a.start_ts, title: S.dateTime(a.start_ts) },
      a.active === false ? t("ui.cleared") : S.when(a.start_ts)),
    h("span", { class: "where" }, [district(a.district), (a.firm_name || a.firm_id) && t("ui.firm", { name: a.firm_name || a.firm_id }),
      S.name("kind", a.kind)].filter(Boolean).join(" · ")),
    a.message ? h("span", { class: "msg" }, a.message) : null);
  }

  function renderFleet() {
    const s = state.summary;
    if (!s) return;
    const counters = [
      ["Elevators", t("ui.counter.elevators"), s.devices.elevator || 0, ""],
      ["Vessels", t("ui.counter.vessels"), s.devices.vessel || 0, ""],
      ...SEVERITIES.map((sev) => [`Open ${sev}`, t("ui.counter.open", { sev: sevName(sev) }), s.open[sev] || 0, sev]),
      ["Raised 24 h", t("ui.counter.raised_24h"), s.raised_24h, ""],
    ];
    // data-counter keeps a stable machine key; the label is the reader's language.
    $("counters").replaceChildren(...counters.map(([key, name, n, cls]) =>
      h("div", { class: `counter ${cls}${n === 0 && cls ? " zero" : ""}`, "data-counter": key }, h("b", {}, n),
        h("span", {}, name))));

    // Keep the cards already shown (so only new alarms flash), drop closed ones, add new ones.
    const list = $("alarms");
    const shown = new Map([...list.children].map((li) => [li.dataset.alarmId, li]));
    const fresh = list.dataset.ready === "1";
    const cards = s.alarms.map((a) => {
      const old = shown.get(String(a.id));
      if (old && old.dataset.severity === a.severity && old.dataset.lang === S.lang) return old;
      const card = alarmCard(a, fresh && !old ? " new" : "");
      card.dataset.lang = S.lang;
      return card;
    });
    list.replaceChildren(...cards);
    list.dataset.ready = "1";
    const total = SEVERITIES.reduce((n, sev) => n + (s.open[sev] || 0), 0);
    $("open-count").textContent = total > s.alarms.length ? t("ui.of_total", { shown: s.alarms.length, total }) : `(${total})`;
    $("no-alarms").hidden = s.alarms.length > 0;

    $("districts").replaceChildren(...s.districts.map((d) => {
      const open = SEVERITIES.reduce((n, sev) => n + (d.open[sev] || 0), 0);
      const worst = SEVERITIES.find((sev) => d.open[sev]) || "calm";
      return h("div", { class: `district ${worst}`, "data-district": d.name, title: SEVERITIES.map(
        (sev) => `${sevName(sev)}: ${d.open[sev] || 0}`).join(", ") },
      h("b", {}, district(d.name)), h("span", { class: "n" }, open), h("span", { class: "lbl" }, ` ${t("ui.open_n", { n: "" }).trim()}`),
      h("small", {}, t("ui.devices_n", { n: d.devices })));
    }));

    const ids = $("device-ids");
    if (!ids.dataset.loaded) {
      ids.dataset.loaded = "1";
      S.api("/devices?limit=1000&sort=id").then((r) => (r.ok ? r.json() : { items: [] })).then((page) => {
        ids.replaceChildren(...page.items.map((d) => h("option", { value: d.id }, `${S.name("kind", d.kind)} · ${district(d.district)}`)));
      }).catch(() => { ids.dataset.loaded = ""; });
    }
  }

  function renderFeed() {
    $("feed").replaceChildren(...state.feed.map((x) => h("li", { "data-event-id": x.event_id },
      h("time", {}, clock(Date.parse(x.at))), h("span", { class: `ev ${x.event}` }, S.name("event", x.event)),
      h("a", { href: `#/device/${encodeURIComponent(x.alarm.device_id)}` }, x.alarm.device_id),
      h("span", {}, `${typeName(x.alarm.type)} (${sevName(x.alarm.severity)})`))));
    $("no-feed").hidden = state.feed.length > 0;
  }

  function onTransition(tr) {
    state.feed.unshift(tr);
    state.feed.length = Math.min(state.feed.length, 15);
    renderFeed();
    if (state.device && tr.alarm.device_id === state.device && state.detail) {
      const others = state.detail.alarms.filter((a) => a.id !== tr.alarm.id);
      state.detail.alarms = [tr.alarm, ...others];
      renderDeviceAlarms();
    }
  }

  // ------------------------------------------------------------------ device view
  async function loadDevice(id) {
    $("dev-title").textContent = id;
    $("dev-meta").textContent = t("ui.loading");
    const r = await S.api(`/board/device/${encodeURIComponent(id)}`);
    if (!r.ok) {
      $("dev-meta").textContent = r.status === 404 ? t("ui.no_device") : t("ui.error", { status: r.status });
      state.detail = null;
      return;
    }
    const detail = await r.json();
    if (state.device !== id) return; // the user moved on meanwhile
    state.detail = detail;
    state.points = detail.history.slice();
    renderDevice();
  }

  function renderDevice() {
    const detail = state.detail;
    if (!detail) return;
    const d = detail.device;
    $("dev-title").textContent = `${d.id} · ${S.name("kind", d.kind)}`;
    $("dev-meta").textContent = [d.address, district(d.district), d.firm_name && t("ui.maintained_by", { name: d.firm_name }),
      d.use_unit_name && t("ui.use_unit", { name: d.use_unit_name }), d.equipment_code].filter(Boolean).join(" · ");
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
    state.detail.latest = p;
    renderValues(p);
    drawChart();
  }

  function renderValues(v) {
    const box = $("dev-values");
    if (!v) { box.replaceChildren(h("p", { class: "empty" }, t("ui.no_status"))); return; }
    const d = state.detail.device;
    let items;
    // [machine key (data-value), label, value, unit, alert]
    if (d.kind === "elevator") {
      const faults = v.faults ? String(v.faults) : "";
      items = [
        ["Floor", v.floor], ["Direction", v.dir], ["Door", v.door], ["Speed", fmt(v.speed, 2), "m/s"],
        ["Mode", S.name("mode", v.mode)], ["Passenger", v.occupied ? t("ui.yes") : t("ui.no")], ["Load", fmt(v.load, 0), "kg"],
        ["Faults", faults || t("ui.none"), "", !!faults],
      ];
    } else {
      const sp = d.set_pressure;
      const pct = sp && typeof v.pressure === "number" ? ` (${Math.round((100 * v.pressure) / sp)} %)` : "";
      items = [
        ["Pressure", fmt(v.pressure, 3), `MPa${pct}`, sp && v.pressure >= 0.9 * sp],
        ["Temperature", fmt(v.temperature, 1), "°C", d.design_temperature && v.temperature > d.design_temperature],
        ["Level", fmt(v.level, 1), v.level === undefined ? "" : "%"],
        ["Gas", fmt(v.gas_lel, 1), v.gas_lel === undefined ? "" : "% LEL", v.gas_lel >= 25],
        ["Safety valve", v.valve_discharge ? t("ui.discharging") : t("ui.closed"), "", !!v.valve_discharge],
      ];
    }
    items.push(["Reported", clock(v.time)]);
    const LABEL = { Floor: "floor", Direction: "direction", Door: "door", Speed: "speed", Mode: "mode", Passenger: "passenger",
      Load: "load", Faults: "faults", Pressure: "pressure", Temperature: "temperature", Level: "level", Gas: "gas",
      "Safety valve": "valve", Reported: "reported" };
    box.replaceChildren(...items.map(([k, val, unit, alert]) =>
      h("div", { class: `value${alert ? " alert" : ""}`, "data-value": k }, h("span", {}, t(`ui.value.${LABEL[k]}`)),
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
      $("chart-title").textContent = t("ui.chart.floor");
      $("chart-legend").innerHTML = '<i style="background:#4c9aff"></i>floor<i style="background:#8b9bab"></i>speed';
    } else {
      const sp = d.set_pressure;
      if (sp) lines.push([0.9 * sp, "#f59e2b", "90 % of set"], [sp, "#f0504f", "set pressure"]);
      const vals = shown.map((p) => p.pressure);
      lo = Math.min(0, ...vals);
      hi = Math.max(...vals, ...(sp ? [sp * 1.08] : []), 0.1);
      $("chart-title").textContent = t("ui.chart.pressure");
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

  // ------------------------------------------------------------------ sign-in and routing
  const VIEWS = ["signin-view", "fleet-view", "map-view", "desk-view", "hazards-view", "device-view"];
  function show(view) { for (const v of VIEWS) $(v).hidden = v !== view; }

  async function whoami() {
    const r = await S.api("/session");
    if (!r.ok) return null;
    const me = await r.json();
    S.setServerNow(me.now_ms);
    S.timezone = me.timezone || S.timezone;
    return me;
  }

  function renderMe() {
    const me = S.me;
    $("signout").hidden = !(me && me.signed_in);
    const regulator = Boolean(me && me.role === "regulator");
    $("nav").hidden = !me;
    for (const id of ["nav-fleet", "nav-map"]) $(id).hidden = !regulator;
    $("nav-desk").hidden = !me || regulator;
    $("find").hidden = !(me && me.role === "regulator");
    const scope = !me ? "" : me.role === "regulator" ? t("ui.scope.regulator") : me.firm_name || me.use_unit_name || "";
    $("me").textContent = me && me.signed_in ? t("ui.signed_in_as", { name: me.name, scope }) : "";
    $("lang").textContent = t("ui.lang_switch");
  }

  function route() {
    if (!S.me) { show("signin-view"); connect(); return; }
    const hash = location.hash;
    const m = hash.match(/^#\/device\/(.+)$/);
    state.device = null;
    state.detail = null;
    if (hash.startsWith("#/hazard")) {
      // Hazards: everyone's view of their own (the API scopes them), the regulator's of all.
      S.desk.stop();
      show("hazards-view");
      S.hazards.open(hash);
      connect();
      return;
    }
    if (S.me.role !== "regulator") {
      // Firms (and owners) work on their desk: their own alarms through the tenant-scoped API.
      if (hash !== "#/desk") { location.replace("#/desk"); }
      show("desk-view");
      S.desk.start();
      connect();
      return;
    }
    S.desk.stop();
    if (m) {
      state.device = decodeURIComponent(m[1]);
      show("device-view");
      loadDevice(state.device);
    } else if (hash === "#/map") {
      show("map-view");
      S.map.open(state.summary);
    } else {
      show("fleet-view");
      renderFleet();
    }
    connect();
    window.scrollTo(0, 0);
  }

  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("si-key").value.trim();
    const body = key ? { api_key: key } : { username: $("si-user").value.trim(), password: $("si-pass").value };
    const r = await S.api("/session", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("si-pass").value = "";
    $("si-key").value = "";
    if (!r.ok) {
      $("si-error").textContent = t(r.status === 429 ? "ui.signin.throttled" : "ui.signin.failed");
      $("si-error").hidden = false;
      return;
    }
    $("si-error").hidden = true;
    S.me = await r.json();
    S.setServerNow(S.me.now_ms);
    S.timezone = S.me.timezone || S.timezone;
    renderMe();
    location.hash = S.me.role === "regulator" ? "#/" : "#/desk";
    route();
  });

  $("signout").addEventListener("click", async () => {
    await S.api("/session", { method: "DELETE", headers: { "X-CSRF-Token": (S.me && S.me.csrf_token) || "" } });
    S.me = null;
    S.desk.stop();
    renderMe();
    location.hash = "#/";
    route();
  });

  $("lang").addEventListener("click", async () => {
    const lang = S.switchLang();
    S.remember(lang);
    await S.loadLang(lang);
    renderMe();
    renderFleet();
    renderFeed();
    if (state.detail) renderDevice();
    S.desk.render();
    if (S.map) S.map.update(state.summary);
    if (location.hash.startsWith("#/hazard")) S.hazards.render();
  });

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
    for (const el of document.querySelectorAll(".alarm:not(.cleared) [data-since]")) el.textContent = S.when(+el.dataset.since);
    S.desk.tick();
  }, 1000);

  (async () => {
    await S.loadLang(S.lang);
    $("conn").textContent = t("ui.conn.connecting");
    S.me = await whoami();
    renderMe();
    route();
  })();
})();
