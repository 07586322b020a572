"""mgc export: every model of the zoo to TorchScript and ONNX, with PyTorch's logits and the labels in the file."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from test_cli import mgc
from test_models import build_tiny

from mgcli.checkpoint import make_checkpoint, save_checkpoint
from mgcli.export import METADATA_FILE, export_model
from mgcli.models import MODELS
from mgcli.models.sinc import SincConv
from mgcli.torch_engine import GenreModel

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning"),
]

LABELS = ["blues", "jazz", "metal"]
SINC_MODELS = {"ms-sincresnet", "sincresnet", "sincnet", "multi-input"}
BATCH_SIZES = (1, 3)  # the file was exported from a batch of 2: both must work


def tiny_model(name: str) -> GenreModel:
    """A tiny model of the zoo in eval mode, its BatchNorm statistics moved off their identity start."""
    torch.manual_seed(0)
    network = build_tiny(name, n_classes=len(LABELS))
    with torch.no_grad():
        network(torch.randn(4, network.config.clip_samples))  # training mode: updates the running statistics
    return GenreModel(name, network.eval(), LABELS, torch.device("cpu"))


def clips(model: GenreModel, batch: int) -> torch.Tensor:
    return torch.randn(batch, model.clip_samples, generator=torch.Generator().manual_seed(batch))


def expected_logits(model: GenreModel, batch: int) -> torch.Tensor:
    with torch.no_grad():
        return model.network(clips(model, batch))


def has_sinc(model: GenreModel) -> bool:
    return any(isinstance(module, SincConv) for module in model.network.modules())


@pytest.mark.parametrize("name", list(MODELS))
def test_torchscript_matches_pytorch(tmp_path, name):
    model = tiny_model(name)
    path = export_model(model, "torchscript", tmp_path / "model.pt")
    extra = {METADATA_FILE: ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    for batch in BATCH_SIZES:
        with torch.no_grad():
            assert torch.allclose(loaded(clips(model, batch)), expected_logits(model, batch), rtol=0, atol=1e-4)
    metadata = json.loads(extra[METADATA_FILE])
    assert json.loads(metadata["labels"]) == LABELS and metadata["model"] == name
    assert int(metadata["clip_samples"]) == model.clip_samples and metadata["sample_rate"] == "16000"
    # Baked in: the traced graph computes no sinc filters, and the model itself still has its SincConvs.
    assert "aten::sinc" not in str(loaded.inlined_graph)
    assert has_sinc(model) == (name in SINC_MODELS)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_matches_pytorch(tmp_path, name):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = tiny_model(name)
    path = export_model(model, "onnx", tmp_path / "model.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for batch in BATCH_SIZES:
        (logits,) = session.run(["logits"], {"waveform": clips(model, batch).numpy()})
        assert torch.allclose(torch.from_numpy(logits), expected_logits(model, batch), rtol=0, atol=1e-4)
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["labels"]) == LABELS and metadata["model"] == name
    assert int(metadata["clip_samples"]) == model.clip_samples
    # No Sin node computes sinc filters in the graph. (For filters this small the exporter's optimiser
    # would fold them into constants by itself; the TorchScript test is the one that needs the baking.)
    assert "Sin" not in {node.op_type for node in onnx.load(str(path)).graph.node}


def test_cli_export(capsys, tmp_path):
    model = tiny_model("bbnn")
    checkpoint = tmp_path / "bbnn.pt"
    save_checkpoint(make_checkpoint("bbnn", model.network, LABELS), checkpoint)
    code, out, err = mgc(capsys, "export", checkpoint, "--format", "torchscript", "--out", tmp_path / "out" / "bbnn.ts")
    assert code == 0, err
    assert "written" in out and (tmp_path / "out" / "bbnn.ts").is_file()

    for args, message in [
        ((checkpoint, "--format", "tflite"), "unknown export format 'tflite' (use onnx or torchscript)"),
        ((tmp_path / "missing.pt", "--format", "onnx"), "no such checkpoint"),
    ]:
        code, _, err = mgc(capsys, "export", *args, "--out", tmp_path / "x")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_onnx_extra_missing(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now raises ImportError
    code, _, err = mgc(capsys, "export", "default", "--format", "onnx", "--out", tmp_path / "default.onnx")
    assert code == 2 and 'pip install "mgcli[onnx]"' in err and len(err.strip().splitlines()) == 1
