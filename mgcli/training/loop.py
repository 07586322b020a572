"""The one training loop: `fit` runs the paper's recipe on any model of the zoo, with checkpoints and exact resume.

`fit` reads as phases: start the run (new, pretrained or resumed: `run_state`), choose its
source of batches, then for every epoch train, validate and save. A source is either
waveform clips (`clip_source.ClipSource`: `clips_per_track` random clips per track per
epoch, augmented, sharded over torchrun ranks) or a frozen front end's cached output
(`features.FeatureSource`, for a network that `trains_on_features`). The learning rate, class
weights, loss, validation (BatchNorm re-estimated over training batches, then whole validation
tracks aggregated from their clips), the best and last checkpoints, the log line and resume are
the same for both. Randomness is re-seeded from (seed, epoch) at every epoch, so a resumed run
continues exactly as if it had never stopped. Under torchrun, `fit` trains with
DistributedDataParallel on every rank (see `distributed`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sized
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import MgcError
from ..models import build, make_config
from ..torch_engine import pick_device, place
from . import distributed
from .augment import epoch_seed
from .cache import Track
from .clip_source import ClipSource
from .config import TrainConfig, class_warning, learning_rate
from .datasets import class_counts, target_masks, target_names
from .features import FeatureSource
from .run_state import is_better, save_epoch, start_run


class BatchSource(Protocol):
    """What the loop trains from: batches of (inputs, targets) and the module that turns inputs into logits."""

    module: nn.Module  # inputs -> logits; it trains the network it holds
    batches: Iterable  # one process's batches of the epoch, which BatchNorm's re-estimation reads
    rank_batches: Sized  # (and Iterable) this rank's share of them, which it trains on

    def set_epoch(self, epoch: int) -> None:
        """Draw the epoch's batches (from the seed and the epoch alone)."""

    def validation_report(self) -> dict:
        """An `evaluate.score_tracks` report of the network as it is, on the whole validation tracks."""


def fit(
    model_name: str,
    train_tracks: list[Track],
    valid_tracks: list[Track],
    labels: list[str],
    out_dir: str | Path,
    config: TrainConfig,
    model_overrides: dict | None = None,
    device: str = "auto",
    init_backbone: str | None = None,
    resume: bool = False,
    verbose: bool = True,
) -> list[dict]:
    """Train `model_name` and return the per-epoch history (also in OUT/log.jsonl).

    Inside a process group (torchrun: see `distributed`) every rank calls `fit` alike; they
    train together, and rank 0 alone writes OUT and prints.
    """
    from rich.console import Console

    rank, world = distributed.rank(), distributed.world_size()
    # markup=False: paths and "[best]" are text, not Rich markup.
    console = Console(stderr=True, quiet=not verbose or rank != 0, soft_wrap=True, markup=False)
    out = Path(out_dir)
    # A target indexes `names`: a genre, or a set label (the track is one of the set's genres).
    names = target_names(labels, train_tracks + valid_tracks)
    warning = class_warning(train_tracks, names)
    if warning:
        console.print(f"warning: {warning}")
    if config.batch_size % world:
        raise MgcError(f"--batch-size {config.batch_size} does not split evenly over {world} processes")
    split_keys = {"train": sorted(t.key for t in train_tracks), "valid": sorted(t.key for t in valid_tracks)}
    model_config = make_config(model_name, **{**(model_overrides or {}), "n_classes": len(labels)})

    # Start: a new network (seeded), its weights pretrained or restored.
    torch.manual_seed(config.seed)
    network = build(model_name, **asdict(model_config))
    if network.trains_on_features and world > 1:
        raise MgcError(f"model {model_name} with a frozen part trains in one process (it is fast); run it without torchrun")
    state = start_run(network, out, resume, init_backbone, console, model_name, labels, config, split_keys)
    out.mkdir(parents=True, exist_ok=True)
    torch_device = distributed.local_device(pick_device(device))
    network = place(network, torch_device)
    optimizer = make_optimizer(config, network, state.pretrained)
    if state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    masks = torch.from_numpy(target_masks(names, labels)).to(torch_device)
    weights = class_weights(config, train_tracks, names)
    if weights is not None:
        weights = weights.to(torch_device)

    # The source of batches.
    source: BatchSource
    if network.trains_on_features:
        source = FeatureSource(network, train_tracks, valid_tracks, labels, names, config, torch_device, console)
    else:
        source = ClipSource(model_name, network, train_tracks, valid_tracks, labels, names, config, torch_device)
    trainer = source.module
    if world > 1:  # its constructor waits for every rank, so all have checked OUT before rank 0 writes there
        trainer = DistributedDataParallel(trainer, [torch_device] if torch_device.type == "cuda" else None)

    # Epochs: train, validate, save. Dropout and friends are seeded per epoch and per rank, so
    # that each rank's clips get masks of their own and a resumed run draws what this one drew.
    history, best = state.history, state.best
    for epoch in range(state.start_epoch, config.epochs):
        began = time.perf_counter()
        torch.manual_seed(epoch_seed(config.seed, epoch) * world + rank)
        source.set_epoch(epoch)
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # runs from before lr_scale have one group
        metrics = {"epoch": epoch + 1, "lr": lr}
        metrics |= train_epoch(trainer, source.rank_batches, optimizer, masks, weights, config, torch_device, console, epoch)
        metrics |= validate(source, bool(valid_tracks), config, torch_device)
        check_finite_weights(network, epoch)
        metrics["seconds"] = round(time.perf_counter() - began, 2)
        history.append(metrics)
        is_best = is_better(metrics, best)
        best = metrics if is_best else best
        if rank == 0:
            train_state = {
                "epoch": epoch, "config": asdict(config), "split": split_keys, "history": history,
                "best": best, "optimizer": optimizer.state_dict(), "pretrained": state.pretrained,
            }
            save_epoch(out, model_name, network, labels, train_state, is_best)
        console.print(epoch_line(metrics, bool(valid_tracks), is_best))
    if world > 1:  # no rank returns (to read last.pt, say) before rank 0 has written it
        torch.distributed.barrier()
    return history


def make_optimizer(config: TrainConfig, network: nn.Module, pretrained: bool) -> torch.optim.Optimizer:
    """The optimiser over the trainable parameters; a pretrained network's own ones (all but its
    genre layer, `head`) in a group whose rate is scaled by `pretrained_lr_scale`."""
    groups: dict[float, list] = {}
    for name, parameter in network.named_parameters():
        if parameter.requires_grad:
            scale = config.pretrained_lr_scale if pretrained and not name.startswith("head.") else 1.0
            groups.setdefault(scale, []).append(parameter)
    params = [{"params": params, "lr_scale": scale} for scale, params in groups.items()]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0, weight_decay=config.weight_decay,
        )
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def class_weights(config: TrainConfig, tracks: list[Track], names: list[str]) -> torch.Tensor | None:
    """With balance "loss", each target's loss weight (`names`: genres, then set labels, each a
    class of its own here): inversely proportional to its training tracks."""
    if config.balance != "loss":
        return None
    counts = np.array(class_counts(tracks, names), dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def clip_loss(logits: torch.Tensor, truths: torch.Tensor, clip_weights: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    """Cross-entropy with label smoothing, each clip weighted by its clip weight (its target's class weight).

    `truths` [n_clips, n_labels] are booleans, the genres counted right: one, or a set label's,
    whose loss is taken on the set's summed probability (the log-sum-exp of its log-probabilities;
    of one genre, exactly its log-probability). Not nn.CrossEntropyLoss(weight=...,
    label_smoothing=...): that weights the smoothing term by every class's weight, so with GTZAN's
    one disco track (weight 22.6) the smoothing alone pulled every clip towards disco and training
    collapsed to 3% clip accuracy.
    """
    log_probs = logits.log_softmax(dim=1)
    log_truth = log_probs.masked_fill(~truths, float("-inf")).logsumexp(dim=1)
    per_clip = -(1.0 - smoothing) * log_truth - smoothing * log_probs.mean(dim=1)
    clip_weights = clip_weights if clip_weights is not None else torch.ones_like(per_clip)
    return (clip_weights * per_clip).sum() / clip_weights.sum()


def train_epoch(
    trainer: nn.Module, batches, optimizer: torch.optim.Optimizer, masks: torch.Tensor, weights: torch.Tensor | None,
    config: TrainConfig, device: torch.device, console, epoch: int,
) -> dict:
    """One pass over this rank's batches of the epoch; the loss and clip accuracy, over all ranks.

    A batch's targets index `masks` (`datasets.target_masks`) and `weights`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    trainer.train()
    total_loss, correct, seen = 0.0, 0, 0
    with Progress(
        TextColumn(f"epoch {epoch + 1}/{config.epochs}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("train", total=len(batches))
        for inputs, targets in batches:
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
                logits = trainer(inputs)
            truths = masks[targets]
            loss = clip_loss(logits.float(), truths, weights[targets] if weights is not None else None, config.label_smoothing)
            if distributed.world_size() > 1 and weights is not None:  # so that DDP's average is the global batch's weighted mean
                loss = loss * distributed.global_share(weights[targets].sum())
            stop_if_not_finite(loss, epoch, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(targets)
            correct += truths.gather(1, logits.argmax(1, keepdim=True)).sum().item()
            seen += len(targets)
            progress.advance(task)
    if distributed.world_size() > 1:  # the ranks take equal batches, so these sums are what one process counts
        total_loss, correct, seen = distributed.sum_over_ranks([total_loss, correct, seen], device)
    return {"train_loss": total_loss / seen, "train_clip_accuracy": correct / seen}


def stop_if_not_finite(loss: torch.Tensor, epoch: int, device: torch.device) -> None:
    """Stop training, before the step, at the first loss that is NaN or infinite: the weights would be next."""
    not_finite = float(not torch.isfinite(loss).item())
    if distributed.world_size() > 1:  # every rank stops at the same step, or the others would wait for it forever
        [not_finite] = distributed.sum_over_ranks([not_finite], device)
    if not_finite:
        raise MgcError(diverged(epoch, f"the loss became {loss.item()}"))


def check_finite_weights(network: nn.Module, epoch: int) -> None:
    """Refuse to save weights of an epoch that left any of them NaN or infinite (a step too large for a finite loss)."""
    if not all(t.isfinite().all() for t in network.state_dict().values() if t.is_floating_point()):
        raise MgcError(diverged(epoch, "the weights became NaN or infinite"))


def diverged(epoch: int, what: str) -> str:
    """The one line that stops a run whose numbers left the finite ones."""
    return f"training diverged in epoch {epoch + 1}: {what}; nothing of that epoch was saved (try a lower --lr)"


def validate(source: BatchSource, has_valid: bool, config: TrainConfig, device: torch.device) -> dict:
    """The validation figures of the weights as they are, after BatchNorm's statistics are re-estimated.

    Every rank re-estimates on the same whole batches and validates the same weights, as one
    process does, so all ranks stay identical; rank 0 writes the results.
    """
    recalibrate_batchnorm(source.module, source.batches, device, config.batchnorm_batches)
    source.module.eval()
    if not has_valid:
        return {}
    report = source.validation_report()
    metrics = {
        "valid_loss": report["loss"],
        "valid_clip_accuracy": report["clip"]["accuracy"],
        "valid_track_accuracy": report["track"]["accuracy"],
        "valid_macro_recall": report["track"]["macro"]["recall"],
        "valid_track_accuracy_by_aggregate": report["track_accuracy"],
    }
    if "datasets" in report:  # the choice rests on each collection alike, not on the pooled figure the largest dominates
        by_dataset = {name: {"track_accuracy": part["track"]["accuracy"], "macro_recall": part["track"]["macro"]["recall"]}
                      for name, part in report["datasets"].items()}
        metrics |= {
            "valid_by_dataset": by_dataset,
            "valid_mean_track_accuracy": float(np.mean([d["track_accuracy"] for d in by_dataset.values()])),
            "valid_mean_macro_recall": float(np.mean([d["macro_recall"] for d in by_dataset.values()])),
        }
    return metrics


def recalibrate_batchnorm(network: nn.Module, loader: Iterable, device: torch.device, max_batches: int) -> None:
    """Re-estimate BatchNorm running statistics for the weights as they are now ("precise BN").

    During training the running averages trail weights that keep moving; with small batches
    and a class-weighted loss they trailed so far on GTZAN that eval-mode predictions
    collapsed to one genre while train-mode ones were right. A pass over training batches
    with the weights frozen and a cumulative average makes evaluation see the real statistics.
    """
    network.train()
    # Layers a network keeps in eval mode while it trains (pretrained statistics) are left alone.
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if not norms or max_batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    with torch.no_grad():
        for i, (inputs, _) in enumerate(loader):
            if i == max_batches:
                break
            network(inputs.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def epoch_line(m: dict, has_valid: bool, is_best: bool) -> str:
    """The line an epoch prints: its rate, training loss and accuracy, and validation figures."""
    line = f"epoch {m['epoch']:>3}  lr {m['lr']:.2g}  loss {m['train_loss']:.3f}  clip acc {m['train_clip_accuracy']:.3f}"
    if has_valid:
        line += (
            f"  | valid loss {m['valid_loss']:.3f}  clip {m['valid_clip_accuracy']:.3f}"
            f"  track {m['valid_track_accuracy']:.3f}  macro recall {m['valid_macro_recall']:.3f}"
        )
    for name, d in m.get("valid_by_dataset", {}).items():
        line += f"  | {Path(name).name} {d['track_accuracy']:.3f} / {d['macro_recall']:.3f}"
    return line + ("  [best]" if is_best and has_valid else "") + f"  {m['seconds']:.0f}s"
