"""Numbers training cannot use are refused before anything is written, and a run whose loss or
weights stop being finite stops at once, keeping the last good epoch (issue 24, item 14)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_SETS
from test_bad_input import refused
from test_cli import mgc

from mgcli.checkpoint import load_checkpoint


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--lr", "-1", "lr must be above 0; got -1.0"),
        ("--lr", "0", "lr must be above 0; got 0.0"),
        ("--lr", "inf", "lr must be a finite number; got inf"),
        ("--lr", "nan", "lr must be a finite number; got nan"),
        ("--workers", "-1", "workers must be at least 0; got -1"),
        ("--seed", "-5", "seed must be at least 0; got -5"),
        ("--seed", str(2**32), "seed must be at most 4294967295; got 4294967296"),
        ("--warmup-epochs", "-1", "warmup_epochs must be at least 0; got -1"),
        ("--pretrained-lr-scale", "inf", "pretrained_lr_scale must be a finite number; got inf"),
        ("--feature-hop", "inf", "hop must be a finite number of seconds, at least 0.05 and at most 86,400; got inf"),
    ],
)
def test_a_number_training_cannot_use_is_refused_before_anything_is_written(
    capsys, tone_dataset, tmp_path, option, value, message
):
    for command in ("train", "crossval"):
        if command == "crossval" and option in ("--workers", "--pretrained-lr-scale", "--feature-hop"):
            continue  # options of train alone
        result = mgc(capsys, command, "--data", tone_dataset, "--out", tmp_path / "run", option, value, *TINY_SETS)
        assert refused(result, message) == f"error: {message}"
        assert len(result[2].strip().splitlines()) == 1
        assert not (tmp_path / "run").exists()  # not even the cache of decoded audio


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"mix_prob": float("nan")}, "mix_prob must be a finite number"),  # the CLI's own range check refuses these
        ({"label_smoothing": 1.5}, "label_smoothing must be at most 1"),
        ({"momentum": -0.1}, "momentum must be at least 0"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"warmup_lr": 0.0}, "warmup_lr must be above 0"),
    ],
)
def test_the_library_refuses_the_same_numbers(setting, message):
    from mgcli import MgcError
    from mgcli.training.config import TrainConfig

    with pytest.raises(MgcError, match=message):
        TrainConfig(**setting)


def test_a_diverging_run_stops_at_its_first_non_finite_loss_and_keeps_the_last_good_epoch(
    capsys, tone_dataset, tmp_path, one_thread
):
    # Epoch 1 warms up at 1e-5; epoch 2's rate of 1e10 throws the weights so far that the loss is NaN within steps.
    run = tmp_path / "run"
    result = mgc(capsys, "train", "--data", tone_dataset, "--out", run, "--epochs", "3", "--warmup-epochs", "1",
                 "--lr", "1e10", "--batch-size", "4", "--eval-hop", "1.0", "--device", "cpu", *TINY_SETS)
    line = refused(result, "training diverged")
    assert line.startswith("error: training diverged in epoch 2: the loss became nan")
    assert "done:" not in result[1]
    last = load_checkpoint(run / "last.pt")
    assert last["train"]["epoch"] == 0  # epoch 1, the last good one
    assert all(tensor.isfinite().all() for tensor in last["state_dict"].values() if tensor.is_floating_point())
    assert all(tensor.isfinite().all() for tensor in load_checkpoint(run / "best.pt")["state_dict"].values()
               if tensor.is_floating_point())
    assert [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()] == [1]


def test_weights_left_non_finite_by_a_finite_loss_are_not_saved(tone_dataset, tmp_path, monkeypatch, one_thread):
    # A last step can overflow the weights while the loss it came from was finite: that epoch must not be saved.
    from conftest import TINY

    from mgcli import MgcError
    from mgcli.training import loop
    from mgcli.training.config import TrainConfig
    from mgcli.training.datasets import find_tracks, labels_of, split_tracks

    validate, epochs = loop.validate, []

    def overflow_after_epoch_2(source, *args, **kwargs):
        epochs.append(len(epochs) + 1)
        if epochs[-1] == 2:  # as if the epoch's last step had overflowed
            with torch.no_grad():
                next(source.module.parameters()).fill_(float("inf"))
        return validate(source, *args, **kwargs)

    monkeypatch.setattr(loop, "validate", overflow_after_epoch_2)
    tracks = find_tracks(tone_dataset)
    split = split_tracks(tracks, valid_fraction=0.34)
    config = TrainConfig(epochs=3, batch_size=4, warmup_epochs=0, lr=0.01, eval_hop_seconds=1.0)
    with pytest.raises(MgcError, match="training diverged in epoch 2: the weights became NaN or infinite"):
        loop.fit("ms-sincresnet", split["train"], split["valid"], labels_of(tracks), tmp_path, config, TINY, "cpu",
                 verbose=False)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["train"]["epoch"] == 0
    assert all(tensor.isfinite().all() for tensor in last["state_dict"].values() if tensor.is_floating_point())
