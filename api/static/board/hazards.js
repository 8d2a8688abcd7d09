/* semon console: hidden hazards (隐患, #/hazards and #/hazard/<id>, docs/hazards.md).
 * The list of the caller's hazards (a firm its own, the regulator all), a form to record one, and
 * a hazard's page with every step (who, when, note), its evidence files and the next steps as
 * actions: confirm / reject a proposal, assign, attach evidence, rectify, and — the regulator's —
 * verify or reopen. Every action goes through the API with the session cookie and CSRF token. */
(() => {
  "use strict";
  const S = window.semon;
  const { h, t } = S;
  const $ = (id) => document.getElementById(id);
  const st = { types: null, id: null };
  // The steps a hazard in each status offers, and whether they need a note or the regulator.
  const NEXT = { candidate: ["confirm", "reject"], open: ["assign", "rectify"], rectified: ["verify", "reopen"] };
  const NEEDS_NOTE = new Set(["reject", "rectify", "reopen"]);
  const REGULATOR_ONLY = new Set(["verify", "reopen"]);

  async function json(url) {
    const r = await S.api(url);
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  }
  const hname = (x) => (S.lang === "en" ? x.name_en : x.name_zh);

  async function types() {
    if (!st.types) st.types = await json("/hazards/types");
    return st.types;
  }

  function fail(el, r, p) {
    el.textContent = t("ui.desk.failed", { detail: p && p.title ? `${p.title}: ${p.detail || ""}` : r.status });
    el.hidden = false;
  }

  async function list() {
    const q = new URLSearchParams({ limit: "200" });
    if ($("hz-status").value) q.set("status", $("hz-status").value);
    if ($("hz-overdue").checked) q.set("overdue", "true");
    const [page, kinds] = await Promise.all([json(`/hazards?${q}`), types()]);
    $("hz-list").replaceChildren(...page.items.map((x) => h("li", {
      class: `hz ${x.hazard_class} ${x.status}${x.overdue ? " overdue" : ""}`, "data-hazard-id": x.id,
      "data-status": x.status,
    },
      h("a", { href: `#/hazard/${x.id}` }, `#${x.id} ${hname(x)}`), ` · ${x.device_id} · `,
      h("span", { class: "hz-class" }, t(`hazard.class.${x.hazard_class}`)), " · ",
      h("span", { class: "hz-status" }, t(`hazard.status.${x.status}`)),
      x.deadline ? ` · ${t("ui.hazards.deadline", { day: x.deadline })}` : "",
      x.overdue ? h("b", { class: "hz-overdue" }, ` ${t("ui.hazards.overdue")}`) : "")));
    $("no-hz").hidden = page.items.length > 0;
    const code = $("hz-code");
    if (!code.options.length || code.dataset.lang !== S.lang) {
      code.replaceChildren(...kinds.map((k) => h("option", { value: k.code },
        `${hname(k)} · ${t(`hazard.class.${k.hazard_class}`)} (${k.code})`)));
      code.dataset.lang = S.lang;
    }
  }

  async function one(id) {
    const x = await json(`/hazards/${id}`);
    const regulator = S.me && S.me.role === "regulator";
    $("hz-title").textContent = `#${x.id} ${hname(x)}`;
    $("hz-meta").textContent = [
      x.device_id, t(`hazard.class.${x.hazard_class}`), t(`hazard.status.${x.status}`),
      x.deadline && t("ui.hazards.deadline", { day: x.deadline }), x.assignee && t("ui.desk.assigned_to", { name: x.assignee }),
      t("ui.hazards.found", { when: S.dateTime(Date.parse(x.found_at)), by: x.found_by }),
    ].filter(Boolean).join(" · ");
    $("hz-one").dataset.status = x.status;
    $("hz-desc").textContent = x.description || "";
    $("hz-steps").replaceChildren(...x.steps.map((s) => h("li", { "data-step": s.step },
      h("time", {}, S.dateTime(Date.parse(s.at))), " ", h("b", {}, t(`hazard.step.${s.step}`)), " ",
      h("span", { class: "actor" }, s.actor), s.note ? ` · ${s.note}` : "")));
    $("hz-evidence").replaceChildren(...x.evidence.map((e) => h("li", {},
      h("a", { href: `/hazards/${x.id}/evidence/${e.id}`, target: "_blank", rel: "noopener" }, e.filename),
      ` · ${Math.ceil(e.size / 1024)} kB · ${e.uploaded_by}`)));
    const steps = (NEXT[x.status] || []).filter((s) => regulator || !REGULATOR_ONLY.has(s));
    const note = h("input", { id: "hz-note", placeholder: t("ui.hazards.note"), "aria-label": t("ui.hazards.note") });
    const who = h("input", { id: "hz-assignee", placeholder: t("ui.desk.assignee"), "aria-label": t("ui.desk.assignee") });
    const file = h("input", { id: "hz-file", type: "file", "aria-label": t("ui.hazards.evidence") });
    const err = h("p", { class: "err error", role: "alert", hidden: true });
    const buttons = steps.map((s) => h("button", { class: `btn hz-${s}`, type: "button", onclick: async () => {
      if (NEEDS_NOTE.has(s) && !note.value.trim()) { err.textContent = t("ui.hazards.note_needed"); err.hidden = false; return; }
      const body = { note: note.value.trim() };
      if ((s === "assign" || s === "confirm") && who.value.trim()) body.assignee = who.value.trim();
      const r = await S.post(`/hazards/${x.id}/${s}`, body);
      if (!r.ok) return fail(err, r, await r.json().catch(() => null));
      one(x.id);
    } }, t(`hazard.step.${s}`)));
    const upload = ["candidate", "open", "rectified"].includes(x.status) ? h("button", { class: "btn hz-upload", type: "button",
      onclick: async () => {
        const f = file.files && file.files[0];
        if (!f) return;
        const r = await S.api(`/hazards/${x.id}/evidence?filename=${encodeURIComponent(f.name)}`, {
          method: "POST", body: f,
          headers: { "Content-Type": f.type || "application/octet-stream", "X-CSRF-Token": (S.me && S.me.csrf_token) || "" },
        });
        if (!r.ok) return fail(err, r, await r.json().catch(() => null));
        one(x.id);
      } }, t("ui.hazards.upload")) : null;
    $("hz-actions").replaceChildren(
      ...(steps.length ? [note, ...(steps.some((s) => s === "assign" || s === "confirm") ? [who] : []), ...buttons] : []),
      ...(upload ? [file, upload] : []), err);
  }

  async function open(hash) {
    const m = hash.match(/^#\/hazard\/(\d+)$/);
    st.id = m ? Number(m[1]) : null;
    $("hz-list-box").hidden = Boolean(m);
    $("hz-one").hidden = !m;
    try {
      await (m ? one(st.id) : list());
      S.setConn(true);
    } catch (e) {
      console.warn("hazards", e);
      S.setConn(false);
    }
  }

  $("hz-filter").addEventListener("change", () => list());
  $("hz-record").addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = $("hz-record-err");
    const r = await S.post("/hazards", { device_id: $("hz-device").value.trim(), code: $("hz-code").value,
      description: $("hz-description").value.trim() });
    if (!r.ok) return fail(err, r, await r.json().catch(() => null));
    err.hidden = true;
    const x = await r.json();
    location.hash = `#/hazard/${x.id}`;
  });

  S.hazards = { open, render: () => (st.id === null ? list() : one(st.id)).catch(() => S.setConn(false)) };
})();
