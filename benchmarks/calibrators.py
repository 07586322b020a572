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
    by predicted genre       T = t_k for a track whose top genre is k    (t for genres predicted
                             on fewer than MIN_GENRE_TRACKS tracks)

t and a (or each t_k) fit by minimum NLL (a set label on its summed probability) on four
folds, scored on the fifth. ECE is over the tracks of one genre, each collection's beside the ECE a perfectly
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
MIN_GENRE_TRACKS = 20  # a genre's own temperature is fit on at least this many tracks predicted as it
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


def fit_by_genre(probabilities: np.ndarray, truths: np.ndarray) -> dict[int, float]:
    """A temperature per top genre (index -> t) with MIN_GENRE_TRACKS tracks or more, and one for the rest (key -1)."""
    top = probabilities.argmax(axis=1)
    temperatures = {-1: fit(probabilities, truths, None)[0]}
    for genre in np.unique(top):
        chosen = top == genre
        if chosen.sum() >= MIN_GENRE_TRACKS:
            temperatures[int(genre)] = fit(probabilities[chosen], truths[chosen], None)[0]
    return temperatures


def calibrated_by_genre(probabilities: np.ndarray, temperatures: dict[int, float]) -> np.ndarray:
    return calibrated(probabilities, np.array([temperatures.get(int(k), temperatures[-1]) for k in probabilities.argmax(axis=1)]))


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
    print("| calibrator | " + " | ".join(f"ECE {c} (floor)" for c in COLLECTIONS) + " | ECE all (floor) | NLL | outside: mean top probability | fit on all: t, a (or t by genre) |")
    print("|---|" + "---:|" * (len(COLLECTIONS) + 4))
    by_feature = (lambda p, truths, x: fit(p, truths, x), lambda p, x, ta: calibrated(p, ta[0] * (1 + (0.0 if x is None else ta[1] * x))))
    by_genre = (lambda p, truths, x: fit_by_genre(p, truths), lambda p, x, temperatures: calibrated_by_genre(p, temperatures))
    inside_features, outside_features = features(rows), features(outside)
    # name -> (fit(probabilities, truths, feature) -> parameters, apply(probabilities, feature, parameters)), the track feature or None
    candidates = {name: (*by_feature, inside_features[name], outside_features[name]) for name in inside_features}
    candidates["by predicted genre"] = (*by_genre, None, None)
    for name, (fit_on, apply, feature, outside_feature) in candidates.items():
        part = lambda x, chosen: None if x is None else x[chosen]  # noqa: E731
        scores = []
        for seed in range(REPEATS):
            folds = artist_folds(rows, seed)
            predicted = np.zeros_like(probabilities)
            for k in range(FOLDS):
                train, test = folds != k, folds == k
                parameters = fit_on(probabilities[train], truths[train], part(feature, train))
                predicted[test] = apply(probabilities[test], part(feature, test), parameters)
            cells = []
            for chosen in [collection == c for c in COLLECTIONS] + [np.ones(len(rows), dtype=bool)]:
                chosen &= single
                cells += [expected_calibration_error(predicted[chosen], truths[chosen].argmax(1)), ece_of_a_calibrated_model(predicted[chosen])]
            scores.append(cells + [negative_log_likelihood(predicted, truths)])
        means = np.mean(scores, axis=0)
        parameters = fit_on(probabilities, truths, feature)
        outside_top = apply(outside_probabilities, outside_feature, parameters).max(axis=1).mean()
        fitted = (", ".join(f"{model.labels[k] if k >= 0 else 'rest'} {t:.3f}" for k, t in parameters.items())
                  if isinstance(parameters, dict) else f"{parameters[0]:.3f}, {parameters[1]:.2f}")
        eces = " | ".join(f"{means[2 * i]:.3f} ({means[2 * i + 1]:.3f})" for i in range(len(COLLECTIONS) + 1))
        print(f"| {name} | {eces} | {means[-1]:.3f} | {outside_top:.3f} | {fitted} |", flush=True)

if __name__ == "__main__":
    main()
