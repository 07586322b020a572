"""Richer calibrators than one temperature, measured: does a temperature that depends on the
track beat one temperature on tracks it was not fit on, on every collection, without making
music outside the genres look surer? Prints 5-fold cross-validated figures over the in-genre
valid tracks of GTZAN, Emotify and AllMusic, the folds drawn by artist (the mean of REPEATS
fold assignments), and the outside tracks' mean top probability under each; it asserts nothing
and changes nothing.

    python benchmarks/calibrators.py [--weights weights/default-train-only.pt]   # about 3 minutes on 2 CPU cores

The model must not have trained on the valid splits. Each calibrator maps a track's mean clip
probabilities p to p^(1/T), normalised (calibration.calibrate), with

    one temperature          T = t                            (what `mgc calibrate` fits)
    by novelty               T = t * (1 + a * novelty)         atypical tracks less sure
    by clip disagreement     T = t * (1 + a * disagreement)    the share of clips voting otherwise

t and a fit by minimum NLL (a set label on its summed probability) on four folds, scored on
the fifth. ECE is over the tracks of one genre, each collection's beside the ECE a perfectly
calibrated model would show on that many tracks (its floor).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from novelty import COLLECTIONS, artist_folds, in_genre_tracks, outside_tracks

from mgcli.calibration import TEMPERATURE_GRID, ece_of_a_calibrated_model, expected_calibration_error, negative_log_likelihood
from mgcli.inference import aggregate, load_model, softmax
from mgcli.shipped import WEIGHTS_DIR
from mgcli.training.datasets import genres_of

SLOPES = np.linspace(-1.0, 3.0, 41)
FOLDS = 5
REPEATS = 5


def calibrated(probabilities: np.ndarray, temperatures: np.ndarray | float) -> np.ndarray:
    """calibration.calibrate with a temperature per track (a row of `probabilities`)."""
    column = np.broadcast_to(temperatures, (len(probabilities),))[:, None]
    with np.errstate(divide="ignore"):
        scaled = np.log(probabilities) / column
    scaled = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit(probabilities: np.ndarray, truths: np.ndarray, feature: np.ndarray | None) -> tuple[float, float]:
    """(t, a) of minimum NLL; a = 0 without a feature."""
    slopes = SLOPES if feature is not None else [0.0]
    feature = feature if feature is not None else np.zeros(len(truths))
    candidates = [(t, a) for t in TEMPERATURE_GRID[::4] for a in slopes if (1 + a * feature > 0).all()]
    losses = [negative_log_likelihood(calibrated(probabilities, t * (1 + a * feature)), truths) for t, a in candidates]
    return candidates[int(np.argmin(losses))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR / "default-train-only.pt", help="a calibrated musicnn that keeps its tagger")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights, "cpu", "torch")
    rows = [r for r in in_genre_tracks(model) if r["split"] == "valid"]
    outside = outside_tracks(model)
    probabilities = np.array([r["genres"] for r in rows])
    truths = np.array([np.isin(model.labels, genres_of(r["label"])) for r in rows])
    single = truths.sum(axis=1) == 1
    collection = np.array([r["collection"] for r in rows])

    def features(group: list[dict]) -> dict[str, np.ndarray | None]:
        return {
            "one temperature": None,
            "by novelty": np.array([model.novelty.novelty(r["tag_logits"]) for r in group]),
            "by clip disagreement": np.array([1 - (softmax(r["logits"]).argmax(1) == aggregate(r["logits"]).argmax()).mean() for r in group]),
        }

    outside_probabilities = np.array([r["genres"] for r in outside])
    print(f"{len(rows)} valid tracks ({int(single.sum())} of one genre), {FOLDS}-fold cross-validated by artist, mean of {REPEATS} fold assignments\n")
    print("| calibrator | " + " | ".join(f"ECE {c} (floor)" for c in COLLECTIONS) + " | ECE all (floor) | NLL | outside: mean top probability | fit on all: t, a |")
    print("|---|" + "---:|" * (len(COLLECTIONS) + 4))
    for (name, feature), outside_feature in zip(features(rows).items(), features(outside).values()):
        scores = []
        for seed in range(REPEATS):
            folds = artist_folds(rows, seed)
            predicted = np.zeros_like(probabilities)
            for k in range(FOLDS):
                train, test = folds != k, folds == k
                t, a = fit(probabilities[train], truths[train], None if feature is None else feature[train])
                slope = 0.0 if feature is None else a * feature[test]
                predicted[test] = calibrated(probabilities[test], t * (1 + slope))
            cells = []
            for chosen in [collection == c for c in COLLECTIONS] + [np.ones(len(rows), dtype=bool)]:
                chosen &= single
                cells += [expected_calibration_error(predicted[chosen], truths[chosen].argmax(1)), ece_of_a_calibrated_model(predicted[chosen])]
            scores.append(cells + [negative_log_likelihood(predicted, truths)])
        means = np.mean(scores, axis=0)
        t, a = fit(probabilities, truths, feature)
        outside_top = calibrated(outside_probabilities, t * (1 + (0.0 if feature is None else a * outside_feature))).max(axis=1).mean()
        eces = " | ".join(f"{means[2 * i]:.3f} ({means[2 * i + 1]:.3f})" for i in range(len(COLLECTIONS) + 1))
        print(f"| {name} | {eces} | {means[-1]:.3f} | {outside_top:.3f} | {t:.3f}, {a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
