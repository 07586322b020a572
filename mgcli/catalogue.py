"""Catalogues: the audio files under the paths a user names, and a stable share of them per machine."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from . import MgcError
from .audio import AUDIO_SUFFIXES


def find_audio(paths: Iterable[str | Path]) -> list[Path]:
    """Audio files named, or found recursively in the folders named, sorted.

    Symlinks are followed, but each real folder is entered once, so a link loop (`a/loop -> ..`)
    ends, and each real file is kept once, under the first path found for it. A folder that
    cannot be read is kept among the files, so that decoding it reports why (audio.stream), as
    for any file that cannot be read, instead of its files going missing without a word.
    """
    found: dict[str, Path] = {}  # real path -> the path found
    entered: set[str] = set()  # real folders

    for path in map(Path, paths):
        if not path.is_dir():
            found.setdefault(os.path.realpath(path), path)  # named explicitly: a bad one is reported, not skipped
            continue
        # Depth first, from a list rather than by recursion (as os.walk does before Python 3.12), so
        # that a folder nested thousands deep is searched like any other; each (folder, its real
        # path), the real path of an entry that is no link being its folder's and its name.
        waiting = [(path, os.path.realpath(path))]
        while waiting:
            folder, real = waiting.pop()
            if real in entered:
                continue
            entered.add(real)
            try:
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda entry: entry.name)  # the first path found must not depend on the file system's order
            except OSError:
                found.setdefault(real, folder)
                continue
            folders = []
            for entry in entries:
                entry_real = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real, entry.name)
                if _is_folder(entry):
                    folders.append((folder / entry.name, entry_real))
                elif entry.name.lower().endswith(AUDIO_SUFFIXES):
                    found.setdefault(entry_real, folder / entry.name)
            waiting.extend(reversed(folders))
    return sorted(found.values())


def _is_folder(entry: os.DirEntry) -> bool:
    """Whether an entry is a folder, through symlinks; one that cannot be looked at is not."""
    try:
        return entry.is_dir()
    except OSError:
        return False


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
        # fsencode: a name that is not UTF-8 hashes as its bytes; str.encode would abort the run.
        return int.from_bytes(hashlib.sha1(os.fsencode(key(file))).digest()[:8], "big") % count

    return [file for file in files if shard(file) == index]
