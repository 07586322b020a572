"""Datasets: labelled tracks, their splits and folds, and several datasets used as one.

A dataset is a folder-per-genre tree (`DATA/<genre>/*.wav`), a CSV manifest
(`path,label[,split]`, paths relative to the CSV) or a preprocess cache (see `cache`).

A track's label is one genre, or a set of genres written `pop|rock|metal` (a manifest's
`label`, a split file's `genres` column): the track is one of them, and which one nobody
says, as AllMusic files pop, rock and heavy metal under one "Pop/Rock". Training takes the
loss on the set's summed probability and scoring counts an answer in the set as right; a set
is never a class of its own (`genres_of`, `target_names`, `target_masks`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import MgcError
from ..catalogue import find_audio
from ..files import check_output_folder, read_csv_rows
from ..writers import CSV_COLUMNS
from .cache import CacheReport, Track, preprocess, read_cache

SPLITS = ("train", "valid", "test")
GENRE_SET = "|"  # joins the genres of a set label: "metal|pop|rock"


def parse_label(text: str) -> str:
    """A label as written (`rock`, `pop | rock|metal`) in its one spelling: a genre, or a set's
    distinct genres sorted and joined by GENRE_SET; "" for none."""
    genres = sorted({genre.strip() for genre in text.split(GENRE_SET)} - {""})
    return GENRE_SET.join(genres)


def genres_of(label: str) -> list[str]:
    """The genres a label names: itself, or a set's members."""
    return label.split(GENRE_SET)


def target_names(labels: list[str], tracks: Iterable[Track]) -> list[str]:
    """What a training target indexes: each of the model's genres, then each set label the tracks carry."""
    return labels + sorted({t.label for t in tracks if GENRE_SET in t.label})


def target_masks(names: list[str], labels: list[str]) -> np.ndarray:
    """[len(names), len(labels)] booleans: the genres each target name counts as right (a set's genres
    the model lacks count as nothing)."""
    return np.array([[label in genres_of(name) for label in labels] for name in names], dtype=bool)


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


def _read_records(path: Path, columns: tuple[str, ...], what: str) -> list[dict[str, str]]:
    """The rows of a CSV file with a header naming `columns` (among others), as dicts ("" for a
    missing cell); `what` the file is, for the one-line refusals."""
    header, *rows = read_csv_rows(path) or [[]]
    if not set(columns) <= set(header):
        raise MgcError(f"{path}: {what} needs a header with columns {','.join(columns)}")
    if not rows:
        raise MgcError(f"{path}: {what} with a header and no rows names no tracks")
    return [dict(zip(header, row + [""] * (len(header) - len(row)))) for row in rows]


def _read_manifest(manifest: Path) -> list[Track]:
    rows = _read_records(manifest, ("path", "label"), "a manifest")
    tracks = []
    for line, row in enumerate(rows, start=2):
        split = (row.get("split") or "").strip()
        if split and split not in SPLITS:
            raise MgcError(f"{manifest}: unknown split {split!r} (use {', '.join(SPLITS)})")
        label = parse_label(row["label"])
        if not label:
            raise MgcError(f"{manifest}: line {line} has no label")
        path = manifest.parent / row["path"]
        tracks.append(Track(row["path"], str(path), label, split))
    _refuse_conflicts(manifest, [(t.key, f"{t.label} {t.split}".strip()) for t in tracks])
    return list({t.key: t for t in tracks}.values())  # a row given twice is one track


def _refuse_conflicts(source: Path, entries: list[tuple[str, str]]) -> None:
    """Refuse a manifest or split file that names one path twice with different values: which one
    holds is a guess no run should make silently. Lines count from the header's, 1."""
    first: dict[str, tuple[int, str]] = {}
    for line, (path, value) in enumerate(entries, start=2):
        seen_line, seen = first.setdefault(path, (line, value))
        if seen != value:
            raise MgcError(f"{source}: line {line} gives {path} as {value!r}, line {seen_line} as {seen!r}; keep one")


def labels_of(tracks: Iterable[Track]) -> list[str]:
    """The genres the tracks' labels name (a set label's members, never the set): the labels a model
    trained on `tracks` has. One named as a column of predict's CSV is refused, since a reader's
    row["path"] would then be a probability."""
    labels = sorted({genre for t in tracks for genre in genres_of(t.label)})
    taken = [label for label in labels if label in CSV_COLUMNS]
    if taken:
        raise MgcError(f"label {taken[0]!r} is also the name of a column of predict's CSV "
                       f"({', '.join(CSV_COLUMNS)}); rename that genre")
    return labels


def read_split_file(split_file: str | Path) -> dict[str, tuple[str, str]]:
    """A split file's rows: path -> (split, label), the label from its optional `genres` column
    (one genre or a set, `pop|rock|metal`; "" where the column is absent or empty)."""
    if not Path(split_file).is_file():
        raise MgcError(f"{split_file}: no such split file")
    rows = _read_records(Path(split_file), ("path", "split"), "a split file")
    entries = [(row["path"], (row["split"].strip(), parse_label(row.get("genres", "")))) for row in rows]
    for line, (_, (split, _)) in enumerate(entries, start=2):
        if split and split not in SPLITS:  # its tracks would be in no split, dropped without a word
            raise MgcError(f"{split_file}: line {line} gives the unknown split {split!r} (use {', '.join(SPLITS)})")
    _refuse_conflicts(Path(split_file), [(path, " ".join(filter(None, row))) for path, row in entries])
    return dict(entries)


def apply_split_file(tracks: list[Track], split_file: str | Path) -> list[Track]:
    """Assign each track the split its split file gives (matched by path, else by file stem), and
    the label of its `genres` column where it has one (AllMusic's `pop_rock/` folder holds `pop|rock|metal`).

    Tracks the file does not name are dropped: a split file defines the experiment.
    """
    by_key = read_split_file(split_file)
    # Fallback on the file stem, so a split file written for .wav also fits an .ogg copy.
    by_stem = {Path(key).stem: row for key, row in by_key.items()}
    assigned = []
    for track in tracks:
        split, label = by_key.get(track.key) or by_stem.get(Path(track.key).stem) or ("", "")
        if split:
            assigned.append(replace(track, split=split, label=label or track.label))
    if not assigned:
        raise MgcError(f"{split_file}: names none of the dataset's tracks")
    return assigned


def absent_from_split_file(tracks: list[Track], split_file: str | Path, splits: Iterable[str]) -> list[str]:
    """The paths a split file names for `splits` that match none of the tracks (by path, or by file stem)."""
    keys = {t.key for t in tracks}
    stems = {Path(t.key).stem for t in tracks}
    wanted = set(splits)
    return [
        path for path, (split, _) in read_split_file(split_file).items()
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
        label, count = min(Counter(t.label for t in tracks).items(), key=lambda item: item[1])
        if folds > count:
            raise MgcError(f"--folds {folds}: genre {label!r} has {count} tracks, so some folds would hold none "
                           f"of it out; use --folds {count} or fewer")
        fold_of = stratified_folds([t.label for t in tracks], folds, seed)
        tracks = [replace(t, split="valid" if f == fold else "train") for t, f in zip(tracks, fold_of)]
    elif not any(t.split for t in tracks):
        n_folds = max(2, round(1 / valid_fraction)) if valid_fraction > 0 else None
        fold_of = stratified_folds([t.label for t in tracks], n_folds, seed) if n_folds else [1] * len(tracks)
        tracks = [replace(t, split="valid" if f == 0 else "train") for t, f in zip(tracks, fold_of)]
    return {name: [t for t in tracks if t.split == name] for name in SPLITS}


def class_counts(tracks: Iterable[Track], names: list[str]) -> list[int]:
    """How many tracks carry each label of `names` (genres, or `target_names` with the set labels)."""
    counts = Counter(t.label for t in tracks)
    return [counts.get(name, 0) for name in names]


def describe_counts(tracks: list[Track], labels: list[str]) -> str:
    names = target_names(labels, tracks)
    return ", ".join(f"{name} {n}" for name, n in zip(names, class_counts(tracks, names)))


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
    already is decoded into its own first, and reused next time; `notify` hears where, and
    which tracks could not be decoded. The
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
            for _, error in skipped if notify else ():
                notify(f"skipped: {error}")
        tracks = [replace(t, collection=str(source)) for t in tracks]
        datasets.append(Dataset(Path(source), tracks, split_file, skipped))
    return datasets


def split_datasets(datasets: list[Dataset], **rule) -> dict[str, list[Track]]:
    """{"train", "valid", "test"} -> the tracks of every dataset, each dataset split by its own
    split file, else by `rule` (`split_tracks`' folds, fold, valid_fraction and seed)."""
    parts = [split_tracks(d.tracks, split_file=d.split_file, **rule) for d in datasets]
    return {name: [t for part in parts for t in part[name]] for name in SPLITS}


def by_collection(items: Iterable, collections: Iterable[str]) -> dict[str, list]:
    """Items (tracks, or their indices) grouped by the dataset each came from (`Track.collection`),
    in the order the datasets were given."""
    groups: dict[str, list] = {}
    for item, collection in zip(items, collections):
        groups.setdefault(collection, []).append(item)
    return groups


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


def warn_absent(datasets: list[Dataset], splits: tuple[str, ...], notify: Callable[[str], None]) -> None:
    """Name the tracks each split file gives to `splits` that its dataset lacks: else they go unscored without a word."""
    for dataset in datasets:
        absent = absent_from_split_file(dataset.tracks, dataset.split_file, splits) if dataset.split_file else []
        if absent:
            shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            notify(f"warning: {dataset.split_file} names {len(absent)} {'/'.join(splits)} track(s) missing from {dataset.source}: {shown}")


def preprocess_dataset(
    data: str | Path, out_dir: str | Path, on_track: Callable[[int, int], None] | None = None
) -> CacheReport:
    """`mgc preprocess`: decode the dataset `data` (see `find_tracks`) into the cache `out_dir`.

    `on_track(done, total)` hears of every track as it is done.
    """
    check_output_folder(out_dir)
    tracks = find_tracks(data)
    return preprocess(tracks, out_dir, on_track)
