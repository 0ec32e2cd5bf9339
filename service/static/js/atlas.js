// Layer atlas card: every channel of the selected layer, its pattern beside its top crops over
// a dataset (GET /v1/models/{id}/layers/{layer}/atlas). Channels come a page at a time as the
// grid is scrolled (an IntersectionObserver on the grid's end); a tile's pictures are fetched
// when it comes near the screen (another observer), so 512 channels scroll as fast as 16.
// While a page is computed (202), its jobs' event streams drive the progress bar.

import { blobAt, getResource, listDatasets, waitForJob } from "./api.js";
import { openChannel, initChannel } from "./atlas_channel.js";
import { $, clearError, el, fill, num, showError } from "./dom.js";
import { isSpatial, on, state } from "./state.js";

const PAGE = 16; // channels per request (a page's missing patterns are one filters job)
const MARGIN = "400px"; // fetch pages and pictures this far before they scroll into view
let view = null; // the atlas on screen: {model, layer, dataset, offset, done, loading, abort}
let urls = [];

const tiles = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    tiles.unobserve(entry.target);
    showPictures(entry.target);
  }
}, { rootMargin: MARGIN });

const more = new IntersectionObserver((entries) => {
  if (view && entries.some((e) => e.isIntersecting)) loadPage(view);
}, { rootMargin: MARGIN });

const path = (v, offset) => `/v1/models/${encodeURIComponent(v.model.id)}/layers/` +
  `${v.layer.name.split("/").map(encodeURIComponent).join("/")}/atlas?dataset=` +
  `${encodeURIComponent(v.dataset)}&offset=${offset}&limit=${PAGE}`;

async function objectUrl(apiPath, signal) {
  const url = URL.createObjectURL(await blobAt(apiPath, { signal }));
  urls.push(url);
  return url;
}

// Fetch a tile's pattern and crops (with the API key, so not by <img src>) once it is near.
async function showPictures(tile) {
  const { channel, owner } = tile;
  try {
    for (const [img, key] of [[tile.querySelector(".atlas-pattern"), "pattern"],
      [tile.querySelector(".atlas-strip"), "crops"]]) {
      channel[`${key}Url`] = channel[`${key}Url`] || await objectUrl(channel[key], owner.abort.signal);
      img.src = channel[`${key}Url`];
    }
  } catch (err) {
    if (owner === view && err.name !== "AbortError") showError($("atlas-error"), err);
  }
}

function tileOf(v, channel) {
  const best = channel.top[0];
  const label = `#${channel.index} · dead ${Math.round(channel.dead_fraction * 100)}%` +
    (best ? ` · best ${num(best.value, 3)} (${best.file})` : " · no example");
  const tile = el("button", { type: "button", className: "atlas-channel",
    dataset: { channel: String(channel.index) }, ariaLabel: `channel ${channel.index}` },
  el("img", { className: "atlas-pattern pixelated", alt: `pattern of channel ${channel.index}`,
    loading: "lazy", width: 64, height: 64 }),
  el("img", { className: "atlas-strip pixelated", alt: `top crops of channel ${channel.index}`,
    loading: "lazy" }),
  el("span", { className: "atlas-label", text: label }));
  Object.assign(tile, { channel, owner: v });
  tile.addEventListener("click", () => openChannel(v, channel));
  tiles.observe(tile);
  return tile;
}

function setProgress(fraction, text) {
  $("atlas-progress").value = Math.round(Math.max(0, Math.min(1, fraction)) * 100);
  $("atlas-status").textContent = text;
}

// A page still computed: follow its jobs' event streams until each has ended.
async function follow(v, body) {
  const progress = new Map(body.jobs.map((j) => [j.id, j.progress || 0]));
  const show = (job) => {
    progress.set(job.id, job.progress || 0);
    const mean = [...progress.values()].reduce((a, b) => a + b, 0) / progress.size;
    setProgress(mean, `computing channels ${body.offset}…${body.offset + PAGE - 1}: ` +
      `${job.kind} ${job.status} ${Math.round((job.progress || 0) * 100)}%`);
  };
  for (const job of body.jobs) {
    show(job);
    await waitForJob(job.id, { onUpdate: show, signal: v.abort.signal });
  }
}

async function loadPage(v) {
  if (v.loading || v.done) return;
  v.loading = true;
  $("atlas-grid").dataset.loading = "true";
  try {
    for (let tries = 0; tries < 5; tries++) {
      const { status, body } = await getResource(path(v, v.offset), { signal: v.abort.signal });
      if (v !== view) return;
      if (status === 200) {
        $("atlas-grid").append(...body.channels.map((c) => tileOf(v, c)));
        v.offset += body.channels.length || PAGE;
        v.done = body.next == null;
        setProgress(1, `${v.offset} of ${body.total} channels of ${body.layer}` +
          (v.done ? "" : " (scroll for more)"));
        break;
      }
      await follow(v, body);
    }
  } catch (err) {
    if (v === view && err.name !== "AbortError") showError($("atlas-error"), err);
    v.done = true;
  } finally {
    v.loading = false;
  }
  if (v !== view) return;
  // A page that does not fill the screen: the end is still in sight, and no observer fires.
  if (!v.done && $("atlas-more").getBoundingClientRect().top < window.innerHeight + 400) {
    loadPage(v);
  } else {
    $("atlas-grid").dataset.loading = "false";
  }
}

function reset() {
  if (view) view.abort.abort();
  view = null;
  urls.forEach((u) => URL.revokeObjectURL(u));
  urls = [];
  fill($("atlas-grid"));
  setProgress(0, "");
  clearError($("atlas-error"));
}

function start() {
  reset();
  const dataset = $("atlas-dataset").value;
  if (!state.model || !isSpatial(state.layer)) {
    $("atlas-error").textContent = "Choose a model and a spatial layer (step 3) first.";
    return;
  }
  if (!dataset) {
    $("atlas-error").textContent = "Choose a dataset first.";
    return;
  }
  view = { model: state.model, layer: state.layer, dataset, offset: 0, done: false,
    loading: false, abort: new AbortController() };
  setProgress(0, "asking for the atlas…");
  loadPage(view);
}

async function loadDatasets() {
  const select = $("atlas-dataset");
  try {
    const ready = (await listDatasets()).filter((d) => d.status === "ready");
    fill(select, ...(ready.length ? ready.map((d) => el("option", { value: d.id,
      text: `${d.name} (${d.images} images)` })) : [el("option", { value: "", text: "no dataset yet" })]));
    select.disabled = !ready.length;
  } catch (err) {
    showError($("atlas-error"), err);
  }
}

export function initAtlas() {
  $("atlas-run").addEventListener("click", start);
  $("atlas-refresh").addEventListener("click", loadDatasets);
  more.observe($("atlas-more"));
  initChannel();
  on("contract", loadDatasets);
  on("model", reset);
  on("layer", (layer) => {
    if (view && view.layer !== layer) reset();
  });
}
