"""The musicnn port against musicnn's own TensorFlow outputs (tests/fixtures/musicnn-reference.npz)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_GTZAN

from mgcli import audio
from mgcli.checkpoint import load_checkpoint
from mgcli.clips import cut_clips
from mgcli.shipped import WEIGHTS_DIR
from mgcli.torch_engine import model_from_checkpoint

REFERENCE = np.load(Path(__file__).parent / "fixtures" / "musicnn-reference.npz")
FILES = sorted({key.split("/")[0] for key in REFERENCE.files}, key=int)
TAGGERS = {"MSD_musicnn": "musicnn-msd.pt", "MTT_musicnn": "musicnn-mtt.pt",
           "MSD_vgg": "musicnn-vgg-msd.pt", "MTT_vgg": "musicnn-vgg-mtt.pt"}
MUSICNN_PATCH_HOP = 187 * 256  # musicnn's patches follow each other every 187 frames


def tagger(file_name: str):
    return model_from_checkpoint(load_checkpoint(WEIGHTS_DIR / file_name), torch.device("cpu")).network


@pytest.mark.parametrize("model", TAGGERS)
def test_port_matches_musicnn_on_the_same_log_mel(model):
    network = tagger(TAGGERS[model])
    for i in FILES:
        log_mel = torch.from_numpy(REFERENCE[f"{i}/log_mel"])
        with torch.no_grad():
            tags = torch.sigmoid(network.tag_logits_from_mel(log_mel)).numpy()
            np.testing.assert_allclose(tags, REFERENCE[f"{i}/{model}/tags"], atol=1e-4)
            if "musicnn" in model:
                penultimate = network.embed(log_mel)[1].numpy()
                np.testing.assert_allclose(penultimate, REFERENCE[f"{i}/{model}/penultimate"], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("model", TAGGERS)
def test_port_matches_musicnn_end_to_end_from_audio(model):
    """Our decoder and front end against librosa's and musicnn's, on the real files."""
    data = SHARED_GTZAN.parent
    if not data.is_dir():
        pytest.skip("../shared/data is absent")
    network = tagger(TAGGERS[model])
    for i in FILES:
        wave = audio.load(data / str(REFERENCE[f"{i}/path"]))
        clips = cut_clips(wave, hop=MUSICNN_PATCH_HOP)
        full = [c for start, c in zip(range(0, len(wave), MUSICNN_PATCH_HOP), clips) if start + audio.CLIP_SAMPLES <= len(wave)]
        with torch.no_grad():
            tags = torch.sigmoid(network(torch.from_numpy(np.stack(full)))).mean(dim=0).numpy()
        reference = REFERENCE[f"{i}/{model}/track_tags"]
        np.testing.assert_allclose(tags, reference, atol=0.02)
        # The same top 5, up to a swap with a tag that ties musicnn's 5th within 0.005 (two VGG cases).
        fifth = np.sort(reference)[-5]
        assert set(np.argsort(-tags)[:5]) <= set(np.flatnonzero(reference >= fifth - 0.005))


def _musicnn_wheel() -> Path | None:
    wheel = os.environ.get("MUSICNN_WHEEL")
    return Path(wheel) if wheel and Path(wheel).is_file() else None


def test_converter_on_the_real_wheel_gives_the_shipped_weights(tmp_path):
    from mgcli.convert_musicnn import convert, installed_package

    wheel = _musicnn_wheel()
    if wheel is None:
        try:
            installed_package()
        except Exception:
            pytest.skip("no musicnn wheel (set MUSICNN_WHEEL) and no musicnn package installed")
    written = convert(wheel, tmp_path)
    assert {p.name for p in written} >= set(TAGGERS.values())
    for name in TAGGERS.values():
        new, shipped = load_checkpoint(tmp_path / name), load_checkpoint(WEIGHTS_DIR / name)
        assert new["labels"] == shipped["labels"] and len(new["labels"]) == 50
        for key, value in shipped["state_dict"].items():
            assert torch.equal(new["state_dict"][key], value), key


# ---------------------------------------------------------------- training with musicnn, tiny

TINY_MUSICNN = dict(timbral_filters=8, temporal_filters=4, midend_filters=8, backend_units=16, clip_samples=8000)


def test_front_end_branch_fast_eval_path_equals_relu_batchnorm_max():
    from mgcli.models.musicnn import FrontEndBranch

    torch.manual_seed(0)
    for kernel in [(7, 38), (32, 1)]:
        branch = FrontEndBranch(6, kernel)
        with torch.no_grad():  # BatchNorm scales of both signs, as trained networks have
            branch.norm.weight.copy_(torch.tensor([1.5, -0.7, 0.2, -2.0, 0.9, -0.1]))
            branch.norm.bias.normal_()
            branch.norm.running_mean.normal_()
            branch.norm.running_var.uniform_(0.5, 2.0)
        x = torch.randn(3, 1, 40, 96)
        branch.eval()
        with torch.no_grad():
            z = branch.convolve(x, branch.conv.weight, branch.conv.bias)
            expected = branch.norm(torch.relu(z)).amax(dim=3)
            torch.testing.assert_close(branch(x), expected, atol=1e-5, rtol=1e-5)
            assert z.shape[:3] == (3, 6, 40)  # 'same' in time


def tiny_tagger(tmp_path: Path) -> Path:
    """A tiny musicnn tagger checkpoint, standing in for weights/musicnn-msd.pt."""
    from mgcli.checkpoint import make_checkpoint, save_checkpoint
    from mgcli.models import build

    torch.manual_seed(1)
    network = build("musicnn", head="tags", n_classes=50, pretrained="", freeze="none", **TINY_MUSICNN)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "tagger.pt"
    save_checkpoint(make_checkpoint("musicnn", network, [f"tag{i}" for i in range(50)]), path)
    return path


@pytest.mark.parametrize("freeze", ["body", "front-end"])
def test_frozen_musicnn_trains_on_features_computed_once(tmp_path, tone_dataset, monkeypatch, freeze):
    from mgcli.inference import classify
    from mgcli.training import features as feature_train
    from mgcli.training.datasets import find_tracks, labels_of, split_tracks
    from mgcli.training.config import TrainConfig
    from mgcli.training.loop import fit

    calls = []
    compute = feature_train.track_features
    monkeypatch.setattr(feature_train, "track_features", lambda *a, **k: calls.append(1) or compute(*a, **k))
    tracks = find_tracks(tone_dataset)
    split = split_tracks(tracks, valid_fraction=0.34)
    tagger = tiny_tagger(tmp_path)
    config = TrainConfig(epochs=6, batch_size=8, optimizer="adam", lr=0.01, warmup_epochs=0,
                         feature_hop_seconds=0.5)
    model_name = "musicnn-probe" if freeze == "body" else "musicnn"
    history = fit(model_name, split["train"], split["valid"], labels_of(tracks), tmp_path / "run", config,
                  {**TINY_MUSICNN, "pretrained": "msd"}, "cpu", init_backbone=str(tagger), verbose=False)
    assert len(calls) == 2  # the frozen part ran once for the training clips and once for validation
    assert len(history) == 6 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(m["valid_track_accuracy"] for m in history) >= 0.75

    trained = load_checkpoint(tmp_path / "run" / "last.pt")["state_dict"]
    pretrained = load_checkpoint(tagger)["state_dict"]
    frozen = ("input_norm.", "timbral.", "temporal.") + (("midend.", "dense.", "pool_norm.") if freeze == "body" else ())
    for name, value in pretrained.items():
        if name.startswith(frozen) or "running_" in name:  # frozen weights, and every pretrained statistic
            assert torch.equal(trained[name], value), name
    assert not torch.equal(trained["head.weight"], torch.zeros_like(trained["head.weight"]))
    if freeze == "front-end":
        assert not torch.equal(trained["midend.0.conv.weight"], pretrained["midend.0.conv.weight"])

    from mgcli.inference import load_model

    result = classify(load_model(tmp_path / "run" / "best.pt", "cpu"), split["valid"][0].path)
    assert result.probabilities.sum() == pytest.approx(1, abs=1e-5)


def test_unfrozen_musicnn_trains_end_to_end(tmp_path, tone_dataset):
    from mgcli.training.datasets import find_tracks, labels_of, split_tracks
    from mgcli.training.config import TrainConfig
    from mgcli.training.loop import fit

    tracks = find_tracks(tone_dataset)
    split = split_tracks(tracks, valid_fraction=0.34)
    config = TrainConfig(epochs=2, batch_size=8, optimizer="adam", lr=0.003, warmup_epochs=0, pretrained_lr_scale=0.1)
    history = fit("musicnn", split["train"], split["valid"], labels_of(tracks), tmp_path / "run", config,
                  {**TINY_MUSICNN, "freeze": "none", "pretrained": "msd"}, "cpu",
                  init_backbone=str(tiny_tagger(tmp_path)), verbose=False)
    assert len(history) == 2
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["train"]["optimizer"]
    assert sorted(group["lr_scale"] for group in state["param_groups"]) == [0.1, 1.0]  # pretrained parts slower


def test_front_end_features_are_kept_in_the_dataset_cache(tmp_path, tone_dataset):
    from mgcli.models import build
    from mgcli.training.cache import preprocess, read_cache
    from mgcli.training.datasets import find_tracks
    from mgcli.training.features import FEATURES, track_features

    preprocess(find_tracks(tone_dataset)[:2], tmp_path / "cache")
    tracks = read_cache(tmp_path / "cache")
    torch.manual_seed(0)
    network = build("musicnn", pretrained="", **TINY_MUSICNN).eval()
    first = track_features(network, tracks, 1.0, torch.device("cpu"))
    files = sorted((tmp_path / "cache" / FEATURES).rglob("*.npy"))
    assert len(files) == 2
    with torch.no_grad():  # the cached features are the network's own front-end output
        network.timbral[0].conv.weight.mul_(1.0)
    again = track_features(network, tracks, 1.0, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with torch.no_grad():  # another front end: other features, in a folder of their own
        network.timbral[0].conv.weight.mul_(2.0)
    other = track_features(network, tracks, 1.0, torch.device("cpu"))
    assert not torch.equal(other[0], first[0]) and len(list((tmp_path / "cache" / FEATURES).iterdir())) == 2


def test_ensemble_averages_its_members_probabilities_on_one_front_end(tmp_path):
    from mgcli.checkpoint import make_checkpoint, save_checkpoint
    from mgcli.torch_engine import model_from_checkpoint
    from mgcli.models import build
    from mgcli.models.musicnn import ensemble_of

    torch.manual_seed(0)
    first = build("musicnn", pretrained="", n_classes=3, **TINY_MUSICNN)
    members = [first]
    for seed in (1, 2):
        torch.manual_seed(seed)
        member = build("musicnn", pretrained="", n_classes=3, **TINY_MUSICNN)
        member.load_state_dict({k: v for k, v in first.state_dict().items() if not k.startswith(("head.", "midend."))}, strict=False)
        members.append(member.eval())
    ensemble = ensemble_of([m.eval() for m in members]).eval()
    wave = torch.randn(4, TINY_MUSICNN["clip_samples"])
    with torch.no_grad():
        expected = torch.stack([m(wave).softmax(-1) for m in members]).mean(0)
        torch.testing.assert_close(ensemble(wave).softmax(-1), expected, atol=1e-6, rtol=1e-5)
    save_checkpoint(make_checkpoint("musicnn-ensemble", ensemble, ["a", "b", "c"]), tmp_path / "e.pt")
    loaded = model_from_checkpoint(load_checkpoint(tmp_path / "e.pt"), torch.device("cpu")).network
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave), ensemble(wave))

    torch.manual_seed(3)
    stranger = build("musicnn", pretrained="", n_classes=3, **TINY_MUSICNN).eval()  # another front end
    with pytest.raises(Exception, match="same front end"):
        ensemble_of([members[0], stranger])


def test_mgc_ensemble_joins_checkpoints_and_refuses_others(tmp_path, capsys):
    from mgcli.checkpoint import make_checkpoint, save_checkpoint
    from mgcli.cli import main
    from mgcli.inference import load_model
    from mgcli.models import build

    torch.manual_seed(0)
    first = build("musicnn", pretrained="", n_classes=2, **TINY_MUSICNN)
    paths = []
    for seed in range(3):
        torch.manual_seed(seed)
        member = build("musicnn", pretrained="", n_classes=2, **TINY_MUSICNN)
        member.load_state_dict({k: v for k, v in first.state_dict().items() if not k.startswith("head.")}, strict=False)
        paths.append(tmp_path / f"m{seed}.pt")
        save_checkpoint(make_checkpoint("musicnn", member, ["low", "high"]), paths[-1])
    save_checkpoint(make_checkpoint("bbnn", build("bbnn", n_classes=2), ["low", "high"]), tmp_path / "bbnn.pt")

    def mgc(*argv: str) -> int:
        import sys

        sys.argv = ["mgc", *argv]
        try:
            main()
        except SystemExit as exit:
            return int(exit.code or 0)
        return 0

    assert mgc("ensemble", *map(str, paths), "--out", str(tmp_path / "e.pt")) == 0
    model = load_model(tmp_path / "e.pt", "cpu")
    assert model.name == "musicnn-ensemble" and len(model.network.members) == 3 and model.labels == ["low", "high"]
    assert mgc("ensemble", str(paths[0]), str(tmp_path / "bbnn.pt"), "--out", str(tmp_path / "x.pt")) == 2
    assert "an ensemble is made of musicnn ones" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_mgc_train_musicnn_resumes_an_interrupted_run_to_the_weights_of_an_uninterrupted_one(
    capsys, tmp_path, tone_dataset, monkeypatch, one_thread
):
    """The shipped recipe (musicnn on the shipped tagger, its front end frozen and its output cached),
    stopped by Ctrl-C once its second epoch is saved and resumed, ends where the run that never stopped ends."""
    from test_cli import mgc

    from mgcli.training import loop

    train = ["train", "--data", tone_dataset, "--model", "musicnn", "--epochs", "4", "--warmup-epochs", "1",
             "--optimizer", "adam", "--lr", "0.003", "--batch-size", "8", "--eval-hop", "1.0", "--device", "cpu",
             "--cache", tmp_path / "cache"]  # one cache: later runs read the audio and features the first cached
    assert mgc(capsys, *train, "--out", tmp_path / "whole")[0] == 0

    save_epoch = loop.save_epoch

    def interrupt_after_epoch_2(*args, **kwargs):
        save_epoch(*args, **kwargs)
        if args[4]["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_epoch", interrupt_after_epoch_2)
    assert mgc(capsys, *train, "--out", tmp_path / "parts")[0] == 130
    monkeypatch.setattr(loop, "save_epoch", save_epoch)
    code, _, err = mgc(capsys, *train, "--out", tmp_path / "parts")
    assert code == 2 and "--resume" in err  # a run is never overwritten unasked
    code, _, err = mgc(capsys, *train, "--out", tmp_path / "parts", "--resume")
    assert code == 0 and "resuming" in err and "at epoch 3" in err

    whole, parts = (load_checkpoint(tmp_path / run / "last.pt") for run in ("whole", "parts"))
    assert whole["train"]["epoch"] == parts["train"]["epoch"] == 3
    for key, tensor in whole["state_dict"].items():
        assert torch.equal(tensor, parts["state_dict"][key]), key
    logs = [[{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
            for run in ("whole", "parts")]
    assert len(logs[0]) == 4 and logs[0] == logs[1]
    # The mid end trained (the comparison means something); the frozen front end did not.
    tagger = load_checkpoint(WEIGHTS_DIR / "musicnn-msd.pt")["state_dict"]
    assert not torch.equal(whole["state_dict"]["midend.0.conv.weight"], tagger["midend.0.conv.weight"])
    assert torch.equal(whole["state_dict"]["timbral.0.conv.weight"], tagger["timbral.0.conv.weight"])
