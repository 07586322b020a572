"""Training: `fit` runs the paper's recipe on any model of the zoo, with checkpoints and exact resume.

Each epoch draws `clips_per_track` random clips per training track, augments them
(gain, Gaussian noise; optionally same-genre mixing and masks), takes optimiser steps,
then judges whole validation tracks by aggregating their clips. `last.pt` (with optimiser state) and `best.pt` (best valid
macro recall, then accuracy, then loss) are written atomically every epoch, and `log.jsonl`
holds one line per epoch. Randomness is re-seeded from (seed, epoch) at every epoch,
so `resume` continues an interrupted run exactly as if it had never stopped.
Under torchrun, `fit` trains with DistributedDataParallel on every rank (see `distributed`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from .. import MgcError, quiet
from ..audio import DEFAULT_HOP_SECONDS
from ..checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from ..clips import hop_samples
from ..files import check_output_folder, write_text_atomic
from ..inference import check_aggregation
from ..models import build, make_config
from ..models.base import GenreNetwork
from ..torch_engine import GenreModel, model_from_checkpoint, pick_device, place
from . import distributed
from .augment import Augment, TrainClips, epoch_seed
from .cache import Track
from .datasets import (
    cache_folders,
    class_counts,
    describe_counts,
    labels_of,
    load_datasets,
    pair_split_files,
    split_datasets,
    split_tracks,
    warn_absent,
)
from .evaluate import RANDOM_FOLDS_WARNING, evaluate_tracks
from .features import fit_on_features

MIN_TRACKS_PER_CLASS = 5  # fewer training tracks than this, and a class's recall is luck: worth a warning


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 16
    clips_per_track: int = 4  # paper: 4 random clips per track per epoch
    optimizer: str = "sgd"  # "sgd" (paper) or "adam"
    lr: float = 0.005  # paper's SGD rate; 0.001 is a good start for Adam
    warmup_epochs: int = 5  # paper: 5 epochs at warmup_lr first
    warmup_lr: float = 1e-5
    schedule: str = "step"  # "step" (paper: halve every `halve_every` epochs) or "cosine" (towards 0 at the end)
    halve_every: int = 30  # paper: the rate halves every 30 epochs after warm-up
    momentum: float = 0.9
    weight_decay: float = 1e-4
    gain_low: float = 0.9  # paper's augmentation: gain ~ U(0.9, 1.1) ...
    gain_high: float = 1.1
    noise_std: float = 0.02  # ... plus Gaussian noise of this standard deviation, relative to the clip's
    mix_prob: float = 0.0  # share of clips mixed with a clip of another track of their genre (data.Augment)
    masks: int = 0  # SpecAugment-style time and frequency masks per clip (data.Augment)
    label_smoothing: float = 0.0
    balance: str = "loss"  # "loss" (class-weighted loss), "sampler" (class-balanced draws) or "none"
    eval_hop_seconds: float = DEFAULT_HOP_SECONDS
    aggregate: str = "mean_prob"
    seed: int = 0
    workers: int = 0
    batchnorm_batches: int = 50  # training batches that re-estimate BatchNorm statistics each epoch
    pretrained_lr_scale: float = 1.0  # rate of pretrained parameters relative to the new ones (the genre layer)
    feature_hop_seconds: float = 1.5  # a frozen part's output is cached for training clips this far apart

    def __post_init__(self) -> None:
        for name, choices in (("optimizer", ("sgd", "adam")), ("balance", ("loss", "sampler", "none")),
                              ("schedule", ("step", "cosine"))):
            if getattr(self, name) not in choices:
                raise MgcError(f"unknown {name} {getattr(self, name)!r} (use {', '.join(choices)})")
        hop_samples(self.eval_hop_seconds)  # a hop that would hang validation is refused before training
        check_aggregation(self.aggregate)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    if epoch < config.warmup_epochs:
        return config.warmup_lr
    if config.schedule == "step":
        return config.lr * 0.5 ** ((epoch - config.warmup_epochs) // config.halve_every)
    progress = (epoch - config.warmup_epochs) / max(1, config.epochs - config.warmup_epochs)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine


def class_warning(tracks: list[Track], labels: list[str]) -> str:
    """Refuse training tracks of fewer than 2 classes; a warning naming the thin classes, or "".

    With one class the loss is 0 from the start and the model calls everything that class.
    """
    counts = dict(zip(labels, class_counts(tracks, labels)))
    present = [label for label, n in counts.items() if n]
    if len(present) < 2:
        raise MgcError(f"training needs at least 2 classes; the training tracks hold {len(present)} ({', '.join(present) or 'none'})")
    thin = [f"{label} {n}" for label, n in counts.items() if n < MIN_TRACKS_PER_CLASS]
    if not thin:
        return ""
    return f"classes with fewer than {MIN_TRACKS_PER_CLASS} training tracks, whose recall will be unreliable: {', '.join(thin)}"


def _optimizer(config: TrainConfig, network: nn.Module, pretrained: bool) -> torch.optim.Optimizer:
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


def _class_weights(config: TrainConfig, tracks: list[Track], labels: list[str]) -> torch.Tensor | None:
    if config.balance != "loss":
        return None
    counts = np.array(class_counts(tracks, labels), dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def clip_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    """Cross-entropy with label smoothing, each clip weighted by its true class's weight.

    Not nn.CrossEntropyLoss(weight=..., label_smoothing=...): that weights the smoothing term
    by every class's weight, so with GTZAN's one disco track (weight 22.6) the smoothing
    alone pulled every clip towards disco and training collapsed to 3% clip accuracy.
    """
    log_probs = logits.log_softmax(dim=1)
    per_clip = -(1.0 - smoothing) * log_probs.gather(1, targets[:, None]).squeeze(1) - smoothing * log_probs.mean(dim=1)
    clip_weights = weights[targets] if weights is not None else torch.ones_like(per_clip)
    return (clip_weights * per_clip).sum() / clip_weights.sum()


def recalibrate_batchnorm(network: nn.Module, loader, device: torch.device, max_batches: int) -> None:
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
        for i, (clips, _) in enumerate(loader):
            if i == max_batches:
                break
            network(clips.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def _clip_loader(dataset: TrainClips, batch_size: int, config: TrainConfig, device: torch.device,
                 sampler: DistributedSampler | None = None) -> DataLoader:
    """Batches of training clips in the epoch's plan order (of this rank's share with `sampler`)."""
    clips = len(sampler) if sampler is not None else len(dataset)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=config.workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        # A last batch of one clip would break BatchNorm after a linear layer (mel-linear, sincnet).
        drop_last=clips % batch_size == 1 and clips > 1,
    )


def valid_metrics(report: dict) -> dict:
    """The validation figures logged each epoch, from an `evaluate.score_tracks` report."""
    return {
        "valid_loss": report["loss"],
        "valid_clip_accuracy": report["clip"]["accuracy"],
        "valid_track_accuracy": report["track"]["accuracy"],
        "valid_macro_recall": report["track"]["macro"]["recall"],
        "valid_track_accuracy_by_aggregate": report["track_accuracy"],
    }


def _is_better(metrics: dict, best: dict | None) -> bool:
    if best is None or "valid_macro_recall" not in metrics:  # no validation: the latest is best
        return True
    def rank(m: dict) -> tuple:
        return m["valid_macro_recall"], m["valid_track_accuracy"], -m["valid_loss"]

    return rank(metrics) > rank(best)


def _initialise_pretrained(network: GenreNetwork, init_backbone: str | None, console) -> bool:
    """Load pretrained weights into a new network: `init_backbone`, else the shipped weights it
    starts from (`network.shipped_backbone`). True when something was loaded."""
    source = init_backbone or network.shipped_backbone
    if source is None:
        return False
    loaded = network.init_backbone(source)
    console.print(f"pretrained: {loaded} tensors from {source}")
    return True


@dataclass
class RunState:
    """Where a run stands: what `last.pt` keeps so that a resumed run goes on exactly."""

    network: nn.Module
    pretrained: bool  # started from pretrained weights: their parameters learn at pretrained_lr_scale
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None  # the metrics of the epoch in best.pt
    optimizer_state: dict | None = None


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
    warning = class_warning(train_tracks, labels)
    if warning:
        console.print(f"warning: {warning}")
    if config.batch_size % world:
        raise MgcError(f"--batch-size {config.batch_size} does not split evenly over {world} processes")
    split_keys = {"train": sorted(t.key for t in train_tracks), "valid": sorted(t.key for t in valid_tracks)}
    model_config = make_config(model_name, **{**(model_overrides or {}), "n_classes": len(labels)})

    # Restore or initialise.
    torch.manual_seed(config.seed)
    network = build(model_name, **asdict(model_config))
    if network.trains_on_features:  # a frozen part: the rest trains on its cached output
        if world > 1:
            raise MgcError(f"model {model_name} with a frozen part trains in one process (it is fast); run it without torchrun")
        _refuse_overwrite(out, resume, "run it again")
        _initialise_pretrained(network, init_backbone, console)
        return fit_on_features(model_name, network, train_tracks, valid_tracks, labels, out, config, device, console)
    state = _restore_or_initialise(network, out, resume, init_backbone, console, model_name, labels, config, split_keys)
    out.mkdir(parents=True, exist_ok=True)
    torch_device = distributed.local_device(pick_device(device))
    network = place(state.network, torch_device)
    optimizer = _optimizer(config, network, state.pretrained)
    if state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    weights = _class_weights(config, train_tracks, labels)
    if weights is not None:
        weights = weights.to(torch_device)

    # Loaders.
    clips = TrainClips(
        train_tracks, labels, config.clips_per_track, network.config.clip_samples,
        Augment(config.gain_low, config.gain_high, config.noise_std, config.mix_prob, config.masks),
        config.balance == "sampler", config.seed,
    )
    loader, train_loader, trainer = _loaders(clips, network, config, torch_device)
    model = GenreModel(model_name, network, labels, torch_device)

    # Epochs: train, validate, save. Dropout and friends are seeded per epoch and per rank, so
    # that each rank's clips get masks of their own and a resumed run draws what this one drew.
    history, best = state.history, state.best
    for epoch in range(state.start_epoch, config.epochs):
        began = time.perf_counter()
        torch.manual_seed(epoch_seed(config.seed, epoch) * world + rank)
        clips.set_epoch(epoch)
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # runs from before lr_scale have one group
        metrics = {"epoch": epoch + 1, "lr": lr}
        metrics |= _train_epoch(trainer, train_loader, optimizer, weights, config, torch_device, console, epoch)
        metrics |= _validate(model, loader, valid_tracks, config)
        metrics["seconds"] = round(time.perf_counter() - began, 2)
        history.append(metrics)
        is_best = _is_better(metrics, best)
        best = metrics if is_best else best
        if rank == 0:
            train_state = {
                "epoch": epoch, "config": asdict(config), "split": split_keys, "history": history,
                "best": best, "optimizer": optimizer.state_dict(), "pretrained": state.pretrained,
            }
            save_epoch(out, model_name, network, labels, train_state, is_best)
        console.print(_epoch_line(metrics, bool(valid_tracks), is_best))
    if world > 1:  # no rank returns (to read last.pt, say) before rank 0 has written it
        torch.distributed.barrier()
    return history


def _loaders(
    clips: TrainClips, network: nn.Module, config: TrainConfig, device: torch.device
) -> tuple[DataLoader, DataLoader, nn.Module]:
    """(one process's batches, this rank's share of them, the module that trains).

    Alone the two loaders are one and the network trains itself. Under torchrun rank r takes
    clips r, r + world, ...: step k of all ranks together is the first loader's step k, which
    BatchNorm's re-estimation reads on every rank. The plan is reshuffled by clips.set_epoch, so
    the sampler needs no shuffling; it repeats the first clips where an epoch does not split
    evenly over the ranks.
    """
    loader = _clip_loader(clips, config.batch_size, config, device)
    world = distributed.world_size()
    if world == 1:
        return loader, loader, network
    shard = DistributedSampler(clips, num_replicas=world, rank=distributed.rank(), shuffle=False)
    # DistributedDataParallel's constructor waits for every rank, so all have checked OUT before rank 0 writes there.
    trainer = DistributedDataParallel(network, [device] if device.type == "cuda" else None)
    return loader, _clip_loader(clips, config.batch_size // world, config, device, shard), trainer


def _validate(model: GenreModel, loader: DataLoader, valid_tracks: list[Track], config: TrainConfig) -> dict:
    """The validation figures of the weights as they are, after BatchNorm's statistics are re-estimated.

    Every rank re-estimates on the same whole batches and validates the same weights, as one
    process does, so all ranks stay identical; rank 0 writes the results.
    """
    recalibrate_batchnorm(model.network, loader, model.device, config.batchnorm_batches)
    model.network.eval()
    if not valid_tracks:
        return {}
    return valid_metrics(evaluate_tracks(model, valid_tracks, config.eval_hop_seconds, config.aggregate))


def save_epoch(out: Path, model_name: str, network: nn.Module, labels: list[str], train_state: dict, is_best: bool) -> None:
    """Write an epoch's `last.pt` (the training state) and `log.jsonl`, and its `best.pt` when it is the best."""
    epoch, history = train_state["epoch"], train_state["history"]
    if is_best:
        save_checkpoint(make_checkpoint(model_name, network, labels, {"epoch": epoch, "valid": history[-1]}), out / "best.pt")
    save_checkpoint(make_checkpoint(model_name, network, labels, train_state), out / "last.pt")
    write_text_atomic(out / "log.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def _restore_or_initialise(
    network: GenreNetwork, out: Path, resume: bool, init_backbone: str | None, console,
    model_name: str, labels: list[str], config: TrainConfig, split_keys: dict,
) -> RunState:
    """The state the run in `out` stopped in (with `resume`), else a new run's, from `network`."""
    if resume and (out / "last.pt").exists():
        state = _restore(out / "last.pt", model_name, labels, config, asdict(network.config), split_keys)
        console.print(f"resuming {out} at epoch {state.start_epoch + 1}")
        return state
    _refuse_overwrite(out, resume, "continue it")
    return RunState(network, _initialise_pretrained(network, init_backbone, console))


def _refuse_overwrite(out: Path, resume: bool, again: str) -> None:
    if (out / "last.pt").exists() and not resume:
        raise MgcError(f"{out} already holds a run: pass --resume to {again}, or choose another --out")


def _restore(last: Path, model_name: str, labels: list[str], config: TrainConfig, model_config: dict, split_keys: dict) -> RunState:
    """The state of the run in `last`, which must have been trained as this one is asked to be."""
    checkpoint = load_checkpoint(last)
    state = checkpoint["train"]
    if checkpoint["model"] != model_name or checkpoint["labels"] != labels:
        raise MgcError(f"{last}: a run of {checkpoint['model']} on other labels; cannot resume it with these")
    # Settings added since a checkpoint was written take their defaults, which keep the old behaviour.
    if {**asdict(TrainConfig()), **state["config"], "epochs": config.epochs} != asdict(config):
        raise MgcError(f"{last}: was trained with other settings; resume with the same ones (only --epochs may change)")
    if checkpoint["config"] != model_config:
        raise MgcError(f"{last}: was trained with other model settings (--set); resume with the same ones")
    if state["split"] != split_keys:
        raise MgcError(f"{last}: was trained on another train/valid split; cannot resume with this one")
    network = build(model_name, **checkpoint["config"])
    network.load_state_dict(checkpoint["state_dict"])
    return RunState(
        network, state.get("pretrained", False), state["epoch"] + 1, state["history"], state["best"], state["optimizer"]
    )


def _train_epoch(
    trainer: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, weights: torch.Tensor | None,
    config: TrainConfig, device: torch.device, console, epoch: int,
) -> dict:
    """One pass over the epoch's training clips; the loss and clip accuracy, over all ranks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    trainer.train()
    total_loss, correct, seen = 0.0, 0, 0
    with Progress(
        TextColumn(f"epoch {epoch + 1}/{config.epochs}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("train", total=len(loader))
        for clips, targets in loader:
            clips = clips.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
                logits = trainer(clips)
            loss = clip_loss(logits.float(), targets, weights, config.label_smoothing)
            if distributed.world_size() > 1 and weights is not None:  # so that DDP's average is the global batch's weighted mean
                loss = loss * distributed.global_share(weights[targets].sum())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(targets)
            correct += (logits.argmax(1) == targets).sum().item()
            seen += len(targets)
            progress.advance(task)
    if distributed.world_size() > 1:  # the ranks take equal batches, so these sums are what one process counts
        total_loss, correct, seen = distributed.sum_over_ranks([total_loss, correct, seen], device)
    return {"train_loss": total_loss / seen, "train_clip_accuracy": correct / seen}


def _epoch_line(m: dict, has_valid: bool, is_best: bool) -> str:
    line = f"epoch {m['epoch']:>3}  lr {m['lr']:.2g}  loss {m['train_loss']:.3f}  clip acc {m['train_clip_accuracy']:.3f}"
    if has_valid:
        line += (
            f"  | valid loss {m['valid_loss']:.3f}  clip {m['valid_clip_accuracy']:.3f}"
            f"  track {m['valid_track_accuracy']:.3f}  macro recall {m['valid_macro_recall']:.3f}"
        )
    return line + ("  [best]" if is_best and has_valid else "") + f"  {m['seconds']:.0f}s"


def cross_validate(
    model_name: str,
    tracks: list[Track],
    labels: list[str],
    out_dir: str | Path,
    config: TrainConfig,
    folds: int = 10,
    model_overrides: dict | None = None,
    device: str = "auto",
    verbose: bool = True,
) -> dict:
    """The paper's protocol: train on K-1 stratified folds, test on the last, for every fold.

    Each fold's test score comes from its final epoch (no model selection on the test
    fold). A fold whose run is already complete is not trained again, so an interrupted
    cross-validation resumes. Returns per-fold and mean ± std figures.
    """
    out = Path(out_dir)
    results = []
    for fold in range(folds):
        split = split_tracks(tracks, folds=folds, fold=fold, seed=config.seed)
        run = out / f"fold-{fold}"
        fit(
            model_name, split["train"], [], labels, run, config, model_overrides, device,
            resume=True, verbose=verbose,
        )
        model = model_from_checkpoint(load_checkpoint(run / "last.pt"), pick_device(device))
        report = evaluate_tracks(model, split["valid"], config.eval_hop_seconds, config.aggregate)
        results.append({
            "fold": fold,
            "tracks": len(split["valid"]),
            "track_accuracy": report["track"]["accuracy"],
            "clip_accuracy": report["clip"]["accuracy"],
            "macro_recall": report["track"]["macro"]["recall"],
        })
    summary = {
        metric: {"mean": float(np.mean([r[metric] for r in results])), "std": float(np.std([r[metric] for r in results]))}
        for metric in ("track_accuracy", "clip_accuracy", "macro_recall")
    }
    report = {
        "protocol": f"{folds}-fold stratified random cross-validation",
        "warning": RANDOM_FOLDS_WARNING, "model": model_name, "epochs": config.epochs,
        "folds": results, "summary": summary,
    }
    write_text_atomic(out / "crossval.json", json.dumps(report, indent=2) + "\n")
    return report


def train(
    data: Sequence[Path],
    out_dir: Path,
    model_name: str = "ms-sincresnet",
    overrides: dict | None = None,
    split_file: Sequence[Path] = (),
    folds: int | None = None,
    fold: int | None = None,
    valid_fraction: float = 0.2,
    init_backbone: Path | None = None,
    cache: Path | None = None,
    resume: bool = False,
    device: str = "auto",
    notify: Callable[[str], None] = quiet,
    **settings,
) -> list[dict]:
    """`mgc train`: train the model `model_name` (with config `overrides`) on the datasets `data` into `out_dir`.

    Every dataset is decoded into its cache first (CACHE, default OUT/cache; CACHE-1, CACHE-2, ...
    for several) and split by its `split_file` (one per dataset, in order, or none), else by
    `folds`/`fold`, its manifest or a stratified `valid_fraction`. `settings` are TrainConfig's
    fields (epochs, batch_size, lr, ...); one left None takes its default. Under torchrun the
    ranks train as one run (see `distributed`), and rank 0 alone decodes and notifies. Returns
    the per-epoch history.
    """
    with torch.device("meta"):  # a wrong name, key or value fails now, not after decoding the data
        build(model_name, **(overrides or {}))
    config = train_config(**settings)
    pair_split_files(data, split_file)  # refused now if unpaired, missing or malformed, not after decoding the data
    check_output_folder(out_dir)
    with distributed.process_group(pick_device(device)):
        rank_notify = notify if distributed.rank() == 0 else quiet
        datasets = distributed.from_main(lambda: load_datasets(data, split_file, cache_folders(data, cache, out_dir), notify))
        split = split_datasets(datasets, folds=folds, fold=fold, valid_fraction=valid_fraction, seed=config.seed)
        labels = labels_of(split["train"] + split["valid"])
        if not split["train"]:
            raise MgcError("the split leaves no training tracks")
        warn_absent(datasets, ("train", "valid"), rank_notify)
        rank_notify(f"train: {len(split['train'])} tracks ({describe_counts(split['train'], labels)})")
        rank_notify(f"valid: {len(split['valid'])} tracks ({describe_counts(split['valid'], labels)})")
        return fit(
            model_name, split["train"], split["valid"], labels, out_dir, config, overrides, device,
            str(init_backbone) if init_backbone else None, resume,
        )


def crossval(
    data: Sequence[Path],
    out_dir: Path,
    model_name: str = "ms-sincresnet",
    overrides: dict | None = None,
    folds: int = 10,
    cache: Path | None = None,
    device: str = "auto",
    notify: Callable[[str], None] = quiet,
    **settings,
) -> dict:
    """`mgc crossval`: `cross_validate` on every track of the datasets `data` (see `train`)."""
    if distributed.launched():  # every rank would run every fold into the same folder
        raise MgcError("crossval runs in one process; under torchrun train each fold: mgc train --folds K --fold I")
    make_config(model_name, **(overrides or {}))
    config = train_config(**settings)
    check_output_folder(out_dir)
    datasets = load_datasets(data, (), cache_folders(data, cache, out_dir), notify)
    tracks = [track for dataset in datasets for track in dataset.tracks]
    return cross_validate(model_name, tracks, labels_of(tracks), out_dir, config, folds, overrides, device)


def train_config(**settings) -> TrainConfig:
    """A TrainConfig of the settings given; those that are None take their defaults (an unknown one is a TypeError)."""
    return TrainConfig(**{name: value for name, value in settings.items() if value is not None})
