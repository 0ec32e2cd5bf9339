// Layer card: the layer table, the selected layer, and its conv arithmetic spelled out.

import { contract } from "./api.js";
import { explainRow } from "./arithmetic.js";
import { $, el, fill, shape } from "./dom.js";
import { emit, isConv, isSpatial, on, state } from "./state.js";

const pair = (v) => (v ? (v[0] === v[1] ? `${v[0]}×${v[1]}` : v.join("×")) : "–");

function row(layer, index) {
  const pick = el("button", { type: "button", className: "link", text: layer.name,
    dataset: { layer: layer.name }, ariaPressed: "false" });
  pick.addEventListener("click", () => selectLayer(layer.name));
  const tr = el("tr", { dataset: { index: String(index) } },
    el("td", {}, pick), el("td", { text: layer.type }), el("td", { text: shape(layer.output_shape) }),
    el("td", { className: "num", text: (layer.params || 0).toLocaleString("en") }),
    el("td", { text: pair(layer.kernel_size) }), el("td", { text: pair(layer.strides) }),
    el("td", { text: layer.padding || "–" }), el("td", { text: pair(layer.receptive_field) }),
    el("td", { text: layer.activation || "–" }));
  tr.addEventListener("click", (e) => {
    if (e.target.tagName !== "BUTTON") selectLayer(layer.name);
  });
  return tr;
}

function defaultLayer(layers) {
  const convs = layers.filter(isConv);
  if (convs.length) return convs[convs.length - 1].name;
  const spatial = layers.filter(isSpatial);
  return spatial.length ? spatial[spatial.length - 1].name : (layers[0] || {}).name;
}

function renderTable() {
  const layers = state.layers;
  fill($("layer-table").tBodies[0], ...layers.map(row));
  const select = $("layer-select");
  fill(select, ...layers.map((l) => el("option", { value: l.name, text: `${l.name} (${l.type})` })));
  select.disabled = layers.length === 0;
  if (layers.length) {
    selectLayer(defaultLayer(layers));
  } else {
    fill($("arithmetic"));
    $("layer-hint").textContent = "";
  }
  updateScrollCue();
}

// A table wider than its box (phones) says so: a hint line, and a shadow on each edge that
// has more columns beyond it.
function updateScrollCue() {
  const wrap = $("layer-scroll");
  const hidden = wrap.scrollWidth - wrap.clientWidth;
  const frame = $("layer-frame");
  frame.classList.toggle("more-left", hidden > 1 && wrap.scrollLeft > 1);
  frame.classList.toggle("more-right", hidden > 1 && wrap.scrollLeft < hidden - 1);
  $("layers-scroll-hint").hidden = hidden <= 1;
}

function formulaBlock(title, generic, filled, check) {
  return el("div", { className: "formula" },
    el("h4", { text: title }),
    el("code", { className: "generic", text: generic }),
    el("code", { className: "filled", text: filled }),
    check ? el("p", { className: check.ok ? "ok" : "warn", text: check.text }) : null);
}

function renderArithmetic(layer) {
  const box = $("arithmetic");
  const index = state.layers.indexOf(layer);
  const info = explainRow(state.layers, index, state.model && state.model.input_shape);
  const blocks = [el("h3", { text: `${layer.name} · ${layer.type}` })];
  if (info.inShape) {
    blocks.push(el("p", { className: "hint",
      text: `Input ${shape(info.inShape)} (n × n × c_in, read from the layer before) → ` +
        `output ${shape(layer.output_shape)}.` }));
  }
  for (const out of info.output) {
    const ok = out.matches;
    blocks.push(formulaBlock(`Output size (${out.axis})`, `output = ${out.generic}`, out.filled, {
      ok, text: ok ? `✓ matches the table: ${out.size}`
        : "≠ the table: this layer's input is not the row above (a branch); see the API's formula" }));
    for (const note of out.notes) blocks.push(el("p", { className: "hint", text: note }));
  }
  if (info.params) {
    blocks.push(formulaBlock("Parameters", `params = ${info.params.generic}`, info.params.filled, {
      ok: info.params.matches,
      text: info.params.matches ? `✓ matches the table: ${layer.params.toLocaleString("en")}`
        : `the table says ${layer.params.toLocaleString("en")}` }));
  } else {
    blocks.push(el("p", { className: "hint",
      text: `Parameters: ${(layer.params || 0).toLocaleString("en")}.` }));
  }
  const server = layer.arithmetic;
  if (server && (server.output_size || server.params)) {
    const list = el("ul", { className: "server" });
    if (server.output_size) list.append(el("li", {}, "output size: ", el("code", { text: server.output_size })));
    if (server.params) list.append(el("li", {}, "params: ", el("code", { text: server.params })));
    blocks.push(el("h4", { text: "As the API computes it (height axis)" }), list);
  }
  if (!info.output.length && !server) {
    blocks.push(el("p", { className: "hint", text: "No kernel arithmetic applies to this layer type." }));
  }
  const rf = layer.receptive_field;
  blocks.push(el("p", { className: "hint", text: rf
    ? `Receptive field: each unit sees ${pair(rf)} input pixels.`
    : "Receptive field: none (the unit depends on the whole input)." }));
  fill(box, ...blocks);
}

export function selectLayer(name) {
  const layer = state.layers.find((l) => l.name === name);
  if (!layer) return;
  state.layer = layer;
  $("layer-select").value = name;
  for (const button of $("layer-table").querySelectorAll("button[data-layer]")) {
    const on_ = button.dataset.layer === name;
    button.setAttribute("aria-pressed", String(on_));
    button.closest("tr").classList.toggle("selected", on_);
  }
  const kinds = [];
  if (isSpatial(layer)) kinds.push(...contract.spatial_kinds);
  if (isConv(layer)) kinds.push(...contract.conv_kinds);
  $("layer-hint").textContent = kinds.length
    ? `Usable for the job kinds ${kinds.join(", ")}.`
    : "Not a spatial layer: pick a conv or pooling layer.";
  renderArithmetic(layer);
  emit("layer", layer);
}

export function initLayers() {
  $("layer-select").addEventListener("change", (e) => selectLayer(e.target.value));
  $("layer-scroll").addEventListener("scroll", updateScrollCue, { passive: true });
  const resized = new ResizeObserver(updateScrollCue);
  resized.observe($("layer-scroll"));
  resized.observe($("layer-table"));
  on("model", renderTable);
}
