// The topology view: draws /api/updates' graph (server-sent events) as SVG. Layout: namespaces
// stacked top to bottom; in each, HostRoles left to right in name order, wrapping at the
// window's width; in each HostRole its hosts in up to four columns. Positions follow from the
// order and the counts only, so an update that changes states or health moves nothing.
// Everything from the cluster is written as text (textContent), never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CARD_W = 150, LINE = 14, PAD = 10, GROUP_HEAD = 24, REGION_HEAD = 28, HOST_COLS = 4;
const $ = (sel) => document.querySelector(sel);

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

function text(parent, x, y, content, cls) {
  const t = el("text", { x, y }, parent);
  if (cls) t.setAttribute("class", cls);
  t.textContent = content;
  return t;
}

// A host's card lists its roles, then its clients (each edge leaves from its client's line).
function hostHeight(h, clients) { return 24 + LINE * Math.max(1, h.badges.length + clients); }

function short(id) { return id.length > 18 ? id.slice(0, 17) + "…" : id; }

// Sizes and positions of everything, from the data alone.
function layout(topology, width) {
  const boxes = new Map(); // id -> {x, y, w, h}
  const clients = new Map(); // host id -> its edges, in order
  for (const e of topology.edges) {
    if (!clients.has(e.from)) clients.set(e.from, []);
    clients.get(e.from).push(e);
  }
  const count = (h) => (clients.get(h.id) || []).length;
  const regions = [];
  let y = PAD;
  for (const region of topology.regions) {
    const r = { region, x: PAD, y, w: 0, h: 0, groups: [] };
    let gx = PAD * 2, gy = y + REGION_HEAD, rowH = 0;
    for (const group of region.groups) {
      const cols = Math.max(1, Math.min(HOST_COLS, group.hosts.length));
      const rows = Math.ceil(group.hosts.length / cols);
      const cardH = group.hosts.reduce((m, h) => Math.max(m, hostHeight(h, count(h))), 38);
      const w = Math.max(CARD_W + 2 * PAD, cols * (CARD_W + PAD) + PAD);
      const h = GROUP_HEAD + Math.max(1, rows) * (cardH + PAD) + PAD;
      if (gx + w > width - PAD && gx > PAD * 2) {
        gx = PAD * 2;
        gy += rowH + PAD * 2;
        rowH = 0;
      }
      const g = { group, x: gx, y: gy, w, h, hosts: [] };
      boxes.set(group.id, g);
      group.hosts.forEach((host, i) => {
        const hb = {
          host,
          x: gx + PAD + (i % cols) * (CARD_W + PAD),
          y: gy + GROUP_HEAD + Math.floor(i / cols) * (cardH + PAD),
          w: CARD_W,
          h: hostHeight(host, count(host)),
          clients: clients.get(host.id) || [],
        };
        g.hosts.push(hb);
        boxes.set(host.id, hb);
      });
      r.groups.push(g);
      gx += w + PAD * 2;
      rowH = Math.max(rowH, h);
      r.w = Math.max(r.w, gx);
    }
    r.h = gy + rowH + PAD * 2 - y;
    if (region.groups.length === 0) r.h = REGION_HEAD + PAD;
    regions.push(r);
    y += r.h + PAD * 2;
  }
  return { boxes, regions, height: y };
}

function hostClass(host) {
  if (host.badges.some((b) => b.state === "Failed")) return "host failed";
  if (!host.ready) return "host not-ready";
  return "host";
}

let selected = "";

function draw(topology) {
  const svg = $("#graph");
  const width = Math.max(900, $("#canvas").clientWidth - 20);
  const { boxes, regions, height } = layout(topology, width);
  // Servers outside the graph (URLs, HostRoles filtered out): a column on the right.
  const outside = [...new Set(topology.edges.filter((e) => !boxes.has(e.to)).map((e) => e.to))].sort();
  const right = regions.reduce((m, r) => Math.max(m, r.x + r.w), width - 260);
  outside.forEach((id, i) => boxes.set(id, { x: right + 40, y: PAD + i * 44, w: 220, h: 30, outside: true }));
  const totalW = outside.length ? right + 280 : Math.max(width, right + PAD);
  const totalH = Math.max(height, PAD + outside.length * 44 + PAD);
  svg.setAttribute("width", totalW);
  svg.setAttribute("height", totalH);
  svg.setAttribute("viewBox", `0 0 ${totalW} ${totalH}`);
  for (const child of [...svg.childNodes]) if (child.nodeName !== "title") svg.removeChild(child);
  // Layers, bottom to top: namespaces, HostRole boxes, peer-network links (under the host
  // cards they join), host cards, client edges.
  const under = el("g", { class: "layer" }, svg);
  const boxesLayer = el("g", { class: "layer" }, svg);
  const nets = el("g", { class: "layer" }, svg);
  const hostsLayer = el("g", { class: "layer" }, svg);
  const edgesLayer = el("g", { class: "layer" }, svg);

  for (const r of regions) {
    const g = el("g", { class: "region", "data-namespace": r.region.namespace }, under);
    el("rect", { x: r.x, y: r.y, width: Math.max(r.w, 200), height: r.h, rx: 10 }, g);
    text(g, r.x + PAD, r.y + 18, "namespace " + r.region.namespace);
    for (const gb of r.groups) {
      const gg = el("g", { class: "group", "data-id": gb.group.id }, boxesLayer);
      el("rect", { x: gb.x, y: gb.y, width: gb.w, height: gb.h }, gg);
      const title = el("title", {}, gg);
      title.textContent = gb.group.urls.join("\n") || gb.group.id;
      text(gg, gb.x + PAD, gb.y + 17, `${gb.group.name}  ${gb.group.readyHosts}/${gb.group.replicas}`);
      if (gb.group.hosts.length === 0) {
        text(gg, gb.x + PAD, gb.y + GROUP_HEAD + 16, "no hosts yet: " + gb.group.roles.join(" "), "badge Pending");
      }
      for (const hb of gb.hosts) {
        const h = hb.host;
        const hg = el("g", { class: hostClass(h), "data-id": h.id, "data-group": gb.group.id, tabindex: 0, role: "button" }, hostsLayer);
        if (h.id === selected) hg.classList.add("selected");
        el("rect", { x: hb.x, y: hb.y, width: hb.w, height: hb.h }, hg);
        const ht = el("title", {}, hg);
        ht.textContent = h.message || (h.ready ? "ready" : "not ready");
        text(hg, hb.x + 8, hb.y + 16, h.name);
        h.badges.forEach((b, i) => {
          const t = text(hg, hb.x + 8, hb.y + 32 + i * LINE, `● ${b.role} ${b.state}`, "badge " + b.state);
          t.setAttribute("data-role", b.role);
        });
        hb.clients.forEach((e, i) => {
          const health = e.health === "Ok" ? "ok" : "failing";
          const detail = e.health === "Ok" ? (e.latencyMs != null ? `${e.latencyMs}ms` : "ok") : (e.reason || "failing");
          const t = text(hg, hb.x + 8, hb.y + 32 + (h.badges.length + i) * LINE,
            `→ ${e.service} ${short(e.to.split("/").pop())} ${detail}`, "edge-label " + health);
          t.setAttribute("data-service", e.service);
        });
        hg.addEventListener("click", () => showHost(h.id));
        hg.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") showHost(h.id); });
      }
    }
  }
  for (const id of outside) {
    const b = boxes.get(id);
    const g = el("g", { class: "outside", "data-id": id }, boxesLayer);
    el("rect", { x: b.x, y: b.y, width: b.w, height: b.h }, g);
    text(g, b.x + 10, b.y + 19, id.length > 32 ? id.slice(0, 31) + "…" : id);
  }

  // Peer networks: each peer to its index (hybrid), or a ring through the peers.
  for (const n of topology.networks) {
    const peers = n.peers.map((p) => boxes.get(p.host)).filter(Boolean);
    const index = n.index && boxes.get(n.index);
    const pairs = [];
    if (index) peers.forEach((p) => pairs.push([p, index]));
    else if (peers.length > 1) peers.forEach((p, i) => { if (peers.length > 2 || i === 0) pairs.push([p, peers[(i + 1) % peers.length]]); });
    for (const [a, b] of pairs) {
      const line = el("line", {
        class: "net", "data-network": n.id,
        x1: a.x + a.w / 2, y1: a.y + a.h / 2, x2: b.x + b.w / 2, y2: b.y + b.h / 2,
      }, nets);
      const t = el("title", {}, line);
      t.textContent = `${n.name} (${n.mode})`;
    }
  }

  // Client → server edges, drawn last (on top): each leaves its client's line on the card and
  // ends at its own place along the server's side.
  const incoming = new Map();
  for (const e of topology.edges) incoming.set(e.to, (incoming.get(e.to) || 0) + 1);
  const arrived = new Map();
  for (const e of topology.edges) {
    const a = boxes.get(e.from), b = boxes.get(e.to);
    if (!a || !b) continue;
    const health = e.health === "Ok" ? "ok" : "failing";
    const line = (a.clients || []).indexOf(e);
    const x1 = a.x + a.w;
    const y1 = line >= 0 ? a.y + 28 + (a.host.badges.length + line) * LINE : a.y + a.h / 2;
    const j = arrived.get(e.to) || 0;
    arrived.set(e.to, j + 1);
    const span = Math.min(b.h, 160) - 12;
    const toLeft = b.x > x1;
    const x2 = toLeft ? b.x : b.x + b.w, y2 = b.y + 12 + ((j + 1) * span) / (incoming.get(e.to) + 1);
    const bend = Math.max(40, Math.abs(x2 - x1) / 2);
    const d = `M${x1},${y1} C${x1 + bend},${y1} ${toLeft ? x2 - bend : x2 + bend},${y2} ${x2},${y2}`;
    const path = el("path", {
      class: "edge " + health, d,
      "data-from": e.from, "data-to": e.to, "data-service": e.service, "data-health": health,
    }, edgesLayer);
    const title = el("title", {}, path);
    const facts = [`${e.service}: ${e.from} → ${e.to}`, health + (e.reason ? ` (${e.reason})` : "")];
    if (e.latencyMs != null) facts.push(`latency ${e.latencyMs} ms`);
    if (e.lastSuccess) facts.push(`last success ${e.lastSuccess}`);
    if (e.lastError) facts.push(`last error: ${e.lastError}`);
    title.textContent = facts.join("\n");
  }

  const hosts = topology.regions.reduce((n, r) => n + r.groups.reduce((m, g) => m + g.hosts.length, 0), 0);
  const groups = topology.regions.reduce((n, r) => n + r.groups.length, 0);
  const failing = topology.edges.filter((e) => e.health !== "Ok").length;
  $("#status").textContent =
    `${groups} HostRoles · ${hosts} hosts · ${topology.edges.length} clients (${failing} failing) · ` +
    `${topology.networks.length} peer networks · updated ${new Date().toLocaleTimeString()}`;
  const nsSelect = $("#f-ns");
  const known = new Set([...nsSelect.options].map((o) => o.value));
  for (const r of topology.regions) {
    if (!known.has(r.namespace)) {
      const o = document.createElement("option");
      o.textContent = r.namespace;
      o.value = r.namespace;
      nsSelect.appendChild(o);
    }
  }
}

function item(list, content) {
  const li = document.createElement("li");
  li.textContent = content;
  list.appendChild(li);
}

async function showHost(id) {
  selected = id;
  document.querySelectorAll(".host.selected").forEach((h) => h.classList.remove("selected"));
  document.querySelectorAll(".host").forEach((h) => { if (h.dataset.id === id) h.classList.add("selected"); });
  const panel = $("#details");
  panel.hidden = false;
  $("#d-title").textContent = id;
  for (const l of ["#d-facts", "#d-roles", "#d-clients", "#d-urls", "#d-conditions", "#d-events"]) $(l).replaceChildren();
  let info;
  try {
    const r = await fetch("/api/host?id=" + encodeURIComponent(id), { cache: "no-store" });
    if (!r.ok) throw new Error(await r.text());
    info = await r.json();
  } catch (err) {
    item($("#d-events"), "cannot read the host: " + err.message);
    return;
  }
  const facts = $("#d-facts");
  const fact = (k, v) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    facts.append(dt, dd);
  };
  fact("HostRole", info.hostRole);
  if (info.host) {
    fact("Ready", info.host.ready ? "yes" : "no");
    if (info.host.message) fact("Why", info.host.message);
    for (const [role, state] of Object.entries(info.host.roles || {})) item($("#d-roles"), `${role}: ${state}`);
    for (const c of info.host.clients || []) {
      item($("#d-clients"), `${c.service} → ${c.server}: ${c.ok ? "ok" : (c.reason || "failing")}` +
        (c.latencyMs != null ? `, ${c.latencyMs} ms` : "") + (c.lastError ? ` — ${c.lastError}` : ""));
    }
  }
  for (const e of info.endpoints || []) item($("#d-urls"), `${e.role}: ${e.url} (${e.scope})`);
  for (const c of info.conditions || []) item($("#d-conditions"), `${c.type}=${c.status} ${c.reason}: ${c.message}`);
  if (info.eventsError) item($("#d-events"), info.eventsError);
  for (const e of info.events || []) item($("#d-events"), `${e.time} ${e.type} ${e.reason}: ${e.message}`);
}

let source = null;
let last = null;
let retry = null;
// After the view turned the page away (every place taken: 503, as its Retry-After says) or went
// away, which EventSource does not retry by itself.
const RETRY_MS = 10000;

function follow() {
  clearTimeout(retry);
  const params = new URLSearchParams(location.search);
  $("#f-ns").value = params.get("ns") || "";
  $("#f-role").value = params.get("role") || "";
  $("#f-hostrole").value = params.get("hostrole") || "";
  if (source) source.close();
  source = new EventSource("/api/updates?" + params.toString());
  source.addEventListener("topology", (ev) => {
    const start = performance.now();
    last = JSON.parse(ev.data);
    draw(last);
    // For the benchmark (bench/view.sh): when the first graph was drawn, and how long it took.
    if (!performance.getEntriesByName("hostrole-drawn").length) {
      performance.mark("hostrole-drawn");
      performance.measure("hostrole-draw", { start, end: performance.now() });
    }
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      $("#status").textContent = "the view is busy or unreachable: trying again in 10 s";
      retry = setTimeout(follow, RETRY_MS);
    } else {
      $("#status").textContent = "reconnecting…";
    }
  };
}

$("#filters").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(ev.target)) if (v) params.set(k, v);
  history.replaceState(null, "", "?" + params.toString());
  if (selected) $("#details").hidden = true;
  follow();
});
$("#close").addEventListener("click", () => { $("#details").hidden = true; selected = ""; });
window.addEventListener("resize", () => { if (last) draw(last); });
follow();
