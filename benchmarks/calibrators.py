"""Richer calibrators than one temperature, measured: does a temperature that depends on the
track beat the shipped one on tracks it was not fit on? Prints 5-fold cross-validated ECE and
NLL over the 156 in-genre valid tracks (the mean of REPEATS random fold assignments), and each
calibrator's fit on all of them; it asserts nothing and changes nothing.

    python benchmarks/calibrators.py     # about 2 minutes on 2 CPU cores

The model is default-train-only.pt (it has not trained on the valid splits). Each calibrator
maps a track's mean clip probabilities p to p^(1/T), normalised (calibration.calibrate), with

    one temperature          T = t                            (what `mgc calibrate` fits)
    by novelty               T = t * (1 + a * novelty)         atypical tracks less sure
    by clip disagreement     T = t * (1 + a * disagreement)    the share of clips voting otherwise

t and a fit by minimum NLL on four folds, scored on the fifth.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mgcli.audio import load
from mgcli.calibration import TEMPERATURE_GRID, expected_calibration_error, negative_log_likelihood
from mgcli.clips import hop_samples
from mgcli.inference import aggregate, load_model, softmax, track_outputs
from mgcli.shipped import WEIGHTS_DIR

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SLOPES = np.linspace(-1.0, 3.0, 41)
FOLDS = 5
REPEATS = 5


def valid_tracks(dataset: str) -> list[tuple[str, str]]:
    with open(DATA / dataset / "splits.csv", newline="") as f:
        return [(str(DATA / dataset / r["path"]), r["path"].split("/")[0]) for r in csv.DictReader(f) if r["split"] == "valid"]


def calibrated(probabilities: np.ndarray, temperatures: np.ndarray | float) -> np.ndarray:
    """calibration.calibrate with a temperature per track (a row of `probabilities`)."""
    column = np.broadcast_to(temperatures, (len(probabilities),))[:, None]
    with np.errstate(divide="ignore"):
        scaled = np.log(probabilities) / column
    scaled = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit(probabilities: np.ndarray, targets: np.ndarray, feature: np.ndarray | None) -> tuple[float, float]:
    """(t, a) of minimum NLL; a = 0 without a feature."""
    slopes = SLOPES if feature is not None else [0.0]
    feature = feature if feature is not None else np.zeros(len(targets))
    candidates = [(t, a) for t in TEMPERATURE_GRID[::4] for a in slopes if (1 + a * feature > 0).all()]
    losses = [negative_log_likelihood(calibrated(probabilities, t * (1 + a * feature)), targets) for t, a in candidates]
    return candidates[int(np.argmin(losses))]


def main() -> None:
    model = load_model(WEIGHTS_DIR / "default-train-only.pt", "cpu", "torch")
    tracks = {name: valid_tracks(name) for name in ("gtzan", "emotify")}
    rows = [(name, path, label) for name, items in tracks.items() for path, label in items]
    outputs = [track_outputs(model, [load(path)], hop_samples(3.0)) for _, path, _ in rows]
    probabilities = np.array([aggregate(o.logits) for o in outputs])
    targets = np.array([model.labels.index(label) for _, _, label in rows])
    dataset = np.array([name for name, _, _ in rows])
    features = {
        "one temperature": None,
        "by novelty": np.array([model.novelty.novelty(o.tag_logits) for o in outputs]),
        "by clip disagreement": np.array(
            [1 - (softmax(o.logits).argmax(1) == aggregate(o.logits).argmax()).mean() for o in outputs]),
    }
    print(f"{len(rows)} valid tracks, {FOLDS}-fold cross-validated, mean of {REPEATS} fold assignments\n")
    print("| calibrator | ECE | ECE GTZAN | ECE Emotify | NLL | fit on all: t, a |\n|---|---:|---:|---:|---:|---:|")
    for name, feature in features.items():
        scores = []
        for seed in range(REPEATS):
            folds = np.random.default_rng(seed).permutation(len(rows)) % FOLDS
            predicted = np.zeros_like(probabilities)
            for k in range(FOLDS):
                train, test = folds != k, folds == k
                t, a = fit(probabilities[train], targets[train], None if feature is None else feature[train])
                slope = 0.0 if feature is None else a * feature[test]
                predicted[test] = calibrated(probabilities[test], t * (1 + slope))
            scores.append([expected_calibration_error(predicted, targets)]
                          + [expected_calibration_error(predicted[dataset == d], targets[dataset == d]) for d in tracks]
                          + [negative_log_likelihood(predicted, targets)])
        ece, gtzan, emotify, nll = np.mean(scores, axis=0)
        t, a = fit(probabilities, targets, feature)
        print(f"| {name} | {ece:.3f} | {gtzan:.3f} | {emotify:.3f} | {nll:.3f} | {t:.3f}, {a:.2f} |")


if __name__ == "__main__":
    main()
