"""A run's state: how it starts (new, from pretrained weights, or resumed from `last.pt`), what
every epoch saves, and which epoch is the best.

A run folder holds `last.pt` (the weights and the training state: epoch, settings, split,
history, best metrics, optimiser state), `best.pt` (the weights of the best epoch so far) and
`log.jsonl` (one line per epoch), each written atomically. Randomness is re-seeded from
(seed, epoch) at every epoch, so a run resumed from `last.pt` goes on exactly as if it had never
stopped; it must be asked for with the same model, labels, settings (only `epochs` may change)
and train/valid tracks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import MgcError
from ..checkpoint import load_checkpoint, load_reason, make_checkpoint, save_checkpoint
from ..files import write_text_atomic
from ..models.base import GenreNetwork
from ..shipped import WEIGHTS_DIR
from .config import TrainConfig


@dataclass
class RunState:
    """Where a run stands: what `last.pt` keeps, beside the weights, so that a resumed run goes on exactly."""

    pretrained: bool  # started from pretrained weights: their parameters learn at pretrained_lr_scale
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None  # the metrics of the epoch in best.pt
    optimizer_state: dict | None = None


def start_run(
    network: GenreNetwork, out: Path, resume: bool, init_backbone: str | None, console,
    model_name: str, labels: list[str], config: TrainConfig, split_keys: dict,
) -> RunState:
    """The state the run in `out` stopped in (with `resume`), else a new run's; the run's weights
    (restored or pretrained) are loaded into `network`, the freshly built one."""
    last = out / "last.pt"
    if resume and last.exists():
        state = restore(last, network, model_name, labels, config, split_keys)
        console.print(f"resuming {out} at epoch {state.start_epoch + 1}")
        return state
    if last.exists():
        raise MgcError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    return RunState(initialise_pretrained(network, init_backbone, console))


def restore(
    last: Path, network: GenreNetwork, model_name: str, labels: list[str], config: TrainConfig, split_keys: dict,
) -> RunState:
    """The state of the run in `last`, its weights loaded into `network`; it must have been trained as this one is asked to be."""
    checkpoint = load_checkpoint(last)
    if checkpoint["model"] != model_name:
        raise MgcError(f"{last}: a run of {checkpoint['model']}, not {model_name}; cannot resume it with this model")
    if checkpoint["labels"] != labels:
        raise MgcError(f"{last}: a run on other labels ({', '.join(checkpoint['labels'])}); cannot resume it with these")
    if not isinstance(checkpoint.get("train"), dict):
        raise MgcError(f"{last}: holds no training state (a best.pt or a copy of one); choose another --out")
    state = checkpoint["train"]
    # Settings added since a checkpoint was written take their defaults, which keep the old behaviour.
    if {**asdict(TrainConfig()), **state["config"], "epochs": config.epochs} != asdict(config):
        raise MgcError(f"{last}: was trained with other settings; resume with the same ones (only --epochs may change)")
    if checkpoint["config"] != asdict(network.config):
        raise MgcError(f"{last}: was trained with other model settings (--set); resume with the same ones")
    if "optimizer" not in state:  # runs of a frozen front end written before they could resume
        raise MgcError(f"{last}: a run written before runs of its model could resume; choose another --out")
    if state["split"] != split_keys:
        raise MgcError(f"{last}: was trained on another train/valid split; cannot resume with this one")
    network.load_state_dict(checkpoint["state_dict"])
    return RunState(state.get("pretrained", False), state["epoch"] + 1, state["history"], state["best"], state["optimizer"])


def initialise_pretrained(network: GenreNetwork, init_backbone: str | None, console) -> bool:
    """Load pretrained weights into a new network: `init_backbone`, else the shipped weights it
    starts from (`network.shipped_backbone`, in WEIGHTS_DIR). True when something was loaded."""
    if init_backbone:
        source = init_backbone
    elif network.shipped_backbone:
        source = str(WEIGHTS_DIR / network.shipped_backbone)
    else:
        return False
    loaded = network.init_backbone(pretrained_weights(source), source)
    console.print(f"pretrained: {loaded} tensors from {source}")
    return True


def pretrained_weights(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a pretrained weights file: an mgcli checkpoint's (a musicnn tagger), loaded with
    its checks, or a plain state dict (torchvision's ImageNet ResNet-18)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types (OSError, RuntimeError, UnpicklingError, EOFError ...)
        raise MgcError(f"cannot read backbone weights {path}: {load_reason(error)}") from None
    if isinstance(state, dict) and "format" in state:
        return load_checkpoint(path)["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MgcError(f"backbone weights {path} are not a state dict (a dict of tensors)")
    return state


def is_better(metrics: dict, best: dict | None) -> bool:
    """Whether an epoch beats the best so far: on valid macro recall, then track accuracy, then loss.

    With several datasets, on the mean over them of the first two: the pooled figures follow the
    largest dataset, and the model is judged on each collection alike.
    """
    if best is None or "valid_macro_recall" not in metrics:  # no validation: the latest is best
        return True

    def rank(m: dict) -> tuple:
        return (m.get("valid_mean_macro_recall", m["valid_macro_recall"]),
                m.get("valid_mean_track_accuracy", m["valid_track_accuracy"]), -m["valid_loss"])

    return rank(metrics) > rank(best)


def save_epoch(out: Path, model_name: str, network: nn.Module, labels: list[str], train_state: dict, is_best: bool) -> None:
    """Write an epoch's `last.pt` (the training state) and `log.jsonl`, and its `best.pt` when it is the best."""
    epoch, history = train_state["epoch"], train_state["history"]
    if is_best:
        save_checkpoint(make_checkpoint(model_name, network, labels, {"epoch": epoch, "valid": history[-1]}), out / "best.pt")
    save_checkpoint(make_checkpoint(model_name, network, labels, train_state), out / "last.pt")
    write_text_atomic(out / "log.jsonl", "".join(json.dumps(h) + "\n" for h in history))
