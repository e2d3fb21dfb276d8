// The fleetbox dashboard: a dependency-free ES module. It reads and acts through the admin HTTP
// API and the live stream, like the terminal UI. Every URL is relative to this page (…/ui/), so
// the app works under any path prefix a reverse proxy mounts it at. The session is an HttpOnly
// cookie; the CSRF token lives in this module's memory only. Text reaches the page through
// textContent only (never innerHTML): payloads and error messages are data, not markup.
// Schedules, a job's dependency graph and the retry-variant report live in flows.js.

import * as flows from "./flows.js";

const API = new URL("../api/queue/", document.baseURI);
const SESSION = new URL("session", document.baseURI);
const LARGE_PAYLOAD = 64 * 1024;

const state = {
  session: null, // {access, name, csrfToken, expiresAt}
  tick: null,
  socket: null,
  socketWanted: false,
  frozen: false,
  retry: 1000,
  selected: 0, // row cursor of the current table
  marks: new Set(), // marked dead letters (job ids)
  view: null,
};

// -- DOM helpers -------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");

function toast(text, error = false) {
  const t = h("div", { class: error ? "toast error" : "toast", role: "status" }, text);
  $("#toasts").append(t);
  setTimeout(() => t.remove(), error ? 8000 : 4000);
}

const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString()),
  ms: (n) => (n === null || n === undefined ? "–" : n >= 1000 ? `${(n / 1000).toFixed(1)}s` : `${Math.round(n)}ms`),
  // a percent (0-100), as the stream sends failureRate
  pct: (n) => (n === null || n === undefined ? "–" : `${n.toFixed(1)}%`),
  age: (s) => {
    if (s === null || s === undefined) return "–";
    if (s < 60) return `${s.toFixed(0)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${Math.floor(s % 60)}s`;
    return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  },
  when: (iso) => (iso ? new Date(iso).toLocaleString() : "–"),
};

// -- the API -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
    this.field = e.field;
  }
}

async function call(method, path, body, query) {
  const url = new URL(path, API);
  for (const [k, v] of Object.entries(query || {})) if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, v);
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["x-csrf-token"] = state.session ? state.session.csrfToken : "";
  // who acts, for the audit log: every action, and a read that is audited (a payload revealed)
  if (method !== "GET" || (query && query.reveal)) headers["x-admin-actor"] = `dashboard:${state.session ? state.session.name : "?"}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  const data = res.headers.get("Content-Type")?.includes("json") ? await res.json() : null;
  if (res.status === 401 && state.session) {
    state.session = null;
    showSignIn("Your session has ended: sign in again.");
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}
const get = (path, query) => call("GET", path, undefined, query);
const post = (path, body, query) => call("POST", path, body ?? {}, query);

const canAct = () => state.session && state.session.access === "admin";

async function act(label, fn) {
  try {
    const out = await fn();
    toast(typeof label === "function" ? label(out) : label);
    return out;
  } catch (e) {
    toast(`${e.message}${e.code ? ` (${e.code})` : ""}`, true);
    return null;
  }
}

// -- dialogs -----------------------------------------------------------------------------------

function dialog(title, body, buttons) {
  // buttons: [{label, value, primary, danger, enabled: () => bool}]; resolves with a value or null.
  const d = $("#dialog");
  d.replaceChildren();
  return new Promise((resolve) => {
    const done = (v) => { d.close(); resolve(v); };
    const row = h("div", { class: "actions" });
    const refs = [];
    for (const b of buttons) {
      const btn = h("button", { type: "button", class: b.primary ? "primary" : b.danger ? "danger" : "", onclick: () => done(b.value()) }, b.label);
      refs.push([btn, b]);
      row.append(btn);
    }
    const refresh = () => refs.forEach(([btn, b]) => { btn.disabled = b.enabled ? !b.enabled() : false; });
    d.append(h("h2", {}, title), body, row);
    d.addEventListener("input", refresh);
    d.onclose = () => resolve(null);
    refresh();
    d.showModal();
    const focus = d.querySelector("textarea, input") || refs[0][0];
    focus.focus();
  });
}

function confirmTyped(title, text, expected) {
  // Destructive and bulk actions: the operator types the queue name or the count (as in the TUI).
  const input = h("input", { name: "confirm", autocomplete: "off", "aria-label": `type ${expected} to confirm` });
  const body = h("div", {}, h("p", {}, text), h("label", {}, `Type ${expected} to confirm`, input));
  return dialog(title, body, [
    { label: "Cancel", value: () => false },
    { label: "Confirm", danger: true, value: () => true, enabled: () => input.value.trim() === String(expected) },
  ]);
}

function confirmPlain(title, text) {
  return dialog(title, h("p", {}, text), [
    { label: "No", value: () => false },
    { label: "Yes", primary: true, value: () => true },
  ]);
}

function noteDialog(title, text) {
  const notes = h("textarea", { name: "notes", placeholder: "What you found, what you did (optional)" });
  const body = h("div", {}, h("p", {}, text), h("label", {}, "Resolution notes", notes));
  return dialog(title, body, [
    { label: "Cancel", value: () => null },
    { label: "Mark reviewed", primary: true, value: () => notes.value },
  ]);
}

// -- sign in -----------------------------------------------------------------------------------

function showSignIn(message) {
  stopStream();
  $("#nav").hidden = true;
  $("#signout").hidden = true;
  $("#who").textContent = "";
  $("#status").textContent = "";
  const key = h("input", { type: "password", name: "key", autocomplete: "current-password", required: true });
  const name = h("input", { name: "name", autocomplete: "username", maxlength: 60, placeholder: "for the audit log" });
  const err = h("p", { class: "error-text", role: "alert" }, message || "");
  const form = h("form", { id: "signin" },
    h("label", {}, "Admin key or read key", key),
    h("label", {}, "Your name", name),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const res = await fetch(SESSION, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ key: key.value, name: name.value }),
    });
    const data = await res.json();
    key.value = "";
    if (!res.ok) { err.textContent = data.error ? data.error.message : `refused (${res.status})`; return; }
    signedIn(data);
  });
  main().replaceChildren(h("div", { class: "panel signin" }, h("h1", {}, "Sign in to fleetbox"), form,
    h("p", { class: "muted" }, "The read key opens a read-only view; the admin key can act.")));
  key.focus();
}

function signedIn(session) {
  state.session = session;
  $("#nav").hidden = false;
  $("#signout").hidden = false;
  $("#who").textContent = `${session.name} · ${session.access === "admin" ? "admin" : "read-only"}`;
  document.body.dataset.access = session.access;
  startStream();
  if (!location.hash || location.hash === "#/") location.hash = "#/queues";
  route();
}

async function signOut() {
  await fetch(SESSION, { method: "DELETE", credentials: "same-origin", headers: { "x-csrf-token": state.session?.csrfToken || "" } });
  state.session = null;
  showSignIn("Signed out.");
}

// -- the live stream ---------------------------------------------------------------------------

function startStream() {
  state.socketWanted = true;
  if (state.socket || document.hidden) return;
  const url = new URL("stream", API);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  state.socket = ws;
  ws.onopen = () => { state.retry = 1000; };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "hello") onTick(msg.snapshot);
    else if (msg.type === "tick") onTick(msg);
    else if (msg.type === "event") onEvent(msg);
  };
  ws.onclose = () => {
    if (state.socket === ws) state.socket = null;
    renderStatus();
    if (state.socketWanted && state.session && !document.hidden) {
      // Reconnect with capped backoff (1, 2, 4, 8, 10 s); the hello replaces what was shown.
      setTimeout(startStream, state.retry);
      state.retry = Math.min(state.retry * 2, 10000);
    }
  };
}

function stopStream() {
  state.socketWanted = false;
  const ws = state.socket;
  state.socket = null;
  if (ws) ws.close();
}

// A hidden tab reads nothing: the stream closes, and opens again (with a fresh hello) on return.
document.addEventListener("visibilitychange", () => {
  if (!state.session) return;
  if (document.hidden) { const ws = state.socket; state.socket = null; if (ws) ws.close(); renderStatus(); }
  else startStream();
});

function onTick(tick) {
  state.tick = tick;
  renderStatus();
  if (!state.frozen && state.view === "queues") renderQueueRows();
}

function onEvent(ev) {
  if (ev.kind === "dead_added" && state.view === "dead") {
    const note = $("#dead-new");
    if (note) note.textContent = `New dead letters arrived: ctrl+r loads them.`;
  }
}

function renderStatus() {
  const s = $("#status");
  if (!state.session) { s.textContent = ""; return; }
  const live = state.socket && state.socket.readyState === WebSocket.OPEN;
  const t = state.tick;
  const parts = [
    h("span", { class: live ? "live" : "off", id: "live" }, live ? (state.frozen ? "❚❚ frozen" : "● live") : document.hidden ? "paused" : "✕ disconnected"),
  ];
  if (t && live && t.draining) parts.push(" · ", h("span", { class: "warn", id: "draining" }, "◐ stopping: finishing its jobs"));
  if (t) {
    parts.push(` · db ${t.database.ok ? "ok" : "DOWN"}`,
      " · ", h("a", { href: "#/dead" }, `${fmt.int(t.deadUnreviewed)} dead unreviewed`),
      " · ", h("a", { href: "#/alerts" }, `${fmt.int(t.alertsOpen)} alert${t.alertsOpen === 1 ? "" : "s"} open`));
  }
  s.replaceChildren(...parts);
}

// -- router ------------------------------------------------------------------------------------

const views = {
  queues: viewQueues,
  jobs: viewJobs,
  job: viewJob,
  dead: viewDead,
  alerts: viewAlerts,
  schedules: (rest) => flows.viewSchedules(ui, rest),
  variants: (rest, params) => flows.viewVariants(ui, rest, params, queueRows().map((q) => q.name)),
};
// What flows.js uses of this module.
const ui = { h, get, post, act, confirmPlain, canAct, main, fmt, toast };

function route() {
  if (!state.session) return;
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const [, name = "queues", ...rest] = path.split("/");
  const view = views[name] ? name : "queues";
  state.view = view;
  state.selected = 0;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#/${view === "job" ? "jobs" : view}`);
  views[view](rest.join("/"), new URLSearchParams(query)).catch((e) => toast(e.message, true));
}
window.addEventListener("hashchange", route);

// -- queues ------------------------------------------------------------------------------------

const QUEUE_COLUMNS = [
  ["Queue", (q) => h("a", { href: `#/jobs?queue=${encodeURIComponent(q.name)}` }, q.name)],
  ["Tier", (q) => q.tier],
  ["State", (q) => h("span", { class: q.paused ? "tag paused" : "tag" }, q.paused ? "paused" : "active")],
  ["Waiting", (q) => fmt.int(q.waiting), "num"],
  ["Sched", (q) => fmt.int(q.scheduled), "num"],
  ["Run", (q) => fmt.int(q.running), "num"],
  ["Retry", (q) => fmt.int(q.retrying), "num"],
  ["Dead", (q) => h("a", { href: `#/dead?queue=${encodeURIComponent(q.name)}` }, fmt.int(q.deadUnreviewed)), "num"],
  ["Done/min", (q) => q.donePerMinute.toFixed(1), "num"],
  ["Fail%", (q) => h("span", { class: q.failureRate >= FAIL_WARN ? "bad" : "" }, fmt.pct(q.failureRate)), "num"],
  ["Avg", (q) => fmt.ms(q.avgMs), "num"],
  ["p95", (q) => fmt.ms(q.p95Ms), "num"],
  ["Oldest", (q) => fmt.age(q.oldestWaitingSeconds), "num"],
  ["Workers", (q) => `${q.workers.busy}/${q.workers.size}`, "num"],
  ["Limiter", (q) => (q.limiter ? limitText(q.limiter) + (q.limiter.throttled ? ` · ${q.limiter.throttled} throttled` : "") : "–")],
  ["Consumers", (q) => (q.consumers === undefined ? "–" : h("span", { class: q.consumers === 0 && backlog(q) > 0 ? "bad" : "" }, fmt.int(q.consumers))), "num"],
];

// the TUI's words for the same figures (fleetbox/tui/widgets/text.py, fleetbox/tui/screens/queues.py)
const FAIL_WARN = 5.0;
// the job list's state filter, as the API's status parameter takes it (without its aliases)
const JOB_STATES = ["waiting", "scheduled", "retrying", "running", "blocked", "pending", "succeeded", "dead", "cleared", "cancelled"];

// jobs not yet started: waiting (due), scheduled and retrying
function backlog(q) {
  return q.waiting + q.scheduled + q.retrying;
}

function limitText(l) {
  const parts = [];
  if (l.ratePerSecond !== null && l.ratePerSecond !== undefined) {
    parts.push(`${Number(l.ratePerSecond.toPrecision(3))}/s`);
    if (l.available !== null && l.available !== undefined) parts.push(String(Math.floor(l.available)));
  }
  if (l.concurrency !== undefined) {
    const per = l.per ?? "appliance";
    parts.push(per === "appliance" ? `${l.concurrency} at once` : `${l.concurrency} per ${per}`);
  }
  if (l.appConcurrency !== undefined) parts.push(`${l.appConcurrency} at once`);
  if (l.inUse) parts.push(`${l.inUse} busy`);
  return parts.join(" ") || "–";
}

async function viewQueues() {
  const tbody = h("tbody", { id: "queue-rows" });
  const table = h("table", { id: "queues" },
    h("thead", {}, h("tr", {}, QUEUE_COLUMNS.map(([name, , cls]) => h("th", { class: cls }, name)), h("th", {}, "Actions"))), tbody);
  const range = h("select", { name: "range", "aria-label": "chart range" }, h("option", { value: "1h" }, "last hour"), h("option", { value: "24h" }, "last day"));
  const charts = h("div", { class: "charts", id: "charts" });
  range.addEventListener("change", () => drawCharts(charts, range.value));
  main().replaceChildren(
    h("h1", {}, "Queues"),
    h("div", { class: "scroll panel" }, table),
    h("div", { class: "bar" }, h("h2", {}, "Throughput and latency"), range),
    charts,
    h("p", { class: "muted" }, "Keys: j/k move · enter jobs · p pause/resume · C clear… · d dead letters · f freeze · ? help"));
  renderQueueRows();
  drawCharts(charts, range.value);
}

function queueRows() { return state.tick ? state.tick.queues : []; }

function renderQueueRows() {
  const tbody = $("#queue-rows");
  if (!tbody) return;
  const rows = queueRows();
  // Reconcile, never clear: one <tr> per queue keeps its place, so the cursor stays put.
  const existing = new Map([...tbody.children].map((tr) => [tr.dataset.queue, tr]));
  rows.forEach((q, i) => {
    let tr = existing.get(q.name);
    const cells = QUEUE_COLUMNS.map(([, render, cls]) => h("td", { class: cls }, render(q)));
    const actions = h("td", {},
      h("button", { type: "button", class: "act", disabled: !canAct(), onclick: () => togglePause(q.name) }, q.paused ? "Resume" : "Pause"), " ",
      h("button", { type: "button", class: "danger act", disabled: !canAct(), onclick: () => clearQueue(q.name) }, "Clear…"));
    if (!tr) tr = h("tr", { dataset: { queue: q.name } });
    // Replace only the cells whose content changed: a button or link under the pointer (or a
    // test's) stays the same element from tick to tick.
    const fresh = [...cells, actions];
    fresh.forEach((td, c) => {
      const old = tr.children[c];
      if (!old) tr.append(td);
      else if (old.innerHTML !== td.innerHTML || old.className !== td.className) tr.replaceChild(td, old);
    });
    tr.classList.toggle("selected", i === state.selected);
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    existing.delete(q.name);
  });
  for (const tr of existing.values()) tr.remove();
}

function queueByName(name) { return queueRows().find((q) => q.name === name); }

async function togglePause(name) {
  const q = queueByName(name);
  if (!q) return;
  const verb = q.paused ? "resume" : "pause";
  await act(`${name}: ${verb === "pause" ? "paused" : "resumed"}`, () => post(`${encodeURIComponent(name)}/${verb}`));
}

async function clearQueue(name) {
  const q = queueByName(name);
  const count = q ? backlog(q) : 0;
  if (!(await confirmTyped(`Clear ${name}?`, `This removes every job of ${name} not yet started (about ${fmt.int(count)}); running jobs finish.`, name))) return;
  await act((r) => `${name}: ${fmt.int(r.cleared)} jobs not yet started removed`, () => call("DELETE", `${encodeURIComponent(name)}/clear`, undefined, { confirm: "yes" }));
}

async function drawCharts(box, range) {
  let data;
  try { data = await get("metrics", { timeRange: range }); } catch (e) { box.replaceChildren(h("p", { class: "muted" }, `no charts: ${e.message}`)); return; }
  const pts = data.totals;
  box.replaceChildren(
    chart("Completed / failed per bucket", pts.map((p) => p.completed), pts.map((p) => p.failed)),
    chart("Average / p95 time (ms)", pts.map((p) => p.avgProcessingTime), pts.map((p) => p.p95ProcessingTime)),
    chart("Backlog", pts.map((p) => p.backlog)));
}

function chart(title, a, b) {
  const W = 300, H = 100, max = Math.max(1, ...a, ...(b || []));
  const line = (vals) => vals.map((v, i) => `${(i * W) / Math.max(1, vals.length - 1)},${H - (v / max) * (H - 10)}`).join(" ");
  const svg = h("svg:svg", { viewBox: `0 0 ${W} ${H + 12}`, role: "img", "aria-label": title, preserveAspectRatio: "none" },
    h("svg:line", { x1: 0, y1: H, x2: W, y2: H, class: "axis" }),
    h("svg:polyline", { points: line(a), class: "line" }),
    b ? h("svg:polyline", { points: line(b), class: "line2" }) : null,
    h("svg:text", { x: 2, y: 10 }, `max ${fmt.int(Math.round(max))}`));
  return h("div", { class: "chart panel" }, h("div", { class: "muted" }, title), svg);
}

// -- jobs --------------------------------------------------------------------------------------

async function viewJobs(_rest, params) {
  const queues = queueRows().map((q) => q.name);
  const qSel = h("select", { name: "queue" }, h("option", { value: "" }, "every queue"), queues.map((n) => h("option", { value: n, selected: params.get("queue") === n }, n)));
  const id = h("input", { name: "id", inputmode: "numeric", placeholder: "job id", size: 10 });
  const data = h("input", { name: "data", placeholder: '{"userId": "u1"}', size: 28, value: params.get("data") || "" });
  const error = h("input", { name: "error", placeholder: "error text", size: 18, value: params.get("error") || "" });
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any state"),
    // the job states' words (fleetbox.models.JobState; tests/browser check them against the API's list)
    JOB_STATES.map((v) => h("option", { value: v, selected: params.get("status") === v }, v)));
  const since = h("input", { name: "since", type: "datetime-local", value: params.get("since") ? toLocalInput(params.get("since")) : "" });
  const form = h("form", { class: "bar", id: "job-search" },
    h("label", {}, "Id", id), h("label", {}, "Payload contains (JSON)", data), h("label", {}, "Error text", error), h("label", {}, "Queue", qSel),
    h("label", {}, "State", status), h("label", {}, "Created since", since),
    h("button", { type: "submit", class: "primary" }, "Search"));
  const results = h("div", { id: "job-results" });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (id.value.trim()) { location.hash = `#/job/${encodeURIComponent(id.value.trim())}`; return; }
    const p = new URLSearchParams();
    for (const [k, el] of [["queue", qSel], ["data", data], ["error", error], ["status", status]]) if (el.value.trim()) p.set(k, el.value.trim());
    if (since.value) p.set("since", new Date(since.value).toISOString());
    const next = `#/jobs?${p}`;
    if (location.hash === next) search(results, p); else location.hash = next;
  });
  main().replaceChildren(h("h1", {}, "Jobs"), h("div", { class: "panel" }, form), results, canAct() ? createJobPanel(queues) : null);
  if (["queue", "data", "error", "status", "since"].some((k) => params.get(k))) await search(results, params);
}

async function search(box, params, before, table) {
  const query = { before, limit: 50 };
  for (const k of ["queue", "data", "error", "status", "since"]) query[k] = params.get(k);
  let page;
  try { page = await get("jobs", query); } catch (e) { box.replaceChildren(h("p", { class: "error-text", role: "alert" }, e.message)); return; }
  if (!table) {
    table = h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, ["Id", "Queue", "State", "Attempts", "Created", "Payload", "Last error"].map((c) => h("th", {}, c)))), h("tbody"));
    box.replaceChildren(h("div", { class: "scroll panel" }, table));
    if (!page.jobs.length) box.append(h("p", { class: "muted", id: "no-jobs" }, "No job matches."));
  }
  const tbody = table.tBodies[0];
  for (const j of page.jobs) {
    tbody.append(h("tr", { class: "clickable", dataset: { id: j.id }, onclick: () => { location.hash = `#/job/${j.id}`; } },
      h("td", {}, h("a", { href: `#/job/${j.id}` }, String(j.id))), h("td", {}, j.queue), h("td", {}, j.state),
      h("td", { class: "num" }, `${j.attempts}${j.maxAttempts ? `/${j.maxAttempts}` : ""}`), h("td", {}, fmt.when(j.createdAt)),
      h("td", { class: "wrap" }, preview(j)), h("td", { class: "wrap" }, j.lastError || "")));
  }
  $("#more-jobs")?.remove();
  if (page.nextBefore) box.append(h("button", { type: "button", id: "more-jobs", onclick: () => search(box, params, page.nextBefore, table) }, "Load more"));
}

function toLocalInput(iso) {
  // An ISO time as the value of a datetime-local input (the browser's time zone).
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function preview(row) {
  // The admin API's lists send dataPreview (and data only on request); older ones send data.
  if (row.dataPreview !== undefined) return row.dataPreview;
  const text = JSON.stringify(row.data);
  return text && text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function createJobPanel(queues) {
  const queue = h("select", { name: "queue", required: true }, queues.map((n) => h("option", { value: n }, n)));
  const data = h("textarea", { name: "payload", placeholder: '{"to": "someone@example.com"}' }, "{}");
  const priority = h("select", { name: "priority" },
    [[1, "1 critical"], [3, "3 high"], [5, "5 normal"], [8, "8 low"], [10, "10 very low"]].map(([v, t]) => h("option", { value: v, selected: v === 5 }, t)));
  const delay = h("input", { name: "delay", type: "number", min: 0, placeholder: "seconds", size: 8 });
  const err = h("p", { class: "error-text", role: "alert" });
  const form = h("form", { id: "create-job" },
    h("div", { class: "bar" }, h("label", {}, "Queue", queue), h("label", {}, "Priority", priority), h("label", {}, "Delay (s)", delay)),
    h("label", {}, "Payload (a JSON object)", data), err,
    h("button", { type: "submit", class: "primary" }, "Create job"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    let payload;
    try { payload = JSON.parse(data.value); } catch (e) { err.textContent = `payload: not JSON (${e.message})`; return; }
    const body = { data: payload, priority: Number(priority.value) };
    if (delay.value) body.delay = Math.round(Number(delay.value) * 1000); // the API takes milliseconds
    try {
      const r = await post(`${encodeURIComponent(queue.value)}/jobs`, body);
      toast(r.created ? `job ${r.id} created on ${r.queue}` : `not created: job ${r.id} holds that singleton key`);
      location.hash = `#/job/${r.id}`;
    } catch (e) { err.textContent = e.message; }
  });
  return h("div", { class: "panel" }, h("h2", {}, "Create a job"), form);
}

async function viewJob(id) {
  const job = await get(`jobs/${encodeURIComponent(id)}`);
  const dl = job.deadLetter;
  const facts = [["Queue", job.queue], ["State", job.state], ["Priority", job.priority], ["Attempts", `${job.attempts}${job.maxAttempts ? `/${job.maxAttempts}` : ""}`],
    ["Created", fmt.when(job.createdAt)], ["Run at", fmt.when(job.runAt)], ["Finished", fmt.when(job.finishedAt)], ["Singleton key", job.singletonKey || "–"],
    ["Last error", job.lastError ? `${job.lastErrorClass || ""} ${job.lastError}` : "–"]];
  const body = [h("h1", {}, `Job ${job.id}`), h("div", { class: "panel" }, h("dl", { class: "facts", id: "job-facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])))];
  if (dl) body.push(deadLetterPanel(dl));
  body.push(...payloadSection(job.data, `job-${job.id}.json`, `jobs/${encodeURIComponent(id)}`));
  body.push(...flows.dagPanel(ui, job));
  const history = job.history || [];
  body.push(h("h2", {}, `Attempts (${history.length})`), h("div", { class: "scroll panel" }, h("table", { id: "attempts" },
    h("thead", {}, h("tr", {}, ["#", "Started", "Duration", "Outcome", "Worker", "Error class", "Error / Graph code"].map((c) => h("th", {}, c)))),
    h("tbody", {}, history.map((a) => h("tr", {}, h("td", {}, a.attempt), h("td", {}, fmt.when(a.startedAt)), h("td", { class: "num" }, fmt.ms(a.durationMs)),
      h("td", { class: a.outcome === "succeeded" ? "good" : "bad" }, a.outcome), h("td", {}, a.workerId || ""), h("td", {}, a.errorClass || ""), h("td", { class: "wrap" }, a.error || "")))))));
  if ((job.operatorActions || []).length) {
    body.push(h("h2", {}, "Operator actions"), h("div", { class: "panel" }, h("ul", { id: "trail" }, job.operatorActions.map((e) => h("li", {}, `${fmt.when(e.at)} · ${e.actor} · ${e.action}`)))));
  }
  if (job.state === "retrying" && canAct()) {
    body.splice(2, 0, h("div", { class: "bar" }, h("button", { type: "button", class: "primary", id: "run-now", onclick: () => act("retrying now", () => post(`${encodeURIComponent(job.queue)}/retry/${job.id}`)).then(() => route()) }, "Retry now")));
  }
  main().replaceChildren(...body);
}

// The payload as the queue's redaction policy masks it ("***"); an admin may reveal it in full,
// which the appliance writes to the audit log.
function payloadSection(data, filename, path) {
  const holder = h("div", { id: "payload-block" }, payloadBlock(data, filename));
  const masked = data !== null && data !== undefined && JSON.stringify(data).includes('"***"');
  const button = masked && canAct() ? h("button", { type: "button", id: "reveal", onclick: async () => {
    if (!(await confirmPlain("Reveal the masked values?", "The payload is shown in full; your name is written to the audit log."))) return;
    try {
      const full = await get(path, { reveal: "true" });
      holder.replaceChildren(payloadBlock(full.data, filename));
      button.remove();
      toast("payload revealed (audited)");
    } catch (e) { toast(e.message, true); }
  } }, "Reveal masked values…") : null;
  const note = masked ? h("p", { class: "muted", id: "masked-note" }, "*** marks values masked by this queue's redaction policy.") : null;
  return [h("h2", {}, "Payload"), note, button, holder].filter(Boolean);
}

function payloadBlock(data, filename) {
  if (data === null || data === undefined) return h("p", { class: "muted" }, "(not sent in this answer)");
  if (data.undecodable) return h("p", { class: "warn" }, `payload cannot be shown: ${data.reason} (${fmt.int(data.size)} bytes)`);
  const text = JSON.stringify(data, null, 2);
  const link = () => h("a", { href: URL.createObjectURL(new Blob([text], { type: "application/json" })), download: filename }, "download the whole payload");
  if (text.length <= LARGE_PAYLOAD) return h("div", {}, h("pre", { id: "payload" }, text), link());
  return h("div", {}, h("p", { class: "warn" }, `large payload (${fmt.int(text.length)} characters): the first ${fmt.int(LARGE_PAYLOAD)} are shown; `, link()),
    h("pre", { id: "payload" }, `${text.slice(0, LARGE_PAYLOAD)}\n…`));
}

function deadLetterPanel(dl) {
  const facts = [["Dead letter", `dl-${dl.id}`], ["Status", dl.status], ["Failed", fmt.when(dl.failedAt)], ["Error", `${dl.errorClass || ""}: ${dl.error || ""}`],
    ["Reviewed", dl.reviewed ? `yes, by ${dl.reviewedBy} at ${fmt.when(dl.reviewedAt)}` : "no"], ["Notes", dl.resolutionNotes || "–"],
    ["Retried as", dl.retriedJobId ? h("a", { href: `#/job/${dl.retriedJobId}` }, `job ${dl.retriedJobId}`) : "–"]];
  const open = dl.status === "open";
  const path = `dead-letter/${dl.jobId}`;
  const buttons = h("div", { class: "bar" },
    h("button", { type: "button", id: "dl-review", disabled: !canAct() || dl.reviewed, onclick: () => reviewOne(dl) }, "Review with notes…"),
    h("button", { type: "button", id: "dl-retry", class: "primary", disabled: !canAct() || !open, onclick: async () => {
      if (await confirmPlain(`Retry job ${dl.jobId}?`, `It is enqueued again on ${dl.queue} as a new job.`)) {
        const r = await act((x) => `retried as job ${x.jobId}`, () => post(`${path}/retry`));
        if (r) route();
      }
    } }, "Retry"),
    h("button", { type: "button", id: "dl-discard", class: "danger", disabled: !canAct() || !open, onclick: async () => {
      if (await confirmPlain(`Discard job ${dl.jobId}?`, "It stays on record as discarded and is never retried.")) {
        if (await act("discarded", () => post(`${path}/discard`))) route();
      }
    } }, "Discard…"));
  return h("div", { class: "panel", id: "dead-letter" }, h("h2", {}, "Dead letter"),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])), buttons);
}

async function reviewOne(dl) {
  const notes = await noteDialog(`Review job ${dl.jobId}`, `${dl.errorClass || ""}: ${dl.error || ""}`);
  if (notes === null) return;
  const body = { reviewedBy: state.session.name };
  if (notes.trim()) body.resolutionNotes = notes;
  if (await act("marked reviewed", () => post(`dead-letter/${dl.jobId}/review`, body))) route();
}

// -- dead letters ------------------------------------------------------------------------------

function deadFilterFrom(params) {
  const f = {};
  for (const k of ["queue", "status", "reviewed", "errorClass", "q"]) if (params.get(k)) f[k] = params.get(k);
  if (!f.status) f.status = "open";
  return f;
}

async function viewDeadLetter(jobId) {
  // A dead letter on its own (it outlives its job's row, which retention prunes).
  const dl = await get(`dead-letter/${encodeURIComponent(jobId)}`);
  const history = dl.history || [];
  main().replaceChildren(
    h("h1", {}, `Dead letter of job ${dl.jobId}`),
    h("p", {}, h("a", { href: `#/job/${dl.jobId}` }, "the job"), " · ", h("a", { href: `#/dead?queue=${encodeURIComponent(dl.queue)}` }, `dead letters of ${dl.queue}`)),
    deadLetterPanel(dl),
    ...payloadSection(dl.data, `dead-letter-${dl.id}.json`, `dead-letter/${encodeURIComponent(jobId)}`),
    ...flows.dagPanel(ui, { id: dl.jobId, state: "dead" }),
    h("h2", {}, `Attempts (${history.length})`),
    h("div", { class: "scroll panel" }, h("table", { id: "attempts" },
      h("thead", {}, h("tr", {}, ["#", "Started", "Duration", "Outcome", "Error class", "Error / Graph code"].map((c) => h("th", {}, c)))),
      h("tbody", {}, history.map((a) => h("tr", {}, h("td", {}, a.attempt ?? ""), h("td", {}, fmt.when(a.startedAt)), h("td", { class: "num" }, fmt.ms(a.durationMs)),
        h("td", { class: "bad" }, a.outcome || ""), h("td", {}, a.errorClass || ""), h("td", { class: "wrap" }, a.error || "")))))),
    // Spread, not passed as one value: replaceChildren would write an array or null out as text.
    ...((dl.operatorActions || []).length
      ? [h("h2", {}, "Operator actions"), h("div", { class: "panel" }, h("ul", { id: "trail" }, dl.operatorActions.map((e) => h("li", {}, `${fmt.when(e.at)} · ${e.actor} · ${e.action}`))))]
      : []));
}

async function viewDead(id, params) {
  if (id) return viewDeadLetter(id);
  const f = deadFilterFrom(params);
  state.marks.clear();
  const field = (name, el) => { el.name = name; return el; };
  const queue = field("queue", h("select", {}, h("option", { value: "" }, "every queue"), queueRows().map((q) => h("option", { value: q.name, selected: f.queue === q.name }, q.name))));
  const status = field("status", h("select", {}, ["open", "retried", "discarded"].map((s) => h("option", { value: s, selected: f.status === s }, s))));
  const reviewed = field("reviewed", h("select", {}, [["", "any"], ["false", "not reviewed"], ["true", "reviewed"]].map(([v, t]) => h("option", { value: v, selected: (f.reviewed || "") === v }, t))));
  const errorClass = field("errorClass", h("input", { placeholder: "error class", size: 16, value: f.errorClass || "" }));
  const q = field("q", h("input", { placeholder: "error text", size: 18, value: f.q || "", id: "dead-q" }));
  const form = h("form", { class: "bar", id: "dead-filter" }, h("label", {}, "Queue", queue), h("label", {}, "Status", status), h("label", {}, "Review", reviewed),
    h("label", {}, "Error class", errorClass), h("label", {}, "Error text", q), h("button", { type: "submit", class: "primary" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const el of [queue, status, reviewed, errorClass, q]) if (el.value.trim()) p.set(el.name, el.value.trim());
    location.hash = `#/dead?${p}`;
  });
  const groups = h("div", { id: "dead-groups" });
  const list = h("div", { id: "dead-list" });
  const bulk = h("div", { class: "bar", id: "dead-bulk" },
    h("button", { type: "button", id: "retry-marked", disabled: !canAct(), onclick: () => actOnMarked("retry") }, "Retry marked"),
    h("button", { type: "button", id: "review-marked", disabled: !canAct(), onclick: () => actOnMarked("review") }, "Review marked…"),
    h("button", { type: "button", id: "discard-marked", class: "danger", disabled: !canAct(), onclick: () => actOnMarked("discard") }, "Discard marked…"),
    h("span", { class: "muted" }, "·"),
    h("button", { type: "button", id: "retry-matching", disabled: !canAct() || f.status !== "open", onclick: () => bulkMatching("retry", f) }, "Retry all matching…"),
    h("button", { type: "button", id: "review-matching", disabled: !canAct() || f.status !== "open", onclick: () => bulkMatching("review", f) }, "Review all matching…"),
    h("button", { type: "button", id: "discard-matching", class: "danger", disabled: !canAct() || f.status !== "open", onclick: () => bulkMatching("discard", f) }, "Discard all matching…"));
  main().replaceChildren(h("h1", {}, "Dead letters"), h("div", { class: "panel" }, form), h("p", { id: "dead-new", class: "warn" }), bulk, list,
    h("h2", {}, "Grouped by error"), groups,
    h("p", { class: "muted" }, "Keys: j/k move · enter inspect · space mark · a mark all · r retry · m review · D discard · / filter"));
  await Promise.all([loadDead(list, f), loadGroups(groups, f)]);
}

async function loadDead(box, f, before, table) {
  const page = await get("dead-letter", { ...f, before, limit: 50 });
  if (!table) {
    table = h("table", { id: "dead-letters" }, h("thead", {}, h("tr", {}, ["", "Job", "Queue", "Failed", "Attempts", "Error", "Payload", "Review"].map((c) => h("th", {}, c)))), h("tbody"));
    const count = page.totalCapped ? `more than ${fmt.int(page.total)}` : fmt.int(page.total);
    box.replaceChildren(h("p", { class: "muted", id: "dead-count" }, `${count} matching`), h("div", { class: "scroll panel" }, table));
  }
  for (const d of page.deadLetters) {
    const mark = h("input", { type: "checkbox", "aria-label": `mark job ${d.jobId}`, onclick: (ev) => { ev.stopPropagation(); toggleMark(d.jobId, mark.checked); } });
    table.tBodies[0].append(h("tr", { class: "clickable", dataset: { job: d.jobId }, onclick: () => { location.hash = `#/dead/${d.jobId}`; } },
      h("td", {}, mark), h("td", {}, h("a", { href: `#/dead/${d.jobId}` }, String(d.jobId))), h("td", {}, d.queue), h("td", {}, fmt.when(d.failedAt)),
      h("td", { class: "num" }, d.attempts), h("td", { class: "wrap" }, `${d.errorClass || ""}: ${d.error || ""}`), h("td", { class: "wrap" }, preview(d)),
      h("td", {}, d.reviewed ? `✎ ${d.reviewedBy}` : "")));
  }
  $("#more-dead")?.remove();
  if (page.nextBefore) box.append(h("button", { type: "button", id: "more-dead", onclick: () => loadDead(box, f, page.nextBefore, table) }, "Load more"));
}

async function loadGroups(box, f) {
  try {
    const { groups } = await get("dead-letter/groups", f);
    box.replaceChildren(h("div", { class: "scroll panel" }, h("table", { id: "dead-group-table" },
      h("thead", {}, h("tr", {}, ["Error class", "Message", "Count", "Queues", "Last failed"].map((c) => h("th", {}, c)))),
      h("tbody", {}, groups.map((g) => h("tr", { class: "clickable", onclick: () => { const p = new URLSearchParams({ ...f, errorClass: g.errorClass || "" }); location.hash = `#/dead?${p}`; } },
        h("td", {}, g.errorClass || "–"), h("td", { class: "wrap" }, g.message || ""), h("td", { class: "num" }, fmt.int(g.count)), h("td", {}, (g.queues || []).join(", ")), h("td", {}, fmt.when(g.lastFailedAt))))))));
  } catch (e) {
    box.replaceChildren(h("p", { class: "muted" }, `grouping is not available: ${e.message}`));
  }
}

function toggleMark(jobId, on) {
  if (on) state.marks.add(jobId); else state.marks.delete(jobId);
  const row = document.querySelector(`#dead-letters tr[data-job="${jobId}"] input`);
  if (row) row.checked = on;
}

async function actOnMarked(what) {
  const ids = [...state.marks];
  if (!ids.length) { toast("mark dead letters first (space, or the boxes)", true); return; }
  let body = {};
  if (what === "review") {
    const notes = await noteDialog(`Review ${ids.length} dead letters`, `Jobs ${ids.slice(0, 10).join(", ")}${ids.length > 10 ? "…" : ""}`);
    if (notes === null) return;
    body = { reviewedBy: state.session.name, ...(notes.trim() ? { resolutionNotes: notes } : {}) };
  } else if (!(await confirmPlain(`${what === "retry" ? "Retry" : "Discard"} ${ids.length} dead letters?`, `Jobs ${ids.slice(0, 10).join(", ")}${ids.length > 10 ? "…" : ""}`))) return;
  let done = 0;
  for (const id of ids) {
    try { await post(`dead-letter/${id}/${what}`, body); done += 1; } catch (e) { toast(`job ${id}: ${e.message}`, true); }
  }
  toast(`${what}: ${done} of ${ids.length} done`);
  route();
}

async function bulkMatching(what, f) {
  // A preview first: the count and a sample of what the filter matches; the server re-checks the count.
  const sample = await get("dead-letter", { ...f, limit: 5 });
  if (sample.totalCapped) { toast(`more than ${sample.total} match: narrow the filter`, true); return; }
  const count = sample.total;
  if (!count) { toast("nothing matches", true); return; }
  const list = h("ul", { id: "bulk-sample" }, sample.deadLetters.map((d) => h("li", {}, `job ${d.jobId} · ${d.queue} · ${d.errorClass || ""}: ${(d.error || "").slice(0, 80)}`)));
  const notes = what === "review" ? h("textarea", { name: "notes", placeholder: "Resolution notes (optional)" }) : null;
  const input = h("input", { name: "confirm", autocomplete: "off" });
  const body = h("div", {}, h("p", { id: "bulk-count" }, `${count} dead letters match. A sample:`), list, notes ? h("label", {}, "Notes", notes) : null, h("label", {}, `Type ${count} to confirm`, input));
  const ok = await dialog(`${what[0].toUpperCase()}${what.slice(1)} all ${count} matching?`, body, [
    { label: "Cancel", value: () => false },
    { label: `${what} ${count}`, danger: what !== "review", primary: what === "review", value: () => true, enabled: () => input.value.trim() === String(count) },
  ]);
  if (!ok) return;
  const filter = {};
  for (const k of ["queue", "errorClass", "q"]) if (f[k]) filter[k] = f[k];
  if (f.reviewed) filter.reviewed = f.reviewed === "true";
  const payload = { ...filter, expectedCount: count };
  if (what === "review") { payload.reviewedBy = state.session.name; if (notes.value.trim()) payload.resolutionNotes = notes.value; }
  const r = await act((x) => `${what}: ${x.matched} matched, ${(x.retried || x.changed || []).length} done, ${(x.skipped || []).length} skipped`, () => post(`dead-letter/${what}`, payload));
  if (r) route();
}

// -- alerts ------------------------------------------------------------------------------------

const THRESHOLDS = [["maxBacklog", "Backlog (jobs)"], ["maxFailureRate", "Failure rate (%)"], ["maxProcessingTime", "Processing time (ms)"], ["maxDeadLetterJobs", "Dead letters"]];

async function viewAlerts(_rest, params) {
  const status = params.get("status") || "open";
  const [{ alerts }, thresholds] = await Promise.all([get("alerts", { status, limit: 200 }), get("thresholds")]);
  const inputs = THRESHOLDS.map(([k]) => h("input", { name: k, type: "number", min: 0, step: "any", value: thresholds[k], disabled: !canAct() }));
  const form = h("form", { class: "bar", id: "thresholds" }, THRESHOLDS.map(([, label], i) => h("label", {}, label, inputs[i])),
    h("button", { type: "submit", class: "primary", disabled: !canAct() }, "Save thresholds"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    THRESHOLDS.forEach(([k], i) => { if (String(thresholds[k]) !== inputs[i].value) body[k] = Number(inputs[i].value); });
    if (!Object.keys(body).length) { toast("nothing changed"); return; }
    if (await act("thresholds saved", () => call("PUT", "thresholds", body))) route();
  });
  const tabs = h("div", { class: "bar" }, ["open", "resolved"].map((s) => h("a", { href: `#/alerts?status=${s}`, class: s === status ? "tag paused" : "tag" }, s)));
  main().replaceChildren(h("h1", {}, "Alerts"), h("div", { class: "panel" }, h("h2", {}, "Thresholds"), form), tabs,
    h("div", { class: "scroll panel" }, h("table", { id: "alerts" },
      h("thead", {}, h("tr", {}, ["Opened", "Queue", "Kind", "Message", "Value", "Threshold", "Resolved"].map((c) => h("th", {}, c)))),
      h("tbody", {}, alerts.map((a) => h("tr", {}, h("td", {}, fmt.when(a.openedAt)), h("td", {}, a.queue || "–"), h("td", {}, a.kind), h("td", { class: "wrap" }, a.message),
        h("td", { class: "num" }, a.value ?? "–"), h("td", { class: "num" }, a.threshold ?? "–"), h("td", {}, fmt.when(a.resolvedAt))))))),
    alerts.length ? null : h("p", { class: "muted" }, `No ${status} alerts.`));
}

// -- keyboard ----------------------------------------------------------------------------------

function rows() {
  const id = { queues: "#queue-rows", dead: "#dead-letters tbody", jobs: "#jobs tbody", schedules: "#schedule-rows", variants: "#variant-rows" }[state.view];
  const body = id && $(id);
  return body ? [...body.children] : [];
}

function moveCursor(delta) {
  const r = rows();
  if (!r.length) return;
  state.selected = Math.max(0, Math.min(r.length - 1, state.selected + delta));
  r.forEach((tr, i) => tr.classList.toggle("selected", i === state.selected));
  r[state.selected].scrollIntoView({ block: "nearest" });
}

function current() { return rows()[state.selected]; }

function help() {
  const keys = [["1 2 3 4 5 6", "queues, jobs, dead letters, alerts, schedules, retry variants"], ["v", "retry variants of the queue"], ["j / k", "move"], ["enter", "open"], ["/", "search or filter"], ["p", "pause / resume the queue"],
    ["C", "clear the queue…"], ["p / r (schedules)", "pause or resume, run now…"], ["d", "dead letters of the queue"], ["space", "mark a dead letter"], ["a", "mark all loaded"], ["r", "retry marked or highlighted"],
    ["m", "review with notes"], ["D", "discard…"], ["f", "freeze the live table"], ["t", "light / dark"], ["ctrl+r", "reload the view"], ["esc", "close / back"]];
  dialog("Keyboard", h("dl", { class: "facts" }, keys.map(([k, v]) => [h("dt", {}, h("span", { class: "kbd" }, k)), h("dd", {}, v)])), [{ label: "Close", value: () => null }]);
}

document.addEventListener("keydown", async (ev) => {
  if (!state.session || $("#dialog").open) return;
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  if (ev.key === "Escape") { if (typing) document.activeElement.blur(); else history.back(); return; }
  if (ev.ctrlKey && ev.key === "r") { ev.preventDefault(); route(); return; }
  if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const tr = current();
  const k = ev.key;
  const nav = { 1: "#/queues", 2: "#/jobs", 3: "#/dead", 4: "#/alerts", 5: "#/schedules", 6: "#/variants" };
  if (nav[k]) { location.hash = nav[k]; return; }
  if (k === "?") return help();
  if (k === "t") return toggleTheme();
  if (k === "j" || k === "ArrowDown") { ev.preventDefault(); return moveCursor(1); }
  if (k === "k" || k === "ArrowUp") { ev.preventDefault(); return moveCursor(-1); }
  if (k === "/") { ev.preventDefault(); $("main input:not([type=checkbox])")?.focus(); return; }
  if (k === "Enter" && tr) { tr.querySelector("a")?.click(); return; }
  if (flows.onKey(ui, state.view, k, tr)) return;
  if (state.view === "queues" && tr) {
    const name = tr.dataset.queue;
    if (k === "p" && canAct()) return togglePause(name);
    if (k === "C" && canAct()) return clearQueue(name);
    if (k === "d") { location.hash = `#/dead?queue=${encodeURIComponent(name)}`; return; }
    if (k === "v") { location.hash = `#/variants?queue=${encodeURIComponent(name)}`; return; }
  }
  if (state.view === "queues" && k === "f") { state.frozen = !state.frozen; renderStatus(); if (!state.frozen) renderQueueRows(); return; }
  if (state.view === "dead") {
    if (k === " " && tr) { ev.preventDefault(); const id = Number(tr.dataset.job); toggleMark(id, !state.marks.has(id)); return; }
    if (k === "a") { for (const r of rows()) toggleMark(Number(r.dataset.job), true); return; }
    if (!canAct()) return;
    if (!state.marks.size && tr && ["r", "m", "D"].includes(k)) toggleMark(Number(tr.dataset.job), true);
    if (k === "r") return actOnMarked("retry");
    if (k === "m") return actOnMarked("review");
    if (k === "D") return actOnMarked("discard");
  }
});

// -- theme -------------------------------------------------------------------------------------

function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "light" : "dark";
  localStorage.setItem("fleetbox-theme", document.documentElement.dataset.theme); // a preference, never a secret
}

// -- start -------------------------------------------------------------------------------------

async function start() {
  const theme = localStorage.getItem("fleetbox-theme");
  if (theme === "light" || theme === "dark") document.documentElement.dataset.theme = theme;
  $("#theme").addEventListener("click", toggleTheme);
  $("#signout").addEventListener("click", signOut);
  const res = await fetch(SESSION, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (res.ok) signedIn(await res.json());
  else showSignIn();
}

start();
