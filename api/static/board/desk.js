/* semon console: the dispatcher's desk of a maintenance firm (#/desk).
 * Its open alarms, most urgent first (severity, then the longest waiting), with the device's
 * address, use unit and contact; ack, assign to a technician by name, comment; the rescue steps
 * dispatch → arrive → release with the cause, and the arrival clock of TSG T5002 (30 min from
 * the alarm by default, SEMON_RESCUE_ARRIVAL_LIMIT_S) that turns amber at 2/3 and red at 5/6 of
 * the limit, before it runs out. Everything goes through the tenant-scoped API with the session
 * cookie and the CSRF token: the desk is a client of the API, not a second back end. */
(() => {
  "use strict";
  const S = window.semon;
  const { h, t } = S;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 2000;
  const EVENTS_STALE_MS = 15000;
  const RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
  const CAUSES = ["external", "misuse", "equipment", "unknown"]; // the rescue policy's causes (api/routes_rescues.py)
  const AMBER_AT = 2 / 3, RED_AT = 5 / 6; // shares of the arrival limit
  const st = { inflight: null, again: false, timer: null, alarms: [], rescues: new Map(), events: new Map(), devices: new Map(), maint: new Map(), cards: new Map() };

  async function json(url) {
    const r = await S.api(url);
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  }

  // One poll at a time (the timer, and one after each action): asked for while one runs, it runs
  // again right after, so what an action changed is always read after the action.
  function poll() {
    if (st.inflight) { st.again = true; return st.inflight; }
    st.inflight = (async () => {
      do { st.again = false; await pollOnce(); } while (st.again);
    })().finally(() => { st.inflight = null; });
    return st.inflight;
  }

  async function pollOnce() {
    try {
      const [alarms, rescues] = await Promise.all([
        json("/alarms?state=active&limit=100"),
        json("/rescues?limit=100&sort=-alarm_at"),
      ]);
      st.alarms = alarms.items.sort((a, b) => (RANK[a.severity] ?? 9) - (RANK[b.severity] ?? 9) || a.start_ts - b.start_ts);
      st.rescues = new Map(rescues.items.map((r) => [r.alarm_id, r]));
      const now = Date.now();
      await Promise.all(st.alarms.map(async (a) => {
        // An alarm's events are fetched again only when it or its rescue changed (or after
        // EVENTS_STALE_MS, for escalations): a firm with many open alarms stays within its rate limit.
        const r = st.rescues.get(a.id) || {};
        const sig = `${a.updated_at}|${r.status}|${r.breach_escalated_at}`;
        const seen = st.events.get(a.id);
        if (!seen || seen.sig !== sig || now - seen.at > EVENTS_STALE_MS) {
          st.events.set(a.id, { sig, at: now, events: (await json(`/alarms/${a.id}`)).events });
        }
        if (!st.devices.has(a.device_id)) st.devices.set(a.device_id, await json(`/devices/${encodeURIComponent(a.device_id)}`));
        if (!st.maint.has(a.device_id)) {
          st.maint.set(a.device_id, await json(`/devices/${encodeURIComponent(a.device_id)}/maintenance`).catch(() => null));
        }
      }));
      render();
      S.setConn(true);
    } catch (e) {
      // The API is away or refusing: say so in the header instead of showing a stale desk as live.
      console.warn("desk poll failed", e);
      S.setConn(false);
    }
  }

  async function act(card, url, body) {
    const err = card.querySelector(".err");
    const r = await S.post(url, body);
    if (!r.ok) {
      const p = await r.json().catch(() => ({}));
      err.textContent = t("ui.desk.failed", { detail: p.title ? `${p.title}: ${p.detail || ""}` : r.status });
      err.hidden = false;
    } else {
      err.hidden = true;
    }
    await poll();
  }

  function field(cls, ph) { return h("input", { class: cls, placeholder: ph, "aria-label": ph }); }

  function newCard(a) {
    const card = h("li", { class: `desk-alarm alarm ${a.severity}`, "data-alarm-id": a.id, "data-device": a.device_id,
      "data-type": a.type, "data-severity": a.severity });
    const assignee = field("assignee", t("ui.desk.assignee"));
    const comment = field("comment", t("ui.desk.comment_ph"));
    const responder = field("responder", t("ui.desk.responder"));
    const cause = h("select", { class: "cause", "aria-label": t("ui.desk.cause") },
      ...CAUSES.map((c) => h("option", { value: c }, S.name("cause", c))));
    const rid = () => (st.rescues.get(a.id) || {}).id;
    card.append(
      h("div", { class: "head" }), h("p", { class: "where" }), h("p", { class: "state" }),
      h("div", { class: "actions" },
        h("button", { class: "btn ack", type: "button", onclick: () => act(card, `/alarms/${a.id}/ack`, {}) }, t("ui.desk.ack")),
        assignee, h("button", { class: "btn assign", type: "button", onclick: () => assignee.value.trim() &&
          act(card, `/alarms/${a.id}/assign`, { assignee: assignee.value.trim() }) }, t("ui.desk.assign")),
        comment, h("button", { class: "btn comment-btn", type: "button", onclick: () => {
          const text = comment.value.trim();
          if (text) { comment.value = ""; act(card, `/alarms/${a.id}/comments`, { text }); }
        } }, t("ui.desk.comment"))),
      h("div", { class: "rescue", hidden: true },
        h("b", {}, t("ui.desk.rescue")), h("span", { class: "rescue-status" }), h("span", { class: "arrival-clock" }),
        h("div", { class: "actions" },
          responder, h("button", { class: "btn dispatch", type: "button", onclick: () =>
            act(card, `/rescues/${rid()}/dispatch`, { tier: "own_firm", responder: responder.value.trim() || null }) },
          t("ui.desk.dispatch")),
          h("button", { class: "btn arrive", type: "button", onclick: () => act(card, `/rescues/${rid()}/arrive`, {}) },
            t("ui.desk.arrive")),
          cause, h("button", { class: "btn release", type: "button", onclick: () =>
            act(card, `/rescues/${rid()}/release`, { cause: cause.value }) }, t("ui.desk.release")))),
      h("p", { class: "err error", role: "alert", hidden: true }),
      h("details", { class: "events", open: true }, h("summary", {}, t("ui.desk.events")), h("ol", {})),
      h("p", { class: "maint muted" }));
    return card;
  }

  function update(card, a) {
    const d = st.devices.get(a.device_id) || {};
    const attrs = d.attributes || {};
    card.className = `desk-alarm alarm ${a.severity}`;
    card.querySelector(".head").replaceChildren(
      h("span", { class: "sev" }, S.name("severity", a.severity)),
      h("span", { class: "what" }, `${S.name("alarm_type", a.type)} · ${a.device_id}`),
      h("span", { class: "since", "data-since": a.start_ts, title: S.dateTime(a.start_ts) }, S.when(a.start_ts)));
    card.querySelector(".where").textContent = [
      d.address && `${t("ui.desk.address")}：${d.address}`, d.district && S.name("district", d.district),
      d.use_unit_name && `${t("ui.desk.use_unit")}：${d.use_unit_name}`,
      (attrs.contact || attrs.contact_phone) && `${t("ui.desk.contact")}：${[attrs.contact, attrs.contact_phone].filter(Boolean).join(" ")}`,
    ].filter(Boolean).join(" · ");
    card.querySelector(".state").textContent = [
      a.acknowledged ? `${t("ui.desk.acked")}（${a.acked_by || ""}）` : "",
      a.assignee ? t("ui.desk.assigned_to", { name: a.assignee }) : "",
    ].filter(Boolean).join(" · ");
    card.querySelector("button.ack").disabled = a.acknowledged;

    const r = st.rescues.get(a.id);
    const box = card.querySelector(".rescue");
    box.hidden = !r;
    if (r) {
      box.dataset.status = r.status;
      box.dataset.alarmAt = String(Date.parse(r.alarm_at));
      box.querySelector(".rescue-status").textContent = S.t(`ui.desk.rescue_status.${r.status}`) +
        (r.responder ? ` · ${r.responder}` : "") + (r.cause ? ` · ${S.name("cause", r.cause)}` : "");
      box.querySelector("button.dispatch").disabled = r.status !== "open";
      box.querySelector("button.arrive").disabled = r.status !== "dispatched";
      box.querySelector("button.release").disabled = r.status !== "arrived";
    }
    const events = (st.events.get(a.id) || {}).events || [];
    card.querySelector(".events ol").replaceChildren(...events.slice(-8).reverse().map((e) => {
      const x = e.details || {};
      const extra = x.text || x.assignee || x.responder || (x.cause && S.name("cause", x.cause)) || "";
      return h("li", { "data-event": e.event }, h("time", {}, S.clock(Date.parse(e.at))), " ",
        h("span", { class: `ev ${e.event}` }, S.name("event", e.event)), " ", h("span", { class: "actor" }, e.actor),
        extra ? ` · ${extra}` : "");
    }));
    const m = st.maint.get(a.device_id);
    const plan = m && m.plan;
    const dues = plan ? [plan.half_month_due, plan.quarterly_due, plan.half_year_due, plan.yearly_due].filter(Boolean).sort() : [];
    card.querySelector(".maint").textContent = [
      dues.length ? t("ui.desk.next_due", { day: dues[0] }) : "",
      m && m.inspection && m.inspection.due ? t("ui.desk.inspection_due", { day: m.inspection.due }) : "",
    ].filter(Boolean).join(" · ");
  }

  function tick() {
    // The arrival clock runs while nobody is on site yet.
    const limit = (S.me && S.me.rescue_arrival_limit_s) || 1800;
    for (const box of document.querySelectorAll("#desk .rescue")) {
      const clock = box.querySelector(".arrival-clock");
      if (box.hidden || !["open", "dispatched"].includes(box.dataset.status)) { clock.textContent = ""; clock.className = "arrival-clock"; continue; }
      const elapsed = (S.now() - Number(box.dataset.alarmAt)) / 1000;
      const left = limit - elapsed;
      const level = left <= 0 ? "over" : elapsed >= RED_AT * limit ? "red" : elapsed >= AMBER_AT * limit ? "amber" : "ok";
      clock.className = `arrival-clock ${level}`;
      clock.dataset.level = level;
      clock.textContent = left > 0 ? t("ui.desk.arrival_clock", { left: S.mmss(left), limit: Math.round(limit / 60) })
        : t("ui.desk.arrival_over", { over: S.mmss(-left) });
    }
    for (const el of document.querySelectorAll("#desk [data-since]")) el.textContent = S.when(+el.dataset.since);
  }

  function render() {
    const list = $("desk");
    if (!list) return;
    $("desk-firm").textContent = (S.me && (S.me.firm_name || S.me.use_unit_name)) || "";
    const cards = st.alarms.map((a) => {
      let card = st.cards.get(a.id);
      if (!card || card.dataset.lang !== S.lang) {
        card = newCard(a);
        card.dataset.lang = S.lang;
        st.cards.set(a.id, card);
      }
      update(card, a);
      return card;
    });
    for (const id of [...st.cards.keys()]) if (!st.alarms.some((a) => a.id === id)) st.cards.delete(id);
    list.replaceChildren(...cards);
    $("no-desk").hidden = cards.length > 0;
    tick();
  }

  S.desk = {
    start() { if (!st.timer) { poll(); st.timer = setInterval(poll, POLL_MS); } },
    stop() { clearInterval(st.timer); st.timer = null; st.cards.clear(); st.alarms = []; },
    render, tick,
  };
})();
