// webfarm's dashboard: draws the farm from the monitor's frames (server-sent events, one per
// scrape) and sends the actions a person chooses. No library, no network but the monitor.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const history = new Map(); // series name -> [[at_ms, value], ...]
let keepMs = 15 * 60 * 1000;
let current = null;

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const svg = (tag, attrs = {}, text) => {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const fmt = (x) => x === null || x === undefined ? "–" : x >= 100 ? x.toFixed(0) : x.toFixed(1);
const time = (ms) => new Date(ms).toLocaleTimeString();
const pct = (x) => x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %";
const msec = (x) => x === null || x === undefined ? "–" : (1000 * x).toFixed(x < 0.01 ? 2 : 1);

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

async function act(url, body, question) {
  if (!window.confirm(question)) return;
  try {
    const resp = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const answer = await resp.json();
    toast(answer.ok ? "done: " + answer.ok : "refused: " + answer.error);
  } catch (e) {
    toast("failed: " + e);
  }
}

function nodeActions(n) {
  if (n.role === "monitor") return "";
  const cell = el("span");
  for (const verb of ["stop", "kill", "start"]) {
    cell.append(el("button", {
      "data-node": n.name, "data-verb": verb,
      onclick: () => act(`/api/nodes/${n.name}/${verb}`, {}, `${verb} ${n.name}?`),
    }, verb), " ");
  }
  return cell;
}

function renderNodes(view) {
  const body = $("#nodes tbody");
  body.replaceChildren(...view.nodes.map((n) => el("tr", { "data-node": n.name },
    el("td", {}, n.name), el("td", {}, n.role), el("td", {}, n.address),
    el("td", { class: "state " + n.state }, n.state), el("td", { class: "reason" }, n.reason || ""),
    el("td", { class: "actions" }, nodeActions(n)))));
}

function serverControls(backend, s) {
  const weight = el("input", { class: "weight", type: "number", min: "0", max: "256", value: String(s.weight) });
  const set = el("button", { onclick: () => act(`/api/servers/${backend}/${s.name}/weight`, { value: weight.value }, `set the weight of ${backend}/${s.name} to ${weight.value}?`) }, "set weight");
  const state = el("select", {}, ...["ready", "drain", "maint"].map((v) => {
    const o = el("option", { value: v }, v);
    if (v === s.admin) o.selected = true;
    return o;
  }));
  state.addEventListener("change", () => act(`/api/servers/${backend}/${s.name}/state`, { value: state.value }, `put ${backend}/${s.name} in state ${state.value}?`));
  const backup = el("input", { type: "checkbox", title: "backup: traffic only while no active server is usable" });
  backup.checked = s.backup;
  backup.addEventListener("change", () => act(`/api/servers/${backend}/${s.name}/backup`, { value: String(backup.checked) }, `make ${backend}/${s.name} ${backup.checked ? "a backup" : "an active"} server?`));
  return el("span", {}, weight, " ", set, " ", state, " ", el("label", {}, backup, " backup"));
}

function renderBackends(view) {
  const box = $("#backends");
  const parts = [];
  for (const lb of view.lbs) {
    for (const b of lb.backends) {
      parts.push(el("h3", {}, `${lb.name} → backend ${b.name}: ${fmt(b.rps)} req/s, 5xx ${pct(b.error_rate)}, p50 ${msec(b.p50)} ms, p99 ${msec(b.p99)} ms, ${b.queued} queued, ${lb.conns} client connections`));
      const rows = b.servers.map((s) => el("tr", { "data-server": s.name },
        el("td", {}, s.name + (s.backup ? " (backup)" : "")), el("td", { class: "state " + s.state }, s.state),
        el("td", {}, s.check), el("td", { class: "num" }, s.conns), el("td", { class: "num" }, fmt(s.rps)),
        el("td", { class: "num" }, pct(s.error_rate)), el("td", { class: "num" }, msec(s.p50)), el("td", { class: "num" }, msec(s.p99)),
        el("td", {}, serverControls(b.name, s))));
      parts.push(el("table", {}, el("thead", {}, el("tr", {}, ...["server", "state", "last check", "in flight", "req/s", "5xx", "p50 ms", "p99 ms", "weight / state / backup"].map((h) => el("th", {}, h)))), el("tbody", {}, ...rows)));
    }
  }
  if (!view.lbs.length) parts.push(el("p", {}, "no load balancer answers"));
  box.replaceChildren(...parts);
}

function renderAlerts(view) {
  const list = $("#alerts");
  const alerts = view.alerts || [];
  if (!alerts.length) {
    list.replaceChildren(el("li", { class: "quiet" }, "none firing"));
    return;
  }
  list.replaceChildren(...alerts.map((a) => el("li", { class: a.state, "data-alert": a.labels.alertname },
    el("strong", {}, `${a.labels.alertname} ${a.state}`), ` since ${time(a.since_ms)}: ${a.summary}`)));
}

function renderDb(view) {
  const db = view.db;
  $("#db-summary").textContent = db.leader ? `primary (Raft leader): ${db.leader}, term ${db.term}` : `no leader known (term ${db.term})`;
  $("#db tbody").replaceChildren(...db.nodes.map((n) => el("tr", { "data-db": n.name },
    el("td", {}, n.name), el("td", { class: "state " + (n.raft_state === "unreachable" ? "down" : "up") }, n.raft_state),
    el("td", { class: "num" }, n.commit_index), el("td", { class: "num" }, n.applied_index),
    el("td", { class: "num" }, n.lag === null ? "–" : n.lag))));
}

// The seed's diagram: users → DNS → load balancers → web servers → db primary and replicas.
function renderDiagram(view) {
  const root = $("#diagram");
  const width = root.clientWidth || 1000;
  const cols = [0.02, 0.17, 0.34, 0.55, 0.78].map((f) => f * width);
  const boxW = Math.min(150, width * 0.15);
  const boxH = 60; // a title and up to three lines
  const mid = boxH / 2;
  const items = [];
  const column = (x, list) => list.forEach((item, i) => {
    const h = 300 / list.length;
    items.push({ ...item, x, y: 10 + i * h + h / 2 - mid });
  });
  const stateOf = (name) => view.nodes.find((n) => n.name === name);
  const lbServers = new Map();
  for (const lb of view.lbs) for (const b of lb.backends) for (const s of b.servers) lbServers.set(s.name, s);
  column(cols[0], [{ id: "users", title: "users", lines: ["browsers"], cls: "idle" }]);
  // The dns nodes in one box: each one's state; an lb no dns node answers is a dead edge.
  const dnsNodes = view.nodes.filter((n) => n.role === "dns");
  const dnsCls = !dnsNodes.length ? "idle" : dnsNodes.some((n) => n.state === "up") ? "up" : "down";
  const dnsLine = dnsNodes.map((n) => `${n.name} ${n.state}`).join(", ") || "no dns node";
  column(cols[1], [{ id: "dns", title: "DNS", lines: [view.site, dnsLine], cls: dnsCls }]);
  const answered = new Set((view.dns || []).flatMap((d) => d.answering));
  column(cols[2], view.nodes.filter((n) => n.role === "lb").map((n) => {
    const lb = view.lbs.find((l) => l.name === n.name);
    const vips = lb && lb.vips_held.length ? [`VIP ${lb.vips_held.join(" ")}`] : [];
    return { id: n.name, title: n.name, lines: [n.address, ...vips, lb ? `${lb.conns} conns` : n.state], cls: n.state };
  }));
  column(cols[3], view.webs.map((w) => {
    const n = stateOf(w.name); const s = lbServers.get(w.name);
    const cls = n.state !== "up" ? n.state : s && ["MAINT", "DRAIN"].includes(s.state) ? "maint" : s && s.state === "DOWN" ? "down" : "up";
    return { id: w.name, title: w.name, lines: [`${fmt(w.rps)} req/s, p99 ${msec(w.p99)} ms`, s ? s.state : n.state], cls };
  }));
  column(cols[4], view.db.nodes.map((d) => {
    const n = stateOf(d.name);
    const role = d.raft_state === "Leader" ? "primary" : d.raft_state === "unreachable" ? "unreachable" : "replica";
    return { id: d.name, title: `${d.name} (${role})`, lines: [`applied ${d.applied_index}`, d.lag === null ? "" : `lag ${d.lag}`], cls: n ? n.state : "down" };
  }));
  const at = new Map(items.map((i) => [i.id, i]));
  const edges = [];
  const link = (a, b, dead) => { const p = at.get(a), q = at.get(b); if (p && q) edges.push(svg("path", { class: "edge" + (dead ? " dead" : ""), d: `M${p.x + boxW},${p.y + mid} C${p.x + boxW + 30},${p.y + mid} ${q.x - 30},${q.y + mid} ${q.x},${q.y + mid}` })); };
  link("users", "dns");
  for (const n of view.nodes.filter((n) => n.role === "lb")) {
    // Live when the DNS answers this lb: its own address, or a VIP it holds as master.
    const lb = view.lbs.find((l) => l.name === n.name);
    const served = [n.address, ...(lb ? lb.vips_held : [])].some((a) => answered.has(a));
    link("dns", n.name, n.state === "down" || (view.dns && view.dns.length > 0 && !served));
    for (const w of view.webs) { const s = lbServers.get(w.name); link(n.name, w.name, !s || s.state === "DOWN"); }
  }
  for (const w of view.webs) for (const d of view.db.nodes) if (d.raft_state === "Leader") link(w.name, d.name, stateOf(w.name).state === "down");
  const boxes = items.map((i) => {
    const g = svg("g", { "data-node": i.id, "data-state": i.cls });
    g.append(svg("rect", { class: "box " + i.cls, x: i.x, y: i.y, width: boxW, height: boxH }));
    g.append(svg("text", { class: "title", x: i.x + 8, y: i.y + 16 }, i.title));
    i.lines.forEach((l, k) => g.append(svg("text", { x: i.x + 8, y: i.y + 30 + k * 13 }, l)));
    return g;
  });
  root.replaceChildren(...edges, ...boxes);
}

function record(view) {
  const add = (name, v) => {
    if (v === null || v === undefined) return;
    if (!history.has(name)) history.set(name, []);
    const s = history.get(name);
    s.push([view.at_ms, v]);
    while (s.length && s[0][0] < view.at_ms - keepMs) s.shift();
  };
  for (const lb of view.lbs) for (const b of lb.backends) for (const s of b.servers) add(`rps/${lb.name}/${b.name}/${s.name}`, s.rps);
  for (const w of view.webs) add(`rps/web/${w.name}`, w.rps);
  for (const d of view.db.nodes) add(`lag/${d.name}`, d.lag);
  for (const lb of view.lbs) for (const b of lb.backends) add(`p99/${lb.name}/${b.name}`, b.p99 === null ? null : 1000 * b.p99);
}

function chart(canvasId, keysId, prefix) {
  const canvas = document.getElementById(canvasId);
  const ctx = canvas.getContext("2d");
  const series = [...history.entries()].filter(([k]) => k.startsWith(prefix) && (prefix !== "rps/" || !k.startsWith("rps/web/")));
  const w = canvas.width, h = canvas.height, pad = 34;
  ctx.clearRect(0, 0, w, h);
  const now = current ? current.at_ms : Date.now();
  // The window: the data's own span (at least a minute), at most the history kept.
  const oldest = Math.min(now, ...series.map(([, s]) => s.length ? s[0][0] : now));
  const span = Math.min(keepMs, Math.max(60000, now - oldest));
  const max = Math.max(1, ...series.flatMap(([, s]) => s.map((p) => p[1])));
  ctx.fillStyle = "#667"; ctx.font = "11px system-ui";
  ctx.fillText(fmt(max), 2, 12); ctx.fillText("0", 2, h - pad + 4);
  const ago = span >= 120000 ? `-${Math.round(span / 60000)} min` : `-${Math.round(span / 1000)} s`;
  ctx.fillText(ago, pad, h - 8); ctx.fillText("now", w - 28, h - 8);
  ctx.strokeStyle = "#dde"; ctx.beginPath(); ctx.moveTo(pad, h - pad); ctx.lineTo(w, h - pad); ctx.stroke();
  const keys = [];
  series.forEach(([name, s], i) => {
    const color = COLORS[i % COLORS.length];
    ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
    s.filter(([t]) => now - t <= span).forEach(([t, v], j) => {
      const x = pad + (w - pad) * (1 - (now - t) / span), y = h - pad - (h - pad - 8) * (v / max);
      if (j === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    keys.push(el("span", {}, el("i", { style: `background:${color}` }), name.slice(prefix.length)));
  });
  document.getElementById(keysId).replaceChildren(...keys);
}

const eventKey = (e) => `${e.at_ms} ${e.text}`;

const seenEvents = new Set();

function addEvents(events) {
  const list = $("#timeline");
  for (const e of events) {
    // The same event can come twice: in a frame and in the history loaded beside it.
    if (seenEvents.has(eventKey(e))) continue;
    seenEvents.add(eventKey(e));
    // Newest first; an older event (from the history loaded late) goes below newer ones.
    const item = el("li", { class: e.severity, "data-kind": e.kind, "data-key": eventKey(e), "data-at": String(e.at_ms) }, el("time", {}, time(e.at_ms)), e.text);
    const after = [...list.children].find((li) => Number(li.dataset.at) <= e.at_ms);
    list.insertBefore(item, after || null);
  }
  while (list.children.length > 500) list.lastChild.remove();
}

function render(frame) {
  const view = frame.view;
  if (!view || !view.nodes) return;
  current = view;
  $("#site").textContent = view.site;
  $("#updated").textContent = "updated " + time(view.at_ms);
  record(view);
  renderDiagram(view); renderAlerts(view); renderNodes(view); renderBackends(view); renderDb(view);
  chart("chart-servers", "keys-servers", "rps/"); chart("chart-web", "keys-web", "rps/web/"); chart("chart-lag", "keys-lag", "lag/"); chart("chart-p99", "keys-p99", "p99/");
  addEvents(frame.events || []);
}

function loadHistory() {
  Promise.all([fetch("/api/history").then((r) => r.json()), fetch("/api/events").then((r) => r.json())])
    .then(([hist, events]) => {
      // Frames may have arrived first: keep them, put the older points before them.
      for (const [name, points] of Object.entries(hist.series || {})) {
        const live = history.get(name) || [];
        const first = live.length ? live[0][0] : Infinity;
        history.set(name, points.filter((p) => p[0] < first).concat(live));
      }
      const span = [...history.values()].map((s) => s.length ? s[s.length - 1][0] - s[0][0] : 0);
      keepMs = Math.max(keepMs, ...span);
      addEvents(events);
    })
    .catch((e) => toast("could not load the history: " + e));
}

function start() {
  const source = new EventSource("/api/stream");
  source.addEventListener("frame", (m) => { $("#live").textContent = "live"; $("#live").className = "badge live"; render(JSON.parse(m.data)); });
  source.onerror = () => { $("#live").textContent = "reconnecting…"; $("#live").className = "badge lost"; };
  loadHistory();
}

start();
