"""Files mgcli writes: atomically, so that readers see the old or the new content and never half
of it, and only where they can be written, which commands check before their work."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import MgcError


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` writes a temporary file beside `path`, which then replaces `path` in one step:
    an interrupted write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
            np.save(f, array)

    write_atomic(path, save)


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
