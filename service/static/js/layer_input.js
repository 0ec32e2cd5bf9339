// What a layer receives, read from the layer table: whether its input is the image itself
// (only per-pixel layers such as Rescaling before it), so which colour each channel is; what
// the values are; and where a window of it lies on the input image.

import { contract } from "./api.js";
import { inputShapeOf, padBefore, previousRow } from "./arithmetic.js";

const sameShape = (a, b) => Boolean(a && b) && a.length === b.length && a.every((d, i) => d === b[i]);

// The rows before `index` when every one of them maps pixels one by one and keeps the image's
// shape (Rescaling, Normalization, …): the layer's input is then the (preprocessed) image.
// null otherwise.
export function pixelLayersBefore(rows, index, modelInput) {
  const before = rows.slice(0, index);
  const perPixel = (r) => r.kernel_size == null && r.type !== "Dense" &&
    sameShape(r.output_shape, modelInput);
  return before.every(perPixel) ? before : null;
}

function channelOrder(model) {
  return (contract.channel_order || {})[model.preprocess] || "RGB";
}

// Names of the `count` input channels of row `index`: R/G/B (in the order the model is fed) or
// "grey" when its input is the image, "in-channel k" otherwise.
export function channelNames(rows, index, model, count) {
  const image = pixelLayersBefore(rows, index, model.input_shape) &&
    count === (model.input_shape || [])[2];
  if (image && count === 1) return ["grey"];
  if (image && count === 3) return channelOrder(model).split("");
  return Array.from({ length: count }, (_, k) => `in-channel ${k}`);
}

// One sentence saying what the patch numbers are.
export function valuesNote(rows, index, model) {
  const layer = rows[index];
  const pixelLayers = pixelLayersBefore(rows, index, model.input_shape);
  if (!pixelLayers) {
    const prev = rows[previousRow(rows, index)];
    const source = prev ? `the output of ${prev.name} (${prev.type})` : "the previous layer's output";
    return `Patch values are what ${layer.name} receives as input: ${source}, ` +
      "i.e. feature-map values, not pixels.";
  }
  const steps = [`the model's preprocessing (pixels fed as “${model.preprocess}”)`,
    ...pixelLayers.map((r) => `its ${r.name} layer (${r.type})`)];
  return `Patch values are what ${layer.name} receives as input: the image's pixels (0–255, ` +
    `resized to the model's input) after ${steps.join(", then ")} — not the pixel values ` +
    "of the file.";
}

// Window [a, b] of a windowed layer's output → the window of its input it reads.
function back([a, b], row, inShape, axis) {
  const f = row.kernel_size[axis];
  const s = row.strides ? row.strides[axis] : 1;
  const d = row.dilation_rate ? row.dilation_rate[axis] : 1;
  const p = padBefore(inShape[axis], row.output_shape[axis], f, s, d, row.padding);
  if (p == null) return null;
  return [a * s - p, b * s - p + d * (f - 1)];
}

// The window explain returned (`rows`, `cols` of the layer's input) mapped back through the
// layers before it to input-image pixels: a windowed layer (kernel f, stride s, dilation d,
// top/left zero padding p) reads [a·s − p, b·s − p + d·(f − 1)] of its input for [a, b] of its
// output; per-pixel layers keep the window. The chain follows the table's previous rows, so it
// is `exact` when its size equals the table's receptive field; otherwise (a branching model)
// the window is widened to that receptive field around the same centre. Not clipped to the
// image. null when a layer in between changes the size in a way the table does not describe.
export function imageWindow(rows, index, modelInput, window) {
  let r = [window.rows[0], window.rows.at(-1)];
  let c = [window.cols[0], window.cols.at(-1)];
  for (let i = previousRow(rows, index); i >= 0 && r && c; i = previousRow(rows, i)) {
    const row = rows[i];
    const inShape = inputShapeOf(rows, i, modelInput);
    const out = row.output_shape;
    if (!inShape || inShape.length !== 3 || out.length !== 3) return null;
    if (row.kernel_size) {
      r = back(r, row, inShape, 0);
      c = back(c, row, inShape, 1);
    } else if (out[0] !== inShape[0] || out[1] !== inShape[1]) {
      return null;
    }
  }
  if (!r || !c) return null;
  const rf = rows[index].receptive_field;
  const exact = !rf || (r[1] - r[0] + 1 === rf[0] && c[1] - c[0] + 1 === rf[1]);
  if (!exact) {
    const widen = ([a, b], size) => {
      const start = Math.round((a + b - (size - 1)) / 2);
      return [start, start + size - 1];
    };
    r = widen(r, rf[0]);
    c = widen(c, rf[1]);
  }
  return { rows: r, cols: c, exact };
}
