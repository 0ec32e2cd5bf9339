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

async function request(method, path, { body, signal } = {}) {
  let response;
  try {
    response = await fetch(path, { method, body, signal, headers: headers() });
  } catch (err) {
    if (err.name === "AbortError") throw err;
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

// Long-polls GET /v1/jobs/{id}?wait=1 until the job ends; calls onUpdate with each record.
export async function waitForJob(id, { onUpdate, signal } = {}) {
  for (;;) {
    const job = await getJson(`/v1/jobs/${id}?wait=1`, { signal });
    if (onUpdate) onUpdate(job);
    if (isTerminal(job.status)) return job;
  }
}

// Submit, then wait. A job that ended with an error becomes an ApiError (code from the job),
// one that ended with neither error nor result a JobStopped.
export async function runJob(spec, { onUpdate, onSubmitted, signal } = {}) {
  const { id } = await submitJob(spec);
  if (onSubmitted) onSubmitted(id);
  const job = await waitForJob(id, { onUpdate, signal });
  if (job.error) {
    throw new ApiError({ title: `Job ${job.status}`, detail: job.error.message, code: job.error.code });
  }
  if (job.result == null) throw new JobStopped(job);
  return job;
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
