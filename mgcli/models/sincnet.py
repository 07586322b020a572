"""SincNet, the raw-waveform baseline of the MS-SincResNet paper."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from mgcli.audio import CLIP_SAMPLES, SAMPLE_RATE
from mgcli.models.base import WAVEFORM, ExplainedInput, FeatureMap, GenreNetwork
from mgcli.models.sinc import SincConv, WaveformNorm

LEAKY_SLOPE = 0.2  # SincNet's leaky ReLU slope


@dataclass
class SincNetConfig:
    n_classes: int = 10
    sample_rate: int = SAMPLE_RATE  # make_config refuses any other; kept because checkpoints carry it
    clip_samples: int = CLIP_SAMPLES
    n_filters: int = 80
    kernel_size: int = 251
    conv_channels: int = 60
    conv_kernel: int = 5
    pooled_width: int = 64  # time steps kept before the FC layers (not in SincNet, see SincNet's docstring)
    fc_size: int = 2048
    dropout: float = 0.0


class SincNet(GenreNetwork):
    """SincNet (Ravanelli & Bengio 2018): sinc filters, two small 1D convolutions and three 2048-unit FC layers.

    Ravanelli & Bengio, "Speaker recognition from raw waveform with SincNet", SLT 2018, as used
    as a baseline by Chang, Chen & Lee (MS-SincResNet, ICMR 2021): 80 sinc filters of 251 taps,
    |.|, then per layer max-pool 3 -> normalisation -> leaky ReLU, two conv layers of 60 x 5, three
    FC layers of 2048 (layer norm on their input, batch norm in each) and a linear classifier.

    Differences from SincNet: before the FC layers the 60 channels are average-pooled over time to
    `pooled_width` (64) steps; flattening 3 s at 16 kHz would feed about 106k features into the
    first 2048-unit layer (217 M weights). The conv-layer normalisation is GroupNorm(1, C): each
    example is normalised over channels and time with a gain and bias per channel, where SincNet's
    layer norm has a gain and bias per (channel, time step). The waveform layer norm has no affine
    and the sinc convolution is zero-padded to keep the input length (see SincConv).
    """

    def __init__(self, config: SincNetConfig):
        super().__init__()
        self.config = config
        channels = config.conv_channels
        self.wave_norm = WaveformNorm(config.clip_samples)
        self.sinc = SincConv(config.n_filters, config.kernel_size, config.sample_rate)
        self.sinc_norm = nn.GroupNorm(1, config.n_filters)
        self.conv1 = nn.Conv1d(config.n_filters, channels, config.conv_kernel)
        self.conv1_norm = nn.GroupNorm(1, channels)
        self.conv2 = nn.Conv1d(channels, channels, config.conv_kernel)
        self.conv2_norm = nn.GroupNorm(1, channels)
        self.time_pool = nn.AdaptiveAvgPool1d(config.pooled_width)

        in_features = channels * config.pooled_width
        self.fc_input_norm = nn.LayerNorm(in_features)
        self.fc = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Linear(in_features if i == 0 else config.fc_size, config.fc_size),
                    nn.BatchNorm1d(config.fc_size),
                    nn.LeakyReLU(LEAKY_SLOPE),
                    nn.Dropout(config.dropout),
                )
                for i in range(3)
            )
        )
        self.classifier = nn.Linear(config.fc_size, config.n_classes)

    def forward(self, wave: Tensor) -> Tensor:
        x = self.wave_norm(wave).unsqueeze(1)
        x = F.leaky_relu(self.sinc_norm(F.max_pool1d(self.sinc(x).abs(), 3)), LEAKY_SLOPE)
        x = F.leaky_relu(self.conv1_norm(F.max_pool1d(self.conv1(x), 3)), LEAKY_SLOPE)
        x = F.leaky_relu(self.conv2_norm(F.max_pool1d(self.conv2(x), 3)), LEAKY_SLOPE)
        x = self.time_pool(x).flatten(1)
        return self.classifier(self.fc(self.fc_input_norm(x)))

    def explained_inputs(self) -> list[ExplainedInput]:
        """The waveform, with the last 1D map (the convolutions pooled to `pooled_width` steps) for Grad-CAM."""
        return [ExplainedInput("waveform", self.wave_norm, WAVEFORM, [FeatureMap(self.time_pool)])]
