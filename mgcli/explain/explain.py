"""Why a model hears a genre: Grad-CAM (Selvaraju et al., ICCV 2017) and integrated gradients
(Sundararajan, Taly & Yan, ICML 2017) over a model's 2D input, clip by clip over a whole track,
with each clip's genre probabilities. Drawing is `plot`'s job; this module only computes.
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
from ..clips import cut_clips
from ..files import check_output_file, check_outputs_apart
from ..inference import aggregate, load_model, timeline, track_logits
from ..models import MODELS, build
from ..models.base import ImageInput
from ..torch_engine import GenreModel
from .plot import draw_explanation, require_matplotlib
from .results import Explanation, InputExplanation


def image_inputs(model: GenreModel) -> list[ImageInput]:
    """The 2D inputs of a model's network, which Grad-CAM and integrated gradients map; MgcError if it has none."""
    inputs = model.network.image_inputs()
    if not inputs:
        raise MgcError(
            f"{model.name} reads no 2D input, so there is no map to explain; models with one: "
            + ", ".join(_models_with_image_inputs())
        )
    return inputs


def _models_with_image_inputs() -> list[str]:
    """The registry's models that have a 2D input, in registry order."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return [name for name in MODELS if build(name).image_inputs()]


def explain_file(model: GenreModel, path: str | Path, label: str | None = None, steps: int = 16) -> Explanation:
    """Grad-CAM and integrated gradients for `label` (default: the track's predicted genre) over a whole file.

    The track is cut into back-to-back clips, so their images tile its time axis. The predicted
    genre is predict's default decision at that hop (mean of the clips' probabilities). Cost per
    clip: one forward and backward pass for Grad-CAM, and one on a batch of `steps` images for
    integrated gradients.
    """
    inputs = image_inputs(model)
    if label is not None and label not in model.labels:
        raise MgcError(f"unknown genre {label!r}; this model knows {', '.join(model.labels)}")
    wave = load(path)
    hop = model.clip_samples
    logits = track_logits(model, [wave], hop)
    target = model.labels.index(label) if label else int(np.argmax(aggregate(logits)))
    per_clip = [
        _explain_clip(model.network, inputs, torch.from_numpy(clip).to(model.device), target, steps)
        for clip in cut_clips(wave, model.clip_samples, hop)
    ]
    explained = []
    for i, item in enumerate(inputs):
        image, cam, attribution = (np.concatenate([clip[i][k] for clip in per_clip], axis=1) for k in range(3))
        explained.append(InputExplanation(item.name, image, cam / max(cam.max(), 1e-12), attribution))
    clip_seconds = model.clip_samples / SAMPLE_RATE
    clips = timeline(logits, model.labels, clip_seconds, clip_seconds)
    return Explanation(str(path), model.labels[target], model.labels, clip_seconds, clips, explained)


def _explain_clip(
    network: nn.Module, inputs: list[ImageInput], clip: Tensor, target: int, steps: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image mean over channels, Grad-CAM, integrated gradients), each [H, W], per 2D input of one clip."""
    outputs: dict[nn.Module, Tensor] = {}

    def keep(module: nn.Module, args: tuple, output: Tensor) -> None:
        outputs[module] = output

    with _hooks([m for item in inputs for m in (item.image, item.features)], keep):
        logit = network(clip[None])[0, target]
    features = [outputs[item.features] for item in inputs]
    gradients = torch.autograd.grad(logit, features)
    images = [outputs[item.image].detach()[0] for item in inputs]
    attributions = _integrated_gradients(network, inputs, clip, images, target, steps)
    cams = [_grad_cam(f[0].detach(), g[0], image.shape[-2:]) for f, g, image in zip(features, gradients, images)]
    return [
        (image.mean(dim=0).cpu().numpy(), cam.cpu().numpy(), attribution.cpu().numpy())
        for image, cam, attribution in zip(images, cams, attributions)
    ]


def _grad_cam(features: Tensor, gradients: Tensor, size: torch.Size) -> Tensor:
    """ReLU of the feature maps [C, h, w] weighted by their mean gradients, upsampled to the image's [H, W]."""
    weights = gradients.mean(dim=(1, 2), keepdim=True)
    cam = F.relu((weights * features).sum(dim=0))
    return F.interpolate(cam[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]


def _integrated_gradients(
    network: nn.Module, inputs: list[ImageInput], clip: Tensor, images: list[Tensor], target: int, steps: int
) -> list[Tensor]:
    """image x the mean gradient along the straight path from an all-zero image (midpoint rule), summed over channels.

    The network reads the clip once; hooks swap each image for its `steps` scaled copies, so the
    front end is not run again per step and the batch of copies goes through the rest at once.
    """
    alphas = (torch.arange(steps, device=clip.device) + 0.5) / steps
    paths = {item.image: (alphas[:, None, None, None] * image).requires_grad_() for item, image in zip(inputs, images)}
    with _hooks(list(paths), lambda module, args, output: paths[module]):
        total = network(clip[None])[:, target].sum()
    gradients = torch.autograd.grad(total, list(paths.values()))
    return [(image * gradient.mean(dim=0)).sum(dim=0) for image, gradient in zip(images, gradients)]


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
    steps: int = 16, device: str = "auto",
) -> Explanation:
    """`mgc explain`: `explain_file` drawn as a PNG (needs mgcli[plot])."""
    require_matplotlib()
    check_output_file(out_png)
    check_outputs_apart([out_png], [file, *([weights] if weights else [])])
    explanation = explain_file(load_model(weights, device, engine="torch"), file, label, steps)
    draw_explanation(out_png, explanation)
    return explanation
