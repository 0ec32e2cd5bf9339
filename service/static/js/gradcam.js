// Grad-CAM card: method selector (the contract's CAM methods), target (the class, or what
// lowers it), top predictions (click one to re-run for that class), the heatmap PNG over the
// original image with an opacity slider, and on request the map's faithfulness: deletion and
// insertion AUCs beside a random map's, with their curves (the job's `quality` option).

import { UrlPool, contract } from "./api.js";
import { $, el, fill, num } from "./dom.js";
import { JobPanel } from "./panel.js";
import { renderPredictions } from "./predictions.js";
import { isSpatial, on, state } from "./state.js";

const panel = new JobPanel("cam", "gradcam");
const urls = new UrlPool();

function options(classIndex) {
  const opts = { method: $("cam-method").value, target: $("cam-target").value,
    quality: $("cam-quality").checked };
  const classes = state.model.classes;
  const topK = contract.option_defaults[panel.kind].top_k;
  if (classes && classes.length && topK != null) opts.top_k = Math.min(topK, classes.length);
  if (classIndex != null) opts.class_index = classIndex;
  return opts;
}

async function run(classIndex) {
  if (!panel.ready()) return;
  const useSelected = $("cam-use-layer").checked && isSpatial(state.layer);
  const imageUrl = state.imageUrl;
  const method = $("cam-method").value;
  const job = await panel.run({ model: state.model.id,
    layer: useSelected ? state.layer.name : null, options: options(classIndex),
    images: [state.image] });
  if (!job) return;
  const item = job.result.items[0];
  try {
    urls.release();
    $("cam-heatmap").src = await urls.artifact(job.id, item.artifacts.heatmap_png);
    $("cam-original").src = imageUrl;
    const [h, w] = state.model.input_shape || [1, 1];
    $("cam-stack").style.aspectRatio = `${w || 1} / ${h || 1}`;
    const labels = state.model.classes || [];
    const label = labels[item.class_index] != null ? labels[item.class_index] : `class ${item.class_index}`;
    fill($("cam-summary"), `${item.method || method} for “${label}” (class ${item.class_index}), score `,
      num(item.score), ` — layer ${job.result.layer || job.layer}`);
    $("cam-summary").dataset.classIndex = String(item.class_index);
    renderPredictions($("cam-predictions"), item.predictions,
      { onPick: (index) => run(index), selected: item.class_index });
    await showQuality(job, item);
    $("cam-result").hidden = false;
  } catch (err) {
    panel.error.textContent = `Could not show the result: ${err.message}`;
  }
}

async function showQuality(job, item) {
  const q = item.quality;
  $("cam-quality-result").hidden = !q;
  if (!q) return;
  const auc = (key) => el("b", { dataset: { auc: key }, text: num(q[key], 3) });
  fill($("cam-quality-summary"), "deletion AUC ", auc("deletion_auc"), " (random map ",
    auc("random_deletion_auc"), ") · insertion AUC ", auc("insertion_auc"), " (random map ",
    auc("random_insertion_auc"), `) — measuring ${q.probability}, ${q.baseline} baseline, `
    + `${q.steps} steps; a faithful map deletes lower and inserts higher than the random one`);
  $("cam-quality-curves").src = await urls.artifact(job.id, item.artifacts.quality_curves);
}

const TARGET_LABELS = { class: "the class", negative: "what lowers it" };

function fillMethods() {
  const methods = contract.cam_methods;
  fill($("cam-method"), ...methods.map((m) => el("option", { value: m, text: m })));
  $("cam-method").value = contract.option_defaults[panel.kind].method || methods[0];
  fill($("cam-target"), ...(contract.targets || ["class"]).map(
    (t) => el("option", { value: t, text: TARGET_LABELS[t] || t })));
  panel.checkKind();
}

function setOpacity() {
  const value = $("cam-opacity").value;
  $("cam-heatmap").style.opacity = String(value / 100);
  $("cam-opacity-value").textContent = `${value}%`;
}

function reset() {
  $("cam-result").hidden = true;
  panel.reset();
}

export function initGradcam() {
  panel.button.addEventListener("click", () => run(null));
  $("cam-opacity").addEventListener("input", setOpacity);
  setOpacity();
  on("contract", fillMethods);
  on("model", reset);
  on("image", reset);
}
