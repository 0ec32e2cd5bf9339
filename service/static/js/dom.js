// Small DOM helpers shared by the views.

export const $ = (id) => document.getElementById(id);

// el("td", {className: "num", text: "3"}, child, ...)
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("aria") || key === "role" || key === "for") node.setAttribute(
      key.replace(/^aria([A-Z])/, (_, c) => `aria-${c.toLowerCase()}`), value);
    else node[key] = value;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const IMAGE_CODES = new Set(["invalid_image", "image_too_large", "missing_image", "too_many_images"]);

// Show an API error in plain words next to the control that caused it: image problems by the
// image picker, everything else in the panel's own error line.
export function showError(target, err) {
  const message = err && err.plain ? err.plain : String((err && err.message) || err);
  const code = err && err.code ? ` (${err.code})` : "";
  if (err && IMAGE_CODES.has(err.code)) {
    $("image-error").textContent = message + code;
    target.textContent = "The image was refused: see the message by the image picker.";
    return;
  }
  target.textContent = message + code;
}

export function clearError(target) {
  target.textContent = "";
}

// 4 significant digits, no exponent for ordinary magnitudes: 0.1235, 12.35, 1235
export function num(x, digits = 4) {
  if (x == null || Number.isNaN(x)) return "–";
  if (x === 0) return "0";
  const abs = Math.abs(x);
  if (abs >= 1e5 || abs < 1e-4) return x.toExponential(digits - 1);
  return String(Number(x.toPrecision(digits)));
}

export const shape = (s) => (s ? s.map((d) => (d == null ? "?" : d)).join("×") : "–");

// "queued…", "running… 40%" (the status as the API names it; progress once there is some)
export function jobStatusText(job) {
  const progress = job.progress > 0 ? ` ${Math.round(job.progress * 100)}%` : "";
  return `${job.status}…${progress}`;
}

// Replace an element's children.
export function fill(node, ...children) {
  node.replaceChildren(...children.filter((c) => c != null));
}
