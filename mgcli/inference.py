"""Inference: a loaded model, and audio → clip logits → one probability per genre per track.

`track_outputs` and `aggregate` are the one way every command (train's validation, evaluate,
predict, explain) turns audio into a decision; `classify_files` batches clips across files.
The clip logits come from an engine (see `Model`): PyTorch (torch_engine) or onnxruntime
(onnx_engine). Everything else here, decoding, clip cutting, batching and aggregation, is the
engines' shared path, and imports no torch: `mgc predict` on the CPU never loads it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from . import MgcError
from .audio import DEFAULT_HOP_SECONDS, SAMPLE_RATE, AudioError, DecodeNotes, read_clips, stream
from .calibration import calibrate
from .clips import ClipOutputs, clip_count, hop_samples, iter_clips, iter_spans, span_clips, spread_clips
from .novelty import NoveltyScale
from .shipped import default_weights

ENGINES = ("auto", "onnx", "torch")


class Model(Protocol):
    """What inference asks of a loaded model, whichever engine runs it."""

    name: str  # the model's registry name, e.g. "musicnn"
    labels: list[str]  # in logit order
    engine: str  # "torch" or "onnx"
    temperatures: dict[str, float]  # per aggregation, what calibrates its track probabilities (calibration.py)
    novelty: NoveltyScale | None  # how a track's novelty is read from its tag logits; None: the model gives none

    @property
    def clip_samples(self) -> int: ...

    @property
    def batch_size(self) -> int:
        """Clips per forward pass when the caller names none."""

    @property
    def is_tagger(self) -> bool:
        """Whether the logits are independent tags (a sigmoid each) rather than exclusive genres."""

    @property
    def reads_spans(self) -> bool:
        """Whether `span_outputs` reads a span of overlapping clips whole (an exact fast path)."""

    @property
    def decoders(self) -> int:
        """Threads that decode files ahead of the model when each track is read in a few clips: enough to keep it fed."""

    def clip_outputs(self, clips: np.ndarray) -> ClipOutputs:
        """The outputs of a batch of clips [n_clips, clip_samples]."""

    def span_outputs(self, span: np.ndarray, hop: int, n_clips: int) -> ClipOutputs:
        """The outputs of the clips span[i * hop : i * hop + clip_samples] (clips.iter_spans)."""


def load_model(weights: str | Path | None = None, device: str = "auto", engine: str = "auto") -> Model:
    """Load a trained classifier (default: the shipped weights) into the engine that suits it.

    `weights` is a checkpoint (.pt) or an ONNX file exported from one. "auto" runs onnxruntime
    on the CPU when the checkpoint has an up-to-date ONNX twin beside it (X.onnx beside X.pt,
    see onnx_engine.load_twin), and PyTorch otherwise and on CUDA; "onnx" insists on onnxruntime
    and "torch" on PyTorch. Either engine runs on the cores that other processes left idle
    while it loaded (see cores.idle_cores), unless OMP_NUM_THREADS says otherwise.
    """
    if engine not in ENGINES:
        raise MgcError(f"unknown engine {engine!r} (use {', '.join(ENGINES)})")
    path = Path(weights) if weights else default_weights()
    if path.suffix == ".onnx" or engine == "onnx":
        if engine == "torch":
            raise MgcError(f"{path}: an ONNX file, and this needs the PyTorch network: give its .pt checkpoint")
        if device not in ("auto", "cpu"):
            raise MgcError(f"the ONNX engine runs on the CPU; --device {device} needs --engine torch and a .pt checkpoint")
    if path.suffix == ".onnx":
        from .onnx_engine import load_onnx_model

        return load_onnx_model(path)
    if engine == "onnx" or (engine == "auto" and _cpu_only(device)):
        from .onnx_engine import load_twin

        model, why_not = load_twin(path)
        if model is not None:
            return model
        if engine == "onnx":
            raise MgcError(why_not)
    from .torch_engine import load_torch_model

    return load_torch_model(path, device)


def refuse_tagger(model: Model, source: str | Path | None) -> None:
    """Refuse a tagger where a genre classifier is needed: a sigmoid per tag is no genre probability."""
    if model.is_tagger:
        raise MgcError(f"{source}: a tagger ({len(model.labels)} tags), not a genre classifier: use `mgc tags`")


def model_files(weights: str | Path) -> list[Path]:
    """The files a model is read from: its checkpoint or ONNX file and the ONNX twin beside it
    (X.onnx beside X.pt), which the engine may run instead (onnx_engine.load_twin). No output may be one."""
    path = Path(weights)
    return [path, path.with_suffix(".onnx")]


def _cpu_only(device: str) -> bool:
    """Whether `device` means the CPU here: "cpu", or "auto" on a machine with no visible NVIDIA GPU.

    Asked without importing torch: the NVIDIA driver lists its GPUs under /proc/driver/nvidia/gpus.
    """
    if device == "cpu":
        return True
    if device != "auto":
        return False
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1")
    gpus = Path("/proc/driver/nvidia/gpus")
    return hidden or not (gpus.is_dir() and any(gpus.iterdir()))


AGGREGATIONS = ("mean_prob", "vote", "mean_logit")


def track_outputs(model: Model, blocks: Iterable[np.ndarray], hop: int, batch_size: int | None = None) -> ClipOutputs:
    """The outputs of every clip of a track given as consecutive 16 kHz blocks, in track order.

    `batch_size` clips per forward pass; None: the model's choice (Model.batch_size).
    """
    batch_size = batch_size or model.batch_size
    spans = iter_spans(blocks, model.clip_samples, hop, batch_size)
    return ClipOutputs.concatenate([model.span_outputs(span, hop, n) for span, n in spans])


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


# How sure a clip budget's answer must be before the track's other clips are left unread (--clips
# auto): its top genre's lead over the second, averaged over the clips read, must exceed this many
# standard errors of that average. Chosen on the 60-s and 30-s tracks here (benchmarks/clip_budget.py):
# with 10 clips it agreed with every clip on all of them, reading every clip of 20% of the 60-s ones.
SETTLED_STANDARD_ERRORS = 2.0


def is_settled(
    model: Model, logits: np.ndarray, n_clips: int, aggregation: str = "mean_prob",
    standard_errors: float = SETTLED_STANDARD_ERRORS,
) -> bool:
    """Whether the clips read, a sample spread over a track of `n_clips`, already give the top genre
    (or tag) that every clip would.

    Each clip's lead of the sample's top over its second (by its probabilities, logits or vote, as
    `aggregation` weighs it; by its sigmoids for a tagger) is averaged; its standard error is the
    sample's, shrunk by the share of the track read (a sample of every clip has none). A lead
    beyond `standard_errors` of them is settled. The same lead is less sure of a longer
    track, whose unread clips are more.
    """
    if len(logits) >= n_clips:
        return True
    if len(logits) < 2:
        return False
    if model.is_tagger:
        scores = sigmoid(logits)
    elif aggregation == "vote":
        scores = np.eye(logits.shape[1])[logits.argmax(axis=1)]
    else:
        scores = softmax(logits) if aggregation == "mean_prob" else logits
    first, second = np.argsort(-scores.mean(axis=0))[:2]
    lead = scores[:, first] - scores[:, second]
    standard_error = lead.std(ddof=1) / np.sqrt(len(lead)) * np.sqrt(1 - len(lead) / n_clips)
    return lead.mean() > standard_errors * standard_error


def check_aggregation(aggregation: str) -> None:
    """Refuse an unknown aggregation now, before a model is loaded or any audio decoded."""
    if aggregation not in AGGREGATIONS:
        raise MgcError(f"unknown aggregation {aggregation!r} (use {', '.join(AGGREGATIONS)})")


# Clips per forward pass, at most: a pass holds its clips' audio and activations at once, so memory
# grows with the batch (a batch of 10^9 took 17 GB on a 30-min file, which it read as one span).
MAX_BATCH_SIZE = 256


def check_batch_size(batch_size: int | None) -> None:
    """Refuse a batch (None: the model's own) that would ask for memory without bound, before any work."""
    if batch_size is not None and not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise MgcError(f"--batch-size must be 1 to {MAX_BATCH_SIZE} clips per pass, not {batch_size:,}: memory grows with it")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """A tagger's probability per tag, without exp's overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


@dataclass
class TrackResult:
    path: str
    probabilities: np.ndarray | None = None  # aggregated and calibrated; None when the file failed
    clip_logits: np.ndarray | None = None  # [n_clips, n_labels] in track order: what `timeline` reads
    error: str = ""
    warning: str = ""  # tagged, but the user should know (silence, a truncated file): audio.DecodeNotes
    novelty: float | None = None  # 0 (typical of a known genre) to 1 (like none); None: the model gives none (novelty.py)
    clip_starts: list[float] = field(default_factory=list)  # seconds: where each clip read begins, in track order

    @property
    def clips(self) -> int:
        return 0 if self.clip_logits is None else len(self.clip_logits)


def classify(
    model: Model,
    path: str | Path,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    aggregation: str = "mean_prob",
    batch_size: int | None = None,
    clip_budget: int | None = None,
) -> TrackResult:
    """Genre probabilities of one audio file; decoding streams, so long files stay in bounded memory.

    It runs `classify_files`, whose decoding thread overlaps decoding with the model (a 4-min
    MP3 took 2.7 s instead of 3.5 with musicnn on 2 cores); a file that fails raises AudioError.
    """
    result = _classify_one(model, path, hop_seconds, aggregation, batch_size, clip_budget)
    if result.error:
        raise AudioError(result.error)
    return result


def _classify_one(
    model: Model, path: str | Path, hop_seconds: float, aggregation: str, batch_size: int | None,
    clip_budget: int | None = None, settle: bool = False,
) -> TrackResult:
    """`classify_files` on one file: its result, error or not."""
    results = classify_files(model, [path], hop_seconds, aggregation, batch_size, clip_budget, settle=settle)
    try:
        return next(results)
    finally:
        results.close()  # stops the decoding threads


def classify_files(
    model: Model,
    paths: Iterable[str | Path],
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    aggregation: str = "mean_prob",
    batch_size: int | None = None,
    clip_budget: int | None = None,
    decoders: int | None = None,
    settle: bool = False,
) -> Iterator[TrackResult]:
    """Classify files, yielding results in order; a file that fails gives a result carrying its error.

    `clip_budget` N: each track is heard in N of its clips spread evenly over it (clips.spread_clips;
    every clip of a track that has no more), decoded by `decoders` threads (None: the model's
    choice) a few files ahead of the model, so that its cost stops growing with its length; with
    `settle`, a track whose N clips leave its top genre in doubt (`is_settled`) is read again,
    every clip of it. None: every clip, streamed by one decoding thread, in memory bounded
    whatever the track's length. Either way the decoding (soundfile and the resampler release
    the GIL) overlaps the model, and consecutive files share batches, so a folder of short
    tracks still runs full batches. Models with a fast path read each span of several clips
    whole instead.
    """
    paths = [str(path) for path in paths]
    hop = hop_samples(hop_seconds)
    batch_size = batch_size or model.batch_size
    outputs: dict[int, list[ClipOutputs]] = {}  # file index -> its clips' outputs so far
    errors: dict[int, str] = {}
    ends: dict[int, FileEnd] = {}
    batches = ClipBatches(batch_size)
    ended = next_result = 0  # files decoded to the end; files yielded

    def run(owners: list[int], compute: Callable[[], ClipOutputs]) -> None:
        """Compute one batch's outputs and file them under their files; a failure fails those files."""
        try:
            batch = compute()
        except (RuntimeError, MemoryError) as failure:  # e.g. out of memory: those files fail, the rest go on
            for index in set(owners):
                errors[index] = f"{paths[index]}: {type(failure).__name__}: {failure}"
            return
        owner_of_row = np.array(owners)
        for index in dict.fromkeys(owners):  # each file once, in order
            outputs.setdefault(index, []).append(batch.rows(owner_of_row == index))

    if clip_budget is None:
        decoding = _decoded_ahead(paths, model.clip_samples, hop, batch_size)
    else:
        decoding = _picked_ahead(paths, model.clip_samples, hop, clip_budget, decoders or model.decoders)
    with decoding as decoded:
        for index, span, n_clips, end in decoded:
            if span is not None and model.reads_spans and n_clips > 1:  # a lone clip is batched with others
                run([index] * n_clips, lambda: model.span_outputs(span, hop, n_clips))
            elif span is not None:
                batches.add(index, span_clips(span, model.clip_samples, hop, n_clips))
            if end is not None:
                ended = index + 1
                ends[index] = end
                if end.error:
                    errors[index] = end.error
            for owners, clips in batches.ready(final=ended == len(paths)):
                run(owners, lambda: model.clip_outputs(clips))
            while next_result < ended and not batches.holds(next_result):
                end = ends.pop(next_result)
                result = _result(
                    model, paths[next_result], outputs.pop(next_result, []), errors.pop(next_result, ""),
                    end.warning, [round(i * hop / SAMPLE_RATE, 3) for i in end.clip_indices], aggregation,
                )
                if settle and not result.error and not is_settled(model, result.clip_logits, end.n_clips, aggregation):
                    result = _classify_one(model, result.path, hop_seconds, aggregation, batch_size)
                yield result
                next_result += 1


@dataclass
class FileEnd:
    """What the decoding says of a file once it is done with it."""

    error: str  # "" when it was decoded
    warning: str  # audio.DecodeNotes.warning
    clip_indices: list[int]  # the clips read, in iter_spans' numbering of the track's clips
    n_clips: int  # the track's clips, read or not


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


Decoded = Iterator[tuple[int, "np.ndarray | None", int, "FileEnd | None"]]


@contextlib.contextmanager
def _decoded_ahead(paths: list[str], clip_samples: int, hop: int, max_clips: int) -> Iterator[Decoded]:
    """Every clip of the files, as spans (clips.iter_spans), decoded by a thread ahead of their use.

    Yields (file index, span, n_clips, None) per span and (file index, None, 0, FileEnd) when a
    file ends, and stops after the last file. Leaving the context stops the thread.
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
            n_read = 0
            try:
                for span, n in iter_spans(stream(path, notes=notes), clip_samples, hop, max_clips):
                    put((index, span, n, None))
                    n_read += n
                    if stop.is_set():
                        return
            except Exception as failure:  # reported per file: one bad file must not stop a folder
                error = _failure(path, failure)
            put((index, None, 0, FileEnd(error, notes.warning(path, clip_samples / SAMPLE_RATE), list(range(n_read)), n_read)))
        put(None)

    decoder = threading.Thread(target=decode, daemon=True)
    decoder.start()
    try:
        yield iter(spans.get, None)
    finally:
        stop.set()
        decoder.join(timeout=10)  # it stops after its span: the process should not end while it is inside a decoder


@contextlib.contextmanager
def _picked_ahead(paths: list[str], clip_samples: int, hop: int, budget: int, decoders: int) -> Iterator[Decoded]:
    """`budget` clips of each file (see _picked_clips), decoded by a pool of `decoders` threads, a
    few files ahead of their use, in _decoded_ahead's items: each clip as a span of one.

    Leaving the context cancels the files not begun and stops the others at their next clip.
    """
    stop = threading.Event()
    pool = ThreadPoolExecutor(decoders, thread_name_prefix="mgc-decode")
    files = iter(enumerate(paths))

    def submit(count: int) -> list:
        return [(index, pool.submit(_picked_clips, path, clip_samples, hop, budget, stop))
                for index, path in itertools.islice(files, count)]

    def items() -> Decoded:
        pending = deque(submit(2 * decoders))  # bounds the audio decoded ahead
        while pending:
            index, future = pending.popleft()
            pending.extend(submit(1))
            clips, end = future.result()
            for clip in clips:
                yield index, clip, 1, None
            yield index, None, 0, end

    try:
        yield items()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _picked_clips(
    path: str, clip_samples: int, hop: int, budget: int, stop: threading.Event
) -> tuple[list[np.ndarray], FileEnd]:
    """A file's `budget` clips spread over it (clips.spread_clips), and its FileEnd.

    Read by seeking to each clip where the file allows it (audio.read_clips: its data ends where
    its header says); else, and for a track of no more than `budget` clips, decoded whole
    (_decoded_picks).
    """
    notes = DecodeNotes()

    def starts(n_samples: int) -> list[int] | None:
        n_clips = clip_count(n_samples, clip_samples, hop)
        return [i * hop for i in spread_clips(n_clips, budget)] if n_clips > budget else None

    try:
        sought = read_clips(path, clip_samples, starts, notes)
    except Exception as failure:  # reported per file: one bad file must not stop a folder
        return [], FileEnd(_failure(path, failure), "", [], 0)
    if sought is None:
        return _decoded_picks(path, clip_samples, hop, budget, stop)
    clips, n_samples = sought
    n_clips = clip_count(n_samples, clip_samples, hop)
    return clips, FileEnd("", notes.warning(path, clip_samples / SAMPLE_RATE), spread_clips(n_clips, budget), n_clips)


def _decoded_picks(
    path: str, clip_samples: int, hop: int, budget: int, stop: threading.Event, n_clips: int | None = None
) -> tuple[list[np.ndarray], FileEnd]:
    """_picked_clips, the file decoded whole, keeping only the clips picked.

    The spread is planned on the length the header gives (`n_clips` clips when given): its
    warnings (silence, truncation) are the whole file's. A file that turns out to hold fewer
    clips than the plan reached (a truncated file) is decoded again, the clips spread over what
    it holds.
    """
    notes = DecodeNotes()
    kept: list[np.ndarray] = []
    read: list[int] = []
    n_decoded = 0
    try:
        blocks = stream(path, notes=notes)
        first = next(blocks)  # opens the file: its header's length is known from here
        plan = set(spread_clips(n_clips or clip_count(round(notes.header_seconds * SAMPLE_RATE), clip_samples, hop), budget))
        for n_decoded, clip in enumerate(iter_clips(itertools.chain([first], blocks), clip_samples, hop), 1):
            if stop.is_set():
                break
            if n_decoded - 1 in plan:
                kept.append(clip.copy())  # a view would keep its whole decoded block alive
                read.append(n_decoded - 1)
    except Exception as failure:  # reported per file: one bad file must not stop a folder
        return [], FileEnd(_failure(path, failure), "", [], 0)
    if n_clips is None and len(read) < min(budget, n_decoded) and not stop.is_set():
        return _decoded_picks(path, clip_samples, hop, budget, stop, n_decoded)
    return kept, FileEnd("", notes.warning(path, clip_samples / SAMPLE_RATE), read, n_decoded)


def _failure(path: str, failure: Exception) -> str:
    """A file's failure in one line: an MgcError says it already; anything else, what it was."""
    return str(failure) if isinstance(failure, MgcError) else f"{path}: {type(failure).__name__}: {failure}"


def _result(
    model: Model, path: str, parts: list[ClipOutputs], error: str, warning: str, clip_starts: list[float],
    aggregation: str,
) -> TrackResult:
    if error:
        return TrackResult(path, error=error)
    outputs = ClipOutputs.concatenate(parts)
    tags = outputs.tag_logits
    if not np.isfinite(outputs.logits).all() or (tags is not None and not np.isfinite(tags).all()):
        # no answer, and a NaN would make the JSON invalid
        return TrackResult(path, error=f"{path}: the model's outputs for this audio are not finite numbers")
    probabilities = calibrate(aggregate(outputs.logits, aggregation), model.temperatures.get(aggregation, 1.0))
    novelty = model.novelty.novelty(tags) if model.novelty is not None and tags is not None else None
    return TrackResult(path, probabilities, outputs.logits, warning=warning, novelty=novelty, clip_starts=clip_starts)


UNKNOWN = "unknown"  # the genre of a track whose novelty is above the --unknown-above the user gave


def genre_of(result: TrackResult, labels: list[str], unknown_above: float | None = None) -> str:
    """The genre to report for a classified track: its most probable, or UNKNOWN where its novelty is above `unknown_above`."""
    if unknown_above is not None and result.novelty is not None and result.novelty > unknown_above:
        return UNKNOWN
    return labels[int(np.argmax(result.probabilities))]


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
