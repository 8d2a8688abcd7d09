/* semon console: the regulator's map (#/map). Equipment from the registry (lat/lon) on a plain
 * vector outline of Guangzhou drawn here — no network needed, it works offline — or on the tiles
 * of the city's own server when SEMON_MAP_TILE_URL names one ({z}/{x}/{y}). At city
 * scale devices are clustered in a grid (CLUSTER_DEG); a district's button drills down to its
 * devices one by one. Colour = the worst open alarm (critical red, major amber, minor yellow). */
(() => {
  "use strict";
  const S = window.semon;
  const { t } = S;
  const $ = (id) => document.getElementById(id);
  const NS = "http://www.w3.org/2000/svg";
  const SEVERITIES = ["critical", "major", "minor"];
  const CLUSTER_DEG = 0.06; // ≈ 6 km cells at city scale
  // Guangzhou's administrative extent, simplified to its bounding outline (WGS-84).
  const CITY = { south: 22.55, north: 23.95, west: 112.95, east: 114.06 };
  const st = { devices: null, summary: null, district: null };

  const svg = (tag, attrs, ...kids) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const k of kids) e.append(k);
    return e;
  };
  const worst = (sevs) => SEVERITIES.find((s) => sevs.has(s)) || "calm";

  async function loadDevices() {
    const all = [];
    for (let offset = 0; ; offset += 1000) {
      const r = await S.api(`/devices?limit=1000&offset=${offset}&sort=id`);
      if (!r.ok) break;
      const page = await r.json();
      all.push(...page.items.filter((d) => typeof d.lat === "number" && typeof d.lon === "number"));
      if (offset + 1000 >= page.total) break;
    }
    st.devices = all;
  }

  function draw() {
    const box = $("map");
    if (!st.devices || !box || $("map-view").hidden) return;
    const open = new Map(); // device id → severities of its open alarms
    for (const a of (st.summary && st.summary.alarms) || []) {
      if (!open.has(a.device_id)) open.set(a.device_id, new Set());
      open.get(a.device_id).add(a.severity);
    }
    const devs = st.district ? st.devices.filter((d) => d.district === st.district) : st.devices;
    let b = CITY;
    if (st.district && devs.length) {
      const pad = 0.01;
      b = { south: Math.min(...devs.map((d) => d.lat)) - pad, north: Math.max(...devs.map((d) => d.lat)) + pad,
        west: Math.min(...devs.map((d) => d.lon)) - pad, east: Math.max(...devs.map((d) => d.lon)) + pad };
    }
    // Web Mercator (as every tile server draws), at the tile zoom that makes the view ≈ 800 px wide.
    const z = Math.max(0, Math.min(18, Math.floor(Math.log2((800 * 360) / ((b.east - b.west) * 256)))));
    const world = 256 * 2 ** z;
    const px = (lon) => ((lon + 180) / 360) * world;
    const py = (lat) => {
      const r = (lat * Math.PI) / 180;
      return ((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * world;
    };
    const x0 = px(b.west), y0 = py(b.north);
    const x = (lon) => px(lon) - x0;
    const y = (lat) => py(lat) - y0;
    const W = Math.round(x(b.east)), H = Math.round(y(b.south));
    box.setAttribute("viewBox", `0 0 ${W} ${H}`);
    // The drawing is scaled to fit the screen: sizes in screen pixels times k stay readable.
    const k = Math.max(W, H) / 600;
    const tiles = [];
    const url = S.me && S.me.map_tile_url;
    if (url) {
      // The city's own tile server (SEMON_MAP_TILE_URL); without one, the outline alone (offline).
      for (let tx = Math.floor(x0 / 256); tx * 256 < x0 + W; tx++) {
        for (let ty = Math.floor(y0 / 256); ty * 256 < y0 + H; ty++) {
          tiles.push(svg("image", { class: "tile", href: url.replace("{z}", z).replace("{x}", tx).replace("{y}", ty),
            x: tx * 256 - x0, y: ty * 256 - y0, width: 256, height: 256 }));
        }
      }
    }
    const outline = svg("rect", { class: tiles.length ? "outline over-tiles" : "outline", x: x(CITY.west),
      y: y(CITY.north), width: x(CITY.east) - x(CITY.west), height: y(CITY.south) - y(CITY.north) });
    const kids = [...tiles, outline];
    if (st.district) {
      for (const d of devs) {
        const sev = worst(open.get(d.id) || new Set());
        kids.push(svg("circle", { class: `marker ${sev}`, cx: x(d.lon), cy: y(d.lat), r: (sev === "calm" ? 5 : 8) * k,
          "data-device": d.id, "data-severity": sev }, svg("title", {}, `${d.id} · ${d.address || ""}`)));
      }
    } else {
      const cells = new Map();
      for (const d of devs) {
        const k = `${Math.floor(d.lat / CLUSTER_DEG)}:${Math.floor(d.lon / CLUSTER_DEG)}`;
        const c = cells.get(k) || { n: 0, lat: 0, lon: 0, sev: new Set(), ids: [] };
        c.n += 1; c.lat += d.lat; c.lon += d.lon; c.ids.push(d.id);
        for (const s of open.get(d.id) || []) c.sev.add(s);
        cells.set(k, c);
      }
      for (const c of cells.values()) {
        const sev = worst(c.sev);
        const cx = x(c.lon / c.n), cy = y(c.lat / c.n);
        kids.push(svg("g", { class: `cluster ${sev}`, "data-count": c.n, "data-severity": sev, "data-devices": c.ids.join(" ") },
          svg("circle", { cx, cy, r: (10 + 4 * Math.log2(c.n)) * k }),
          svg("text", { x: cx, y: cy + 4 * k, "text-anchor": "middle", "font-size": 12 * k }, String(c.n))));
      }
    }
    box.replaceChildren(...kids);
    const nOpen = devs.filter((d) => open.has(d.id)).length;
    $("map-scope").textContent = st.district ? S.name("district", st.district) : t("ui.map.all");
    $("map-count").textContent = t("ui.map.devices_n", { n: devs.length, open: nOpen });
    const districts = [...new Set(st.devices.map((d) => d.district).filter(Boolean))].sort();
    const btn = (name, label) => {
      const e = document.createElement("button");
      e.type = "button";
      e.className = `btn small${st.district === name ? " on" : ""}`;
      e.dataset.district = name || "";
      e.textContent = label;
      e.addEventListener("click", () => { st.district = name; draw(); });
      return e;
    };
    $("map-districts").replaceChildren(btn(null, t("ui.map.all")), ...districts.map((d) => btn(d, S.name("district", d))));
  }

  S.map = {
    async open(summary) {
      if (summary) st.summary = summary;
      if (!st.devices) await loadDevices();
      draw();
    },
    update(summary) { if (summary) st.summary = summary; draw(); },
  };
})();
