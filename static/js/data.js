// The /data page: corrections per digit and model version (GET /api/feedback/stats, public),
// and the stored drawings as a grid (GET /api/feedback, admin token), each deletable.

import { ApiError, drawGray, fetchJSON, formatPercent, h } from "./common.js";

const TOKEN_KEY = "mnist-canvas.admin-token"; // sessionStorage: this tab only
const PAGE = 60;

const $ = (id) => document.getElementById(id);
const ui = {
  stats: $("stats"),
  summary: $("stats-summary"),
  headline: $("stats-headline"),
  perLabel: $("per-label"),
  perVersion: $("per-version"),
  tokenForm: $("token-form"),
  token: $("token"),
  forget: $("forget"),
  filters: $("filters"),
  label: $("f-label"),
  predicted: $("f-predicted"),
  version: $("f-version"),
  wrong: $("f-wrong"),
  status: $("grid-status"),
  grid: $("grid"),
  more: $("more"),
};

let token = readToken();
let nextBefore = null;
let loadSeq = 0;

function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

function saveToken(value) {
  token = value;
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage blocked: the token lasts for this page only */
  }
}

function stat(value, label) {
  return h("div", { class: "stat" }, h("span", { class: "stat-value", text: value }), h("span", { class: "stat-label", text: label }));
}

async function loadStats() {
  let stats;
  try {
    stats = await fetchJSON("/api/feedback/stats");
  } catch (err) {
    ui.stats.dataset.state = "error";
    ui.summary.textContent = err instanceof ApiError ? err.message : "The counts could not be loaded.";
    return;
  }
  ui.stats.dataset.state = "ready";
  const judged = stats.per_model_version.reduce((s, v) => s + v.judged, 0);
  ui.summary.textContent = stats.total
    ? `${stats.total} ${stats.total === 1 ? "correction" : "corrections"} stored; the model read ${stats.wrong} of ${judged} wrong.`
    : "No corrections yet: draw a digit on the drawing page and tell the model whether it read it right.";
  ui.headline.replaceChildren(
    stat(String(stats.total), "corrections"),
    stat(String(stats.wrong), "the model got wrong"),
    stat(stats.wrong_share === null ? "–" : formatPercent(stats.wrong_share), "error rate on them"),
    stat(String(stats.per_model_version.length), stats.per_model_version.length === 1 ? "model version" : "model versions"),
  );
  const most = Math.max(1, ...stats.per_label);
  ui.perLabel.replaceChildren(
    ...stats.per_label.map((n, d) =>
      h("li", { dataset: { digit: String(d) } }, h("b", { text: String(d) }), h("meter", { min: 0, max: most, value: n, "aria-label": `${n} corrections of ${d}` }), h("span", { class: "count", text: String(n) })),
    ),
  );
  ui.perVersion.replaceChildren(
    ...stats.per_model_version.map((v) =>
      h("tr", {}, h("td", {}, h("code", { text: v.model_version || "unknown" })), h("td", { text: String(v.count) }), h("td", { text: String(v.wrong) }), h("td", { text: v.wrong_share === null ? "–" : formatPercent(v.wrong_share) })),
    ),
  );
  const chosen = ui.version.value;
  ui.version.replaceChildren(
    h("option", { value: "", text: "any" }),
    ...stats.per_model_version.filter((v) => v.model_version).map((v) => h("option", { value: v.model_version, text: v.model_version })),
  );
  ui.version.value = chosen;
}

function query(before) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (ui.label.value) params.set("label", ui.label.value);
  if (ui.predicted.value) params.set("predicted", ui.predicted.value);
  if (ui.version.value) params.set("model_version", ui.version.value);
  if (ui.wrong.checked) params.set("wrong", "true");
  if (before) params.set("before_id", String(before));
  return `/api/feedback?${params}`;
}

function authHeaders() {
  return { Authorization: `Bearer ${token}` };
}

function tile(item) {
  const wrong = item.predicted !== null && item.predicted !== item.label;
  const canvas = h("canvas", { width: 28, height: 28, class: "pixelated", role: "img", "aria-label": `Drawing ${item.id}: labelled ${item.label}` });
  drawGray(canvas, item.image);
  const remove = h("button", { type: "button", class: "btn", text: "Delete", "aria-label": `Delete correction ${item.id}` });
  const li = h(
    "li",
    { class: "tile", dataset: { id: String(item.id), label: String(item.label), wrong: String(wrong) } },
    canvas,
    h("span", { class: "tile-text" }, h("span", { class: "tile-label", text: `label ${item.label}` }), h("span", { class: "tile-read", text: item.predicted === null ? "read –" : `read ${item.predicted}` })),
    remove,
  );
  li.title = `#${item.id} · ${item.created_at}${item.model_version ? ` · model ${item.model_version}` : ""}`;
  remove.addEventListener("click", () => removeItem(item, li));
  return li;
}

async function loadGrid(append = false) {
  if (!token) return;
  const seq = ++loadSeq;
  ui.status.textContent = "Loading the drawings…";
  let body;
  try {
    body = await fetchJSON(query(append ? nextBefore : null), { headers: authHeaders() });
  } catch (err) {
    if (seq !== loadSeq) return;
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      saveToken("");
      showTokenForm();
    }
    ui.status.textContent = err instanceof ApiError ? err.message : "The drawings could not be loaded.";
    return;
  }
  if (seq !== loadSeq) return;
  showFilters();
  if (!append) ui.grid.replaceChildren();
  ui.grid.append(...body.items.map(tile));
  nextBefore = body.next_before_id;
  ui.more.hidden = nextBefore === null;
  const shown = ui.grid.children.length;
  ui.status.textContent = body.total ? `Showing ${shown} of ${body.total} matching ${body.total === 1 ? "correction" : "corrections"}.` : "No corrections match these filters.";
}

async function removeItem(item, li) {
  if (!window.confirm(`Delete correction #${item.id} (labelled ${item.label})? This cannot be undone.`)) return;
  try {
    await fetchJSON(`/api/feedback/${item.id}`, { method: "DELETE", headers: authHeaders() });
  } catch (err) {
    ui.status.textContent = err instanceof ApiError ? err.message : "The correction could not be deleted.";
    return;
  }
  li.remove();
  ui.status.textContent = `Correction #${item.id} deleted.`;
  loadStats();
}

function showFilters() {
  ui.tokenForm.querySelector("label").hidden = true;
  ui.tokenForm.querySelector("button[type=submit]").hidden = true;
  ui.forget.hidden = false;
  ui.filters.hidden = false;
}

function showTokenForm() {
  ui.tokenForm.querySelector("label").hidden = false;
  ui.tokenForm.querySelector("button[type=submit]").hidden = false;
  ui.forget.hidden = true;
  ui.filters.hidden = true;
  ui.grid.replaceChildren();
  ui.more.hidden = true;
}

ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  saveToken(ui.token.value.trim());
  ui.token.value = "";
  loadGrid();
});
ui.forget.addEventListener("click", () => {
  saveToken("");
  showTokenForm();
  ui.status.textContent = "Token forgotten. Enter it again to see the drawings.";
});
ui.filters.addEventListener("change", () => loadGrid());
ui.more.addEventListener("click", () => loadGrid(true));

loadStats();
if (token) loadGrid();
document.body.dataset.ready = "true";
