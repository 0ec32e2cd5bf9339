// A list of top-k predictions; with onPick, each is a button (Grad-CAM re-runs for it).

import { el, fill } from "./dom.js";

export function renderPredictions(list, predictions, { onPick, selected } = {}) {
  const items = (predictions || []).map((p) => {
    const label = p.label != null ? p.label : `class ${p.index}`;
    const text = `${label} — ${(p.score * 100).toFixed(1)}%`;
    const bar = el("span", { className: "bar", ariaHidden: "true" });
    bar.style.setProperty("--score", String(p.score));
    if (!onPick) return el("li", { dataset: { index: String(p.index) } }, el("span", { text }), bar);
    const button = el("button", { type: "button", className: "link", text,
      dataset: { index: String(p.index) }, ariaPressed: String(p.index === selected) });
    button.addEventListener("click", () => onPick(p.index));
    return el("li", { dataset: { index: String(p.index) } }, button, bar);
  });
  fill(list, ...items);
}
