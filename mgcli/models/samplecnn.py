"""SampleCNN, a raw-waveform CNN with sample-level filters, and its multi-level, multi-scale aggregation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mgcli import MgcError
from mgcli.audio import SAMPLE_RATE
from mgcli.models.base import WAVEFORM, ExplainedInput, FeatureMap, GenreNetwork
from mgcli.models.resnet import ClassifierHead
from mgcli.models.sinc import WaveformNorm

SAMPLECNN_CLIP = 3**10  # 59,049 samples: the papers' input, 3.69 s at 16 kHz
# The fewest time steps per clip of the block that Grad-CAM weighs: the last blocks keep 1 to 9
# (at 59,049 samples), too few to say which part of a clip carried the genre.
GRAD_CAM_STEPS = 16


def blocks_that_fit(clip_samples: int, frame_size: int) -> int:
    """How many max-pool-3 blocks bring the clip_samples // frame_size frames down to 1 or 2 (not below 1)."""
    frames, blocks = clip_samples // frame_size, 0
    while frames >= 3:
        frames //= 3
        blocks += 1
    return blocks


def sample_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Conv (size 3) -> BN -> ReLU -> max-pool 3: [B, in, T] -> [B, out, T // 3]."""
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, 3, padding=1, bias=False),  # BN's shift makes a bias redundant
        nn.BatchNorm1d(out_channels),
        nn.ReLU(),
        nn.MaxPool1d(3),
    )


class SampleLevelStack(nn.Module):
    """Strided frame conv (size = stride = frame_size) -> BN -> ReLU, then one sample_block per entry of `channels`.

    [B, T] -> the output of every block, [B, channels[i], T // frame_size // 3^(i+1)].
    """

    def __init__(self, frame_size: int, stem_channels: int, channels: tuple[int, ...]):
        super().__init__()
        self.frame_size = frame_size
        self.stem = nn.Sequential(
            nn.Conv1d(1, stem_channels, frame_size, stride=frame_size, bias=False),
            nn.BatchNorm1d(stem_channels),
            nn.ReLU(),
        )
        widths = (stem_channels, *channels)
        self.blocks = nn.ModuleList(sample_block(widths[i], widths[i + 1]) for i in range(len(channels)))

    def grad_cam_block(self, clip_samples: int) -> nn.Module:
        """The deepest block whose output keeps at least GRAD_CAM_STEPS time steps of a clip (27 of
        0.14 s at 59,049 samples); the first block when none does."""
        steps = clip_samples // self.frame_size  # the stem's output
        chosen = self.blocks[0]
        for block in self.blocks:
            steps //= 3  # this block's output
            if steps < GRAD_CAM_STEPS:
                break
            chosen = block
        return chosen

    def forward(self, wave: Tensor) -> list[Tensor]:
        x = self.stem(wave.unsqueeze(1))
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs


@dataclass
class SampleCNNConfig:
    n_classes: int = 10
    sample_rate: int = SAMPLE_RATE  # make_config refuses any other; kept because checkpoints carry it
    clip_samples: int = SAMPLECNN_CLIP
    frame_size: int = 3  # size and stride of the first convolution
    stem_channels: int = 128
    channels: tuple[int, ...] = (128, 128, 256, 256, 256, 256, 256, 256, 512)  # one block per entry
    dropout: float = 0.5


class SampleCNN(GenreNetwork):
    """SampleCNN (Lee et al. 2017): sample-level 1D convolutions of size 3 on the raw waveform, 3^10-sample input.

    Lee, Park, Kim & Nam, "Sample-level deep convolutional neural networks for music auto-tagging
    using raw waveforms", SMC 2017 (the "3^9 model"). Pipeline: waveform layer norm -> conv of
    size 3, stride 3, 128 channels -> BN -> ReLU -> nine blocks of conv 3 (padding 1) -> BN -> ReLU
    -> max-pool 3, with 128, 128, 256 x 6, 512 channels -> time 59,049 / 3^10 = 1 -> dropout 0.5 ->
    linear classifier. The number of blocks is len(config.channels).

    Differences from the paper:
    - one softmax over genres (cross-entropy) instead of 50 independent sigmoid tags;
    - 16 kHz audio where the paper uses 22,050 Hz, so the 59,049 samples span 3.69 s, not 2.68 s;
    - the features are max-pooled over whatever time is left before the classifier: an identity
      at the default config (time is 1), it lets other clip lengths work;
    - the paper's table ends with a 1x1 convolution of 512 channels (in effect a 512-unit hidden
      layer on the one remaining time step) before its dropout; here the last block feeds the
      dropout and the linear classifier directly (262k fewer parameters at the default widths);
    - no convolution biases, since each convolution is followed by BatchNorm;
    - a waveform layer norm in front, as in every model here.
    """

    def __init__(self, config: SampleCNNConfig):
        super().__init__()
        n_blocks = len(config.channels)
        if blocks_that_fit(config.clip_samples, config.frame_size) < n_blocks:
            needed = config.frame_size * 3**n_blocks
            raise MgcError(
                f"samplecnn: clip_samples={config.clip_samples} is too short for {n_blocks} blocks "
                f"after a frame of {config.frame_size}: it needs at least {needed}"
            )
        self.config = config
        self.wave_norm = WaveformNorm(config.clip_samples)
        self.stack = SampleLevelStack(config.frame_size, config.stem_channels, config.channels)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.channels[-1], config.n_classes)

    def forward(self, wave: Tensor) -> Tensor:
        features = self.stack(self.wave_norm(wave))[-1].amax(dim=-1)
        return self.classifier(self.dropout(features))

    def explained_inputs(self) -> list[ExplainedInput]:
        block = self.stack.grad_cam_block(self.config.clip_samples)
        return [ExplainedInput("waveform", self.wave_norm, WAVEFORM, [FeatureMap(block)])]


@dataclass
class SampleCNNMultiConfig:
    n_classes: int = 10
    sample_rate: int = SAMPLE_RATE  # make_config refuses any other; kept because checkpoints carry it
    clip_samples: int = SAMPLECNN_CLIP
    frame_sizes: tuple[int, ...] = (3, 9)  # one SampleCNN branch per first-layer frame size ("scales")
    stem_channels: int = 64
    # Half SampleCNN's widths; each branch keeps as many of the last blocks as its frame count allows.
    channels: tuple[int, ...] = (64, 64, 128, 128, 128, 128, 128, 128, 256)
    levels: int = 3  # how many of each branch's last blocks feed the classifier
    fc_hidden: int = 512
    dropout: float = 0.5


class SampleCNNMulti(GenreNetwork):
    """Multi-level, multi-scale SampleCNN (Lee & Nam 2017): the last 3 blocks of two SampleCNN branches, joined.

    Lee & Nam, "Multi-level and multi-scale feature aggregation using pretrained convolutional
    neural networks for music auto-tagging", IEEE Signal Processing Letters 2017, and its
    sample-level version, Lee & Nam, "Multi-level and multi-scale feature aggregation using
    sample-level deep convolutional neural networks for music classification", ICML 2017
    workshop on machine learning for music discovery. Pipeline: waveform layer norm -> one
    SampleCNN stack per frame size (the first convolution's size and stride: 3 and 9), all
    reading the same waveform -> the outputs of each stack's last `levels` (3) blocks, each
    max-pooled over time ("multi-level") -> concatenated over levels and scales -> Linear ->
    ReLU -> Dropout -> Linear.

    A branch with frame size f keeps the last n blocks of `channels`, n being how many
    max-pool-3 steps take clip_samples // f frames down to 1 (or 2): at 59,049 samples the
    frame-3 branch has all 9 blocks and the frame-9 branch the last 8, so the two branches
    end on the same widths and time steps (9, 3, 1).

    Differences from the papers:
    - trained end to end as one network; the papers pretrain one SampleCNN per scale, then
      train the classifier on their frozen features;
    - the features of a clip are max-pooled over its time steps, as in the papers within a
      segment; the papers then average the segments of a whole song, here the track-level
      aggregation in `mgc predict` / `evaluate` plays that part;
    - default channels are half SampleCNN's (64 ... 256) so two branches train on a CPU;
    - one softmax over genres instead of sigmoid tags; 16 kHz audio (59,049 samples = 3.69 s);
      one hidden layer in the classifier.
    """

    def __init__(self, config: SampleCNNMultiConfig):
        super().__init__()
        if not 1 <= config.levels <= len(config.channels):
            raise MgcError(f"samplecnn-mlms: levels must be 1 .. {len(config.channels)}, got {config.levels}")
        self.config = config
        self.wave_norm = WaveformNorm(config.clip_samples)
        branches = []
        for frame_size in config.frame_sizes:
            n_blocks = min(len(config.channels), blocks_that_fit(config.clip_samples, frame_size))
            if n_blocks < config.levels:
                raise MgcError(
                    f"samplecnn-mlms: clip_samples={config.clip_samples} leaves only {n_blocks} block(s) "
                    f"after a frame of {frame_size}, fewer than levels={config.levels}"
                )
            branches.append(SampleLevelStack(frame_size, config.stem_channels, config.channels[-n_blocks:]))
        self.branches = nn.ModuleList(branches)
        in_features = len(branches) * sum(config.channels[-config.levels :])
        self.head = ClassifierHead(in_features, config.fc_hidden, config.n_classes, config.dropout)

    def forward(self, wave: Tensor) -> Tensor:
        wave = self.wave_norm(wave)
        levels = self.config.levels
        features = [level.amax(dim=-1) for branch in self.branches for level in branch(wave)[-levels:]]
        return self.head(torch.cat(features, dim=1))

    def explained_inputs(self) -> list[ExplainedInput]:
        """The waveform, with one block of each branch for Grad-CAM: one layer of the two branches together."""
        blocks = [branch.grad_cam_block(self.config.clip_samples) for branch in self.branches]
        return [ExplainedInput("waveform", self.wave_norm, WAVEFORM, [FeatureMap(block) for block in blocks])]
