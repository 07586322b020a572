"""Clips: the one clip cutter that training, evaluation and prediction share.

A track is heard as clips of a model's `clip_samples` every `hop` samples; `iter_spans` cuts
them from streamed audio blocks as spans of consecutive clips, which the fast paths filter whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from . import MgcError
from .audio import CLIP_SAMPLES, MAX_HOP_SECONDS, MIN_HOP_SECONDS, SAMPLE_RATE


# `--clips auto`, predict's default: 10 clips spread over each track, then every clip of a track
# whose 10 leave its genre in doubt (inference.is_settled). Measured (benchmarks/clip_budget.py,
# docs/performance.md): 10 clips alone named every clip's top genre for 94% of the 60-s tracks here
# (16 clips: 98.6%), at the same accuracy, the others being near ties; `auto` for all of them,
# reading every clip of one in five. `mgc tags` reads every clip by default: its top tag is a near
# tie more often (10 clips of 20 agreed on 92.5%), and `auto` was not measured there.
AUTO_CLIPS = 10


def hop_samples(hop_seconds: float) -> int:
    """Seconds between clip starts as 16 kHz samples; a hop that is not finite or outside
    MIN_HOP_SECONDS..MAX_HOP_SECONDS is refused."""
    if not (math.isfinite(hop_seconds) and MIN_HOP_SECONDS <= hop_seconds <= MAX_HOP_SECONDS):
        raise MgcError(
            f"hop must be a finite number of seconds, at least {MIN_HOP_SECONDS} and at most {MAX_HOP_SECONDS:,.0f}; got {hop_seconds}"
        )
    return round(hop_seconds * SAMPLE_RATE)


def clip_at(wave: np.ndarray, start: int, length: int = CLIP_SAMPLES) -> np.ndarray:
    """The `length` samples from `start`, zero-padded past the end (never wrapped round)."""
    clip = np.asarray(wave[start : start + length], dtype=np.float32)
    if len(clip) < length:
        clip = np.pad(clip, (0, length - len(clip)))
    return clip


def iter_spans(
    blocks: Iterable[np.ndarray], length: int = CLIP_SAMPLES, hop: int = CLIP_SAMPLES, max_clips: int = 1
) -> Iterator[tuple[np.ndarray, int]]:
    """The clip cutter: clips of `length` every `hop` samples over consecutive audio blocks.

    Yields (span, n): up to `max_clips` consecutive clips in one array, clip i being
    span[i * hop : i * hop + length]; a span holds its clips' overlap once, so a model can
    filter it once (SincResNet.span_logits). A track shorter than one clip gives one
    zero-padded clip. A longer one ends with a zero-padded clip when its unheard tail fills at
    least half a clip: a sliver of real audio in a clip of zeros would only add a meaningless
    vote. Nothing is wrapped round. Only the current block and one span are held in memory.
    """
    if hop <= 0:
        raise ValueError(f"hop must be positive, got {hop} samples")
    span_length = length + (max_clips - 1) * hop
    buffer = np.zeros(0, np.float32)
    offset = 0  # track position of buffer[0]
    next_start = 0  # track position of the next clip to yield
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        while next_start + span_length <= offset + len(buffer):
            yield clip_at(buffer, next_start - offset, span_length), max_clips
            next_start += max_clips * hop
        drop = min(next_start - offset, len(buffer))
        buffer, offset = buffer[drop:], offset + drop
    n_samples = offset + len(buffer)
    n_left = max(0, (n_samples - next_start - length) // hop + 1)  # whole clips not yet yielded
    tail_start = next_start + n_left * hop
    unheard_tail = n_samples - max(tail_start, tail_start - hop + length)
    if tail_start == 0 or (unheard_tail > 0 and n_samples - tail_start >= length // 2):
        n_left += 1
    while n_left:
        n = min(n_left, max_clips)
        yield clip_at(buffer, next_start - offset, length + (n - 1) * hop), n
        next_start += n * hop
        n_left -= n


def clip_count(n_samples: int, length: int = CLIP_SAMPLES, hop: int = CLIP_SAMPLES) -> int:
    """How many clips `iter_spans` cuts from a track of `n_samples` (by the same rule, without the audio)."""
    whole = max(0, (n_samples - length) // hop + 1)
    tail_start = whole * hop
    unheard_tail = n_samples - max(tail_start, tail_start - hop + length)
    return whole + int(tail_start == 0 or (unheard_tail > 0 and n_samples - tail_start >= length // 2))


def spread_clips(n_clips: int, budget: int) -> list[int]:
    """The indices of `budget` of a track's `n_clips` clips, spread evenly: the middle clip of each
    of `budget` equal parts of the track (every clip when there are no more than `budget`).

    The middle rather than the start of each part: the first part's start is an intro, which
    says less about a song's genre than its body does.
    """
    if n_clips <= budget:
        return list(range(n_clips))
    return [int((part + 0.5) * n_clips / budget) for part in range(budget)]


def parse_clip_budget(text: str) -> tuple[int | None, bool]:
    """`--clips`: (clips to read of each track, whether to read every clip of a track they leave in
    doubt): "N" is (N, False), "all" (None, False): every clip, "auto" (AUTO_CLIPS, True)."""
    word = text.strip().lower()
    if word in ("all", "auto"):
        return (None, False) if word == "all" else (AUTO_CLIPS, True)
    try:
        budget = int(text)
    except ValueError:
        budget = 0
    check_clip_budget(budget, text)
    return budget, False


def check_clip_budget(budget: int | None, given: str | None = None) -> None:
    """Refuse a clip budget that is not a whole number of clips, at least 1 (None, every clip, is fine)."""
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise MgcError(f"--clips must be a whole number of clips (at least 1), 'auto' or 'all'; got {given or budget!r}")


def iter_clips(
    blocks: Iterable[np.ndarray], length: int = CLIP_SAMPLES, hop: int = CLIP_SAMPLES
) -> Iterator[np.ndarray]:
    """The clips of iter_spans, one at a time."""
    for clip, _ in iter_spans(blocks, length, hop):
        yield clip


def cut_clips(wave: np.ndarray, length: int = CLIP_SAMPLES, hop: int = CLIP_SAMPLES) -> np.ndarray:
    """All clips of a decoded track as a [n_clips, length] float32 array."""
    return np.stack(list(iter_clips([wave], length, hop)))


def span_clips(span: np.ndarray, length: int, hop: int, n_clips: int) -> np.ndarray:
    """The clips of a span (audio.iter_spans) as a [n_clips, length] view."""
    return np.lib.stride_tricks.sliding_window_view(span, length)[::hop][:n_clips]


@dataclass
class ClipOutputs:
    """What a model gives a run of clips: its logits and, where it keeps a pretrained tagger, the tagger's."""

    logits: np.ndarray  # [n_clips, n_labels]
    tag_logits: np.ndarray | None = None  # [n_clips, n_tags]: what the novelty score reads (novelty.py)

    def rows(self, keep: np.ndarray) -> ClipOutputs:
        """The clips that `keep` (a boolean or index array) selects."""
        return ClipOutputs(self.logits[keep], None if self.tag_logits is None else self.tag_logits[keep])

    @staticmethod
    def concatenate(parts: list[ClipOutputs]) -> ClipOutputs:
        tags = [part.tag_logits for part in parts]
        return ClipOutputs(
            np.concatenate([part.logits for part in parts]),
            None if any(t is None for t in tags) else np.concatenate(tags),
        )
