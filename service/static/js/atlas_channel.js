// One channel of the layer atlas, opened in a dialog: its pattern, its top crops (the unit
// ringed), each example's file, value and unit; "explain this unit" runs the Explain card
// (a job of kind explain) on the top image, fetched from GET /v1/datasets/{id}/images/{i}.

import { blobAt } from "./api.js";
import { $, el, fill, num, showError } from "./dom.js";
import { setImage } from "./image.js";
import { emit, isConv } from "./state.js";

let opened = null; // {view, channel} shown in the dialog

async function picture(img, channel, key, view) {
  if (!channel[`${key}Url`]) {
    const url = URL.createObjectURL(await blobAt(channel[key], { signal: view.abort.signal }));
    channel[`${key}Url`] = url;
  }
  img.src = channel[`${key}Url`];
}

function rows(channel) {
  return channel.top.map((t, i) => el("tr", {},
    el("td", { text: String(i + 1) }), el("td", { text: t.file }),
    el("td", { className: "num", text: num(t.value, 4) }),
    el("td", { text: `(${t.y}, ${t.x})` }), el("td", { text: `[${t.crop.join(", ")}]` })));
}

export function openChannel(view, channel) {
  opened = { view, channel };
  $("atlas-dialog-title").textContent = `Channel ${channel.index} of ${view.layer.name}`;
  const activation = channel.activation == null ? "" :
    ` · its pattern reaches a mean activation of ${num(channel.activation, 4)}`;
  $("atlas-dialog-stats").textContent = `Dead on ${Math.round(channel.dead_fraction * 100)}% ` +
    `of the dataset's images (never above 0)${activation}.`;
  fill($("atlas-tops").tBodies[0], ...rows(channel));
  const explainable = isConv(view.layer) && channel.top.length > 0;
  $("atlas-explain").disabled = !explainable;
  $("atlas-explain-hint").textContent = explainable
    ? `filter ${channel.index} at (${channel.top[0].y}, ${channel.top[0].x}) of ${channel.top[0].file}`
    : "only a Conv2D layer's units can be explained";
  for (const img of [$("atlas-pattern"), $("atlas-crops")]) img.removeAttribute("src");
  picture($("atlas-pattern"), channel, "pattern", view).catch((e) => showError($("atlas-error"), e));
  picture($("atlas-crops"), channel, "crops", view).catch((e) => showError($("atlas-error"), e));
  $("atlas-dialog").showModal();
}

async function explainTop() {
  if (!opened) return;
  const { view, channel } = opened;
  const top = channel.top[0];
  const button = $("atlas-explain");
  button.disabled = true;
  try {
    const blob = await blobAt(`/v1/datasets/${encodeURIComponent(view.dataset)}/images/${top.image}`);
    setImage(new File([blob], top.file.split("/").pop(), { type: blob.type || "image/png" }));
    $("atlas-dialog").close();
    emit("explain-request", { layer: view.layer, filter: channel.index, y: top.y, x: top.x,
      value: top.value });
  } catch (err) {
    showError($("atlas-explain-hint"), err);
  } finally {
    button.disabled = false;
  }
}

export function initChannel() {
  $("atlas-close").addEventListener("click", () => $("atlas-dialog").close());
  $("atlas-explain").addEventListener("click", explainTop);
}
