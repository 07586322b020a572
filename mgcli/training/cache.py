"""The dataset cache: every track decoded once to 16 kHz int16 .npy, with an `index.json`.

`mgc preprocess` writes it; training and evaluation read it with memory mapping, and a
cache folder is itself accepted wherever a dataset is.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import MgcError
from ..audio import SAMPLE_RATE, AudioError, load
from ..files import save_npy_atomic, write_text_atomic

CACHE_FORMAT = "mgcli-cache-1"


@dataclass(frozen=True)
class Track:
    key: str  # path relative to the dataset root, in POSIX form: what split files name
    path: str  # where the source audio is
    label: str
    split: str = ""  # "train", "valid", "test" or "" (unassigned)
    cache_file: str = ""  # the decoded 16 kHz int16 .npy, once preprocessed
    collection: str = ""  # the dataset (`--data`) it came from: validation reports each on its own


@dataclass
class CacheReport:
    cached: int  # newly decoded
    reused: int  # already in the cache and unchanged
    failed: list[tuple[str, str]]  # (path, error)


def preprocess(
    tracks: list[Track], out: str | Path, on_track: Callable[[int, int], None] | None = None
) -> CacheReport:
    """Decode every track once into `out` (16 kHz int16 .npy + index.json); reuse what is there.

    Undecodable files are listed in the report and the index, never fatal. The index is
    rewritten atomically after every track, so an interrupted run loses nothing; until the
    last track it says the cache is incomplete, which `read_cache` refuses.
    `on_track(done, total)` hears of every track as it is done.
    """
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    index = _read_index(out)
    known = {entry["path"]: entry for entry in index["tracks"]}
    report = CacheReport(0, 0, [])
    entries: dict[str, dict] = {}
    failed: list[dict] = []
    for done, track in enumerate(tracks, start=1):
        stamp = _source_stamp(track.path)
        entry = known.get(track.path)
        if stamp and entry and entry["stamp"] == stamp and _whole(out / entry["cache_file"], entry["samples"]):
            report.reused += 1
        else:
            try:
                wave = load(track.path)
            except AudioError as error:
                report.failed.append((track.path, str(error)))
                failed.append({"path": track.path, "error": str(error)})
                if on_track:
                    on_track(done, len(tracks))
                continue
            cache_file = f"audio/{hashlib.sha1(os.fsencode(track.path)).hexdigest()[:16]}.npy"
            save_npy_atomic(out / cache_file, _to_int16(wave))
            entry = {"path": track.path, "stamp": stamp, "cache_file": cache_file, "samples": len(wave)}
            report.cached += 1
        entries[track.path] = {**entry, "key": track.key, "label": track.label, "split": track.split}
        # Until the run ends, keep the entries not yet revisited: they are still valid cache.
        _write_index(out, list({**known, **entries}.values()), failed, complete=False)
        if on_track:
            on_track(done, len(tracks))
    _write_index(out, list(entries.values()), failed, complete=True)
    return report


def read_cache(cache: str | Path) -> list[Track]:
    """The tracks of a cache folder, each pointing at its decoded audio. A cache that an interrupted
    preprocess left incomplete, or whose decoded audio is missing or cut short, is refused: it
    would pass for the whole dataset, or fail hours later."""
    cache = Path(cache)
    index = _read_index(cache)
    again = f"run `mgc preprocess DATA --out {cache}` on its dataset again"
    if not index.get("complete", True):  # caches written before this flag were written whole
        raise MgcError(f"{cache}: an interrupted preprocess left it incomplete "
                       f"({len(index['tracks'])} tracks so far); {again} to finish it")
    damaged = [e["cache_file"] for e in index["tracks"] if not _whole(cache / e["cache_file"], e["samples"])]
    if damaged:
        raise MgcError(f"{cache}: the decoded audio of {len(damaged)} tracks is missing or damaged "
                       f"({damaged[0]}); {again} to decode them anew")
    return [
        Track(e["key"], e["path"], e["label"], e["split"], str(cache / e["cache_file"]))
        for e in index["tracks"]
    ]


def _whole(cache_file: Path, samples: int) -> bool:
    """Whether a decoded track's .npy is there and holds all its samples (its header alone is read)."""
    try:
        return np.load(cache_file, mmap_mode="r").shape == (samples,)
    except (OSError, ValueError):
        return False


def load_wave(track: Track) -> np.ndarray:
    """A track's 16 kHz mono audio: memory-mapped from the cache when it is cached."""
    if track.cache_file:
        return np.load(track.cache_file, mmap_mode="r")
    return load(track.path)


def to_float(samples: np.ndarray) -> np.ndarray:
    """Cached int16 (or already float) samples as float32 in [-1, 1]."""
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    return np.asarray(samples, dtype=np.float32)


def _to_int16(wave: np.ndarray) -> np.ndarray:
    return (np.clip(wave, -1.0, 32767 / 32768) * 32768.0).round().astype(np.int16)


def _source_stamp(path: str) -> list[int] | None:
    """A file's size and time of change, which say whether its cached copy is still good; None
    for a file that is not there (decoding it then says why)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _read_index(cache: Path) -> dict:
    path = cache / "index.json"
    if not path.exists():
        return {"format": CACHE_FORMAT, "sample_rate": SAMPLE_RATE, "tracks": [], "failed": []}
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise MgcError(f"{path}: unreadable cache index ({error})") from None
    if index.get("format") != CACHE_FORMAT or index.get("sample_rate") != SAMPLE_RATE:
        raise MgcError(f"{path}: not an mgcli cache (or from another version); preprocess again")
    return index


def _write_index(cache: Path, entries: list[dict], failed: list[dict], complete: bool) -> None:
    index = {"format": CACHE_FORMAT, "sample_rate": SAMPLE_RATE, "tracks": entries, "failed": failed, "complete": complete}
    write_text_atomic(cache / "index.json", json.dumps(index, indent=1))

