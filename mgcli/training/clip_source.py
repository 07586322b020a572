"""Waveform clips as the training loop's source of batches: random augmented clips of the training
tracks (`augment.TrainClips`), sharded over torchrun ranks, and validation on whole tracks."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..models.base import GenreNetwork
from ..torch_engine import GenreModel
from . import distributed
from .augment import Augment, TrainClips
from .cache import Track
from .config import TrainConfig
from .datasets import by_collection
from .evaluate import evaluate_datasets, evaluate_tracks


class ClipSource:
    """The epoch's clips in batches: one process's (`batches`) and this rank's share (`rank_batches`).

    Alone the two are one. Under torchrun rank r takes clips r, r + world, ...: step k of all
    ranks together is step k of `batches`, which BatchNorm's re-estimation reads on every rank.
    The plan is reshuffled by `set_epoch`, so the sampler needs no shuffling; it repeats the
    first clips where an epoch does not split evenly over the ranks.
    """

    def __init__(
        self, model_name: str, network: GenreNetwork, train_tracks: list[Track], valid_tracks: list[Track],
        labels: list[str], names: list[str], config: TrainConfig, device: torch.device,
    ):
        self.clips = TrainClips(
            train_tracks, names, config.clips_per_track, network.config.clip_samples,
            Augment(config.gain_low, config.gain_high, config.noise_std, config.mix_prob, config.masks),
            config.balance == "sampler", config.seed,
        )
        self.module: nn.Module = network
        self.batches = clip_loader(self.clips, config.batch_size, config.workers, device)
        self.rank_batches = self.batches
        world = distributed.world_size()
        if world > 1:
            shard = DistributedSampler(self.clips, num_replicas=world, rank=distributed.rank(), shuffle=False)
            self.rank_batches = clip_loader(self.clips, config.batch_size // world, config.workers, device, shard)
        self.model = GenreModel(model_name, network, labels, device)
        self.valid_tracks = valid_tracks
        self.config = config

    def set_epoch(self, epoch: int) -> None:
        self.clips.set_epoch(epoch)

    def validation_report(self) -> dict:
        """The clips of every validation track, as predict cuts them, aggregated per track (and per dataset, from several)."""
        collections = by_collection(self.valid_tracks, [t.collection for t in self.valid_tracks])
        if len(collections) > 1:
            return evaluate_datasets(self.model, collections, self.config.eval_hop_seconds, self.config.aggregate)
        return evaluate_tracks(self.model, self.valid_tracks, self.config.eval_hop_seconds, self.config.aggregate)


def clip_loader(
    clips: TrainClips, batch_size: int, workers: int, device: torch.device, sampler: DistributedSampler | None = None
) -> DataLoader:
    """Batches of training clips in the epoch's plan order (of this rank's share with `sampler`)."""
    n_clips = len(sampler) if sampler is not None else len(clips)
    return DataLoader(
        clips, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        # A last batch of one clip would break BatchNorm after a linear layer (mel-linear, sincnet).
        drop_last=n_clips % batch_size == 1 and n_clips > 1,
    )
