// Funnel's dashboard: plain JavaScript modules, no build step and no dependencies.
// It reads the /v1 API and /metrics once a second, draws each pipeline's graph with
// its live throughput, starts and stops pipelines, and watches a component's records
// through the inspector WebSocket. The API token (if any) is kept in sessionStorage.

const REFRESH_MS = 1000;
const HISTORY = 60;
const SHOWN_RECORDS = 50;
const TOKEN_KEY = "funnel.token";

const $ = (selector, root = document) => root.querySelector(selector);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  shape: "",
  samples: null, // { at, values } of the previous /metrics read
  history: new Map(), // key -> recent rates (and connector latencies)
  latency: new Map(), // key -> the last mean latency seen (kept while no sample comes)
  inspector: null, // { id, kind, socket, paused, records }
};

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) throw new Unauthorized("the API refused the token");
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).message || message;
    } catch {
      // not JSON: keep the status line
    }
    throw new Error(message);
  }
  return response;
}

function showError(message) {
  const banner = $("#error");
  banner.textContent = message;
  banner.hidden = !message;
}

// Prometheus text format: name{labels} value -> [{ name, labels, value }].
function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\(.)/g, "$1");
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

// Sums of the counters the page shows, by key.
function totals(samples) {
  const values = new Map();
  const add = (key, value) => values.set(key, (values.get(key) || 0) + value);
  for (const s of samples) {
    const { pipeline, component_id: component } = s.labels;
    switch (s.name) {
      case "funnel_pipeline_records_read_total":
        add(`read:${pipeline}`, s.value);
        add(`component:${component}`, s.value);
        break;
      case "funnel_pipeline_records_written_total":
        add(`written:${pipeline}`, s.value);
        add(`component:${component}`, s.value);
        break;
      case "funnel_pipeline_records_acked_total":
        add(`acked:${pipeline}`, s.value);
        break;
      case "funnel_pipeline_records_dlq_total":
        add(`dlq:${pipeline}`, s.value);
        break;
      case "funnel_pipeline_execution_duration_seconds_sum":
        add(`latency_sum:${pipeline}`, s.value);
        break;
      case "funnel_pipeline_execution_duration_seconds_count":
        add(`latency_count:${pipeline}`, s.value);
        break;
      case "funnel_connector_execution_duration_seconds_sum":
        add(`clatency_sum:${component}`, s.value);
        break;
      case "funnel_connector_execution_duration_seconds_count":
        add(`clatency_count:${component}`, s.value);
        break;
      case "funnel_source_lag_records":
        add(`lag:${component}`, s.value);
        break;
      case "funnel_source_lag_bytes":
        add(`lagbytes:${component}`, s.value);
        break;
      default:
    }
  }
  return values;
}

// The mean of a histogram since the previous read (`${prefix}_sum:${id}` over
// `${prefix}_count:${id}`) under `${prefix}:${id}`, for every id: the last mean seen
// when no sample came in between.
function means(prefix, values, previous, result) {
  const sums = [...values.keys()].filter((k) => k.startsWith(`${prefix}_sum:`));
  for (const id of sums.map((k) => k.slice(prefix.length + 5))) {
    const delta = (name) => values.get(`${prefix}_${name}:${id}`) - (previous.values.get(`${prefix}_${name}:${id}`) || 0);
    const count = delta("count");
    if (count > 0) state.latency.set(`${prefix}:${id}`, delta("sum") / count);
    const mean = state.latency.get(`${prefix}:${id}`);
    if (mean !== undefined) result.set(`${prefix}:${id}`, mean);
  }
}

// Per-second rates since the previous read, kept in the history for sparklines, and
// the mean latencies (read to ack per pipeline, time per record per connector).
function rates(now, values) {
  const previous = state.samples;
  state.samples = { at: now, values };
  const result = new Map();
  if (!previous) return result;
  const seconds = (now - previous.at) / 1000;
  for (const [key, value] of values) {
    if (!key.startsWith("component:") && !key.startsWith("read:") && !key.startsWith("written:")) continue;
    const rate = Math.max(0, (value - (previous.values.get(key) || 0)) / seconds);
    result.set(key, rate);
    const history = state.history.get(key) || [];
    history.push(rate);
    if (history.length > HISTORY) history.shift();
    state.history.set(key, history);
  }
  means("latency", values, previous, result);
  means("clatency", values, previous, result);
  for (const [key, value] of result) {
    if (!key.startsWith("clatency:")) continue;
    const history = state.history.get(key) || [];
    history.push(value);
    if (history.length > HISTORY) history.shift();
    state.history.set(key, history);
  }
  return result;
}

const number = (n) => Math.round(n).toLocaleString("en-US");

// Bytes in B, KB, MB or GB (powers of 1,000).
function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

// Seconds in µs or ms.
const duration = (seconds) =>
  seconds < 0.001 ? `${Math.round(seconds * 1e6).toLocaleString("en-US")} µs` : `${(seconds * 1000).toFixed(1)} ms`;

function sparkline(key) {
  const history = state.history.get(key) || [];
  const max = Math.max(1, ...history);
  const points = history
    .map((v, i) => `${((i / (HISTORY - 1)) * 100).toFixed(1)},${(20 - (v / max) * 18).toFixed(1)}`)
    .join(" ");
  return `<svg viewBox="0 0 100 22" preserveAspectRatio="none"><polyline points="${points}"/></svg>`;
}

const escape = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const statusWord = (status) => status.replace(/^STATUS_/, "").toLowerCase();

function node(kind, id, label, detail) {
  return `<button type="button" class="node" data-kind="${kind}" data-component="${escape(id)}">
    <span class="kind">${kind === "processor" ? "processor" : detail}</span>
    <div>${escape(label)}</div>
    <div class="rate" data-rate="${escape(id)}">–</div>
    <span data-spark="${escape(id)}"></span>
    ${kind === "processor" ? "" : `<div class="latency" data-latency="${escape(id)}" title="mean time per record of its reads or writes">–</div>
    <span class="latency" data-latency-spark="${escape(id)}"></span>`}
  </button>`;
}

// The pipelines' cards; built again only when pipelines or components change.
function build(pipelines, connectors, processors) {
  const root = $("#pipelines");
  if (pipelines.length === 0) {
    root.innerHTML = `<p class="muted">No pipelines.</p>`;
    return;
  }
  root.innerHTML = pipelines
    .map((p) => {
      const own = connectors.filter((c) => c.pipelineId === p.id);
      const sources = own.filter((c) => c.type === "TYPE_SOURCE");
      const destinations = own.filter((c) => c.type === "TYPE_DESTINATION");
      const ofParent = (parent) => processors.filter((x) => x.parent.id === parent);
      const column = (items) => `<div class="column">${items.join("")}</div>`;
      const arrow = `<span class="arrow">→</span>`;
      const connectorNode = (c) =>
        node("connector", c.id, `${c.id.slice(p.id.length + 1)} (${c.plugin})`, c.type === "TYPE_SOURCE" ? "source" : "destination");
      const processorNode = (x) => node("processor", x.id, `${x.id.slice(x.parent.id.length + 1)} (${x.plugin})`);
      const parts = [column(sources.map(connectorNode))];
      const sourceProcessors = sources.flatMap((s) => ofParent(s.id));
      if (sourceProcessors.length) parts.push(arrow, column(sourceProcessors.map(processorNode)));
      const pipelineProcessors = ofParent(p.id);
      if (pipelineProcessors.length) parts.push(arrow, column(pipelineProcessors.map(processorNode)));
      const destinationProcessors = destinations.flatMap((d) => ofParent(d.id));
      if (destinationProcessors.length) parts.push(arrow, column(destinationProcessors.map(processorNode)));
      parts.push(arrow, column(destinations.map(connectorNode)));
      parts.push(
        `<div class="column"><div class="node dlq"><span class="kind">dead-letter queue</span><div>DLQ</div><div class="rate" data-dlq="${escape(p.id)}">0</div></div></div>`,
      );
      return `<section class="pipeline" data-pipeline="${escape(p.id)}">
        <header>
          <h2>${escape(p.config.name || p.id)}</h2>
          <span class="status" data-status></span>
          <button type="button" data-action="start">Start</button>
          <button type="button" data-action="stop">Stop</button>
        </header>
        <p class="error" data-error hidden></p>
        <div class="totals">
          <span>read <b data-total="read">0</b></span>
          <span>written <b data-total="written">0</b></span>
          <span>acked <b data-total="acked">0</b></span>
          <span>DLQ <b data-total="dlq">0</b></span>
          <span>throughput <b data-total="rate">0</b> rec/s</span>
          <span>latency <b data-total="latency">–</b></span>
        </div>
        <div class="graph">${parts.join("")}</div>
      </section>`;
    })
    .join("");
  markSelected();
}

function update(pipelines, values, perSecond) {
  for (const p of pipelines) {
    const card = $(`[data-pipeline="${CSS.escape(p.id)}"]`);
    if (!card) continue;
    const word = statusWord(p.state.status);
    const status = $("[data-status]", card);
    status.textContent = word;
    status.className = `status ${word}`;
    const error = $("[data-error]", card);
    error.textContent = p.state.error;
    error.hidden = !p.state.error;
    $('[data-action="start"]', card).disabled = word === "running";
    $('[data-action="stop"]', card).disabled = word !== "running" && word !== "recovering";
    const set = (name, text) => ($(`[data-total="${name}"]`, card).textContent = text);
    set("read", number(values.get(`read:${p.id}`) || 0));
    set("written", number(values.get(`written:${p.id}`) || 0));
    set("acked", number(values.get(`acked:${p.id}`) || 0));
    set("dlq", number(values.get(`dlq:${p.id}`) || 0));
    set("rate", number(perSecond.get(`read:${p.id}`) || 0));
    const latency = perSecond.get(`latency:${p.id}`);
    set("latency", latency === undefined ? "–" : duration(latency));
    $(`[data-dlq="${CSS.escape(p.id)}"]`, card).textContent = `${number(values.get(`dlq:${p.id}`) || 0)} records`;
    for (const el of card.querySelectorAll("[data-rate]")) {
      const id = el.dataset.rate;
      const rate = perSecond.get(`component:${id}`);
      const lag = values.get(`lag:${id}`);
      const lagBytes = values.get(`lagbytes:${id}`);
      el.textContent =
        (rate === undefined ? "–" : `${number(rate)} rec/s`) +
        (lag === undefined ? "" : ` · lag ${number(lag)}`) +
        (lagBytes === undefined ? "" : ` · lag ${bytes(lagBytes)}`);
      $(`[data-spark="${CSS.escape(id)}"]`, card).innerHTML = sparkline(`component:${id}`);
      const latencyOf = $(`[data-latency="${CSS.escape(id)}"]`, card);
      if (latencyOf) {
        const mean = perSecond.get(`clatency:${id}`);
        latencyOf.textContent = mean === undefined ? "–" : `${duration(mean)} per record`;
        $(`[data-latency-spark="${CSS.escape(id)}"]`, card).innerHTML = sparkline(`clatency:${id}`);
      }
    }
  }
}

async function refresh() {
  try {
    const [pipelines, connectors, processors, metrics] = await Promise.all([
      api("/v1/pipelines").then((r) => r.json()),
      api("/v1/connectors").then((r) => r.json()),
      api("/v1/processors").then((r) => r.json()),
      api("/metrics").then((r) => r.text()),
    ]);
    const shape = JSON.stringify([
      pipelines.pipelines.map((p) => [p.id, p.config.name]),
      connectors.connectors.map((c) => c.id),
      processors.processors.map((x) => x.id),
    ]);
    if (shape !== state.shape) {
      state.shape = shape;
      build(pipelines.pipelines, connectors.connectors, processors.processors);
    }
    const values = totals(parseMetrics(metrics));
    update(pipelines.pipelines, values, rates(Date.now(), values));
    showError("");
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (e instanceof Unauthorized) {
      state.shape = "";
      $("#pipelines").innerHTML = `<p class="muted">Enter the API token to see the pipelines.</p>`;
      showError("Wrong or missing API token: the API answered 401 Unauthorized.");
    } else {
      showError(`Cannot read the API: ${e.message}`);
    }
  }
}

async function act(pipeline, action) {
  try {
    await api(`/v1/pipelines/${encodeURIComponent(pipeline)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    showError("");
  } catch (e) {
    showError(`Cannot ${action} ${pipeline}: ${e.message}`);
  }
  refresh();
}

// The inspector pane.
function inspectorUrl(id, kind, point) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const path =
    kind === "processor"
      ? `/v1/processors/${encodeURIComponent(id)}/inspect-${point}`
      : `/v1/connectors/${encodeURIComponent(id)}/inspect`;
  const query = state.token ? `?access_token=${encodeURIComponent(state.token)}` : "";
  return `${scheme}://${location.host}${path}${query}`;
}

function closeInspector() {
  if (state.inspector) state.inspector.socket.close();
  state.inspector = null;
  $("#inspector").hidden = true;
  markSelected();
}

function markSelected() {
  for (const el of document.querySelectorAll(".node[data-component]")) {
    el.classList.toggle("selected", state.inspector?.id === el.dataset.component);
  }
}

function renderRecords() {
  const inspector = state.inspector;
  if (!inspector) return;
  inspector.scheduled = false;
  $("#records").innerHTML = inspector.records
    .map((r) => {
      let position = r.position;
      try {
        position = atob(r.position);
      } catch {
        // not base64: shown as it is
      }
      return `<li><span class="muted">position</span> <code data-position>${escape(position)}</code><pre>${escape(JSON.stringify(r, null, 1))}</pre></li>`;
    })
    .join("");
}

function openInspector(id, kind) {
  if (state.inspector) state.inspector.socket.close();
  const point = $("#point").value;
  $("#point").hidden = kind !== "processor";
  $("#inspected").textContent = id;
  $("#inspector").hidden = false;
  $("#records").innerHTML = "";
  $("#pause").textContent = "Pause";
  $("#inspector-state").textContent = "connecting…";
  const socket = new WebSocket(inspectorUrl(id, kind, point));
  const inspector = { id, kind, socket, paused: false, records: [], count: 0, scheduled: false };
  state.inspector = inspector;
  socket.onopen = () => ($("#inspector-state").textContent = "watching: newest records first; records are sampled");
  socket.onclose = () => {
    if (state.inspector === inspector) $("#inspector-state").textContent = "closed";
  };
  socket.onerror = () => showError(`The inspector of ${id} cannot connect`);
  socket.onmessage = (event) => {
    if (inspector.paused || state.inspector !== inspector) return;
    inspector.count += 1;
    inspector.records.unshift(JSON.parse(event.data));
    inspector.records.length = Math.min(inspector.records.length, SHOWN_RECORDS);
    if (!inspector.scheduled) {
      inspector.scheduled = true;
      setTimeout(renderRecords, 200);
    }
  };
  markSelected();
}

function start() {
  $("#token").value = state.token;
  $("#login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.token = $("#token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    state.samples = null;
    closeInspector();
    refresh();
  });
  $("#pipelines").addEventListener("click", (event) => {
    const action = event.target.closest("[data-action]");
    if (action) {
      act(action.closest("[data-pipeline]").dataset.pipeline, action.dataset.action);
      return;
    }
    const component = event.target.closest(".node[data-component]");
    if (component) openInspector(component.dataset.component, component.dataset.kind);
  });
  $("#close").addEventListener("click", closeInspector);
  $("#pause").addEventListener("click", () => {
    if (!state.inspector) return;
    state.inspector.paused = !state.inspector.paused;
    $("#pause").textContent = state.inspector.paused ? "Resume" : "Pause";
  });
  $("#point").addEventListener("change", () => {
    if (state.inspector) openInspector(state.inspector.id, state.inspector.kind);
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
