"""Files mgcli writes: atomically, so that readers see the old or the new content and never half
of it, only where they can be written, which commands check before their work, and by one run
at a time."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from . import MgcError


def is_device(path: str | Path) -> bool:
    """Whether `path` is a device or a pipe (/dev/stdout, /dev/null, a FIFO): an output written in
    place, since replacing it would not write to it."""
    return os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` writes a temporary file beside `path`, which then replaces `path` in one step:
    an interrupted or failed write (a full disk: MgcError) leaves the previous file intact and no
    temporary file behind. Each write has a temporary name of its own, so two runs never share one.

    A symlink is written through, into its target (the link stays a link); a device or pipe is
    written in place (`write(path)`)."""
    if is_device(path):
        try:
            write(Path(path))
        except OSError as error:
            raise MgcError(f"{path}: cannot write it ({error.strerror or error})") from None
        return
    path = Path(os.path.realpath(path))
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask's mode, as open() gives
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise MgcError(f"{path}: cannot write it ({error.strerror or error}); any earlier file there is intact") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_bytes(encode(text)))


def encode(text: str) -> bytes:
    """Text as the bytes to write: UTF-8, with file names that are not UTF-8 written back as the bytes they are."""
    return text.encode("utf-8", "surrogateescape")


def read_csv_rows(path: str | Path, errors: str = "strict") -> list[list[str]]:
    """A CSV file's rows, blank lines left out. Text that is not UTF-8 (with `errors="strict"`), a NUL
    byte or a field over the csv module's limit (128 KiB) is refused in one line that names its line."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8", errors)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise MgcError(f"{path}: line {line} is not UTF-8 text; save the file as UTF-8") from None
    if "\x00" in text:  # no path or label holds one, and os calls refuse it
        line = text[: text.index("\x00")].count("\n") + 1
        raise MgcError(f"{path}: line {line} holds a NUL byte, so it is no CSV text mgc reads")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return [row for row in reader if row]
    except csv.Error as error:
        raise MgcError(f"{path}: line {reader.line_num} is no CSV text mgc reads ({error})") from None


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to the temporary name
            np.save(f, array)

    write_atomic(path, save)


class AppendedFile:
    """A file written atomically with its first lines, then appended to, each line on disk as it is written.

    Lines go straight to the file, never to a buffer that a failure could lose. A line that cannot
    be written (a full disk) raises MgcError and leaves the file with its earlier lines whole. A
    file deleted during the run (or its folder) is written again from what it held when it is closed.
    """

    def __init__(self, path: str | Path, text: str = ""):
        self.device = is_device(path)
        self.path = Path(path if self.device else os.path.realpath(path))  # a symlink's target, written through it
        if self.device:
            self.fd = os.open(self.path, os.O_WRONLY)
            self.append(text)
        else:
            write_atomic(self.path, lambda tmp: tmp.write_bytes(encode(text)))
            self.fd = os.open(self.path, os.O_RDWR | os.O_APPEND)

    def append(self, text: str) -> None:
        data = encode(text)
        size = None if self.device else os.lseek(self.fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError as error:
            if size is not None:
                os.ftruncate(self.fd, size)  # no torn line at the end
            raise MgcError(f"{self.path}: cannot write it ({error.strerror or error}); its earlier lines are kept") from None

    def close(self) -> None:
        if self.fd is None:
            return
        try:
            if not self.device and not self.path.exists():
                os.lseek(self.fd, 0, os.SEEK_SET)
                content = b"".join(iter(lambda: os.read(self.fd, 1 << 20), b""))
                write_atomic(self.path, lambda tmp: tmp.write_bytes(content))
        finally:
            os.close(self.fd)
            self.fd = None


class OutputLock:
    """This run's hold on an output file, so that a second run writing it is refused at once.

    The lock is an flock on `<file>.lock` beside it (beside a symlink's target, so that every name
    of a file takes the one lock), which the kernel releases when the process ends, however it
    ends; `release` also removes that file. A device or pipe takes no lock: it holds no rows to keep.
    """

    def __init__(self, path: str | Path):
        self.fd: int | None = None
        if is_device(path):
            return
        real = Path(os.path.realpath(path))
        self.lock_file = real.with_name(real.name + ".lock")
        self.lock_file.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise MgcError(f"{path}: another run is writing it; wait for that run to end, or write elsewhere") from None
            if self._holds(fd):
                self.fd = fd
                return
            os.close(fd)  # the run that held it removed the lock file as we opened it: take the new one

    def _holds(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.lock_file))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is not None:
            self.lock_file.unlink(missing_ok=True)  # while still held: no other run can hold this file now
            os.close(self.fd)
            self.fd = None


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
    """Refuse, in one line, a file that cannot be written: a folder, or in a folder that cannot be
    written into (a symlink's target's folder), or `-`, which Unix tools read as standard output and
    would here be a file of that name. A device or pipe is written in place."""
    path = Path(path)
    if str(path) == "-":
        raise MgcError("-: would be a file named '-'; name a file, or /dev/stdout for standard output")
    if path.is_dir():
        raise MgcError(f"{path}: is a folder; name a file to write")
    if not is_device(path):
        check_output_folder(Path(os.path.realpath(path)).parent)


def check_outputs(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path]) -> None:
    """What every command that writes checks before its work: each output can be written
    (check_output_file), and none is an input or another output (check_outputs_apart)."""
    outputs = list(outputs)
    for output in filter(None, outputs):
        check_output_file(output)
    check_outputs_apart(outputs, inputs)


def check_outputs_apart(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path]) -> None:
    """Refuse an output that is also an input (writing it would destroy what the run reads), that
    another output names too (one would silently replace the other), or that is another output's
    NAME.lock (OutputLock's). Outputs given as None are absent."""
    read = {os.path.realpath(path) for path in inputs}
    outputs = [output for output in outputs if output]
    written: set[str] = set()
    for output in outputs:
        real = os.path.realpath(output)
        if real in read:
            raise MgcError(f"{output}: is also an input of this run; writing it would destroy it, so name another file")
        if real in written:
            raise MgcError(f"{output}: is named for two outputs; one would replace the other, so name two files")
        written.add(real)
    for output in outputs:
        real = os.path.realpath(output)
        if real.endswith(".lock") and real.removesuffix(".lock") in written:
            raise MgcError(f"{output}: is the lock file this run holds beside {real.removesuffix('.lock')}; name another file")
