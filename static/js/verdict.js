// The server's verdict ("digit", "unsure", "not_a_digit") in words for the draw page.
// The numbers behind it (scores, thresholds, the "not sure" line) come from the answer's
// verdict_detail; the page never decides on its own.

/**
 * What to show for one answer of POST /api/predict.
 * @returns {{state: string, glyph: string, headline: string, status: string, announce: string}}
 */
export function describeVerdict(result, digit, runnerUp, confidence, formatPercent) {
  const detail = result.verdict_detail || {};
  const verdict = result.verdict || "digit";
  const calibrated = Number.isFinite(detail.calibrated_confidence)
    ? detail.calibrated_confidence : confidence;
  const [first, second] = Array.isArray(detail.candidates) ? detail.candidates : [digit, runnerUp];
  if (verdict === "not_a_digit") {
    const why = (detail.message || "That doesn't look like a digit.")
      .replace(/^That doesn't look like a digit: /, "").replace(/\.$/, "");
    const reason = why.charAt(0).toUpperCase() + why.slice(1);
    return {
      state: "not-digit",
      glyph: "?",
      headline: "That doesn't look like a digit",
      status: `${reason} (the closest digit would be ${first}).`,
      announce: `That doesn't look like a digit: ${why}`,
    };
  }
  if (verdict === "unsure") {
    const line = Number.isFinite(detail.sure_above) ? formatPercent(detail.sure_above) : "";
    return {
      state: "unsure",
      glyph: String(first),
      headline: `Not sure: ${first} or ${second}?`,
      status: `${formatPercent(calibrated)} for ${first}` +
        (line ? `; it is sure only above ${line}, where it is right 99% of the time.` : "."),
      announce: `Not sure: ${first} or ${second}? ${formatPercent(calibrated)} for ${first}.`,
    };
  }
  return {
    state: "confident",
    glyph: String(first),
    headline: `${formatPercent(calibrated)} confident`,
    status: `It's ${first === 8 ? "an" : "a"} ${first}. Next best: ${second}.`,
    announce: `Prediction: ${first}, ${formatPercent(calibrated)} confident.`,
  };
}
