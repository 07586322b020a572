"""A frozen front end's cached output as the training loop's source of batches: the musicnn probe
and the front-end-frozen fine-tune.

When a pretrained network's front end is frozen (`freeze` in its config), it gives every clip
the same output in every epoch, so computing it each epoch would waste most of the training
time (musicnn's front end is 95% of its cost). `FeatureSource` computes it once per clip,
for overlapping clips of every training track (`feature_hop_seconds` apart) and for the
validation clips, and the loop then trains the rest of the network on those features: each
epoch draws `clips_per_track` cached clips per track. Tracks from an `mgc preprocess` cache keep
their features in it (FEATURES/<digest of the front end's weights>-<hop>/, beside the
decoded audio), so the next run with the same front end starts at once. There is no
waveform augmentation (the features are fixed); dropout and the class-weighted loss remain.
Everything else (checkpoints, the log, the best epoch, resume) is the loop's, and the
checkpoints are ordinary whole-network checkpoints that predict and evaluate read as any other.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..clips import cut_clips, hop_samples
from ..files import save_npy_atomic
from ..models.base import GenreNetwork
from ..models.musicnn import FRONT_END_PREFIXES
from ..torch_engine import pick_device, place
from .augment import epoch_seed
from .cache import Track, load_wave, to_float
from .config import TrainConfig
from .datasets import by_collection, target_masks
from .evaluate import score_tracks

FEATURE_BATCH = 16  # clips per forward pass of the front end
FEATURES = "features"  # the folder, in a dataset cache, of cached front-end outputs


def track_features(network: torch.nn.Module, tracks: list[Track], hop_seconds: float, device: torch.device) -> list[torch.Tensor]:
    """The front end's output for every clip of every track, [n_clips, channels, frames] per track, on the CPU.

    Read from the dataset cache where an earlier run left it there; else computed (and left there).
    """
    features = []
    hop = hop_samples(hop_seconds)
    folder = f"{front_end_digest(network)}-{hop}"
    with torch.inference_mode():
        for track in tracks:
            path = Path(track.cache_file).parent.parent / FEATURES / folder / Path(track.cache_file).name if track.cache_file else None
            if path is not None and path.is_file():
                features.append(torch.from_numpy(np.load(path)))
                continue
            clips = torch.from_numpy(cut_clips(to_float(load_wave(track)), network.config.clip_samples, hop))
            parts = [network.front_features(batch.to(device)).float().cpu() for batch in clips.split(FEATURE_BATCH)]
            features.append(torch.cat(parts))
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                save_npy_atomic(path, features[-1].numpy())
    return features


def front_end_digest(network: torch.nn.Module) -> str:
    """A digest of what the front end's output depends on: its weights and the clip length."""
    digest = hashlib.sha1(str(network.config.clip_samples).encode())
    for name, tensor in sorted(network.state_dict().items()):
        if name.startswith(FRONT_END_PREFIXES):
            digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class FeatureSource:
    """Batches of cached front-end outputs: `clips_per_track` clips per training track per epoch, drawn
    from (seed, epoch) alone, in `batch_size` batches (one process: `batches` and `rank_batches` are one)."""

    def __init__(
        self, network: GenreNetwork, train_tracks: list[Track], valid_tracks: list[Track], labels: list[str],
        names: list[str], config: TrainConfig, device: torch.device, console,
    ):
        network.eval()  # the front end's output as inference computes it
        began = time.perf_counter()
        console.print(f"front-end output (cached in the dataset caches where they are): {len(train_tracks)} training tracks every "
                      f"{config.feature_hop_seconds:g} s, {len(valid_tracks)} validation tracks every {config.eval_hop_seconds:g} s")
        self.train_features = track_features(network, train_tracks, config.feature_hop_seconds, device)
        self.valid_features = track_features(network, valid_tracks, config.eval_hop_seconds, device)
        console.print(f"cached {sum(len(f) for f in self.train_features)} + {sum(len(f) for f in self.valid_features)} clips "
                      f"in {time.perf_counter() - began:.0f} s")
        self.train_targets = [names.index(t.label) for t in train_tracks]  # `names` (`loop.fit`) indexes genres and set labels
        self.valid_truths = target_masks(names, labels)[[names.index(t.label) for t in valid_tracks]]
        self.valid_collections = by_collection(range(len(valid_tracks)), [t.collection for t in valid_tracks])
        self.module: nn.Module = FromFrontFeatures(network)
        self.network, self.labels, self.config, self.device = network, labels, config, device
        self.plan: list[tuple[int, int]] = []  # (track, clip) of every training clip of the epoch, in order

    # One process: its batches are this rank's. Properties, not attributes holding self: such a
    # cycle kept every finished run's features (7 GB for three datasets) until a garbage collection.
    @property
    def batches(self) -> FeatureSource:
        return self

    rank_batches = batches

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng(epoch_seed(self.config.seed, epoch))
        plan = [(track, int(clip)) for track, clips in enumerate(self.train_features)
                for clip in rng.integers(0, len(clips), self.config.clips_per_track)]
        self.plan = [plan[i] for i in rng.permutation(len(plan))]

    def __len__(self) -> int:
        return math.ceil(len(self.plan) / self.config.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.plan), self.config.batch_size):
            batch = self.plan[start : start + self.config.batch_size]
            yield (torch.stack([self.train_features[t][c] for t, c in batch]),
                   torch.tensor([self.train_targets[t] for t, _ in batch]))

    def validation_report(self) -> dict:
        """The cached clips of every validation track, aggregated per track; from several datasets,
        with "datasets": {name: each one's report}, as `evaluate.evaluate_datasets` gives it."""
        with torch.inference_mode():
            scored = [(truth, self.network.from_front_features(f.to(self.device)).float().cpu().numpy())
                      for truth, f in zip(self.valid_truths, self.valid_features)]
        report = score_tracks(scored, self.labels, self.config.aggregate)
        if len(self.valid_collections) > 1:
            report["datasets"] = {name: score_tracks([scored[i] for i in members], self.labels, self.config.aggregate)
                                  for name, members in self.valid_collections.items()}
        return report


class FromFrontFeatures(nn.Module):
    """A network seen from its front end's output: `front_features` in, logits out.

    It runs in float32 even under CUDA's autocast, as training on features always has.
    """

    def __init__(self, network: GenreNetwork):
        super().__init__()
        self.network = network

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            return self.network.from_front_features(features)
