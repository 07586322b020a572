"""mgcli: music genre classification from the command line.

The library API is `load_model` and `classify`, and one call per `mgc` command (see
docs/architecture.md); `mgcli.cli` is a thin command-line layer over it. Torch is imported
only by what needs it (training, the PyTorch engine), so that `mgc --help` answers at once and
`mgc predict` on the CPU, which runs onnxruntime, never waits for it.
"""

from __future__ import annotations

__version__ = "0.1.0"


class MgcError(Exception):
    """An error the user can act on: the CLI prints it on one line, no traceback."""


def first_line(error: BaseException | str) -> str:
    """The first line of an error's message (200 characters at most), for one-line reports; its type without one."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


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
