// Model card: pick a model (GET /v1/models), load its layer table, upload a .keras model.

import { contract, getLayers, getModel, listModels, uploadModel } from "./api.js";
import { $, clearError, el, fill, showError, shape } from "./dom.js";
import { emit, on, state } from "./state.js";

const GROUPS = [["builtin", "Built-in"], ["application", "keras.applications"], ["upload", "Uploaded"]];
let models = [];
let selection = 0; // guards against a slow answer for a model no longer selected

function groupOf(model) {
  if (model.source === "upload") return "upload";
  if ((contract.convscope_models || []).includes(model.id)) return "builtin";
  return "application";
}

function optionText(model) {
  const notes = [];
  if (model.status && model.status !== "ready") notes.push(model.status);
  if (model.random_weights === true) notes.push("random weights");
  return `${model.name || model.id}${notes.length ? ` (${notes.join(", ")})` : ""}`;
}

// A model whose weights are random (keras.applications without weights, untrained built-ins).
function showWeightsNotice(model) {
  const notice = $("model-notice");
  notice.hidden = !(model && model.random_weights === true);
  if (notice.hidden) return;
  fill(notice, el("strong", { text: "random weights: " }),
    "the maps show the architecture, not learned features. ",
    el("span", { className: "hint", text: `${model.name || model.id} has no trained weights here` +
      `${model.source ? ` (${model.source})` : ""}; predictions and Grad-CAM are not meaningful.` }));
}

// The upload form's "Pixels are fed as" choices: the contract's preprocess modes.
function fillPreprocess(contract) {
  fill($("model-preprocess"), el("option", { value: "", text: "the API's default" }),
    ...contract.preprocess_modes.map((mode) => el("option", { value: mode, text: mode })));
}

function describe(model, layers) {
  const parts = [`input ${shape(model.input_shape)}`];
  if (model.classes) {
    const head = model.classes.slice(0, 6).join(", ");
    parts.push(`${model.classes.length} classes (${head}${model.classes.length > 6 ? ", …" : ""})`);
  }
  parts.push(`${layers.length} layers`);
  if (model.preprocess) parts.push(`pixels fed as ${model.preprocess}`);
  if (model.source) parts.push(model.source);
  return parts.join(" · ");
}

export async function loadModels(preferred) {
  const select = $("model-select");
  clearError($("model-error"));
  try {
    models = await listModels();
  } catch (err) {
    showError($("model-error"), err);
    if (err.code === "unauthorized") {
      $("settings").open = true;
      $("api-key").focus();
    }
    return;
  }
  const previous = preferred || (select.disabled ? "shapes" : select.value);
  select.replaceChildren();
  for (const [key, label] of GROUPS) {
    const group = el("optgroup", { label });
    for (const m of models.filter((x) => groupOf(x) === key)) {
      group.append(el("option", { value: m.id, text: optionText(m) }));
    }
    if (group.children.length) select.append(group);
  }
  select.disabled = models.length === 0;
  select.value = models.some((m) => m.id === previous) ? previous : (models[0] || {}).id;
  if (select.value) await selectModel(select.value);
}

async function layersWhenReady(id, token) {
  for (let attempt = 0; attempt < 10; attempt++) {
    try {
      return await getLayers(id);
    } catch (err) {
      if (err.code !== "model_not_ready" || token !== selection) throw err;
      $("model-info").textContent = "The worker is still preparing this model…";
    }
  }
  return getLayers(id);
}

// Selecting a model clears everything computed for the previous one at once ("model" with
// null), then announces the new one when its layer table has arrived.
export async function selectModel(id) {
  const token = ++selection;
  clearError($("model-error"));
  Object.assign(state, { model: null, layers: [], layer: null });
  emit("model", null);
  const listed = models.find((m) => m.id === id);
  showWeightsNotice(listed);
  $("model-info").textContent = "Loading the layer table…";
  try {
    const layers = await layersWhenReady(id, token);
    const record = await getModel(id);
    if (token !== selection) return;
    const model = { ...record, random_weights: record.random_weights ?? (listed || {}).random_weights };
    state.model = model;
    state.layers = layers;
    $("model-info").textContent = describe(model, layers);
    showWeightsNotice(model);
    emit("model", model);
  } catch (err) {
    if (token !== selection) return;
    $("model-info").textContent = "";
    showError($("model-error"), err);
  }
}

async function waitValidated(model) {
  let record = model;
  while ((contract.model_waiting || []).includes(record.status)) {
    record = await getModel(record.id, 10);
  }
  return record;
}

async function upload(event) {
  event.preventDefault();
  const error = $("model-upload-error");
  const status = $("model-upload-status");
  const button = $("model-upload");
  clearError(error);
  const file = $("model-file").files[0];
  if (!file) {
    error.textContent = "Choose a .keras file first.";
    return;
  }
  button.disabled = true;
  status.textContent = "Uploading; a worker validates it…";
  try {
    const { model } = await uploadModel(file, {
      name: $("model-name").value.trim(), preprocess: $("model-preprocess").value,
    });
    const record = await waitValidated(model);
    if (record.status === "refused") {
      const reason = record.error || {};
      status.textContent = "";
      error.textContent = `Refused: ${reason.message || "the model was refused"}` +
        (reason.code ? ` (${reason.code})` : "");
      return;
    }
    status.textContent = `Validated: “${record.name}”, input ${shape(record.input_shape)}.`;
    await loadModels(record.id);
  } catch (err) {
    status.textContent = "";
    showError(error, err);
  } finally {
    button.disabled = false;
  }
}

export function initModels() {
  on("contract", fillPreprocess);
  $("model-select").addEventListener("change", (e) => selectModel(e.target.value));
  $("model-refresh").addEventListener("click", () => loadModels());
  $("model-upload-form").addEventListener("submit", upload);
}
