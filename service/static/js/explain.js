// Explain-a-unit card: patch × kernel per input channel, the per-channel sums, the bias, the
// total (pre-activation), the activation after the activation function, the model's own value.

import { contract } from "./api.js";
import { inputShapeOf } from "./arithmetic.js";
import { $, el, fill, num } from "./dom.js";
import { JobPanel } from "./panel.js";
import { on, state } from "./state.js";

const panel = new JobPanel("explain", "explain");
const SHOWN = 12; // channel tables shown before "show all"
const TOLERANCE = 1e-3;

function unitTable(ch, item, inSize) {
  const [h, w] = inSize || [Infinity, Infinity];
  const rows = ch.patch.map((line, i) => el("tr", {}, ...line.map((p, j) => {
    const r = item.rows ? item.rows[i] : 0;
    const c = item.cols ? item.cols[j] : 0;
    const pad = r < 0 || c < 0 || r >= h || c >= w;
    return el("td", { className: pad ? "pad" : "", title: pad ? "zero padding" : "" },
      el("span", { className: "p", text: num(p, 3) }),
      el("span", { className: "k", text: `× ${num(ch.kernel[i][j], 3)}` }));
  })));
  return el("table", { className: "unit", dataset: { channel: String(ch.index) } },
    el("caption", {}, `in-channel ${ch.index}: Σ = `,
      el("span", { className: "channel-sum", text: num(ch.sum, 6) })),
    el("tbody", {}, ...rows));
}

function term(label, value, id, note) {
  return [el("dt", { text: label }),
    el("dd", {}, el("span", { id, className: "value", text: num(value, 6) }), note ? ` ${note}` : null)];
}

function render(item, request) {
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
  const inShape = inputShapeOf(state.layers, state.layers.indexOf(request.layer),
    state.model.input_shape);
  const tables = item.channels.map((ch) => unitTable(ch, item, inShape));
  const where = el("p", { className: "hint", text: `Unit (y=${request.y}, x=${request.x}) of filter ` +
    `${request.filter} in ${request.layer.name} sees input rows ${item.rows[0]}…${item.rows.at(-1)}, ` +
    `columns ${item.cols[0]}…${item.cols.at(-1)} (padding ${item.padding}; shaded cells are zeros ` +
    "added by padding). Each cell: input value × kernel weight." });
  const shown = el("div", { className: "unit-grid" }, ...tables.slice(0, SHOWN));
  const rest = tables.length > SHOWN ? el("details", {},
    el("summary", { text: `show the other ${tables.length - SHOWN} channels` }),
    el("div", { className: "unit-grid" }, ...tables.slice(SHOWN))) : null;
  fill($("explain-channels"), where, shown, rest);
  $("explain-result").hidden = false;
}

async function explain(request) {
  if (!panel.ready()) return;
  $("explain-filter").value = request.filter;
  $("explain-y").value = request.y;
  $("explain-x").value = request.x;
  $("explain-result").hidden = true;
  const job = await panel.run({ model: state.model.id, layer: request.layer.name,
    options: { filter: request.filter, y: request.y, x: request.x }, images: [state.image] });
  if (!job) return;
  render(job.result.items[0], request);
  panel.setStatus(`done: ${request.layer.name}, filter ${request.filter} at (${request.y}, ${request.x})`);
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
  fill($("explain-channels"));
  panel.reset();
}

export function initExplain() {
  panel.button.addEventListener("click", fromInputs);
  on("contract", applyContract);
  on("explain-request", (request) => {
    explain(request);
    $("explain-card").scrollIntoView({ behavior: "smooth", block: "nearest" });
  });
  on("model", reset);
  on("image", reset);
}
