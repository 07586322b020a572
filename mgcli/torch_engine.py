"""The PyTorch engine: a checkpoint's network, on the CPU or on CUDA, as a classifier of clips.

What `inference` asks of an engine's model (see inference.Model) is here met by the network
itself, the one definition of every model. Training, evaluation, explain, inspect and export
use this engine; predict and tags use it on CUDA and for checkpoints without an ONNX file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import MgcError
from .checkpoint import load_checkpoint, network_from_checkpoint, novelty_of, temperatures_of
from .clips import ClipOutputs, span_clips
from .cores import cpu_sample, decoding_threads, engine_threads
from .models.base import GenreNetwork
from .novelty import NoveltyScale


@dataclass
class GenreModel:
    """A network ready to classify: the network, its labels and where it runs."""

    name: str
    network: GenreNetwork
    labels: list[str]
    device: torch.device
    fast_path: bool = True  # use the network's exact span_logits where it has one; False: clip by clip
    temperatures: dict[str, float] = field(default_factory=dict)  # per aggregation (calibration.py); none: 1
    novelty: NoveltyScale | None = None  # read from the kept tagger's tags (novelty.py); None: no novelty score

    engine = "torch"

    @property
    def clip_samples(self) -> int:
        return self.network.config.clip_samples

    @property
    def is_tagger(self) -> bool:
        return self.network.is_tagger

    @property
    def batch_size(self) -> int:
        """Clips per forward pass when the caller names none.

        4 on the CPU: a few clips' activations stay in the per-core cache, where 16 clips' do
        not (BBNN: a 4-min track in 1.2 s instead of 1.8; the sinc fast path is as fast with
        4-clip spans as with 16; see docs/performance.md). 16 on CUDA, which wants big batches.
        """
        return 16 if self.device.type == "cuda" else 4

    @property
    def decoders(self) -> int:
        """Threads decoding files ahead of the network (inference.classify_files; cores.decoding_threads)."""
        return decoding_threads(self.device.type)

    @property
    def reads_spans(self) -> bool:
        """Whether `span_outputs` reads a span whole (the network's exact fast path) rather than clip by clip.

        No network that keeps a tagger has a fast path: the tags come from the clip-by-clip forward.
        """
        return self.fast_path and self.network.has_fast_path and not self.network.has_tags

    def clip_outputs(self, clips: np.ndarray) -> ClipOutputs:
        """The outputs of a batch of clips [n_clips, clip_samples] (mixed precision on CUDA)."""
        with self._inference():
            wave = torch.tensor(clips, device=self.device)
            if not self.network.has_tags:
                return ClipOutputs(_numpy(self.network(wave)))
            logits, tag_logits = self.network.forward_with_tags(wave)
            return ClipOutputs(_numpy(logits), _numpy(tag_logits))

    def span_outputs(self, span: np.ndarray, hop: int, n_clips: int) -> ClipOutputs:
        """The outputs of the clips span[i * hop : i * hop + clip_samples] (clips.iter_spans)."""
        if not self.reads_spans:
            return self.clip_outputs(span_clips(span, self.clip_samples, hop, n_clips))
        with self._inference():
            return ClipOutputs(_numpy(self.network.span_logits(torch.from_numpy(span).to(self.device), hop, n_clips)))

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=self.device.type == "cuda"):
            yield


def _numpy(outputs: torch.Tensor) -> np.ndarray:
    return outputs.float().cpu().numpy()


def pick_device(device: str = "auto") -> torch.device:
    """"auto" is CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise MgcError(f"unknown device {device!r} (use auto, cpu or cuda)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MgcError("CUDA was asked for but no CUDA device is available (use --device cpu)")
    return torch.device(device)


def place(network: GenreNetwork, device: torch.device) -> GenreNetwork:
    """Move a network to `device`, its 2D convolution weights in channels-last layout.

    oneDNN runs NHWC convolutions about twice as fast as NCHW on these CPUs (BBNN: 1.9x per
    training step, 2x in inference), and CUDA's tensor cores prefer NHWC too. Networks
    without 2D convolutions are unaffected; the outputs agree to float rounding (2e-6).
    A network whose 2D convolutions have one input channel (musicnn's front end) says
    `channels_last = False`: oneDNN ran those 1.8x slower in NHWC.
    """
    layout = torch.channels_last if network.channels_last else torch.contiguous_format
    return network.to(device, memory_format=layout)


def model_from_checkpoint(checkpoint: dict, device: torch.device, source: str = "checkpoint") -> GenreModel:
    """The classifier a checkpoint holds, on `device` and in eval mode."""
    network = network_from_checkpoint(checkpoint, source)
    place(network, device).eval()
    labels = list(checkpoint["labels"])
    return GenreModel(
        checkpoint["model"], network, labels, device,
        temperatures=temperatures_of(checkpoint, source), novelty=novelty_of(checkpoint, source),
    )


def load_torch_model(path: str | Path, device: str = "auto") -> GenreModel:
    """Load a classifier from a checkpoint file.

    On the CPU it also sets torch's thread count to the cores that other processes left idle
    while it loaded (see cores.idle_cores), or OMP_NUM_THREADS up to the machine's cores.
    """
    before = cpu_sample()
    model = model_from_checkpoint(load_checkpoint(path), pick_device(device), str(path))
    if model.device.type == "cpu":
        torch.set_num_threads(engine_threads(before))
    return model
