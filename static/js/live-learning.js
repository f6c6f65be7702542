// Live learning: when you correct an answer, your own copy of the model (in this page only)
// takes a few steps of the lesson's fit loop on that one 28x28 example: cross-entropy loss,
// its gradient, W -= lr * dW. The ten templates and probabilities redraw after each step.
// "Reset" returns to the served model. The server's model changes only through its gate.
//
// Listens to draw.js's "mnist:answer" (the 28x28 preview the model saw, the version that
// answered) and feedback.js's "mnist:corrected" (the digit the person says it is). Exposes
// window.mnistLiveLearning for tests; `sgdStep` is exported for the PyTorch oracle test.

import { SIDE, drawHeatmap, fetchJSON, flatten, formatPercent } from "./common.js";

export const STEPS = 5;
export const LEARNING_RATE = 0.002;
const N = SIDE * SIDE;

/** Pixels 0..255 (784) -> the normalised input the model reads: (p / 255 - mean) / std. */
export function normalise(pixels, mean, std) {
  const x = new Float64Array(N);
  for (let i = 0; i < N; i++) x[i] = (pixels[i] / 255 - mean) / std;
  return x;
}

/** Softmax of W x + b: W is (10, 784) row-major, b (10). */
export function probabilities(weight, bias, x) {
  const logits = new Float64Array(10);
  for (let k = 0; k < 10; k++) {
    let s = bias[k];
    const row = k * N;
    for (let i = 0; i < N; i++) s += weight[row + i] * x[i];
    logits[k] = s;
  }
  const top = Math.max(...logits);
  let total = 0;
  for (let k = 0; k < 10; k++) total += (logits[k] = Math.exp(logits[k] - top));
  for (let k = 0; k < 10; k++) logits[k] /= total;
  return logits;
}

/**
 * One step of gradient descent on the cross-entropy of one example, in place:
 * d loss / d logits = softmax - onehot(label); dW = that outer x; db = that.
 * Returns the loss before the step.
 */
export function sgdStep(weight, bias, x, label, lr) {
  const p = probabilities(weight, bias, x);
  const loss = -Math.log(p[label]);
  for (let k = 0; k < 10; k++) {
    const g = p[k] - (k === label ? 1 : 0);
    const row = k * N;
    for (let i = 0; i < N; i++) weight[row + i] -= lr * g * x[i];
    bias[k] -= lr * g;
  }
  return loss;
}

const $ = (id) => document.getElementById(id);
const ui = {
  box: $("live"),
  status: $("live-status"),
  reset: $("live-reset"),
  version: $("live-version"),
  notice: $("live-notice"),
  figures: [...document.querySelectorAll(".live-template")],
};

const state = {
  served: null, // {weight, bias, mean, std, version}
  copy: null, // {weight, bias}
  preview: null, // the last answer's 784 pixels
  steps: 0, // steps taken since the served model
};

function clone(served) {
  return { weight: Float64Array.from(served.weight), bias: Float64Array.from(served.bias) };
}

function render() {
  if (!state.copy) return;
  const { weight, bias } = state.copy;
  let scale = 0;
  for (const v of weight) scale = Math.max(scale, Math.abs(v));
  const probs = state.preview ? probabilities(weight, bias, normalise(state.preview, state.served.mean, state.served.std)) : null;
  const best = probs ? probs.indexOf(Math.max(...probs)) : -1;
  ui.figures.forEach((figure, d) => {
    drawHeatmap(figure.querySelector("canvas"), weight.subarray(d * N, (d + 1) * N), scale);
    const bar = figure.querySelector(".live-bar");
    const value = figure.querySelector(".live-prob");
    const p = probs ? probs[d] : 0;
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    value.textContent = probs ? formatPercent(p) : "–";
    figure.classList.toggle("is-best", d === best);
  });
  ui.reset.disabled = state.steps === 0;
  ui.box.dataset.steps = String(state.steps);
  return { probs, best };
}

async function loadServed(version) {
  const body = await fetchJSON("/api/model/weights");
  state.served = {
    weight: Float64Array.from(flatten(body.weights)),
    bias: Float64Array.from(body.bias),
    mean: body.mean,
    std: body.std,
    version: version || null,
  };
  state.copy = clone(state.served);
  state.steps = 0;
  ui.version.textContent = version ? `Served model ${version}.` : "";
  ui.box.dataset.state = "ready";
  render();
}

/** Teach the copy: STEPS steps of gradient descent on the last answer's image, as `label`. */
export function learn(label, { steps = STEPS, lr = LEARNING_RATE } = {}) {
  if (!state.copy || !state.preview) return null;
  const x = normalise(state.preview, state.served.mean, state.served.std);
  let loss = 0;
  for (let s = 0; s < steps; s++) loss = sgdStep(state.copy.weight, state.copy.bias, x, label, lr);
  state.steps += steps;
  const { probs, best } = render();
  const article = best === 8 ? "an" : "a";
  ui.status.textContent = best === label
    ? `Your copy now reads this as ${article} ${best} (${formatPercent(probs[best])}), after ${state.steps} steps.`
    : `Your copy still reads this as ${article} ${best}; correct it again for ${steps} more steps.`;
  ui.box.dataset.state = "learned";
  return { loss, best };
}

function reset() {
  if (!state.served) return;
  state.copy = clone(state.served);
  state.steps = 0;
  render();
  ui.status.textContent = "Your copy is the served model again.";
  ui.box.dataset.state = "ready";
}

function onAnswer(event) {
  const detail = event.detail || {};
  if (Array.isArray(detail.preview)) state.preview = flatten(detail.preview);
  const version = detail.model_version;
  if (version && state.served && state.served.version && version !== state.served.version) {
    // A promotion reached the server: say so, and start the copy again from the new model.
    ui.notice.hidden = false;
    ui.notice.textContent = `The server now serves a new model version, ${version} (it was ${state.served.version}). Your copy starts again from it.`;
    loadServed(version).catch(() => {});
    return;
  }
  if (state.served && !state.served.version && version) {
    state.served.version = version;
    ui.version.textContent = `Served model ${version}.`;
  }
  render();
}

function onCorrected(event) {
  const label = Number(event.detail && event.detail.label);
  if (Number.isInteger(label) && label >= 0 && label <= 9) learn(label);
}

if (ui.box) {
  ui.reset.addEventListener("click", reset);
  document.addEventListener("mnist:answer", onAnswer);
  document.addEventListener("mnist:corrected", onCorrected);
  loadServed(null).catch(() => {
    ui.status.textContent = "Your copy could not be loaded; live learning is off.";
    ui.box.dataset.state = "error";
  });
  window.mnistLiveLearning = {
    learn,
    reset,
    copy: () => state.copy && { weight: Array.from(state.copy.weight), bias: Array.from(state.copy.bias) },
    steps: () => state.steps,
  };
}
