"""Shared fixtures: small generated audio and one tiny trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED_GTZAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "gtzan"

# A tiny MS-SincResNet: same code path as the paper's model, a few thousand times cheaper.
TINY = {
    "n_filters": 8,
    "kernel_sizes": (33, 65, 129),
    "pooled_width": 32,
    "backbone_width": 8,
    "fc_hidden": 16,
    "clip_samples": 8000,
}
TINY_SETS = [
    "--set", "n_filters=8", "--set", "kernel_sizes=[33,65,129]", "--set", "pooled_width=32",
    "--set", "backbone_width=8", "--set", "fc_hidden=16", "--set", "clip_samples=8000",
]


def write_tone(path: Path, freq: float, seconds: float, rate: int = 22050, channels: int = 1, seed: int = 0, **kw) -> Path:
    """A sine tone with a little noise, written with soundfile (format from the suffix unless given)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    data = np.repeat(mono[:, None], channels, axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, rate, **kw)
    return path


def make_tone_dataset(root: Path, per_class: int = 6, seconds: float = 2.0) -> Path:
    """Two clearly separable genres: low tones (150-400 Hz) and high tones (2.5-5 kHz)."""
    rng = np.random.default_rng(1)
    for label, (low, high) in {"low": (150, 400), "high": (2500, 5000)}.items():
        for i in range(per_class):
            write_tone(root / label / f"{label}.{i:05d}.wav", rng.uniform(low, high), seconds, seed=i)
    return root


@pytest.fixture
def one_thread():
    # Tiny models on a busy 2-core machine: a second spinning OpenMP thread made a 0.2 s test
    # take over 10 s.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tone_dataset(tmp_path_factory) -> Path:
    return make_tone_dataset(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="session")
def trained_run(tone_dataset, tmp_path_factory) -> Path:
    """A tiny model trained on the tone dataset; its run folder holds best.pt and last.pt."""
    from mgcli.training.datasets import find_tracks, labels_of, split_tracks
    from mgcli.training.config import TrainConfig
    from mgcli.training.loop import fit

    tracks = find_tracks(tone_dataset)
    split = split_tracks(tracks, valid_fraction=0.34)
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(epochs=10, batch_size=8, warmup_epochs=0, lr=0.01, eval_hop_seconds=0.5)
    fit("ms-sincresnet", split["train"], split["valid"], labels_of(tracks), out, config, TINY, "cpu", verbose=False)
    return out
