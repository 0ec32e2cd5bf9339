// convscope's browser UI: plain ES modules over the public HTTP contract (no build step).
// Start-up: GET /v1/contract once (the names and defaults every card builds from), then models.

import { apiKey, loadContract, setApiKey } from "./api.js";
import { initActivations } from "./activations.js";
import { initAtlas } from "./atlas.js";
import { initCompare } from "./compare.js";
import { $, showError } from "./dom.js";
import { initExplain } from "./explain.js";
import { initFilters } from "./filters.js";
import { initGradcam } from "./gradcam.js";
import { initImage } from "./image.js";
import { initLayers } from "./layers.js";
import { initModels, loadModels } from "./models.js";
import { emit } from "./state.js";

let started = false;

async function start() {
  if (!started) {
    try {
      emit("contract", await loadContract());
    } catch (err) {
      showError($("model-error"), err);
      if (err.code === "unauthorized") $("settings").open = true;
      return;
    }
    started = true;
  }
  await loadModels();
}

function initKey() {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("api-key").value.trim());
    $("key-status").textContent = apiKey() ? "saved" : "cleared";
    start();
  });
}

initKey();
initModels();
initLayers();
initImage();
initActivations();
initGradcam();
initFilters();
initExplain();
initAtlas();
initCompare();
start();
