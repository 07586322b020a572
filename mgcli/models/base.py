"""GenreNetwork: the contract every model of the registry keeps, and the optional abilities it declares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from mgcli import MgcError


# How an explained input's tensor is laid out (batch first).
BANDS_BY_TIME = "bands x time"  # [B, C, bands, time]: a spectrogram image (channels optional: [B, bands, time])
TIME_BY_BANDS = "time x bands"  # [B, time, bands]: musicnn's log-mel
WAVEFORM = "waveform"  # [B, samples]


@dataclass
class FeatureMap:
    """A convolution's output over an explained input, whose channels Grad-CAM weighs by their mean gradients.

    Laid out as its input, with channels: [B, C, bands', time'], [B, C, time', bands'] or, over
    a waveform, [B, C, time']. A pooled map is stretched onto its input; a map of a convolution
    'valid' over bands (`band_kernel` bands wide: musicnn's timbral filters) has
    bands - band_kernel + 1 positions, each spread over the bands its filter covers.
    """

    module: nn.Module
    band_kernel: int = 0  # 0: a map stretched onto the input's bands


@dataclass
class ExplainedInput:
    """An input that `mgc explain` maps: the module whose output it is, and the feature maps over it for Grad-CAM.

    Integrated gradients run from an all-zero input to this one, so the module is where zero
    means something: silence for musicnn's log-mel and a waveform, the mean level after an input
    BatchNorm. No feature maps: nothing convolves the input (mel-linear), so there is no Grad-CAM.
    """

    name: str
    module: nn.Module
    layout: str  # BANDS_BY_TIME, TIME_BY_BANDS or WAVEFORM
    feature_maps: list[FeatureMap]


class GenreNetwork(nn.Module):
    """The base class of every model: what the rest of mgcli may rely on, and what it may ask.

    Every model is built as `Model(config)` from its config dataclass, keeps it as `self.config`,
    and maps a raw 16 kHz waveform [batch, config.clip_samples] to logits [batch, config.n_classes];
    each owns its front end and input normalisation.

    Optional abilities, each with a default here that a model overrides when it has the ability:
    - `has_fast_path` and `span_logits`: the exact fast path of inference over overlapping clips;
    - `channels_last`: the memory layout `torch_engine.place` gives the network;
    - `explained_inputs`: the inputs (spectrograms or the waveform) that `mgc explain` maps;
    - `learned_spectrogram` and `learned_taps`: the learned sinc representation `mgc inspect` shows;
    - `learned_filters`: the learned (time x band) front-end filters `mgc inspect` draws;
    - `init_backbone`, `shipped_backbone` and `trains_on_features`: pretrained weights, and
      training on a frozen front end's cached output;
    - `is_tagger`: whether the logits are independent tags rather than exclusive genres;
    - `has_tags` and `forward_with_tags`: a pretrained tagger's tags beside the genre logits (novelty.py).
    """

    config: Any  # the model's config dataclass

    has_fast_path: bool = False  # whether span_logits applies
    channels_last: bool = True  # False where NHWC slows the 2D convolutions down (one input channel)

    def span_logits(self, span: Tensor, hop: int, n_clips: int) -> Tensor:
        """forward() of the clips span[i * hop : i * hop + clip_samples], i < n_clips: [n_clips, n_classes]."""
        raise NotImplementedError(f"{type(self).__name__} has no fast path")

    def explained_inputs(self) -> list[ExplainedInput]:
        """The inputs that Grad-CAM and integrated gradients map; none by default."""
        return []

    def learned_spectrogram(self, clips: Tensor) -> Tensor | None:
        """The learned multi-scale sinc representation of clips [B, clip_samples]: [B, n_banks, K, W]; None without one."""
        return None

    @property
    def learned_taps(self) -> list[int]:
        """The filter length of each bank of `learned_spectrogram`."""
        return []

    def learned_filters(self) -> dict[str, Tensor]:
        """Learned front-end convolution filters over a spectrogram, by bank name: [filters, time, bands], each
        scaled by the gain the network gives it, so that their sizes compare; none by default."""
        return {}

    def init_backbone(self, weights: dict[str, Tensor], source: str) -> int:
        """Copy pretrained `weights`, read from the file `source` (named in errors), into the network;
        the number of tensors loaded. Training reads the file (`training.run_state.pretrained_weights`)."""
        raise MgcError("this model has no pretrained backbone to initialise")

    @property
    def shipped_backbone(self) -> str | None:
        """The file of mgcli's shipped weights (in `shipped.WEIGHTS_DIR`) a new network starts from
        when no others are given; None: from scratch."""
        return None

    @property
    def trains_on_features(self) -> bool:
        """Whether training caches a frozen front end's output per clip (`front_features`) and trains the rest on it."""
        return False

    @property
    def is_tagger(self) -> bool:
        """Whether the logits are independent tags (a sigmoid each) rather than exclusive genres."""
        return False

    @property
    def has_tags(self) -> bool:
        """Whether `forward_with_tags` applies: a pretrained tagger kept beside the genre network."""
        return False

    def forward_with_tags(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """forward()'s logits and the kept tagger's tag logits [batch, n_tags], from one pass."""
        raise NotImplementedError(f"{type(self).__name__} keeps no tagger")
