// Helpers shared by the drawing page (draw.js) and the model page (model.js).
// Plain ES modules: no build step, no third-party code, works offline.

export const SIDE = 28;

/** An error from the API, carrying the server's own sentence ("detail") and HTTP status. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/** The human sentence in an error body: FastAPI's {"detail": "..."} or its validation list. */
function detailOf(body) {
  if (!body || body.detail === undefined) return null;
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) {
    return body.detail.map((d) => (d && d.msg) || String(d)).join("; ");
  }
  return String(body.detail);
}

/** fetch() a JSON endpoint; resolves to the parsed body, rejects with an ApiError. */
export async function fetchJSON(url, { method = "GET", body, signal, headers: extra } = {}) {
  const headers = { Accept: "application/json", ...extra };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError("Could not reach the server. Check the connection and try again.", 0);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = detailOf(data);
    const fallback = `The server answered ${response.status}${response.statusText ? " " + response.statusText : ""}.`;
    throw new ApiError(detail || fallback, response.status);
  }
  if (data === null) throw new ApiError("The server sent an answer that is not JSON.", response.status);
  return data;
}

/** A nested list (e.g. 28x28) as one flat array of numbers. */
export function flatten(nested) {
  return Array.isArray(nested) ? nested.flat(Infinity).map(Number) : Array.from(nested, Number);
}

/** 0.9812 -> "98.1%" (or "<0.1%" for tiny non-zero values). */
export function formatPercent(p, digits = 1) {
  const v = 100 * p;
  if (v > 0 && v < 0.1 && digits <= 1) return "<0.1%";
  return `${v.toFixed(digits)}%`;
}

export function formatNumber(x, digits = 2) {
  if (!Number.isFinite(x)) return "–";
  return x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Signed number with a real minus sign: -1.5 -> "−1.50". */
export function formatSigned(x, digits = 2) {
  const s = Math.abs(x).toFixed(digits);
  return (x < 0 ? "\u2212" : "+") + s;
}

// A diverging palette (ColorBrewer RdBu, reversed): blue negative, near-white zero, red positive.
const DIVERGING = [
  [5, 48, 97],
  [33, 102, 172],
  [67, 147, 195],
  [146, 197, 222],
  [209, 229, 240],
  [247, 247, 247],
  [253, 219, 199],
  [244, 165, 130],
  [214, 96, 77],
  [178, 24, 43],
  [103, 0, 31],
];

/** t in [-1, 1] -> [r, g, b] on the diverging palette (0 is white). */
export function divergingColor(t) {
  const x = Math.max(-1, Math.min(1, Number.isFinite(t) ? t : 0));
  const pos = ((x + 1) / 2) * (DIVERGING.length - 1);
  const i = Math.min(DIVERGING.length - 2, Math.floor(pos));
  const f = pos - i;
  const a = DIVERGING[i];
  const b = DIVERGING[i + 1];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * f));
}

/** CSS gradient of the palette, for legends. */
export function divergingGradient() {
  const stops = DIVERGING.map((c, i) => `rgb(${c.join(",")}) ${((100 * i) / (DIVERGING.length - 1)).toFixed(1)}%`);
  return `linear-gradient(90deg, ${stops.join(", ")})`;
}

function prepare(canvas) {
  if (canvas.width !== SIDE) canvas.width = SIDE;
  if (canvas.height !== SIDE) canvas.height = SIDE;
  const ctx = canvas.getContext("2d");
  return [ctx, ctx.createImageData(SIDE, SIDE)];
}

/**
 * Draw 784 values (flat or 28x28) as a diverging heatmap on a 28x28 canvas, scaled
 * symmetrically by the largest |value| (or by `scale`). Returns the scale used.
 */
export function drawHeatmap(canvas, values, scale) {
  const flat = flatten(values);
  const max = scale || flat.reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
  const [ctx, img] = prepare(canvas);
  for (let i = 0; i < SIDE * SIDE; i++) {
    const [r, g, b] = divergingColor(flat[i] / max);
    img.data[4 * i] = r;
    img.data[4 * i + 1] = g;
    img.data[4 * i + 2] = b;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  canvas.dataset.scale = String(max);
  return max;
}

/** Draw 28x28 grey levels 0..255 (light digit on dark, as MNIST) exactly, one pixel each. */
export function drawGray(canvas, pixels) {
  const flat = flatten(pixels);
  const [ctx, img] = prepare(canvas);
  for (let i = 0; i < SIDE * SIDE; i++) {
    const v = Math.max(0, Math.min(255, Math.round(flat[i])));
    img.data[4 * i] = v;
    img.data[4 * i + 1] = v;
    img.data[4 * i + 2] = v;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

/** Empty a 28x28 canvas back to its CSS placeholder background. */
export function blank(canvas) {
  const [ctx] = prepare(canvas);
  ctx.clearRect(0, 0, SIDE, SIDE);
  delete canvas.dataset.scale;
}

/** Paint every .legend-bar on the page with the heatmap palette. */
export function paintLegends(root = document) {
  for (const bar of root.querySelectorAll(".legend-bar")) bar.style.background = divergingGradient();
}

/** Tiny element builder: h("p", {class: "x", dataset: {a: 1}}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  const isSvg = ["svg", "g", "path", "line", "polyline", "circle", "text", "rect", "title"].includes(tag);
  const el = isSvg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    // Through the CSSOM: a style attribute in markup is inline style, which the CSP refuses.
    else if (key === "style") el.style.cssText = String(value);
    else el.setAttribute(key === "className" ? "class" : key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Show the model version in the footer (both pages). */
export function showVersion(version) {
  const el = document.getElementById("footer-version");
  if (el && version) el.textContent = `Model ${version}.`;
}
