"""musicnn and its VGG baseline: the pretrained taggers of Pons & Serra, ported from TensorFlow.

Pons & Serra, "musicnn: pre-trained convolutional neural networks for music audio tagging",
ISMIR 2019 late-breaking demo; the published weights (MSD_musicnn, MTT_musicnn, MSD_vgg,
MTT_vgg) come from the `musicnn` package (ISC licence) and are converted into weights/ by
`python -m mgcli.convert_musicnn` (see weights/README.md). The layers here follow the
package's `models.py`, in PyTorch's [batch, channels, time, frequency] layout.

Used three ways:
- as the tagger itself (`head="tags"`: the 50 tag logits; `mgc tags`);
- as a frozen feature extractor under a genre head trained here (`musicnn-probe`);
- fine-tuned whole, the pretrained body at a lower learning rate (`musicnn`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.transforms import MelSpectrogram

from mgcli import MgcError
from mgcli.audio import CLIP_SAMPLES, SAMPLE_RATE

N_MELS = 96
FFT_SIZE = 512
FFT_HOP = 256
PATCH_FRAMES = 187  # musicnn's 3-s patch: librosa.time_to_frames(3 s) + 1
TF_BATCHNORM_EPS = 1e-3  # tf.layers.batch_normalization's default (PyTorch's is 1e-5)
FLOAT16_MAX = 65504.0
HEADS = ("tags", "penultimate", "pooled")


class MusicnnMel(nn.Module):
    """musicnn's input: log10(1 + 10000 * mel power), [B, samples] -> [B, 187, 96] (time, mel).

    As musicnn computes it with librosa: 512-point FFT (periodic Hann window), hop 256, frames
    centred with zero padding (librosa >= 0.10), power spectrum, 96 Slaney-scale bands with
    Slaney area normalisation over 0-8 kHz, the mel power rounded to float16 (musicnn casts it)
    and log-compressed. A 3-s clip gives 188 frames; the first 187 are musicnn's patch.
    """

    def __init__(self, n_frames: int = PATCH_FRAMES):
        super().__init__()
        self.n_frames = n_frames
        with torch.device("cpu"):  # constants: built on the CPU even under a meta-device build
            self.mel = MelSpectrogram(
                SAMPLE_RATE, n_fft=FFT_SIZE, hop_length=FFT_HOP, n_mels=N_MELS, pad_mode="constant",
                norm="slaney", mel_scale="slaney",
            )

    def forward(self, wave: Tensor) -> Tensor:
        power = self.mel(wave.float())[..., : self.n_frames]
        # musicnn rounds the mel power to float16 (numpy then computes the log in float32); clamped
        # where its float16 would overflow to inf.
        rounded = power.clamp(max=FLOAT16_MAX).half().float()
        return torch.log10(1 + 10000 * rounded).transpose(1, 2)


def batchnorm(channels: int, dims: int = 2) -> nn.Module:
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(channels, eps=TF_BATCHNORM_EPS)


class FrontEndBranch(nn.Module):
    """conv -> ReLU -> BatchNorm -> max over all mel bands: [B, 1, T, 96] -> [B, filters, T].

    Timbral branches span several mel bands (7 x 38 and 7 x 67, time padded by 3: 'same' in
    time, 'valid' in frequency); temporal ones span one band over time (128, 64, 32 frames x 1,
    'same' padding, TensorFlow's: the odd extra frame goes after).
    """

    def __init__(self, filters: int, kernel: tuple[int, int]):
        super().__init__()
        frames = kernel[0]
        self.pad = ((frames - 1) // 2, frames // 2) if kernel[1] == 1 else (3, 3)
        self.conv = nn.Conv2d(1, filters, kernel)
        self.norm = batchnorm(filters)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, 0, *self.pad))
        return self.norm(F.relu(self.conv(x))).amax(dim=3)


class MidEndLayer(nn.Module):
    """A 7-frame convolution over all channels -> ReLU -> BatchNorm: [B, C, T] -> [B, filters, T]."""

    def __init__(self, in_channels: int, filters: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7, padding=3)
        self.norm = batchnorm(filters, dims=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(F.relu(self.conv(x)))


@dataclass
class MusicnnConfig:
    n_classes: int = 10
    clip_samples: int = CLIP_SAMPLES
    head: str = "penultimate"  # "tags": output the 50 tag logits; else a genre layer on these features
    pretrained: str = "msd"  # shipped tagger (weights/musicnn-<name>.pt) that initialises a new model; "" for none
    freeze: bool = False  # True: train the genre layer only (a probe); its features come from a fixed network
    n_tags: int = 50
    timbral_filters: int = 204  # int(1.6 * 128)
    temporal_filters: int = 51  # int(1.6 * 32)
    midend_filters: int = 64
    backend_units: int = 200
    dropout: float = 0.5


@dataclass
class MusicnnProbeConfig(MusicnnConfig):
    freeze: bool = True


class Musicnn(nn.Module):
    """musicnn (Pons & Serra, ISMIR 2019 LBD): musically motivated CNN on a 96-band log-mel.

    Front end: BatchNorm on the log-mel, then five branches read it: two timbral (204 filters,
    7 x 38 and 7 x 67 time x mel) and three temporal (51 filters, 128, 64 and 32 frames), each
    max-pooled over frequency -> 561 channels. Mid end: three 64-filter 7-frame convolutions,
    the last two residual; front- and mid-end outputs are concatenated (753 channels). Back end:
    max and mean over time (interleaved per channel, as TensorFlow flattens them: 1506),
    BatchNorm, dropout, dense 200 + ReLU + BatchNorm (the "penultimate" embedding), dropout,
    dense 50 (tag logits). About 0.79M parameters, 1.4 GMAC per 3-s clip.

    `head` picks the output: the tag logits, or a genre layer on the penultimate embedding or
    on the pooled 1506 features. `freeze` keeps everything but the genre layer fixed, in eval
    mode (pretrained BatchNorm statistics and no dropout); unfrozen, the pretrained BatchNorm
    statistics are kept too (its layers stay in eval mode) while their scale and shift train,
    since a few hundred tracks estimate them worse than the Million Song Dataset did.
    """

    def __init__(self, config: MusicnnConfig):
        super().__init__()
        if config.head not in HEADS:
            raise MgcError(f"unknown musicnn head {config.head!r} (use {', '.join(HEADS)})")
        if config.head == "tags" and config.n_classes != config.n_tags:
            raise MgcError(f"head=tags outputs the {config.n_tags} tags; n_classes must be {config.n_tags}")
        self.config = config
        self.front_end = MusicnnMel()
        self.input_norm = batchnorm(1)
        self.timbral = nn.ModuleList(
            FrontEndBranch(config.timbral_filters, (7, int(share * N_MELS))) for share in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(FrontEndBranch(config.temporal_filters, (frames, 1)) for frames in (128, 64, 32))
        front_channels = 2 * config.timbral_filters + 3 * config.temporal_filters
        self.midend = nn.ModuleList([
            MidEndLayer(front_channels, config.midend_filters),
            MidEndLayer(config.midend_filters, config.midend_filters),
            MidEndLayer(config.midend_filters, config.midend_filters),
        ])
        pooled = 2 * (front_channels + 3 * config.midend_filters)
        self.pool_norm = batchnorm(pooled, dims=1)
        self.dense = nn.Linear(pooled, config.backend_units)
        self.dense_norm = batchnorm(config.backend_units, dims=1)
        self.dropout = nn.Dropout(config.dropout)
        self.tags = nn.Linear(config.backend_units, config.n_tags)
        n_features = {"penultimate": config.backend_units, "pooled": pooled}.get(config.head)
        self.head = nn.Linear(n_features, config.n_classes) if n_features else None
        if config.freeze:
            for name, parameter in self.named_parameters():
                parameter.requires_grad = name.startswith("head.")

    def train(self, mode: bool = True) -> Musicnn:
        """Train mode reaches only what trains: BatchNorm keeps its pretrained statistics, and a
        frozen body also keeps dropout off, so its features do not change from epoch to epoch."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) or (self.config.freeze and module is self.dropout):
                module.eval()
        return self

    def embed(self, log_mel: Tensor) -> tuple[Tensor, Tensor]:
        """musicnn's pooled features (after their BatchNorm) and penultimate embedding, from its log-mel [B, T, 96]."""
        x = self.input_norm(log_mel.unsqueeze(1))
        front = torch.cat([branch(x) for branch in (*self.timbral, *self.temporal)], dim=1)
        mid1 = self.midend[0](front)
        mid2 = self.midend[1](mid1) + mid1
        mid3 = self.midend[2](mid2) + mid2
        features = torch.cat([front, mid1, mid2, mid3], dim=1)
        pooled = self.pool_norm(torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1))
        penultimate = self.dense_norm(F.relu(self.dense(self.dropout(pooled))))
        return pooled, penultimate

    def tag_logits_from_mel(self, log_mel: Tensor) -> Tensor:
        return self.tags(self.dropout(self.embed(log_mel)[1]))

    def forward(self, wave: Tensor) -> Tensor:
        log_mel = self.front_end(wave)
        if self.head is None:
            return self.tag_logits_from_mel(log_mel)
        pooled, penultimate = self.embed(log_mel)
        features = penultimate if self.config.head == "penultimate" else pooled
        return self.head(self.dropout(features))

    def init_backbone(self, path: str) -> int:
        """Load a musicnn tagger checkpoint (weights/musicnn-msd.pt) into everything but the genre layer."""
        return load_pretrained(self, path, skip="head.")


@dataclass
class MusicnnVGGConfig:
    n_classes: int = 50
    clip_samples: int = CLIP_SAMPLES
    filters: int = 128
    dropout: float = 0.5


class MusicnnVGG(nn.Module):
    """The VGG baseline of Pons & Serra's musicnn package: 5 x (3x3 conv + ReLU + BatchNorm + max-pool).

    On musicnn's log-mel [187, 96]: BatchNorm, then five 128-filter 3x3 'same' convolutions,
    each followed by ReLU, BatchNorm and a max-pool: (4, 1) stride (2, 2), then (2, 2) three
    times, then (4, 4); TensorFlow's 'valid' pooling leaves 2 x 1 x 128 = 256 features (pool5,
    flattened time, frequency, channel), dropout, dense 50 tag logits. 0.60M parameters.
    """

    def __init__(self, config: MusicnnVGGConfig):
        super().__init__()
        self.config = config
        self.front_end = MusicnnMel()
        self.input_norm = batchnorm(1)
        channels = [1] + [config.filters] * 5
        self.convs = nn.ModuleList(nn.Conv2d(channels[i], channels[i + 1], 3, padding=1) for i in range(5))
        self.norms = nn.ModuleList(batchnorm(config.filters) for _ in range(5))
        self.pools = nn.ModuleList([
            nn.MaxPool2d((4, 1), (2, 2)), nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(4),
        ])
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(2 * config.filters, config.n_classes)

    def tag_logits_from_mel(self, log_mel: Tensor) -> Tensor:
        x = self.input_norm(log_mel.unsqueeze(1))
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            x = pool(norm(F.relu(conv(x))))
        return self.output(self.dropout(x.permute(0, 2, 3, 1).flatten(1)))  # TensorFlow's flatten order

    def forward(self, wave: Tensor) -> Tensor:
        return self.tag_logits_from_mel(self.front_end(wave))


def load_pretrained(network: nn.Module, path: str, skip: str) -> int:
    """Copy a converted tagger checkpoint's tensors into `network`, except those under `skip`."""
    from mgcli.checkpoint import load_checkpoint

    source = load_checkpoint(path)["state_dict"]
    target = network.state_dict()
    wanted = {name for name in target if not name.startswith(skip)}
    missing = sorted(name for name in wanted if name not in source or source[name].shape != target[name].shape)
    if missing:
        raise MgcError(f"{path}: not a musicnn tagger for this network (no tensor for {missing[0]})")
    with torch.no_grad():
        for name in wanted:
            target[name].copy_(source[name])
    return len(wanted)
