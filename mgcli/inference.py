"""Inference: a loaded model, and audio → clip logits → one probability per genre per track.

`track_logits` and `aggregate` are the one way every command (train's validation, evaluate,
predict, explain) turns audio into a decision; `classify_files` batches clips across files.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import MgcError
from .audio import DEFAULT_HOP_SECONDS, AudioError, DecodeNotes, stream
from .checkpoint import default_weights, load_checkpoint, network_from_checkpoint
from .clips import hop_samples, iter_spans, span_clips
from .models.base import GenreNetwork


@dataclass
class GenreModel:
    """A model ready to classify: the network, its labels and where it runs."""

    name: str
    network: GenreNetwork
    labels: list[str]
    device: torch.device
    fast_path: bool = True  # use the network's exact span_logits where it has one; False: clip by clip

    @property
    def clip_samples(self) -> int:
        return self.network.config.clip_samples

    @property
    def batch_size(self) -> int:
        """Clips per forward pass when the caller names none.

        4 on the CPU: a few clips' activations stay in the per-core cache, where 16 clips' do
        not (BBNN: a 4-min track in 1.2 s instead of 1.8; the sinc fast path is as fast with
        4-clip spans as with 16; see docs/performance.md). 16 on CUDA, which wants big batches.
        """
        return 16 if self.device.type == "cuda" else 4


def pick_device(device: str = "auto") -> torch.device:
    """"auto" is CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise MgcError(f"unknown device {device!r} (use auto, cpu or cuda)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MgcError("CUDA was asked for but no CUDA device is available (use --device cpu)")
    return torch.device(device)


def place(network: GenreNetwork, device: torch.device) -> GenreNetwork:
    """Move a network to `device`, its 2D convolution weights in channels-last layout.

    oneDNN runs NHWC convolutions about twice as fast as NCHW on these CPUs (BBNN: 1.9x per
    training step, 2x in inference), and CUDA's tensor cores prefer NHWC too. Networks
    without 2D convolutions are unaffected; the outputs agree to float rounding (2e-6).
    A network whose 2D convolutions have one input channel (musicnn's front end) says
    `channels_last = False`: oneDNN ran those 1.8x slower in NHWC.
    """
    layout = torch.channels_last if network.channels_last else torch.contiguous_format
    return network.to(device, memory_format=layout)


def model_from_checkpoint(checkpoint: dict, device: torch.device, source: str = "checkpoint") -> GenreModel:
    """The classifier a checkpoint holds, on `device` and in eval mode."""
    network = network_from_checkpoint(checkpoint, source)
    place(network, device).eval()
    return GenreModel(checkpoint["model"], network, list(checkpoint["labels"]), device)


def load_model(weights: str | Path | None = None, device: str = "auto") -> GenreModel:
    """Load a trained classifier from a checkpoint file (default: the shipped weights).

    On the CPU it also sets torch's thread count to the cores that other processes left idle
    while it loaded (see `idle_cores`), unless OMP_NUM_THREADS says otherwise.
    """
    before = cpu_sample()
    path = Path(weights) if weights else default_weights()
    model = model_from_checkpoint(load_checkpoint(path), pick_device(device), str(path))
    if model.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(idle_cores(before))
    return model


def cpu_sample() -> tuple[float, float, float] | None:
    """(busy seconds of all cores, this process's CPU seconds, wall seconds) now; None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle + iowait
    times = os.times()
    return (sum(ticks[:8]) - idle) / tick, times.user + times.system, time.monotonic()


def idle_cores(since: tuple[float, float, float] | None) -> int:
    """How many of this machine's cores other processes left idle since `since` (at least 1).

    Why: two intra-op threads on two cores, one of them busy with another program (a browser,
    a music player), wait on each other at every operation: a model went from 26 ms to
    90-225 ms per clip there (bbnn, measured for issue 16), while one thread took 45 ms. So mgcli uses the cores it finds
    free. Its own CPU time in the window is not counted as busy.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    now = cpu_sample()
    if since is None or now is None or now[2] - since[2] < 0.02:
        return cores
    others_busy = max(0.0, (now[0] - since[0]) - (now[1] - since[1])) / (now[2] - since[2])
    return max(1, min(cores, round(cores - others_busy)))


AGGREGATIONS = ("mean_prob", "vote", "mean_logit")


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


def _has_fast_path(model: GenreModel) -> bool:
    return model.fast_path and model.network.has_fast_path


@contextlib.contextmanager
def _inference(model: GenreModel) -> Iterator[None]:
    with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=model.device.type == "cuda"):
        yield


def aggregate(logits: np.ndarray, aggregation: str = "mean_prob") -> np.ndarray:
    """A track's genre probabilities from its clips' logits.

    mean_prob   mean of the clips' softmax probabilities
    mean_logit  softmax of the mean logit
    vote        share of clips voting for each genre (the paper's majority vote); the
                mean probabilities count as one more, fractional voter to break ties
    """
    check_aggregation(aggregation)
    probs = softmax(logits)
    if aggregation == "mean_prob":
        return probs.mean(axis=0)
    if aggregation == "mean_logit":
        return softmax(logits.mean(axis=0, keepdims=True))[0]
    votes = np.bincount(logits.argmax(axis=1), minlength=logits.shape[1]).astype(np.float64)
    return (votes + probs.mean(axis=0)) / (len(logits) + 1)


def check_aggregation(aggregation: str) -> None:
    """Refuse an unknown aggregation now, before a model is loaded or any audio decoded."""
    if aggregation not in AGGREGATIONS:
        raise MgcError(f"unknown aggregation {aggregation!r} (use {', '.join(AGGREGATIONS)})")


def softmax(logits: np.ndarray) -> np.ndarray:
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
    aggregation: str = "mean_prob",
    batch_size: int | None = None,
) -> TrackResult:
    """Genre probabilities of one audio file; decoding streams, so long files stay in bounded memory.

    It runs `classify_files`, whose decoding thread overlaps decoding with the model (a 4-min
    MP3 took 2.7 s instead of 3.5 with musicnn on 2 cores); a file that fails raises AudioError.
    """
    results = classify_files(model, [path], hop_seconds, aggregation, batch_size)
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
    aggregation: str = "mean_prob",
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
    logits: dict[int, list[np.ndarray]] = {}  # file index -> its clips' logits so far
    errors: dict[int, str] = {}
    warnings: dict[int, str] = {}
    batches = ClipBatches(batch_size)
    ended = next_result = 0  # files decoded to the end; files yielded

    def run(owners: list[int], compute: Callable[[], np.ndarray]) -> None:
        """Compute one batch's logits and file them under their files; a failure fails those files."""
        try:
            rows = compute()
        except (RuntimeError, MemoryError) as failure:  # e.g. out of memory: those files fail, the rest go on
            for index in set(owners):
                errors[index] = f"{paths[index]}: {type(failure).__name__}: {failure}"
            return
        for index, row in zip(owners, rows):
            logits.setdefault(index, []).append(row)

    with _decoded_ahead(paths, model.clip_samples, hop, batch_size) as decoded:
        for index, span, n_clips, ending in decoded:
            if span is not None and _has_fast_path(model):
                run([index] * n_clips, lambda: span_logits(model, span, hop, n_clips))
            elif span is not None:
                batches.add(index, span_clips(span, model.clip_samples, hop, n_clips))
            if ending is not None:
                ended = index + 1
                error, warnings[index] = ending
                if error:
                    errors[index] = error
            for owners, clips in batches.ready(final=ended == len(paths)):
                run(owners, lambda: clip_logits(model, clips))
            while next_result < ended and not batches.holds(next_result):
                yield _result(
                    paths[next_result], logits.pop(next_result, []), errors.pop(next_result, ""),
                    warnings.pop(next_result), aggregation,
                )
                next_result += 1


class ClipBatches:
    """Clips of consecutive files gathered into batches of `size`, each clip remembering its file."""

    def __init__(self, size: int):
        self.size = size
        self.owners: list[int] = []  # the file index of each waiting clip
        self.clips: list[np.ndarray] = []

    def add(self, owner: int, clips: np.ndarray) -> None:
        self.owners += [owner] * len(clips)
        self.clips += list(clips)

    def holds(self, owner: int) -> bool:
        """Whether clips of file `owner` still wait for a batch."""
        return owner in self.owners

    def ready(self, final: bool = False) -> Iterator[tuple[list[int], np.ndarray]]:
        """(owners, clips [n, clip_samples]) of every full batch; with `final`, of the last short one too."""
        while len(self.clips) >= self.size or (final and self.clips):
            owners, self.owners = self.owners[: self.size], self.owners[self.size :]
            clips, self.clips = self.clips[: self.size], self.clips[self.size :]
            yield owners, np.stack(clips)


@contextlib.contextmanager
def _decoded_ahead(
    paths: list[str], clip_samples: int, hop: int, max_clips: int
) -> Iterator[Iterator[tuple[int, np.ndarray | None, int, tuple[str, str] | None]]]:
    """The files' spans (clips.iter_spans), decoded by a thread ahead of their use.

    Yields (file index, span, n_clips, None) per span and (file index, None, 0, (error, warning))
    when a file ends, and stops after the last file. Leaving the context stops the thread.
    """
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
            if stop.is_set():
                return
            error = ""
            notes = DecodeNotes()
            try:
                for span, n in iter_spans(stream(path, notes=notes), clip_samples, hop, max_clips):
                    put((index, span, n, None))
                    if stop.is_set():
                        return
            except MgcError as failure:
                error = str(failure)
            except Exception as failure:  # reported per file: one bad file must not stop a folder
                error = f"{path}: {type(failure).__name__}: {failure}"
            put((index, None, 0, (error, notes.warning(path))))
        put(None)

    decoder = threading.Thread(target=decode, daemon=True)
    decoder.start()
    try:
        yield iter(spans.get, None)
    finally:
        stop.set()
        decoder.join(timeout=10)  # it stops after its span: the process should not end while it is inside a decoder


def _result(path: str, rows: list[np.ndarray], error: str, warning: str, aggregation: str) -> TrackResult:
    if error:
        return TrackResult(path, error=error)
    logits = np.stack(rows)
    if not np.isfinite(logits).all():  # no answer, and a NaN would make the JSON invalid
        return TrackResult(path, error=f"{path}: the model's outputs for this audio are not finite numbers")
    return TrackResult(path, aggregate(logits, aggregation), logits, warning=warning)


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities)[:k]
    return [(labels[i], float(probabilities[i])) for i in order]


def timeline(clip_logits: np.ndarray, labels: list[str], hop_seconds: float, clip_seconds: float) -> list[dict]:
    """One record per clip, in track order: its window in seconds, its top genre and every genre's probability.

    Clip i covers [i * hop, i * hop + clip] seconds; the last clip may reach past the end of the
    track (it is zero-padded, see audio.iter_spans). With overlapping clips the windows overlap.
    """
    records = []
    for i, probabilities in enumerate(softmax(clip_logits)):
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
