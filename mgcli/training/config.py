"""The training recipe: `TrainConfig` and its validation, the learning-rate schedule it describes,
and the check of the training tracks' classes. Everything here is refused before training starts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .. import MgcError
from ..audio import DEFAULT_HOP_SECONDS
from ..clips import hop_samples
from ..inference import check_aggregation
from .cache import Track
from .datasets import class_counts

MIN_TRACKS_PER_CLASS = 5  # fewer training tracks than this, and a class's recall is luck: worth a warning
# The least and the greatest value of each number that a run can use (NaN and infinity it cannot).
MINIMUMS = {
    "epochs": 1, "batch_size": 1, "clips_per_track": 1, "halve_every": 1, "warmup_epochs": 0, "masks": 0, "workers": 0,
    "batchnorm_batches": 0, "seed": 0, "momentum": 0, "weight_decay": 0, "gain_low": 0, "gain_high": 0, "noise_std": 0,
    "mix_prob": 0, "label_smoothing": 0, "pretrained_lr_scale": 0,
}
MAXIMUMS = {"momentum": 1, "mix_prob": 1, "label_smoothing": 1, "seed": 2**32 - 1}
RATES = ("lr", "warmup_lr")  # above 0: a rate of 0 trains nothing, a negative one climbs the loss


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
        hop_samples(self.feature_hop_seconds)
        check_aggregation(self.aggregate)
        for name, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise MgcError(f"{name} must be a finite number; got {value}")
        for name, least in MINIMUMS.items():
            if getattr(self, name) < least:
                raise MgcError(f"{name} must be at least {least}; got {getattr(self, name)}")
        for name, greatest in MAXIMUMS.items():
            if getattr(self, name) > greatest:
                raise MgcError(f"{name} must be at most {greatest}; got {getattr(self, name)}")
        for name in RATES:
            if getattr(self, name) <= 0:
                raise MgcError(f"{name} must be above 0; got {getattr(self, name)}")


def train_config(**settings) -> TrainConfig:
    """A TrainConfig of the settings given; those that are None take their defaults (an unknown one is a TypeError)."""
    return TrainConfig(**{name: value for name, value in settings.items() if value is not None})


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
