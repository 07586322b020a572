"""Log-mel front end, ResNet-18 on a mel spectrogram (the 2D baseline of the MS-SincResNet paper) and a linear floor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchaudio.transforms import MelSpectrogram

from mgcli import MgcError
from mgcli.audio import CLIP_SAMPLES, SAMPLE_RATE
from mgcli.models.base import BANDS_BY_TIME, ExplainedInput, FeatureMap, GenreNetwork
from mgcli.models.resnet import ClassifierHead, ResNet18, SpatialPyramidPool, load_torchvision_resnet18
from mgcli.models.sinc import WaveformNorm

MAX_FILTERBANK = 2**24  # numbers in a mel filterbank (64 MB); 1,024 bands of a 16,384-point FFT take half
LOG_FLOOR = 1e-6  # added to the mel power before the log, so silence stays finite


class LogMel(nn.Module):
    """Log mel power spectrogram: [B, T] -> [B, n_mels, T // hop_length + 1].

    Uses the slaney mel scale and filter normalisation (librosa's defaults); with 128 bands over
    the 257 bins of a 512-point FFT the HTK scale would leave one band empty.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_fft: int = 512, hop_length: int = 128, n_mels: int = 128):
        super().__init__()
        if n_mels * (n_fft // 2 + 1) > MAX_FILTERBANK:  # built on the CPU below, even for a meta-device build
            raise MgcError(f"a mel filterbank of {n_mels:,} bands by {n_fft // 2 + 1:,} frequencies is too large to build "
                           f"(at most {MAX_FILTERBANK:,} numbers): lower n_mels or n_fft")
        # torchaudio checks its filterbank for empty bands with a data-dependent test that fails on
        # the meta device; the filterbank and window are constants, so they are always built on the CPU.
        with torch.device("cpu"):
            self.mel = MelSpectrogram(
                sample_rate,
                n_fft=n_fft,
                win_length=n_fft,
                hop_length=hop_length,
                n_mels=n_mels,
                norm="slaney",
                mel_scale="slaney",
            )

    def forward(self, wave: Tensor) -> Tensor:
        return torch.log(self.mel(wave) + LOG_FLOOR)


@dataclass
class ResNetMelConfig:
    n_classes: int = 10
    sample_rate: int = SAMPLE_RATE  # make_config refuses any other; kept because checkpoints carry it
    clip_samples: int = CLIP_SAMPLES
    n_mels: int = 128
    n_fft: int = 512  # also the window length
    hop_length: int = 128
    backbone_width: int = 64
    spp: bool = True  # spatial pyramid pooling (1x1 + 2x2); False: global average pooling
    fc_hidden: int = 512
    dropout: float = 0.5


class ResNetMel(GenreNetwork):
    """ResNet-18 on a log-mel spectrogram, the 2D baseline of Chang et al. 2021.

    Chang, Chen & Lee, "MS-SincResNet: Joint learning of 1D and 2D kernels using multi-scale
    SincNet and ResNet for music genre classification", ICMR 2021 ("ResNet-18 on mel spectrogram":
    window 512, hop 128 at 16 kHz). Pipeline: waveform layer norm -> log-mel (128 bands) ->
    BatchNorm2d(1) -> repeated into 3 channels -> ResNet-18 -> pooling -> two FC layers.

    The paper gives no further detail; here the pooling and head are the same as MS-SincResNet's
    (spatial pyramid pooling by default) so that only the front end differs between the two.
    """

    def __init__(self, config: ResNetMelConfig):
        super().__init__()
        self.config = config
        self.wave_norm = WaveformNorm(config.clip_samples)
        self.front_end = LogMel(config.sample_rate, config.n_fft, config.hop_length, config.n_mels)
        # Learned scale and offset for the log-mel values, which are far from zero mean, unit variance.
        self.input_norm = nn.BatchNorm2d(1)
        self.backbone = ResNet18(config.backbone_width)
        self.pool = SpatialPyramidPool((1, 2) if config.spp else (1,))
        self.head = ClassifierHead(
            self.pool.out_features(self.backbone.out_channels), config.fc_hidden, config.n_classes, config.dropout
        )

    def forward(self, wave: Tensor) -> Tensor:
        image = self.input_norm(self.front_end(self.wave_norm(wave)).unsqueeze(1))
        return self.head(self.pool(self.backbone(image.expand(-1, 3, -1, -1))))

    def init_backbone(self, weights: dict[str, Tensor], source: str) -> int:
        """Load torchvision ImageNet resnet18 weights into the backbone, as SincResNet.init_backbone."""
        return load_torchvision_resnet18(self.backbone, weights, source)

    def explained_inputs(self) -> list[ExplainedInput]:
        return [ExplainedInput("log-mel", self.input_norm, BANDS_BY_TIME, [FeatureMap(self.backbone)])]


@dataclass
class MelLinearConfig:
    n_classes: int = 10
    sample_rate: int = SAMPLE_RATE  # make_config refuses any other; kept because checkpoints carry it
    clip_samples: int = CLIP_SAMPLES
    n_mels: int = 128
    n_fft: int = 512  # also the window length
    hop_length: int = 256


class MelLinear(GenreNetwork):
    """The floor: a linear classifier on the per-band mean and standard deviation of the log-mel.

    Not from a paper: the simplest model that still learns, for judging the others against.
    Pipeline: waveform layer norm -> log-mel (128 bands, 512-point FFT, hop 256) -> mean and
    standard deviation of each band over time (256 features) -> BatchNorm1d without affine, which
    only standardises each feature (a learned scale and shift would be redundant before a linear
    layer) -> one Linear layer. No hidden layer: 2,570 parameters with 10 classes.
    """

    def __init__(self, config: MelLinearConfig):
        super().__init__()
        self.config = config
        self.wave_norm = WaveformNorm(config.clip_samples)
        self.front_end = LogMel(config.sample_rate, config.n_fft, config.hop_length, config.n_mels)
        self.standardise = nn.BatchNorm1d(2 * config.n_mels, affine=False)
        self.classifier = nn.Linear(2 * config.n_mels, config.n_classes)

    def forward(self, wave: Tensor) -> Tensor:
        mel = self.front_end(self.wave_norm(wave))
        # correction=0: a one-frame clip gives std 0, not NaN
        features = torch.cat([mel.mean(dim=-1), mel.std(dim=-1, correction=0)], dim=1)
        return self.classifier(self.standardise(features))

    def explained_inputs(self) -> list[ExplainedInput]:
        """The log-mel, for integrated gradients only: no convolution reads it, so no Grad-CAM."""
        return [ExplainedInput("log-mel", self.front_end, BANDS_BY_TIME, [])]
