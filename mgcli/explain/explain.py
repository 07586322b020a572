"""Why a model hears a genre: Grad-CAM (Selvaraju et al., ICCV 2017) and integrated gradients
(Sundararajan, Taly & Yan, ICML 2017) over the inputs a model declares (`explained_inputs`: a
log-mel, a learned sinc spectrogram or the waveform), clip by clip over a whole track, with each
clip's genre probabilities. Drawing is `plot`'s job; this module only computes.

Every map is laid out as [rows, frames]: a spectrogram's bands by its time frames, a waveform's
frames of WAVEFORM_FRAME samples on one row, so a waveform model's maps say which parts of the
track carried the genre and a spectrogram model's also which bands.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import MgcError
from ..audio import SAMPLE_RATE, load
from ..calibration import calibrate
from ..clips import cut_clips
from ..files import check_outputs
from ..inference import aggregate, load_model, model_files, refuse_tagger, timeline, track_outputs
from ..models.base import TIME_BY_BANDS, WAVEFORM, ExplainedInput, FeatureMap
from ..shipped import default_weights
from ..torch_engine import GenreModel
from .plot import draw_explanation, require_matplotlib
from .results import Explanation, InputExplanation

# Integrated gradients' steps run as one batch, so memory grows with them; their estimate changes
# little past a few hundred.
MAX_STEPS = 1024
WAVEFORM_FRAME = 256  # samples per frame of a waveform's maps: 16 ms, musicnn's hop

# The track's genre probabilities are predict's default: the mean of the clips' softmax, calibrated.
AGGREGATION = "mean_prob"


def explained_inputs(model: GenreModel) -> list[ExplainedInput]:
    """The inputs of a model's network that Grad-CAM and integrated gradients map; MgcError if it declares none."""
    inputs = model.network.explained_inputs()
    if not inputs:
        raise MgcError(f"{model.name} declares no input for explain to map")
    return inputs


def explain_file(
    model: GenreModel, path: str | Path, label: str | None = None, steps: int = 16,
    on_clip: Callable[[int, int], None] | None = None,
) -> Explanation:
    """Grad-CAM and integrated gradients for `label` (default: the track's predicted genre) over a whole file.

    The track is cut into back-to-back clips, so their maps tile its time axis. The predicted
    genre is predict's default decision at that hop (mean of the clips' probabilities); its
    probability is calibrated as predict's is. Cost per clip: one forward and backward pass for
    Grad-CAM, and one on a batch of `steps` inputs for integrated gradients; `on_clip(done, total)`
    hears of every clip as it is done (a 10-min track is 200 clips of the default model: minutes).
    """
    inputs = explained_inputs(model)
    if label is not None and label not in model.labels:
        raise MgcError(f"unknown genre {label!r}; this model knows {', '.join(model.labels)}")
    wave = load(path)
    hop = model.clip_samples
    logits = track_outputs(model, [wave], hop).logits
    probabilities = calibrate(aggregate(logits, AGGREGATION), model.temperatures.get(AGGREGATION, 1.0))
    target = model.labels.index(label) if label else int(np.argmax(probabilities))
    clips = cut_clips(wave, model.clip_samples, hop)
    per_clip = []
    for done, clip in enumerate(clips, start=1):
        per_clip.append(_explain_clip(model.network, inputs, torch.from_numpy(clip).to(model.device), target, steps))
        if on_clip:
            on_clip(done, len(clips))
    explained = []
    for i, item in enumerate(inputs):
        image, attribution = (np.concatenate([clip[i][k] for clip in per_clip], axis=1) for k in (0, 2))
        cam = np.concatenate([clip[i][1] for clip in per_clip], axis=1) if item.feature_maps else None
        if cam is not None:
            cam = cam / max(cam.max(), 1e-12)
        explained.append(InputExplanation(item.name, item.layout == WAVEFORM, image, cam, attribution))
    clip_seconds = model.clip_samples / SAMPLE_RATE
    clips = timeline(logits, model.labels, clip_seconds, clip_seconds)
    return Explanation(
        str(path), model.labels[target], float(probabilities[target]), model.labels, clip_seconds, clips, explained
    )


def _explain_clip(
    network: nn.Module, inputs: list[ExplainedInput], clip: Tensor, target: int, steps: int
) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
    """(input, Grad-CAM or None, integrated gradients), each [rows, frames], per explained input of one clip."""
    outputs: dict[nn.Module, Tensor] = {}

    def keep(module: nn.Module, args: tuple, output: Tensor) -> None:
        outputs[module] = output

    def keep_as_leaf(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        # A leaf that needs gradients: the maps after it then have them, even where every layer
        # before them is frozen (musicnn's front end).
        outputs[module] = output.detach().requires_grad_()
        return outputs[module]

    maps = [feature_map.module for item in inputs for feature_map in item.feature_maps]
    with _hooks([item.module for item in inputs], keep_as_leaf), _hooks(maps, keep):
        logit = network(clip[None])[0, target]
    gradients = dict(zip(maps, torch.autograd.grad(logit, [outputs[m] for m in maps]))) if maps else {}
    values = [outputs[item.module].detach()[0] for item in inputs]
    attributions = _integrated_gradients(network, inputs, clip, values, target, steps)
    explained = []
    for item, value, attribution in zip(inputs, values, attributions):
        image = _input_rows(value, item.layout)
        cams = [
            _cam_rows(outputs[m.module][0].detach(), gradients[m.module][0], item.layout, m, image.shape)
            for m in item.feature_maps
        ]
        cam = F.relu(sum(cams)).cpu().numpy() if cams else None
        explained.append((image.cpu().numpy(), cam, _attribution_rows(attribution, item.layout).cpu().numpy()))
    return explained


def _input_rows(value: Tensor, layout: str) -> Tensor:
    """One clip's input as [rows, frames]: the mean over channels, or a waveform frame's peak |amplitude|."""
    if layout == WAVEFORM:
        return _frames(value).abs().amax(dim=1)[None]
    if layout == TIME_BY_BANDS:
        return value.T
    return value.reshape(-1, *value.shape[-2:]).mean(dim=0)


def _attribution_rows(attribution: Tensor, layout: str) -> Tensor:
    """One clip's attributions as [rows, frames], summed over channels (and a waveform frame's samples)."""
    if layout == WAVEFORM:
        return _frames(attribution).sum(dim=1)[None]
    if layout == TIME_BY_BANDS:
        return attribution.T
    return attribution.reshape(-1, *attribution.shape[-2:]).sum(dim=0)


def _frames(wave: Tensor) -> Tensor:
    """[samples] -> [frames, WAVEFORM_FRAME], the last frame padded with zeros."""
    return F.pad(wave, (0, -len(wave) % WAVEFORM_FRAME)).view(-1, WAVEFORM_FRAME)


def _cam_rows(
    features: Tensor, gradients: Tensor, layout: str, feature_map: FeatureMap, size: torch.Size
) -> Tensor:
    """A feature map's channels [C, ...] weighted by their mean gradients and summed, laid onto the input's
    [rows, frames] (before Grad-CAM's ReLU, so that the maps of one layer add up)."""
    weights = gradients.mean(dim=tuple(range(1, gradients.dim())), keepdim=True)
    cam = (weights * features).sum(dim=0)
    if layout == WAVEFORM:
        cam = cam[None]  # [1, time']
    elif layout == TIME_BY_BANDS:
        cam = cam.T
    if feature_map.band_kernel:
        cam = _spread_over_bands(cam, feature_map.band_kernel)
    return F.interpolate(cam[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]


def _spread_over_bands(cam: Tensor, kernel: int) -> Tensor:
    """[positions, time] of a convolution 'valid' over bands -> [positions + kernel - 1, time]: each band
    gets the mean of the positions whose filter covers it."""
    ones = torch.ones(1, 1, kernel, device=cam.device)
    by_time = cam.T[:, None]  # [time, 1, positions]
    total = F.conv_transpose1d(by_time, ones)
    count = F.conv_transpose1d(torch.ones_like(by_time[:1]), ones)
    return (total / count)[:, 0].T


def _integrated_gradients(
    network: nn.Module, inputs: list[ExplainedInput], clip: Tensor, values: list[Tensor], target: int, steps: int
) -> list[Tensor]:
    """input x the mean gradient along the straight path from an all-zero input (midpoint rule), per element.

    The network reads the clip once; hooks swap each input for its `steps` scaled copies, so the
    front end is not run again per step and the batch of copies goes through the rest at once.
    """
    alphas = (torch.arange(steps, device=clip.device) + 0.5) / steps
    paths = {
        item.module: (alphas.view(-1, *(1,) * value.dim()) * value).requires_grad_()
        for item, value in zip(inputs, values)
    }
    with _hooks(list(paths), lambda module, args, output: paths[module]):
        total = network(clip[None])[:, target].sum()
    gradients = torch.autograd.grad(total, list(paths.values()))
    return [value * gradient.mean(dim=0) for value, gradient in zip(values, gradients)]


@contextlib.contextmanager
def _hooks(modules: list[nn.Module], hook: Callable) -> Iterator[None]:
    """`hook` as a forward hook on every module inside the block; a hook that returns a tensor replaces the output."""
    handles = [module.register_forward_hook(hook) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def explain(
    file: str | Path, out_png: str | Path, weights: str | Path | None = None, label: str | None = None,
    steps: int = 16, device: str = "auto", on_clip: Callable[[int, int], None] | None = None,
) -> Explanation:
    """`mgc explain`: `explain_file` drawn as a PNG (needs mgcli[plot]); `on_clip` as there."""
    require_matplotlib()
    if not 1 <= steps <= MAX_STEPS:
        raise MgcError(f"--steps must be 1 to {MAX_STEPS:,}, not {steps:,}: the steps of a clip run as one batch")
    check_outputs([out_png], [file, *model_files(weights or default_weights())])
    model = load_model(weights, device, engine="torch")
    refuse_tagger(model, weights or default_weights())
    explanation = explain_file(model, file, label, steps, on_clip)
    draw_explanation(out_png, explanation)
    return explanation
