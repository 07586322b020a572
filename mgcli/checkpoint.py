"""Checkpoints: everything needed to rebuild a model, in one file, loaded without pickled code.

A checkpoint is a plain dict (so `torch.load(..., weights_only=True)` reads it):
  format        "mgcli-checkpoint-1"
  model         registry name, e.g. "ms-sincresnet"
  config        the model's config dataclass as a dict
  labels        class names, in logit order
  audio         {"sample_rate", "clip_samples"}
  state_dict    the weights
  train         (training checkpoints only) epoch, optimiser state, settings, history
"""

from __future__ import annotations

import dataclasses
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import MgcError
from .audio import SAMPLE_RATE
from .models import build
from .models.musicnn import ensemble_of

FORMAT = "mgcli-checkpoint-1"
# Installed, the shipped weights are package data in mgcli/weights/; in a source checkout
# (or an editable install) they sit in weights/ beside the package.
_PACKAGE = Path(__file__).resolve().parent
WEIGHTS_DIR = next((d for d in (_PACKAGE / "weights", _PACKAGE.parent / "weights") if d.is_dir()), _PACKAGE / "weights")


@dataclass
class GenreModel:
    """A model ready to classify: the network, its labels and where it runs."""

    name: str
    network: nn.Module
    labels: list[str]
    device: torch.device
    fast_path: bool = True  # use the network's exact span_logits where it has one; False: clip by clip

    @property
    def clip_samples(self) -> int:
        return self.network.config.clip_samples

    @property
    def batch_size(self) -> int:
        """Clips per forward pass when the caller names none.

        4 on the CPU: a few clips' activations stay in the per-core cache, where 16 clips' do
        not (BBNN: a 4-min track in 1.2 s instead of 1.8; the sinc fast path is as fast with
        4-clip spans as with 16; see docs/performance.md). 16 on CUDA, which wants big batches.
        """
        return 16 if self.device.type == "cuda" else 4


def pick_device(device: str = "auto") -> torch.device:
    """"auto" is CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise MgcError(f"unknown device {device!r} (use auto, cpu or cuda)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MgcError("CUDA was asked for but no CUDA device is available (use --device cpu)")
    return torch.device(device)


def make_checkpoint(name: str, network: nn.Module, labels: list[str], train: dict | None = None) -> dict:
    checkpoint: dict[str, Any] = {
        "format": FORMAT,
        "model": name,
        "config": dataclasses.asdict(network.config),
        "labels": list(labels),
        "audio": {"sample_rate": SAMPLE_RATE, "clip_samples": network.config.clip_samples},
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
    }
    if train is not None:
        checkpoint["train"] = train
    return checkpoint


def save_checkpoint(checkpoint: dict, path: str | Path) -> None:
    """Write atomically: an interrupted save leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MgcError(f"{path}: no such checkpoint")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise MgcError(f"{path}: not a checkpoint (not a file written by torch.save)")
    _check_crcs(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise MgcError(f"{path}: not a readable checkpoint ({_first_line(error)})") from None
    required = {"format", "model", "config", "labels", "audio", "state_dict"}
    if not isinstance(checkpoint, dict) or not required <= set(checkpoint) or checkpoint["format"] != FORMAT:
        raise MgcError(f"{path}: not an mgcli checkpoint")
    if checkpoint["audio"]["sample_rate"] != SAMPLE_RATE:
        raise MgcError(f"{path}: made for {checkpoint['audio']['sample_rate']} Hz audio, mgcli uses {SAMPLE_RATE}")
    return checkpoint


def _check_crcs(path: Path) -> None:
    """Refuse a damaged file: torch.load does not check the CRC its zip archive keeps of every member,
    so flipped bytes in the weights would load, and answer, without a word."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as error:  # a damaged member header
        raise MgcError(f"{path}: damaged checkpoint ({_first_line(error)}); copy or train it again") from None
    if damaged:
        raise MgcError(f"{path}: damaged checkpoint ({damaged} fails its CRC check); copy or train it again")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def model_from_checkpoint(checkpoint: dict, device: torch.device, source: str = "checkpoint") -> GenreModel:
    """Rebuild the network a checkpoint describes and load its weights."""
    network = build(checkpoint["model"], **checkpoint["config"])
    labels = list(checkpoint["labels"])
    if len(labels) != network.config.n_classes:  # every prediction would name the wrong genre, or crash
        raise MgcError(f"{source}: {len(labels)} labels for a model with {network.config.n_classes} outputs")
    if len(set(labels)) != len(labels):
        raise MgcError(f"{source}: its labels repeat ({', '.join(sorted({l for l in labels if labels.count(l) > 1}))})")
    try:
        network.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise MgcError(f"{source}: its weights do not fit model {checkpoint['model']!r} ({first})") from None
    place(network, device).eval()
    return GenreModel(checkpoint["model"], network, labels, device)


def place(network: nn.Module, device: torch.device) -> nn.Module:
    """Move a network to `device`, its 2D convolution weights in channels-last layout.

    oneDNN runs NHWC convolutions about twice as fast as NCHW on these CPUs (BBNN: 1.9x per
    training step, 2x in inference), and CUDA's tensor cores prefer NHWC too. Networks
    without 2D convolutions are unaffected; the outputs agree to float rounding (2e-6).
    A network whose 2D convolutions have one input channel (musicnn's front end) says
    `channels_last = False`: oneDNN ran those 1.8x slower in NHWC.
    """
    layout = torch.channels_last if getattr(network, "channels_last", True) else torch.contiguous_format
    return network.to(device, memory_format=layout)


def ensemble_checkpoint(paths: list[str | Path]) -> dict:
    """One musicnn-ensemble checkpoint of trained musicnn checkpoints that share their front end."""
    if len(paths) < 2:
        raise MgcError("an ensemble needs at least 2 checkpoints")
    checkpoints = [load_checkpoint(path) for path in paths]
    labels = checkpoints[0]["labels"]
    for path, checkpoint in zip(paths, checkpoints):
        if checkpoint["model"] != "musicnn":
            raise MgcError(f"{path}: a {checkpoint['model']} checkpoint; an ensemble is made of musicnn ones")
        if checkpoint["labels"] != labels:
            raise MgcError(f"{path}: its labels differ from {paths[0]}'s")
    networks = [model_from_checkpoint(c, torch.device("cpu"), str(p)).network for c, p in zip(checkpoints, paths)]
    return make_checkpoint("musicnn-ensemble", ensemble_of(networks), labels)


def default_weights() -> Path:
    path = WEIGHTS_DIR / "default.pt"
    if not path.is_file():
        raise MgcError(f"no shipped weights at {path}: pass --weights CKPT (make one with `mgc train`)")
    return path


def load_model(weights: str | Path | None = None, device: str = "auto") -> GenreModel:
    """Load a trained classifier from a checkpoint file (default: the shipped weights).

    On the CPU it also sets torch's thread count to the cores that other processes left idle
    while it loaded (see `idle_cores`), unless OMP_NUM_THREADS says otherwise.
    """
    before = cpu_sample()
    path = Path(weights) if weights else default_weights()
    model = model_from_checkpoint(load_checkpoint(path), pick_device(device), str(path))
    if model.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(idle_cores(before))
    return model


def cpu_sample() -> tuple[float, float, float] | None:
    """(busy seconds of all cores, this process's CPU seconds, wall seconds) now; None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle + iowait
    times = os.times()
    return (sum(ticks[:8]) - idle) / tick, times.user + times.system, time.monotonic()


def idle_cores(since: tuple[float, float, float] | None) -> int:
    """How many of this machine's cores other processes left idle since `since` (at least 1).

    Why: two intra-op threads on two cores, one of them busy with another program (a browser,
    a music player), wait on each other at every operation: a model went from 26 ms to
    90-225 ms per clip there (bbnn, measured for issue 16), while one thread took 45 ms. So mgcli uses the cores it finds
    free. Its own CPU time in the window is not counted as busy.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    now = cpu_sample()
    if since is None or now is None or now[2] - since[2] < 0.02:
        return cores
    others_busy = max(0.0, (now[0] - since[0]) - (now[1] - since[1])) / (now[2] - since[2])
    return max(1, min(cores, round(cores - others_busy)))
