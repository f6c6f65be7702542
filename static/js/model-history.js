// The model page's history: every version in the registry (GET /api/models), its numbers and
// its gate report, the current one marked.

import { fetchJSON, formatPercent, h } from "./common.js";

const box = document.getElementById("history");

function accuracy(value) {
  return typeof value === "number" ? formatPercent(value, 2) : "–";
}

function gateCell(report) {
  if (!report) return h("td", {}, "–");
  const held = `held-out ${accuracy(report.current.holdout_accuracy)} → ${accuracy(report.candidate.holdout_accuracy)}`;
  const counts = `${report.train_corrections} trained on ×${report.correction_weight}, ${report.holdout_corrections} held out (${report.split})`;
  return h(
    "td",
    { title: report.reason },
    h("strong", {}, report.promoted ? "passed" : "refused"),
    h("br"),
    h("small", {}, `${held}; ${counts}`),
  );
}

function row(version) {
  const last = version.promotions[version.promotions.length - 1];
  return h(
    "tr",
    { class: version.current ? "is-current" : null, dataset: { version: version.model_version } },
    h("td", {}, String(version.id), version.current ? h("span", { class: "badge" }, " current") : null),
    h("td", {}, h("code", {}, version.model_version)),
    h("td", {}, version.parent ? h("code", {}, version.parent) : "–"),
    h("td", {}, version.source),
    h("td", { class: "num" }, accuracy(version.metrics.valid_accuracy)),
    h("td", { class: "num" }, accuracy(version.metrics.test_accuracy)),
    gateCell(version.gate_report),
    h("td", {}, last ? `${last.action} by ${last.actor}, ${last.at.replace("T", " ").slice(0, 16)}` : "stored"),
  );
}

function render(body) {
  if (!body.versions.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No versions registered yet."));
    box.dataset.state = "empty";
    return;
  }
  const head = ["#", "version", "parent", "source", "validation", "test", "gate", "last change"];
  box.replaceChildren(
    h(
      "table",
      { class: "history-table" },
      h("thead", {}, h("tr", {}, ...head.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...body.versions.map(row)),
    ),
  );
  box.dataset.state = "ready";
  box.dataset.count = String(body.versions.length);
}

if (box) {
  fetchJSON("/api/models").then(render, (err) => {
    box.replaceChildren(h("p", { class: "muted" }, `The history is unavailable: ${err.message}`));
    box.dataset.state = "error";
  });
}
