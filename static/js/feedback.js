// The correction bar on the drawing page: after each answer, "Right" or "Wrong, it's a …"
// (buttons or the digit keys), sent to POST /api/feedback. It listens to draw.js's
// "mnist:answer" and "mnist:cleared" events and reads the drawing through window.mnistCanvas.

import { ApiError, fetchJSON } from "./common.js";

const KEYS = {
  id: "mnist-canvas.client-id",
  off: "mnist-canvas.feedback-off",
  count: "mnist-canvas.corrections-sent",
};

const $ = (id) => document.getElementById(id);
const ui = {
  box: $("feedback"),
  right: $("feedback-right"),
  digits: [...document.querySelectorAll(".feedback-digit")],
  status: $("feedback-status"),
  share: $("feedback-share"),
  off: $("feedback-off"),
};

let answer = null; // the answer on screen (detail of "mnist:answer")
let sending = false;
let done = false; // this drawing's answer was already sent

function stored(key, fallback = null) {
  try {
    return localStorage.getItem(key) ?? fallback;
  } catch {
    return fallback; // storage blocked: behave as a fresh browser
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* storage blocked: the setting lasts for this page only */
  }
}

/** A random id for this browser, made once: it lets the server rate-limit, nothing more. */
function clientId() {
  let id = stored(KEYS.id);
  if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    store(KEYS.id, id);
  }
  return id;
}

function storingOff() {
  return ui.off.checked;
}

function setEnabled(enabled) {
  const on = enabled && !storingOff() && !sending;
  ui.right.disabled = !on;
  for (const b of ui.digits) b.disabled = !on;
}

function setStatus(text, state) {
  ui.status.textContent = text;
  ui.box.dataset.state = state;
}

function onAnswer(event) {
  answer = event.detail;
  done = false;
  for (const b of ui.digits) b.classList.toggle("is-predicted", Number(b.dataset.digit) === answer.digit);
  setEnabled(true);
  if (storingOff()) {
    setStatus("Storing is off: your answers are not sent.", "off");
  } else if (answer.final) {
    setStatus(`Is it ${answer.digit === 8 ? "an" : "a"} ${answer.digit}? Press Right, or the right digit (keys 0–9).`, "ready");
  }
}

function onCleared() {
  answer = null;
  done = false;
  for (const b of ui.digits) b.classList.remove("is-predicted");
  setEnabled(false);
  setStatus(storingOff() ? "Storing is off: your answers are not sent." : "Draw a digit; then tell the model whether it read it right.", storingOff() ? "off" : "idle");
}

async function send(label) {
  // Live learning (live-learning.js) takes a few steps on a corrected drawing, in this page.
  if (answer && !done && !sending && label !== answer.digit) {
    document.dispatchEvent(new CustomEvent("mnist:corrected", { detail: { label, predicted: answer.digit } }));
  }
  if (!answer || sending || done || storingOff() || !window.mnistCanvas) return;
  sending = true;
  setEnabled(false);
  setStatus("Sending…", "sending");
  const body = {
    image: window.mnistCanvas.exportImage(),
    label,
    predicted: answer.digit,
    client_id: clientId(),
    share_canvas: ui.share.checked,
  };
  if (answer.model_version) body.model_version = answer.model_version;
  try {
    const result = await fetchJSON("/api/feedback", { method: "POST", body });
    done = true;
    const count = Number(stored(KEYS.count, "0")) + (result.created ? 1 : 0);
    store(KEYS.count, String(count));
    const what = label === answer.digit ? `Thanks: ${label} confirmed` : `Thanks: stored as ${label === 8 ? "an" : "a"} ${label}`;
    const tally = `${count} ${count === 1 ? "answer" : "answers"} from this browser so far`;
    setStatus(result.created ? `${what}. ${tally}.` : `${what} (already stored). ${tally}.`, "sent");
  } catch (err) {
    const message = err instanceof ApiError ? err.message : "The answer could not be sent.";
    setStatus(`Not stored: ${message}`, "error");
  } finally {
    sending = false;
    setEnabled(!done);
  }
}

function onKeyDown(event) {
  const target = event.target;
  if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
  if (event.ctrlKey || event.metaKey || event.altKey || !/^[0-9]$/.test(event.key)) return;
  if (!answer || done) return;
  event.preventDefault();
  send(Number(event.key));
}

ui.off.checked = stored(KEYS.off) === "1";
ui.off.addEventListener("change", () => {
  store(KEYS.off, ui.off.checked ? "1" : "0");
  if (answer && !done) onAnswer({ detail: answer });
  else if (!answer) onCleared();
  else setEnabled(false);
  if (ui.off.checked) setStatus("Storing is off: your answers are not sent.", "off");
});
ui.right.addEventListener("click", () => answer && send(answer.digit));
for (const b of ui.digits) b.addEventListener("click", () => send(Number(b.dataset.digit)));
document.addEventListener("mnist:answer", onAnswer);
document.addEventListener("mnist:cleared", onCleared);
document.addEventListener("keydown", onKeyDown);
onCleared();
