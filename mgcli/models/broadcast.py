"""Broadcast networks on a log-mel spectrogram: BBNN and the compact variant of Heakl et al."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mgcli import MgcError
from mgcli.audio import CLIP_SAMPLES, SAMPLE_RATE
from mgcli.models.base import BANDS_BY_TIME, ExplainedInput, FeatureMap, GenreNetwork
from mgcli.models.mel import LogMel
from mgcli.models.sinc import WaveformNorm


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int | tuple[int, int]) -> nn.Sequential:
    """A 'same'-padded convolution -> BatchNorm -> ReLU (no conv bias: BatchNorm's shift replaces it)."""
    size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, size, padding=(size[0] // 2, size[1] // 2), bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def conv3x3(in_channels: int, out_channels: int, factorised: bool) -> list[nn.Module]:
    """A 3x3 convolution, or when factorised a 3x1 then a 1x3 (6 weights per channel pair instead of 9)."""
    if factorised:
        return [conv_bn_relu(in_channels, out_channels, (3, 1)), conv_bn_relu(out_channels, out_channels, (1, 3))]
    return [conv_bn_relu(in_channels, out_channels, 3)]


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated: [B, C, H, W] -> [B, 4 * width, H, W].

    Branches: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max-pool -> 1x1. The 1x1 in front of the 3x3 and
    5x5 reduces to `bottleneck` maps. Factorised: each 3x3 is a 3x1 then a 1x3, and the 5x5 (the
    same receptive field) is two such factorised 3x3s.
    """

    def __init__(self, in_channels: int, width: int, bottleneck: int, factorised: bool):
        super().__init__()
        self.branch1 = conv_bn_relu(in_channels, width, 1)
        self.branch3 = nn.Sequential(conv_bn_relu(in_channels, bottleneck, 1), *conv3x3(bottleneck, width, factorised))
        if factorised:
            wide = [*conv3x3(bottleneck, bottleneck, True), *conv3x3(bottleneck, width, True)]
        else:
            wide = [conv_bn_relu(bottleneck, width, 5)]
        self.branch5 = nn.Sequential(conv_bn_relu(in_channels, bottleneck, 1), *wide)
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn_relu(in_channels, width, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


@dataclass
class BBNNConfig:
    n_classes: int = 10
    sample_rate: int = SAMPLE_RATE  # make_config refuses any other; kept because checkpoints carry it
    clip_samples: int = CLIP_SAMPLES
    n_mels: int = 128
    n_fft: int = 1024  # also the window length
    hop_length: int = 512
    stem_channels: int = 32
    stem_pool: tuple[int, int] = (1, 4)  # max-pool (mel, time) after the first conv: time by 4, as in the papers
    n_blocks: int = 3
    width: int = 32  # maps per inception branch: each block adds 4 * width channels
    bottleneck: int = 32  # maps of the 1x1 reductions in front of the 3x3 and 5x5 branches
    factorised: bool = False  # 3x1 + 1x3 for each 3x3, two of those for the 5x5
    transition_channels: int = 32


@dataclass
class BroadcastConfig(BBNNConfig):
    """Heakl et al.'s variant: four factorised blocks; bottleneck 24 keeps about 180k parameters."""

    n_blocks: int = 4
    bottleneck: int = 24
    factorised: bool = True


class BBNN(GenreNetwork):
    """BBNN, bottom-up broadcast network (Liu et al. 2021): 3 densely joined inception blocks on a log-mel.

    Liu, Feng, Liu, Wang & Liu, "Bottom-up broadcast neural network for music genre
    classification", Multimedia Tools and Applications 2021 (arXiv 1901.08928). Pipeline: waveform
    layer norm -> log-mel (128 bands) -> BatchNorm2d(1) -> shallow module: 3x3 conv (32) -> BN ->
    ReLU -> max-pool time by 4 -> broadcast module: 3 inception blocks of 4 x 32 maps, each
    block's output concatenated with its input, so the last one sees every earlier map (32 + 3 x
    128 = 416 channels out) -> transition: 1x1 conv (32) -> BN -> ReLU -> 2x2 max-pool -> global
    average pooling -> linear classifier. 181,100 parameters with the default config (the paper:
    about 180k; the same layers with conv biases and no BatchNorm have 180,458).

    Differences from the paper:
    - 3-s clips (48,000 samples) where the paper feeds whole 30-s excerpts, so clips are
      classified like every other model here and tracks by aggregating their clips;
    - 16 kHz audio with a 1024-point FFT and hop 512 (64 ms window, 32 ms hop) where the paper
      has 2048 / 1024 at 22,050 Hz (93 / 46 ms): about the same time resolution, 94 x 128 per
      clip;
    - BatchNorm2d(1) on the log-mel input, as ResNetMel, and BatchNorm after every convolution
      (conv -> BN -> ReLU), with no conv biases;
    - PyTorch's default initialisation.
    """

    def __init__(self, config: BBNNConfig):
        super().__init__()
        frames = config.clip_samples // config.hop_length + 1
        if config.n_mels // config.stem_pool[0] < 2 or frames // config.stem_pool[1] < 2:
            raise MgcError(
                f"a {config.n_mels} x {frames} log-mel (bands x frames) is too small: the stem_pool "
                f"{tuple(config.stem_pool)} and the transition's 2 x 2 max-pool need at least 2 x 2 left"
            )
        self.config = config
        self.wave_norm = WaveformNorm(config.clip_samples)
        self.front_end = LogMel(config.sample_rate, config.n_fft, config.hop_length, config.n_mels)
        self.input_norm = nn.BatchNorm2d(1)  # learned scale and offset for the log-mel values
        self.stem = nn.Sequential(conv_bn_relu(1, config.stem_channels, 3), nn.MaxPool2d(config.stem_pool))
        channels = config.stem_channels
        blocks = []
        for _ in range(config.n_blocks):
            blocks.append(InceptionBlock(channels, config.width, config.bottleneck, config.factorised))
            channels += 4 * config.width
        self.blocks = nn.ModuleList(blocks)
        self.transition = nn.Sequential(conv_bn_relu(channels, config.transition_channels, 1), nn.MaxPool2d(2))
        self.classifier = nn.Linear(config.transition_channels, config.n_classes)

    def forward(self, wave: Tensor) -> Tensor:
        x = self.stem(self.input_norm(self.front_end(self.wave_norm(wave)).unsqueeze(1)))
        for block in self.blocks:
            x = torch.cat([x, block(x)], dim=1)  # the broadcast: every block's input travels on
        return self.classifier(self.transition(x).mean(dim=(2, 3)))

    def explained_inputs(self) -> list[ExplainedInput]:
        return [ExplainedInput("log-mel", self.input_norm, BANDS_BY_TIME, [FeatureMap(self.transition[0])])]


def lecun_normal_(module: nn.Module) -> None:
    """Normal weights with std 1 / sqrt(fan_in) for every convolution and linear layer; zero biases."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            fan_in = layer.weight[0].numel()
            nn.init.normal_(layer.weight, 0.0, fan_in**-0.5)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class Broadcast(BBNN):
    """Broadcast network (Heakl et al. 2022): 4 factorised inception blocks, LeCun init, ~180k parameters.

    Heakl, Abdelgawad & Parque, "A study on broadcast networks for music genre classification",
    IJCNN 2022: the compact variant of BBNN. Same pipeline as BBNN, with four blocks instead of
    three (32 + 4 x 128 = 544 channels out of the broadcast module: a growth of 32 maps per
    branch), every 3x3 factorised into 3x1 + 1x3, the 5x5 branch replaced by two factorised 3x3s,
    1x1 bottlenecks of 24 maps in front of them, BatchNorm then ReLU after every convolution, and
    LeCun-normal initialisation. 177,644 parameters with the default config (the paper: about 180k).

    Differences from the paper:
    - the bottleneck width (24) is chosen here to land near the paper's 180k parameters (32, the
      branch width, gives 209k);
    - 3-s clips and the 16 kHz mel settings, BatchNorm2d(1) on the input and no conv biases, as
      for BBNN (see its docstring).
    """

    def __init__(self, config: BroadcastConfig):
        super().__init__(config)
        lecun_normal_(self)
