// The drawing page: a Pointer Events canvas, live throttled predictions, and the linear
// model's reasoning (its input, the winning template, per-pixel contributions).

import {
  ApiError,
  SIDE,
  blank,
  drawGray,
  drawHeatmap,
  fetchJSON,
  flatten,
  formatNumber,
  formatPercent,
  formatSigned,
  paintLegends,
  showVersion,
} from "./common.js";
import { describeVerdict } from "./verdict.js";

const EXPORT_SIZE = 280; // the image sent to the server, whatever the screen's pixel ratio
// Brush width as a fraction of the canvas side: 1/16 (17.5 px on 280) is MNIST-like once a
// large digit is scaled to 20 px; 1/13 read small drawings 5 points worse (benchmarks/canvas.py).
const BRUSH = 1 / 16;
const THROTTLE_MS = 100; // at most ~10 requests a second while drawing

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const wrap = $("canvas-wrap");
const ctx = canvas.getContext("2d");
const ui = {
  answer: $("answer"),
  digit: $("digit"),
  confidence: $("confidence"),
  status: $("status"),
  announce: $("announce"),
  error: $("error"),
  meta: $("meta"),
  undo: $("undo"),
  clear: $("clear"),
  panels: $("panels"),
  mini: $("mini-answer"),
  preview: $("preview"),
  template: $("template"),
  contrib: $("contrib"),
  versus: $("versus"),
  templateTitle: $("template-title"),
  templateText: $("template-text"),
  contribTitle: $("contrib-title"),
  contribText: $("contrib-text"),
  versusTitle: $("versus-title"),
  versusText: $("versus-text"),
  scores: $("scores"),
  rows: [...document.querySelectorAll(".prob-row")],
};

// ---------------------------------------------------------------------------------------
// Strokes: arrays of points in canvas-relative units (0..1), so undo, resizing and export
// all redraw from the same data.

/** @type {Array<Array<[number, number]>>} */
const strokes = [];
let current = null; // the stroke being drawn
let activePointer = null; // pointerId that owns the current stroke
let drawingVersion = 0; // bumps on every change to the drawing
let inkColour = "#111";
let frame = 0;

function readInk() {
  inkColour = getComputedStyle(canvas).getPropertyValue("--ink").trim() || "#111";
}

function tracePath(c, size, stroke) {
  c.beginPath();
  const [x0, y0] = stroke[0];
  c.moveTo(x0 * size, y0 * size);
  if (stroke.length === 1) {
    c.lineTo(x0 * size + 0.01, y0 * size); // a dot: round caps make it a disc
  } else {
    // Quadratic curves through the midpoints: smooth lines from sparse pointer samples.
    for (let i = 1; i < stroke.length - 1; i++) {
      const [x, y] = stroke[i];
      const [nx, ny] = stroke[i + 1];
      c.quadraticCurveTo(x * size, y * size, ((x + nx) / 2) * size, ((y + ny) / 2) * size);
    }
    const [xl, yl] = stroke[stroke.length - 1];
    c.lineTo(xl * size, yl * size);
  }
  c.stroke();
}

function paint(c, size, colour) {
  c.clearRect(0, 0, size, size);
  c.lineWidth = size * BRUSH;
  c.lineCap = "round";
  c.lineJoin = "round";
  c.strokeStyle = colour;
  for (const stroke of strokes) if (stroke.length) tracePath(c, size, stroke);
}

function redraw() {
  frame = 0;
  paint(ctx, canvas.width, inkColour);
  wrap.dataset.empty = String(isEmpty());
}

function scheduleRedraw() {
  if (!frame) frame = requestAnimationFrame(redraw);
}

/** Backing store = CSS size x devicePixelRatio: crisp strokes on high-DPI screens. */
function resize() {
  const rect = canvas.getBoundingClientRect();
  const size = Math.max(1, Math.round(rect.width * (window.devicePixelRatio || 1)));
  if (canvas.width !== size || canvas.height !== size) {
    canvas.width = size;
    canvas.height = size;
  }
  redraw();
}

function isEmpty() {
  return strokes.length === 0;
}

/** The drawing as the server gets it: PNG, 280x280, transparent background, opaque black ink. */
function exportImage() {
  const off = document.createElement("canvas");
  off.width = EXPORT_SIZE;
  off.height = EXPORT_SIZE;
  paint(off.getContext("2d"), EXPORT_SIZE, "#000");
  return off.toDataURL("image/png");
}

function pointOf(event) {
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) / rect.width;
  const y = (event.clientY - rect.top) / rect.height;
  return [Math.min(1, Math.max(0, x)), Math.min(1, Math.max(0, y))];
}

function addPoint(p) {
  const last = current[current.length - 1];
  if (last && Math.abs(last[0] - p[0]) < 1e-3 && Math.abs(last[1] - p[1]) < 1e-3) return false;
  current.push(p);
  return true;
}

function onPointerDown(event) {
  if (activePointer !== null) return; // one stroke at a time: a second finger is ignored
  if (event.pointerType === "mouse" && event.button !== 0) return;
  event.preventDefault();
  activePointer = event.pointerId;
  try {
    canvas.setPointerCapture(event.pointerId);
  } catch {
    /* a synthetic pointer may not be capturable */
  }
  current = [pointOf(event)];
  strokes.push(current);
  changed();
}

function onPointerMove(event) {
  if (event.pointerId !== activePointer || !current) return;
  event.preventDefault();
  const samples = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
  let moved = false;
  for (const e of samples.length ? samples : [event]) moved = addPoint(pointOf(e)) || moved;
  if (moved) changed();
}

function onPointerEnd(event) {
  if (event.pointerId !== activePointer) return;
  if (current && event.type === "pointerup") addPoint(pointOf(event));
  activePointer = null;
  current = null;
  if (canvas.hasPointerCapture && canvas.hasPointerCapture(event.pointerId)) {
    canvas.releasePointerCapture(event.pointerId);
  }
  changed(); // the final prediction for this stroke (still throttled, never skipped)
}

function changed() {
  drawingVersion++;
  scheduleRedraw();
  updateButtons();
  if (isEmpty()) showEmpty();
  else schedulePredict();
}

function updateButtons() {
  ui.undo.disabled = isEmpty();
  ui.clear.disabled = isEmpty();
}

function clearDrawing() {
  endActiveStroke();
  if (isEmpty()) return;
  strokes.length = 0;
  changed();
  ui.announce.textContent = "Canvas cleared.";
}

function undoStroke() {
  endActiveStroke();
  if (isEmpty()) return;
  strokes.pop();
  changed();
  if (isEmpty()) ui.announce.textContent = "Last stroke undone; the canvas is empty.";
}

function endActiveStroke() {
  if (activePointer === null) return;
  try {
    canvas.releasePointerCapture(activePointer);
  } catch {
    /* already released */
  }
  activePointer = null;
  current = null;
}

// ---------------------------------------------------------------------------------------
// Predictions: throttled, latest-wins.

let sentSeq = 0; // id of the latest request sent
let shownSeq = 0; // id of the latest answer (or clear) on screen: older answers are dropped
let lastSentAt = -Infinity;
let lastSentVersion = -1;
let timer = 0;
let inFlight = 0;

function schedulePredict() {
  if (timer) return; // a send is already scheduled; it will export the drawing as it is then
  const wait = Math.max(0, lastSentAt + THROTTLE_MS - performance.now());
  timer = setTimeout(sendPrediction, wait);
}

async function sendPrediction() {
  timer = 0;
  if (isEmpty() || drawingVersion === lastSentVersion) return; // no request for an empty canvas
  const id = ++sentSeq;
  const final = activePointer === null;
  lastSentAt = performance.now();
  lastSentVersion = drawingVersion;
  inFlight++;
  ui.answer.setAttribute("aria-busy", "true");
  try {
    const result = await fetchJSON("/api/predict", { method: "POST", body: { image: exportImage() } });
    if (id > shownSeq) {
      shownSeq = id;
      showResult(result, final);
    }
  } catch (err) {
    if (id > shownSeq) {
      shownSeq = id;
      showError(err instanceof ApiError ? err.message : "Something went wrong while asking the model.");
    }
  } finally {
    inFlight--;
    if (!inFlight) ui.answer.setAttribute("aria-busy", "false");
  }
}

function setError(message) {
  ui.error.textContent = message || "";
  ui.error.hidden = !message;
}

function showEmpty() {
  shownSeq = sentSeq; // answers still on their way describe a drawing that is gone
  lastSentVersion = -1;
  if (timer) {
    clearTimeout(timer);
    timer = 0;
  }
  setError("");
  ui.answer.dataset.state = "empty";
  delete ui.answer.dataset.digit;
  ui.digit.textContent = "?";
  ui.confidence.textContent = "Draw a digit";
  ui.status.textContent = "The prediction appears as you draw.";
  ui.meta.textContent = "";
  for (const row of ui.rows) {
    row.classList.remove("is-top", "is-second");
    const bar = row.querySelector(".prob-bar");
    bar.style.setProperty("--p", "0");
    bar.dataset.value = "0";
    row.querySelector(".prob-value").textContent = "–";
  }
  setMini("empty", "?", "–");
  ui.panels.dataset.state = "empty";
  for (const c of [ui.preview, ui.template, ui.contrib, ui.versus]) blank(c);
  delete ui.preview.dataset.pixels;
  ui.templateTitle.textContent = "Template";
  ui.contribTitle.textContent = "Contribution";
  ui.versusTitle.textContent = "Against the runner-up";
  ui.scores.textContent = "";
  document.dispatchEvent(new CustomEvent("mnist:cleared"));
}

function setMini(state, digit, text) {
  ui.mini.dataset.state = state;
  ui.mini.querySelector(".mini-digit").textContent = digit;
  ui.mini.querySelector(".mini-conf").textContent = text;
}

function showError(message) {
  setError(message);
  ui.answer.dataset.state = ui.answer.dataset.digit === undefined ? "error" : "stale";
  setMini("error", "!", "error");
  ui.announce.textContent = `Error: ${message}`;
}

/** The result of POST /api/predict on screen. */
function showResult(result, final) {
  setError("");
  const probs = flatten(result.probabilities);
  const order = probs.map((p, d) => [p, d]).sort((a, b) => b[0] - a[0]);
  const digit = Number.isInteger(result.digit) ? result.digit : order[0][1];
  const confidence = Number.isFinite(result.confidence) ? result.confidence : probs[digit];
  const runnerUp = order.find(([, d]) => d !== digit)[1];
  // "Not sure" and "not a digit" are the server's verdict (see static/js/verdict.js).
  const verdict = describeVerdict(result, digit, runnerUp, confidence, formatPercent);

  ui.answer.dataset.state = verdict.state;
  ui.answer.dataset.digit = String(digit);
  ui.digit.textContent = verdict.glyph;
  ui.confidence.textContent = verdict.headline;
  setMini(verdict.state, verdict.glyph, verdict.state === "not-digit" ? "?" : formatPercent(confidence));
  ui.status.textContent = verdict.status;
  if (final) {
    ui.announce.textContent = verdict.announce;
  }

  ui.rows.forEach((row, d) => {
    const p = probs[d] || 0;
    row.classList.toggle("is-top", d === digit);
    row.classList.toggle("is-second", d === runnerUp);
    const bar = row.querySelector(".prob-bar");
    bar.style.setProperty("--p", String(p));
    bar.dataset.value = String(p);
    row.querySelector(".prob-value").textContent = formatPercent(p);
  });

  const elapsed = Number.isFinite(result.elapsed_ms) ? ` · ${formatNumber(result.elapsed_ms, 1)} ms on the server` : "";
  ui.meta.textContent = result.model_version ? `Model ${result.model_version}${elapsed}` : "";
  showVersion(result.model_version);

  const preview = result.preview;
  if (Array.isArray(preview)) {
    drawGray(ui.preview, preview);
    ui.preview.dataset.pixels = JSON.stringify(preview);
  }
  explain(flatten(preview || []), probs, digit, runnerUp, result.model_version);
  // For feedback.js (and any other listener): the answer now on screen.
  document.dispatchEvent(new CustomEvent("mnist:answer", { detail: { ...result, digit, final } }));
}

// ---------------------------------------------------------------------------------------
// Why it decided: weights from GET /api/model/weights, applied to the preview in the browser.

let weights = null; // {w: Float64Array[10] of 784, bias, mean, std}
let weightsFor = null; // model version the weights were fetched for
let weightsPromise = null;

function loadWeights(version) {
  if (weightsPromise && weightsFor === version) return weightsPromise;
  weightsFor = version;
  weightsPromise = fetchJSON("/api/model/weights").then(
    (body) => {
      weights = {
        w: body.weights.map((digitWeights) => Float64Array.from(flatten(digitWeights))),
        bias: flatten(body.bias),
        mean: Number(body.mean),
        std: Number(body.std),
      };
      return weights;
    },
    (err) => {
      weightsPromise = null; // try again with the next prediction
      throw err;
    },
  );
  return weightsPromise;
}

async function explain(pixels, probs, digit, runnerUp, version) {
  const seq = shownSeq;
  let model;
  try {
    model = weights && weightsFor === version ? weights : await loadWeights(version);
  } catch (err) {
    if (seq === shownSeq) ui.scores.textContent = `The weights could not be loaded: ${err.message}`;
    return;
  }
  if (seq !== shownSeq || pixels.length !== SIDE * SIDE) return; // a newer answer took over

  const x = pixels.map((v) => (v / 255 - model.mean) / model.std);
  const wTop = model.w[digit];
  const wRun = model.w[runnerUp];
  const contrib = x.map((xi, i) => wTop[i] * xi);
  const versus = x.map((xi, i) => (wTop[i] - wRun[i]) * xi);
  const logits = model.w.map((w, d) => w.reduce((s, wi, i) => s + wi * x[i], 0) + model.bias[d]);

  drawHeatmap(ui.template, wTop);
  drawHeatmap(ui.contrib, contrib);
  drawHeatmap(ui.versus, versus);
  ui.panels.dataset.state = "ready";
  ui.templateTitle.textContent = `Template for ${digit}`;
  ui.templateText.textContent = `The weights of ${digit}: ink on red pixels raises its score, ink on blue lowers it.`;
  ui.contribTitle.textContent = `Contribution to ${digit}`;
  ui.contribText.textContent = "Weight × your normalised pixel: what each pixel added to (red) or took from (blue) the score.";
  ui.versusTitle.textContent = `${digit} against ${runnerUp}`;
  ui.versusText.textContent = `Where your drawing favours ${digit} (red) over the runner-up ${runnerUp} (blue).`;

  // The scores, recomputed here from the preview and the weights: the model is just this sum.
  const sumTop = logits[digit] - model.bias[digit];
  const sumRun = logits[runnerUp] - model.bias[runnerUp];
  const max = Math.max(...logits);
  const exp = logits.map((l) => Math.exp(l - max));
  const total = exp.reduce((a, b) => a + b, 0);
  const mine = exp.map((e) => e / total);
  ui.scores.dataset.probabilities = JSON.stringify(mine);
  ui.scores.replaceChildren(
    line(`Score for ${digit}`, `pixels ${formatNumber(sumTop)}, bias ${formatSigned(model.bias[digit])}: total `, formatNumber(logits[digit])),
    line(`Score for ${runnerUp}`, `pixels ${formatNumber(sumRun)}, bias ${formatSigned(model.bias[runnerUp])}: total `, formatNumber(logits[runnerUp])),
    line(
      "Softmax",
      `a lead of ${formatNumber(logits[digit] - logits[runnerUp])} over ${runnerUp} gives ${digit} `,
      `${formatPercent(mine[digit])}`,
      " (recomputed in your browser from the preview and the weights).",
    ),
  );
}

function line(label, text, strong, tail = "") {
  const row = document.createElement("span");
  row.className = "score-line";
  const b = document.createElement("b");
  b.textContent = label;
  const s = document.createElement("strong");
  s.textContent = strong;
  row.append(b, " ", text, s, tail);
  return row;
}

// ---------------------------------------------------------------------------------------
// Wiring.

function onKeyDown(event) {
  const target = event.target;
  if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
  const key = event.key;
  if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && key.toLowerCase() === "z") {
    event.preventDefault();
    undoStroke();
  } else if (!event.ctrlKey && !event.metaKey && !event.altKey && (key === "Escape" || key === "c" || key === "C")) {
    clearDrawing();
  }
}

canvas.addEventListener("pointerdown", onPointerDown);
canvas.addEventListener("pointermove", onPointerMove);
canvas.addEventListener("pointerup", onPointerEnd);
canvas.addEventListener("pointercancel", onPointerEnd);
canvas.addEventListener("lostpointercapture", onPointerEnd);
// Belt and braces with touch-action: none (older Safari): never let a touch on the canvas scroll.
canvas.addEventListener("touchstart", (e) => e.preventDefault(), { passive: false });
canvas.addEventListener("touchmove", (e) => e.preventDefault(), { passive: false });
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
ui.undo.addEventListener("click", undoStroke);
ui.clear.addEventListener("click", clearDrawing);
document.addEventListener("keydown", onKeyDown);
window.addEventListener("resize", resize);
if ("ResizeObserver" in window) new ResizeObserver(resize).observe(canvas);
window.matchMedia("(prefers-color-scheme: dark)").addEventListener?.("change", () => {
  readInk();
  redraw();
});

readInk();
resize();
paintLegends();
showEmpty();
updateButtons();

// For tests and the curious: the exact image the page sends, and the current strokes.
window.mnistCanvas = {
  exportImage,
  strokes: () => strokes.map((s) => s.map((p) => [...p])),
  clear: clearDrawing,
  undo: undoStroke,
  /** True when no stroke is in progress, no request is due or in flight, and the newest answer is shown. */
  idle: () => activePointer === null && !timer && inFlight === 0 && shownSeq === sentSeq,
  requests: () => sentSeq,
};
document.body.dataset.ready = "true";
