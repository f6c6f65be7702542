"""The promotion gate of a fine-tuned candidate, and the fine-tune's defaults (no torch here,
so the server's settings can read them without importing the training code)."""

from __future__ import annotations

# Chosen by `python -m benchmarks.learning --tune` on simulated writers of our own (never on
# MNIST's test digits): see the README's learning section for the sweep.
DEFAULT_CORRECTION_WEIGHT = 5
DEFAULT_HOLDOUT_FRACTION = 0.25
DEFAULT_MIN_CLIENTS = 4
DEFAULT_MAX_VALID_DROP = 0.003


def gate(current: dict[str, float], candidate: dict[str, float], *, holdout: int,
         max_valid_drop: float) -> tuple[bool, str]:
    """The promotion rule, as a pure function of the two models' numbers."""
    drop = current["valid_accuracy"] - candidate["valid_accuracy"]
    if holdout == 0:
        return False, "no held-out corrections to judge the candidate on; collect more."
    if drop > max_valid_drop + 1e-12:
        return False, (
            f"MNIST validation accuracy would fall {100 * drop:.2f} points "
            f"({current['valid_accuracy']:.4f} -> {candidate['valid_accuracy']:.4f}), more "
            f"than the {100 * max_valid_drop:.2f} allowed."
        )
    better = candidate["holdout_accuracy"] > current["holdout_accuracy"] or (
        candidate["holdout_accuracy"] == current["holdout_accuracy"]
        and candidate["holdout_loss"] < current["holdout_loss"]
    )
    if not better:
        return False, (
            f"the candidate does not read the {holdout} held-out corrections better "
            f"({current['holdout_accuracy']:.4f} -> {candidate['holdout_accuracy']:.4f})."
        )
    return True, (
        f"held-out corrections {current['holdout_accuracy']:.4f} -> "
        f"{candidate['holdout_accuracy']:.4f}; MNIST validation {current['valid_accuracy']:.4f} "
        f"-> {candidate['valid_accuracy']:.4f} (within {100 * max_valid_drop:.2f} points)."
    )
