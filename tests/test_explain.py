"""mgc explain, mgc inspect and predict's timeline, on generated audio and tiny untrained checkpoints."""

from __future__ import annotations

import csv
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SHARED_GTZAN
from test_cli import mgc
from test_models import TINY, TINY_CLIP, tones

import mgcli.explain.explain as explain_module
from mgcli.checkpoint import make_checkpoint, save_checkpoint
from mgcli.explain.explain import explain_file
from mgcli.explain.inspect import filter_banks, hpss, sinc_filters
from mgcli.explain.plot import (
    CUTOFFS_PIXELS,
    EXPLAIN_PIXELS,
    FILTERS_PIXELS,
    RESPONSES_PIXELS,
    SPECTROGRAMS_PIXELS,
    TIMELINE_PIXELS,
)
from mgcli.inference import load_model
from mgcli.models import MODELS, build
from mgcli.models.sincnet import SincNet
from mgcli.shipped import WEIGHTS_DIR
from mgcli.torch_engine import GenreModel

CLIP = 8000  # 0.5 s
# Tiny configs whose last feature maps keep a few time steps, so a Grad-CAM map can vary within a clip.
CONFIGS = {
    "ms-sincresnet": dict(n_filters=16, kernel_sizes=(33, 65, 129), pooled_width=128, backbone_width=8, fc_hidden=16),
    "multi-input": dict(n_mels=32, n_fft=256, hop_length=128, n_filters=16, kernel_sizes=(17, 33), pooled_width=32,
                        channels=(4, 8, 8, 16), fc_hidden=16),
    "bbnn": dict(n_mels=32, n_fft=256, hop_length=128, stem_channels=8, width=8, bottleneck=8, transition_channels=8),
    "resnet-mel": dict(backbone_width=8, n_mels=32, fc_hidden=16),
    "sincnet": dict(n_filters=8, conv_channels=8, fc_size=32, pooled_width=16),
}
LABELS = ["high", "low"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints, each trained a few steps on high and low tones: an untrained network's
    Grad-CAM can be zero everywhere (no feature map speaks for any genre yet)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    waves, targets = tones(CLIP)
    targets = 1 - targets  # tones() gives 0 for the low tones; LABELS lists "high" first
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for name, config in CONFIGS.items():
        network = build(name, n_classes=len(LABELS), clip_samples=CLIP, **config)
        optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
        for _ in range(10):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(network(waves), targets).backward()
            optimizer.step()
        paths[name] = folder / f"{name}.pt"
        save_checkpoint(make_checkpoint(name, network.eval(), LABELS), paths[name])
    return paths


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    """1.5 s at 16 kHz, three clips that differ: a low tone, noise, a high tone with clicks."""
    rng = np.random.default_rng(0)
    t = np.arange(CLIP) / 16000
    clicks = np.zeros(CLIP)
    clicks[::1000] = 1.0
    wave = np.concatenate([
        0.3 * np.sin(2 * np.pi * 220 * t),
        0.1 * rng.standard_normal(CLIP),
        0.3 * np.sin(2 * np.pi * 3000 * t) + clicks,
    ]).astype(np.float32)
    path = tmp_path_factory.mktemp("audio") / "song.wav"
    sf.write(str(path), wave, 16000)
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize("name", ["ms-sincresnet", "multi-input", "bbnn", "resnet-mel"])
def test_grad_cam_has_the_input_resolution_and_is_not_constant(checkpoints, song, name):
    model = load_model(checkpoints[name], "cpu")
    explanation = explain_file(model, song, steps=4)
    assert explanation.label in LABELS and len(explanation.timeline) == 3
    for item in explanation.inputs:
        assert item.grad_cam.shape == item.image.shape == item.integrated_gradients.shape
        assert item.image.shape[1] % 3 == 0  # three clips side by side
        cam = item.grad_cam
        assert cam.min() >= 0 and cam.max() == pytest.approx(1) and cam.std() > 0
        assert np.isfinite(item.integrated_gradients).all() and np.abs(item.integrated_gradients).max() > 0
    first = explanation.inputs[0]
    if name == "ms-sincresnet":  # the learned spectrogram: n_filters x pooled_width per clip
        assert first.image.shape == (16, 3 * 128)
        assert first.grad_cam[:, :128].std() > 0  # conv5 keeps 4 time steps: the map varies within a clip
    if name in ("bbnn", "resnet-mel", "multi-input"):  # log-mel: n_mels x frames per clip
        assert first.image.shape == (32, 3 * (CLIP // 128 + 1))


def test_explain_a_chosen_genre_writes_a_png_of_the_promised_size(capsys, checkpoints, song, tmp_path):
    out = tmp_path / "why.png"
    code, stdout, err = mgc(capsys, "explain", song, "--weights", checkpoints["multi-input"], "--label", "low",
                            "--steps", "2", "--device", "cpu", "--out", out)
    assert code == 0, err
    assert "low explained over 3 clips" in stdout
    assert png_size(out) == EXPLAIN_PIXELS == (1400, 1000)


WAVEFORM_MODELS = ("samplecnn", "samplecnn-mlms", "sincnet")
MUSICNN_MODELS = ("musicnn", "musicnn-probe", "musicnn-ensemble", "musicnn-vgg")


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registry_model_explains_a_track(song, name):
    """Every model maps its input: a spectrogram's bands by time, or a waveform's frames on one row."""
    torch.manual_seed(0)
    config = {"clip_samples": TINY_CLIP, **TINY[name]}
    network = build(name, n_classes=len(LABELS), **config)
    waves, targets = tones(config["clip_samples"])
    optimizer = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=0.01)
    for _ in range(10):  # a few steps: an untrained network's Grad-CAM can be zero everywhere
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(network(waves), targets).backward()
        optimizer.step()
    model = GenreModel(name, network.eval(), LABELS, torch.device("cpu"))
    explanation = explain_file(model, song, steps=2)
    assert explanation.label in LABELS and 0 < explanation.probability <= 1
    for item in explanation.inputs:
        assert item.image.shape == item.integrated_gradients.shape
        assert np.isfinite(item.integrated_gradients).all() and np.abs(item.integrated_gradients).max() > 0
        assert item.waveform == (name in WAVEFORM_MODELS)
        if item.waveform:  # frames of 256 samples, one row
            assert item.image.shape == (1, len(explanation.timeline) * -(-config["clip_samples"] // 256))
        if name in MUSICNN_MODELS:  # musicnn's 96 mel bands, low to high
            assert item.image.shape[0] == 96
        if name == "mel-linear":  # nothing convolves its log-mel
            assert item.grad_cam is None
            continue
        cam = item.grad_cam
        assert cam.shape == item.image.shape and np.isfinite(cam).all()
        assert cam.min() >= 0 and cam.max() == pytest.approx(1)


@pytest.mark.parametrize(
    "model, extra, message",
    [("sincnet", [], "sincnet declares no input for explain to map"), ("bbnn", ["--label", "jazz"], "unknown genre 'jazz'")],
)
def test_explain_says_what_it_cannot_do(capsys, checkpoints, song, tmp_path, monkeypatch, model, extra, message):
    monkeypatch.setattr(SincNet, "explained_inputs", lambda self: [])  # as a model with nothing to map
    code, _, err = mgc(capsys, "explain", song, "--weights", checkpoints[model], "--out", tmp_path / "x.png", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_GTZAN.is_dir(), reason="needs ../shared/data/gtzan")
def test_explain_the_shipped_default_on_a_real_clip(capsys, tmp_path, monkeypatch):
    drawn = []

    def keep_and_draw(path, explanation):
        drawn.append(explanation)
        draw(path, explanation)

    draw = explain_module.draw_explanation
    monkeypatch.setattr(explain_module, "draw_explanation", keep_and_draw)
    out = tmp_path / "why.png"
    code, stdout, err = mgc(capsys, "explain", SHARED_GTZAN / "metal" / "metal.00003.ogg", "--steps", "2",
                            "--device", "cpu", "--out", out)
    assert code == 0, err
    assert png_size(out) == EXPLAIN_PIXELS
    [explanation] = drawn
    assert len(explanation.timeline) == 10  # a 30-s clip, 3-s clips
    [log_mel] = explanation.inputs
    assert log_mel.image.shape[0] == 96 and log_mel.grad_cam.shape == log_mel.image.shape
    for values in (log_mel.image, log_mel.grad_cam, log_mel.integrated_gradients):
        assert np.isfinite(values).all() and np.abs(values).max() > 0
    assert log_mel.grad_cam.std() > 0


def test_inspect_draws_the_filters_and_figure_4(capsys, checkpoints, song, tmp_path):
    code, stdout, err = mgc(capsys, "inspect", checkpoints["ms-sincresnet"], "--out", tmp_path, "--audio", song)
    assert code == 0, err
    assert png_size(tmp_path / "sinc-cutoffs.png") == CUTOFFS_PIXELS
    assert png_size(tmp_path / "sinc-responses.png") == RESPONSES_PIXELS
    assert png_size(tmp_path / "spectrograms.png") == SPECTROGRAMS_PIXELS
    assert stdout.count("written:") == 3


def test_inspect_draws_musicnns_strongest_front_end_filters(capsys, tmp_path):
    default = WEIGHTS_DIR / "default.pt"
    code, stdout, err = mgc(capsys, "inspect", default, "--out", tmp_path)
    assert code == 0, err
    assert png_size(tmp_path / "front-end-filters.png") == FILTERS_PIXELS == (1600, 900)
    assert stdout.count("written:") == 1 and not (tmp_path / "sinc-cutoffs.png").exists()
    banks = filter_banks(load_model(default, "cpu", engine="torch").network, k=3)
    assert [(b.name, b.weights.shape, b.n_filters) for b in banks] == [
        ("timbral 7 x 38", (3, 7, 38), 204), ("timbral 7 x 67", (3, 7, 67), 204),
        ("temporal 128 x 1", (3, 128, 1), 51), ("temporal 64 x 1", (3, 64, 1), 51), ("temporal 32 x 1", (3, 32, 1), 51),
    ]
    for bank in banks:  # strongest first
        norms = np.linalg.norm(bank.weights.reshape(3, -1), axis=1)
        assert np.all(np.diff(norms) <= 0) and len(set(bank.index)) == 3


def test_sinc_filters_compare_learned_cutoffs_with_their_mel_start(checkpoints):
    network = load_model(checkpoints["ms-sincresnet"], "cpu").network
    before = sinc_filters(network)
    with torch.no_grad():
        network.front_end.banks[1].sinc.low_hz += 100.0  # as if training had moved every low cut-off up
    banks = sinc_filters(network)
    assert [b.name for b in banks] == [f"front_end.banks.{i}.sinc" for i in range(3)]
    assert [b.taps.shape for b in banks] == [(16, 33), (16, 65), (16, 129)]
    np.testing.assert_allclose(banks[1].low_hz - before[1].low_hz, 100.0, rtol=1e-4)
    untrained = build("ms-sincresnet", clip_samples=CLIP, **CONFIGS["ms-sincresnet"])
    for bank, start in zip(banks, sinc_filters(untrained)):  # the start is where a fresh bank begins
        np.testing.assert_allclose(bank.init_low_hz, start.low_hz)
        np.testing.assert_allclose(bank.init_high_hz, start.high_hz)
    assert np.all(np.diff(banks[0].init_low_hz) > 0)  # mel-spaced, rising
    # Each filter passes its own band: the response peaks between its cut-offs, near 0 dB.
    bank = banks[2]
    peaks = bank.response_hz[bank.response_db.argmax(axis=1)]
    inside = (peaks >= bank.low_hz - 50) & (peaks <= bank.high_hz + 50)
    assert inside.mean() > 0.8 and np.all(bank.response_db.max(axis=1) < 3)


def test_inspect_a_model_without_sinc_filters(capsys, checkpoints, song, tmp_path):
    code, _, err = mgc(capsys, "inspect", checkpoints["resnet-mel"], "--out", tmp_path)
    assert code == 2 and "no sinc filters to draw" in err and "--audio" in err
    code, _, err = mgc(capsys, "inspect", checkpoints["resnet-mel"], "--out", tmp_path, "--audio", song, "--start", "0.5")
    assert code == 0 and "hand-made spectrograms only" in err
    assert png_size(tmp_path / "spectrograms.png") == SPECTROGRAMS_PIXELS
    assert not (tmp_path / "sinc-cutoffs.png").exists()


def test_hpss_puts_a_steady_tone_in_harmonic_and_clicks_in_percussive():
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    clicks = np.zeros_like(t)
    clicks[4000::4000] = 5.0
    spectrum = torch.stft(torch.tensor(tone + clicks, dtype=torch.float32), 512, 128,
                          window=torch.hann_window(512), return_complex=True).abs()
    harmonic, percussive = hpss(spectrum)
    torch.testing.assert_close(harmonic + percussive, spectrum, rtol=1e-4, atol=1e-6)  # soft masks sum to one
    tone_bin = round(1000 / 16000 * 512)
    click_frame = 4000 // 128 + 1
    far_bins = slice(100, 250)  # well above the tone: only the clicks are there
    assert harmonic[tone_bin].sum() > 10 * percussive[tone_bin].sum()
    assert percussive[far_bins, click_frame].sum() > 10 * harmonic[far_bins, click_frame].sum()


def test_predict_timeline_in_json_csv_table_and_png(capsys, checkpoints, song, tmp_path):
    weights = checkpoints["ms-sincresnet"]
    out = {name: tmp_path / name for name in ("tags.csv", "tags.json", "clips.csv", "strip.png")}
    code, stdout, err = mgc(capsys, "predict", song, "--weights", weights, "--hop", "0.25", "--timeline",
                            "--csv", out["tags.csv"], "--json", out["tags.json"],
                            "--timeline-csv", out["clips.csv"], "--timeline-png", out["strip.png"])
    assert code == 0, err

    with open(out["tags.csv"], newline="") as f:
        assert next(csv.reader(f)) == ["path", "genre", "probability", "high", "low", "error", "warning", "novelty"]  # unchanged

    [record] = json.loads(out["tags.json"].read_text())
    timeline = record["timeline"]
    assert len(timeline) == record["clips"] == 5  # 0.5-s clips every 0.25 s over 1.5 s
    assert [(s["start"], s["end"]) for s in timeline] == [(i * 0.25, i * 0.25 + 0.5) for i in range(5)]
    for segment in timeline:
        assert sum(segment["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert segment["probability"] == max(segment["probabilities"].values())
        assert segment["genre"] == max(segment["probabilities"], key=segment["probabilities"].get)

    with open(out["clips.csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "start", "end", "genre", "probability", "high", "low"]
    assert [(float(r["start"]), r["genre"]) for r in rows] == [(s["start"], s["genre"]) for s in timeline]
    assert png_size(out["strip.png"]) == TIMELINE_PIXELS

    code, stdout, _ = mgc(capsys, "predict", song, "--weights", weights, "--hop", "0.5", "--timeline")
    assert code == 0 and "from (s)" in stdout
    assert all(f"{t:.2f} " in stdout for t in (0.0, 0.5, 1.0, 1.5))  # 3 clips: 0-0.5, 0.5-1, 1-1.5 s

    other = tmp_path / "other.wav"
    other.write_bytes(song.read_bytes())
    code, _, err = mgc(capsys, "predict", song, other, "--weights", weights, "--timeline-png", out["strip.png"])
    assert code == 2 and "--timeline-png draws one track" in err


@pytest.mark.parametrize(
    "args",
    [
        ["explain", "SONG", "--weights", "W", "--out", "x.png"],
        ["inspect", "W", "--out", "pictures"],
        ["predict", "SONG", "--weights", "W", "--timeline-png", "x.png"],
    ],
)
def test_without_matplotlib_the_commands_say_how_to_install_it(capsys, checkpoints, song, tmp_path, monkeypatch, args):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib...` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.chdir(tmp_path)
    replace = {"SONG": str(song), "W": str(checkpoints["ms-sincresnet"])}
    code, _, err = mgc(capsys, *[replace.get(a, a) for a in args])
    assert code == 2 and 'pip install "mgcli[plot]"' in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing half-written
