// The codecomplete playground: ghost-text completions in a plain textarea, and the server's state.
// No framework, no build step, nothing fetched from anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const code = $("code");
const mirror = $("mirror");

// --- settings ---------------------------------------------------------------------------------

function settings() {
  let stop = [];
  try {
    const parsed = JSON.parse($("s-stop").value || "[]");
    stop = Array.isArray(parsed) ? parsed.filter((s) => typeof s === "string" && s) : [String(parsed)];
  } catch (e) {
    stop = [];
  }
  const num = (id, fallback) => {
    const v = Number($(id).value);
    return Number.isFinite(v) ? v : fallback;
  };
  return {
    model: $("s-model").value || undefined,
    max_tokens: num("s-max-tokens", 32),
    temperature: num("s-temperature", 0.2),
    top_p: num("s-top-p", 0.95),
    n: Math.max(1, Math.round(num("s-n", 1))),
    stop,
    seed: $("s-seed").value === "" ? null : Math.round(Number($("s-seed").value)),
    deadline: $("s-deadline").value === "" ? null : Math.max(0, Math.round(Number($("s-deadline").value))),
    healing: $("s-healing").value,
    fim: $("s-fim").checked,
    debounce: Math.max(0, num("s-debounce", 200)),
  };
}

// --- the editor: ghost text drawn by a mirror under a transparent textarea ---------------------

const state = {
  ghost: null, // {choices: [text], index, at: cursor offset, finish: [reason]}
  timer: null,
  controller: null, // AbortController of the request in flight
  seq: 0,
  shown: 0,
  accepted: 0,
};

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function render() {
  const text = code.value;
  let html;
  if (state.ghost) {
    const at = state.ghost.at;
    html =
      escapeHtml(text.slice(0, at)) +
      '<span class="ghost" id="ghost">' +
      escapeHtml(state.ghost.choices[state.ghost.index]) +
      "</span>" +
      escapeHtml(text.slice(at));
  } else {
    html = escapeHtml(text);
  }
  mirror.innerHTML = html + "\n"; // a final newline keeps the last empty line's height
  mirror.scrollTop = code.scrollTop;
  const nav = $("choice-nav");
  if (state.ghost && state.ghost.choices.length > 1) {
    nav.hidden = false;
    $("choice-index").textContent = `${state.ghost.index + 1}/${state.ghost.choices.length}`;
  } else {
    nav.hidden = true;
  }
}

function setStatus(text) {
  $("status").textContent = text;
}

function dismiss() {
  if (state.ghost) {
    state.ghost = null;
    render();
  }
}

function cancelInFlight() {
  clearTimeout(state.timer);
  if (state.controller) {
    state.controller.abort(); // the server sees the connection close and aborts generation
    state.controller = null;
  }
}

function schedule() {
  cancelInFlight();
  state.timer = setTimeout(requestCompletion, settings().debounce);
}

function reportEvent(event) {
  fetch("/playground/events", {
    method: "POST",
    headers: authHeaders({ "content-type": "application/json" }),
    body: JSON.stringify({ event }),
  }).catch(() => {});
}

function authHeaders(headers) {
  const key = sessionStorage.getItem("codecomplete-api-key");
  return key ? { ...headers, authorization: `Bearer ${key}` } : headers;
}

async function requestCompletion() {
  cancelInFlight();
  const s = settings();
  const text = code.value;
  const at = code.selectionStart;
  if (code.selectionEnd !== at) return; // a selection, not a cursor
  const body = {
    prompt: text.slice(0, at),
    max_tokens: s.max_tokens,
    temperature: s.temperature,
    top_p: s.top_p,
    n: s.n,
    debug: true,
  };
  if (s.model) body.model = s.model;
  if (s.stop.length) body.stop = s.stop;
  if (s.fim) body.suffix = text.slice(at);
  if (s.healing) body.token_healing = s.healing === "true";
  if (s.seed !== null && Number.isFinite(s.seed)) body.seed = s.seed;
  // The request's time budget (`deadline_ms`; servers without budgets ignore the field).
  if (s.deadline !== null && Number.isFinite(s.deadline)) body.deadline_ms = s.deadline;

  const seq = ++state.seq;
  const controller = new AbortController();
  state.controller = controller;
  setStatus("thinking\u2026");
  const started = performance.now();
  let response, data;
  try {
    response = await fetch("/v1/completions", {
      method: "POST",
      headers: authHeaders({ "content-type": "application/json" }),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    data = await response.json();
  } catch (e) {
    if (e.name !== "AbortError" && seq === state.seq) setStatus(`request failed: ${e.message}`);
    return;
  } finally {
    if (state.controller === controller) state.controller = null;
  }
  const rtt = performance.now() - started;
  if (seq !== state.seq) return; // a newer request superseded this one
  if (!response.ok) {
    const err = (data && data.error) || {};
    setStatus(`${response.status}: ${err.message || "error"}`);
    return;
  }
  showPrompt(data, rtt);
  // The text or the cursor moved while we waited: this completion is for another place.
  if (code.value !== text || code.selectionStart !== at) return;
  const seen = new Set();
  const choices = [];
  const finish = [];
  for (const c of [...data.choices].sort((a, b) => a.index - b.index)) {
    if (c.text && !seen.has(c.text)) {
      seen.add(c.text);
      choices.push(c.text);
      finish.push(c.finish_reason);
    }
  }
  if (!choices.length) {
    state.ghost = null;
    setStatus("no suggestion");
    render();
    return;
  }
  state.ghost = { choices, index: 0, at, finish };
  state.shown += 1;
  reportEvent("view");
  updateAcceptStats();
  setStatus(`suggestion in ${Math.round(rtt)} ms`);
  render();
  $("f-finish").textContent = finish[0] || "\u2013";
}

function accept() {
  const g = state.ghost;
  if (!g) return false;
  const insert = g.choices[g.index];
  state.ghost = null;
  code.setRangeText(insert, g.at, g.at, "end");
  state.accepted += 1;
  reportEvent("select");
  updateAcceptStats();
  setStatus("accepted");
  render();
  return true;
}

function cycle(step) {
  const g = state.ghost;
  if (!g || g.choices.length < 2) return;
  g.index = (g.index + step + g.choices.length) % g.choices.length;
  $("f-finish").textContent = g.finish[g.index] || "\u2013";
  render();
}

function updateAcceptStats() {
  $("accept-stats").textContent = `accepted ${state.accepted} of ${state.shown} shown`;
}

code.addEventListener("input", () => {
  state.ghost = null;
  render();
  schedule();
});
code.addEventListener("scroll", () => {
  mirror.scrollTop = code.scrollTop;
});
code.addEventListener("keydown", (e) => {
  if (e.key === "Tab" && !e.shiftKey) {
    e.preventDefault();
    if (!accept()) {
      code.setRangeText("    ", code.selectionStart, code.selectionEnd, "end");
      code.dispatchEvent(new Event("input"));
    }
  } else if (/^(Arrow|Home$|End$|Page)/.test(e.key)) {
    cancelInFlight(); // the cursor moves: the suggestion in flight is for the old place
    dismiss();
  } else if (e.key === "Escape") {
    cancelInFlight();
    dismiss();
  } else if (e.altKey && e.key === "]") {
    e.preventDefault();
    cycle(1);
  } else if (e.altKey && e.key === "[") {
    e.preventDefault();
    cycle(-1);
  } else if (e.ctrlKey && e.key === " ") {
    e.preventDefault();
    requestCompletion();
  }
});
// Moving the cursor away from where the suggestion belongs dismisses it, as in editors.
document.addEventListener("selectionchange", () => {
  if (document.activeElement !== code || !state.ghost) return;
  if (code.selectionStart !== state.ghost.at || code.selectionEnd !== state.ghost.at) dismiss();
});
code.addEventListener("mousedown", () => {
  cancelInFlight();
  dismiss();
});
$("prev-choice").addEventListener("click", () => cycle(-1));
$("next-choice").addEventListener("click", () => cycle(1));

// --- the prompt panel -------------------------------------------------------------------------

const SPECIAL = /^(<\|?[A-Za-z_][\w.-]*\|?>|<s>|<\/s>)$/;

function fmt(value, digits, unit) {
  return value === null || value === undefined ? "\u2013" : `${value.toFixed(digits)}${unit}`;
}

function showPrompt(data, rtt) {
  const d = data.debug || {};
  const p = (d.prompts || [])[0] || {};
  $("f-tokens").textContent = p.num_prompt_tokens ?? "\u2013";
  $("f-ttft").textContent = d.ttft_s == null ? "\u2013" : fmt(d.ttft_s * 1000, 0, " ms");
  $("f-rtt").textContent = fmt(rtt, 0, " ms");
  $("f-tps").textContent = fmt(d.tokens_per_s, 1, "");
  if (d.prefix_cache_hits == null) {
    $("f-cache").textContent = "n/a";
  } else {
    $("f-cache").textContent = d.prefix_cache_hits
      ? `hit (${d.prefix_cache_tokens_reused} tokens reused)`
      : "miss";
  }
  $("f-fim").textContent = p.fim ? `yes (${p.fim_template})` : "no";
  $("f-trunc").textContent = p.truncated ? "yes: the start of the prompt or end of the suffix was cut" : "no";
  $("f-heal").textContent = p.healed_tail ? `re-types ${JSON.stringify(p.healed_tail)}` : "none";
  const first = (data.choices || []).find((c) => c.index === 0);
  $("f-finish").textContent = (first && first.finish_reason) || "\u2013";

  const view = $("prompt-view");
  view.textContent = "";
  if (p.prompt_tokens) {
    p.prompt_tokens.forEach((piece, i) => {
      const span = document.createElement("span");
      span.className = SPECIAL.test(piece) ? "tok special" : "tok";
      span.title = `token ${i}: id ${p.prompt_token_ids[i]}`;
      span.textContent = piece;
      view.appendChild(span);
    });
  } else {
    view.appendChild(document.createTextNode(p.prompt_text ?? ""));
    const ids = document.createElement("div");
    ids.className = "muted";
    ids.textContent = `\n(no tokenizer on the server to decode: token ids ${JSON.stringify(p.prompt_token_ids || [])})`;
    view.appendChild(ids);
  }
  if (p.healed_tail) {
    const span = document.createElement("span");
    span.className = "healed";
    span.title = "token healing removed this from the prompt; the completion re-types it";
    span.textContent = p.healed_tail;
    view.appendChild(span);
  }
}

// --- tabs ---------------------------------------------------------------------------------------

let metricsTimer = null;
for (const tab of document.querySelectorAll('[role="tab"]')) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll('[role="tab"]')) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      $(t.dataset.panel).hidden = !on;
    }
    clearInterval(metricsTimer);
    if (tab.id === "tab-server") {
      pollMetrics();
      metricsTimer = setInterval(pollMetrics, 2000);
    } else {
      code.focus();
    }
  });
}

// --- the server tab: /metrics, parsed here --------------------------------------------------

function parseMetrics(text) {
  // name{labels} value  ->  {name: [{labels: {...}, value}]}
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      for (const pair of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    }
    (out[m[1]] ||= []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

function total(metrics, name, where = {}) {
  return (metrics[name] || [])
    .filter((s) => Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

const history = { last: null, tps: [] };

async function pollMetrics() {
  let text;
  try {
    text = await (await fetch("/metrics")).text();
  } catch (e) {
    $("m-updated").textContent = `(could not read /metrics: ${e.message})`;
    return;
  }
  const m = parseMetrics(text);
  const now = performance.now() / 1000;
  const sample = {
    t: now,
    tokens: total(m, "codecomplete_generated_tokens_total"),
    completions: total(m, "codecomplete_completions_total"),
    ttftSum: total(m, "codecomplete_time_to_first_token_seconds_sum"),
    ttftCount: total(m, "codecomplete_time_to_first_token_seconds_count"),
  };
  $("m-up").textContent = total(m, "codecomplete_engine_up") ? "up" : "down";
  $("m-queue").textContent = total(m, "codecomplete_requests_waiting");
  $("m-running").textContent = total(m, "codecomplete_requests_running");
  $("m-batch").textContent = `requests; ${total(m, "codecomplete_batch_sequences")} sequences in the batch`;
  const hits = total(m, "codecomplete_prefix_cache_hits_total");
  const lookups = total(m, "codecomplete_prefix_cache_lookups_total");
  $("m-cache").textContent = lookups ? `${Math.round((100 * hits) / lookups)}%` : "\u2013";
  const shown = total(m, "codecomplete_client_events_total", { event: "view" });
  const accepted = total(m, "codecomplete_client_events_total", { event: "select" });
  $("m-accept").textContent = shown ? `${Math.round((100 * accepted) / shown)}%` : "\u2013";
  $("m-accept-detail").textContent = `${accepted} accepted / ${shown} shown, where clients report it`;
  $("m-cancel").textContent = total(m, "codecomplete_completions_total", { outcome: "cancelled" });
  const last = history.last;
  if (last) {
    const dt = Math.max(sample.t - last.t, 1e-3);
    const tps = (sample.tokens - last.tokens) / dt;
    $("m-tps").textContent = tps.toFixed(1);
    $("m-rps").textContent = ((sample.completions - last.completions) / dt).toFixed(2);
    const n = sample.ttftCount - last.ttftCount;
    $("m-ttft").textContent = n ? `${Math.round((1000 * (sample.ttftSum - last.ttftSum)) / n)} ms` : "\u2013";
    history.tps.push(tps);
    if (history.tps.length > 60) history.tps.shift();
    drawSpark($("m-spark"), history.tps);
  }
  history.last = sample;
  $("m-updated").textContent = `Updated ${new Date().toLocaleTimeString()}.`;
}

function drawSpark(svg, values) {
  const max = Math.max(1e-9, ...values);
  const step = values.length > 1 ? 120 / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(29 - (28 * v) / max).toFixed(1)}`);
  svg.innerHTML = `<polyline points="${points.join(" ")}"></polyline>`;
}

// --- start ------------------------------------------------------------------------------------

async function loadModels() {
  try {
    const r = await fetch("/v1/models", { headers: authHeaders({}) });
    const data = await r.json();
    const select = $("s-model");
    for (const model of data.data || []) {
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.id;
      select.appendChild(option);
    }
    const first = (data.data || [])[0];
    if (first) $("model-info").textContent = `serving ${first.id}`;
  } catch (e) {
    $("model-info").textContent = "could not list models";
  }
}

const params = new URLSearchParams(location.search);
if (params.get("key")) sessionStorage.setItem("codecomplete-api-key", params.get("key"));
loadModels();
code.focus();
code.setSelectionRange(code.value.length, code.value.length);
render();
