"""MS-SincResNet and its single-scale ablation SincResNet."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mgcli import MgcError
from mgcli.audio import CLIP_SAMPLES, SAMPLE_RATE
from mgcli.models.base import BANDS_BY_TIME, ExplainedInput, FeatureMap, GenreNetwork
from mgcli.models.resnet import ClassifierHead, ResNet18, SpatialPyramidPool, load_torchvision_resnet18
from mgcli.models.sinc import MultiScaleSinc, WaveformNorm


@dataclass
class SincResNetConfig:
    n_classes: int = 10
    sample_rate: int = SAMPLE_RATE  # make_config refuses any other; kept because checkpoints carry it
    clip_samples: int = CLIP_SAMPLES
    n_filters: int = 160  # sinc filters per bank: the height of the learned spectrogram
    kernel_sizes: tuple[int, ...] = (251, 501, 1001)  # one bank per length; 1 or 3 banks
    pooled_width: int = 1024  # time steps of the learned spectrogram
    min_low_hz: float = 50.0
    min_band_hz: float = 50.0
    init_low_hz: float = 30.0
    norm_affine: bool = False  # True: the official code's per-sample LayerNorm affine
    backbone_width: int = 64  # 64 is ResNet-18; other widths cannot take ImageNet weights
    spp: bool = True  # spatial pyramid pooling (1x1 + 2x2) as in the paper; False: global average pooling
    fc_hidden: int = 512
    dropout: float = 0.5


@dataclass
class SincResNetSingleConfig(SincResNetConfig):
    """SincResNet: one bank of 1001-tap filters, its map repeated into the 3 image channels."""

    kernel_sizes: tuple[int, ...] = (1001,)


class SincResNet(GenreNetwork):
    """MS-SincResNet (Chang et al. 2021): sinc filterbanks at 3 scales (or 1: SincResNet) read by ResNet-18.

    Chang, Chen & Lee, "MS-SincResNet: Joint learning of 1D and 2D kernels using multi-scale
    SincNet and ResNet for music genre classification", ICMR 2021.

    Pipeline: waveform layer norm -> three banks of 160 learnable sinc band-pass filters
    (251, 501, 1001 taps), each BatchNorm1d -> ReLU -> average-pooled to 1024 steps, stacked into a
    3 x 160 x 1024 learned spectrogram -> ResNet-18 (conv5: 512 x 5 x 32) -> spatial pyramid
    pooling (1x1 + 2x2: 2560 features) -> two fully connected layers. With a single kernel size
    the one map is repeated into the three channels: the paper's "SincResNet" ablation.

    Differences from the paper: the waveform layer norm has no affine by default; the effective
    cut-offs have 50 Hz added to the low cut-off and the band width (min_low_hz, min_band_hz, as in
    the official code), on top of mel-spaced initial edges over 30 Hz .. fs/2 - 100 Hz (the paper:
    30 Hz .. fs/2; the 100 Hz leave room for those minimums, as in SincNet).
    Differences from the official code: SPP and two FC layers by default (spp=False gives its global
    average pooling, still followed by two FC layers where it has one Linear); no positional
    LayerNorm affine (norm_affine=True restores it); filters are not normalised to unit peak.
    """

    def __init__(self, config: SincResNetConfig):
        super().__init__()
        if len(config.kernel_sizes) not in (1, 3):
            raise MgcError(f"kernel_sizes must list 1 or 3 filter lengths, got {list(config.kernel_sizes)}")
        self.config = config
        self.wave_norm = WaveformNorm(config.clip_samples, affine=config.norm_affine)
        self.front_end = MultiScaleSinc(
            config.n_filters,
            config.kernel_sizes,
            config.pooled_width,
            config.sample_rate,
            config.min_low_hz,
            config.min_band_hz,
            config.init_low_hz,
        )
        self.backbone = ResNet18(config.backbone_width)
        self.pool = SpatialPyramidPool((1, 2) if config.spp else (1,))
        self.head = ClassifierHead(
            self.pool.out_features(self.backbone.out_channels), config.fc_hidden, config.n_classes, config.dropout
        )

    def learned_spectrogram(self, clips: Tensor) -> Tensor:
        """[B, clip_samples] -> [B, n_banks, n_filters, pooled_width]."""
        return self.front_end(self.wave_norm(clips))

    @property
    def learned_taps(self) -> list[int]:
        return list(self.config.kernel_sizes)

    def forward(self, wave: Tensor) -> Tensor:
        return self.head(self.pool(self.backbone(three_channels(self.learned_spectrogram(wave)))))

    @property
    def has_fast_path(self) -> bool:
        """Whether span_logits applies: a positional layer-norm affine ties samples to clip positions."""
        return not self.config.norm_affine

    def span_logits(self, span: Tensor, hop: int, n_clips: int) -> Tensor:
        """forward() of the clips span[i * hop : i * hop + clip_samples], i < n_clips: [n_clips, n_classes].

        The exact fast path for inference (MultiScaleSinc.forward_span): it needs eval mode and
        a layer norm without the positional affine, which ties each sample to a clip position.
        """
        if self.training or self.config.norm_affine:
            raise ValueError("span_logits needs eval mode and norm_affine=False; use forward() on clips")
        if len(span) < self.config.clip_samples + (n_clips - 1) * hop:
            raise ValueError(f"a span of {len(span)} samples holds fewer than {n_clips} clips at hop {hop}")
        image = three_channels(self.front_end.forward_span(span, hop, n_clips, self.config.clip_samples))
        # Channels-last runs ResNet-18's convolutions about 20% faster on the CPU (oneDNN's native layout).
        return self.head(self.pool(self.backbone(image.contiguous(memory_format=torch.channels_last))))

    def init_backbone(self, weights: dict[str, Tensor], source: str) -> int:
        """Load torchvision ImageNet resnet18 weights into the backbone (the paper starts from them)."""
        return load_torchvision_resnet18(self.backbone, weights, source)

    def explained_inputs(self) -> list[ExplainedInput]:
        return [ExplainedInput("learned sinc spectrogram", self.front_end, BANDS_BY_TIME, [FeatureMap(self.backbone)])]


def three_channels(image: Tensor) -> Tensor:
    """The image the backbone reads, [B, 3, H, W]: a single bank's map repeated into the 3 channels."""
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
