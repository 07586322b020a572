"""Audio in: decode any supported file to 16 kHz mono float32, and cut clips.

Decoding uses soundfile (libsndfile: WAV, FLAC, OGG, MP3, AU, AIFF ...), resampling soxr
(libsoxr at "HQ", librosa's default). Files are read in blocks and resampled by soxr's
streaming resampler, whose output is identical to resampling the whole file at once, so a
one-hour mix never has to sit in memory at its source rate.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import MgcError, first_line

SAMPLE_RATE = 16_000
CLIP_SECONDS = 3.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)  # 48,000
# Predict and validation hear a track in back-to-back clips by default: 10 clips per 30 s,
# six times cheaper than the paper's 0.5-s hop (`--hop 0.5`).
DEFAULT_HOP_SECONDS = CLIP_SECONDS
# The shortest hop accepted: 600 clips per 30 s. A 1e-9-s hop would cut 480,000, a hang rather than an answer.
MIN_HOP_SECONDS = 0.05
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".au", ".snd", ".aiff", ".aif")

BLOCK_SECONDS = 60.0  # decode this much source audio at a time

SILENCE_FRAME = SAMPLE_RATE // 10  # silence is measured over 100-ms frames
SILENCE_RMS = 1e-3  # a frame quieter than this (-60 dBFS) is silence
MOSTLY_SILENT = 0.9  # a track with at least this share of silent frames is worth a warning


class AudioError(MgcError):
    """A file that cannot be decoded into audio."""


@dataclass
class DecodeNotes:
    """What decoding a file showed that is no error but worth telling: silence, a truncated file.

    `stream` fills it in as it decodes; `warning` reads it once the file is done.
    """

    frames: int = 0  # SILENCE_FRAME-long frames decoded (the last may be shorter)
    silent_frames: int = 0
    seconds: float = 0.0  # decoded
    promised_seconds: float = 0.0  # what the header promised, when it promised more than the file holds

    def listen(self, block: np.ndarray) -> None:
        """Count a decoded 16 kHz block's frames and its silent ones."""
        whole = len(block) // SILENCE_FRAME * SILENCE_FRAME
        power = np.square(block[:whole]).reshape(-1, SILENCE_FRAME).mean(axis=1)
        if whole < len(block):
            power = np.append(power, np.square(block[whole:]).mean())
        self.frames += len(power)
        self.silent_frames += int((power < SILENCE_RMS**2).sum())
        self.seconds += len(block) / SAMPLE_RATE

    def warning(self, path: str | Path) -> str:
        """One line naming the file and what is wrong with its audio, or "" when nothing is."""
        notes = []
        if self.frames and self.silent_frames == self.frames:
            notes.append("silent: the genre is a guess")
        elif self.frames and self.silent_frames >= MOSTLY_SILENT * self.frames:
            sound = (self.frames - self.silent_frames) * SILENCE_FRAME / SAMPLE_RATE
            notes.append(f"{self.silent_frames / self.frames:.0%} silence: the genre rests on {sound:.1f} s of sound")
        if self.promised_seconds:
            notes.append(f"truncated: its header promises {self.promised_seconds:.1f} s, the file holds {self.seconds:.1f} s")
        return f"{path}: {'; '.join(notes)}" if notes else ""


def stream(
    path: str | Path, block_seconds: float = BLOCK_SECONDS, notes: DecodeNotes | None = None
) -> Iterator[np.ndarray]:
    """Yield the file as consecutive 16 kHz mono float32 blocks (memory bounded by the block size).

    `notes`, when given, is filled in with what the caller should warn about (see DecodeNotes).
    """
    notes = notes or DecodeNotes()
    for block in _decode(path, block_seconds, notes):
        notes.listen(block)
        yield block


def _decode(path: str | Path, block_seconds: float, notes: DecodeNotes) -> Iterator[np.ndarray]:
    """`stream`'s blocks, before they are listened to."""
    import soundfile
    import soxr

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
        notes.promised_seconds = _promised_seconds(sound)
        source_rate = sound.samplerate
        # soxr's streaming resampler gives exactly what resampling the whole file at once gives,
        # block by block. "HQ" is librosa's default, so musicnn hears what its own code feeds it.
        resampler = None if source_rate == SAMPLE_RATE else soxr.ResampleStream(source_rate, SAMPLE_RATE, 1, "float32", "HQ")
        decoded = False
        for block in _read_blocks(sound, path, int(block_seconds * source_rate)):
            decoded = decoded or len(block) > 0
            yield block if resampler is None else resampler.resample_chunk(block)
        if not decoded:
            raise AudioError(f"{path}: contains no audio")
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def load(path: str | Path) -> np.ndarray:
    """Decode a whole file to a 1-D float32 array at 16 kHz mono."""
    return np.concatenate(list(stream(path)))


# libsndfile logs a WAV "data" or AIFF "SSND" chunk longer than the file as "data : 128000 (should be 42637)".
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _promised_seconds(sound) -> float:
    """The duration a truncated file's header promises (libsndfile decodes what is there, silently); else 0.

    A WAV written by a stream that never learnt its length says 0xFFFFFFFF: that is no promise.
    """
    match = _SHORT_CHUNK.search(sound.extra_info)
    if not match:
        return 0.0
    promised, held = int(match[1]), int(match[2])
    if promised == 0xFFFFFFFF or not 0 < held < promised:
        return 0.0
    return sound.frames * promised / held / sound.samplerate


def _read_blocks(sound, path: Path, block_frames: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks straight from the decoder, with NaN/inf made safe."""
    try:
        for block in sound.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy()
            yield np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
    except AudioError:
        raise
    except Exception as error:
        raise AudioError(f"{path}: decoding failed part-way ({_libsndfile_reason(error)})") from None


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


def _libsndfile_reason(error: Exception) -> str:
    # libsndfile's errors repeat the path; its error_string alone says what went wrong.
    return first_line(getattr(error, "error_string", "") or error)


def _decode_reason(path: str | Path, error: Exception) -> str:
    path = Path(path)
    if path.exists() and path.stat().st_size == 0:
        return "empty file"
    detail = _libsndfile_reason(error)
    if "does not exist" in detail:  # libsndfile's word for a stream it cannot parse at all
        detail = "format not recognised"
    return f"not a readable audio file ({detail})"


def hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    """The mel scale (O'Shaughnessy's formula, as HTK and SincNet use it): 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_to_hz(mel):
    """The inverse of `hz_to_mel`, for floats, numpy arrays and tensors alike."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
