"""Checkpoints: everything needed to rebuild a model, in one file, loaded without pickled code.

A checkpoint is a plain dict (so `torch.load(..., weights_only=True)` reads it):
  format        "mgcli-checkpoint-1"
  model         registry name, e.g. "ms-sincresnet"
  config        the model's config dataclass as a dict
  labels        class names, in logit order
  audio         {"sample_rate", "clip_samples"}
  state_dict    the weights
  train         (training checkpoints only) epoch, optimiser state, settings, history
  temperatures  (calibrated checkpoints only, `mgc calibrate`) {aggregation: temperature}
  novelty       (calibrated checkpoints of networks that keep a tagger) novelty.NoveltyScale as a dict
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import MgcError, first_line
from .audio import SAMPLE_RATE
from .files import check_outputs, write_atomic
from .models import build
from .models.musicnn import ensemble_of
from .novelty import NoveltyScale

FORMAT = "mgcli-checkpoint-1"


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
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: torch's own writer reports a full disk as a RuntimeError
            torch.save(checkpoint, f)

    write_atomic(path, save)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise MgcError(f"{path}: is a folder, not a checkpoint (a run's is {path / 'best.pt'})")
    if not path.is_file():
        raise MgcError(f"{path}: no such checkpoint")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise MgcError(f"{path}: not a checkpoint (not a file written by torch.save)")
    _check_crcs(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise MgcError(f"{path}: not a readable checkpoint ({load_reason(error)})") from None
    required = {"format", "model", "config", "labels", "audio", "state_dict"}
    if not isinstance(checkpoint, dict) or not required <= set(checkpoint) or checkpoint["format"] != FORMAT:
        raise MgcError(f"{path}: not an mgcli checkpoint")
    if checkpoint["audio"]["sample_rate"] != SAMPLE_RATE:
        raise MgcError(f"{path}: made for {checkpoint['audio']['sample_rate']} Hz audio, mgcli uses {SAMPLE_RATE}")
    return checkpoint


def load_reason(error: Exception) -> str:
    """Why torch.load refused a file, in one line: for a pickle that holds code or objects, the line
    naming them, which follows torch's paragraph about its defaults (and its advice to load the file
    unchecked, which mgc never gives)."""
    named = [line for line in str(error).splitlines() if "GLOBAL" in line or "Unsupported" in line]
    return first_line(named[0] if named else error)


def _check_crcs(path: Path) -> None:
    """Refuse a damaged file: torch.load does not check the CRC its zip archive keeps of every member,
    so flipped bytes in the weights would load, and answer, without a word."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as error:  # a damaged member header
        raise MgcError(f"{path}: damaged checkpoint ({first_line(error)}); copy or train it again") from None
    if damaged:
        raise MgcError(f"{path}: damaged checkpoint ({damaged} fails its CRC check); copy or train it again")


def network_from_checkpoint(checkpoint: dict, source: str = "checkpoint") -> nn.Module:
    """Rebuild the network a checkpoint describes, on the CPU, and load its weights."""
    network = build(checkpoint["model"], **checkpoint["config"])
    labels = list(checkpoint["labels"])
    if len(labels) != network.config.n_classes:  # every prediction would name the wrong genre, or crash
        raise MgcError(f"{source}: {len(labels)} labels for a model with {network.config.n_classes} outputs")
    if len(set(labels)) != len(labels):
        raise MgcError(f"{source}: its labels repeat ({', '.join(sorted({l for l in labels if labels.count(l) > 1}))})")
    try:
        network.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise MgcError(f"{source}: its weights do not fit model {checkpoint['model']!r} ({first_line(error)})") from None
    return network


def temperatures_of(checkpoint: dict, source: str = "checkpoint") -> dict[str, float]:
    """The calibration temperatures a checkpoint carries ({} when uncalibrated), each a positive finite number."""
    temperatures = checkpoint.get("temperatures", {})
    if not isinstance(temperatures, dict) or not all(
        isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for t in temperatures.values()
    ):
        raise MgcError(f"{source}: its calibration temperatures are damaged; calibrate it again (`mgc calibrate`)")
    return {str(aggregation): float(t) for aggregation, t in temperatures.items()}


def novelty_of(checkpoint: dict, source: str = "checkpoint") -> NoveltyScale | None:
    """The novelty scale a checkpoint carries (None when it has none)."""
    fields = checkpoint.get("novelty")
    return None if fields is None else NoveltyScale.from_dict(fields, source)


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
    networks = [network_from_checkpoint(c, str(p)) for c, p in zip(checkpoints, paths)]
    return make_checkpoint("musicnn-ensemble", ensemble_of(networks), labels)


def ensemble(members: list[str | Path], out_file: str | Path) -> dict:
    """`mgc ensemble`: write the musicnn-ensemble checkpoint of `members` (see `ensemble_checkpoint`) to `out_file`."""
    check_outputs([out_file], members)
    checkpoint = ensemble_checkpoint(members)
    save_checkpoint(checkpoint, out_file)
    return checkpoint
