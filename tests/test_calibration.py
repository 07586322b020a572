"""Calibration: the temperature transform, its fit, the figures evaluate reports, and `mgc calibrate` end to end."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import write_tone
from test_cli import mgc, read_rows

from mgcli.calibration import (
    calibrate,
    calibration_report,
    ece_of_a_calibrated_model,
    expected_calibration_error,
    fit_temperature,
    reliability,
)
from mgcli.checkpoint import load_checkpoint, save_checkpoint
from mgcli.export import export_checkpoint
from mgcli.inference import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


def under_confident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of 4 classes, and targets drawn from the same probabilities sharpened at T = 0.5:
    the probabilities are under-confident, and a temperature of 0.5 calibrates them."""
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(4), size=n)
    truth = calibrate(probabilities, 0.5)
    targets = (rng.random((n, 1)) > np.cumsum(truth, axis=1)).sum(axis=1).clip(max=3)
    return probabilities, targets


def test_calibrate_sharpens_or_softens_and_never_moves_the_top_label():
    p = np.array([[0.5, 0.3, 0.2, 0.0], [0.25, 0.25, 0.4, 0.1]])
    assert calibrate(p, 1.0) is p
    for temperature in (0.3, 0.7, 2.0):
        q = calibrate(p, temperature)
        np.testing.assert_allclose(q.sum(axis=1), 1.0)
        assert (q.argmax(axis=1) == p.argmax(axis=1)).all() and q[0, 3] == 0.0
    assert calibrate(p, 0.5)[0, 0] > 0.5 > calibrate(p, 2.0)[0, 0]
    np.testing.assert_allclose(calibrate(p, 0.5)[0, :3], np.array([25, 9, 4]) / 38)  # p squared, normalised


def test_the_fit_finds_the_temperature_that_calibrates():
    probabilities, targets = under_confident(4000)
    temperature = fit_temperature(probabilities, targets)
    assert temperature == pytest.approx(0.5, abs=0.05)
    before = expected_calibration_error(probabilities, targets)
    after = expected_calibration_error(calibrate(probabilities, temperature), targets)
    assert after < 0.03 < before


def test_reliability_and_the_ece_a_calibrated_model_would_show():
    probabilities, targets = under_confident(300, seed=1)
    rows = reliability(probabilities, targets)
    assert len(rows) == 10 and sum(r["count"] for r in rows) == 300
    calibrated = calibrate(probabilities, 0.5)
    floor = ece_of_a_calibrated_model(calibrated)
    assert 0.01 < floor < 0.1  # far from 0 at 300 tracks, even for a perfect model
    report = calibration_report(probabilities, targets, 0.5)
    assert report["ece"] < report["ece_uncalibrated"] and report["nll"] < report["nll_uncalibrated"]
    assert calibration_report(np.zeros((0, 4)), np.zeros(0, dtype=int)) == {"temperature": 1.0}


def test_mgc_calibrate_fits_writes_and_every_command_applies_it(capsys, tone_dataset, trained_run, tmp_path):
    checkpoint = tmp_path / "model.pt"
    shutil.copy(trained_run / "best.pt", checkpoint)
    song = tone_dataset / "low" / "low.00000.wav"
    before = read_probabilities(capsys, song, checkpoint, tmp_path / "before.csv")

    code, out, err = mgc(capsys, "calibrate", checkpoint, "--data", tone_dataset, "--split", "all", "--hop", "0.5")
    assert code == 0, err
    assert "mean_prob" in out and "written" in out
    temperatures = load_checkpoint(checkpoint)["temperatures"]
    assert set(temperatures) == {"mean_prob", "vote", "mean_logit"} and all(t > 0 for t in temperatures.values())

    after = read_probabilities(capsys, song, checkpoint, tmp_path / "after.csv")
    np.testing.assert_allclose(after, calibrate(before, temperatures["mean_prob"]), atol=2e-4)  # the CSV's 4 decimals
    assert after.argmax() == before.argmax()

    code, out, _ = mgc(capsys, "evaluate", "--data", tone_dataset, "--weights", checkpoint, "--hop", "0.5")
    assert code == 0 and "ECE" in out and "reliability" in out

    export_checkpoint(checkpoint, "onnx", checkpoint.with_suffix(".onnx"))
    assert load_model(checkpoint, "cpu").temperatures == pytest.approx(temperatures)  # the ONNX twin carries them

    copy = tmp_path / "copy.pt"
    shutil.copy(trained_run / "best.pt", copy)
    code, _, err = mgc(capsys, "calibrate", copy, "--copy-from", checkpoint)
    assert code == 0, err
    assert load_checkpoint(copy)["temperatures"] == temperatures


def read_probabilities(capsys, song, checkpoint, csv) -> np.ndarray:
    code, _, err = mgc(capsys, "predict", song, "--weights", checkpoint, "--hop", "0.5", "--csv", csv, "--engine", "torch")
    assert code == 0, err
    [row] = read_rows(csv)
    return np.array([float(row["high"]), float(row["low"])])


@pytest.mark.parametrize("args, message", [
    ([], "give --data"),
    (["--copy-from", "UNCALIBRATED"], "not calibrated"),
    (["--data", "DATA", "--split", "holdout"], "unknown split 'holdout'"),
])
def test_calibrate_refuses_in_one_line(capsys, tone_dataset, trained_run, tmp_path, args, message):
    args = [str(tone_dataset) if a == "DATA" else str(trained_run / "last.pt") if a == "UNCALIBRATED" else a for a in args]
    code, _, err = mgc(capsys, "calibrate", trained_run / "best.pt", "--out", tmp_path / "x.pt", *args)
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


def test_damaged_temperatures_are_refused(capsys, trained_run, tmp_path):
    checkpoint = load_checkpoint(trained_run / "best.pt")
    checkpoint["temperatures"] = {"mean_prob": -1.0}
    save_checkpoint(checkpoint, tmp_path / "bad.pt")
    code, _, err = mgc(capsys, "predict", write_tone(tmp_path / "s.wav", 300, 1.0), "--weights", tmp_path / "bad.pt")
    assert code == 2 and "temperatures are damaged" in err
