"""mgcli: music genre classification from the command line.

The library API is `load_model` and `classify`, and one call per `mgc` command (see
docs/architecture.md); `mgcli.cli` is a thin command-line layer over it. Torch is imported
only by what needs it (training, the PyTorch engine), so that `mgc --help` answers at once and
`mgc predict` on the CPU, which runs onnxruntime, never waits for it.
"""

from __future__ import annotations

import re

__version__ = "0.1.0"


class MgcError(Exception):
    """An error the user can act on: the CLI prints it on one line, no traceback."""


def first_line(error: BaseException | str) -> str:
    """The first line of an error's message (200 characters at most), for one-line reports; its type without one."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


# C0 and C1 control characters, and the stand-ins (U+DC80-U+DCFF) of the bytes of a name that is not UTF-8.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\udc80-\udcff]")


def printable(text: str) -> str:
    """`text` safe to print on a terminal: a control character (a file name holding ESC [2J would
    clear the screen) or a byte of a name that is not UTF-8 (which a UTF-8 terminal cannot be sent)
    becomes an escape, "\\x1b" or "\\xff"."""
    return _UNPRINTABLE.sub(lambda char: f"\\x{ord(char[0]) & 0xFF:02x}", text)


def quiet(message: str) -> None:
    """The default `notify` of library calls: their progress messages go nowhere."""


def __getattr__(name: str):
    """`mgcli.load_model` and `mgcli.classify`, imported on first use."""
    if name == "load_model":
        from .inference import load_model

        return load_model
    if name == "classify":
        from .inference import classify

        return classify
    raise AttributeError(f"module 'mgcli' has no attribute {name!r}")
