"""The benchmark runs end to end in its quick mode (it prints figures; it asserts none)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def test_quick_benchmark_prints_every_table():
    done = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for heading in ["predict, 3-s WAV", "fast path", "naive reference", "tracks/min", "clips/s", "start-up", "peak RSS", "onnx engine", "a music library", "network's share"]:
        assert heading in done.stdout
