// What every analysis card shares: submit a job, show its status as its event stream reports
// it, show its error next to the card's button, and never block the page (everything is async).

import { JobStopped, cancelJob, contract, isTerminal, runJob } from "./api.js";
import { $, clearError, jobStatusText, showError } from "./dom.js";
import { state } from "./state.js";

export class JobPanel {
  // prefix: the ids' prefix (`${prefix}-run`, -status, -error); kind: the job kind it submits.
  constructor(prefix, kind) {
    this.kind = kind;
    this.button = $(`${prefix}-run`);
    this.status = $(`${prefix}-status`);
    this.error = $(`${prefix}-error`);
    this.jobId = null;
    this.generation = 0;
    this.watch = null; // the AbortController of the running job's event stream
  }

  get imageless() {
    return contract.imageless_kinds.includes(this.kind);
  }

  // After the contract is loaded: a kind this API does not offer disables the card.
  checkKind() {
    const known = contract.kinds.includes(this.kind);
    this.button.disabled = !known;
    if (!known) this.error.textContent = `This API does not offer the job kind “${this.kind}”.`;
    return known;
  }

  // Checks that a model (and, unless the kind takes no image, an image) is chosen.
  ready() {
    clearError(this.error);
    if (!state.model) {
      this.error.textContent = "Choose a model first (wait for its layer table).";
      return false;
    }
    if (!this.imageless && !state.image) {
      this.error.textContent = "Choose an image first (step 2).";
      return false;
    }
    return true;
  }

  // Runs the job; returns it when it succeeded, null otherwise (the error is shown).
  async run(spec, onUpdate) {
    const generation = ++this.generation;
    if (this.watch) this.watch.abort();
    const watch = new AbortController();
    this.watch = watch;
    if (!this.imageless) clearError($("image-error"));
    this.button.disabled = true;
    this.setStatus("submitting…");
    try {
      const job = await runJob({ ...spec, kind: this.kind }, {
        signal: watch.signal,
        onSubmitted: (id) => {
          if (generation === this.generation) this.jobId = id;
        },
        onUpdate: (j) => {
          if (generation !== this.generation) return;
          this.setStatus(jobStatusText(j));
          if (onUpdate) onUpdate(j);
        },
      });
      if (generation !== this.generation) return null;
      this.setStatus("done");
      return job;
    } catch (err) {
      if (generation === this.generation) {
        const stopped = err instanceof JobStopped;
        this.setStatus(stopped ? err.jobStatus : "");
        if (!stopped) showError(this.error, err);
      }
      return null;
    } finally {
      if (generation === this.generation) {
        this.button.disabled = false;
        this.jobId = null;
        this.watch = null;
      }
    }
  }

  // Forget the running job (its answer will be dropped), the status and the error.
  reset() {
    this.generation++;
    if (this.watch) this.watch.abort();
    this.watch = null;
    this.jobId = null;
    this.button.disabled = !(contract.kinds || []).includes(this.kind);
    this.setStatus("");
    clearError(this.error);
  }

  // DELETE the running job. Its answer, once the job has ended (canceled, or finished just
  // before), is the job's last record: the event stream is closed and run() ends with it.
  // (The stream may have told of the end first: then run() is over and this changes nothing.)
  async cancel() {
    if (!this.jobId) return;
    const { watch } = this;
    try {
      const job = await cancelJob(this.jobId);
      if (!watch || watch !== this.watch) return;
      this.setStatus("canceling…");
      if (isTerminal(job.status)) watch.abort(job);
    } catch (err) {
      showError(this.error, err);
    }
  }

  setStatus(text) {
    if (this.status) this.status.textContent = text;
  }
}
