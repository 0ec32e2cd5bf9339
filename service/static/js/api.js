// The public HTTP contract, and nothing else: /v1/contract, /v1/models, /v1/jobs, artifacts.
// Every call is async; errors become ApiError carrying the problem+json fields. Names the API
// defines (kinds, methods, modes, statuses, defaults, limits) come from GET /v1/contract.

const KEY_STORAGE = "convscope.apiKey";

export class ApiError extends Error {
  constructor({ title, detail, code, status }) {
    super(detail || title || "request failed");
    this.title = title || "Error";
    this.detail = detail || "";
    this.code = code || "error";
    this.status = status || 0;
  }

  // "Invalid image: image 0 (notes.txt): cannot identify image file"
  get plain() {
    const detail = this.detail && this.detail !== this.title ? `: ${this.detail}` : "";
    return `${this.title}${detail}`;
  }
}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function problem(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = { title: response.statusText || `HTTP ${response.status}` };
  }
  return new ApiError({ ...body, status: response.status });
}

async function request(method, path, { body, signal, accept } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, signal,
      headers: headers(accept ? { Accept: accept } : {}) });
  } catch (err) {
    if (err.name === "AbortError" || (signal && signal.aborted)) throw err;
    throw new ApiError({ title: "Network error", detail: "the API did not answer", code: "network" });
  }
  if (!response.ok) throw await problem(response);
  return response;
}

export async function getJson(path, options) {
  return (await request("GET", path, options)).json();
}

export const listModels = () => getJson("/v1/models").then((b) => b.models);
export const getModel = (id, wait = 0) => getJson(`/v1/models/${encodeURIComponent(id)}?wait=${wait}`);
export const getLayers = (id) =>
  getJson(`/v1/models/${encodeURIComponent(id)}/layers?wait=30`).then((b) => b.layers);

export async function uploadModel(file, { name, preprocess }) {
  const form = new FormData();
  form.append("file", file, file.name);
  if (name) form.append("name", name);
  if (preprocess) form.append("preprocess", preprocess);
  const response = await request("POST", "/v1/models?wait=30", { body: form });
  return { status: response.status, model: await response.json() };
}

// POST /v1/jobs; returns {id, status}.
export async function submitJob({ model, kind, layer, options, images = [] }) {
  const form = new FormData();
  form.append("model", model);
  form.append("kind", kind);
  if (layer) form.append("layer", layer);
  form.append("options", JSON.stringify(options || {}));
  for (const image of images) form.append("image", image, image.name || "image");
  return (await request("POST", "/v1/jobs", { body: form })).json();
}

export const cancelJob = (id) => request("DELETE", `/v1/jobs/${id}`).then((r) => r.json());

// GET /v1/contract, filled in once by loadContract() before the page starts.
export const contract = {};
let contractLoad = null;

export function loadContract() {
  contractLoad = contractLoad || getJson("/v1/contract").then((body) => Object.assign(contract, body))
    .catch((err) => {
      contractLoad = null; // a later call (e.g. after an API key is saved) tries again
      throw err;
    });
  return contractLoad;
}

export function isTerminal(status) {
  if (!contract.terminal) throw new Error("the API contract is not loaded");
  return contract.terminal.includes(status);
}

// A job that ended without a result and without an error (it was stopped, e.g. canceled).
export class JobStopped extends ApiError {
  constructor(job) {
    super({ title: `Job ${job.status}`, detail: `the job was ${job.status}`, code: job.status });
    this.jobStatus = job.status;
  }
}

// Server-Sent Events text → events. parse(chunk) takes the next piece of the decoded stream
// (pieces may split lines anywhere) and returns the events it completed, each
// {type, data}. Comment lines (": keep-alive") and fields it does not know are skipped;
// an event with no data is not dispatched; an unfinished event at the end is never returned.
export function sseParser() {
  let buffer = "";
  let type = "";
  let data = [];
  const line = (text, events) => {
    if (text === "") {
      if (data.length) events.push({ type: type || "message", data: data.join("\n") });
      type = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  };
  return (chunk) => {
    buffer += chunk;
    const events = [];
    const ends = /\r\n|\r|\n/g;
    let start = 0;
    for (let m = ends.exec(buffer); m; m = ends.exec(buffer)) {
      // A lone "\r" at the very end may be the first half of a "\r\n" split across chunks.
      if (m[0] === "\r" && m.index === buffer.length - 1) break;
      line(buffer.slice(start, m.index), events);
      start = ends.lastIndex;
    }
    buffer = buffer.slice(start);
    return events;
  };
}

// GET /v1/jobs/{id}/events read with fetch (so the API key header goes along, which
// EventSource cannot send): yields the job record of every `status` event until the stream
// ends. Leaving the loop, or aborting `signal`, closes the connection. A non-200 answer
// throws its ApiError; a connection lost midway throws the reader's error.
export async function* jobEvents(id, { signal } = {}) {
  const response = await request("GET", `/v1/jobs/${id}/events`,
    { signal, accept: "text/event-stream" });
  const type = response.headers.get("Content-Type") || "";
  if (!type.startsWith("text/event-stream") || !response.body) {
    throw new ApiError({ title: "Not an event stream", detail: type, code: "network" });
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parse = sseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const event of parse(value)) {
        if (event.type === "status") yield JSON.parse(event.data);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// Long-polls GET /v1/jobs/{id}?wait=1 until the job ends; calls onUpdate with each record.
async function pollJob(id, { onUpdate, signal }) {
  for (;;) {
    const job = await getJson(`/v1/jobs/${id}?wait=1`, { signal });
    if (onUpdate) onUpdate(job);
    if (isTerminal(job.status)) return job;
  }
}

// Follows the job's event stream until it ends, calling onUpdate with each record; returns the
// last one. Only when the stream cannot be had (network error, non-200, not an event stream)
// or breaks off before the job ended does it fall back to long polling.
// Aborting `signal` stops the wait (an AbortError), unless it is aborted with a job record as
// the reason (e.g. DELETE's answer to a cancel): that record is then the final one.
export async function waitForJob(id, { onUpdate, signal } = {}) {
  try {
    try {
      for await (const job of jobEvents(id, { signal })) {
        if (onUpdate) onUpdate(job);
        if (isTerminal(job.status)) return job;
      }
    } catch (err) {
      if (signal && signal.aborted) throw err;
    }
    return await pollJob(id, { onUpdate, signal });
  } catch (err) {
    const reason = signal && signal.aborted ? signal.reason : null;
    if (reason && typeof reason === "object" && typeof reason.status === "string") {
      if (onUpdate) onUpdate(reason);
      return reason;
    }
    throw err;
  }
}

// What a finished job amounts to: the job when it has a result; an ApiError (code from the
// job) when it ended with an error; a JobStopped when with neither.
export function jobOutcome(job) {
  if (job.error) {
    throw new ApiError({ title: `Job ${job.status}`, detail: job.error.message, code: job.error.code });
  }
  if (job.result == null) throw new JobStopped(job);
  return job;
}

// Submit, then wait (see waitForJob and jobOutcome).
export async function runJob(spec, { onUpdate, onSubmitted, signal } = {}) {
  const { id } = await submitJob(spec);
  if (onSubmitted) onSubmitted(id);
  return jobOutcome(await waitForJob(id, { onUpdate, signal }));
}

export async function artifactBlob(jobId, name) {
  return (await request("GET", `/v1/jobs/${jobId}/artifacts/${encodeURIComponent(name)}`)).blob();
}

export async function artifactBuffer(jobId, name) {
  return (await artifactBlob(jobId, name)).arrayBuffer();
}

// Object URLs for artifacts, revoked when their owner asks for a fresh set.
export class UrlPool {
  constructor() {
    this.urls = [];
  }

  async artifact(jobId, name) {
    const url = URL.createObjectURL(await artifactBlob(jobId, name));
    this.urls.push(url);
    return url;
  }

  release() {
    this.urls.forEach((u) => URL.revokeObjectURL(u));
    this.urls = [];
  }
}

// GET a resource that may answer 202 while it is computed: {status, body, location}.
export async function getResource(path, options) {
  const response = await request("GET", path, options);
  return { status: response.status, body: await response.json(),
    location: response.headers.get("Location") };
}

// The bytes at an API path (an artifact URL a resource named, a dataset image) as a Blob.
export const blobAt = async (path, options) => (await request("GET", path, options)).blob();

export const listDatasets = () => getJson("/v1/datasets").then((b) => b.datasets);
