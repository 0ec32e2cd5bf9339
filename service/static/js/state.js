// The page's shared state and a tiny event bus: "model", "layer", "image", "explain-request".

export const state = {
  model: null, // the selected model record from GET /v1/models
  layers: [], // its layer table
  layer: null, // the selected row
  image: null, // the chosen File
  imageUrl: null, // an object URL of it, for previews and overlays
};

const listeners = new Map();

export function on(event, fn) {
  if (!listeners.has(event)) listeners.set(event, []);
  listeners.get(event).push(fn);
}

export function emit(event, detail) {
  for (const fn of listeners.get(event) || []) fn(detail);
}

export const isSpatial = (row) => Boolean(row && row.output_shape && row.output_shape.length === 3);
export const isConv = (row) => Boolean(row && row.type === "Conv2D");
