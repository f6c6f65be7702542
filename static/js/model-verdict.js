// The model page's "Knowing when it doesn't know" section: the reliability diagram before and
// after the temperature, the risk-coverage curve with the "not sure" line, and validation
// digits the verdict rejects, with their scores. Data: GET /api/model/verdict.

import { drawGray, fetchJSON, formatNumber, formatPercent, h } from "./common.js";

const $ = (id) => document.getElementById(id);
const W = 320;
const H = 300;
const M = { top: 12, right: 14, bottom: 40, left: 48 };
const sx = (v) => M.left + v * (W - M.left - M.right);
const sy = (v) => M.top + (1 - v) * (H - M.top - M.bottom);

function frame(svg, xLabel, yLabel, yFormat = (v) => formatPercent(v, 0)) {
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(h("line", { class: "gridline", x1: sx(0), x2: sx(1), y1: sy(t), y2: sy(t) }));
    svg.append(h("text", { class: "tick", x: M.left - 6, y: sy(t) + 4, "text-anchor": "end" }, yFormat(t)));
    svg.append(h("text", { class: "tick", x: sx(t), y: H - M.bottom + 16, "text-anchor": "middle" }, formatPercent(t, 0)));
  }
  svg.append(h("line", { class: "axis", x1: sx(0), x2: sx(1), y1: sy(0), y2: sy(0) }));
  svg.append(h("text", { class: "tick", x: (sx(0) + sx(1)) / 2, y: H - 4, "text-anchor": "middle" }, xLabel));
  svg.append(h("text", { class: "tick", x: 10, y: M.top - 2 }, yLabel));
}

/** Accuracy against confidence per bin, before and after the temperature; the diagonal. */
function reliabilityChart(before, after, temperature) {
  const label = `Reliability on MNIST's test digits: expected calibration error ${formatNumber(before.ece, 4)} before, ${formatNumber(after.ece, 4)} after the temperature ${formatNumber(temperature, 3)}`;
  const svg = h("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, id: "reliability-chart" });
  svg.append(h("title", {}, label));
  frame(svg, "confidence", "accuracy");
  svg.append(h("line", { class: "axis", x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(1), "stroke-dasharray": "4 4" }));
  [[before, "series-2", "before"], [after, "series-1", "after"]].forEach(([rel, cls, name]) => {
    const pts = [];
    rel.count.forEach((n, i) => {
      if (!n) return;
      pts.push(`${sx(rel.confidence[i]).toFixed(1)},${sy(rel.accuracy[i]).toFixed(1)}`);
      svg.append(h("circle", { class: cls, cx: sx(rel.confidence[i]), cy: sy(rel.accuracy[i]), r: 3.4 },
        h("title", {}, `${name}: ${n} answers at ${formatPercent(rel.confidence[i], 1)} confidence, ${formatPercent(rel.accuracy[i], 1)} right`)));
    });
    svg.append(h("polyline", { class: `line ${cls}`, points: pts.join(" "), fill: "none", "data-series": name }));
  });
  const legend = h("span", { class: "chart-legend" },
    h("span", { class: "series-2" }, `before, ECE ${formatNumber(before.ece, 4)}`),
    h("span", { class: "series-1" }, `after, ECE ${formatNumber(after.ece, 4)}`));
  return h("figure", { class: "chart" }, h("figcaption", {}, h("span", {}, "Reliability (test digits)"), legend), svg);
}

/** Error rate among the answers kept, as the least confident are set aside; the sure line. */
function riskCoverageChart(curve, line, coverage, target) {
  const maxRisk = Math.max(...curve.risk, 0.01);
  const top = Math.min(1, Math.ceil(maxRisk * 20) / 20);
  const ry = (v) => sy(v / top);
  const label = `Risk-coverage on validation: answering the ${formatPercent(coverage, 1)} most confident digits (calibrated confidence at least ${formatPercent(line, 1)}) keeps the error under ${formatPercent(1 - target, 0)}`;
  const svg = h("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, id: "risk-coverage-chart" });
  svg.append(h("title", {}, label));
  frame(svg, "coverage (answers kept)", "error", (t) => formatPercent(t * top, 1));
  const pts = curve.coverage.map((c, i) => `${sx(c).toFixed(1)},${ry(curve.risk[i]).toFixed(1)}`);
  svg.append(h("polyline", { class: "line series-1", points: pts.join(" "), fill: "none" }));
  svg.append(h("line", { class: "axis", x1: sx(0), x2: sx(1), y1: ry(1 - target), y2: ry(1 - target), "stroke-dasharray": "4 4" }));
  svg.append(h("circle", { class: "series-2", cx: sx(coverage), cy: ry(1 - target), r: 5 },
    h("title", {}, `not sure below ${formatPercent(line, 1)}`)));
  const legend = h("span", { class: "chart-legend" }, h("span", { class: "series-2" }, `"not sure" under ${formatPercent(line, 1)}`));
  return h("figure", { class: "chart" }, h("figcaption", {}, h("span", {}, "Risk-coverage (validation)"), legend), svg);
}

function rejectedList(examples) {
  return h("ul", { class: "rejected-grid", id: "rejected-examples" }, ...examples.map((ex) => {
    const canvas = h("canvas", { class: "pixelated", width: 28, height: 28, role: "img", "aria-label": `A validation ${ex.label} that the verdict calls not a digit: ${ex.reason}` });
    drawGray(canvas, ex.image);
    const score = ex.scores[ex.reason];
    return h("li", { class: "rejected-item", dataset: { reason: ex.reason } }, canvas,
      h("span", {}, `a ${ex.label}: ${ex.reason.replace("_", " ")}`),
      h("small", { class: "muted" }, Number.isFinite(score) ? `score ${formatNumber(score, 2)}` : ""));
  }));
}

function render(info) {
  const box = $("verdict");
  const rel = info.reliability;
  const th = info.thresholds;
  box.replaceChildren(
    h("p", { class: "verdict-facts", id: "verdict-summary" },
      `On the validation split, ${formatPercent(info.valid_rejection, 2)} of real digits are called "not a digit" ` +
      `(at most ${formatPercent(info.max_rejection, 0)} allowed); the temperature is ${formatNumber(info.temperature, 3)}; ` +
      `answers under ${formatPercent(info.sure_above, 1)} calibrated confidence say "not sure" ` +
      `(${formatPercent(info.sure_coverage, 1)} of validation digits are answered sure, ${formatPercent(info.target_accuracy, 0)} of them right).`),
    h("div", { class: "verdict-charts" },
      reliabilityChart(rel.test_before, rel.test_after, info.temperature),
      riskCoverageChart(info.risk_coverage, info.sure_above, info.sure_coverage, info.target_accuracy)),
    h("h3", {}, "Real digits it rejects"),
    h("p", { class: "muted" }, "Validation digits whose scores cross a threshold: the price of catching scribbles, letters and pairs. " +
      `Thresholds: ${Object.entries(th).map(([k, v]) => `${k.replace("_", " ")} ${formatNumber(v, 2)}`).join(", ")}.`),
    rejectedList(info.rejected_examples || []),
  );
  box.dataset.state = "ready";
}

fetchJSON("/api/model/verdict").then(render, (err) => {
  const box = $("verdict");
  box.dataset.state = "error";
  box.replaceChildren(h("p", { class: "load-error", role: "alert" }, `Could not load the verdict: ${err.message}`));
});
