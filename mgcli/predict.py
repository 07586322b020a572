"""Inference: clips → clip logits → one probability per genre per track → writers.

`clip_logits` and `aggregate` are the one way every command (train's validation,
evaluate, predict) turns audio into a decision.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import MgcError
from .audio import DEFAULT_HOP_SECONDS, SAMPLE_RATE, stream_clips
from .checkpoint import GenreModel
from .data import write_text_atomic

AGGREGATIONS = ("mean_prob", "vote", "mean_logit")
DEFAULT_BATCH_SIZE = 16  # clips per forward pass


def hop_samples(hop_seconds: float) -> int:
    if not hop_seconds > 0:
        raise MgcError(f"--hop must be positive seconds, got {hop_seconds}")
    return max(1, round(hop_seconds * SAMPLE_RATE))


def clip_logits(
    model: GenreModel, clips: Iterable[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Logits [n_clips, n_labels] for clips fed in batches (mixed precision on CUDA)."""
    outputs = []
    batch: list[np.ndarray] = []

    def run() -> None:
        x = torch.from_numpy(np.stack(batch)).to(model.device)
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=model.device.type == "cuda"):
            outputs.append(model.network(x).float().cpu().numpy())
        batch.clear()

    for clip in clips:
        batch.append(clip)
        if len(batch) == batch_size:
            run()
    if batch:
        run()
    if not outputs:
        raise MgcError("no clips to classify")
    return np.concatenate(outputs)


def aggregate(logits: np.ndarray, method: str = "mean_prob") -> np.ndarray:
    """A track's genre probabilities from its clips' logits.

    mean_prob   mean of the clips' softmax probabilities
    mean_logit  softmax of the mean logit
    vote        share of clips voting for each genre (the paper's majority vote); the
                mean probabilities count as one more, fractional voter to break ties
    """
    probs = _softmax(logits)
    if method == "mean_prob":
        return probs.mean(axis=0)
    if method == "mean_logit":
        return _softmax(logits.mean(axis=0, keepdims=True))[0]
    if method == "vote":
        votes = np.bincount(logits.argmax(axis=1), minlength=logits.shape[1]).astype(np.float64)
        return (votes + probs.mean(axis=0)) / (len(logits) + 1)
    raise MgcError(f"unknown aggregation {method!r} (use {', '.join(AGGREGATIONS)})")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass
class TrackResult:
    path: str
    probabilities: np.ndarray | None = None  # None when the file failed
    clips: int = 0
    error: str = ""


def classify(
    model: GenreModel,
    path: str | Path,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    method: str = "mean_prob",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> TrackResult:
    """Genre probabilities of one audio file; decoding streams, so long files stay in bounded memory."""
    clips = stream_clips(path, model.clip_samples, hop_samples(hop_seconds))
    logits = clip_logits(model, clips, batch_size)
    return TrackResult(str(path), aggregate(logits, method), len(logits))


def classify_files(
    model: GenreModel,
    paths: Iterable[str | Path],
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    method: str = "mean_prob",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[TrackResult]:
    """Classify files one by one; a file that fails gives a result carrying its error."""
    for path in paths:
        try:
            yield classify(model, path, hop_seconds, method, batch_size)
        except MgcError as error:
            yield TrackResult(str(path), error=str(error))
        except (RuntimeError, MemoryError, OSError) as error:
            yield TrackResult(str(path), error=f"{path}: {type(error).__name__}: {error}")


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities)[:k]
    return [(labels[i], float(probabilities[i])) for i in order]


# ---------------------------------------------------------------- writers


class CsvWriter:
    """Rows `path,genre,probability,<one column per label>,error`, flushed as they are written.

    `resume=True` keeps the good rows of an earlier, interrupted run (dropping failed rows
    and a torn last line) so those files are skipped; otherwise an existing file is only
    replaced when `overwrite=True`, so no earlier results are lost by accident.
    """

    def __init__(self, path: str | Path, labels: list[str], resume: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.labels = labels
        self.header = ["path", "genre", "probability", *labels, "error"]
        self.done: set[str] = set()
        kept: list[list[str]] = []
        if self.path.exists():
            if resume:
                kept = self._good_rows()
                self.done = {row[0] for row in kept}
            elif not overwrite:
                raise MgcError(f"{self.path} exists: pass --skip-existing to resume it or --overwrite to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([self.header, *kept])
        os.replace(tmp, self.path)
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)

    def _good_rows(self) -> list[list[str]]:
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0] != self.header:
            raise MgcError(f"{self.path}: written for other labels or by another tool; cannot resume it")
        width = len(self.header)
        return [row for row in rows[1:] if len(row) == width and not row[-1] and row[2]]

    def write(self, result: TrackResult) -> None:
        if result.probabilities is None:
            row = [result.path, "", "", *[""] * len(self.labels), result.error]
        else:
            best = int(np.argmax(result.probabilities))
            probs = [f"{p:.4f}" for p in result.probabilities]
            row = [result.path, self.labels[best], probs[best], *probs, ""]
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def result_dict(result: TrackResult, labels: list[str], k: int) -> dict:
    if result.probabilities is None:
        return {"path": result.path, "error": result.error}
    best = top_k(result.probabilities, labels, k)
    return {
        "path": result.path,
        "genre": best[0][0],
        "probability": round(best[0][1], 4),
        "top_k": [{"genre": g, "probability": round(p, 4)} for g, p in best],
        "probabilities": {label: round(float(p), 4) for label, p in zip(labels, result.probabilities)},
        "clips": result.clips,
    }


def write_json(path: str | Path, results: list[TrackResult], labels: list[str], k: int) -> None:
    write_text_atomic(path, json.dumps([result_dict(r, labels, k) for r in results], indent=2) + "\n")
