"""The ONNX engine: the shipped twins are fresh and agree with PyTorch, predict runs without torch,
and --engine chooses, or refuses in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_GTZAN, write_tone
from test_cli import mgc

from mgcli.audio import load
from mgcli.checkpoint import load_checkpoint, save_checkpoint
from mgcli.clips import cut_clips
from mgcli.export import export_checkpoint
from mgcli.inference import load_model, softmax
from mgcli.onnx_engine import file_sha256, load_onnx_model
from mgcli.shipped import WEIGHTS_DIR
from mgcli.tags import tag_probabilities

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = sorted(WEIGHTS_DIR.glob("*.pt"))
NO_GPU = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # "auto" must mean the CPU, GPU or not


def test_every_shipped_checkpoint_has_an_up_to_date_onnx_twin():
    """Fails when a .pt changes and its .onnx is not exported again (`make onnx`)."""
    assert {p.name for p in SHIPPED} >= {"default.pt", "musicnn-msd.pt", "musicnn-mtt.pt"}
    for checkpoint in SHIPPED:
        twin = load_onnx_model(checkpoint.with_suffix(".onnx"))
        assert twin.checkpoint_sha256 == file_sha256(checkpoint), f"{checkpoint.name}: run `make onnx`"
        labels = load_checkpoint(checkpoint)["labels"]
        assert twin.labels == labels and twin.is_tagger == (len(labels) == 50)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_GTZAN.is_dir(), reason="needs ../shared/data/gtzan")
@pytest.mark.parametrize("name", ["default", "musicnn-msd", "bbnn"])
def test_onnx_twin_agrees_with_pytorch_on_real_clips(name):
    """Probabilities within 1e-4 on real music, as predict and tags compute them."""
    files = [SHARED_GTZAN / "blues" / "blues.00000.ogg", SHARED_GTZAN / "metal" / "metal.00003.ogg",
             SHARED_GTZAN.parent / "emotify" / "classical" / "emotify.classical.001.ogg"]
    torch_model = load_model(WEIGHTS_DIR / f"{name}.pt", "cpu", engine="torch")
    onnx_model = load_model(WEIGHTS_DIR / f"{name}.pt", "cpu", engine="onnx")
    assert (torch_model.engine, onnx_model.engine) == ("torch", "onnx")
    probabilities = tag_probabilities if torch_model.is_tagger else softmax
    for path in files:
        if not path.is_file():
            continue
        clips = cut_clips(load(path), torch_model.clip_samples, torch_model.clip_samples)
        expected = probabilities(torch_model.clip_outputs(clips).logits)
        assert np.abs(probabilities(onnx_model.clip_outputs(clips).logits) - expected).max() <= 1e-4


def test_predict_and_tags_import_no_torch(tmp_path):
    """The shipped default on the CPU: onnxruntime answers, and no torch module is ever imported."""
    song = write_tone(tmp_path / "song.wav", 440, 4.0)
    for command in ("predict", "tags"):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "mgcli", command, str(song)],
            capture_output=True, text=True, env=NO_GPU,
        )
        assert done.returncode == 0, done.stderr
        assert "probability" in done.stdout
        imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
        assert "onnxruntime" in imported and "mgcli.onnx_engine" in imported
        assert not [module for module in imported if module.split(".")[0] == "torch"]
        assert "mgcli.explain.plot" not in imported  # nor the plotting code: its figure sizes live in mgcli.explain


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    """A copy of the tiny trained model's checkpoint with its ONNX twin beside it."""
    folder = tmp_path_factory.mktemp("exported")
    checkpoint = folder / "tiny.pt"
    shutil.copy(trained_run / "best.pt", checkpoint)
    export_checkpoint(checkpoint, "onnx", folder / "tiny.onnx")
    return checkpoint


def test_auto_runs_a_fresh_twin_and_agrees_with_pytorch(exported, tmp_path):
    song = write_tone(tmp_path / "song.wav", 300, 3.0)
    onnx_model = load_model(exported, "cpu")
    torch_model = load_model(exported, "cpu", engine="torch")
    assert (onnx_model.engine, torch_model.engine) == ("onnx", "torch")
    assert load_model(exported.with_suffix(".onnx"), "cpu").engine == "onnx"
    clips = cut_clips(load(song), onnx_model.clip_samples, 4000)
    assert np.abs(softmax(onnx_model.clip_outputs(clips).logits) - softmax(torch_model.clip_outputs(clips).logits)).max() <= 1e-4


def test_a_stale_twin_is_never_run(exported, tmp_path, capsys):
    """A checkpoint changed after its export: auto falls back to PyTorch, --engine onnx refuses."""
    folder = tmp_path / "stale"
    shutil.copytree(exported.parent, folder)
    checkpoint = load_checkpoint(folder / "tiny.pt")
    first = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][first] = checkpoint["state_dict"][first] + 0.5
    save_checkpoint(checkpoint, folder / "tiny.pt")
    assert load_model(folder / "tiny.pt", "cpu").engine == "torch"
    song = write_tone(tmp_path / "song.wav", 300, 3.0)
    code, _, err = mgc(capsys, "predict", song, "--weights", folder / "tiny.pt", "--engine", "onnx")
    assert code == 2 and "was not exported from" in err and "mgc export" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--engine", "onnx"], "has no ONNX file"),
    (["--engine", "fast"], "unknown engine 'fast'"),
    (["--engine", "torch", "--weights", "ONNX"], "needs the PyTorch network: give its .pt checkpoint"),
    (["--device", "cuda", "--weights", "ONNX"], "the ONNX engine runs on the CPU"),
])
def test_engine_choices_refused_in_one_line(trained_run, exported, tmp_path, capsys, args, message):
    song = write_tone(tmp_path / "song.wav", 300, 3.0)
    args = [str(exported.with_suffix(".onnx")) if a == "ONNX" else a for a in args]
    if "--weights" not in args:
        args += ["--weights", str(trained_run / "best.pt")]  # a checkpoint without a twin
    code, _, err = mgc(capsys, "predict", song, *args)
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_an_onnx_file_is_used_directly_and_tags_refuse_a_genre_model(exported, tmp_path, capsys):
    song = write_tone(tmp_path / "song.wav", 300, 3.0)
    code, out, _ = mgc(capsys, "predict", song, "--weights", exported.with_suffix(".onnx"), "--csv", tmp_path / "t.csv")
    assert code == 0
    code, _, err = mgc(capsys, "tags", song, "--weights", exported.with_suffix(".onnx"))
    assert code == 2 and "not a tagger" in err


def test_threads_follow_omp_num_threads(exported, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    session = load_onnx_model(exported.with_suffix(".onnx")).session
    assert session.get_session_options().intra_op_num_threads == 1


def test_a_file_that_is_no_onnx_model_is_refused(tmp_path, capsys):
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not a model")
    code, _, err = mgc(capsys, "predict", write_tone(tmp_path / "s.wav", 300, 3.0), "--weights", fake)
    assert code == 2 and "not a readable ONNX model" in err and len(err.splitlines()) == 1
