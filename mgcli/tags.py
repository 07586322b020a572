"""Tags: musicnn's 50 tags (genre, mood, era, instruments) of a track, as its own code gives them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import MgcError
from .audio import DEFAULT_HOP_SECONDS
from .inference import Model, TrackResult, classify_files, load_model, sigmoid, top_k
from .shipped import DEFAULT_TAGGER


def load_tagger(weights: str | Path | None = None, device: str = "auto", engine: str = "auto") -> Model:
    """A tagger from its checkpoint or ONNX file (default: DEFAULT_TAGGER), in the engine that suits it
    (see inference.load_model); a genre classifier is refused, since a sigmoid of its logits would
    look like tags and mean nothing."""
    path = weights or DEFAULT_TAGGER
    model = load_model(path, device, engine)
    if not model.is_tagger:
        raise MgcError(f"{path}: a {model.name} genre classifier, not a tagger (use {DEFAULT_TAGGER.name} or musicnn-mtt.pt)")
    return model


def tag_probabilities(clip_logits: np.ndarray) -> np.ndarray:
    """A track's tag probabilities as musicnn gives them: each clip's sigmoid, averaged over the clips.

    Tags are not exclusive (a track is rock, guitar and male vocals at once), hence no softmax.
    """
    return sigmoid(clip_logits).mean(axis=0)


def tag_files(
    model: Model,
    paths: Iterable[str | Path],
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    batch_size: int | None = None,
    clip_budget: int | None = None,
    settle: bool = False,
) -> Iterator[TrackResult]:
    """`classify_files` for a tagger: each result's probabilities are its `tag_probabilities`."""
    for result in classify_files(model, paths, hop_seconds, "mean_prob", batch_size, clip_budget, settle=settle):
        yield result if result.error else replace(result, probabilities=tag_probabilities(result.clip_logits))


def tag(
    model: Model, path: str | Path, hop_seconds: float = DEFAULT_HOP_SECONDS, batch_size: int | None = None
) -> dict[str, float]:
    """Every tag of one audio file with its probability, most probable first."""
    [result] = tag_files(model, [path], hop_seconds, batch_size)
    if result.error:
        raise MgcError(result.error)
    return dict(top_k(result.probabilities, model.labels, len(model.labels)))
