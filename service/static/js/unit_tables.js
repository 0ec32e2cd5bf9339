// One input channel of a unit explanation as three small grids: the input patch, the kernel,
// and their products patch[i, j]·kernel[i, j] (cell by cell), whose sum is the channel's Σ.

import { el, num } from "./dom.js";

function grid(kind, caption, values, padded, title) {
  const rows = values.map((line, i) => el("tr", {}, ...line.map((v, j) => {
    const pad = padded(i, j);
    return el("td", { className: pad ? "pad" : "", title: pad ? "zero padding" : title,
      text: num(v, 3) });
  })));
  return el("table", { className: `grid ${kind}` }, el("caption", { text: caption }),
    el("tbody", {}, ...rows));
}

// ch: {index, patch, kernel, sum}; name: "R", "grey", "in-channel 4", …; padded(i, j): whether
// that patch cell is zero padding.
export function channelBlock(ch, name, padded) {
  const products = ch.patch.map((line, i) => line.map((p, j) => p * ch.kernel[i][j]));
  const width = ch.kernel[0].length;
  const productGrid = grid("product", "patch × kernel", products, padded, "input value × weight");
  productGrid.append(el("tfoot", {}, el("tr", {}, el("td", { colSpan: width },
    "Σ = ", el("span", { className: "product-sum", text: num(ch.sum, 6) })))));
  return el("section", { className: "unit", dataset: { channel: String(ch.index) },
    ariaLabel: `input channel ${name}` },
  el("h4", {}, el("span", { className: "channel-name", text: name }), " · Σ = ",
    el("span", { className: "channel-sum", text: num(ch.sum, 6) })),
  el("div", { className: "grids" },
    grid("patch", "input patch", ch.patch, padded, "input value"),
    el("span", { className: "op", ariaHidden: "true", text: "×" }),
    grid("kernel", "kernel", ch.kernel, () => false, "kernel weight"),
    el("span", { className: "op", ariaHidden: "true", text: "=" }),
    productGrid));
}
