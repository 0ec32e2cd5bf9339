// convscope's browser UI: plain ES modules over the public HTTP contract (no build step).

import { apiKey, setApiKey } from "./api.js";
import { initActivations } from "./activations.js";
import { $ } from "./dom.js";
import { initExplain } from "./explain.js";
import { initFilters } from "./filters.js";
import { initGradcam } from "./gradcam.js";
import { initImage } from "./image.js";
import { initLayers } from "./layers.js";
import { initModels, loadModels } from "./models.js";

function initKey() {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("api-key").value.trim());
    $("key-status").textContent = apiKey() ? "saved" : "cleared";
    loadModels();
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
loadModels();
