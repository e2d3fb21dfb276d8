// The dashboard's cron schedules, job dependency graph and retry-variant report (issue 16), in a
// module of their own. app.js passes its helpers in (`ui`: h, get, post, act, confirmPlain,
// canAct, main, fmt, toast), so this file holds no state of its own and reaches the server only
// through the same API calls (CSRF token and actor header included). Text reaches the page
// through textContent only, as everywhere in the dashboard.

const SCHEDULES = new URL("../api/schedules", document.baseURI);
// How far the graph reaches from the job shown (each step is one request), and how many jobs it draws.
const DAG_DEPTH = 3;
const DAG_MAX = 40;

// -- schedules ---------------------------------------------------------------------------------

function scheduleUrl(name, action) {
  const base = `${SCHEDULES.pathname}/${encodeURIComponent(name)}`;
  return new URL(action ? `${base}/${action}` : base, document.baseURI);
}

function untilText(fmt, iso) {
  if (!iso) return "–";
  const s = (new Date(iso).getTime() - Date.now()) / 1000;
  return s <= 0 ? "due" : `in ${fmt.age(s)}`;
}

export async function viewSchedules(ui, name) {
  const { h, fmt } = ui;
  const { schedules } = await ui.get(SCHEDULES.href);
  const tbody = h("tbody", { id: "schedule-rows" });
  const detail = h("div", { id: "schedule-detail", class: "panel" }, h("p", { class: "muted" }, "Select a schedule (enter) to see its next and latest runs."));
  for (const s of schedules) {
    const tr = h("tr", { class: "clickable", dataset: { schedule: s.name }, onclick: () => showSchedule(ui, s.name, detail) },
      h("td", {}, h("a", { href: `#/schedules/${encodeURIComponent(s.name)}` }, s.name)),
      h("td", {}, h("code", {}, s.cron)), h("td", {}, s.timezone), h("td", {}, s.queue),
      h("td", {}, h("span", { class: s.enabled ? "tag" : "tag paused" }, s.enabled ? "enabled" : "paused")),
      h("td", {}, fmt.when(s.lastRunAt)),
      h("td", { title: fmt.when(s.nextRunAt) }, s.enabled ? untilText(fmt, s.nextRunAt) : "–"),
      h("td", {},
        h("button", { type: "button", class: "act", disabled: !ui.canAct(), onclick: (ev) => { ev.stopPropagation(); toggleSchedule(ui, s); } }, s.enabled ? "Pause" : "Resume"), " ",
        h("button", { type: "button", class: "act primary", disabled: !ui.canAct(), onclick: (ev) => { ev.stopPropagation(); runSchedule(ui, s); } }, "Run now…")));
    tbody.append(tr);
  }
  ui.main().replaceChildren(
    h("h1", {}, "Schedules"),
    h("div", { class: "scroll panel" }, h("table", { id: "schedules" },
      h("thead", {}, h("tr", {}, ["Name", "Cron", "Time zone", "Queue", "State", "Last run", "Next run", "Actions"].map((c) => h("th", {}, c)))), tbody)),
    ...(schedules.length ? [] : [h("p", { class: "muted", id: "no-schedules" }, "No schedules: add one with fleetbox schedule add, [[schedules]] in the config file, or POST /api/schedules.")]),
    detail,
    h("p", { class: "muted" }, "Keys: j/k move · enter details · p pause/resume · r run now… · 5 schedules"));
  if (name) await showSchedule(ui, decodeURIComponent(name), detail);
}

async function showSchedule(ui, name, box) {
  const { h, fmt } = ui;
  let s;
  try { s = await ui.get(scheduleUrl(name).href, { next: 10 }); } catch (e) { box.replaceChildren(h("p", { class: "error-text", role: "alert" }, e.message)); return; }
  const facts = [["Cron", s.cron], ["Time zone", s.timezone], ["Queue", s.queue], ["Priority", s.priority], ["State", s.enabled ? "enabled" : "paused"],
    ["Daylight saving", s.dst === "both" ? "a repeated local time runs twice" : "a repeated local time runs once"],
    ["Missed runs", `${s.catchUp} (at most ${s.catchUpMax})`], ["Overlap", s.overlap],
    ["Dead-man alert", s.alertAfterSeconds ? `after ${fmt.age(s.alertAfterSeconds)} without a success` : "off"],
    ["From", s.source], ["Changed", `${fmt.when(s.updatedAt)}${s.updatedBy ? ` by ${s.updatedBy}` : ""}`]];
  const dstWords = { "skipped-forward": "skipped by the clocks: runs at the next valid minute", "repeated-first": "repeated by the clocks: first pass", "repeated-second": "repeated by the clocks: second pass" };
  box.replaceChildren(
    h("h2", {}, `Schedule ${s.name}`),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
    h("h2", {}, "Payload"), h("pre", { id: "schedule-payload" }, JSON.stringify(s.data, null, 2)),
    h("h2", {}, "Next runs"),
    s.next.length
      ? h("ul", { id: "schedule-next" }, s.next.map((t) => h("li", { class: t.dst ? "warn" : "" }, `${fmt.when(t.at)} · local ${t.local}${t.dst ? ` · ${dstWords[t.dst] || t.dst}` : ""}`)))
      : h("p", { class: "muted", id: "schedule-next" }, s.enabled ? "no tick to come" : "none while paused"),
    h("h2", {}, "Latest runs"),
    s.runs.length
      ? h("ul", { id: "schedule-runs" }, s.runs.map((r) => h("li", {}, `${fmt.when(r.tick)} · ${r.outcome}`, r.jobId ? [" · ", h("a", { href: `#/job/${r.jobId}` }, `job ${r.jobId}`)] : null, r.workerId ? ` · ${r.workerId}` : "")))
      : h("p", { class: "muted", id: "schedule-runs" }, "none yet"));
}

async function toggleSchedule(ui, s) {
  const verb = s.enabled ? "pause" : "resume";
  const text = s.enabled
    ? `${s.name} fires no job until resumed; a job already enqueued still runs.`
    : `${s.name} fires again from its next tick; the ticks missed while paused are not run.`;
  if (!(await ui.confirmPlain(`${s.enabled ? "Pause" : "Resume"} schedule ${s.name}?`, text))) return;
  if (await ui.act(`${s.name}: ${s.enabled ? "paused" : "resumed"}`, () => ui.post(scheduleUrl(s.name, verb).href))) await viewSchedules(ui, encodeURIComponent(s.name));
}

async function runSchedule(ui, s) {
  if (!(await ui.confirmPlain(`Run schedule ${s.name} now?`, `One job is enqueued on ${s.queue} now, outside the schedule's ticks.`))) return;
  const r = await ui.act((x) => `${s.name}: job ${x.jobId} enqueued`, () => ui.post(scheduleUrl(s.name, "run").href));
  if (r) await viewSchedules(ui, encodeURIComponent(s.name));
}

// Keys of the schedules view: p pause/resume and r run now on the highlighted row. True if handled.
export function onKey(ui, view, key, tr) {
  if (view !== "schedules" || !tr || !ui.canAct()) return false;
  const button = tr.querySelectorAll("button")[key === "p" ? 0 : key === "r" ? 1 : -1];
  if (!button) return false;
  button.click();
  return true;
}

// -- a job's dependency graph --------------------------------------------------------------------

// The graph around a job, fetched breadth-first up to DAG_DEPTH steps and DAG_MAX jobs:
// {nodes: Map(id -> {id, state, step}), edges: [{from, to, state}], cut: bool}.
async function collectGraph(ui, jobId) {
  const nodes = new Map();
  const edges = new Map();
  const seen = new Set();
  let frontier = [jobId];
  let cut = false;
  for (let depth = 0; depth <= DAG_DEPTH && frontier.length; depth += 1) {
    const batch = frontier.filter((id) => !seen.has(id));
    frontier = [];
    batch.forEach((id) => seen.add(id));
    const answers = await Promise.all(batch.map((id) => ui.get(`jobs/${id}/dependencies`).catch(() => null)));
    for (const deps of answers) {
      if (!deps) continue;
      if (!nodes.has(deps.jobId)) nodes.set(deps.jobId, { id: deps.jobId, state: null, step: null });
      for (const [links, up] of [[deps.parents, true], [deps.children, false]]) {
        for (const l of links) {
          const known = nodes.get(l.jobId);
          if (!known && nodes.size >= DAG_MAX) { cut = true; continue; }
          nodes.set(l.jobId, { id: l.jobId, state: l.state, step: l.step ?? known?.step ?? null });
          const [from, to] = up ? [l.jobId, deps.jobId] : [deps.jobId, l.jobId];
          edges.set(`${from}>${to}`, { from, to, state: l.edge });
          if (!seen.has(l.jobId)) frontier.push(l.jobId);
        }
      }
    }
  }
  if (frontier.some((id) => !seen.has(id))) cut = true;
  return { nodes, edges: [...edges.values()], cut };
}

// Columns by the longest path from a root (parents left of their children).
function layers(nodes, edges) {
  const layer = new Map([...nodes.keys()].map((id) => [id, 0]));
  for (let i = 0; i < nodes.size; i += 1) {
    let moved = false;
    for (const e of edges) {
      if (layer.get(e.to) < layer.get(e.from) + 1) { layer.set(e.to, layer.get(e.from) + 1); moved = true; }
    }
    if (!moved) break;
  }
  return layer;
}

export function dagPanel(ui, job) {
  // Filled once the graph has been fetched; an empty graph leaves a one-line note.
  const { h } = ui;
  const box = h("div", { class: "panel", id: "dag" }, h("p", { class: "muted" }, "Loading the dependency graph…"));
  collectGraph(ui, job.id).then((g) => drawDag(ui, box, job, g)).catch((e) => box.replaceChildren(h("p", { class: "muted" }, `no dependency graph: ${e.message}`)));
  return [h("h2", {}, "Dependencies"), box];
}

function drawDag(ui, box, job, g) {
  const { h } = ui;
  if (!g.edges.length) {
    box.replaceChildren(h("p", { class: "muted", id: "dag-none" }, "No parents and no children: this job is not part of a dependency graph."));
    return;
  }
  if (g.nodes.has(job.id)) g.nodes.get(job.id).state = job.state;
  const layer = layers(g.nodes, g.edges);
  const columns = [];
  for (const [id, l] of [...layer.entries()].sort((a, b) => a[0] - b[0])) (columns[l] ||= []).push(id);
  const W = 170, H = 46, GX = 60, GY = 14;
  const pos = new Map();
  columns.forEach((ids, c) => ids.forEach((id, r) => pos.set(id, { x: 8 + c * (W + GX), y: 8 + r * (H + GY) })));
  const width = 16 + columns.length * (W + GX) - GX;
  const height = 16 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
  const svg = h("svg:svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", id: "dag-svg", "aria-label": `dependency graph of job ${job.id}` },
    h("svg:defs", {}, h("svg:marker", { id: "dag-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      h("svg:path", { d: "M 0 0 L 10 5 L 0 10 z", class: "dag-arrowhead" }))),
    g.edges.map((e) => {
      const a = pos.get(e.from), b = pos.get(e.to);
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      return h("svg:path", { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, class: `dag-edge edge-${e.state || "open"}`, "marker-end": "url(#dag-arrow)", dataset: { from: e.from, to: e.to } },
        h("svg:title", {}, `job ${e.from} → job ${e.to}: ${e.state || "open"}`));
    }),
    [...g.nodes.values()].map((n) => {
      const p = pos.get(n.id);
      const here = n.id === job.id;
      const shape = [
        h("svg:rect", { x: p.x, y: p.y, width: W, height: H, rx: 6, class: `dag-node state-${n.state || "gone"}${here ? " here" : ""}` }),
        h("svg:text", { x: p.x + 8, y: p.y + 18, class: "dag-title" }, `job ${n.id}${n.step ? ` · ${n.step}`.slice(0, 18) : ""}`),
        h("svg:text", { x: p.x + 8, y: p.y + 36, class: "dag-state" }, n.state || "deleted"),
      ];
      return here ? h("svg:g", { dataset: { job: n.id } }, shape) : h("svg:a", { href: `#/job/${n.id}`, dataset: { job: n.id } }, h("svg:title", {}, `open job ${n.id}`), shape);
    }));
  // The same graph as nested lists of links: what a screen reader reads, and a way in on a phone.
  const parents = g.edges.filter((e) => e.to === job.id).map((e) => [e.from, e.state]);
  const children = g.edges.filter((e) => e.from === job.id).map((e) => [e.to, e.state]);
  const item = ([id, edge]) => {
    const n = g.nodes.get(id);
    return h("li", { dataset: { job: id } }, h("a", { href: `#/job/${id}` }, `job ${id}`), `${n.step ? ` (${n.step})` : ""} · ${n.state || "deleted"} · edge ${edge || "open"}`);
  };
  box.replaceChildren(
    h("div", { class: "scroll dag" }, svg),
    h("div", { class: "dag-lists" },
      h("div", {}, h("h3", {}, `Parents (${parents.length})`), parents.length ? h("ul", { id: "dag-parents" }, parents.map(item)) : h("p", { class: "muted", id: "dag-parents" }, "none")),
      h("div", {}, h("h3", {}, `Children (${children.length})`), children.length ? h("ul", { id: "dag-children" }, children.map(item)) : h("p", { class: "muted", id: "dag-children" }, "none"))),
    ...(g.cut ? [h("p", { class: "muted" }, `The graph goes on: ${DAG_MAX} jobs, ${DAG_DEPTH} steps away at most, are drawn; open a job at the edge to see further.`)] : []));
}

// -- retry variants --------------------------------------------------------------------------------

export async function viewVariants(ui, _rest, params, queues) {
  const { h, fmt } = ui;
  const queue = params.get("queue") || queues[0] || "";
  const select = h("select", { name: "queue", "aria-label": "queue" }, queues.map((n) => h("option", { value: n, selected: n === queue }, n)));
  select.addEventListener("change", () => { location.hash = `#/variants?queue=${encodeURIComponent(select.value)}`; });
  const head = [h("h1", {}, "Retry variants"), h("div", { class: "bar" }, h("label", {}, "Queue", select))];
  if (!queue) { ui.main().replaceChildren(...head, h("p", { class: "muted" }, "No queue yet.")); return; }
  const report = await ui.get(`${encodeURIComponent(queue)}/retry-variants`);
  const verdicts = new Map();
  for (const c of report.comparisons) {
    verdicts.set(c.label, `${c.verdict}${c.pValue === null ? "" : ` (p = ${Number(c.pValue.toPrecision(3))})`}`);
    if (!verdicts.has(c.control)) verdicts.set(c.control, "control");
  }
  const pct = (x) => (x === null || x === undefined ? "–" : `${(x * 100).toFixed(1)}%`);
  const secs = (x) => (x === null || x === undefined ? "–" : x < 10 ? `${x.toFixed(2)}s` : fmt.age(x));
  const rows = report.variants.map((v) => h("tr", { dataset: { variant: v.label } },
    h("td", {}, h("strong", {}, v.label)), h("td", { class: "num" }, v.weight.toFixed(2)), h("td", { class: "num" }, fmt.int(v.jobs)),
    h("td", { class: "num" }, pct(v.successRate)), h("td", { class: "num" }, v.attemptsPerSuccess === null ? "–" : v.attemptsPerSuccess.toFixed(2)),
    h("td", { class: "num" }, fmt.int(v.extraRequests)), h("td", { class: "num" }, secs(v.timeToSuccessP50Seconds)), h("td", { class: "num" }, secs(v.timeToSuccessP95Seconds)),
    h("td", { class: (v.deadLetterRate || 0) > 0 ? "num bad" : "num" }, pct(v.deadLetterRate)),
    h("td", { class: "wrap" }, verdicts.get(v.label) || (report.variants.length === 1 ? "no experiment: one variant" : "–"))));
  const history = report.history.map((e) => h("li", {}, `${fmt.when(e.startedAt)} · ${e.source} · ${Object.entries(e.weights).map(([k, w]) => `${k} ${Number(w).toFixed(2)}`).join(", ")}${e.reason ? ` · ${e.reason}` : ""}${e.actor ? ` · by ${e.actor}` : ""}`));
  ui.main().replaceChildren(...head,
    h("p", { id: "variant-verdict", class: "panel" }, h("strong", {}, report.verdict), h("br"), h("span", { class: "muted" }, `mode ${report.mode} · since ${fmt.when(report.since)}`)),
    h("div", { class: "scroll panel" }, h("table", { id: "variants" },
      h("thead", {}, h("tr", {}, [["Variant"], ["Weight", "num"], ["Jobs", "num"], ["Success", "num"], ["Attempts / success", "num"], ["Extra requests", "num"],
        ["p50 to success", "num"], ["p95 to success", "num"], ["Dead-letter rate", "num"], ["Verdict"]].map(([c, cls]) => h("th", { class: cls }, c)))),
      h("tbody", { id: "variant-rows" }, rows))),
    h("h2", {}, "Weights over time"),
    history.length ? h("ul", { id: "variant-history" }, history) : h("p", { class: "muted", id: "variant-history" }, "The weights never changed."));
}
