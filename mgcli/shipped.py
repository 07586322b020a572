"""The shipped weights: where they lie, and which of them `predict` and `tags` use by default.

Installed, they are package data in mgcli/weights/; in a source checkout (or an editable
install) they sit in weights/ beside the package. Each `.pt` checkpoint may have an `.onnx`
twin exported from it (`make onnx`), which the ONNX engine runs without importing torch.
"""

from __future__ import annotations

from pathlib import Path

from . import MgcError

_PACKAGE = Path(__file__).resolve().parent
WEIGHTS_DIR = next((d for d in (_PACKAGE / "weights", _PACKAGE.parent / "weights") if d.is_dir()), _PACKAGE / "weights")
DEFAULT_TAGGER = WEIGHTS_DIR / "musicnn-msd.pt"  # musicnn's Million Song Dataset tagger; musicnn-mtt.pt: MagnaTagATune's


def default_weights() -> Path:
    path = WEIGHTS_DIR / "default.pt"
    if not path.is_file():
        raise MgcError(f"no shipped weights at {path}: pass --weights CKPT (make one with `mgc train`)")
    return path
