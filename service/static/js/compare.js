// Compare card: every heatmap method of the contract (a gradcam job per CAM method, a saliency
// job per saliency method) on the chosen image for one class, each job with the `quality`
// option. One figure per method (its overlay, time per image, deletion and insertion AUC) and
// a table with the best deletion (lowest) and insertion (highest) marked.

import { UrlPool, contract, runJob } from "./api.js";
import { $, el, fill, num, showError } from "./dom.js";
import { on, state } from "./state.js";

const IN_FLIGHT = 3; // jobs queued or running at once
const urls = new UrlPool();
let generation = 0;

function methods() {
  const cams = (contract.cam_methods || []).map((method) => ({ kind: "gradcam", method }));
  const saliency = (contract.kinds || []).includes("saliency")
    ? (contract.saliency_methods || []).map((method) => ({ kind: "saliency", method })) : [];
  return [...cams, ...saliency];
}

// Seconds per image: the worker's own figure for the map when it gives one, else the job's run.
function seconds(job, item) {
  if (item && item.seconds != null) return item.seconds;
  if (job.started != null && job.finished != null) return job.finished - job.started;
  return null;
}

const ms = (s) => (s == null ? "–" : `${Math.round(s * 1000)} ms`);

function figureFor(entry) {
  const caption = el("figcaption", {}, el("b", { text: entry.method }), el("span", { text: "queued…" }));
  const figure = el("figure", { dataset: { method: entry.method } },
    el("img", { alt: `${entry.method} heatmap over the image` }), caption);
  entry.figure = figure;
  return figure;
}

async function runOne(entry, classIndex, mine) {
  const options = { method: entry.method, quality: true };
  if (classIndex != null) options.class_index = classIndex;
  const status = entry.figure.querySelector("figcaption span");
  try {
    const job = await runJob({ model: state.model.id, kind: entry.kind, layer: null, options,
      images: [state.image] }, { onUpdate: (j) => { if (mine()) status.textContent = `${j.status}…`; } });
    if (!mine()) return;
    const item = job.result.items[0];
    const q = item.quality || {};
    entry.row = { method: entry.method, kind: entry.kind, seconds: seconds(job, item),
      deletion: q.deletion_auc, insertion: q.insertion_auc,
      randomDeletion: q.random_deletion_auc, randomInsertion: q.random_insertion_auc,
      classIndex: item.class_index, traced: Boolean(item.traced) };
    entry.figure.querySelector("img").src = await urls.artifact(job.id, item.artifacts.overlay);
    fill(entry.figure.querySelector("figcaption"), el("b", { text: entry.method }),
      el("span", { className: "time", text: `${ms(entry.row.seconds)}${entry.row.traced ? "*" : ""} · ` }),
      el("span", { className: "auc", text: `del ${num(q.deletion_auc, 3)} · ins ${num(q.insertion_auc, 3)}` }));
  } catch (err) {
    if (!mine()) return;
    entry.row = { method: entry.method, kind: entry.kind, error: err };
    entry.figure.classList.add("failed");
    const message = el("span");
    showError(message, err);
    fill(entry.figure.querySelector("figcaption"), el("b", { text: entry.method }), message);
  }
}

function cell(value, best) {
  return el("td", { className: best ? "num best" : "num", text: value });
}

function renderTable(entries) {
  const ok = entries.map((e) => e.row).filter((r) => r && !r.error);
  const bestDel = Math.min(...ok.map((r) => r.deletion));
  const bestIns = Math.max(...ok.map((r) => r.insertion));
  fill($("compare-table").tBodies[0], ...entries.map(({ row }) => {
    if (!row || row.error) {
      return el("tr", { className: "failed" }, el("th", { scope: "row", text: row ? row.method : "?" }),
        el("td", { text: row ? row.kind : "" }), el("td", { colSpan: 5, text: "failed" }));
    }
    return el("tr", {}, el("th", { scope: "row", text: row.method }), el("td", { text: row.kind }),
      cell(row.seconds == null ? "–" : `${Math.round(row.seconds * 1000)}${row.traced ? "*" : ""}`),
      cell(num(row.deletion, 3), row.deletion === bestDel),
      cell(num(row.insertion, 3), row.insertion === bestIns),
      cell(num(row.randomDeletion, 3)), cell(num(row.randomInsertion, 3)));
  }));
}

async function run() {
  $("compare-error").textContent = "";
  if (!state.model) { $("compare-error").textContent = "Choose a model first."; return; }
  if (!state.image) { $("compare-error").textContent = "Choose an image first (step 2)."; return; }
  const mine = ((g) => () => g === generation)(++generation);
  const value = $("compare-class").value;
  const classIndex = value === "" ? null : Number(value);
  const entries = methods();
  urls.release();
  fill($("compare-grid"), ...entries.map(figureFor));
  fill($("compare-table").tBodies[0]);
  $("compare-summary").textContent = "";
  $("compare-result").hidden = false;
  $("compare-run").disabled = true;
  let done = 0;
  const queue = [...entries];
  const workers = Array.from({ length: Math.min(IN_FLIGHT, entries.length) }, async () => {
    while (queue.length && mine()) {
      await runOne(queue.shift(), classIndex, mine);
      done += 1;
      if (mine()) $("compare-status").textContent = `${done} / ${entries.length} methods done`;
    }
  });
  await Promise.all(workers);
  if (!mine()) return;
  $("compare-run").disabled = false;
  renderTable(entries);
  const classes = new Set(entries.filter((e) => e.row && !e.row.error).map((e) => e.row.classIndex));
  const labels = state.model.classes || [];
  const names = [...classes].map((c) => (labels[c] != null ? `“${labels[c]}” (class ${c})` : `class ${c}`));
  const q = contract.quality_option_defaults || {};
  $("compare-summary").textContent = `${entries.length} methods for ${names.join(", ") || "–"}; ` +
    `${q.baseline || "blur"} baseline, ${q.steps || "–"} steps; bold: the best deletion and insertion AUC` +
    (entries.some((e) => e.row && e.row.traced) ? "; * the time includes tracing the method (its first run on the worker: compare again for warm times)." : ".");
  $("compare-status").textContent = "done";
}

function reset() {
  generation += 1;
  urls.release();
  $("compare-result").hidden = true;
  $("compare-status").textContent = "";
  $("compare-error").textContent = "";
  $("compare-run").disabled = !(contract.kinds || []).includes("gradcam");
}

function fillClasses() {
  const classes = (state.model && state.model.classes) || [];
  fill($("compare-class"), el("option", { value: "", text: "top prediction" }),
    ...classes.map((name, i) => el("option", { value: String(i), text: `${i}: ${name}` })));
}

export function initCompare() {
  $("compare-run").addEventListener("click", run);
  on("contract", reset);
  on("model", () => { reset(); fillClasses(); });
  on("image", reset);
}
