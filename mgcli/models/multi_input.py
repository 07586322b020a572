"""A two-branch network (log-mel and learned sinc spectrogram) whose branches exchange feature maps mid-way."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgcli import MgcError
from mgcli.audio import CLIP_SAMPLES, SAMPLE_RATE
from mgcli.models.base import BANDS_BY_TIME, ExplainedInput, FeatureMap, GenreNetwork
from mgcli.models.broadcast import conv_bn_relu
from mgcli.models.mel import LogMel
from mgcli.models.resnet import ClassifierHead
from mgcli.models.sinc import MultiScaleSinc, WaveformNorm


def conv_pool_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv -> BN -> ReLU -> 2x2 max-pool: [B, in, H, W] -> [B, out, H // 2, W // 2]."""
    return nn.Sequential(conv_bn_relu(in_channels, out_channels, 3), nn.MaxPool2d(2))


def exchange(mel: Tensor, sinc: Tensor) -> tuple[Tensor, Tensor]:
    """Each branch's map gets the other's, resized onto its own grid by adaptive average pooling, as extra channels."""
    return (
        torch.cat([mel, F.adaptive_avg_pool2d(sinc, mel.shape[-2:])], dim=1),
        torch.cat([sinc, F.adaptive_avg_pool2d(mel, sinc.shape[-2:])], dim=1),
    )


@dataclass
class MultiInputConfig:
    n_classes: int = 10
    sample_rate: int = SAMPLE_RATE  # make_config refuses any other; kept because checkpoints carry it
    clip_samples: int = CLIP_SAMPLES
    n_mels: int = 128
    n_fft: int = 512  # also the window length
    hop_length: int = 256
    n_filters: int = 48  # sinc filters per bank: the height of the sinc branch's map
    kernel_sizes: tuple[int, ...] = (33, 65, 129)  # one sinc bank (one image channel) per length
    pooled_width: int = 188  # time steps of the sinc map: the mel frame count of a 3-s clip
    min_low_hz: float = 50.0
    min_band_hz: float = 50.0
    init_low_hz: float = 30.0
    channels: tuple[int, ...] = (16, 32, 64, 128)  # one conv block per entry, in each branch
    exchange_after: int = 2  # blocks each branch runs before the two swap feature maps
    fc_hidden: int = 128
    dropout: float = 0.5


class MultiInput(GenreNetwork):
    """Multi-input network (Wang 2023): log-mel and learned sinc branches exchange feature maps mid-way.

    After Wang's 2023 thesis on multi-input networks with mid-level feature interaction for music
    genre classification, explained with Grad-CAM (as summarised in the reference notes, which give
    no further architectural detail). Pipeline: waveform layer norm, then two branches of
    `len(channels)` blocks (3x3 conv -> BN -> ReLU -> 2x2 max-pool):
    - mel: log-mel (128 bands, 512-point FFT, hop 256: 128 x 188 for 3 s) -> BatchNorm2d(1) -> blocks;
    - sinc: MultiScaleSinc (48 filters per bank of 33, 65, 129 taps, pooled to 188 steps: 3 x 48 x
      188) -> blocks.
    After block `exchange_after` (2) each branch's map is resized (adaptive average pooling) onto the
    other's grid and concatenated to its channels, so the next blocks of both branches read both inputs.
    At the end each branch is averaged over its grid, the two vectors are concatenated, and
    Linear -> ReLU -> Dropout -> Linear gives the logits.

    For Grad-CAM, the mid-level maps are the outputs of `mel_blocks[i]` and `sinc_blocks[i]`
    (forward hooks on those modules); `mel_blocks[exchange_after]` is the first block that reads
    both branches.

    Differences from the thesis: the second input is a learned multi-scale sinc spectrogram (the
    thesis pairs the mel spectrogram with other hand-made spectral features); the interaction is
    one exchange by concatenation, both ways; widths (16 ... 128) and the sinc front end (48
    filters, at most 129 taps) are small so the model trains on a CPU; 3-s clips.
    """

    def __init__(self, config: MultiInputConfig):
        super().__init__()
        n_blocks = len(config.channels)
        if not 1 <= config.exchange_after < n_blocks:
            raise MgcError(f"multi-input: exchange_after must be 1 .. {n_blocks - 1}, got {config.exchange_after}")
        mel_frames = config.clip_samples // config.hop_length + 1
        if min(config.n_mels, config.n_filters, config.pooled_width, mel_frames) < 2**n_blocks:
            raise MgcError(
                f"multi-input: {n_blocks} blocks halve each map {n_blocks} times; n_mels, n_filters, "
                f"pooled_width and the mel frame count must be at least {2**n_blocks}"
            )
        self.config = config
        self.wave_norm = WaveformNorm(config.clip_samples)
        self.mel = LogMel(config.sample_rate, config.n_fft, config.hop_length, config.n_mels)
        self.mel_norm = nn.BatchNorm2d(1)  # learned scale and offset for the log-mel values
        self.sinc = MultiScaleSinc(
            config.n_filters,
            config.kernel_sizes,
            config.pooled_width,
            config.sample_rate,
            config.min_low_hz,
            config.min_band_hz,
            config.init_low_hz,
        )
        mel_in = [1, *config.channels[:-1]]
        sinc_in = [len(config.kernel_sizes), *config.channels[:-1]]
        shared = config.channels[config.exchange_after - 1]  # what each branch receives from the other
        mel_in[config.exchange_after] += shared
        sinc_in[config.exchange_after] += shared
        self.mel_blocks = nn.ModuleList(conv_pool_block(i, o) for i, o in zip(mel_in, config.channels))
        self.sinc_blocks = nn.ModuleList(conv_pool_block(i, o) for i, o in zip(sinc_in, config.channels))
        self.head = ClassifierHead(2 * config.channels[-1], config.fc_hidden, config.n_classes, config.dropout)

    has_fast_path = True  # its waveform norm has no positional affine, so span_logits is exact

    def forward(self, wave: Tensor) -> Tensor:
        wave = self.wave_norm(wave)
        return self.branches(wave, self.sinc(wave))

    def span_logits(self, span: Tensor, hop: int, n_clips: int) -> Tensor:
        """forward() of the clips span[i * hop : i * hop + clip_samples], i < n_clips: [n_clips, n_classes].

        The exact fast path for inference: the sinc banks filter the span once
        (MultiScaleSinc.forward_span); the mel branch still reads each clip.
        """
        if self.training:
            raise ValueError("span_logits needs eval mode; use forward() on clips")
        clip_samples = self.config.clip_samples
        if len(span) < clip_samples + (n_clips - 1) * hop:
            raise ValueError(f"a span of {len(span)} samples holds fewer than {n_clips} clips at hop {hop}")
        clips = self.wave_norm(span.unfold(0, clip_samples, hop)[:n_clips])
        return self.branches(clips, self.sinc.forward_span(span, hop, n_clips, clip_samples))

    def explained_inputs(self) -> list[ExplainedInput]:
        """Both 2D inputs, mapped from the same backward pass."""
        return [
            ExplainedInput("log-mel", self.mel_norm, BANDS_BY_TIME, [FeatureMap(self.mel_blocks[-1][0])]),
            ExplainedInput("learned sinc spectrogram", self.sinc, BANDS_BY_TIME, [FeatureMap(self.sinc_blocks[-1][0])]),
        ]

    def learned_spectrogram(self, clips: Tensor) -> Tensor:
        """[B, clip_samples] -> [B, n_banks, n_filters, pooled_width]."""
        return self.sinc(self.wave_norm(clips))

    @property
    def learned_taps(self) -> list[int]:
        return list(self.config.kernel_sizes)

    def branches(self, wave: Tensor, sinc: Tensor) -> Tensor:
        """Logits from the layer-normalised clips [B, T] and their sinc spectrogram [B, n_banks, K, W]."""
        mel = self.mel_norm(self.mel(wave).unsqueeze(1))
        for i, (mel_block, sinc_block) in enumerate(zip(self.mel_blocks, self.sinc_blocks)):
            if i == self.config.exchange_after:
                mel, sinc = exchange(mel, sinc)
            mel, sinc = mel_block(mel), sinc_block(sinc)
        return self.head(torch.cat([mel.mean(dim=(2, 3)), sinc.mean(dim=(2, 3))], dim=1))
