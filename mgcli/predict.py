"""Inference: clips → clip logits → one probability per genre per track → writers.

`clip_logits` and `aggregate` are the one way every command (train's validation,
evaluate, predict) turns audio into a decision.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import MgcError
from .audio import DEFAULT_HOP_SECONDS, MIN_HOP_SECONDS, SAMPLE_RATE, AudioError, DecodeNotes, iter_spans, stream
from .checkpoint import WEIGHTS_DIR, GenreModel, load_model
from .data import write_text_atomic

AGGREGATIONS = ("mean_prob", "vote", "mean_logit")


def hop_samples(hop_seconds: float) -> int:
    """Seconds between clip starts as 16 kHz samples; a hop that is not finite or under MIN_HOP_SECONDS is refused."""
    if not (math.isfinite(hop_seconds) and hop_seconds >= MIN_HOP_SECONDS):
        raise MgcError(f"hop must be a finite number of seconds, at least {MIN_HOP_SECONDS}; got {hop_seconds}")
    return round(hop_seconds * SAMPLE_RATE)


def clip_logits(model: GenreModel, clips: np.ndarray) -> np.ndarray:
    """Logits [n_clips, n_labels] of a batch of clips [n_clips, clip_samples] (mixed precision on CUDA)."""
    with _inference(model):
        return model.network(torch.tensor(clips, device=model.device)).float().cpu().numpy()


def span_logits(model: GenreModel, span: np.ndarray, hop: int, n_clips: int) -> np.ndarray:
    """Logits [n_clips, n_labels] of the clips span[i * hop : i * hop + clip_samples] (audio.iter_spans).

    A network with an exact fast path (`span_logits`, e.g. SincResNet) reads the span whole;
    any other reads the clips as one batch.
    """
    if not _has_fast_path(model):
        return clip_logits(model, span_clips(span, model.clip_samples, hop, n_clips))
    with _inference(model):
        return model.network.span_logits(torch.from_numpy(span).to(model.device), hop, n_clips).float().cpu().numpy()


def track_logits(
    model: GenreModel, blocks: Iterable[np.ndarray], hop: int, batch_size: int | None = None
) -> np.ndarray:
    """Logits [n_clips, n_labels] of every clip of a track given as consecutive 16 kHz blocks.

    `batch_size` clips per forward pass; None: the model's choice (GenreModel.batch_size).
    """
    batch_size = batch_size or model.batch_size
    logits = [span_logits(model, span, hop, n) for span, n in iter_spans(blocks, model.clip_samples, hop, batch_size)]
    return np.concatenate(logits)


def span_clips(span: np.ndarray, length: int, hop: int, n_clips: int) -> np.ndarray:
    """The clips of a span (audio.iter_spans) as a [n_clips, length] view."""
    return np.lib.stride_tricks.sliding_window_view(span, length)[::hop][:n_clips]


def _has_fast_path(model: GenreModel) -> bool:
    return model.fast_path and getattr(model.network, "has_fast_path", False)


@contextlib.contextmanager
def _inference(model: GenreModel) -> Iterator[None]:
    with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=model.device.type == "cuda"):
        yield


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
    clip_logits: np.ndarray | None = None  # [n_clips, n_labels] in track order: what `timeline` reads
    error: str = ""
    warning: str = ""  # tagged, but the user should know (silence, a truncated file): audio.DecodeNotes

    @property
    def clips(self) -> int:
        return 0 if self.clip_logits is None else len(self.clip_logits)


def classify(
    model: GenreModel,
    path: str | Path,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    method: str = "mean_prob",
    batch_size: int | None = None,
) -> TrackResult:
    """Genre probabilities of one audio file; decoding streams, so long files stay in bounded memory.

    It runs `classify_files`, whose decoding thread overlaps decoding with the model (a 4-min
    MP3 took 2.7 s instead of 3.5 with musicnn on 2 cores); a file that fails raises AudioError.
    """
    results = classify_files(model, [path], hop_seconds, method, batch_size)
    try:
        result = next(results)
    finally:
        results.close()  # stops the decoding thread
    if result.error:
        raise AudioError(result.error)
    return result


def classify_files(
    model: GenreModel,
    paths: Iterable[str | Path],
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    method: str = "mean_prob",
    batch_size: int | None = None,
) -> Iterator[TrackResult]:
    """Classify files, yielding results in order; a file that fails gives a result carrying its error.

    A decoding thread keeps the next files' clips coming while the model runs (soundfile and
    the resampler release the GIL), and consecutive files share batches, so a folder of short
    tracks still runs full batches. Models with a fast path read each span whole instead.
    """
    paths = [str(path) for path in paths]
    hop = hop_samples(hop_seconds)
    batch_size = batch_size or model.batch_size
    spans: queue.Queue = queue.Queue(maxsize=8)  # bounds the audio decoded ahead
    stop = threading.Event()

    def put(item: tuple) -> None:
        while not stop.is_set():
            try:
                return spans.put(item, timeout=0.1)
            except queue.Full:
                continue

    def decode() -> None:
        for index, path in enumerate(paths):
            error = ""
            notes = DecodeNotes()
            try:
                for span, n in iter_spans(stream(path, notes=notes), model.clip_samples, hop, batch_size):
                    put((index, span, n))
            except MgcError as failure:
                error = str(failure)
            except Exception as failure:  # reported per file: one bad file must not stop a folder
                error = f"{path}: {type(failure).__name__}: {failure}"
            put((index, None, (error, notes.warning(path))))
        put((None, None, ""))

    rows: dict[int, list[np.ndarray]] = {}  # file index -> its clips' logits so far
    errors: dict[int, str] = {}
    warnings: dict[int, str] = {}
    ended: set[int] = set()
    pending: list[tuple[int, np.ndarray]] = []  # (file index, clip) waiting for a full batch

    def run(owners: list[int], compute) -> None:
        try:
            logits = compute()
        except (RuntimeError, MemoryError) as failure:
            for index in set(owners):
                errors[index] = f"{paths[index]}: {type(failure).__name__}: {failure}"
            return
        for index, row in zip(owners, logits):
            rows.setdefault(index, []).append(row)

    def run_pending(count: int) -> None:
        nonlocal pending
        batch, pending = pending[:count], pending[count:]
        run([index for index, _ in batch], lambda: clip_logits(model, np.stack([clip for _, clip in batch])))

    worker = threading.Thread(target=decode, daemon=True)
    worker.start()
    next_result = 0
    try:
        while next_result < len(paths):
            index, span, detail = spans.get()
            if span is not None and _has_fast_path(model):
                run([index] * detail, lambda: span_logits(model, span, hop, detail))
            elif span is not None:
                pending += [(index, clip) for clip in span_clips(span, model.clip_samples, hop, detail)]
                while len(pending) >= batch_size:
                    run_pending(batch_size)
            elif index is not None:
                ended.add(index)
                error, warnings[index] = detail
                if error:
                    errors[index] = error
            else:  # everything is decoded
                while pending:
                    run_pending(batch_size)
            while next_result in ended and all(owner != next_result for owner, _ in pending):
                yield _result(
                    paths[next_result], rows.pop(next_result, []), errors.pop(next_result, ""),
                    warnings.pop(next_result), method,
                )
                next_result += 1
    finally:
        stop.set()


def _result(path: str, rows: list[np.ndarray], error: str, warning: str, method: str) -> TrackResult:
    if error:
        return TrackResult(path, error=error)
    logits = np.stack(rows)
    return TrackResult(path, aggregate(logits, method), logits, warning=warning)


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities)[:k]
    return [(labels[i], float(probabilities[i])) for i in order]


def timeline(clip_logits: np.ndarray, labels: list[str], hop_seconds: float, clip_seconds: float) -> list[dict]:
    """One record per clip, in track order: its window in seconds, its top genre and every genre's probability.

    Clip i covers [i * hop, i * hop + clip] seconds; the last clip may reach past the end of the
    track (it is zero-padded, see audio.iter_spans). With overlapping clips the windows overlap.
    """
    records = []
    for i, probabilities in enumerate(_softmax(clip_logits)):
        best = int(np.argmax(probabilities))
        start = i * hop_seconds
        records.append({
            "start": round(start, 3),
            "end": round(start + clip_seconds, 3),
            "genre": labels[best],
            "probability": round(float(probabilities[best]), 4),
            "probabilities": {label: round(float(p), 4) for label, p in zip(labels, probabilities)},
        })
    return records


# ---------------------------------------------------------------- tags

DEFAULT_TAGGER = WEIGHTS_DIR / "musicnn-msd.pt"  # musicnn's Million Song Dataset tagger; musicnn-mtt.pt: MagnaTagATune's
TAGGERS = ("musicnn", "musicnn-vgg")  # the models whose tag layer gives one independent logit per tag


def load_tagger(weights: str | Path | None = None, device: str = "auto") -> GenreModel:
    """A tagger from its checkpoint (default: DEFAULT_TAGGER); a genre classifier is refused,
    since a sigmoid of its logits would look like tags and mean nothing."""
    path = weights or DEFAULT_TAGGER
    model = load_model(path, device)
    # musicnn-vgg has no head setting: its only output is the tag layer.
    if model.name not in TAGGERS or getattr(model.network.config, "head", "tags") != "tags":
        raise MgcError(f"{path}: a {model.name} genre classifier, not a tagger (use {DEFAULT_TAGGER.name} or musicnn-mtt.pt)")
    return model


def tag_probabilities(clip_logits: np.ndarray) -> np.ndarray:
    """A track's tag probabilities as musicnn gives them: each clip's sigmoid, averaged over the clips.

    Tags are not exclusive (a track is rock, guitar and male vocals at once), hence no softmax.
    """
    return (0.5 * (1.0 + np.tanh(0.5 * clip_logits))).mean(axis=0)  # the sigmoid, without exp's overflow


def tag_files(
    model: GenreModel,
    paths: Iterable[str | Path],
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    batch_size: int | None = None,
) -> Iterator[TrackResult]:
    """`classify_files` for a tagger: each result's probabilities are its `tag_probabilities`."""
    for result in classify_files(model, paths, hop_seconds, "mean_prob", batch_size):
        yield result if result.error else replace(result, probabilities=tag_probabilities(result.clip_logits))


def tag(
    model: GenreModel, path: str | Path, hop_seconds: float = DEFAULT_HOP_SECONDS, batch_size: int | None = None
) -> dict[str, float]:
    """Every tag of one audio file with its probability, most probable first."""
    [result] = tag_files(model, [path], hop_seconds, batch_size)
    if result.error:
        raise MgcError(result.error)
    return dict(top_k(result.probabilities, model.labels, len(model.labels)))


# ---------------------------------------------------------------- writers


class CsvWriter:
    """Rows `path,genre,probability,<one column per label>,error,warning`, flushed as they are written
    (`top` names the second column: "tag" for `mgc tags`).

    `resume=True` keeps the good rows of an earlier, interrupted run (dropping failed rows
    and a torn last line) so those files are skipped; otherwise an existing file is only
    replaced when `overwrite=True`, so no earlier results are lost by accident.
    """

    def __init__(
        self, path: str | Path, labels: list[str], resume: bool = False, overwrite: bool = False, top: str = "genre"
    ):
        self.path = Path(path)
        self.labels = labels
        self.header = ["path", top, "probability", *labels, "error", "warning"]
        self.done: set[str] = set()  # the kept rows' files, as real paths: see is_done
        kept: list[list[str]] = []
        if self.path.exists():
            if resume:
                kept = self._good_rows()
                self.done = {os.path.realpath(row[0]) for row in kept}
            elif not overwrite:
                raise MgcError(f"{self.path} exists: pass --skip-existing to resume it or --overwrite to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([self.header, *kept])
        os.replace(tmp, self.path)
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)

    def is_done(self, path: str | Path) -> bool:
        """Whether a kept row tagged this file, however either path is spelt (relative, absolute, via links)."""
        return os.path.realpath(path) in self.done

    def _good_rows(self) -> list[list[str]]:
        """The finished rows, widened to the current header if the file predates the warning column."""
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0] not in (self.header, self.header[:-1]):
            raise MgcError(f"{self.path}: written for other labels or by another tool; cannot resume it")
        width, error = len(rows[0]), self.header.index("error")
        good = [row for row in rows[1:] if len(row) == width and not row[error] and row[2]]
        return [row + [""] * (len(self.header) - width) for row in good]

    def write(self, result: TrackResult) -> None:
        if result.probabilities is None:
            row = [result.path, "", "", *[""] * len(self.labels), result.error, ""]
        else:
            best = int(np.argmax(result.probabilities))
            probs = [f"{p:.4f}" for p in result.probabilities]
            row = [result.path, self.labels[best], probs[best], *probs, "", result.warning]
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TimelineCsvWriter:
    """Rows `path,start,end,genre,probability,<one column per label>`: one per clip of every tagged file.

    The records of `timeline`; files that failed get no rows. Like CsvWriter it never replaces an
    existing file unless `overwrite=True`; it cannot resume one.
    """

    def __init__(self, path: str | Path, labels: list[str], overwrite: bool = False):
        self.path = Path(path)
        self.labels = labels
        if self.path.exists() and not overwrite:
            raise MgcError(f"{self.path} exists: pass --overwrite to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(["path", "start", "end", "genre", "probability", *labels])

    def write(self, path: str, segments: list[dict]) -> None:
        for s in segments:
            probs = [f"{s['probabilities'][label]:.4f}" for label in self.labels]
            window = [f"{s['start']:.3f}", f"{s['end']:.3f}"]
            self.writer.writerow([path, *window, s["genre"], f"{s['probability']:.4f}", *probs])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def result_dict(result: TrackResult, labels: list[str], k: int, segments: list[dict] | None = None) -> dict:
    """A result as JSON; `segments` (from `timeline`) go under "timeline" when given."""
    if result.probabilities is None:
        return {"path": result.path, "error": result.error}
    best = top_k(result.probabilities, labels, k)
    record = {
        "path": result.path,
        "genre": best[0][0],
        "probability": round(best[0][1], 4),
        "top_k": [{"genre": g, "probability": round(p, 4)} for g, p in best],
        "probabilities": {label: round(float(p), 4) for label, p in zip(labels, result.probabilities)},
        "clips": result.clips,
    }
    if result.warning:
        record["warning"] = result.warning
    if segments is not None:
        record["timeline"] = segments
    return record


def tags_dict(result: TrackResult, labels: list[str]) -> dict:
    """A `tag_files` result as JSON: every tag's probability, most probable first."""
    if result.probabilities is None:
        return {"path": result.path, "error": result.error}
    tags = {label: round(p, 4) for label, p in top_k(result.probabilities, labels, len(labels))}
    record = {"path": result.path, "tags": tags, "clips": result.clips}
    if result.warning:
        record["warning"] = result.warning
    return record


def write_json(path: str | Path, records: list[dict]) -> None:
    """The `result_dict` records of a run, written atomically."""
    write_text_atomic(path, json.dumps(records, indent=2) + "\n")
