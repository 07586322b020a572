"""Scoring: clip and whole-track accuracy, per-class precision/recall/F1, confusion matrix, calibration, novelty."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import MgcError, quiet
from ..audio import DEFAULT_HOP_SECONDS
from ..calibration import calibration_report, expected_calibration_error
from ..catalogue import find_audio
from ..clips import ClipOutputs, hop_samples
from ..files import check_outputs, write_text_atomic
from ..inference import AGGREGATIONS, aggregate, check_aggregation, classify_files, load_model, model_files, refuse_tagger, track_outputs
from ..novelty import NOVELTY_THRESHOLD, auroc
from ..torch_engine import GenreModel
from .cache import Track, load_wave, to_float
from .datasets import SPLITS, load_datasets, pair_split_files, tracks_in_split, warn_absent

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
) -> tuple[list[tuple[int, ClipOutputs]], list[tuple[str, str]]]:
    """(true label index, clip outputs) of each track whose genre the model knows, and (path, error) of those that fail."""
    scored: list[tuple[int, ClipOutputs]] = []
    failed: list[tuple[str, str]] = []
    for track in tracks:
        if track.label not in model.labels:
            continue  # a genre the model was not trained on cannot be scored
        try:
            wave = to_float(load_wave(track))
        except MgcError as error:
            failed.append((track.path, str(error)))
            continue
        scored.append((model.labels.index(track.label), track_outputs(model, [wave], hop, batch_size)))
    return scored, failed


def logits_of(scored: list[tuple[int, ClipOutputs]]) -> list[tuple[int, np.ndarray]]:
    """`run_tracks`' tracks as `score_tracks` takes them: (true label index, clip logits)."""
    return [(target, outputs.logits) for target, outputs in scored]


def novelty_report(model: GenreModel, scored: list[tuple[int, ClipOutputs]], outside: np.ndarray | None) -> dict:
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
    files = find_audio(paths)
    if not files:
        raise MgcError("no audio files found in " + ", ".join(map(str, paths)))
    novelty = []
    for result in classify_files(model, files, hop_seconds):
        if result.error:
            notify(f"skipped: {result.error}")
        else:
            novelty.append(result.novelty)
    if not novelty:
        raise MgcError(f"--outside: none of its {len(files)} files could be scored, so there is no AUROC to measure")
    return np.array(novelty)


def warn_unknown_labels(tracks: list[Track], labels: list[str], notify: Callable[[str], None]) -> None:
    """Say how many tracks have a genre the model does not know, and which genres: they cannot be
    scored, and the scores would otherwise rest on fewer tracks without a word. None known is refused."""
    unknown = Counter(t.label for t in tracks if t.label not in labels)
    if not unknown:
        return
    n = sum(unknown.values())
    if n == len(tracks):
        raise MgcError(f"none of the {n} tracks has a genre the model knows ({', '.join(labels)}); nothing to score")
    named = ", ".join(f"{label} {count}" for label, count in sorted(unknown.items()))
    notify(f"warning: {n} of {len(tracks)} tracks have a genre the model does not know, left out of the scores: {named}")


def score_tracks(
    scored: list[tuple[int, np.ndarray]], labels: list[str], aggregation: str = "mean_prob", temperature: float = 1.0
) -> dict:
    """Scores of tracks given as (true label index, clip logits [n_clips, n_labels]).

    Returns {"clip": report, "track": report for `aggregation`, "track_accuracy": {aggregation: acc},
    "loss": mean clip cross-entropy, "calibration": calibration.calibration_report of the tracks'
    `aggregation` probabilities under `temperature`, with "clip_ece", the clips' own softmax's,
    "aggregate"}. Calibration never moves a track's argmax, so no accuracy depends on the temperature.
    """
    clip_true: list[int] = []
    clip_pred: list[int] = []
    track_true: list[int] = []
    track_pred: dict[str, list[int]] = {m: [] for m in AGGREGATIONS}
    track_probabilities = []  # of `aggregation`, uncalibrated
    clip_probabilities = []
    losses = []
    for target, logits in scored:
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        losses.append(-log_probs[:, target].mean())
        clip_probabilities.append(np.exp(log_probs))
        clip_true += [target] * len(logits)
        clip_pred += logits.argmax(axis=1).tolist()
        track_true.append(target)
        for m in AGGREGATIONS:
            track_pred[m].append(int(aggregate(logits, m).argmax()))
        track_probabilities.append(aggregate(logits, aggregation))
    calibration = calibration_report(np.array(track_probabilities), np.array(track_true, dtype=int), temperature)
    if scored:
        calibration["clip_ece"] = expected_calibration_error(np.concatenate(clip_probabilities), np.array(clip_true))
    return {
        "clip": classification_report(clip_true, clip_pred, labels),
        "track": classification_report(track_true, track_pred[aggregation], labels),
        "track_accuracy": {
            m: float(np.mean(np.equal(track_true, p))) if track_true else 0.0 for m, p in track_pred.items()
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
