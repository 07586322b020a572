"""Convert musicnn's published TensorFlow checkpoints into mgcli checkpoints, without TensorFlow.

    python -m mgcli.convert_musicnn musicnn-0.1.0-py3-none-any.whl --out weights

SOURCE is the musicnn wheel (`pip download musicnn==0.1.0 --no-deps`), an unpacked or
installed `musicnn` package folder, or nothing: then the installed package is used. Writes
weights/musicnn-msd.pt, musicnn-mtt.pt, musicnn-vgg-msd.pt and musicnn-vgg-mtt.pt (mgcli
checkpoints whose labels are the model's 50 tags) and the package's licence beside them.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import MgcError
from .checkpoint import make_checkpoint, save_checkpoint
from .models import build
from .tf_checkpoint import read_checkpoint

# musicnn's checkpoint folder -> (our file name, registry model, config, tag list in configuration.py)
CONVERSIONS = {
    "MSD_musicnn": ("musicnn-msd.pt", "musicnn", {"head": "tags", "n_classes": 50, "pretrained": "", "freeze": "none"}, "MSD_LABELS"),
    "MTT_musicnn": ("musicnn-mtt.pt", "musicnn", {"head": "tags", "n_classes": 50, "pretrained": "", "freeze": "none"}, "MTT_LABELS"),
    "MSD_vgg": ("musicnn-vgg-msd.pt", "musicnn-vgg", {}, "MSD_LABELS"),
    "MTT_vgg": ("musicnn-vgg-mtt.pt", "musicnn-vgg", {}, "MTT_LABELS"),
}
LICENCE_NOTICE = "MUSICNN-LICENSE.md"


def musicnn_names(n_timbral: int = 2, n_temporal: int = 3, n_midend: int = 3) -> dict[str, str]:
    """Our module prefix for each TensorFlow layer name, in the order musicnn's graph creates them."""
    convs = [f"timbral.{i}" for i in range(n_timbral)] + [f"temporal.{i}" for i in range(n_temporal)]
    convs += [f"midend.{i}" for i in range(n_midend)]
    names = {"batch_normalization": "input_norm"}
    for i, module in enumerate(convs):
        names[f"conv2d{'' if i == 0 else f'_{i}'}"] = f"{module}.conv"
        names[f"batch_normalization_{i + 1}"] = f"{module}.norm"
    n = len(convs)
    names |= {f"batch_normalization_{n + 1}": "pool_norm", "dense": "dense",
              f"batch_normalization_{n + 2}": "dense_norm", "dense_1": "tags"}
    return names


def vgg_names(n_convs: int = 5) -> dict[str, str]:
    names = {"batch_normalization": "input_norm", "dense": "output"}
    for i in range(n_convs):
        names[f"{i + 1}CNN"] = f"convs.{i}"
        names[f"batch_normalization_{i + 1}"] = f"norms.{i}"
    return names


def to_torch(name: str, tensor: np.ndarray, target_shape: torch.Size) -> tuple[str, torch.Tensor]:
    """One TensorFlow variable as (our parameter suffix, tensor in our layout)."""
    variable = name.rsplit("/", 1)[1]
    suffix = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
              "moving_mean": "running_mean", "moving_variance": "running_var"}[variable]
    if variable == "kernel":
        if tensor.ndim == 2:  # dense: [in, out] -> [out, in]
            tensor = tensor.T
        elif len(target_shape) == 3:  # a convolution across all channels, [7, C, 1, out] -> Conv1d [out, C, 7]
            tensor = tensor[:, :, 0, :].transpose(2, 1, 0)
        else:  # [height, width, in, out] -> [out, in, height, width]
            tensor = tensor.transpose(3, 2, 0, 1)
    return suffix, torch.from_numpy(np.ascontiguousarray(tensor))


def convert_folder(folder: Path, model: str, overrides: dict) -> torch.nn.Module:
    """Build our network and fill it from the TensorFlow checkpoint in `folder`."""
    tensors = read_checkpoint(f"{folder}/")  # musicnn saves with an empty file prefix: "<folder>/.index"
    network = build(model, **overrides)
    names = musicnn_names() if model == "musicnn" else vgg_names()
    state = network.state_dict()
    filled = set()
    for tf_name, tensor in tensors.items():
        layer = tf_name.rsplit("/", 1)[0]
        if tf_name.endswith(("/Adam", "/Adam_1")) or layer not in names:
            continue  # optimiser slots and counters
        target = f"{names[layer]}."
        suffix, value = to_torch(tf_name, tensor, state[target + "weight"].shape)
        key = target + suffix
        if state[key].shape != value.shape:
            raise MgcError(f"{folder}: {tf_name} has shape {tuple(tensor.shape)}; {key} needs {tuple(state[key].shape)}")
        state[key] = value
        filled.add(key)
    unfilled = [key for key in state if key not in filled and not key.endswith("num_batches_tracked")
                and not key.startswith("front_end.")]
    if unfilled:
        raise MgcError(f"{folder}: no TensorFlow variable for {', '.join(unfilled)}")
    network.load_state_dict(state)
    return network.eval()


def tag_lists(configuration: Path) -> dict[str, list[str]]:
    """The tag lists assigned in musicnn's configuration.py, read without running it."""
    tree = ast.parse(configuration.read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.endswith("_LABELS")
    }


def installed_package() -> Path:
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise MgcError("no musicnn package installed: name the wheel (pip download musicnn==0.1.0 --no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


def convert(source: str | Path | None, out_dir: str | Path) -> list[Path]:
    """Convert every musicnn checkpoint found in `source` (wheel, package folder, or installed package)."""
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        if source is None:
            package = installed_package()
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as wheel:
                wheel.extractall(scratch, [n for n in wheel.namelist() if n.startswith("musicnn")])
            package = Path(scratch) / "musicnn"
        else:
            package = Path(source)
        if not (package / "configuration.py").is_file():
            raise MgcError(f"{source}: not a musicnn wheel or package folder (no musicnn/configuration.py)")
        tags = tag_lists(package / "configuration.py")
        written = []
        for folder, (file_name, model, overrides, tag_list) in CONVERSIONS.items():
            network = convert_folder(package / folder, model, overrides)
            checkpoint = make_checkpoint(model, network, tags[tag_list])
            checkpoint["source"] = f"musicnn 0.1.0 {folder} (Pons & Serra 2019, ISC licence)"
            save_checkpoint(checkpoint, out / file_name)
            written.append(out / file_name)
        licence = next(Path(package.parent).glob("musicnn-*.dist-info/LICENSE*"), None)
        if licence is not None:
            (out / LICENCE_NOTICE).write_text(licence.read_text())
            written.append(out / LICENCE_NOTICE)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="musicnn wheel or package folder (default: the installed package)")
    parser.add_argument("--out", default="weights", help="folder for the converted checkpoints")
    args = parser.parse_args()
    try:
        for path in convert(args.source, args.out):
            print(path)
    except MgcError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
