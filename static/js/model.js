// The model page: the model card in words, training curves, the ten weight templates,
// the confusion matrix and the test digits the model gets wrong. All from the REST API.

import { drawGray, drawHeatmap, fetchJSON, flatten, formatNumber, formatPercent, formatSigned, h, paintLegends, showVersion } from "./common.js";

const $ = (id) => document.getElementById(id);

function fail(container, what, err) {
  container.dataset.state = "error";
  container.replaceChildren(h("p", { class: "load-error", role: "alert" }, `Could not load ${what}: ${err.message}`));
}

const int = (n) => Number(n).toLocaleString("en-US");

// ---- Model card ----------------------------------------------------------------------

const ARCH_TEXT = {
  sequential: ["Logistic regression: one linear layer, 784 pixels in, 10 scores out, then softmax.", "PyTorch nn.Sequential(Flatten, Linear(784, 10), LogSoftmax)"],
  logreg: ["Logistic regression: one linear layer, 784 pixels in, 10 scores out, then softmax.", "Written by hand: x @ W + b with a numerically stable log-softmax"],
};

const OPTIMIZER_NAMES = { sgd: "SGD", adam: "Adam", adamw: "AdamW" };
const SCHEDULE_TEXT = {
  none: "constant learning rate",
  cosine: "learning rate decays along a cosine curve",
  step: "learning rate drops in steps",
};

function fact(label, value, note) {
  return h("div", { class: "fact" }, h("dt", {}, label), h("dd", {}, value, note ? h("small", {}, note) : null));
}

function stat(value, label, id) {
  return h("div", { class: "stat", id }, h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, label));
}

function accuracyText(metrics) {
  if (!metrics || !Number.isFinite(metrics.accuracy)) return null;
  const n = metrics.n;
  const right = Number.isFinite(n) ? Math.round(metrics.accuracy * n) : null;
  return [formatPercent(metrics.accuracy, 2), right !== null ? `${int(right)} of ${int(n)} digits right, loss ${formatNumber(metrics.loss, 3)}` : null];
}

function seconds(s) {
  if (!Number.isFinite(s)) return "–";
  if (s < 60) return `${formatNumber(s, 1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function renderCard(card) {
  const box = $("model-card");
  const config = card.config || {};
  const epochs = config.epochs ?? (card.history || []).length;
  const optimizer = OPTIMIZER_NAMES[config.optimizer] || config.optimizer || "an optimizer";
  const transforms = card.transforms || config.transforms || [];
  const test = accuracyText(card.test);
  const valid = accuracyText(card.valid);
  const trainSize = card.train_size ?? null;
  const validSize = card.valid_size ?? card.valid?.n ?? null;

  let summary = `A logistic regression with ${int(card.parameters ?? 7850)} parameters, trained for ${epochs} epoch${epochs === 1 ? "" : "s"} with ${optimizer}`;
  summary += trainSize ? ` on ${int(trainSize)} handwritten digits from MNIST.` : " on MNIST's handwritten digits.";
  if (test) summary += ` It reads ${test[0]} of the ${int(card.test.n)} test digits correctly: images it never saw while training.`;
  else if (valid) summary += ` It reads ${valid[0]} of the validation digits correctly.`;
  $("model-summary").textContent = summary;

  $("headline").replaceChildren(
    stat(test ? test[0] : "–", test ? "test accuracy" : "test accuracy (not measured)", "stat-test"),
    stat(valid ? valid[0] : "–", "validation accuracy", "stat-valid"),
    stat(int(card.parameters ?? 7850), "parameters", "stat-params"),
    stat(seconds(card.train_seconds), `training time on ${card.device || "?"}`, "stat-time"),
  );

  const [archText, archNote] = ARCH_TEXT[card.arch] || [`${card.arch}`, null];
  const lr = config.lr !== undefined ? `learning rate ${config.lr}` : "";
  const optNotes = [
    SCHEDULE_TEXT[config.schedule] || (config.schedule ? `schedule: ${config.schedule}` : null),
    config.batch_size ? `batches of ${config.batch_size} images` : null,
    config.momentum ? `momentum ${config.momentum}` : null,
    config.weight_decay ? `weight decay ${config.weight_decay}` : "no weight decay",
  ].filter(Boolean);

  const facts = [
    fact("Architecture", archText, archNote),
    fact("Parameters", int(card.parameters ?? 7850), "784 × 10 weights, one per pixel and digit, plus 10 biases"),
    fact(
      "Training data",
      trainSize && validSize ? `${int(trainSize)} images to learn from, ${int(validSize)} held out for validation` : "MNIST",
      "Validation images check the model after each epoch; the 10,000 test images are used only for the final score.",
    ),
    fact(
      "Normalisation",
      `mean ${formatNumber(card.mean, 4)}, standard deviation ${formatNumber(card.std, 4)}`,
      "Measured on the training images. Each pixel p (0–255) becomes (p / 255 − mean) / std, so inputs are centred on 0.",
    ),
    fact(
      "Input transforms",
      transforms.length ? transforms.join(", ") : "none",
      transforms.includes("deskew") ? "Deskewing straightens slanted digits (and centres them) before the model sees them." : "The model sees the 28×28 image as it is.",
    ),
    fact("Optimizer", `${optimizer}${lr ? `, ${lr}` : ""}`, optNotes.join(" · ")),
    fact("Epochs", `${epochs}`, `passes over the training images${config.seed !== undefined ? `; random seed ${config.seed}` : ""}`),
    fact("Device", card.device || "–", card.torch_version ? `PyTorch ${card.torch_version}` : null),
    fact("Validation accuracy", valid ? valid[0] : "–", valid ? valid[1] : null),
    fact("Test accuracy", test ? test[0] : "not measured", test ? test[1] : "Trained without a test evaluation."),
    fact("Training time", seconds(card.train_seconds), card.created ? `created ${new Date(card.created).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })}` : null),
    fact("Model version", h("code", {}, card.model_version || "–"), "A hash of the weights: it changes whenever the model does."),
  ];
  $("facts").replaceChildren(...facts);
  box.dataset.state = "ready";
  showVersion(card.model_version);
}

// ---- Training curves (SVG) -------------------------------------------------------------

function niceTicks(lo, hi, count = 4) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.05 || 0.05;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const start = Math.floor(lo / step) * step;
  const end = Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toFixed(10)));
  return { ticks, lo: start, hi: end, step };
}

function lineChart({ title, series, format, id, width }) {
  // The viewBox follows the space on screen, so text keeps its size on phones.
  const W = Math.round(Math.min(600, Math.max(280, width || 520)));
  const H = Math.round(Math.max(190, Math.min(260, W * 0.5)));
  const m = { top: 12, right: 16, bottom: 34, left: 52 };
  const n = Math.max(...series.map((s) => s.values.length));
  const all = series.flatMap((s) => s.values).filter(Number.isFinite);
  const { ticks, lo, hi, step } = niceTicks(Math.min(...all), Math.max(...all));
  const x = (i) => m.left + (n <= 1 ? (W - m.left - m.right) / 2 : (i * (W - m.left - m.right)) / (n - 1));
  const y = (v) => m.top + ((hi - v) * (H - m.top - m.bottom)) / (hi - lo || 1);
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + (format === "percent" ? -2 : 0));
  const label = (v) => (format === "percent" ? `${(v * 100).toFixed(Math.max(0, decimals))}%` : v.toFixed(Math.max(1, decimals)));

  const svg = h("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${series.map((s) => `${s.name} from ${label(s.values[0])} to ${label(s.values[s.values.length - 1])}`).join("; ")}` });
  svg.append(h("title", {}, title));
  for (const t of ticks) {
    svg.append(h("line", { class: "gridline", x1: m.left, x2: W - m.right, y1: y(t), y2: y(t) }));
    svg.append(h("text", { class: "tick", x: m.left - 8, y: y(t) + 4, "text-anchor": "end" }, label(t)));
  }
  svg.append(h("line", { class: "axis", x1: m.left, x2: W - m.right, y1: H - m.bottom, y2: H - m.bottom }));
  const every = Math.max(1, Math.ceil(n / 10));
  for (let i = 0; i < n; i += every) {
    svg.append(h("text", { class: "tick", x: x(i), y: H - m.bottom + 18, "text-anchor": "middle" }, String(i + 1)));
  }
  svg.append(h("text", { class: "tick", x: (m.left + W - m.right) / 2, y: H - 2, "text-anchor": "middle" }, "epoch"));
  series.forEach((s, k) => {
    const cls = `series-${k + 1}`;
    const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.append(h("polyline", { class: `line ${cls}`, points: pts, "data-series": s.key, style: "fill:none" }));
    s.values.forEach((v, i) => {
      svg.append(h("circle", { class: cls, cx: x(i), cy: y(v), r: 3.2 }, h("title", {}, `${s.name}, epoch ${i + 1}: ${label(v)}`)));
    });
  });
  const legend = h("span", { class: "chart-legend" }, ...series.map((s, k) => h("span", { class: `series-${k + 1}` }, s.name)));
  return h("figure", { class: "chart", id }, h("figcaption", {}, h("span", {}, title), legend), svg);
}

let curvesHistory = null;

function renderCurves(history) {
  const box = $("curves");
  curvesHistory = history;
  if (!Array.isArray(history) || history.length === 0) {
    box.replaceChildren(h("p", { class: "muted" }, "This model has no training history."));
    box.dataset.state = "empty";
    return;
  }
  const col = (key) => history.map((r) => Number(r[key]));
  const columns = getComputedStyle(box).gridTemplateColumns.split(" ").length || 1;
  const width = (box.clientWidth - 20 * (columns - 1)) / columns;
  box.replaceChildren(
    lineChart({
      id: "chart-loss",
      width,
      title: "Loss (cross-entropy)",
      series: [
        { key: "trn_loss", name: "training", values: col("trn_loss") },
        { key: "val_loss", name: "validation", values: col("val_loss") },
      ],
    }),
    lineChart({
      id: "chart-accuracy",
      width,
      title: "Validation accuracy",
      format: "percent",
      series: [{ key: "accuracy", name: "accuracy", values: col("accuracy") }],
    }),
  );
  box.dataset.state = "ready";
  box.dataset.epochs = String(history.length);
}

// ---- Weight templates --------------------------------------------------------------------

function renderTemplates(body) {
  const box = $("templates");
  const bias = flatten(body.bias || []);
  const figures = body.weights.map((w, d) => {
    const canvas = h("canvas", { class: "pixelated", width: 28, height: 28, role: "img", "aria-label": `Weight template of digit ${d}` });
    drawHeatmap(canvas, w);
    return h(
      "figure",
      { class: "template", dataset: { digit: String(d) } },
      canvas,
      h("figcaption", {}, h("strong", {}, String(d)), Number.isFinite(bias[d]) ? h("small", {}, `bias ${formatSigned(bias[d])}`) : null),
    );
  });
  box.replaceChildren(...figures);
  box.dataset.state = "ready";
}

// ---- Confusion matrix ----------------------------------------------------------------------

function confusionTable(metrics, splitName) {
  const m = metrics.confusion.map((row) => row.map(Number));
  const rowTotals = m.map((row) => row.reduce((a, b) => a + b, 0));
  let maxOff = 0;
  m.forEach((row, t) => row.forEach((v, p) => t !== p && (maxOff = Math.max(maxOff, v))));
  const recall = metrics.recall || rowTotals.map((tot, t) => (tot ? m[t][t] / tot : 0));

  const head = h("tr", {}, h("th", { class: "corner", scope: "col" }, h("span", { class: "corner-label" }, "true ↓ read →")), ...m.map((_, p) => h("th", { scope: "col" }, String(p))), h("th", { class: "recall", scope: "col" }, "recall"));
  const rows = m.map((row, t) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, String(t)),
      ...row.map((v, p) => {
        const diag = t === p;
        let style = null;
        let cls = diag ? "diag" : v === 0 ? "zero" : "off";
        if (diag) {
          const share = rowTotals[t] ? v / rowTotals[t] : 0;
          style = `background: color-mix(in srgb, var(--accent) ${Math.round(35 + 60 * share)}%, var(--surface-2)); color: var(--accent-text)`;
        } else if (v > 0) {
          const k = (v / (maxOff || 1)) ** 0.75;
          const pct = Math.round(10 + 80 * k);
          style = `background: color-mix(in srgb, var(--heat-error) ${pct}%, var(--surface-2))`;
        }
        return h("td", { class: cls, style, title: `true ${t}, predicted ${p}: ${v}`, dataset: { true: String(t), pred: String(p) } }, String(v));
      }),
      h("td", { class: "recall" }, formatPercent(recall[t], 1)),
    ),
  );
  const total = rowTotals.reduce((a, b) => a + b, 0);
  const right = m.reduce((s, row, i) => s + row[i], 0);
  return h(
    "table",
    { class: "confusion", dataset: { split: splitName } },
    h("caption", {}, `${splitName}: ${int(right)} of ${int(total)} right (${formatPercent(total ? right / total : 0, 2)}). Rows: true digit; columns: predicted.`),
    h("thead", {}, head),
    h("tbody", {}, ...rows),
  );
}

function renderConfusion(card) {
  const box = $("confusion");
  const splits = [
    ["Test", card.test],
    ["Validation", card.valid],
  ].filter(([, metrics]) => metrics && Array.isArray(metrics.confusion));
  if (!splits.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No confusion matrix was recorded for this model."));
    box.dataset.state = "empty";
    return;
  }
  const group = $("confusion-split");
  const show = (name) => {
    const [, metrics] = splits.find(([n]) => n === name);
    box.replaceChildren(confusionTable(metrics, name === "Test" ? "Test set" : "Validation set"));
    box.dataset.split = name.toLowerCase();
    for (const b of group.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.split === name));
  };
  if (splits.length > 1) {
    group.replaceChildren(...splits.map(([name]) => {
      const b = h("button", { type: "button", dataset: { split: name }, "aria-pressed": "false" }, name);
      b.addEventListener("click", () => show(name));
      return b;
    }));
  }
  show(splits[0][0]);
  box.dataset.state = "ready";
}

// ---- Gallery of mistakes ----------------------------------------------------------------------

function renderGallery(body) {
  const box = $("gallery");
  const items = Array.isArray(body.items) ? body.items : [];
  if (!items.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No misclassified test digits were stored with this model."));
    box.dataset.state = "empty";
    return;
  }
  box.replaceChildren(
    ...items.map((item) => {
      const canvas = h("canvas", { class: "pixelated", width: 28, height: 28, role: "img", "aria-label": `A handwritten ${item.true} that the model read as ${item.predicted}` });
      drawGray(canvas, item.image);
      return h(
        "figure",
        { class: "error-item", dataset: { true: String(item.true), predicted: String(item.predicted) } },
        canvas,
        h("figcaption", {}, h("span", {}, "true ", h("span", { class: "true" }, String(item.true))), h("span", {}, "read ", h("span", { class: "pred" }, String(item.predicted)))),
      );
    }),
  );
  box.dataset.state = "ready";
  box.dataset.count = String(items.length);
}

// ---- Load ----------------------------------------------------------------------------------

paintLegends();

let resizeTimer = 0;
let lastWidth = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    const width = $("curves").clientWidth;
    if (curvesHistory && Math.abs(width - lastWidth) > 8) {
      lastWidth = width;
      renderCurves(curvesHistory);
    }
  }, 150);
});

fetchJSON("/api/model").then(
  (card) => {
    renderCard(card);
    renderCurves(card.history);
    renderConfusion(card);
  },
  (err) => {
    fail($("model-card"), "the model card", err);
    fail($("curves"), "the training curves", err);
    fail($("confusion"), "the confusion matrix", err);
  },
);

fetchJSON("/api/model/weights").then(renderTemplates, (err) => fail($("templates"), "the weights", err));
fetchJSON("/api/model/errors").then(renderGallery, (err) => fail($("gallery"), "the misclassified digits", err));
