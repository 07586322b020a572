"""Audio in: decode any supported file to 16 kHz mono float32, and cut clips.

Decoding uses soundfile (libsndfile: WAV, FLAC, OGG, MP3, AU, AIFF ...), resampling soxr
(libsoxr at "HQ", librosa's default). Files are read in blocks and resampled by soxr's
streaming resampler, whose output is identical to resampling the whole file at once, so a
one-hour mix never has to sit in memory at its source rate. A few clips of a long file are
read by seeking to each (`read_clips`), the decoder and resampler restarted a margin before it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
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
# The longest: a day. Any longer hop hears a track's first clip alone just as well, and 1e308 s would overflow.
MAX_HOP_SECONDS = 86_400.0
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".au", ".snd", ".aiff", ".aif")

BLOCK_SECONDS = 60.0  # decode this much source audio at a time
MAX_BLOCK_SAMPLES = 1 << 24  # ... but never more samples than this (64 MB) in one block, whatever the channel count
# Sample rates read: from below telephone audio's 8 kHz to above studio audio's 384 kHz. Outside them a
# header is damaged: at 2 Hz a 1.3-MB file would resample into 92 hours of audio. Within them,
# decoding yields at most 16 samples per source sample: the work is bounded by the file's bytes.
MIN_SOURCE_RATE = 1_000
MAX_SOURCE_RATE = 768_000
# Float samples beyond this (60 dB over full scale) are no audio but a damaged or forged file.
MAX_SAMPLE = 1000.0
TRUNCATED_SECONDS = 0.1  # a file whose data ends this much before its header's length is truncated

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
    header_seconds: float = 0.0  # the length the header gives, known once the file is open (before its first block)
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

    def warning(self, path: str | Path, clip_seconds: float) -> str:
        """One line naming the file and what is wrong with its audio, or "" when nothing is: silence, a
        truncated file, or less than half a clip of audio (`clip_seconds` the model's clip), its one
        clip mostly the padding's silence."""
        notes = []
        if self.seconds < clip_seconds / 2:
            notes.append(f"short: {self.seconds:.2g} s of audio in a {clip_seconds:g}-s clip, the rest silence: the genre is a guess")
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
    path = Path(path)
    with _open(path) as sound:
        source_rate = sound.samplerate
        # soxr's streaming resampler gives exactly what resampling the whole file at once gives,
        # block by block. "HQ" is librosa's default, so musicnn hears what its own code feeds it.
        notes.header_seconds = sound.frames / source_rate
        resampler = _resampler(source_rate)
        block_frames = max(1, min(int(block_seconds * source_rate), MAX_BLOCK_SAMPLES // sound.channels))
        decoded = 0  # source frames
        for block in _read_blocks(sound, path, block_frames):
            decoded += len(block)
            yield block if resampler is None else resampler.resample_chunk(block)
        if not decoded:
            raise AudioError(f"{path}: contains no audio")
        notes.promised_seconds = _promised_seconds(sound, decoded)
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def _open(path: Path):
    """The file open in soundfile, once it is known to be a readable audio file at a sample rate that audio has."""
    import soundfile

    _check_readable(path)
    try:
        with _quiet_stderr():
            # As bytes: soundfile encodes a str path strictly, and a name that is not UTF-8 would abort.
            sound = soundfile.SoundFile(os.fsencode(path))
    except Exception as error:
        raise AudioError(f"{path}: {_decode_reason(path, error)}") from None
    if not MIN_SOURCE_RATE <= sound.samplerate <= MAX_SOURCE_RATE:
        sound.close()
        raise AudioError(
            f"{path}: its header gives a sample rate of {sound.samplerate:,} Hz, outside the {MIN_SOURCE_RATE:,} to "
            f"{MAX_SOURCE_RATE:,} Hz that audio has (a damaged header?)"
        )
    return sound


def _resampler(source_rate: int):
    """soxr's streaming resampler from `source_rate` to 16 kHz (None at 16 kHz: nothing to do)."""
    import soxr

    return None if source_rate == SAMPLE_RATE else soxr.ResampleStream(source_rate, SAMPLE_RATE, 1, "float32", "HQ")


# Audio read before (and after) a clip sought to, and thrown away: what libsndfile gives after a
# seek lands on the right sample, but mpg123 restarts without the frames before it, and its first
# output can be off. Over 1,815 seeks into 121 real MP3s here, 40 were off (by up to 1.5e-3), for
# at most 0.33 s after the seek point; soxr's filter, started afresh too, settles within 0.05 s.
SEEK_MARGIN_SECONDS = 1.0


def read_clips(
    path: str | Path, length: int, starts: Callable[[int], list[int] | None], notes: DecodeNotes
) -> tuple[list[np.ndarray], int] | None:
    """Read a few clips of a file by seeking to each, instead of decoding it whole: 10 clips of a
    4-min MP3 took 0.05 s, decoding it whole 0.2 s (mpg123's 0.15 s of it).

    `starts(n)` gives the clips' starts, in the 16 kHz samples of a file of n of them (None: read it
    whole). Returns the `length`-sample clips (zero-padded past the end) and n; each is what
    `stream` gives there, within float32 rounding (decoder and resampler restart
    SEEK_MARGIN_SECONDS before it). None, having read nothing into `notes`, where `starts` gives None or the file's
    data does not end where its header says (a truncated file, an MP3 whose length is an
    estimate): then it must be decoded whole, which finds its true length. `notes` hears the
    clips read: its silence is theirs, its length the header's (proved).
    """
    path = Path(path)
    with _open(path) as sound:
        source_rate = sound.samplerate
        n_samples = (2 * sound.frames * SAMPLE_RATE + source_rate) // (2 * source_rate)  # soxr's length, rounded half up
        planned = starts(n_samples) if sound.seekable() else None
        if planned is None or not _ends_where_header_says(sound):
            return None
        # The resampler restarts where the whole file's would stand at a sample it gives: at a
        # whole number of its periods (441 source frames for 160 samples, from 44.1 kHz).
        period = math.gcd(source_rate, SAMPLE_RATE)
        frames_per_period, samples_per_period = source_rate // period, SAMPLE_RATE // period
        margin = round(SEEK_MARGIN_SECONDS * SAMPLE_RATE)
        clips = []
        for start in planned:
            first = max(0, start - margin) // samples_per_period  # in periods
            frames = -(-(start + length + margin) // samples_per_period) * frames_per_period - first * frames_per_period
            sound.seek(first * frames_per_period)
            mono = next(_read_blocks(sound, path, frames), np.zeros(0, np.float32))  # one block: the clip and its margins
            resampler = _resampler(source_rate)
            if resampler is not None:
                mono = resampler.resample_chunk(mono, last=len(mono) < frames)
            offset = start - first * samples_per_period
            clip = mono[offset : offset + length]
            notes.listen(clip)  # before the padding: silence is the audio's
            clips.append(np.pad(clip, (0, length - len(clip))))
        notes.seconds = n_samples / SAMPLE_RATE
        notes.header_seconds = sound.frames / source_rate
        notes.promised_seconds = _promised_seconds(sound, sound.frames)
        return clips, n_samples


def _ends_where_header_says(sound) -> bool:
    """Whether the file's audio ends at the frame count its header gives: a tenth of a second
    before it reads whole, and nothing after it."""
    tail = min(sound.frames, sound.samplerate // 10)
    try:
        sound.seek(sound.frames - tail)
        return tail > 0 and len(sound.read(tail + 1, dtype="float32", always_2d=True)) == tail
    except RuntimeError:  # libsndfile refuses the seek
        return False


def _check_readable(path: Path) -> None:
    """Refuse, with the reason, what is no regular file that can be read: opening a FIFO would wait
    for a writer for ever, and a device (/dev/zero) would never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except OSError as error:
        raise AudioError(f"{path}: cannot read it ({error.strerror or error})") from None
    if stat.S_ISDIR(mode):
        raise AudioError(f"{path}: {_folder_problem(path)}")
    if not stat.S_ISREG(mode):
        raise AudioError(f"{path}: not a regular file but {_special_kind(mode)}, so no audio file")
    try:
        open(path, "rb").close()
    except OSError as error:  # libsndfile would only say "System error."
        raise AudioError(f"{path}: cannot read it ({error.strerror or error})") from None


def _folder_problem(path: Path) -> str:
    """What is wrong with a folder given as an audio file: catalogue.find_audio lists a folder it cannot read."""
    try:
        os.scandir(path).close()
    except OSError as error:
        return f"cannot read this folder ({error.strerror or error}): its files are left out"
    return "is a folder, not an audio file"


def _special_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((kind for is_kind, kind in kinds.items() if is_kind(mode)), "a special file")


def load(path: str | Path) -> np.ndarray:
    """Decode a whole file to a 1-D float32 array at 16 kHz mono."""
    return np.concatenate(list(stream(path)))


# libsndfile logs a WAV "data" or AIFF "SSND" chunk longer than the file as "data : 128000 (should be 42637)".
_SHORT_CHUNK = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _promised_seconds(sound, decoded: int) -> float:
    """The duration a truncated file's header promises, once its `decoded` frames are read; else 0.

    libsndfile decodes what is there, silently: for a WAV or AIFF it logs the chunk it shortened
    (a WAV written by a stream that never learnt its length says 0xFFFFFFFF: that is no promise);
    for an MP3 its frame count is the header's, and the data ends before it.
    """
    match = _SHORT_CHUNK.search(sound.extra_info)
    if match:
        promised, held = int(match[1]), int(match[2])
        if promised == 0xFFFFFFFF or not 0 < held < promised:
            return 0.0
        return sound.frames * promised / held / sound.samplerate
    if sound.frames - decoded > sound.samplerate * TRUNCATED_SECONDS:
        return sound.frames / sound.samplerate
    return 0.0


def _read_blocks(sound, path: Path, block_frames: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks straight from the decoder, with NaN/inf made safe, until the data ends."""
    buffer = np.empty((block_frames, sound.channels), np.float32)  # one block in memory, whatever the header says
    try:
        while len(block := sound.read(block_frames, dtype="float32", always_2d=True, out=buffer)):
            if not np.isfinite(block).all():  # checked first: nan_to_num on every block cost 36 ms per 4-min track
                np.nan_to_num(block, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
            peak = max(float(block.max()), -float(block.min()))
            if peak > MAX_SAMPLE:  # left in, it overflows the models' float32 arithmetic into NaN
                raise AudioError(f"{path}: no audio: its samples reach {peak:.3g}, where audio lies within ±1")
            yield _downmix(block)
    except AudioError:
        raise
    except Exception as error:
        raise AudioError(f"{path}: decoding failed part-way ({_libsndfile_reason(error)})") from None


def _downmix(block: np.ndarray) -> np.ndarray:
    """The mean of a [frames, channels] block's channels, as a new mono array.

    Summed a channel at a time: `block.mean(axis=1)` reduces each frame's few samples on their
    own, and took 115 ms of a 4-min stereo MP3's 330-ms decoding. The result is the same to the
    bit for up to 7 channels (numpy sums fewer than 8 numbers in order), within a float32
    rounding for more.
    """
    mono = block[:, 0].copy()
    for channel in range(1, block.shape[1]):
        mono += block[:, channel]
    if block.shape[1] > 1:
        mono /= block.shape[1]
    return mono


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
    # libsndfile's errors repeat the path; its error_string alone says what went wrong, as a
    # sentence ("Format not recognised."), which the caller puts in brackets: lower-cased, no stop.
    reason = first_line(getattr(error, "error_string", "") or error).rstrip(".")
    return reason[:1].lower() + reason[1:]


def _reads_nothing(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return not f.read(1)
    except OSError:
        return False


def _decode_reason(path: str | Path, error: Exception) -> str:
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0 and _reads_nothing(path):  # /proc files say 0 bytes and hold text
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
