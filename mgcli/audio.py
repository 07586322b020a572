"""Audio in: decode any supported file to 16 kHz mono float32, and cut clips.

Decoding uses soundfile (libsndfile: WAV, FLAC, OGG, MP3, AU, AIFF ...); torchaudio
does only the resampling. Files are read in blocks and resampled block by block
with enough context on each side that the result is identical to resampling the
whole file at once, so a one-hour mix never has to sit in memory at its source rate.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from . import MgcError

SAMPLE_RATE = 16_000
CLIP_SECONDS = 3.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)  # 48,000
# Predict and validation hear a track in back-to-back clips by default: 10 clips per 30 s,
# six times cheaper than the paper's 0.5-s hop (`--hop 0.5`).
DEFAULT_HOP_SECONDS = CLIP_SECONDS
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".au", ".snd", ".aiff", ".aif")

BLOCK_SECONDS = 60.0  # decode this much source audio at a time
RESAMPLE_CONTEXT = 1024  # source samples kept on each side of a block; > torchaudio's kernel half-width


class AudioError(MgcError):
    """A file that cannot be decoded into audio."""


def stream(path: str | Path, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Yield the file as consecutive 16 kHz mono float32 blocks (memory bounded by the block size)."""
    import soundfile

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        with _quiet_stderr():
            sound = soundfile.SoundFile(str(path))
    except Exception as error:
        raise AudioError(f"{path}: {_decode_reason(path, error)}") from None
    with sound:
        source_rate = sound.samplerate
        if source_rate == SAMPLE_RATE:
            yielded = False
            for block in _read_blocks(sound, path, int(block_seconds * source_rate)):
                yielded = True
                yield block
            if not yielded:
                raise AudioError(f"{path}: contains no audio")
            return
        # Block boundaries must fall on whole periods of the rational resampling
        # ratio, so that each block's output samples line up with the whole-file ones.
        gcd = math.gcd(source_rate, SAMPLE_RATE)
        period_in, period_out = source_rate // gcd, SAMPLE_RATE // gcd
        context_periods = math.ceil(RESAMPLE_CONTEXT / period_in)
        context_in, context_out = context_periods * period_in, context_periods * period_out
        block_in = max(1, round(block_seconds * source_rate / period_in)) * period_in

        history = np.zeros(0, np.float32)  # the source samples just before the current block
        pending = np.zeros(0, np.float32)  # the current block, waiting for its right context
        total_in = 0
        for block in _read_blocks(sound, path, block_in):
            total_in += len(block)
            pending = np.concatenate([pending, block])
            # Emit every whole block whose right context has arrived.
            while len(pending) >= block_in + context_in:
                current, pending = pending[:block_in], pending[block_in:]
                yield _resample_middle(history, current, pending[:context_in], source_rate, context_out)
                history = current[-context_in:]
        if total_in == 0:
            raise AudioError(f"{path}: contains no audio")
        if len(pending):
            tail = _resample_middle(history, pending, np.zeros(0, np.float32), source_rate, context_out)
            # The whole-file resampler yields ceil(n * out / in) samples in total.
            emitted_in = total_in - len(pending)
            expected = math.ceil(total_in * SAMPLE_RATE / source_rate) - emitted_in // period_in * period_out
            yield tail[:expected]


def load(path: str | Path) -> np.ndarray:
    """Decode a whole file to a 1-D float32 array at 16 kHz mono."""
    return np.concatenate(list(stream(path)))


def _read_blocks(sound, path: Path, block_frames: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks straight from the decoder, with NaN/inf made safe."""
    try:
        for block in sound.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy()
            yield np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
    except AudioError:
        raise
    except Exception as error:
        raise AudioError(f"{path}: decoding failed part-way ({_first_line(error)})") from None


def _resample_middle(
    before: np.ndarray, middle: np.ndarray, after: np.ndarray, source_rate: int, context_out: int
) -> np.ndarray:
    """Resample `middle` to 16 kHz, using its neighbours only as filter context."""
    import torch
    import torchaudio.functional

    joined = torch.from_numpy(np.concatenate([before, middle, after]))
    out = torchaudio.functional.resample(joined, source_rate, SAMPLE_RATE).numpy()
    start = context_out if len(before) else 0
    length = math.ceil(len(middle) * SAMPLE_RATE / source_rate)
    return out[start : start + length]


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C decoders' own chatter (mpg123 prints "Note: Illegal Audio-MPEG-Header" on
    stderr when probing a file that is not MP3); our error message says what went wrong."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _decode_reason(path: str | Path, error: Exception) -> str:
    path = Path(path)
    if path.exists() and path.stat().st_size == 0:
        return "empty file"
    detail = _first_line(error)
    if "does not exist" in detail:  # libsndfile's word for a stream it cannot parse at all
        detail = "format not recognised"
    return f"not a readable audio file ({detail})"


def _first_line(error: Exception) -> str:
    # libsndfile's errors repeat the path; its error_string alone says what went wrong.
    text = str(getattr(error, "error_string", "") or error).strip().splitlines()
    return text[0] if text else type(error).__name__


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
        raise MgcError(f"hop must be positive, got {hop} samples")
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


def iter_clips(
    blocks: Iterable[np.ndarray], length: int = CLIP_SAMPLES, hop: int = CLIP_SAMPLES
) -> Iterator[np.ndarray]:
    """The clips of iter_spans, one at a time."""
    for clip, _ in iter_spans(blocks, length, hop):
        yield clip


def cut_clips(wave: np.ndarray, length: int = CLIP_SAMPLES, hop: int = CLIP_SAMPLES) -> np.ndarray:
    """All clips of a decoded track as a [n_clips, length] float32 array."""
    return np.stack(list(iter_clips([wave], length, hop)))
