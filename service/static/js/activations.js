// Activations card: every channel drawn once, client-side from the NPY, clickable to enlarge
// (with its statistics) and to pick a unit to explain. The API's grid PNG (the same channels,
// tiled) is offered as a download, not shown a second time.

import { UrlPool, artifactBuffer } from "./api.js";
import { drawChannel } from "./colormap.js";
import { $, el, fill, num, shape } from "./dom.js";
import { channel, parseNpy } from "./npy.js";
import { JobPanel } from "./panel.js";
import { renderPredictions } from "./predictions.js";
import { emit, isConv, on, state } from "./state.js";

const panel = new JobPanel("act", "activations");
const urls = new UrlPool();
let current = null; // {layer, array, stats, zoom: {c, map}, cursor: {y, x}}

async function run() {
  if (!panel.ready()) return;
  const layer = state.layer;
  const job = await panel.run({ model: state.model.id, layer: layer.name,
    options: {}, images: [state.image] });
  if (!job) return;
  const item = job.result.items[0];
  try {
    urls.release();
    const grid = $("act-grid-link");
    grid.href = await urls.artifact(job.id, item.artifacts.grid);
    grid.download = `${state.model.id}-${layer.name.replace(/\W+/g, "_")}-feature-maps.png`;
    const array = parseNpy(await artifactBuffer(job.id, item.artifacts.activations));
    current = { layer, array, stats: item.channels, zoom: null, cursor: null };
    renderPredictions($("act-predictions"), item.predictions);
    renderChannels();
    $("act-result").hidden = false;
    panel.setStatus(`done: ${layer.name}, ${shape(item.shape)}`);
  } catch (err) {
    panel.error.textContent = `Could not show the result: ${err.message}`;
  }
}

function statsOf(c) {
  return (current.stats || []).find((s) => s.index === c) || {};
}

function renderChannels() {
  const channels = current.array.shape[2];
  const buttons = [];
  for (let c = 0; c < channels; c++) {
    const canvas = el("canvas", { className: "pixelated" });
    drawChannel(canvas, channel(current.array, c));
    const s = statsOf(c);
    const button = el("button", { type: "button", className: "channel", dataset: { channel: String(c) },
      ariaLabel: `channel ${c}: mean ${num(s.mean)}, max ${num(s.max)}` }, canvas,
    el("span", { text: String(c) }));
    button.addEventListener("click", () => zoom(c));
    buttons.push(button);
  }
  fill($("act-channels"), ...buttons);
  $("act-detail").hidden = true;
}

function zoom(c) {
  const map = channel(current.array, c);
  current.zoom = { c, map };
  current.cursor = null;
  const canvas = $("act-zoom");
  drawChannel(canvas, map);
  canvas.style.aspectRatio = `${map.width} / ${map.height}`;
  const s = statsOf(c);
  fill($("act-stats"),
    el("strong", { text: `Channel ${c}` }), ` of ${current.layer.name} (${map.height}×${map.width}): `,
    "mean ", el("span", { id: "act-mean", text: num(s.mean) }),
    ", max ", el("span", { id: "act-max", text: num(s.max) }),
    `, min ${num(map.min)}`);
  $("act-unit").textContent = "";
  $("act-explain-max").hidden = !isConv(current.layer);
  for (const b of $("act-channels").children) b.classList.toggle("selected", b.dataset.channel === String(c));
  $("act-detail").hidden = false;
  marker(null);
}

function marker(pos) {
  let box = $("act-marker");
  if (!box) {
    box = el("div", { id: "act-marker", className: "marker", ariaHidden: "true" });
    $("act-zoom").parentElement.append(box);
  }
  box.hidden = !pos;
  if (!pos) return;
  const { width, height } = current.zoom.map;
  Object.assign(box.style, { left: `${(pos.x / width) * 100}%`, top: `${(pos.y / height) * 100}%`,
    width: `${100 / width}%`, height: `${100 / height}%` });
}

function pointAt(y, x) {
  const { map, c } = current.zoom;
  current.cursor = { y, x };
  marker(current.cursor);
  const value = map.values[y * map.width + x];
  fill($("act-unit"), `Unit (y=${y}, x=${x}) of channel ${c}: `,
    el("span", { id: "act-unit-value", text: num(value, 6) }));
  return value;
}

function explainAt(y, x) {
  const value = pointAt(y, x);
  if (!isConv(current.layer)) {
    $("act-unit").append(` — ${current.layer.type} is not a Conv2D layer: no unit explanation.`);
    return;
  }
  emit("explain-request", { layer: current.layer, filter: current.zoom.c, y, x, value });
}

function onZoomClick(event) {
  const canvas = event.currentTarget;
  const rect = canvas.getBoundingClientRect();
  const { width, height } = current.zoom.map;
  const x = Math.min(width - 1, Math.floor(((event.clientX - rect.left) / rect.width) * width));
  const y = Math.min(height - 1, Math.floor(((event.clientY - rect.top) / rect.height) * height));
  explainAt(y, x);
}

function onZoomKey(event) {
  if (!current || !current.zoom) return;
  const { width, height } = current.zoom.map;
  const cur = current.cursor || { y: 0, x: 0 };
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  if (moves[event.key]) {
    event.preventDefault();
    const [dy, dx] = moves[event.key];
    pointAt(Math.max(0, Math.min(height - 1, cur.y + dy)), Math.max(0, Math.min(width - 1, cur.x + dx)));
  } else if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    explainAt(cur.y, cur.x);
  }
}

function explainMax() {
  const { map } = current.zoom;
  let best = 0;
  for (let i = 1; i < map.values.length; i++) if (map.values[i] > map.values[best]) best = i;
  explainAt(Math.floor(best / map.width), best % map.width);
}

function reset() {
  current = null;
  $("act-result").hidden = true;
  panel.reset();
}

export function initActivations() {
  on("contract", () => panel.checkKind());
  panel.button.addEventListener("click", run);
  $("act-zoom").addEventListener("click", onZoomClick);
  $("act-zoom").addEventListener("keydown", onZoomKey);
  $("act-explain-max").addEventListener("click", explainMax);
  on("model", reset);
  on("image", reset);
}
