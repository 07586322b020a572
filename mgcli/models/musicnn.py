"""musicnn and its VGG baseline: the pretrained taggers of Pons & Serra, ported from TensorFlow.

Pons & Serra, "musicnn: pre-trained convolutional neural networks for music audio tagging",
ISMIR 2019 late-breaking demo; the published weights (MSD_musicnn, MTT_musicnn, MSD_vgg,
MTT_vgg) come from the `musicnn` package (ISC licence) and are converted into weights/ by
`python -m mgcli.convert_musicnn` (see weights/README.md). The layers here follow the
package's `models.py`, in PyTorch's [batch, channels, time, frequency] layout.

Used three ways:
- as the tagger itself (`head="tags"`: the 50 tag logits; `mgc tags`);
- as a frozen feature extractor under a genre layer trained here (`musicnn-probe`);
- fine-tuned: the front end frozen, the rest trained at a lower rate than the new genre
  layer (`musicnn`), or the whole network (`--set freeze=none`); with `keep_tagger`, the
  tagger's own mid and back end stay beside the fine-tuned ones and give its tags too (the
  default: novelty.py reads them).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.transforms import MelSpectrogram

from mgcli import MgcError
from mgcli.audio import CLIP_SAMPLES, SAMPLE_RATE
from mgcli.models.base import TIME_BY_BANDS, ExplainedInput, FeatureMap, GenreNetwork

N_MELS = 96
FFT_SIZE = 512
FFT_HOP = 256
TF_BATCHNORM_EPS = 1e-3  # tf.layers.batch_normalization's default (PyTorch's is 1e-5)
FLOAT16_MAX = 65504.0
HEADS = ("tags", "penultimate", "pooled", "penultimate+tags")
FRONT_END_PREFIXES = ("front_end.", "input_norm.", "timbral.", "temporal.")
FREEZE = ("none", "front-end", "body")


class MusicnnMel(nn.Module):
    """musicnn's input: log10(1 + 10000 * mel power), [B, samples] -> [B, frames, 96] (time, mel).

    As musicnn computes it with librosa: 512-point FFT (periodic Hann window), hop 256, frames
    centred with zero padding (librosa >= 0.10), power spectrum, 96 Slaney-scale bands with
    Slaney area normalisation over 0-8 kHz, the mel power rounded to float16 (musicnn casts it)
    and log-compressed. A 3-s clip gives 188 frames; the first 187 are musicnn's patch.
    """

    def __init__(self, clip_samples: int = CLIP_SAMPLES):
        super().__init__()
        self.n_frames = clip_samples // FFT_HOP  # 187 for a 3-s clip
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
    'same' padding, TensorFlow's: the odd extra frame goes after). A temporal branch runs as a
    1D convolution over each band (the bands as a batch): 1.5x faster than the 2D one here.
    """

    def __init__(self, filters: int, kernel: tuple[int, int]):
        super().__init__()
        frames = kernel[0]
        self.temporal = kernel[1] == 1
        self.pad = ((frames - 1) // 2, frames // 2) if self.temporal else (3, 3)
        self.conv = nn.Conv2d(1, filters, kernel)
        self.norm = batchnorm(filters)
        # The branch's (time x band) map [B, filters, T, bands'] after its BatchNorm, before the max
        # over bands, passed through as it is: the map explain's Grad-CAM hooks and weighs.
        self.band_map = nn.Identity()

    def convolve(self, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        """The branch's convolution with these weights: [B, filters, T, bands]-like maps, bands on dim 3."""
        if not self.temporal:
            return F.conv2d(F.pad(x, (0, 0, *self.pad)), weight, bias)
        batch, _, frames, bands = x.shape
        by_band = F.pad(x[:, 0].transpose(1, 2).reshape(batch * bands, 1, frames), self.pad)
        z = F.conv1d(by_band, weight[:, :, :, 0], bias)  # [B * bands, filters, T]
        return z.view(batch, bands, -1, frames).permute(0, 2, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.norm.training or torch.is_grad_enabled():
            # As written wherever gradients are recorded (training; explain's Grad-CAM hooks band_map,
            # which the fused form below skips). Inference and export run without them: fused.
            return self.band_map(self.norm(F.relu(self.convolve(x, self.conv.weight, self.conv.bias)))).amax(dim=3)
        # With fixed statistics BatchNorm is a per-filter a * y + b. The maximum over bands of
        # a * relu(z) + b is a * relu(max z) + b where a >= 0, and a * relu(min z) + b where
        # a < 0, which is a * relu(-max(-z)) + b: so the filters with a < 0 run negated, and
        # one max over the [B, filters, T, bands] map replaces ReLU, BatchNorm and max there
        # (they took two thirds of musicnn's time). Exact up to rounding.
        scale = self.norm.weight * torch.rsqrt(self.norm.running_var + self.norm.eps)
        shift = self.norm.bias - self.norm.running_mean * scale
        sign = torch.where(scale >= 0, 1.0, -1.0)
        peak = self.convolve(x, self.conv.weight * sign[:, None, None, None], self.conv.bias * sign).amax(dim=3)
        return (peak * sign[:, None]).relu() * scale[:, None] + shift[:, None]


class MidEndLayer(nn.Module):
    """A 7-frame convolution over all channels -> ReLU -> BatchNorm: [B, C, T] -> [B, filters, T]."""

    def __init__(self, in_channels: int, filters: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, filters, 7, padding=3)
        self.norm = batchnorm(filters, dims=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(F.relu(self.conv(x)))


def add_mid_and_back_end(body: nn.Module, front_channels: int, config: MusicnnConfig) -> int:
    """Give `body` musicnn's mid-end and back-end layers, by the names its weights have; returns the pooled width."""
    body.midend = nn.ModuleList([
        MidEndLayer(front_channels, config.midend_filters),
        MidEndLayer(config.midend_filters, config.midend_filters),
        MidEndLayer(config.midend_filters, config.midend_filters),
    ])
    pooled = 2 * (front_channels + 3 * config.midend_filters)
    body.pool_norm = batchnorm(pooled, dims=1)
    body.dense = nn.Linear(pooled, config.backend_units)
    body.dense_norm = batchnorm(config.backend_units, dims=1)
    body.dropout = nn.Dropout(config.dropout)
    body.tags = nn.Linear(config.backend_units, config.n_tags)
    return pooled


def mid_and_back_end(body: Musicnn | TaggerBody, front: Tensor) -> tuple[Tensor, Tensor]:
    """musicnn's mid end and back end, with `body`'s layers, on the front end's output [B, 561, T]:
    the pooled features (after their BatchNorm) and the penultimate embedding."""
    mid1 = body.midend[0](front)
    mid2 = body.midend[1](mid1) + mid1
    mid3 = body.midend[2](mid2) + mid2
    features = torch.cat([front, mid1, mid2, mid3], dim=1)
    pooled = body.pool_norm(torch.stack([features.amax(dim=2), features.mean(dim=2)], dim=2).flatten(1))
    penultimate = body.dense_norm(F.relu(body.dense(body.dropout(pooled))))
    return pooled, penultimate


class TaggerBody(nn.Module):
    """A musicnn tagger's mid end and back end, to the tag logits: [B, 561, T] -> [B, n_tags].

    Its layers are named as Musicnn's own, so a tagger's weights load into it by the same names.
    """

    def __init__(self, front_channels: int, config: MusicnnConfig):
        super().__init__()
        add_mid_and_back_end(self, front_channels, config)

    def forward(self, front: Tensor) -> Tensor:
        return self.tags(self.dropout(mid_and_back_end(self, front)[1]))


@dataclass
class MusicnnConfig:
    n_classes: int = 10
    clip_samples: int = CLIP_SAMPLES
    head: str = "penultimate"  # "tags": output the 50 tag logits; else a genre layer on these features
    # ("penultimate+tags": the fine-tuned embedding and the kept tagger's tag logits, which need keep_tagger)
    pretrained: str = "msd"  # shipped tagger (weights/musicnn-<name>.pt) that initialises a new model; "" for none
    freeze: str = "front-end"  # what training leaves as it is: "none", "front-end" or "body" (all but the genre layer)
    head_dropout: float = 0.0  # dropout on the genre layer's input
    n_tags: int = 50
    timbral_filters: int = 204  # int(1.6 * 128)
    temporal_filters: int = 51  # int(1.6 * 32)
    midend_filters: int = 64
    backend_units: int = 200
    dropout: float = 0.5  # musicnn's own, before its two dense layers
    keep_tagger: bool = False  # keep the pretrained tagger's mid and back end, frozen, beside the fine-tuned ones: its tags too


@dataclass
class MusicnnProbeConfig(MusicnnConfig):
    freeze: str = "body"


class Musicnn(GenreNetwork):
    """musicnn (Pons & Serra, ISMIR 2019 LBD): musically motivated CNN on a 96-band log-mel.

    Front end: BatchNorm on the log-mel, then five branches read it: two timbral (204 filters,
    7 x 38 and 7 x 67 time x mel) and three temporal (51 filters, 128, 64 and 32 frames), each
    max-pooled over frequency -> 561 channels. Mid end: three 64-filter 7-frame convolutions,
    the last two residual; front- and mid-end outputs are concatenated (753 channels). Back end:
    max and mean over time (interleaved per channel, as TensorFlow flattens them: 1506),
    BatchNorm, dropout, dense 200 + ReLU + BatchNorm (the "penultimate" embedding), dropout,
    dense 50 (tag logits). About 0.79M parameters, 1.4 GMAC per 3-s clip, 95% of it in the
    front end.

    `head` picks the output: the tag logits, or a genre layer on the penultimate embedding, on
    the pooled 1506 features, or on the penultimate embedding and the kept tagger's 50 tag logits. `freeze` leaves part of a pretrained network as it is: the
    front end (then training caches its output per clip once, `front_features`, and trains
    the rest: mid end, back end and genre layer), or the whole body (a probe: only the genre
    layer trains). `keep_tagger` keeps a copy of the pretrained tagger's mid and back end as
    they are, beside a fine-tuned genre network on the same frozen front end, so that one pass
    gives the genre logits and the tagger's tags (`forward_with_tags`).
    Frozen parts stay in eval mode. A pretrained network also keeps its BatchNorm statistics
    everywhere (its layers stay in eval mode; their scale and shift still train): a few
    hundred tracks estimate them worse than the Million Song Dataset did.
    """

    channels_last = False  # one-channel 2D convolutions: see torch_engine.place

    def __init__(self, config: MusicnnConfig):
        super().__init__()
        if config.head not in HEADS:
            raise MgcError(f"unknown musicnn head {config.head!r} (use {', '.join(HEADS)})")
        if config.freeze not in FREEZE:
            raise MgcError(f"unknown musicnn freeze {config.freeze!r} (use {', '.join(FREEZE)})")
        if config.head == "tags" and config.n_classes != config.n_tags:
            raise MgcError(f"head=tags outputs the {config.n_tags} tags; n_classes must be {config.n_tags}")
        if config.keep_tagger and (config.head == "tags" or not config.pretrained or config.freeze == "none"):
            raise MgcError("keep_tagger needs a genre head on a pretrained tagger with its front end frozen")
        if config.head == "penultimate+tags" and not config.keep_tagger:
            raise MgcError("head=penultimate+tags reads the kept tagger's tags: it needs keep_tagger=true")
        self.config = config
        self.front_end = MusicnnMel(config.clip_samples)
        self.input_norm = batchnorm(1)
        self.timbral = nn.ModuleList(
            FrontEndBranch(config.timbral_filters, (7, int(share * N_MELS))) for share in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(FrontEndBranch(config.temporal_filters, (frames, 1)) for frames in (128, 64, 32))
        front_channels = 2 * config.timbral_filters + 3 * config.temporal_filters
        pooled = add_mid_and_back_end(self, front_channels, config)
        self.tagger = None
        if config.keep_tagger:
            # Its random initial weights are overwritten by init_backbone's; drawn apart from the
            # global random stream, a run with keep_tagger trains the same genre network as one without.
            with torch.random.fork_rng(devices=[]):
                self.tagger = TaggerBody(front_channels, config)
        n_features = {"penultimate": config.backend_units, "pooled": pooled,
                      "penultimate+tags": config.backend_units + config.n_tags}.get(config.head)
        self.head_dropout = nn.Dropout(config.head_dropout)
        self.head = nn.Linear(n_features, config.n_classes) if n_features else None
        for parameter in self.frozen_modules().parameters():
            parameter.requires_grad = False

    def frozen_modules(self) -> nn.ModuleList:
        """The modules that `freeze` leaves as they are."""
        front = [self.input_norm, self.timbral, self.temporal, *([self.tagger] if self.tagger else [])]
        body = [*front, self.midend, self.pool_norm, self.dense, self.dense_norm, self.dropout, self.tags]
        return nn.ModuleList({"none": [], "front-end": front, "body": body}[self.config.freeze])

    def train(self, mode: bool = True) -> Musicnn:
        super().train(mode)
        self.frozen_modules().eval()
        if self.config.pretrained:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def front(self, log_mel: Tensor) -> Tensor:
        """The front end's five branches on musicnn's log-mel [B, T, 96]: [B, 561, T]."""
        x = self.input_norm(log_mel.unsqueeze(1))
        return torch.cat([branch(x) for branch in (*self.timbral, *self.temporal)], dim=1)

    def back(self, front: Tensor) -> tuple[Tensor, Tensor]:
        """Mid end and back end: the pooled features (after their BatchNorm) and the penultimate embedding."""
        return mid_and_back_end(self, front)

    def embed(self, log_mel: Tensor) -> tuple[Tensor, Tensor]:
        return self.back(self.front(log_mel))

    def tag_logits_from_mel(self, log_mel: Tensor) -> Tensor:
        return self.tags(self.dropout(self.embed(log_mel)[1]))

    def front_features(self, wave: Tensor) -> Tensor:
        """The front end's output [B, 561, T]: what a frozen front end gives each clip in every epoch."""
        return self.front(self.front_end(wave))

    def from_front_features(self, front: Tensor, tag_logits: Tensor | None = None) -> Tensor:
        """The logits, from `front_features` (and the kept tagger's `tag_logits` of them, where already computed)."""
        pooled, penultimate = self.back(front)
        if self.head is None:
            return self.tags(self.dropout(penultimate))
        if self.config.head == "penultimate+tags":
            # The tagger's tags, as the Million Song Dataset taught them, beside the embedding
            # fine-tuned on a few hundred tracks: a genre layer on both, rather than on the
            # embedding alone, answered AllMusic's unseen artists better (weights/README.md).
            tag_logits = self.tagger(front) if tag_logits is None else tag_logits
            return self.head(self.head_dropout(torch.cat([penultimate, tag_logits], dim=1)))
        return self.head(self.head_dropout(penultimate if self.config.head == "penultimate" else pooled))

    def forward(self, wave: Tensor) -> Tensor:
        return self.from_front_features(self.front_features(wave))

    @property
    def has_tags(self) -> bool:
        return self.tagger is not None

    def forward_with_tags(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """The genre logits and the kept tagger's tag logits, from one pass of the front end."""
        if self.tagger is None:
            raise MgcError("this musicnn keeps no tagger (keep_tagger=false)")
        front = self.front_features(wave)
        tag_logits = self.tagger(front)
        return self.from_front_features(front, tag_logits), tag_logits

    def learned_filters(self) -> dict[str, Tensor]:
        """The five front-end branches' filters, each times its BatchNorm's |scale| (the gain after its ReLU)."""
        filters = {}
        for kind, branches in (("timbral", self.timbral), ("temporal", self.temporal)):
            for branch in branches:
                frames, bands = branch.conv.kernel_size
                gain = (branch.norm.weight * torch.rsqrt(branch.norm.running_var + branch.norm.eps)).abs()
                filters[f"{kind} {frames} x {bands}"] = branch.conv.weight[:, 0].detach() * gain[:, None, None]
        return filters

    def explained_inputs(self) -> list[ExplainedInput]:
        """The log-mel (zero is silence), with the timbral branches' (time x band) maps, before their
        max over bands, for Grad-CAM (the temporal filters, one band wide, find patterns in time only)."""
        maps = [FeatureMap(branch.band_map, branch.conv.kernel_size[1]) for branch in self.timbral]
        return [ExplainedInput("log-mel", self.front_end, TIME_BY_BANDS, maps)]

    def init_backbone(self, weights: dict[str, Tensor], source: str) -> int:
        """Copy a musicnn tagger's weights (weights/musicnn-msd.pt) into everything but the genre layer
        (the kept tagger's layers, `tagger.*`, take the tensors of their names without the prefix)."""
        target = self.state_dict()
        wanted = {name: name.removeprefix("tagger.") for name in target if not name.startswith("head.")}
        missing = sorted(
            name for name, own in wanted.items() if own not in weights or weights[own].shape != target[name].shape
        )
        if missing:
            raise MgcError(f"{source}: not a musicnn tagger for this network (no tensor for {missing[0]})")
        with torch.no_grad():
            for name, own in wanted.items():
                target[name].copy_(weights[own])
        return len(wanted)

    @property
    def shipped_backbone(self) -> str | None:
        """The shipped tagger `pretrained` names, musicnn-<pretrained>.pt; None for none."""
        return f"musicnn-{self.config.pretrained}.pt" if self.config.pretrained else None

    @property
    def trains_on_features(self) -> bool:
        return self.config.freeze != "none"

    @property
    def is_tagger(self) -> bool:
        return self.config.head == "tags"


@dataclass
class MusicnnEnsembleConfig(MusicnnConfig):
    members: int = 5


class MusicnnEnsemble(GenreNetwork):
    """Several fine-tuned musicnn networks on their one shared front end, their probabilities averaged.

    A deep ensemble (Lakshminarayanan, Pritzel & Blundell, NeurIPS 2017): members trained
    alone from other seeds make different mistakes on music they have not heard, and the mean
    of their probabilities is right more often and better calibrated than any one of them.
    Members fine-tuned with a frozen front end from the same tagger share that front end
    exactly, so it runs once per clip (95% of the cost) and each member adds only its mid and
    back end (5% each). The output is log(mean of the members' softmax): softmax of it is the
    mean probability. Built from trained members by `ensemble_of`.
    """

    channels_last = False  # one-channel 2D convolutions: see torch_engine.place

    def __init__(self, config: MusicnnEnsembleConfig):
        super().__init__()
        self.config = config
        member = MusicnnConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(MusicnnConfig)})
        self.members = nn.ModuleList(Musicnn(member) for _ in range(config.members))
        first = self.members[0]
        for other in self.members[1:]:  # one front end: the same modules, saved once
            other.front_end, other.input_norm, other.timbral, other.temporal = (
                first.front_end, first.input_norm, first.timbral, first.temporal)

    # Its config names the tagger its members started from; as that cannot load into a whole
    # ensemble (the base init_backbone refuses), training one with the default config is refused.
    shipped_backbone = Musicnn.shipped_backbone

    def forward(self, wave: Tensor) -> Tensor:
        front = self.members[0].front_features(wave)
        log_probs = torch.stack([member.from_front_features(front).log_softmax(dim=-1) for member in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))

    def explained_inputs(self) -> list[ExplainedInput]:
        """The shared front end's: Grad-CAM's maps there feed every member."""
        return self.members[0].explained_inputs()

    def learned_filters(self) -> dict[str, Tensor]:
        return self.members[0].learned_filters()


def ensemble_of(networks: list[Musicnn]) -> MusicnnEnsemble:
    """One MusicnnEnsemble of trained musicnn networks that differ only past their front end."""
    first = networks[0]
    config = dataclasses.asdict(first.config)
    front = {k: v for k, v in first.state_dict().items() if k.startswith(FRONT_END_PREFIXES)}
    for network in networks[1:]:
        if not isinstance(network, Musicnn) or dataclasses.asdict(network.config) != config:
            raise MgcError("an ensemble needs musicnn networks of one configuration")
        state = network.state_dict()
        if any(not torch.equal(state[k], v) for k, v in front.items()):
            raise MgcError("an ensemble needs members with the same front end (fine-tuned with freeze=front-end from one tagger)")
    ensemble = MusicnnEnsemble(MusicnnEnsembleConfig(**config, members=len(networks)))
    for member, network in zip(ensemble.members, networks):
        member.load_state_dict(network.state_dict())
    return ensemble


@dataclass
class MusicnnVGGConfig:
    n_classes: int = 50
    clip_samples: int = CLIP_SAMPLES
    filters: int = 128
    dropout: float = 0.5


class MusicnnVGG(GenreNetwork):
    """The VGG baseline of Pons & Serra's musicnn package: 5 x (3x3 conv + ReLU + BatchNorm + max-pool).

    On musicnn's log-mel [187, 96]: BatchNorm, then five 128-filter 3x3 'same' convolutions,
    each followed by ReLU, BatchNorm and a max-pool: (4, 1) stride (2, 2), then (2, 2) three
    times, then (4, 4); TensorFlow's 'valid' pooling leaves 2 x 1 x 128 = 256 features (pool5,
    flattened time, frequency, channel), dropout, dense 50 tag logits. 0.60M parameters.
    """

    channels_last = False  # one-channel 2D convolutions: see torch_engine.place

    def __init__(self, config: MusicnnVGGConfig):
        super().__init__()
        self.config = config
        self.front_end = MusicnnMel(config.clip_samples)
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

    def explained_inputs(self) -> list[ExplainedInput]:
        """The log-mel (zero is silence), with the last convolution's map (after its ReLU and BatchNorm) for Grad-CAM."""
        return [ExplainedInput("log-mel", self.front_end, TIME_BY_BANDS, [FeatureMap(self.norms[-1])])]

    @property
    def is_tagger(self) -> bool:
        return True  # its only output is the tag layer

