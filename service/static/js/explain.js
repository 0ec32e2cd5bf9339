// Explain-a-unit card: patch × kernel per input channel (and the products cell by cell), the
// per-channel sums, the bias, the total (pre-activation), the activation after the activation
// function, the model's own value; what the patch numbers are; and the window the unit sees,
// outlined on the input image.

import { contract } from "./api.js";
import { inputShapeOf } from "./arithmetic.js";
import { $, el, fill, num } from "./dom.js";
import { channelNames, imageWindow, valuesNote } from "./layer_input.js";
import { JobPanel } from "./panel.js";
import { on, state } from "./state.js";
import { channelBlock } from "./unit_tables.js";

const panel = new JobPanel("explain", "explain");
const SHOWN = 8; // channel blocks shown before "show the other …"
const TOLERANCE = 1e-3;

function term(label, value, id, note) {
  return [el("dt", { text: label }),
    el("dd", {}, el("span", { id, className: "value", text: num(value, 6) }), note ? ` ${note}` : null)];
}

function renderSummary(item, request) {
  const sumOfSums = item.channels.reduce((a, ch) => a + ch.sum, 0);
  const fn = request.layer.activation || "identity";
  const agrees = Math.abs(item.activation - item.model_activation) <= TOLERANCE *
    Math.max(1, Math.abs(item.model_activation));
  const parts = [
    ...term(`Σ over ${item.channels.length} input channels (patch × kernel)`, sumOfSums, "explain-sum"),
    ...term("+ bias", item.bias, "explain-bias"),
    ...term("= total (pre-activation)", item.pre_activation, "explain-total"),
    ...term(`${fn}(total) = activation`, item.activation, "explain-activation"),
    ...term("the model's own value", item.model_activation, "explain-model",
      agrees ? "✓ the same within float tolerance" : "✗ differs"),
  ];
  if (request.value != null) parts.push(...term("the feature map shows", request.value, "explain-map-value"));
  fill($("explain-summary"), ...parts);
}

const span = ([a, b]) => (a === b ? String(a) : `${a}…${b}`);
const clip = ([a, b], n) => [Math.max(0, a), Math.min(n - 1, b)];

// The window on the input image, outlined over the image as the model sees it (resized to its
// input size; the aspect ratio follows the contract's `resize`).
async function renderWhere(item, request, index) {
  const figure = $("explain-where");
  const image = $("explain-image");
  image.src = request.imageUrl;
  await image.decode().catch(() => null);
  const [h0, w0] = state.model.input_shape || [];
  const [h, w] = [h0 || image.naturalHeight, w0 || image.naturalWidth];
  const found = h && w ? imageWindow(state.layers, index, state.model.input_shape, item) : null;
  const inLayer = `Unit (y=${request.y}, x=${request.x}) of filter ${request.filter} in ` +
    `${request.layer.name} reads rows ${span([item.rows[0], item.rows.at(-1)])}, columns ` +
    `${span([item.cols[0], item.cols.at(-1)])} of its input (padding ${item.padding}; shaded ` +
    "cells are zeros added by padding).";
  if (!found) {
    figure.hidden = true;
    $("explain-location").textContent = `${inLayer} Where that lies on the image cannot be ` +
      "worked out from the layer table (a layer before it resizes in a way the table does not describe).";
    return;
  }
  const rows = clip(found.rows, h);
  const cols = clip(found.cols, w);
  const outline = $("explain-outline");
  Object.assign(outline.style, { top: `${(rows[0] / h) * 100}%`, left: `${(cols[0] / w) * 100}%`,
    height: `${((rows[1] - rows[0] + 1) / h) * 100}%`, width: `${((cols[1] - cols[0] + 1) / w) * 100}%` });
  Object.assign(outline.dataset, { rows: rows.join(","), cols: cols.join(","),
    exact: String(found.exact) });
  $("explain-where-stack").style.aspectRatio = `${w} / ${h}`;
  const outside = found.rows[0] < 0 || found.cols[0] < 0 || found.rows[1] >= h || found.cols[1] >= w;
  const how = found.exact
    ? "the layers before it, traced back through the table's kernels, strides and padding"
    : "approximate: the model branches, so the outline is the table's receptive field " +
      `(${request.layer.receptive_field.join("×")}) around the traced centre`;
  $("explain-location").textContent = `${inLayer} On the image as the model sees it ` +
    `(${h}×${w}, resized “${contract.resize}”), that is rows ${span(rows)}, columns ${span(cols)}` +
    `${outside ? " (the rest is padding)" : ""}: ${how}.`;
  figure.hidden = false;
}

function renderChannels(item, request, index) {
  const names = channelNames(state.layers, index, state.model, item.channels.length);
  const inShape = inputShapeOf(state.layers, index, state.model.input_shape) || [];
  const [h, w] = [inShape[0] ?? Infinity, inShape[1] ?? Infinity];
  const padded = (i, j) => {
    const r = item.rows[i];
    const c = item.cols[j];
    return r < 0 || c < 0 || r >= h || c >= w;
  };
  const blocks = item.channels.map((ch, k) => channelBlock(ch, names[k], padded));
  const values = item.channels.flatMap((ch) => ch.patch.flat());
  fill($("explain-values"), valuesNote(state.layers, index, state.model),
    ` In these patches they run from `, el("span", { id: "explain-min", text: num(Math.min(...values), 4) }),
    " to ", el("span", { id: "explain-max", text: num(Math.max(...values), 4) }), ".");
  const shown = el("div", { className: "unit-grid" }, ...blocks.slice(0, SHOWN));
  const rest = blocks.length > SHOWN ? el("details", {},
    el("summary", { text: `show the other ${blocks.length - SHOWN} channels` }),
    el("div", { className: "unit-grid" }, ...blocks.slice(SHOWN))) : null;
  fill($("explain-channels"), shown, rest);
}

const motion = () => (window.matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth");

// Bring the explanation into view when it is off screen (a phone: the card sits far below).
function reveal() {
  const box = $("explain-result").getBoundingClientRect();
  if (box.top >= 0 && box.top < window.innerHeight * 0.75) return;
  $("explain-card").scrollIntoView({ behavior: motion(), block: "start" });
}

async function explain(request) {
  if (!panel.ready()) return;
  $("explain-filter").value = request.filter;
  $("explain-y").value = request.y;
  $("explain-x").value = request.x;
  $("explain-result").hidden = true;
  const imageUrl = state.imageUrl;
  const job = await panel.run({ model: state.model.id, layer: request.layer.name,
    options: { filter: request.filter, y: request.y, x: request.x }, images: [state.image] });
  if (!job) return;
  const generation = panel.generation;
  const item = job.result.items[0];
  const index = state.layers.indexOf(request.layer);
  renderSummary(item, request);
  renderChannels(item, request, index);
  await renderWhere(item, { ...request, imageUrl }, index);
  if (generation !== panel.generation) return; // the model or image changed meanwhile
  $("explain-result").hidden = false;
  panel.setStatus(`done: ${request.layer.name}, filter ${request.filter} at (${request.y}, ${request.x})`);
  reveal();
}

function fromInputs() {
  const read = (id) => Number($(id).value);
  if (!state.layer) {
    panel.error.textContent = "Choose a model and a Conv2D layer first.";
    return;
  }
  explain({ layer: state.layer, filter: read("explain-filter"), y: read("explain-y"),
    x: read("explain-x"), value: null });
}

function applyContract() {
  const defaults = contract.option_defaults[panel.kind] || {};
  for (const key of ["filter", "y", "x"]) {
    if (defaults[key] != null) $(`explain-${key}`).value = String(defaults[key]);
  }
  panel.checkKind();
}

function reset() {
  $("explain-result").hidden = true;
  $("explain-where").hidden = true;
  fill($("explain-channels"));
  panel.reset();
}

export function initExplain() {
  panel.button.addEventListener("click", fromInputs);
  on("contract", applyContract);
  on("explain-request", (request) => {
    explain(request);
    $("explain-card").scrollIntoView({ behavior: motion(), block: "nearest" });
  });
  on("model", reset);
  on("image", reset);
}
