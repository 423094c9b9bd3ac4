// Kindling's live dashboard. Everything shown comes from the node's own endpoints: /metrics
// (scraped every second; rates are differences between scrapes, timed by the node's
// kindling_uptime_seconds so that they do not depend on the browser's clock) and the admin API
// (/v1/functions/NAME, its versions and logs). No library, no network beyond the node.
"use strict";

const SAMPLE_MS = 1000;
const WINDOW = 5; // rates over the last 5 samples
const HISTORY = 300; // points kept per chart (5 minutes)
const COLORS = ["#e8590c", "#1c7ed6", "#2b8a3e", "#ae3ec9", "#f08c00", "#0ca678", "#c2255c", "#495057"];

// The admin API needs a token (read scope is enough). It arrives once in the address
// (#/fn/NAME&token=kdl_..., or #token=kdl_...) and is removed from the address bar, or is
// pasted into the prompt a 401 shows. It lives in this page's memory only: functions share
// the node's origin, so nothing they serve may find it in the browser's storage.
let token = null;
function takeTokenFromHash() {
  const m = location.hash.match(/^(#[^&]*)?&?token=(kdl_[0-9a-f_]+)$/);
  if (!m) return;
  token = m[2];
  window.history.replaceState(null, "", location.pathname + (m[1] && m[1] !== "#" ? m[1] : ""));
}
async function api(path) {
  const r = await fetch(path, token ? { headers: { Authorization: `Bearer ${token}` } } : {});
  const prompt = document.getElementById("token-prompt");
  if (r.status === 401 || r.status === 403) {
    prompt.hidden = false;
    document.getElementById("token-why").textContent = (await r.json()).error?.message || "";
    throw new Error("the admin API refused the token");
  }
  prompt.hidden = true;
  return r.json();
}
function saveToken(event) {
  event.preventDefault();
  token = document.getElementById("token-input").value.trim();
  document.getElementById("token-input").value = "";
  document.getElementById("token-prompt").hidden = true;
  route();
}

const samples = []; // {t, fns: Map(name -> series), node}
const history = new Map(); // name -> [{t, rps, p50, p99}]

function parseMetrics(text) {
  const series = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    series.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return series;
}

function snapshot(series) {
  const fns = new Map();
  const node = {};
  // Guests' stores and databases, by kind, namespace and label.
  const stores = new Map();
  const store = (kind, s) => {
    const key = `${kind} ${s.labels.namespace}/${s.labels.label}`;
    if (!stores.has(key)) {
      stores.set(key, { kind, name: `${s.labels.namespace}/${s.labels.label}`, keys: null, bytes: 0, ops: 0 });
    }
    return stores.get(key);
  };
  const fn = (name) => {
    if (!fns.has(name)) {
      fns.set(name, { requests: 0, errors: 0, cold: 0, buckets: new Map(), inFlight: 0, queued: 0, memory: 0, loaded: 0, version: "" });
    }
    return fns.get(name);
  };
  for (const s of series) {
    const f = s.labels.function;
    switch (s.name) {
      case "kindling_requests_total":
        fn(f).requests += s.value;
        if (s.labels.class === "5xx") fn(f).errors += s.value;
        break;
      case "kindling_request_duration_seconds_bucket": {
        const b = fn(f).buckets;
        b.set(s.labels.le, (b.get(s.labels.le) || 0) + s.value);
        break;
      }
      case "kindling_code_loads_total":
        if (s.labels.kind === "cold_start") fn(f).cold += s.value;
        break;
      case "kindling_in_flight_requests": fn(f).inFlight += s.value; fn(f).version = s.labels.version; break;
      case "kindling_queued_requests": fn(f).queued += s.value; break;
      case "kindling_code_resident_bytes": fn(f).memory += s.value; break;
      case "kindling_function_loaded": fn(f).loaded = s.value; break;
      case "kindling_uptime_seconds": node.uptime = s.value; break;
      case "process_resident_memory_bytes": node.rss = s.value; break;
      case "process_cpu_seconds_total": node.cpu = s.value; break;
      case "kindling_functions": node.functions = s.value; break;
      case "kindling_functions_loaded": node.loaded = s.value; break;
      case "kindling_kv_keys": store("key-value", s).keys = s.value; break;
      case "kindling_kv_bytes": store("key-value", s).bytes = s.value; break;
      case "kindling_kv_operations_total": store("key-value", s).ops += s.value; break;
      case "kindling_sqlite_bytes": store("SQLite", s).bytes = s.value; break;
    }
  }
  return { t: node.uptime, fns, node, stores };
}

// The q-quantile of the observations between two cumulative bucket sets, interpolated inside
// the bucket as Prometheus' histogram_quantile does.
function quantile(q, now, before) {
  const bounds = [...now.keys()].map((le) => ({ le, upper: le === "+Inf" ? Infinity : Number(le) }))
    .sort((a, b) => a.upper - b.upper);
  const counts = bounds.map((b) => now.get(b.le) - ((before && before.get(b.le)) || 0));
  const total = counts[counts.length - 1];
  if (!total) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i] >= rank) {
      if (bounds[i].upper === Infinity) return lower;
      const inBucket = counts[i] - below;
      return lower + (bounds[i].upper - lower) * (inBucket ? (rank - below) / inBucket : 1);
    }
    lower = bounds[i].upper; below = counts[i];
  }
  return lower;
}

function rates(name) {
  const now = samples[samples.length - 1];
  const past = samples[Math.max(0, samples.length - 1 - WINDOW)];
  const a = past && past.fns.get(name), b = now && now.fns.get(name);
  if (!b) return null;
  const dt = now.t - past.t;
  const requests = a ? b.requests - a.requests : 0;
  return {
    rps: dt > 0 && a ? requests / dt : null,
    errors: requests > 0 ? (b.errors - a.errors) / requests : 0,
    cold: requests > 0 ? (b.cold - a.cold) / requests : 0,
    p50: dt > 0 && a ? quantile(0.5, b.buckets, a.buckets) : null,
    p99: dt > 0 && a ? quantile(0.99, b.buckets, a.buckets) : null,
    total: b.requests,
    // The window the rates cover: uptimes and request counts at its ends.
    window: { from: past.t, to: now.t, fromTotal: a ? a.requests : b.requests },
  };
}

const fmt = {
  rate: (v) => (v == null ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(1)),
  ms: (s) => (s == null ? "–" : s * 1000 >= 100 ? (s * 1000).toFixed(0) + " ms" : (s * 1000).toFixed(2) + " ms"),
  pct: (v) => (v == null ? "–" : (v * 100).toFixed(v > 0 && v < 0.01 ? 2 : 1) + "%"),
  bytes: (b) => {
    if (b == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB"]; let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return b.toFixed(i ? 1 : 0) + " " + units[i];
  },
  duration: (s) => {
    if (s == null) return "–";
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : m ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`;
  },
};

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

function drawChart(canvas, lines, { ms = false } = {}) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 46, bottom = 18, top = 8, right = 8;
  ctx.clearRect(0, 0, w, h);
  const points = lines.flatMap((l) => l.points.filter((p) => p.v != null));
  const tMax = Math.max(...points.map((p) => p.t), 1), tMin = Math.min(...points.map((p) => p.t), tMax - 60);
  let vMax = Math.max(...points.map((p) => p.v), 0);
  vMax = vMax > 0 ? niceCeil(vMax * 1.1) : 1;
  const x = (t) => left + ((t - tMin) / Math.max(tMax - tMin, 1)) * (w - left - right);
  const y = (v) => top + (1 - v / vMax) * (h - top - bottom);
  ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#6a7385"; ctx.strokeStyle = "#e3e6ec"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = (vMax * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
    ctx.fillText(ms ? (v * 1000).toFixed(v * 1000 >= 10 ? 0 : 1) : v >= 10 ? v.toFixed(0) : v.toFixed(1), 4, y(v) + 4);
  }
  ctx.fillText(`last ${fmt.duration(tMax - tMin)}`, left, h - 4);
  lines.forEach((line, i) => {
    ctx.strokeStyle = line.color || COLORS[i % COLORS.length]; ctx.lineWidth = 2; ctx.beginPath();
    let started = false;
    for (const p of line.points) {
      if (p.v == null) { started = false; continue; }
      if (started) ctx.lineTo(x(p.t), y(p.v)); else { ctx.moveTo(x(p.t), y(p.v)); started = true; }
    }
    ctx.stroke();
  });
  let lx = left + 6;
  lines.forEach((line, i) => {
    ctx.fillStyle = line.color || COLORS[i % COLORS.length];
    ctx.fillRect(lx, top + 2, 10, 3); ctx.fillText(line.label, lx + 14, top + 8);
    lx += 24 + ctx.measureText(line.label).width;
  });
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function renderNode() {
  const now = samples[samples.length - 1], past = samples[Math.max(0, samples.length - 1 - WINDOW)];
  const n = now.node;
  let rps = 0;
  for (const name of now.fns.keys()) rps += (rates(name) || {}).rps || 0;
  const dt = now.t - past.t;
  const set = (id, text) => { const e = document.getElementById(id); e.textContent = text; return e; };
  set("node-rps", samples.length > 1 ? fmt.rate(rps) : "–").dataset.value = rps;
  set("node-functions", `${n.functions ?? 0} (${n.loaded ?? 0})`);
  set("node-rss", fmt.bytes(n.rss));
  set("node-cpu", dt > 0 && past.node.cpu != null ? fmt.pct((n.cpu - past.node.cpu) / dt) : "–");
  set("node-uptime", fmt.duration(n.uptime));
}

function renderOverview() {
  const now = samples[samples.length - 1];
  const body = document.querySelector("#functions tbody");
  body.replaceChildren();
  const names = [...now.fns.keys()].sort();
  document.getElementById("no-functions").hidden = names.length > 0;
  for (const name of names) {
    const f = now.fns.get(name), r = rates(name);
    const row = el("tr", {
      "data-function": name, "data-rps": r.rps ?? "", "data-total": r.total, "data-p99": r.p99 ?? "",
      "data-from": r.window.from, "data-to": r.window.to, "data-from-total": r.window.fromTotal,
    });
    const link = el("td"); link.append(el("a", { href: `#/fn/${encodeURIComponent(name)}` }, name));
    const state = el("td"); state.append(el("span", { class: `state ${f.loaded ? "warm" : "cold"}` }, f.loaded ? "warm" : "cold"));
    row.append(link, el("td", {}, f.version), state, el("td", { class: "rps" }, fmt.rate(r.rps)),
      el("td", {}, fmt.ms(r.p50)), el("td", {}, fmt.ms(r.p99)),
      el("td", r.errors > 0 ? { class: "bad" } : {}, fmt.pct(r.errors)), el("td", {}, fmt.pct(r.cold)),
      el("td", {}, String(f.inFlight)), el("td", {}, String(f.queued)), el("td", {}, fmt.bytes(f.memory)));
    body.append(row);
  }
  renderStores(now);
  const top = names.map((n) => ({ n, rps: (history.get(n) || []).reduce((a, p) => a + (p.rps || 0), 0) }))
    .sort((a, b) => b.rps - a.rps).slice(0, COLORS.length).map((x) => x.n);
  drawChart(document.getElementById("chart-rps"), top.map((n) => ({ label: n, points: (history.get(n) || []).map((p) => ({ t: p.t, v: p.rps })) })));
  drawChart(document.getElementById("chart-p99"), top.map((n) => ({ label: n, points: (history.get(n) || []).map((p) => ({ t: p.t, v: p.p99 })) })), { ms: true });
}

let selected = null;
let logsAfter = 0;

function renderStores(now) {
  const body = document.querySelector("#stores tbody");
  body.replaceChildren();
  const keys = [...now.stores.keys()].sort();
  document.getElementById("state").hidden = keys.length === 0;
  const before = samples.length > 1 ? samples[0] : null;
  for (const key of keys) {
    const st = now.stores.get(key);
    const then = before && before.stores.get(key);
    const span = before ? now.t - before.t : 0;
    const opsRate = then && span > 0 ? (st.ops - then.ops) / span : null;
    const row = el("tr", { "data-store": key });
    row.append(el("td", {}, st.kind), el("td", {}, st.name),
      el("td", {}, st.keys === null ? "–" : String(st.keys)), el("td", {}, fmt.bytes(st.bytes)),
      el("td", {}, st.kind === "key-value" ? fmt.rate(opsRate) : "–"));
    body.append(row);
  }
}

// In cluster mode (the node exports kindling_cluster_connected), the nodes from /v1/nodes,
// every NODES_EVERY samples. It needs a token with read scope; without one the section says
// so instead of raising the token prompt over the overview.
const NODES_EVERY = 2;
let nodesDue = 0;
async function refreshNodes(series) {
  const section = document.getElementById("cluster");
  if (!series.some((s) => s.name === "kindling_cluster_connected")) { section.hidden = true; return; }
  section.hidden = false;
  if (nodesDue-- > 0) return;
  nodesDue = NODES_EVERY - 1;
  const why = document.getElementById("nodes-why");
  const r = await fetch("/v1/nodes", token ? { headers: { Authorization: `Bearer ${token}` } } : {});
  const body = document.querySelector("#nodes tbody");
  if (!r.ok) {
    body.replaceChildren();
    why.hidden = false;
    why.textContent = `The node list needs a token with read scope (${r.status}); open the page with #token=kdl_...`;
    return;
  }
  why.hidden = true;
  const list = await r.json();
  const link = list.cluster && list.cluster.link;
  document.getElementById("cluster-link").textContent = !link ? "" :
    link.connected ? `connected, revision ${link.revision}` : "NATS unreachable: serving the local copy";
  body.replaceChildren();
  for (const n of list.nodes) {
    const row = el("tr", { "data-node": n.name, "data-state": n.state });
    const state = el("td"); state.append(el("span", { class: `state ${n.state === "up" ? "warm" : "cold"}` }, n.state));
    row.append(el("td", {}, n.name), state, el("td", {}, n.zone || "–"), el("td", {}, n.address),
      el("td", {}, `${n.functions} (${n.warm})`), el("td", {}, `${n.in_flight}/${n.max_in_flight}`),
      el("td", {}, String(n.revision)), el("td", {}, n.version));
    body.append(row);
  }
}

// A trigger's consumer name when the deploy gave none (TriggerConfig::group_for).
function defaultGroup(info) {
  const ns = info.config.namespace || "default";
  return ns === "default" ? `kindling-${info.name}` : `${ns}_kindling-${info.name}`;
}

async function showFunction(name) {
  selected = name; logsAfter = 0;
  document.getElementById("fn-name").textContent = name;
  document.getElementById("fn-logs").textContent = "no output yet";
  const [info, versions] = await Promise.all([
    api(`/v1/functions/${encodeURIComponent(name)}`),
    api(`/v1/functions/${encodeURIComponent(name)}/versions`),
  ]);
  const vbody = document.querySelector("#fn-versions tbody");
  vbody.replaceChildren();
  for (const v of (versions.versions || []).slice().reverse()) {
    const row = el("tr");
    row.append(el("td", {}, `v${v.version}`), el("td", {}, v.kind), el("td", {}, fmt.bytes(v.size_bytes)),
      el("td", {}, v.created_at), el("td", {}, v.version === info.active_version ? "active" : ""));
    vbody.append(row);
  }
  const config = document.getElementById("fn-config");
  config.replaceChildren();
  const limits = (info.config && info.config.limits) || {};
  const entries = [
    ["memory", limits.memory_bytes ? fmt.bytes(limits.memory_bytes) : "node default"],
    ["timeout", limits.timeout_ms ? `${limits.timeout_ms} ms` : "node default"],
    ["concurrency", limits.max_concurrency ?? "unlimited"],
    ["priority", info.config.priority || "normal"],
    ["namespace", info.config.namespace || "default"],
    ["outbound hosts", (info.config.allowed_outbound_hosts || []).join(", ") || "none"],
    ["environment", Object.keys(info.config.env || {}).join(", ") || "none"],
    ["sha256", info.sha256.slice(0, 16) + "…"],
  ];
  if (info.config.retry) {
    const r = info.config.retry;
    entries.push(["retries", `${r.retries} (backoff ${r.backoff_min_ms}..${r.backoff_max_ms} ms)`]);
  }
  for (const s of info.schedules || []) {
    entries.push([`schedule ${s.cron} (${s.timezone})`,
      `${s.path} · last ${s.last_run || "never"} · next ${s.next_run || "never"} · missed: ${s.missed}`]);
  }
  for (const t of info.config.triggers || []) {
    entries.push([`trigger ${t.kind}:${t.source}`,
      `as ${t.group || defaultGroup(info)}${t.reply ? " · replies to " + t.reply : ""} · ${t.path || "/"}`]);
  }
  for (const [k, v] of entries) config.append(el("dt", {}, k), el("dd", {}, String(v)));
  refreshLogs();
}

async function refreshLogs() {
  if (!selected) return;
  const name = selected;
  const page = await api(`/v1/functions/${encodeURIComponent(name)}/logs?after=${logsAfter}&limit=200`);
  if (name !== selected) return;
  const pre = document.getElementById("fn-logs");
  if (page.lines && page.lines.length) {
    if (logsAfter === 0) pre.replaceChildren();
    for (const line of page.lines) {
      const meta = el("span", { class: "meta" }, `${new Date(line.at_ms).toISOString().slice(11, 23)} ${line.request_id} ${line.stream} `);
      pre.append(meta, document.createTextNode(line.text + "\n"));
    }
    while (pre.childNodes.length > 1000) pre.firstChild.remove();
    pre.scrollTop = pre.scrollHeight;
  }
  logsAfter = page.next ?? logsAfter;
}

function renderFunction() {
  const name = selected, now = samples[samples.length - 1];
  const f = now.fns.get(name), r = rates(name);
  const tiles = document.getElementById("fn-tiles");
  tiles.replaceChildren();
  if (!f) return;
  for (const [label, value] of [["req/s", fmt.rate(r.rps)], ["p50", fmt.ms(r.p50)], ["p99", fmt.ms(r.p99)],
    ["errors", fmt.pct(r.errors)], ["cold starts", fmt.pct(r.cold)], ["in flight", f.inFlight], ["queued", f.queued],
    ["state", f.loaded ? "warm" : "cold"], ["code memory", fmt.bytes(f.memory)]]) {
    const t = el("span", { class: "tile" }); t.append(el("b", {}, String(value)), el("small", {}, label)); tiles.append(t);
  }
  const h = history.get(name) || [];
  drawChart(document.getElementById("fn-chart-rps"), [{ label: name, points: h.map((p) => ({ t: p.t, v: p.rps })) }]);
  drawChart(document.getElementById("fn-chart-latency"), [
    { label: "p50", color: "#1c7ed6", points: h.map((p) => ({ t: p.t, v: p.p50 })) },
    { label: "p99", color: "#e8590c", points: h.map((p) => ({ t: p.t, v: p.p99 })) },
  ], { ms: true });
}

function route() {
  const m = location.hash.match(/^#\/fn\/(.+)$/);
  document.getElementById("overview").hidden = !!m;
  document.getElementById("function").hidden = !m;
  if (m) showFunction(decodeURIComponent(m[1])); else selected = null;
}

async function tick() {
  try {
    const text = await fetch("/metrics").then((r) => r.text());
    const series = parseMetrics(text);
    const s = snapshot(series);
    refreshNodes(series).catch(() => {});
    if (samples.length && s.t < samples[samples.length - 1].t) samples.length = 0; // node restarted
    samples.push(s);
    if (samples.length > WINDOW + 1) samples.shift();
    for (const name of s.fns.keys()) {
      const r = rates(name);
      const h = history.get(name) || [];
      h.push({ t: s.t, rps: r.rps, p50: r.p50, p99: r.p99 });
      if (h.length > HISTORY) h.shift();
      history.set(name, h);
    }
    document.body.dataset.samples = String(Number(document.body.dataset.samples || 0) + 1);
    renderNode();
    if (selected) { renderFunction(); refreshLogs(); } else renderOverview();
  } catch (err) {
    document.getElementById("node-uptime").textContent = "offline";
  }
  setTimeout(tick, SAMPLE_MS);
}

window.addEventListener("hashchange", () => { takeTokenFromHash(); route(); });
document.getElementById("token-prompt").addEventListener("submit", saveToken);
takeTokenFromHash();
route();
tick();
