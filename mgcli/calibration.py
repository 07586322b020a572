"""Calibration: track probabilities that mean what they say, and the figures that tell whether they do.

Measured on the shipped model's valid splits (weights/README.md, "Calibration"): each clip's
softmax is calibrated as it is (expected calibration error 0.041 over 2,091 clips), but
averaging a track's clips makes its probabilities under-confident (GTZAN valid: right 87% of
the time at a mean top probability of 0.68). So the correction sits after the aggregation:
one temperature per aggregation, p_i ∝ p_i^(1/T), fit by `mgc calibrate` on valid tracks and
kept in the checkpoint. It is monotonic, so it never changes a track's genre, only how sure
the answer says it is. Torch-free: both engines' answers go through it.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 10
# The temperatures `fit_temperature` tries: 0.05 to 20, log-spaced; finer than the fit's noise.
TEMPERATURE_GRID = np.geomspace(0.05, 20.0, 601)


def calibrate(probabilities: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities [..., n_labels] sharpened (T < 1) or softened (T > 1): p_i^(1/T), normalised.

    The same as a softmax of log(p) / T; zeros stay zero.
    """
    if temperature == 1.0:
        return probabilities
    with np.errstate(divide="ignore"):
        scaled = np.log(probabilities) / temperature
    scaled = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return scaled / scaled.sum(axis=-1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `targets` (as `negative_log_likelihood`
    takes them) under `calibrate(probabilities, T)`."""
    losses = [negative_log_likelihood(calibrate(probabilities, t), targets) for t in TEMPERATURE_GRID]
    return float(TEMPERATURE_GRID[int(np.argmin(losses))])


def negative_log_likelihood(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean -log p[target]; a probability of 0 counts as 1e-12, so one confident miss does not make it infinite.

    `targets` are class indices, or [n, n_labels] booleans where a track's label is a set of
    classes (it is one of them): its likelihood is then the set's summed probability.
    """
    if targets.ndim == 2:
        picked = (probabilities * targets).sum(axis=1)
    else:
        picked = probabilities[np.arange(len(targets)), targets]
    return float(-np.log(np.clip(picked, 1e-12, None)).mean())


def reliability(probabilities: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Tracks grouped by their top probability in `bins` equal bins: count, mean confidence, accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        count = int(inside.sum())
        rows.append({
            "from": round(float(low), 2), "to": round(float(high), 2), "count": count,
            "confidence": float(confidence[inside].mean()) if count else None,
            "accuracy": float(correct[inside].mean()) if count else None,
        })
    return rows


def expected_calibration_error(probabilities: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """The count-weighted mean gap between confidence and accuracy over the reliability bins."""
    rows = reliability(probabilities, targets, bins)
    return sum(r["count"] * abs(r["confidence"] - r["accuracy"]) for r in rows if r["count"]) / len(targets)


def ece_of_a_calibrated_model(probabilities: np.ndarray, repeats: int = 200, seed: int = 0) -> float:
    """The ECE that a perfectly calibrated model with these probabilities would show on this many tracks.

    Targets drawn from the probabilities themselves, `repeats` times: with a hundred or so tracks
    the 10-bin ECE is far from 0 even then, and a measured ECE should be read against it.
    """
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probabilities, axis=1)
    draws = [(rng.random((len(probabilities), 1)) > cumulative).sum(axis=1) for _ in range(repeats)]
    last = probabilities.shape[1] - 1
    return float(np.mean([expected_calibration_error(probabilities, np.minimum(d, last)) for d in draws]))


def calibration_report(probabilities: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> dict:
    """How well track probabilities (as aggregated, before calibration) are calibrated, with and without `temperature`.

    {"temperature", "ece", "nll", "confidence" (the mean top probability; all three calibrated),
    "ece_uncalibrated", "nll_uncalibrated", "confidence_uncalibrated", "ece_if_calibrated" (see
    ece_of_a_calibrated_model), "reliability" (calibrated, see reliability)}.
    """
    if not len(targets):
        return {"temperature": temperature}
    calibrated = calibrate(probabilities, temperature)
    return {
        "temperature": temperature,
        "ece": expected_calibration_error(calibrated, targets),
        "nll": negative_log_likelihood(calibrated, targets),
        "confidence": float(calibrated.max(axis=1).mean()),
        "ece_uncalibrated": expected_calibration_error(probabilities, targets),
        "nll_uncalibrated": negative_log_likelihood(probabilities, targets),
        "confidence_uncalibrated": float(probabilities.max(axis=1).mean()),
        "ece_if_calibrated": ece_of_a_calibrated_model(calibrated),
        "reliability": reliability(calibrated, targets),
    }
