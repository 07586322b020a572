"""Training, checkpoints and evaluation on generated tones with a tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY

from mgcli import MgcError
from mgcli.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from mgcli.inference import load_model
from mgcli.models import build
from mgcli.training.cache import preprocess, read_cache
from mgcli.training.datasets import find_tracks, labels_of, split_tracks
from mgcli.training.evaluate import classification_report, evaluate_tracks
from mgcli.training.config import TrainConfig, learning_rate
from mgcli.training.loop import fit


def test_two_separable_classes_are_learnt(trained_run, tone_dataset):
    history = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    assert len(history) == 10
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    model = load_model(trained_run / "best.pt", "cpu")
    report = evaluate_tracks(model, find_tracks(tone_dataset), hop_seconds=0.5)
    assert report["track"]["accuracy"] >= 0.9
    assert report["clip"]["accuracy"] >= 0.8


def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path):
    network = build("ms-sincresnet", **TINY, n_classes=3).eval()
    save_checkpoint(make_checkpoint("ms-sincresnet", network, ["a", "b", "c"]), tmp_path / "m.pt")
    model = load_model(tmp_path / "m.pt", "cpu")
    assert model.labels == ["a", "b", "c"] and model.clip_samples == TINY["clip_samples"]
    x = torch.randn(2, TINY["clip_samples"])
    with torch.no_grad():  # loaded networks run channels-last: the same numbers up to float rounding
        torch.testing.assert_close(model.network(x), network(x), atol=1e-5, rtol=0)
    assert set(load_checkpoint(tmp_path / "m.pt")) >= {"model", "config", "labels", "audio", "state_dict"}


def test_bad_checkpoints_give_clear_errors(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    network = build("ms-sincresnet", **TINY, n_classes=2)
    checkpoint = make_checkpoint("ms-sincresnet", network, ["a", "b"])
    checkpoint["state_dict"] = build("resnet-mel", backbone_width=8, n_mels=32).state_dict()  # another model's
    save_checkpoint(checkpoint, tmp_path / "mixed.pt")
    cases = {
        tmp_path / "missing.pt": "no such checkpoint",
        tmp_path / "text.pt": "not a checkpoint",
        tmp_path / "other.pt": "not an mgcli checkpoint",
        tmp_path / "mixed.pt": "do not fit model 'ms-sincresnet'",
    }
    for path, message in cases.items():
        with pytest.raises(MgcError, match=message):
            load_model(path, "cpu")


def test_paper_schedule_warms_up_then_halves():
    config = TrainConfig()
    assert [learning_rate(config, e) for e in (0, 4, 5, 34, 35, 65)] == [1e-5, 1e-5, 0.005, 0.005, 0.0025, 0.00125]


def test_cosine_schedule_warms_up_then_decays_towards_zero():
    config = TrainConfig(epochs=12, warmup_epochs=2, schedule="cosine")
    rates = [learning_rate(config, e) for e in range(12)]
    assert rates[:2] == [1e-5, 1e-5] and rates[2] == pytest.approx(0.005) and rates[7] == pytest.approx(0.0025)
    assert all(a > b for a, b in zip(rates[2:], rates[3:])) and rates[-1] < 0.0005


def test_unknown_recipe_choices_are_refused_before_training():
    for field in ("schedule", "balance", "optimizer"):
        with pytest.raises(MgcError, match=f"unknown {field}"):
            TrainConfig(**{field: "bogus"})


def test_resume_equals_an_uninterrupted_run(tone_dataset, tmp_path):
    preprocess(find_tracks(tone_dataset), tmp_path / "cache")
    tracks = read_cache(tmp_path / "cache")
    split = split_tracks(tracks, valid_fraction=0.34)
    labels = labels_of(tracks)
    config = TrainConfig(epochs=3, batch_size=8, warmup_epochs=1, lr=0.01, clips_per_track=2, eval_hop_seconds=1.0)
    args = ("ms-sincresnet", split["train"], split["valid"], labels)
    fit(*args, tmp_path / "whole", config, TINY, "cpu", verbose=False)
    fit(*args, tmp_path / "parts", TrainConfig(**{**config.__dict__, "epochs": 2}), TINY, "cpu", verbose=False)
    with pytest.raises(MgcError, match="--resume"):
        fit(*args, tmp_path / "parts", config, TINY, "cpu", verbose=False)
    fit(*args, tmp_path / "parts", config, TINY, "cpu", resume=True, verbose=False)
    whole = load_checkpoint(tmp_path / "whole" / "last.pt")
    parts = load_checkpoint(tmp_path / "parts" / "last.pt")
    assert whole["train"]["epoch"] == parts["train"]["epoch"] == 2
    for key, tensor in whole["state_dict"].items():
        assert torch.equal(tensor, parts["state_dict"][key]), key
    assert (tmp_path / "parts" / "log.jsonl").read_text().count("\n") == 3


def test_classification_report_counts():
    report = classification_report([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    a, b, c = report["per_class"]
    assert (a["precision"], a["recall"]) == (0.5, 0.5)
    assert b["precision"] == pytest.approx(2 / 3) and b["recall"] == 1.0
    assert c["f1"] == 0.0 and c["support"] == 1
    assert report["macro"]["recall"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_batchnorm_recalibration_measures_the_data_the_weights_see():
    from torch import nn

    from mgcli.training.loop import recalibrate_batchnorm

    network = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    network[1].running_mean.fill_(100.0)  # stale statistics from weights long gone
    data = [(torch.randn(8, 4) + 2.0, torch.zeros(8)) for _ in range(5)]
    recalibrate_batchnorm(network, data, torch.device("cpu"), max_batches=4)
    with torch.no_grad():
        features = network[0](torch.cat([x for x, _ in data[:4]]))
    torch.testing.assert_close(network[1].running_mean, features.mean(0))
    assert network[1].momentum == 0.1  # restored for training


def test_a_last_batch_of_one_clip_is_dropped_not_crashed_on(tone_dataset, tmp_path):
    # mel-linear has BatchNorm after its pooling: a training batch of one clip has no variance.
    tracks = find_tracks(tone_dataset)
    split = split_tracks(tracks, valid_fraction=0.34)
    config = TrainConfig(epochs=1, batch_size=len(split["train"]) - 1, clips_per_track=1, warmup_epochs=0)
    history = fit("mel-linear", split["train"], split["valid"], labels_of(tracks), tmp_path, config,
                  {"n_mels": 16, "clip_samples": 8000}, "cpu", verbose=False)
    assert len(history) == 1


def test_clip_loss_is_cross_entropy_and_smooths_towards_uniform_not_towards_heavy_classes():
    from mgcli.training.loop import clip_loss

    logits, targets = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    truths = torch.nn.functional.one_hot(targets, 4).bool()
    weights = torch.tensor([1.0, 2.0, 0.5, 20.0])
    expected = torch.nn.functional.cross_entropy(logits, targets, weight=weights)
    assert clip_loss(logits, truths, weights[targets], 0.0).item() == pytest.approx(expected.item(), rel=1e-6)
    assert clip_loss(logits, truths, None, 0.1).item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.1).item(), rel=1e-6
    )
    # a clip of class 0 predicted as class 0: smoothing must not reward moving mass to heavy class 3
    confident = torch.tensor([[4.0, 0.0, 0.0, 0.0]])
    tilted = torch.tensor([[4.0, 0.0, 0.0, 2.0]])
    truth = torch.tensor([[True, False, False, False]])
    assert clip_loss(tilted, truth, weights[:1], 0.1) > clip_loss(confident, truth, weights[:1], 0.1)


def test_a_set_label_is_taught_as_one_of_its_genres_on_their_summed_probability():
    from mgcli.training.loop import clip_loss

    logits = torch.tensor([[0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    pop_or_rock = torch.tensor([[False, True, True, False]] * 3)
    summed = logits.softmax(1)[:, 1:3].sum(1)
    assert clip_loss(logits, pop_or_rock, None, 0.0).item() == pytest.approx(-summed.log().mean().item(), rel=1e-6)
    # either genre of the set is as good an answer as the other; a genre outside it is not
    each = [clip_loss(logits[i : i + 1], pop_or_rock[:1], None, 0.0).item() for i in range(3)]
    assert each[0] == pytest.approx(each[1]) and each[2] > each[0] + 2
