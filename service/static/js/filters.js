// Filter patterns card: a range of channels, an objective, a live progress bar, a cancel
// button. A channel that never fires is marked "dead" on its tile.

import { UrlPool, contract } from "./api.js";
import { $, el, fill, num } from "./dom.js";
import { JobPanel } from "./panel.js";
import { on, state } from "./state.js";

const panel = new JobPanel("filters", "filters");
const urls = new UrlPool();
let runs = 0; // the latest run (a model switch or a new run makes older ones stale)

function setProgress(fraction) {
  const percent = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  $("filters-progress").value = percent;
  $("filters-percent").textContent = `${percent}%`;
}

function channelRange() {
  const from = Number($("filters-from").value);
  const to = Number($("filters-to").value);
  const channels = layerUnits(state.layer);
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to < from) {
    throw new Error("Channels: “from” and “to” must be whole numbers with from ≤ to.");
  }
  if (channels != null && to >= channels) {
    throw new Error(`Channels: this layer has channels 0…${channels - 1}.`);
  }
  const most = contract.max_filters_per_job;
  if (to - from + 1 > most) throw new Error(`At most ${most} channels per run.`);
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

async function run() {
  if (!panel.ready()) return;
  let filters;
  try {
    filters = channelRange();
  } catch (err) {
    panel.error.textContent = err.message;
    return;
  }
  const steps = Number($("filters-steps").value) || defaults().steps;
  const objective = $("filters-objective").value || defaults().objective;
  if (objective === "diversity") filters = filters.slice(0, 1); // n images of one channel
  // `class` maximises a flat layer's unit: a spatial selection means the model's last layer
  const flat = (row) => Boolean(row && row.output_shape && row.output_shape.length === 1);
  const layer = objective === "class" && !flat(state.layer) ? null : state.layer;
  const generation = ++runs;
  setProgress(0);
  $("filters-result").hidden = true;
  $("filters-cancel").disabled = false;
  const job = await panel.run({ model: state.model.id, layer: layer ? layer.name : null,
    options: { filters, steps, objective } }, (j) => setProgress(j.progress || 0));
  if (!job) {
    if (generation === runs) $("filters-cancel").disabled = true;
    return;
  }
  $("filters-cancel").disabled = true;
  setProgress(1);
  urls.release();
  const figures = [];
  for (const f of job.result.filters) {
    const name = f.copy == null ? `#${f.index}` : `#${f.index}.${f.copy}`;
    const img = el("img", { className: "pixelated", alt: `pattern for channel ${name}` });
    const caption = `${name} · act ${num(f.activation, 3)}${f.dead ? " · dead" : ""}`;
    figures.push(el("figure", { className: f.dead ? "pattern dead" : "pattern" }, img,
      el("figcaption", { text: caption })));
    urls.artifact(job.id, f.artifact).then((url) => {
      img.src = url;
    }).catch((err) => {
      panel.error.textContent = `Could not load pattern ${f.index}: ${err.plain || err.message}`;
    });
  }
  fill($("filters-list"), ...figures);
  panel.setStatus(`done: ${job.layer}, ${job.result.objective}, ${job.result.steps} steps`);
  $("filters-result").hidden = false;
}

// Channels of an H×W×C layer, units of a flat (Dense) one; null when unknown.
function layerUnits(layer) {
  const shape = layer && layer.output_shape;
  return shape && shape.length ? shape[shape.length - 1] : null;
}

function syncRange(layer) {
  const channels = layerUnits(layer);
  if (channels == null) return;
  for (const id of ["filters-from", "filters-to"]) $(id).max = String(channels - 1);
  if (Number($("filters-to").value) > channels - 1) {
    $("filters-to").value = String(Math.min(contract.default_filter_count, channels) - 1);
  }
}

const defaults = () => contract.option_defaults[panel.kind];

// Defaults and limits from the contract: steps, the most steps, the first channels shown.
function applyContract() {
  const steps = $("filters-steps");
  steps.value = String(defaults().steps);
  steps.max = String(contract.max_filter_steps);
  const objectives = contract.filter_objectives || [defaults().objective || "channel"];
  fill($("filters-objective"), ...objectives.map((o) => el("option", { value: o, text: o })));
  $("filters-objective").value = defaults().objective || objectives[0];
  $("filters-to").value = String(contract.default_filter_count - 1);
  panel.checkKind();
}

function reset() {
  runs++;
  $("filters-result").hidden = true;
  $("filters-cancel").disabled = true;
  setProgress(0);
  panel.reset();
}

export function initFilters() {
  panel.button.addEventListener("click", run);
  $("filters-cancel").addEventListener("click", () => panel.cancel());
  on("contract", applyContract);
  on("layer", syncRange);
  on("model", reset);
}
