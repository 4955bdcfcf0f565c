// labloop dashboard: draws the campaign document pushed by /api/stream (server-sent events) as tables and SVG
// plots. Every text that comes from the journal is set with textContent (never innerHTML), so a molecule
// named "<script>" shows as text. The write token lives in sessionStorage of this tab only.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "labloop-token";
const DECIDER_KEY = "labloop-decider";
const state = { snap: null, plots: null, cvId: null, pinnedCv: false, connected: false, readAt: null, batch: "" };

function $(id) { return document.getElementById(id); }

// text from the journal with its control characters (C0 and C1: ESC, BEL, a line break) and bidirectional controls
// (U+202A-202E, U+2066-2069, U+200E/F, U+061C) shown as their escapes, as `labloop log` and the report show them: a
// name holding U+202E "exe.txt" read "txt.exe" on the page, and ESC or BEL were there unseen (security trials)
const CONTROLS = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const NAMED_ESCAPES = { "\t": "\\t", "\n": "\\n", "\r": "\\r" };
function plain(text) {
  return String(text).replace(CONTROLS, (c) => {
    const code = c.charCodeAt(0);
    return NAMED_ESCAPES[c] || (code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`);
  });
}
// most characters of a molecule's name shown (`labloop log` cuts as many, orchestrator/journal/view.py
// SHOWN_NAME_CHARS); the whole name is the cell's tooltip
const SHOWN_NAME_CHARS = 80;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = plain(text);
  if (cls) node.className = cls;
  return node;
}

function num(value, digits) {
  return value === null || value === undefined ? "" : Number(value).toFixed(digits);
}

function cell(row, text, cls) { row.appendChild(el("td", text, cls)); }

// the molecule: its library name (when the library names it) above its SMILES; a chemist knows molecules by name
function molecule(row, e) {
  const td = el("td", null, "smiles");
  if (e.name) {
    const name = plain(e.name);
    const span = el("span", name.length > SHOWN_NAME_CHARS ? `${name.slice(0, SHOWN_NAME_CHARS - 1)}…` : name,
                    "molecule-name");
    if (name.length > SHOWN_NAME_CHARS) span.title = name;
    td.append(span, el("br"));
  }
  td.append(document.createTextNode(e.smiles));
  row.appendChild(td);
}

function fillBody(table, rows, build) {
  const body = table.tBodies[0];
  const fresh = document.createElement("tbody");
  rows.forEach((item) => fresh.appendChild(build(item)));
  table.replaceChild(fresh, body);
}

function pad(n) { return String(n).padStart(2, "0"); }

// The browser's offset from UTC at `date` ("UTC+1", "UTC-5:30", "UTC"): the page showed local times without a zone,
// beside event texts that quote UTC stamps (an operator's trial); `labloop log` names its zone alike (view.py).
function zoneLabel(date) {
  const offset = -(date || new Date()).getTimezoneOffset(), h = Math.floor(Math.abs(offset) / 60);
  const m = Math.abs(offset) % 60;
  return offset ? `UTC${offset < 0 ? "-" : "+"}${h}${m ? `:${pad(m)}` : ""}` : "UTC";
}

// A journal time (UTC) in the browser's zone as `labloop log` prints one ("12-05 07:45:40"), with the zone if asked.
function localTime(stamp, zoned) {
  if (!stamp) return "";
  const d = new Date(stamp);
  if (Number.isNaN(d.getTime())) return stamp;
  const text = `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:` +
    pad(d.getSeconds());
  return zoned ? `${text} ${zoneLabel(d)}` : text;
}

// "45 s", "7 min 47 s", "8 h 20 min", "2 d 3 h": a night's silence read "30000 s"
function duration(seconds) {
  const s = Math.max(0, Math.round(seconds)), m = Math.floor(s / 60), h = Math.floor(m / 60);
  if (s < 60) return `${s} s`;
  if (m < 60) return `${m} min ${s % 60} s`;
  return h < 24 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} d ${h % 24} h`;
}

// -- plots --------------------------------------------------------------------------------------------

function svgEl(tag, attrs, cls) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (cls) node.setAttribute("class", cls);
  return node;
}

// round ticks between lo and hi, about n; whole numbers only when `integer` (experiment numbers: "1.5" was shown)
function ticks(lo, hi, n, integer) {
  const span = hi - lo || 1;
  const step0 = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const found = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const step = integer ? Math.max(1, Math.round(found)) : found;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

function extent(values, pad) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  if (lo === hi) { lo -= 0.5; hi += 0.5; }
  const p = (hi - lo) * (pad === undefined ? 0.05 : pad);
  return [lo - p, hi + p];
}

// Draw into `svg`: spec = {xlabel, ylabel, xs: [...all x], ys: [...all y], empty, draw(g, sx, sy)}
function plot(svg, spec) {
  const W = 480, H = 300, L = 58, R = 12, T = 12, B = 42;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  if (!spec.xs.length) {
    const t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "empty");
    t.textContent = spec.empty;
    svg.appendChild(t);
    return;
  }
  const [x0, x1] = spec.xrange || extent(spec.xs);
  const [y0, y1] = spec.yrange || extent(spec.ys);
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  for (const t of ticks(y0, y1, 5)) {
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: sy(t), y2: sy(t) }, "grid-line"));
    const label = svgEl("text", { x: L - 6, y: sy(t) + 4, "text-anchor": "end" });
    label.textContent = String(t);
    svg.appendChild(label);
  }
  for (const t of ticks(x0, x1, 6, spec.integerX)) {
    const label = svgEl("text", { x: sx(t), y: H - B + 15, "text-anchor": "middle" });
    label.textContent = String(t);
    svg.appendChild(label);
  }
  svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B }, "axis"));
  svg.appendChild(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B }, "axis"));
  const xl = svgEl("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" });
  xl.textContent = spec.xlabel;
  svg.appendChild(xl);
  const yl = svgEl("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle",
                             transform: `rotate(-90 12 ${(T + H - B) / 2})` });
  yl.textContent = spec.ylabel;
  svg.appendChild(yl);
  const g = svgEl("g");
  svg.appendChild(g);
  spec.draw(g, sx, sy, [x0, x1], [y0, y1]);
}

function points(g, xs, ys, sx, sy, cls, r) {
  xs.forEach((x, i) => g.appendChild(svgEl("circle", { cx: sx(x), cy: sy(ys[i]), r: r || 3 }, cls)));
}

function polyline(g, xs, ys, sx, sy, cls) {
  g.appendChild(svgEl("polyline", { points: xs.map((x, i) => `${sx(x)},${sy(ys[i])}`).join(" ") }, cls));
}

function drawBest(plots) {
  const xs = plots.measured.map((_, i) => i + 1);
  const ys = plots.measured.map((m) => m.potential_v);
  const band = plots.window_v;
  plot($("plot-best"), {
    xlabel: "n-th measured experiment (not its id)", ylabel: "potential (V vs Li/Li+)", empty: "no measurement yet",
    xs, ys: band ? ys.concat(band) : ys, integerX: true,
    draw(g, sx, sy, xr) {
      if (band) {
        g.appendChild(svgEl("rect", { x: sx(xr[0]), width: sx(xr[1]) - sx(xr[0]), y: sy(band[1]),
                                      height: sy(band[0]) - sy(band[1]) }, "band"));
      }
      points(g, xs, ys, sx, sy, "points");
      const stepX = [], stepY = [];
      plots.best_so_far.forEach((b, i) => {
        if (i > 0) { stepX.push(i + 1); stepY.push(plots.best_so_far[i - 1]); }
        stepX.push(i + 1); stepY.push(b);
      });
      polyline(g, stepX, stepY, sx, sy, "best");
    },
  });
}

function drawParity(plots) {
  const pairs = plots.parity;
  const lo = pairs.map((p) => p.mu - p.sigma), hi = pairs.map((p) => p.mu + p.sigma);
  const all = lo.concat(hi, pairs.map((p) => p.measured));
  const range = extent(all);
  plot($("plot-parity"), {
    xlabel: "predicted at proposal (V vs Li/Li+; bars ±1 sd)", ylabel: "measured (V vs Li/Li+)",
    empty: "no prediction to compare yet", xs: pairs.map((p) => p.mu), ys: all, xrange: range, yrange: range,
    draw(g, sx, sy) {
      g.appendChild(svgEl("line", { x1: sx(range[0]), y1: sy(range[0]), x2: sx(range[1]), y2: sy(range[1]) },
                          "diag"));
      pairs.forEach((p) => g.appendChild(svgEl("line", { x1: sx(p.mu - p.sigma), x2: sx(p.mu + p.sigma),
                                                          y1: sy(p.measured), y2: sy(p.measured) }, "errbar")));
      // open grey: predicted before any measurement calibrated the model, as the report draws them
      [[false, "parity"], [true, "parity-uncalibrated"]].forEach(([before, cls]) => {
        const shown = pairs.filter((p) => p.uncalibrated === before);
        points(g, shown.map((p) => p.mu), shown.map((p) => p.measured), sx, sy, cls);
      });
    },
  });
}

function drawError(plots) {
  const e = plots.prediction_error;
  const xs = e.errors.map((_, i) => i + 1);
  plot($("plot-error"), {
    xlabel: "n-th measured experiment (not its id)", ylabel: "|measured − predicted| (V)", empty: "no prediction to compare yet",
    xs, ys: e.errors.concat([0]), integerX: true,
    draw(g, sx, sy) {
      points(g, xs, e.errors, sx, sy, "points");
      polyline(g, xs, e.running_mean, sx, sy, "running");
    },
  });
}

function drawVoltammogram(detail) {
  const v = detail && detail.voltammograms.length ? detail.voltammograms[detail.voltammograms.length - 1] : null;
  $("cv-caption").textContent = v ? plain(`#${detail.experiment.id} ${detail.experiment.name ? `${detail.experiment.name} ` : ""}${detail.experiment.smiles} · ${Number(v.scan_rate_v_s).toPrecision(3)} V/s`) : "";
  const ys = v ? v.current_a.map((i) => i * 1e6) : [];
  plot($("plot-cv"), {
    xlabel: `E (V vs ${v ? v.reference : "reference"})`, ylabel: "i (µA)", empty: "no voltammogram yet",
    xs: v ? v.potential_v : [], ys,
    draw(g, sx, sy) { polyline(g, v.potential_v, ys, sx, sy, "cv"); },
  });
}

async function showVoltammogram(id) {
  if (id === null || id === undefined) { drawVoltammogram(null); return; }
  const response = await fetch(`/api/experiments/${encodeURIComponent(id)}`, { cache: "no-store" });
  if (!response.ok) return;
  state.cvId = id;
  drawVoltammogram(await response.json());
  for (const row of $("experiments-table").tBodies[0].rows) row.classList.toggle("selected", row.dataset.id === String(id));
}

// -- tables and text ----------------------------------------------------------------------------------

function render(snap, plots) {
  state.snap = snap;
  state.plots = plots;
  const c = snap.campaign, p = snap.progress;
  document.title = `${plain(c.name)} · labloop`;
  $("campaign-name").textContent = plain(c.name);
  // a dry run's data are simulated: said as `labloop log` and the report say it (a referee's trial)
  const runs = c.runs.dry ? (c.runs.real ? `${c.runs.dry} of ${c.runs.dry + c.runs.real} runs dry: partly simulated ` +
    "data · " : "dry run: simulated data · ") : "";
  $("campaign-summary").textContent =
    plain(`${runs}objective: ${c.objective_text} · planner ${c.planner.kind} · seed ${c.seed} · store ${c.store}`);
  const done = p.counts.done;
  $("done-count").textContent = `${done}/${p.max_experiments}`;
  $("progress-bar").style.width = `${Math.min(100, 100 * done / p.max_experiments)}%`;
  // a failed scan whose bound lies past the threshold is a hit by its bound, as `labloop log` counts it
  $("hits").textContent = p.hits === null ? "–" : String(p.hits) + (p.hits_by_bound ? ` (+ ${p.hits_by_bound} by bound)` : "");
  $("model-version").textContent = snap.models.length ? `v${snap.models[snap.models.length - 1].version}` : "none";
  $("state-counts").replaceChildren(...stateCounts(p));
  const zone = zoneLabel();
  for (const th of document.querySelectorAll("th.time")) th.textContent = `${th.dataset.label} (${zone})`;

  fillBody($("best-table"), snap.best, (e) => {
    const row = el("tr");
    cell(row, snap.best.indexOf(e) + 1, "num"); cell(row, e.id, "num"); molecule(row, e);
    cell(row, num(e.potential_v, 3), e.hit ? "num hit" : "num");
    return row;
  });
  fillBody($("models-table"), snap.models, (m) => {
    const row = el("tr");
    cell(row, m.pruned ? `${m.version} (pruned)` : m.version, "num"); cell(row, localTime(m.created_at)); cell(row, m.n_train, "num");
    cell(row, m.metrics.n_measurements ?? "", "num"); cell(row, num(m.metrics.measured_fit_mae_v, 3), "num");
    return row;
  });
  fillBody($("experiments-table"), snap.experiments.slice().reverse(), (e) => {
    const row = el("tr");
    row.dataset.id = String(e.id);
    if (e.id === state.cvId) row.classList.add("selected");
    const vetoed = e.status === "failed" && (e.cause || "").startsWith("vetoed");  // a person's choice, not a fault
    cell(row, e.id, "num"); molecule(row, e); cell(row, vetoed ? "vetoed" : e.status, `status-${vetoed ? "vetoed" : e.status}`);
    cell(row, e.attempt, "num"); cell(row, e.step ?? "", "num"); cell(row, num(e.mu, 3), "num");
    cell(row, num(e.sigma, 3), "num"); cell(row, num(e.acquisition, 3), "num"); cell(row, e.model_version ?? "", "num");
    cell(row, num(e.potential_v, 3), e.hit ? "num hit" : "num");
    cell(row, [e.flags.join(", "), e.cause || ""].filter(Boolean).join("; "));
    row.addEventListener("click", () => { state.pinnedCv = true; showVoltammogram(e.id); });
    return row;
  });
  // every warning about a measurement, by experiment: the events table keeps the last 50 events, about four
  // experiments' worth, and a wave narrower than its electrons said of experiment 1 was gone (a chemist's trial)
  const warnings = snap.events.filter((ev) => ev.kind === "warning");
  $("warnings-panel").hidden = !warnings.length;
  fillBody($("warnings-table"), warnings.slice().reverse(), (ev) => {
    const row = el("tr");
    const later = ev.data && ev.data.for_later_experiments;
    cell(row, later ? `from ${ev.experiment_id}` : ev.experiment_id, "num"); cell(row, localTime(ev.time));
    cell(row, ev.message);
    return row;
  });
  fillBody($("events-table"), snap.events.slice(-50).reverse(), (ev) => {
    const row = el("tr");
    // a warning about a measurement (journalled by the run as the console said it) stands out among the routine
    cell(row, localTime(ev.time)); cell(row, ev.kind, ev.kind === "warning" ? "kind-warning" : ""); cell(row, ev.message);
    return row;
  });
  renderApproval(snap);
  renderRunState();
  drawBest(plots); drawParity(plots); drawError(plots);
  const measured = snap.experiments.filter((e) => e.status === "done");
  const latest = measured.length ? measured[measured.length - 1].id : null;
  if (!state.pinnedCv && latest !== state.cvId) showVoltammogram(latest);
}

// The experiments per state. Vetoes are counted apart from failures (progress.vetoed, of counts.failed): "failed 9"
// in red held 8 vetoes (an operator's trial). An experiment still "running" when no run holds the journal (kill -9)
// is said to be orphaned, in the interrupted style, not in the blue of a live one.
function stateCounts(p) {
  const items = [];
  for (const [k, n] of Object.entries(p.counts)) {
    if (k === "failed") {
      items.push(el("li", `failed ${n - p.vetoed}`, n - p.vetoed ? "status-failed" : ""));
      if (p.vetoed) items.push(el("li", `vetoed ${p.vetoed}`, "status-vetoed"));
    } else if (k === "running" && n && !p.run_active) {
      items.push(el("li", `running ${n} (the run is gone)`, "status-interrupted"));
    } else {
      items.push(el("li", `${k.replace("_", " ")} ${n}`, n ? `status-${k}` : ""));
    }
  }
  // the lab's measurements from before the campaign (past_measurements): learnt from, counted apart, as `log` says
  if (p.past) {
    const hits = p.past.hits === null ? "" : `, ${p.past.hits} hit${p.past.hits === 1 ? "" : "s"}`;
    const bounds = p.past.bounds_n ? ` and ${p.past.bounds_n} bound${p.past.bounds_n === 1 ? "" : "s"}` : "";
    items.push(el("li", `+ ${p.past.measurements_n} past measurement${p.past.measurements_n === 1 ? "" : "s"}${bounds}${hits}`));
  }
  return items;
}

// Whether a run is writing the journal, from the document's progress.run_active: whether a process holds the
// store's runner lock (orchestrator/journal/lock.py, as `labloop log` and `labloop resume` decide it). The kernel
// drops that lock when the run dies, kill -9 included, so a killed run is said here, not shown as live for ever.
// "Nothing written for" counts from progress.last_heard, the journal's newest write of any kind (actions, raw data,
// events), which a resume closes a killed run's actions at: the last event was older than the actions of a cv that
// was running when the run was killed. How the run ended (progress.ended_as) sets the style: a rig left NOT safe
// is an alarm, a killed run or a stop by faults (exit 1) stands out, a finish or a Ctrl-C stays quiet. While the
// page cannot reach the dashboard it claims nothing about the run: the document it holds may be old.
function renderRunState() {
  const snap = state.snap;
  if (!snap) return;
  const p = snap.progress, line = $("run-state");
  if (!state.connected) {
    renderNow(null);
    line.textContent = "connection to the dashboard lost: whether a run is writing this journal is unknown until " +
      `the page reconnects (last read ${state.readAt})`;
    line.className = "run-unknown";
    return;
  }
  const last = p.last_heard;
  const age = last ? (Date.now() - new Date(last).getTime()) / 1000 : NaN;
  const written = Number.isNaN(age) ? "" : `nothing written for ${duration(age)}, since ${localTime(last, true)}`;
  renderNow(p);
  if (p.run_active) {
    line.textContent = "run live: a labloop process is writing this journal";
    line.className = "run-live";
  } else if (p.ended_as === "unsafe") {
    line.textContent = `RIG NOT MADE SAFE: ${plain(p.ended)} (no run is writing this journal${written ? `; ${written}` : ""})`;
    line.className = "run-unsafe";
  } else if (p.counts.running) {  // in `labloop log`'s words (journal/view.py, run_end), and what became of it
    line.textContent = `${plain(p.ended)}; the experiment it was running stopped with it and runs again on resume ` +
      `(no run is writing this journal${written ? `; ${written}` : ""})`;
    line.className = "run-gone";
  } else {  // how the last run ended, as the server words it for `labloop log` too (journal/view.py, run_end)
    line.textContent = `${plain(p.ended)} (no run is writing this journal${written ? `; ${written}` : ""})`;
    line.className = { killed: "run-gone", stopped: "run-fault" }[p.ended_as] || "run-stopped";
  }
}

// What a live run is doing now, a retrain in progress and the ETA (progress.now, .retraining, .eta: the server
// computes them from the journal, journal/view.py), in the words of `labloop log`'s header line (view.py, live_line
// and doing), one item each; nothing unless a run is live (`p` null: the page cannot tell). Every journal text
// (a molecule's name, a SMILES, a wait's message) is set as text.
function renderNow(p) {
  const list = $("run-now");
  const items = p && p.now ? liveItems(p) : [];
  list.replaceChildren(...items.map(([cls, text]) => el("li", text, cls)));
  list.hidden = items.length === 0;
}

function liveItems(p) {
  const items = [["now", `now: ${doing(p.now)}`]];
  const r = p.retraining;
  if (r) items.push(["retraining", `retraining model (round ${r.round}, since ${localTime(r.since, true)})`]);
  if (p.eta) items.push(["eta", etaText(p.eta)]);
  return items;
}

function doing(now) {
  if (now.doing === "experiment") {
    const molecule = now.name ? `${now.name} (${now.smiles})` : now.smiles;
    const attempt = now.attempt > 1 ? ` (attempt ${now.attempt})` : "";
    const a = now.action;
    const step = a ? `${a.command} on ${a.instrument} since ${localTime(a.since, true)}`
      : `between protocol steps (running since ${localTime(now.since, true)})`;
    return `experiment ${now.experiment_id}${attempt} ${molecule}: ${step}`;
  }
  if (now.doing === "awaiting_approval") {
    const ids = now.experiments;
    return `waiting for approval of experiment${ids.length === 1 ? "" : "s"} ${ids.join(", ")} (proposed ` +
      `${localTime(now.since, true)}): labloop approve, or the dashboard`;
  }
  if (now.doing === "waiting") return `waiting since ${localTime(now.since, true)}: ${now.message}`;
  if (now.doing === "between") return `about to start experiment ${now.next}`;
  return "proposing the next experiments";
}

// what rounds to 0 s is "under 1 s" (a zero-latency dry run's experiments take milliseconds), as
// orchestrator/journal/view.py eta_text says it
function etaText(eta) {
  const left = Math.round(eta.seconds) <= 0 ? "under 1 s" : `about ${duration(eta.seconds)}`;
  const pace = Math.round(eta.pace_s) <= 0 ? "under 1 s" : duration(eta.pace_s);
  let text = `${left} left at the recent pace (${pace} per experiment, the mean of the last ${eta.pace_of}; ` +
    "an estimate)";
  if (eta.untimed_retrain) text += ", plus the retrain in progress, which no finished one has timed yet";
  if (eta.max_hours_at) {
    const at = localTime(eta.max_hours_at, true);
    text += eta.first === "max_hours" ? `, but budget.max_hours stops the run first, at ${at}`
      : `, before budget.max_hours stops the run at ${at}`;
  }
  return text;
}

// -- approval -----------------------------------------------------------------------------------------

// A proposal's planned conditions: the planner's own, then the protocol's it runs at unless one replaced it (a
// potential is read at a scan rate: the approval table showed none, an operator's trial).
function conditionsText(e) {
  const said = (k, v) => {
    if (k === "scan_rate_v_s") return `scan rate ${Number(v).toPrecision(3)} V/s`;
    if (k === "scan_rates_v_s" && Array.isArray(v)) return `scan rates ${v.map((r) => Number(r).toPrecision(3)).join(", ")} V/s`;
    return `${k} ${typeof v === "number" ? Number(v).toPrecision(4) : JSON.stringify(v)}`;
  };
  return Object.entries(e.conditions || {}).map(([k, v]) => said(k, v))
    .concat(Object.entries(e.protocol_conditions || {}).map(([k, v]) => `${said(k, v)} (protocol)`)).join("; ");
}

function renderApproval(snap) {
  const waiting = snap.experiments.filter((e) => e.status === "awaiting_approval");
  const batch = waiting.length ? `${snap.campaign.created_at}: ${waiting.map((e) => e.id).join(", ")}` : "";
  if (batch && batch !== state.batch) {  // another batch: what was said of the last decision is not about this one
    $("approval-message").textContent = "";
    $("approval-message").className = "";
  }
  state.batch = batch;
  // the answer to the last decision stays in sight until the next batch: the update that empties the batch
  // hid the panel, and with it the answer, as soon as the decision landed (whichever came first)
  $("approval-panel").hidden = waiting.length === 0 && !$("approval-message").textContent;
  $("approve-button").disabled = $("veto-all-button").disabled = waiting.length === 0;
  // predictions of the first batch come before any measurement, on the prior's scale (as `labloop log` marks them;
  // not when the lab's past measurements calibrated them: the snapshot's `uncalibrated`)
  const first = (e) => e.uncalibrated === true;
  $("approval-note").hidden = !waiting.some(first);
  const ticked = new Set([...document.querySelectorAll("#approval-table input:checked")].map((b) => b.value));
  fillBody($("approval-table"), waiting, (e) => {
    const row = el("tr");
    const box = el("input");
    box.type = "checkbox"; box.value = String(e.id); box.checked = ticked.has(String(e.id));
    box.setAttribute("aria-label", `veto experiment ${e.id}`);
    const td = el("td"); td.appendChild(box); row.appendChild(td);
    cell(row, e.id, "num"); molecule(row, e); cell(row, conditionsText(e), "conditions");
    cell(row, first(e) ? `${num(e.mu, 3)} *` : num(e.mu, 3), "num");
    cell(row, num(e.sigma, 3), "num"); cell(row, num(e.acquisition, 3), "num"); cell(row, e.model_version ?? "", "num");
    return row;
  });
}

async function decide(vetoAll) {
  const boxes = [...document.querySelectorAll("#approval-table input[type=checkbox]")];
  const veto = boxes.filter((b) => vetoAll || b.checked).map((b) => Number(b.value));
  const batch = boxes.map((b) => Number(b.value));
  // one click vetoed a whole batch (an operator's trial): said first, by its ids, and nothing is sent unless accepted
  if (vetoAll && !window.confirm(`Veto all ${veto.length} experiments of this batch (${veto.join(", ")})? None of ` +
                                 "them is measured, and the planner counts each as a failure of its molecule.")) return;
  const token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  // who decides and why, journalled with the decision (`labloop approve --by/--reason` say them too); unsaid, the
  // journal names the dashboard alone
  const decider = $("decider").value.trim(), reason = $("reason").value.trim();
  sessionStorage.setItem(DECIDER_KEY, decider);
  const message = $("approval-message");
  const response = await fetch("/api/approve", {
    method: "POST", headers: { "Content-Type": "application/json", "X-Labloop-Token": token },
    // the batch shown, as decided, and of which campaign: a journal begun afresh at the path has the same ids
    body: JSON.stringify({ veto, batch, campaign: state.snap.campaign.created_at, by: decider || undefined,
                           reason: reason || undefined }),
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) {
    message.className = "";
    message.textContent = `batch ${batch.join(", ")}: approved ${body.approved.length}, vetoed ${body.vetoed.length}`;
    $("reason").value = "";  // said of this decision; the name stays for the next
    $("approval-panel").hidden = false;  // an update may have hidden it already: the batch no longer waits
  } else {
    message.className = "error";
    message.textContent = `refused (${response.status}): ${body.error || response.statusText}`;
  }
}

// -- live updates -------------------------------------------------------------------------------------

function connect() {
  const status = $("connection");
  const source = new EventSource("/api/stream");
  source.addEventListener("campaign", (event) => {
    const message = JSON.parse(event.data);
    state.connected = true;
    state.readAt = localTime(new Date().toISOString(), true);
    render(message.campaign, message.plots);
    const running = message.campaign.progress.run_active;
    status.textContent = `${running ? "run live" : "no run"} · read ${state.readAt}`;
    status.className = running ? "connection live" : "connection stopped";
  });
  source.addEventListener("problem", (event) => {  // the journal cannot be read: the page shows it as last read
    status.textContent = `journal unreadable · ${JSON.parse(event.data).error}`;
    status.className = "connection lost";
  });
  source.onerror = () => {
    state.connected = false;
    status.textContent = "connection lost · retrying";
    status.className = "connection lost";
    renderRunState();
  };
}

function init() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    history.replaceState(null, "", location.pathname);  // keep the token out of the address bar
  }
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("decider").value = sessionStorage.getItem(DECIDER_KEY) || "";
  $("approve-button").addEventListener("click", () => decide(false));
  $("veto-all-button").addEventListener("click", () => decide(true));
  connect();
  setInterval(renderRunState, 5000);  // the "N s ago" of a stopped run grows while nothing is written
}

document.addEventListener("DOMContentLoaded", init);
