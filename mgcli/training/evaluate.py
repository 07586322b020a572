"""Scoring: clip and whole-track accuracy, per-class precision/recall/F1, confusion matrix, calibration, novelty."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import MgcError, quiet
from ..audio import DEFAULT_HOP_SECONDS, AudioError, load
from ..calibration import calibration_report, expected_calibration_error
from ..catalogue import find_audio
from ..clips import ClipOutputs, hop_samples
from ..files import check_outputs, write_text_atomic
from ..inference import AGGREGATIONS, aggregate, check_aggregation, load_model, model_files, refuse_tagger, track_outputs
from ..novelty import NOVELTY_THRESHOLD, auroc
from ..torch_engine import GenreModel
from .cache import Track, load_wave, to_float
from .datasets import GENRE_SET, SPLITS, genres_of, load_datasets, pair_split_files, tracks_in_split, warn_absent

RANDOM_FOLDS_WARNING = (
    "Random folds put the same artists in training and test folds; on GTZAN this inflates "
    "accuracy by 10 points or more. Quote an artist-aware split (e.g. --split-file) beside it."
)


def classification_report(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro averages and the confusion matrix.

    Macro averages run over the classes present in `y_true`: a class with no examples
    has no recall to average.
    """
    n = len(labels)
    confusion = np.zeros((n, n), dtype=int)  # rows: true, columns: predicted
    for t, p in zip(y_true, y_pred):
        confusion[t, p] += 1
    per_class = []
    for i, label in enumerate(labels):
        tp, support, predicted = confusion[i, i], confusion[i].sum(), confusion[:, i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(
            {"label": label, "precision": precision, "recall": recall, "f1": f1, "support": int(support)}
        )
    present = [c for c in per_class if c["support"]]
    macro = {m: float(np.mean([c[m] for c in present])) if present else 0.0 for m in ("precision", "recall", "f1")}
    total = int(confusion.sum())
    return {
        "accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "macro": macro,
        "per_class": [{k: float(v) if isinstance(v, np.floating) else v for k, v in c.items()} for c in per_class],
        "confusion": confusion.tolist(),
        "count": total,
    }


def label_report(truths: Sequence[np.ndarray], predictions: Sequence[int], labels: list[str]) -> dict:
    """`classification_report` of the items with one true genre, and "sets": a row per set label
    ({"label", "support", "recall": the share answered inside the set, "answers": {genre: count}}).

    `truths` are [n_labels] booleans: the genres counted right. A set is scored on its own row, never
    as a class of the confusion matrix or the accuracy; it counts as one class in the macro recall.
    """
    single = [(int(truth.argmax()), p) for truth, p in zip(truths, predictions) if truth.sum() == 1]
    report = classification_report([t for t, _ in single], [p for _, p in single], labels)
    answers: dict[str, list[int]] = {}
    for truth, p in zip(truths, predictions):
        if truth.sum() > 1:
            answers.setdefault(GENRE_SET.join(np.array(labels)[truth]), []).append(p)
    sets = []
    for name, predicted in sorted(answers.items()):
        right = np.isin(np.array(labels)[predicted], genres_of(name))
        sets.append({"label": name, "support": len(predicted), "recall": float(right.mean()),
                     "answers": dict(Counter(labels[p] for p in predicted).most_common())})
    if sets:
        recalls = [c["recall"] for c in report["per_class"] if c["support"]] + [row["recall"] for row in sets]
        report["macro"]["recall"] = float(np.mean(recalls))
    return report | {"sets": sets}


def evaluate_tracks(
    model: GenreModel,
    tracks: list[Track],
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    aggregation: str = "mean_prob",
    batch_size: int | None = None,
    outside: np.ndarray | None = None,
) -> dict:
    """Score a model on labelled tracks: clip accuracy, and track accuracy under every aggregation.

    Returns {"clip": report, "track": report for `aggregation`, "track_accuracy": {aggregation: acc},
    "loss": mean clip cross-entropy, "calibration": of the tracks' probabilities, "failed": [(path, error)],
    "aggregate", "hop_seconds"}, and "novelty" (novelty_report, against the `outside` tracks' novelty)
    for a model that gives one. Tracks that cannot be decoded are listed in "failed" and left out of the scores.
    """
    scored, failed = run_tracks(model, tracks, hop_samples(hop_seconds), batch_size)
    temperature = model.temperatures.get(aggregation, 1.0)
    return (score_tracks(logits_of(scored), model.labels, aggregation, temperature) | novelty_report(model, scored, outside)
            | {"failed": failed, "hop_seconds": hop_seconds})


def evaluate_datasets(
    model: GenreModel,
    datasets: dict[str, list[Track]],
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    aggregation: str = "mean_prob",
    batch_size: int | None = None,
    outside: np.ndarray | None = None,
) -> dict:
    """`evaluate_tracks` on several datasets together, and on each alone; every track runs once.

    Returns the report of all the tracks together, with "datasets": {name: that dataset's report}.
    """
    hop = hop_samples(hop_seconds)
    runs = {name: run_tracks(model, tracks, hop, batch_size) for name, tracks in datasets.items()}
    temperature = model.temperatures.get(aggregation, 1.0)

    def report(scored: list, failed: list) -> dict:
        return (score_tracks(logits_of(scored), model.labels, aggregation, temperature) | novelty_report(model, scored, outside)
                | {"failed": failed, "hop_seconds": hop_seconds})

    together = report([s for scored, _ in runs.values() for s in scored], [f for _, failed in runs.values() for f in failed])
    return together | {"datasets": {name: report(*run) for name, run in runs.items()}}


def run_tracks(
    model: GenreModel, tracks: list[Track], hop: int, batch_size: int | None
) -> tuple[list[tuple[np.ndarray, ClipOutputs]], list[tuple[str, str]]]:
    """(truth, clip outputs) of each track whose label names a genre the model knows, and (path, error)
    of those that fail. A truth is [n_labels] booleans: the genres counted right (one, or a set's)."""
    scored: list[tuple[np.ndarray, ClipOutputs]] = []
    failed: list[tuple[str, str]] = []
    for track in tracks:
        truth = np.isin(model.labels, genres_of(track.label))
        if not truth.any():
            continue  # a genre the model was not trained on cannot be scored
        try:
            wave = to_float(load_wave(track))
        except MgcError as error:
            failed.append((track.path, str(error)))
            continue
        scored.append((truth, track_outputs(model, [wave], hop, batch_size)))
    return scored, failed


def logits_of(scored: list[tuple[np.ndarray, ClipOutputs]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """`run_tracks`' tracks as `score_tracks` takes them: (truth, clip logits)."""
    return [(target, outputs.logits) for target, outputs in scored]


def novelty_report(model: GenreModel, scored: list[tuple[np.ndarray, ClipOutputs]], outside: np.ndarray | None) -> dict:
    """{"novelty": {"threshold", "pass": the share of the tracks at or under it, "median"}, with, given
    the novelty of tracks `outside` the genres, "outside_tracks", "outside_flagged" and "auroc"};
    {} for a model that gives no novelty (novelty.py)."""
    if model.novelty is None or not scored:
        return {}
    inside = np.array([model.novelty.novelty(outputs.tag_logits) for _, outputs in scored])
    report = {"threshold": NOVELTY_THRESHOLD, "pass": float(np.mean(inside <= NOVELTY_THRESHOLD)), "median": float(np.median(inside))}
    if outside is not None and len(outside):
        report |= {"outside_tracks": len(outside), "outside_flagged": float(np.mean(outside > NOVELTY_THRESHOLD)),
                   "auroc": auroc(outside, inside)}
    return {"novelty": report}


def outside_novelty(
    model: GenreModel, paths: Sequence[Path], hop_seconds: float, notify: Callable[[str], None]
) -> np.ndarray:
    """The novelty of every audio file under `paths` (music outside the model's genres); files that fail are skipped."""
    if model.novelty is None:
        raise MgcError("--outside measures the novelty score, and this model gives none "
                       "(a musicnn that keeps its tagger, calibrated with `mgc calibrate`, gives one)")
    return np.array([model.novelty.novelty(t) for t in outside_tag_logits(model, paths, hop_samples(hop_seconds), notify)])


def outside_tag_logits(model: GenreModel, paths: Sequence[Path], hop: int, notify: Callable[[str], None]) -> list[np.ndarray]:
    """The kept tagger's clip tag logits of every audio file under `paths`; files that fail are skipped."""
    files = find_audio(paths)
    if not files:
        raise MgcError("no audio files found in " + ", ".join(map(str, paths)))
    tag_logits = []
    for path in files:
        try:
            tag_logits.append(track_outputs(model, [load(path)], hop).tag_logits)
        except AudioError as error:
            notify(f"skipped: {error}")
    if not tag_logits:
        raise MgcError(f"--outside: none of its {len(files)} files could be scored")
    return tag_logits


def warn_unknown_labels(tracks: list[Track], labels: list[str], notify: Callable[[str], None]) -> None:
    """Say how many tracks have a genre the model does not know, and which genres: they cannot be
    scored, and the scores would otherwise rest on fewer tracks without a word. None known is refused."""
    unknown = Counter(t.label for t in tracks if not set(genres_of(t.label)) & set(labels))
    if not unknown:
        return
    n = sum(unknown.values())
    if n == len(tracks):
        raise MgcError(f"none of the {n} tracks has a genre the model knows ({', '.join(labels)}); nothing to score")
    named = ", ".join(f"{label} {count}" for label, count in sorted(unknown.items()))
    notify(f"warning: {n} of {len(tracks)} tracks have a genre the model does not know, left out of the scores: {named}")


def score_tracks(
    scored: list[tuple[np.ndarray, np.ndarray]], labels: list[str], aggregation: str = "mean_prob", temperature: float = 1.0
) -> dict:
    """Scores of tracks given as (truth: [n_labels] booleans, the genres counted right; clip logits [n_clips, n_labels]).

    Returns {"clip": report, "track": report for `aggregation` (both `label_report`s: tracks of one
    genre in the accuracy and confusion, set labels on rows of their own), "track_accuracy":
    {aggregation: accuracy over the tracks of one genre}, "loss": mean clip cross-entropy (of a set
    label, on its summed probability), "calibration": calibration.calibration_report of the
    one-genre tracks' `aggregation` probabilities under `temperature`, with "clip_ece", the clips'
    own softmax's, "aggregate"}. Calibration never moves a track's argmax, so no accuracy depends on the temperature.
    """
    clip_truths: list[np.ndarray] = []
    clip_pred: list[int] = []
    track_pred: dict[str, list[int]] = {m: [] for m in AGGREGATIONS}
    track_probabilities = []  # of `aggregation`, uncalibrated
    clip_probabilities = []
    losses = []
    for truth, logits in scored:
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        losses.append(-np.logaddexp.reduce(log_probs[:, truth], axis=1).mean())  # a set's summed probability, in logs
        clip_probabilities.append(np.exp(log_probs))
        clip_truths += [truth] * len(logits)
        clip_pred += logits.argmax(axis=1).tolist()
        for m in AGGREGATIONS:
            track_pred[m].append(int(aggregate(logits, m).argmax()))
        track_probabilities.append(aggregate(logits, aggregation))
    single = np.array([truth.sum() == 1 for truth, _ in scored], dtype=bool)
    track_true = np.array([int(truth.argmax()) for truth, _ in scored], dtype=int)
    calibration = calibration_report(np.array(track_probabilities).reshape(len(scored), len(labels))[single],
                                     track_true[single], temperature)
    clip_single = np.array([truth.sum() == 1 for truth in clip_truths], dtype=bool)
    if clip_single.any():
        clip_true = np.array([int(truth.argmax()) for truth in clip_truths])
        calibration["clip_ece"] = expected_calibration_error(np.concatenate(clip_probabilities)[clip_single], clip_true[clip_single])
    truths = [truth for truth, _ in scored]
    return {
        "clip": label_report(clip_truths, clip_pred, labels),
        "track": label_report(truths, track_pred[aggregation], labels),
        "track_accuracy": {
            m: float(np.mean(track_true[single] == np.array(p, dtype=int)[single])) if single.any() else 0.0
            for m, p in track_pred.items()
        },
        "loss": float(np.mean(losses)) if losses else float("nan"),
        "calibration": calibration,
        "aggregate": aggregation,
    }


def evaluate(
    data: Sequence[Path],
    weights: str | Path,
    split_file: Sequence[Path] = (),
    split: str | None = None,
    aggregation: str = "mean_prob",
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    json_out: str | Path | None = None,
    outside: Sequence[Path] = (),
    device: str = "auto",
    notify: Callable[[str], None] = quiet,
) -> dict:
    """`mgc evaluate`: score the checkpoint `weights` on the tracks of `split` of the datasets `data`.

    `split` defaults to test with split files (one per dataset, in order), else all. `outside`:
    files and folders of music outside the model's genres, against which the novelty score's
    AUROC is measured. Returns the report of `evaluate_tracks` (of `evaluate_datasets` for
    several datasets) with the weights, data, split and labels, which is also what `json_out` receives.
    """
    check_aggregation(aggregation)
    split = split or ("test" if split_file else "all")
    if split not in (*SPLITS, "all"):
        raise MgcError(f"unknown split {split!r} (use {', '.join(SPLITS)} or all)")
    hop_samples(hop_seconds)  # these refuse bad input now, before the model is loaded or any track decoded
    pair_split_files(data, split_file)
    check_outputs([json_out], [*model_files(weights), *data, *split_file, *outside])
    for path in outside:
        if not Path(path).exists():
            raise MgcError(f"{path}: no such file or folder (--outside)")
    model = load_model(weights, device, engine="torch")
    refuse_tagger(model, weights)
    datasets = load_datasets(data, split_file)
    chosen = {str(d.source): tracks_in_split(d, split) for d in datasets}
    if split != "all":
        warn_absent(datasets, (split,), notify)
    warn_unknown_labels([t for tracks in chosen.values() for t in tracks], model.labels, notify)
    novelty = outside_novelty(model, outside, hop_seconds, notify) if outside else None
    if len(chosen) == 1:
        report = evaluate_tracks(model, *chosen.values(), hop_seconds, aggregation, outside=novelty)
    else:
        report = evaluate_datasets(model, chosen, hop_seconds, aggregation, outside=novelty)
    sources = str(data[0]) if len(data) == 1 else [str(d) for d in data]
    document = {"weights": str(weights), "data": sources, "split": split, "labels": model.labels, **report}
    if json_out:
        write_text_atomic(json_out, json.dumps(document, indent=2) + "\n")
    return document
