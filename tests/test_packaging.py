"""An installed (non-editable) mgcli finds the weights it ships."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_shipped_weights_and_finds_them(tmp_path):
    pytest.importorskip("setuptools")  # the build backend, built without network isolation
    source = tmp_path / "source"  # a copy, so that building leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("mgcli", "weights"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("mgcli-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    for name in ("default.pt", "default.onnx", "musicnn-msd.onnx"):
        assert (site / "mgcli" / "weights" / name).stat().st_size == (ROOT / "weights" / name).stat().st_size
    # musicnn's weights ship with their ISC licence notice beside them
    assert (site / "mgcli" / "weights" / "musicnn-msd.pt").is_file()
    assert "Permission to use, copy, modify" in (site / "mgcli" / "weights" / "MUSICNN-LICENSE.md").read_text()
    found = subprocess.run(
        [sys.executable, "-c", "from mgcli.inference import load_model; m = load_model(device='cpu'); print(m.name, len(m.labels), m.engine)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, check=True,
    )
    assert found.stdout.split()[1:] == ["10", "onnx"]
