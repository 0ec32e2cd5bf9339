// What every analysis card shares: submit a job, show its status while polling, show its
// error next to the card's button, and never block the page (everything is async).

import { cancelJob, runJob } from "./api.js";
import { $, clearError, jobStatusText, showError } from "./dom.js";
import { state } from "./state.js";

export class JobPanel {
  constructor(prefix) {
    this.button = $(`${prefix}-run`);
    this.status = $(`${prefix}-status`);
    this.error = $(`${prefix}-error`);
    this.jobId = null;
    this.generation = 0;
  }

  // Checks that a model (and, unless kind is "filters", an image) is chosen.
  ready(kind) {
    clearError(this.error);
    if (!state.model) {
      this.error.textContent = "Choose a model first.";
      return false;
    }
    if (kind !== "filters" && !state.image) {
      this.error.textContent = "Choose an image first (step 2).";
      return false;
    }
    return true;
  }

  // Runs the job; returns it when it succeeded, null otherwise (the error is shown).
  async run(spec, onUpdate) {
    const generation = ++this.generation;
    if (spec.kind !== "filters") clearError($("image-error"));
    this.button.disabled = true;
    this.setStatus("submitting…");
    try {
      const job = await runJob(spec, {
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
        this.setStatus(err.code === "canceled" ? "canceled" : "");
        if (err.code !== "canceled") showError(this.error, err);
      }
      return null;
    } finally {
      if (generation === this.generation) {
        this.button.disabled = false;
        this.jobId = null;
      }
    }
  }

  // Forget the running job (its answer will be dropped), the status and the error.
  reset() {
    this.generation++;
    this.jobId = null;
    this.button.disabled = false;
    this.setStatus("");
    clearError(this.error);
  }

  async cancel() {
    if (!this.jobId) return;
    try {
      await cancelJob(this.jobId);
      this.setStatus("canceling…");
    } catch (err) {
      showError(this.error, err);
    }
  }

  setStatus(text) {
    if (this.status) this.status.textContent = text;
  }
}
