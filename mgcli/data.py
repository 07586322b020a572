"""Datasets: find labelled tracks, split them, cache their decoded audio, serve training clips.

A dataset is either a folder-per-genre tree (`DATA/<genre>/*.wav`) or a CSV manifest
(`path,label[,split]`, paths relative to the CSV). `mgc preprocess` decodes it once
into a cache folder (one int16 .npy per track plus `index.json`) that training reads
with memory mapping; the cache folder is itself accepted wherever a dataset is.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import MgcError
from .audio import AUDIO_SUFFIXES, CLIP_SAMPLES, SAMPLE_RATE, AudioError, clip_at, load

CACHE_FORMAT = "mgcli-cache-1"
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Track:
    key: str  # path relative to the dataset root, in POSIX form: what split files name
    path: str  # where the source audio is
    label: str
    split: str = ""  # "train", "valid", "test" or "" (unassigned)
    cache_file: str = ""  # the decoded 16 kHz int16 .npy, once preprocessed


def find_audio(paths: Iterable[str | Path]) -> list[Path]:
    """Audio files named, or found recursively in the folders named, sorted.

    Symlinks are followed, but each real folder is entered once, so a link loop (`a/loop -> ..`)
    ends, and each real file is kept once, under the first path found for it.
    """
    found: dict[str, Path] = {}  # real path -> the path found
    entered: set[str] = set()  # real folders
    for path in map(Path, paths):
        if not path.is_dir():
            found.setdefault(os.path.realpath(path), path)  # named explicitly: a bad one is reported, not skipped
            continue
        for root, folders, files in os.walk(path, followlinks=True):
            if os.path.realpath(root) in entered:
                folders.clear()
                continue
            entered.add(os.path.realpath(root))
            folders.sort()  # the first path found for a file must not depend on the file system's order
            for name in sorted(files):
                if name.lower().endswith(AUDIO_SUFFIXES):
                    found.setdefault(os.path.realpath(Path(root) / name), Path(root) / name)
    return sorted(found.values())


def parse_shard(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N), with 0 <= I < N: shard I of N, numbered from 0 like job-array indices."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise MgcError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4 ... 3/4), got {text!r}")
    return int(index), int(count)


def shard_files(files: list[Path], roots: Iterable[str | Path], index: int, count: int) -> list[Path]:
    """The files of shard `index` of `count`, in their order: every file is in exactly one shard.

    A file's shard is a hash of its path relative to the folder (among `roots`) it was found
    in, or of its path as given, so it does not depend on the other files (adding files to a
    catalogue moves no file between shards) nor on where each machine mounts the catalogue.
    """
    folders = [Path(root) for root in roots if Path(root).is_dir()]

    def key(file: Path) -> str:
        folder = next((f for f in folders if file.is_relative_to(f)), None)
        return (file.relative_to(folder) if folder else file).as_posix()

    def shard(file: Path) -> int:
        return int.from_bytes(hashlib.sha1(key(file).encode()).digest()[:8], "big") % count

    return [file for file in files if shard(file) == index]


def find_tracks(data: str | Path) -> list[Track]:
    """The labelled tracks of a dataset folder, a CSV manifest or a cache folder."""
    data = Path(data)
    if not data.exists():
        raise MgcError(f"{data}: no such dataset")
    if data.is_file():
        return _read_manifest(data)
    if (data / "index.json").is_file():
        return read_cache(data)
    tracks = []
    for genre_dir in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in find_audio([genre_dir]):
            tracks.append(Track(path.relative_to(data).as_posix(), str(path), genre_dir.name))
    if not tracks:
        raise MgcError(f"{data}: no audio found in genre folders (expected DATA/<genre>/<file>.wav)")
    return tracks


def _read_manifest(manifest: Path) -> list[Track]:
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise MgcError(f"{manifest}: a manifest needs a header with columns path,label[,split]")
    tracks = []
    for line, row in enumerate(rows, start=2):
        split = (row.get("split") or "").strip()
        if split and split not in SPLITS:
            raise MgcError(f"{manifest}: unknown split {split!r} (use {', '.join(SPLITS)})")
        label = (row["label"] or "").strip()  # csv gives None for a short row
        if not label:
            raise MgcError(f"{manifest}: line {line} has no label")
        path = manifest.parent / row["path"]
        tracks.append(Track(row["path"], str(path), label, split))
    return tracks


def labels_of(tracks: Iterable[Track]) -> list[str]:
    return sorted({t.label for t in tracks})


# ---------------------------------------------------------------- splits


def read_split_file(split_file: str | Path) -> dict[str, str]:
    """A split file's rows: path -> split."""
    if not Path(split_file).is_file():
        raise MgcError(f"{split_file}: no such split file")
    with open(split_file, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "split"} <= set(rows[0]):
        raise MgcError(f"{split_file}: a split file needs columns path,split")
    return {row["path"]: (row["split"] or "").strip() for row in rows}  # csv gives None for a short row


def apply_split_file(tracks: list[Track], split_file: str | Path) -> list[Track]:
    """Assign each track the split its split file gives (matched by path, else by file stem).

    Tracks the file does not name are dropped: a split file defines the experiment.
    """
    by_key = read_split_file(split_file)
    # Fallback on the file stem, so a split file written for .wav also fits an .ogg copy.
    by_stem = {Path(key).stem: split for key, split in by_key.items()}
    assigned = []
    for track in tracks:
        split = by_key.get(track.key) or by_stem.get(Path(track.key).stem)
        if split:
            assigned.append(replace(track, split=split))
    if not assigned:
        raise MgcError(f"{split_file}: names none of the dataset's tracks")
    return assigned


def absent_from_split_file(tracks: list[Track], split_file: str | Path, splits: Iterable[str]) -> list[str]:
    """The paths a split file names for `splits` that match none of the tracks (by path, or by file stem)."""
    keys = {t.key for t in tracks}
    stems = {Path(t.key).stem for t in tracks}
    wanted = set(splits)
    return [
        path for path, split in read_split_file(split_file).items()
        if split in wanted and path not in keys and Path(path).stem not in stems
    ]


def stratified_folds(labels: list[str], k: int, seed: int = 0) -> list[int]:
    """A fold number in [0, k) per item, each class spread evenly over the folds."""
    if k < 2:
        raise MgcError(f"--folds must be at least 2, got {k}")
    rng = np.random.default_rng(seed)
    folds = [0] * len(labels)
    next_fold = 0
    for label in sorted(set(labels)):
        members = [i for i, l in enumerate(labels) if l == label]
        for i in rng.permutation(members):
            folds[i] = next_fold % k
            next_fold += 1
    return folds


def split_tracks(
    tracks: list[Track],
    *,
    split_file: str | Path | None = None,
    folds: int | None = None,
    fold: int | None = None,
    valid_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, list[Track]]:
    """{"train", "valid", "test"} -> tracks, by split file, by k-fold, by the manifest or at random.

    Precedence: a split file; else `folds`/`fold` (fold `fold` is held out as valid);
    else the manifest's own split column; else a stratified `valid_fraction`.
    """
    if split_file is not None:
        tracks = apply_split_file(tracks, split_file)
    elif folds is not None:
        if fold is None or not 0 <= fold < folds:
            raise MgcError(f"--fold must be in 0..{folds - 1} with --folds {folds}")
        fold_of = stratified_folds([t.label for t in tracks], folds, seed)
        tracks = [replace(t, split="valid" if f == fold else "train") for t, f in zip(tracks, fold_of)]
    elif not any(t.split for t in tracks):
        n_folds = max(2, round(1 / valid_fraction)) if valid_fraction > 0 else None
        fold_of = stratified_folds([t.label for t in tracks], n_folds, seed) if n_folds else [1] * len(tracks)
        tracks = [replace(t, split="valid" if f == 0 else "train") for t, f in zip(tracks, fold_of)]
    return {name: [t for t in tracks if t.split == name] for name in SPLITS}


def class_counts(tracks: Iterable[Track], labels: list[str]) -> list[int]:
    counts = Counter(t.label for t in tracks)
    return [counts.get(label, 0) for label in labels]


# ---------------------------------------------------------------- several datasets


@dataclass
class Dataset:
    """One dataset a command is given (`--data`), with its own split file."""

    source: Path  # the folder, manifest or cache named
    tracks: list[Track]  # all of them, splits not yet applied
    split_file: Path | None = None  # this dataset's splits; None: the command's other rule (folds, fraction, manifest)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, error) that could not be decoded into the cache


def pair_split_files(sources: Sequence[Path], split_files: Sequence[Path]) -> list[Path | None]:
    """Each dataset's split file, paired by order: one per dataset, or none at all.

    Each is read now, so a missing or malformed one is refused before any audio is decoded.
    """
    if split_files and len(split_files) != len(sources):
        raise MgcError(
            f"{len(sources)} datasets and {len(split_files)} split files: give one --split-file per --data, in order, or none"
        )
    for split_file in split_files:
        read_split_file(split_file)
    return list(split_files) or [None] * len(sources)


def cache_folders(sources: Sequence[Path], cache: Path | None, out_dir: Path) -> list[Path]:
    """Where each dataset is decoded: CACHE (default OUT/cache) for one dataset; CACHE-1, CACHE-2, ... for several."""
    cache = cache or out_dir / "cache"
    if len(sources) == 1:
        return [cache]
    return [Path(f"{cache}-{n}") for n in range(1, len(sources) + 1)]


def load_datasets(
    sources: Sequence[Path],
    split_files: Sequence[Path] = (),
    caches: Sequence[Path] | None = None,
    notify: Callable[[str], None] | None = None,
) -> list[Dataset]:
    """The datasets a command names, each with its split file (paired by `pair_split_files`).

    With `caches` (one folder per dataset, see `cache_folders`), a dataset that is not a cache
    already is decoded into its own first, and reused next time; `notify` hears where. The
    source audio stays where it is. Track keys (paths within a dataset) must differ across
    datasets, since split files and runs name tracks by them: two datasets sharing one are refused.
    """
    pairs = pair_split_files(sources, split_files)
    found = [find_tracks(source) for source in sources]  # every source checked before any decoding
    owner: dict[str, int] = {}  # track key -> the dataset that holds it
    for n, tracks in enumerate(found):
        for track in tracks:
            first = owner.setdefault(track.key, n)
            if first != n:
                raise MgcError(f"{sources[first]} and {sources[n]} both hold {track.key}: track paths must differ across datasets")
    datasets = []
    for n, (source, split_file, tracks) in enumerate(zip(sources, pairs, found)):
        skipped = []
        if caches and tracks and not tracks[0].cache_file:
            check_output_folder(caches[n])
            if notify:
                notify(f"decoding {len(tracks)} tracks of {source} into {caches[n]} (reused next time)")
            skipped = preprocess(tracks, caches[n]).failed
            tracks = read_cache(caches[n])
        datasets.append(Dataset(Path(source), tracks, split_file, skipped))
    return datasets


def split_datasets(datasets: list[Dataset], **rule) -> dict[str, list[Track]]:
    """{"train", "valid", "test"} -> the tracks of every dataset, each dataset split by its own
    split file, else by `rule` (`split_tracks`' folds, fold, valid_fraction and seed)."""
    parts = [split_tracks(d.tracks, split_file=d.split_file, **rule) for d in datasets]
    return {name: [t for part in parts for t in part[name]] for name in SPLITS}


def tracks_in_split(dataset: Dataset, split: str) -> list[Track]:
    """A dataset's tracks in `split` ("all": every one): by its split file, else its manifest's
    split column. A split with no tracks is refused."""
    if split == "all":
        return dataset.tracks
    if dataset.split_file:
        parts = split_tracks(dataset.tracks, split_file=dataset.split_file)
    else:
        parts = {s: [t for t in dataset.tracks if t.split == s] for s in SPLITS}
    if not parts[split]:
        present = ", ".join(s for s in SPLITS if parts[s]) or "none"
        raise MgcError(f"{dataset.source}: no tracks in split {split!r}; splits present: {present}")
    return parts[split]


# ---------------------------------------------------------------- cache


@dataclass
class CacheReport:
    cached: int  # newly decoded
    reused: int  # already in the cache and unchanged
    failed: list[tuple[str, str]]  # (path, error)


def preprocess(
    tracks: list[Track], out: str | Path, on_track: Callable[[Track], None] | None = None
) -> CacheReport:
    """Decode every track once into `out` (16 kHz int16 .npy + index.json); reuse what is there.

    Undecodable files are listed in the report and the index, never fatal. The index is
    rewritten atomically after every track, so an interrupted run loses nothing.
    """
    out = Path(out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    index = _read_index(out)
    known = {entry["path"]: entry for entry in index["tracks"]}
    report = CacheReport(0, 0, [])
    entries: dict[str, dict] = {}
    failed: list[dict] = []
    for track in tracks:
        stamp = _source_stamp(track.path)
        entry = known.get(track.path)
        if entry and entry["stamp"] == stamp and (out / entry["cache_file"]).is_file():
            report.reused += 1
        else:
            try:
                wave = load(track.path)
            except AudioError as error:
                report.failed.append((track.path, str(error)))
                failed.append({"path": track.path, "error": str(error)})
                if on_track:
                    on_track(track)
                continue
            cache_file = f"audio/{hashlib.sha1(track.path.encode()).hexdigest()[:16]}.npy"
            save_npy_atomic(out / cache_file, _to_int16(wave))
            entry = {"path": track.path, "stamp": stamp, "cache_file": cache_file, "samples": len(wave)}
            report.cached += 1
        entries[track.path] = {**entry, "key": track.key, "label": track.label, "split": track.split}
        # Until the run ends, keep the entries not yet revisited: they are still valid cache.
        _write_index(out, list({**known, **entries}.values()), failed)
        if on_track:
            on_track(track)
    _write_index(out, list(entries.values()), failed)
    return report


def read_cache(cache: str | Path) -> list[Track]:
    """The tracks of a cache folder, each pointing at its decoded audio."""
    cache = Path(cache)
    index = _read_index(cache)
    return [
        Track(e["key"], e["path"], e["label"], e["split"], str(cache / e["cache_file"]))
        for e in index["tracks"]
    ]


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


def _source_stamp(path: str) -> list[int]:
    stat = os.stat(path)
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


def _write_index(cache: Path, entries: list[dict], failed: list[dict]) -> None:
    index = {"format": CACHE_FORMAT, "sample_rate": SAMPLE_RATE, "tracks": entries, "failed": failed}
    write_text_atomic(cache / "index.json", json.dumps(index, indent=1))


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def check_output_folder(folder: str | Path) -> None:
    """Refuse, in one line, a folder that files cannot be written into (creating it if missing).

    Commands call this before their work, so a bad output path costs nothing, not a whole run.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MgcError(f"{folder}: is a file, not a folder to write into")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):  # the only sure test: permissions, read-only mounts, quotas
            pass
    except OSError as error:
        raise MgcError(f"{folder}: cannot write there ({error.strerror or error})") from None


def check_output_file(path: str | Path) -> None:
    """Refuse, in one line, a file that cannot be written: a folder, or in a folder that cannot be written into."""
    path = Path(path)
    if path.is_dir():
        raise MgcError(f"{path}: is a folder; name a file to write")
    check_output_folder(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- training clips


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's randomness: a resumed run draws what the uninterrupted one drew."""
    return seed * 1_000_003 + epoch


@dataclass
class Augment:
    """Training augmentation: the paper's gain and noise, plus what helps on small data.

    The noise's standard deviation is `noise_std` times the clip's own: every model
    layer-normalises its input, so this is noise of σ = noise_std on the normalised
    waveform (34 dB below the music at 0.02). A fixed σ on the raw samples would bury
    quiet passages and teach the models a noise floor that real recordings lack.

    With probability `mix_prob` a clip is mixed with a random clip of another track of its
    genre (its own track when it is the genre's only one), at the same loudness and a share
    λ ~ U(0, 0.5): new examples of a thin genre, label unchanged. `masks` time masks and
    `masks` frequency masks (SpecAugment-style, Park et al. 2019) are cut in the waveform,
    so they serve every front end alike: a time mask silences up to `MAX_TIME_MASK` of the
    clip; a frequency mask removes a band up to `MAX_FREQ_MASK` of the mel scale wide.
    Random time shifts need no option: every training clip starts at a random sample.
    """

    gain_low: float = 0.9
    gain_high: float = 1.1
    noise_std: float = 0.02
    mix_prob: float = 0.0
    masks: int = 0


MAX_TIME_MASK = 0.1  # of the clip's length
MAX_FREQ_MASK = 0.1  # of the mel range from 0 Hz to Nyquist


def _mel(hz: np.ndarray | float) -> np.ndarray | float:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mask_clip(clip: np.ndarray, masks: int, rng: np.random.Generator) -> np.ndarray:
    """`masks` random time spans zeroed and `masks` random mel bands removed (see `Augment`)."""
    clip = clip.copy()
    n = len(clip)
    spectrum = np.fft.rfft(clip)
    bin_mels = _mel(np.linspace(0.0, SAMPLE_RATE / 2, len(spectrum)))
    for _ in range(masks):
        width = rng.uniform(0.0, MAX_FREQ_MASK) * bin_mels[-1]
        low = rng.uniform(0.0, bin_mels[-1] - width)
        spectrum[(bin_mels >= low) & (bin_mels <= low + width)] = 0.0
    clip = np.fft.irfft(spectrum, n).astype(np.float32)
    for _ in range(masks):
        width = int(rng.uniform(0.0, MAX_TIME_MASK) * n)
        start = int(rng.integers(0, n - width + 1))
        clip[start : start + width] = 0.0
    return clip


class TrainClips:
    """A map-style dataset of random training clips, `clips_per_track` per track per epoch.

    Which clips an epoch draws, and their augmentation, depend only on (seed, epoch, index),
    never on worker count or order: resuming at an epoch boundary repeats the run exactly.
    With `balanced`, tracks are drawn with probability inversely proportional to their
    class size instead of each track equally often.
    """

    def __init__(
        self,
        tracks: list[Track],
        labels: list[str],
        clips_per_track: int = 4,
        clip_samples: int = CLIP_SAMPLES,
        augment: Augment | None = None,
        balanced: bool = False,
        seed: int = 0,
    ):
        if not tracks:
            raise MgcError("no training tracks")
        self.tracks = tracks
        self.targets = [labels.index(t.label) for t in tracks]
        self.clips_per_track = clips_per_track
        self.clip_samples = clip_samples
        self.augment = augment
        self.balanced = balanced
        self.seed = seed
        self.lengths = [len(load_wave(t)) for t in tracks]
        self.genre_tracks = {y: [i for i, t in enumerate(self.targets) if t == y] for y in set(self.targets)}
        self.plan: list[tuple[int, int]] = []
        self.epoch = -1
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        import torch

        self.epoch = epoch
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        n = len(self.tracks) * self.clips_per_track
        if self.balanced:
            counts = Counter(self.targets)
            weights = torch.tensor([1.0 / counts[y] for y in self.targets])
            order = torch.multinomial(weights, n, replacement=True, generator=generator).tolist()
        else:
            order = torch.randperm(n, generator=generator).remainder(len(self.tracks)).tolist()
        fractions = torch.rand(n, generator=generator, dtype=torch.float64).tolist()
        self.plan = [
            (i, int(f * max(0, self.lengths[i] - self.clip_samples + 1))) for i, f in zip(order, fractions)
        ]

    def __len__(self) -> int:
        return len(self.plan)

    def _segment(self, track: int, start: int) -> np.ndarray:
        segment = to_float(load_wave(self.tracks[track])[start : start + self.clip_samples])
        return clip_at(segment, 0, self.clip_samples)

    def __getitem__(self, index: int):
        import torch

        track, start = self.plan[index]
        clip = self._segment(track, start)
        if self.augment:
            # numpy, not torch: small torch ops start OpenMP threads that fight the model's for
            # the cores, which made this 20x slower beside a training step on 2 cores.
            rng = np.random.default_rng((self.seed, self.epoch, index))
            a = self.augment
            if rng.random() < a.mix_prob:
                pool = [i for i in self.genre_tracks[self.targets[track]] if i != track] or [track]
                other = pool[int(rng.integers(len(pool)))]
                other_clip = self._segment(other, int(rng.integers(max(1, self.lengths[other] - self.clip_samples + 1))))
                share = rng.uniform(0.0, 0.5)
                loudness = clip.std() / max(float(other_clip.std()), 1e-8)
                clip = (1.0 - share) * clip + share * loudness * other_clip
            if a.masks:
                clip = mask_clip(clip, a.masks, rng)
            gain = rng.uniform(a.gain_low, a.gain_high)
            noise = rng.standard_normal(len(clip), dtype=np.float32) * (a.noise_std * clip.std())
            clip = ((clip + noise) * gain).astype(np.float32)
        return torch.from_numpy(clip), self.targets[track]


def describe_counts(tracks: list[Track], labels: list[str]) -> str:
    return ", ".join(f"{label} {n}" for label, n in zip(labels, class_counts(tracks, labels)))
