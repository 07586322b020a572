"""Every subcommand end to end, as a user runs them, on generated tones and a tiny model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_SETS, make_tone_dataset, write_tone
from test_data import make_mid_dataset
from test_models import TINY, TINY_CLIP

from mgcli.cli import main


def mgc(capsys, *args: str) -> tuple[int, str, str]:
    """Run `mgc ARGS` in this process; returns (exit code, stdout, stderr)."""
    argv, sys.argv = sys.argv, ["mgc", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_preprocess_train_evaluate_predict(capsys, tone_dataset, tmp_path):
    code, out, _ = mgc(capsys, "preprocess", tone_dataset, "--out", tmp_path / "cache")
    assert code == 0 and "12 tracks decoded" in out

    run = tmp_path / "run"
    train = ["train", "--data", tmp_path / "cache", "--out", run, "--epochs", "2", "--warmup-epochs", "0",
             "--lr", "0.01", "--batch-size", "8", "--eval-hop", "0.5", "--device", "cpu", *TINY_SETS]
    code, _, err = mgc(capsys, *train)
    assert code == 0, err
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    code, _, err = mgc(capsys, *train[:5], "--epochs", "3", *train[7:], "--resume")
    assert code == 0 and "resuming" in err
    assert len((run / "log.jsonl").read_text().splitlines()) == 3

    code, out, _ = mgc(capsys, "evaluate", "--data", tone_dataset, "--weights", run / "last.pt",
                       "--hop", "0.5", "--json", tmp_path / "eval.json")
    assert code == 0 and "clip accuracy" in out and "confusion" in out
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["labels"] == ["high", "low"] and report["track"]["count"] == 12
    assert sum(map(sum, report["track"]["confusion"])) == 12

    code, out, _ = mgc(capsys, "predict", tone_dataset / "low" / "low.00000.wav", "--weights", run / "last.pt", "--top-k", "2")
    assert code == 0 and "low" in out and "high" in out

    code, out, err = mgc(capsys, "predict", tone_dataset, "--weights", run / "last.pt", "--json", tmp_path / "p.json")
    assert code == 0 and "tagged 12 files, 0 failed" in err
    results = json.loads((tmp_path / "p.json").read_text())
    assert len(results) == 12 and sum(results[0]["probabilities"].values()) == pytest.approx(1, abs=1e-3)


def test_train_and_evaluate_on_two_datasets_each_with_its_split_file(capsys, tmp_path, one_thread):
    tones, other = make_tone_dataset(tmp_path / "tones", per_class=3, seconds=1.0), make_mid_dataset(tmp_path / "other")
    tone_split, other_split = tmp_path / "tones.csv", tmp_path / "other.csv"
    # Each dataset's first track of each genre is for validation.
    tone_split.write_text("path,split\n" + "".join(
        f"{g}/{g}.0000{i}.wav,{'train' if i else 'valid'}\n" for g in ("low", "high") for i in range(3)))
    other_split.write_text("path,split\n" + "".join(
        f"{g}/other.{g}.{i}.wav,{'train' if i else 'valid'}\n" for g in ("low", "mid") for i in range(3)))
    both = ["--data", tones, "--split-file", tone_split, "--data", other, "--split-file", other_split]
    run = tmp_path / "run"
    code, _, err = mgc(capsys, "train", *both, "--out", run, "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "8",
                       "--eval-hop", "1.0", "--device", "cpu", *TINY_SETS)
    assert code == 0, err
    assert "train: 8 tracks (high 2, low 4, mid 2)" in err and "valid: 4 tracks (high 1, low 2, mid 1)" in err
    assert (run / "cache-1" / "index.json").is_file() and (run / "cache-2" / "index.json").is_file()

    code, out, err = mgc(capsys, "evaluate", *both, "--split", "valid", "--weights", run / "best.pt", "--hop", "1.0",
                         "--json", tmp_path / "e.json")
    assert code == 0, err
    assert f"on {tones} (valid)" in out and f"on {other} (valid)" in out and f"on {tones} + {other} (valid)" in out
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["data"] == [str(tones), str(other)] and report["labels"] == ["high", "low", "mid"]
    assert report["track"]["count"] == 4 and [d["track"]["count"] for d in report["datasets"].values()] == [2, 2]

    code, _, err = mgc(capsys, "evaluate", "--data", tones, "--data", other, "--split-file", tone_split, "--weights", run / "best.pt")
    assert code == 2 and "2 datasets and 1 split files" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["samplecnn", "samplecnn-mlms", "bbnn", "broadcast", "multi-input", "mel-linear"])
def test_every_new_model_trains_and_predicts(capsys, tone_dataset, tmp_path, one_thread, name):
    config = {"clip_samples": TINY_CLIP, **TINY[name]}
    sets = [arg for key, value in config.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    run = tmp_path / "run"
    train = ["train", "--data", tone_dataset, "--out", run, "--model", name, "--epochs", "1", "--warmup-epochs", "0",
             "--lr", "0.01", "--batch-size", "8", "--device", "cpu", *sets]
    code, _, err = mgc(capsys, *train)
    assert code == 0, err
    code, out, err = mgc(capsys, "predict", tone_dataset / "low" / "low.00000.wav", "--weights", run / "best.pt")
    assert code == 0 and "low" in out, err


def test_predict_folder_to_csv_goes_past_bad_files_and_resumes(capsys, trained_run, tone_dataset, tmp_path):
    music = tmp_path / "music"
    for i in range(3):
        write_tone(music / f"song{i}.flac", 300 + 1000 * i, 1.5, format="FLAC")
    (music / "broken.mp3").write_text("not really an mp3")
    (music / "cover.jpg").write_bytes(b"\xff\xd8")  # not audio by name: not picked up
    weights = trained_run / "best.pt"
    tags = tmp_path / "tags.csv"

    code, _, err = mgc(capsys, "predict", music, "--weights", weights, "--csv", tags)
    assert code == 1 and "broken.mp3" in err and "tagged 3 files, 1 failed" in err
    rows = read_rows(tags)
    assert list(rows[0]) == ["path", "genre", "probability", "high", "low", "error", "warning", "novelty"]
    assert len(rows) == 4
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("broken.mp3") and not bad[0]["genre"]
    for row in rows:
        if not row["error"]:
            assert row["genre"] in ("high", "low")
            assert float(row["high"]) + float(row["low"]) == pytest.approx(1, abs=1e-3)
            assert float(row["probability"]) == max(float(row["high"]), float(row["low"]))

    code, _, err = mgc(capsys, "predict", music, "--weights", weights, "--csv", tags)
    assert code == 2 and "--skip-existing" in err  # an existing CSV is never clobbered by accident

    # An interrupted run: the last line is torn. Resuming keeps the good rows, redoes the rest.
    good = [r for r in rows if not r["error"]]
    with open(tags, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "genre", "probability", "high", "low", "error", "warning", "novelty"])
        writer.writerow(list(good[0].values()))
        f.write(good[1]["path"] + ",lo")
    (music / "broken.mp3").unlink()
    code, _, err = mgc(capsys, "predict", music, "--weights", weights, "--csv", tags, "--skip-existing")
    assert code == 0 and "skipping 1 files" in err
    rows = read_rows(tags)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in music.glob("*.flac"))
    assert all(r["genre"] and not r["error"] for r in rows)


def test_crossval_trains_every_fold_and_warns_about_random_folds(capsys, tone_dataset, tmp_path):
    code, out, _ = mgc(capsys, "crossval", "--data", tone_dataset, "--out", tmp_path / "cv", "--folds", "2",
                       "--epochs", "1", "--warmup-epochs", "0", "--device", "cpu", *TINY_SETS)
    assert code == 0 and "mean ± std" in out and "artists" in out
    report = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert [f["fold"] for f in report["folds"]] == [0, 1]
    assert sum(f["tracks"] for f in report["folds"]) == 12


def test_models_lists_the_zoo(capsys):
    code, out, _ = mgc(capsys, "models")
    assert code == 0
    for name in TINY:  # one entry per registered model
        assert name in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "x.wav", "--weights", "missing.pt"], "no such checkpoint"),
        (["predict", "."], "no audio files found"),
        (["train", "--data", "no-such-data", "--out", "r"], "no such dataset"),
        (["train", "--data", "DATA", "--out", "r", "--model", "nope"], "unknown model 'nope'"),
        (["train", "--data", "no-such-data", "--out", "r", "--model", "samplecnn", "--set", "clip_samples=100"], "too short"),
        (["evaluate", "--data", "DATA", "--weights", "DATA/low/low.00000.wav"], "not a checkpoint"),
        (["predict", "DATA", "--weights", "W", "--aggregate", "median"], "unknown aggregation"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(capsys, args, message, tone_dataset, trained_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [str(a).replace("DATA", str(tone_dataset)).replace("W", str(trained_run / "best.pt")) if a in ("DATA", "W") or a.startswith("DATA/") else a for a in args]
    code, out, err = mgc(capsys, *args)
    assert code == 2 and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_file_is_a_failed_row_not_a_crash(capsys, trained_run, tmp_path):
    code, _, err = mgc(capsys, "predict", tmp_path / "gone.mp3", "--weights", trained_run / "best.pt")
    assert code == 1 and "gone.mp3: no such file" in err


def test_the_installed_command_starts_without_torch():
    probe = "import sys, mgcli.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0
    result = subprocess.run([sys.executable, "-m", "mgcli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "predict" in result.stdout
