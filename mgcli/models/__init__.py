"""Model registry: the only place that knows model names.

Every model is a GenreNetwork (models.base): built as `Model(config)` from its config dataclass,
it maps a raw 16 kHz waveform to logits and declares its optional abilities.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import torch
from torch import nn

from mgcli import MgcError, first_line
from mgcli.audio import SAMPLE_RATE
from mgcli.models.base import GenreNetwork
from mgcli.models.broadcast import BBNN, BBNNConfig, Broadcast, BroadcastConfig
from mgcli.models.mel import MelLinear, MelLinearConfig, ResNetMel, ResNetMelConfig
from mgcli.models.multi_input import MultiInput, MultiInputConfig
from mgcli.models.musicnn import (
    Musicnn,
    MusicnnConfig,
    MusicnnEnsemble,
    MusicnnEnsembleConfig,
    MusicnnProbeConfig,
    MusicnnVGG,
    MusicnnVGGConfig,
)
from mgcli.models.samplecnn import SampleCNN, SampleCNNConfig, SampleCNNMulti, SampleCNNMultiConfig
from mgcli.models.sincnet import SincNet, SincNetConfig
from mgcli.models.sincresnet import SincResNet, SincResNetConfig, SincResNetSingleConfig

# Denormal floats cost a hundred times a normal one on x86 CPUs, and mgcli has no use for
# numbers below 1e-38: fine-tuning musicnn left 2,249 of its first mid-end layer's weights
# denormal, and its forward pass went from 0.025 to 0.87 s. Flushing them to zero (before any
# worker thread starts, so that the threads inherit it) keeps every model at full speed.
torch.set_flush_denormal(True)

MODELS: dict[str, tuple[type, type[GenreNetwork]]] = {
    "ms-sincresnet": (SincResNetConfig, SincResNet),
    "sincresnet": (SincResNetSingleConfig, SincResNet),
    "sincnet": (SincNetConfig, SincNet),
    "resnet-mel": (ResNetMelConfig, ResNetMel),
    "samplecnn": (SampleCNNConfig, SampleCNN),
    "samplecnn-mlms": (SampleCNNMultiConfig, SampleCNNMulti),
    "bbnn": (BBNNConfig, BBNN),
    "broadcast": (BroadcastConfig, Broadcast),
    "multi-input": (MultiInputConfig, MultiInput),
    "mel-linear": (MelLinearConfig, MelLinear),
    "musicnn": (MusicnnConfig, Musicnn),
    "musicnn-probe": (MusicnnProbeConfig, Musicnn),
    "musicnn-ensemble": (MusicnnEnsembleConfig, MusicnnEnsemble),
    "musicnn-vgg": (MusicnnVGGConfig, MusicnnVGG),
}


# Every size a config gives (bands, filters, channels, samples) is a whole number from 1 to this:
# more than any layer or clip needs (a 65-s clip), and less than a size that asks for all the memory.
MAX_SIZE = 2**20
# A network of more parameters and buffers than this (1.6 GB of float32) is refused before it is built:
# the largest in the zoo at its defaults (sincnet) holds 16.4 million.
MAX_NETWORK_NUMBERS = 400_000_000


def make_config(name: str, **overrides) -> Any:
    """The config dataclass of model `name` with `overrides` applied.

    MgcError for an unknown name or key, for a value of another type than the field's default
    (`_check_setting`), and for a sample_rate other than mgcli's SAMPLE_RATE.
    """
    if name not in MODELS:
        raise MgcError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    config_class, _ = MODELS[name]
    fields = [field.name for field in dataclasses.fields(config_class)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise MgcError(f"unknown config key(s) {', '.join(unknown)} for model {name}; valid: {', '.join(fields)}")
    # Overrides may come from JSON, which has no tuples: lists become tuples.
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in overrides.items()}
    defaults = config_class()
    for key, value in values.items():
        _check_setting(name, key, value, getattr(defaults, key))
    config = config_class(**values)
    # The field stays (checkpoints carry it), but every clip reaches a model resampled to SAMPLE_RATE.
    if "sample_rate" in fields and config.sample_rate != SAMPLE_RATE:
        raise MgcError(f"sample_rate must be {SAMPLE_RATE}: mgcli resamples all audio to {SAMPLE_RATE} Hz")
    return config


def _check_setting(name: str, key: str, value: Any, default: Any) -> None:
    """Refuse a setting of another type than its default's (a text for a number, a fraction for a
    size) or out of range: sizes are whole numbers from 1 to MAX_SIZE, other numbers finite and >= 0."""
    def refuse(wanted: str) -> None:
        raise MgcError(f"model {name}: {key} must be {wanted}, not {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            refuse("true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
            refuse(f"a whole number from 1 to {MAX_SIZE:,}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            refuse("a finite number, at least 0")
    elif isinstance(default, str):
        if not isinstance(value, str):
            refuse("a text")
    elif isinstance(default, tuple):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIZE for v in value):
            refuse(f"a list of whole numbers from 1 to {MAX_SIZE:,}")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Config overrides from `key=value` texts (`mgc train --set`); values are JSON where they parse
    (numbers, lists, booleans), else text."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MgcError(f"--set takes key=value, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


def build(name: str, **overrides) -> GenreNetwork:
    """A freshly initialised model `name`; build(name, **dataclasses.asdict(model.config)) rebuilds its architecture."""
    config = make_config(name, **overrides)
    _, model_class = MODELS[name]
    try:
        with torch.device("meta"):  # shapes only: settings that cannot make a network fail here, at no cost
            shape = model_class(config)
        numbers = sum(t.numel() for t in (*shape.parameters(), *shape.buffers()))
    except (ValueError, RuntimeError) as error:
        raise MgcError(f"model {name}: these settings make no network ({first_line(error)})") from None
    if numbers > MAX_NETWORK_NUMBERS:
        raise MgcError(f"model {name}: these settings make a network of {numbers:,} numbers, "
                       f"more than the {MAX_NETWORK_NUMBERS:,} mgc builds")
    return model_class(config)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def describe() -> list[dict]:
    """Name, parameter count (default config) and one-line summary of every model."""
    rows = []
    for name, (_, model_class) in MODELS.items():
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = build(name)
        summary = model_class.__doc__.strip().splitlines()[0]
        rows.append({"name": name, "parameters": count_parameters(model), "summary": summary})
    return rows
