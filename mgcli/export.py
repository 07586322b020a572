"""Export a trained model as one ONNX or TorchScript file that runs without mgcli.

The exported graph is the network's clip-by-clip forward: a float32 batch of raw mono 16 kHz
waveform clips [batch, clip_samples], any batch size, to logits [batch, n_labels] and, for a
network that keeps a pretrained tagger, its tag logits [batch, n_tags] as a second output. Each model
normalises its clips itself, so the input needs no scaling. What a caller needs beyond the
graph travels in the file as string metadata (see export_metadata): the labels in logit order
(a JSON list), the clip length, the sample rate, the model name, whether it is a tagger, the
calibration temperatures, the novelty scale (novelty.py) if any and,
exported from a checkpoint file, that file's SHA-256 (what mgcli's ONNX engine checks before it
runs an ONNX file in place of its checkpoint: onnx_engine.load_twin). ONNX keeps them in
metadata_props (onnxruntime: session.get_modelmeta().custom_metadata_map); TorchScript in an
extra file, METADATA_FILE (torch.jit.load(path, _extra_files={METADATA_FILE: ""})).

The learned sinc filters are baked in: the exported copy has a fixed convolution in place of
each SincConv, its taps computed once from the learned cut-offs. The mel front ends need no
such help: torch.onnx's exporter writes torch.stft as the ONNX STFT operator (opset 17 and
later) and the logits agree with PyTorch's to about 1e-6.

ONNX export needs the optional extra mgcli[onnx] (onnx and onnxscript, which torch.onnx's
exporter uses, and onnxruntime to run the file). Both formats are written on the CPU.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from . import MgcError, __version__, first_line
from .audio import SAMPLE_RATE
from .files import check_outputs, write_atomic
from .models.sinc import SincConv
from .onnx_engine import INPUT_NAME, OUTPUT_NAME, TAGS_OUTPUT_NAME, file_sha256
from .shipped import default_weights
from .torch_engine import GenreModel, load_torch_model

FORMATS = ("onnx", "torchscript")
METADATA_FILE = "metadata.json"  # TorchScript: the extra file that holds export_metadata()
# torch.export takes a dimension seen at size 0 or 1 for a constant, so the example batch has 2 clips.
EXAMPLE_BATCH = 2


def require_onnx() -> None:
    """Raise an MgcError saying how to install the onnx extra when the exporter's packages are missing."""
    try:
        import onnx
        import onnxscript
    except ImportError:
        raise MgcError('ONNX export needs onnx and onnxscript, an optional extra: pip install "mgcli[onnx]"') from None


def export_metadata(model: GenreModel, checkpoint_sha256: str = "") -> dict[str, str]:
    """What another tool needs to use the exported file, as strings (ONNX metadata holds strings only)."""
    metadata = {
        "model": model.name,
        "labels": json.dumps(model.labels),
        "sample_rate": str(SAMPLE_RATE),
        "clip_samples": str(model.clip_samples),
        "tagger": "true" if model.is_tagger else "false",
        "temperatures": json.dumps(model.temperatures),
        "mgcli_version": __version__,
    }
    if model.novelty is not None:
        metadata["novelty"] = json.dumps(model.novelty.to_dict())
    if checkpoint_sha256:
        metadata["checkpoint_sha256"] = checkpoint_sha256
    return metadata


def fixed_conv(sinc: SincConv) -> nn.Conv1d:
    """The convolution that `sinc` computes, its taps fixed at the current cut-offs."""
    conv = nn.Conv1d(1, sinc.n_filters, sinc.kernel_size, stride=sinc.stride, padding=sinc.kernel_size // 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(sinc.filters())
    return conv


class WithTags(nn.Module):
    """A network that keeps a tagger, exported with both outputs: its logits and the tagger's."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.network.forward_with_tags(wave)


def frozen_copy(network: nn.Module) -> nn.Module:
    """A copy of `network` for export: on the CPU, in eval mode, without gradients, sinc filters fixed,
    and both outputs where it keeps a tagger (WithTags).

    The network itself is left as it was, so a model being trained can be exported.
    """
    frozen = copy.deepcopy(network).cpu().eval()
    for parent in list(frozen.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, SincConv):
                setattr(parent, name, fixed_conv(child))
    return (WithTags(frozen).eval() if frozen.has_tags else frozen).requires_grad_(False)


def export_model(model: GenreModel, fmt: str, out: str | Path, checkpoint_sha256: str = "") -> Path:
    """Write `model` to `out` as an ONNX or TorchScript file (fmt: "onnx" or "torchscript"); returns the path.

    `checkpoint_sha256`: the digest of the checkpoint file the model was loaded from, if any.
    Written atomically: an interrupted export leaves any previous file intact.
    """
    if fmt not in FORMATS:
        raise MgcError(f"unknown export format {fmt!r} (use {' or '.join(FORMATS)})")
    if fmt == "onnx":
        require_onnx()
    network = frozen_copy(model.network)
    example = torch.randn(EXAMPLE_BATCH, model.clip_samples)
    metadata = export_metadata(model, checkpoint_sha256)
    # Without gradients, as inference runs: musicnn's front end takes its fused form only then,
    # and a trace records the one path it saw (TorchScript's check re-runs it the same way).
    with torch.no_grad():
        if fmt == "onnx":
            write_atomic(out, lambda tmp: save_onnx(network, example, metadata, tmp, model.name))
        else:
            write_atomic(out, lambda tmp: save_torchscript(network, example, metadata, tmp))
    return Path(out)


def save_onnx(network: nn.Module, example: torch.Tensor, metadata: dict[str, str], path: Path, name: str) -> None:
    """Export with torch.onnx's dynamo exporter (torch.export), the batch dimension left dynamic."""
    # The exporter logs a warning for each torchvision operator it cannot register when torchvision
    # is absent; mgcli never uses torchvision, so those lines would only be noise.
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        program = torch.onnx.export(
            network,
            (example,),
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME, TAGS_OUTPUT_NAME] if isinstance(network, WithTags) else [OUTPUT_NAME],
            verbose=False,
        )
    except Exception as error:  # the exporter raises many types; the first line says what failed
        raise MgcError(f"cannot export {name} to ONNX: {first_line(error)}") from error
    finally:
        onnx_logger.setLevel(level)
    program.model.metadata_props.update(metadata)
    program.save(path)


def save_torchscript(network: nn.Module, example: torch.Tensor, metadata: dict[str, str], path: Path) -> None:
    """Trace the network on an example batch and save it with the metadata as an extra file.

    Tracing, not scripting: torch.jit.script cannot compile the models' config dataclasses. A
    trace records the one path a clip takes, which is all there is: the models branch on their
    config (e.g. SincResNet's one bank or three), never on the data, and the batch size stays
    symbolic in the traced shapes.
    """
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, yet still the format TorchScript users load.
        warnings.simplefilter("ignore", FutureWarning)
        # Python branches on a config value (the number of sinc banks) are recorded as constants: intended.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(network, example)
        torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(metadata)})


def export_checkpoint(weights: str | Path | None, fmt: str, out_file: str | Path) -> GenreModel:
    """`mgc export`: the checkpoint `weights` (None or "default": the shipped weights) as an
    ONNX or TorchScript file `out_file`. Returns the model exported."""
    path = default_weights() if weights in (None, "default") else Path(weights)
    check_outputs([out_file], [path])  # its twin is no input here: exporting one is how it is made
    model = load_torch_model(path, "cpu")
    export_model(model, fmt, out_file, file_sha256(path))
    return model
