// Image card: file picker, drag-and-drop, and sample images (service/static/samples).

import { $, clearError, el } from "./dom.js";
import { emit, state } from "./state.js";

export function setImage(file) {
  clearError($("image-error"));
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.image = file;
  state.imageUrl = URL.createObjectURL(file);
  const preview = $("image-preview");
  preview.onerror = () => {
    $("image-error").textContent = `The browser cannot display “${file.name}” as an image; ` +
      "the API will say whether it can read it.";
  };
  preview.src = state.imageUrl;
  $("image-name").textContent = `${file.name} · ${(file.size / 1024).toFixed(1)} KB`;
  $("image-figure").hidden = false;
  emit("image", file);
}

async function loadSamples() {
  const box = $("samples");
  try {
    const response = await fetch("/ui/samples/index.json");
    if (!response.ok) throw new Error(response.statusText);
    for (const sample of await response.json()) {
      const url = `/ui/samples/${sample.file}`;
      const button = el("button", { type: "button", className: "sample",
        ariaLabel: `use the sample image “${sample.label}”`, title: sample.label },
      el("img", { src: url, alt: "", width: 48, height: 48 }), el("span", { text: sample.label }));
      button.addEventListener("click", async () => {
        const blob = await (await fetch(url)).blob();
        setImage(new File([blob], sample.file, { type: "image/png" }));
      });
      box.append(button);
    }
  } catch {
    box.hidden = true;
  }
}

function initDrop() {
  const zone = $("drop-zone");
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) zone.addEventListener(type, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) setImage(file);
  });
}

export function initImage() {
  $("image-file").addEventListener("change", (e) => {
    if (e.target.files[0]) setImage(e.target.files[0]);
  });
  initDrop();
  loadSamples();
}
