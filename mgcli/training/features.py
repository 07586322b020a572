"""Training on a frozen front end's cached output: the musicnn probe and the front-end-frozen fine-tune.

When a pretrained network's front end is frozen (`freeze` in its config), it gives every clip
the same output in every epoch, so computing it each epoch would waste most of the training
time (musicnn's front end is 95% of its cost). `fit_on_features` computes it once per clip,
for overlapping clips of every training track (`feature_hop_seconds` apart) and for the
validation clips, and then trains the rest of the network on those features: each epoch
draws `clips_per_track` cached clips per track. Tracks from an `mgc preprocess` cache keep
their features in it (FEATURES/<digest of the front end's weights>-<hop>/, beside the
decoded audio), so the next run with the same front end starts at once. There is no
waveform augmentation (the features are fixed); dropout and the class-weighted loss remain.
Checkpoints, the log and the choice of the best epoch are those of `train.fit`, and the
checkpoints are ordinary whole-network checkpoints that predict and evaluate read as any other.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import MgcError
from ..clips import cut_clips, hop_samples
from ..files import save_npy_atomic
from ..models.musicnn import FRONT_END_PREFIXES
from ..torch_engine import pick_device, place
from .augment import epoch_seed
from .cache import Track, load_wave, to_float
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


def fit_on_features(
    model_name: str, network: torch.nn.Module, train_tracks: list[Track], valid_tracks: list[Track],
    labels: list[str], out: Path, config, device: str, console,
) -> list[dict]:
    """Train the unfrozen part of `network` on cached features of its frozen part (see the module doc)."""
    from .train import (
        _class_weights, _epoch_line, _is_better, _optimizer, clip_loss, learning_rate, save_epoch, valid_metrics,
    )

    out.mkdir(parents=True, exist_ok=True)
    torch_device = pick_device(device)
    place(network, torch_device)
    network.eval()
    began = time.perf_counter()
    console.print(f"front-end output (cached in the dataset caches where they are): {len(train_tracks)} training tracks every "
                  f"{config.feature_hop_seconds:g} s, {len(valid_tracks)} validation tracks every {config.eval_hop_seconds:g} s")
    train_features = track_features(network, train_tracks, config.feature_hop_seconds, torch_device)
    valid_features = track_features(network, valid_tracks, config.eval_hop_seconds, torch_device)
    console.print(f"cached {sum(len(f) for f in train_features)} + {sum(len(f) for f in valid_features)} clips "
                  f"in {time.perf_counter() - began:.0f} s")
    train_targets = [labels.index(t.label) for t in train_tracks]
    valid_targets = [labels.index(t.label) for t in valid_tracks]

    optimizer = _optimizer(config, network, pretrained=True)
    weights = _class_weights(config, train_tracks, labels)
    if weights is not None:
        weights = weights.to(torch_device)
    history, best = [], None
    for epoch in range(config.epochs):
        began = time.perf_counter()
        rng = np.random.default_rng(epoch_seed(config.seed, epoch))
        torch.manual_seed(epoch_seed(config.seed, epoch))  # dropout
        plan = [(track, int(clip)) for track, clips in enumerate(train_features)
                for clip in rng.integers(0, len(clips), config.clips_per_track)]
        plan = [plan[i] for i in rng.permutation(len(plan))]
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        network.train()
        total_loss, correct = 0.0, 0
        for start in range(0, len(plan), config.batch_size):
            batch = plan[start : start + config.batch_size]
            features = torch.stack([train_features[t][c] for t, c in batch]).to(torch_device)
            targets = torch.tensor([train_targets[t] for t, _ in batch], device=torch_device)
            logits = network.from_front_features(features)
            loss = clip_loss(logits, targets, weights, config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
            correct += (logits.argmax(1) == targets).sum().item()
        network.eval()
        metrics = {"epoch": epoch + 1, "lr": lr, "train_loss": total_loss / len(plan),
                   "train_clip_accuracy": correct / len(plan)}
        if valid_tracks:
            with torch.inference_mode():
                scored = [(target, network.from_front_features(f.to(torch_device)).float().cpu().numpy())
                          for target, f in zip(valid_targets, valid_features)]
            metrics |= valid_metrics(score_tracks(scored, labels, config.aggregate))
        metrics["seconds"] = round(time.perf_counter() - began, 2)
        history.append(metrics)
        is_best = _is_better(metrics, best)
        best = metrics if is_best else best
        save_epoch(out, model_name, network, labels, {"epoch": epoch, "config": asdict(config), "history": history, "best": best}, is_best)
        console.print(_epoch_line(metrics, bool(valid_tracks), is_best))
    if not history:
        raise MgcError("no epochs to train (--epochs must be at least 1)")
    return history
