"""Bad input and faults, as a demanding user meets them: no hang, no traceback, nothing lost.

Each case checks the exit code (0 done, 1 some files failed, 2 refused before any work),
that stderr holds no traceback and names the problem in one line, and that no finished
row is lost. Everything is made on the fly: seconds of audio and an untrained tiny model.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY, TINY_SETS, write_tone
from test_cli import mgc, read_rows

from mgcli.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from mgcli.models import build
from mgcli.shipped import WEIGHTS_DIR


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """An untrained tiny model: these cases need answers, not good ones."""
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_checkpoint(make_checkpoint("ms-sincresnet", build("ms-sincresnet", **TINY, n_classes=2), ["high", "low"]), path)
    return path


@pytest.fixture
def song(tmp_path) -> Path:
    return write_tone(tmp_path / "song.wav", 440, 1.0)


def refused(result: tuple[int, str, str], message: str, code: int = 2) -> str:
    """Check a run's exit code, that stderr has no traceback, and that one line of it names the problem."""
    exit_code, _, err = result
    assert exit_code == code, err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if message in line]
    return line


@contextlib.contextmanager
def time_limit(seconds: int):
    """Turn a hang into a failure."""
    def hang(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- 1. symlink loops


def test_a_symlink_loop_ends_and_each_file_is_tagged_once(capsys, weights, tmp_path, one_thread):
    music = tmp_path / "d"
    write_tone(music / "a" / "x.wav", 300, 1.0)
    (music / "a" / "loop").symlink_to("..", target_is_directory=True)
    (music / "b").symlink_to("a", target_is_directory=True)  # the same folder under a second name
    with time_limit(60):
        code, _, err = mgc(capsys, "predict", music, "--weights", weights, "--csv", tmp_path / "out.csv")
    assert code == 0 and "Traceback" not in err
    assert [row["path"] for row in read_rows(tmp_path / "out.csv")] == [str(music / "a" / "x.wav")]


# ---------------------------------------------------------------- 2. Rich markup in names


def test_file_names_are_printed_as_they_are_not_read_as_markup(capsys, weights, tmp_path, one_thread):
    music = tmp_path / "music"
    names = ["Björk [live] (1).wav", "odd [/live].wav"]  # the second is live].wav in a folder "odd ["
    for i, name in enumerate(names):
        write_tone(music / name, 300 + 2000 * i, 1.0)
    (music / "broken [").mkdir()
    (music / "broken [/b].mp3").write_text("not audio")
    result = mgc(capsys, "predict", music, "--weights", weights, "--json", tmp_path / "tags.json")
    line = refused(result, "broken [/b].mp3", code=1)  # one file failed; the others were tagged
    assert line.startswith("failed:")
    assert all(name in result[1] for name in names)
    records = json.loads((tmp_path / "tags.json").read_text())
    assert sorted(Path(r["path"]).relative_to(music).as_posix() for r in records) == sorted([*names, "broken [/b].mp3"])

    code, out, err = mgc(capsys, "predict", music / names[0], "--weights", weights)
    assert code == 0 and names[0] in out, err
    line = refused(mgc(capsys, "predict", music / names[0], "--weights", tmp_path / "gone [/x].pt"), "gone [/x].pt")
    assert line == f"error: {tmp_path / 'gone [/x].pt'}: no such checkpoint"


# ---------------------------------------------------------------- 3. outputs that cannot be written


@pytest.mark.parametrize(
    "option, target, message",
    [
        ("--csv", "folder", "is a folder"),
        ("--json", "folder", "is a folder"),
        ("--json", "file/tags.json", "is a file, not a folder"),
        ("--timeline-csv", "file/clips.csv", "is a file, not a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(capsys, weights, song, tmp_path, option, target, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("a file")
    tags = tmp_path / "tags.csv"
    assert mgc(capsys, "predict", song, "--weights", weights, "--csv", tags)[0] == 0
    finished = tags.read_bytes()
    args = ["--csv", tags, "--skip-existing"] if option == "--json" else []  # --json: a resume that would lose its JSON
    result = mgc(capsys, "predict", song, "--weights", weights, *args, option, tmp_path / target)
    refused(result, message)
    assert len(result[2].strip().splitlines()) == 1
    assert tags.read_bytes() == finished  # the earlier run's rows are untouched


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "DATA", "--out", "file", *TINY_SETS], "is a file, not a folder"),
        (["crossval", "--data", "DATA", "--out", "file", *TINY_SETS], "is a file, not a folder"),
        (["preprocess", "DATA", "--out", "file"], "is a file, not a folder"),
        (["evaluate", "--data", "DATA", "--weights", "W", "--json", "folder"], "is a folder"),
        (["export", "W", "--format", "torchscript", "--out", "folder"], "is a folder"),
    ],
)
def test_every_command_checks_its_outputs_first(capsys, weights, tone_dataset, tmp_path, args, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("a file")
    places = {"DATA": tone_dataset, "W": weights, "file": tmp_path / "file", "folder": tmp_path / "folder"}
    result = mgc(capsys, *[places.get(a, a) for a in args])
    refused(result, message)
    assert len(result[2].strip().splitlines()) == 1


def without_root_powers(command: list) -> list:
    """`command`, run so that a read-only folder is read-only: root writes anywhere unless it drops that power."""
    if os.geteuid() != 0:
        return command
    setpriv = ["setpriv", "--bounding-set=-dac_override", "--"]
    if not shutil.which("setpriv") or subprocess.run([*setpriv, "true"]).returncode:
        pytest.skip("running as root, and setpriv cannot drop the power to write anywhere")
    return [*setpriv, *command]


def test_a_read_only_folder_is_refused_before_any_work(weights, song, tone_dataset, tmp_path):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        for args in (
            ["predict", song, "--weights", weights, "--csv", read_only / "tags.csv"],
            ["train", "--data", tone_dataset, "--out", read_only / "run", *TINY_SETS],
        ):
            command = without_root_powers([sys.executable, "-m", "mgcli", *map(str, args)])
            result = subprocess.run(command, capture_output=True, text=True, timeout=300)
            assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
            [line] = result.stderr.strip().splitlines()
            assert line.startswith(f"error: {read_only}") and line.endswith(": cannot write there (Permission denied)")
        assert not any(read_only.iterdir())
    finally:
        read_only.chmod(0o755)


# ---------------------------------------------------------------- 4. damaged checkpoints


def test_a_damaged_checkpoint_is_refused_and_the_shipped_ones_load(capsys, song, tmp_path):
    data = bytearray((WEIGHTS_DIR / "default.pt").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
    (tmp_path / "default.pt").write_bytes(data)
    result = mgc(capsys, "predict", song, "--weights", tmp_path / "default.pt")
    refused(result, "damaged checkpoint")
    assert len(result[2].strip().splitlines()) == 1
    for name in ("default.pt", "default-train-only.pt"):  # written before the check: they pass it
        assert len(load_checkpoint(WEIGHTS_DIR / name)["labels"]) == 10


# ---------------------------------------------------------------- 5. labels against outputs


@pytest.mark.parametrize("n_labels", [5, 12])
def test_labels_that_do_not_match_the_outputs_are_refused(capsys, song, tmp_path, n_labels):
    network = build("ms-sincresnet", **TINY, n_classes=10)
    save_checkpoint(make_checkpoint("ms-sincresnet", network, [f"genre{i}" for i in range(n_labels)]), tmp_path / "m.pt")
    result = mgc(capsys, "predict", song, "--weights", tmp_path / "m.pt", "--csv", tmp_path / "tags.csv")
    refused(result, f"{n_labels} labels for a model with 10 outputs")
    assert not (tmp_path / "tags.csv").exists()


# ---------------------------------------------------------------- 6. hops


@pytest.mark.parametrize("hop", ["inf", "nan", "1e-9", "0", "-1"])
def test_a_hop_that_would_crash_or_hang_is_refused(capsys, weights, song, tone_dataset, tmp_path, hop):
    for args in (
        ["predict", song, "--weights", weights, "--hop", hop, "--csv", tmp_path / "tags.csv"],
        ["evaluate", "--data", tone_dataset, "--weights", weights, "--hop", hop],
        ["train", "--data", tone_dataset, "--out", tmp_path / "run", "--eval-hop", hop, *TINY_SETS],
    ):
        refused(mgc(capsys, *args), "hop must be a finite number of seconds, at least 0.05")
    assert not (tmp_path / "tags.csv").exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 7. classes to train on


def test_training_on_one_genre_is_refused(capsys, tmp_path):
    for i in range(3):
        write_tone(tmp_path / "data" / "rock" / f"rock.{i}.wav", 300 + 50 * i, 1.0, seed=i)
    result = mgc(capsys, "train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--device", "cpu", *TINY_SETS)
    assert refused(result, "training needs at least 2 classes").startswith("error:")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_thin_classes_are_named_in_a_warning(capsys, tmp_path, one_thread):
    for label, count, freq in (("low", 6, 300), ("high", 2, 3000)):
        for i in range(count):
            write_tone(tmp_path / "data" / label / f"{label}.{i}.wav", freq + 20 * i, 1.0, seed=i)
    result = mgc(capsys, "train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--epochs", "1",
                 "--warmup-epochs", "0", "--batch-size", "8", "--eval-hop", "0.5", "--device", "cpu", *TINY_SETS)
    line = refused(result, "fewer than 5 training tracks", code=0)
    assert line.startswith("warning:") and line.endswith(": high 1")  # low has 5: enough
    assert (tmp_path / "run" / "best.pt").is_file()


# ---------------------------------------------------------------- 8. split files


def test_a_missing_split_file_is_refused_and_missing_tracks_are_named(capsys, weights, tone_dataset, tmp_path, one_thread):
    gone = tmp_path / "none.csv"
    for args in (["evaluate", "--data", tone_dataset, "--weights", weights], ["train", "--data", tone_dataset, "--out", tmp_path / "run"]):
        result = mgc(capsys, *args, "--split-file", gone)
        refused(result, f"{gone}: no such split file")
        assert len(result[2].strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before any decoding

    split_file = tmp_path / "splits.csv"
    split_file.write_text(
        "path,split\nlow/low.00000.wav,test\nhigh/high.00000.wav,test\nlow/gone.wav,test\nhigh/lost.wav,train\n"
    )
    result = mgc(capsys, "evaluate", "--data", tone_dataset, "--weights", weights, "--split-file", split_file,
                 "--hop", "0.5", "--json", tmp_path / "eval.json")
    line = refused(result, "low/gone.wav", code=0)
    assert line.startswith("warning:") and "1 test track" in line and "lost.wav" not in line  # the test split only
    assert json.loads((tmp_path / "eval.json").read_text())["track"]["count"] == 2


# ---------------------------------------------------------------- 9. resuming under another spelling


def test_a_resume_under_another_spelling_of_the_path_tags_no_file_twice(capsys, weights, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    for i in range(3):
        write_tone(tmp_path / "d13" / f"song{i}.wav", 300 + 1000 * i, 1.0)
    assert mgc(capsys, "predict", "d13", "--weights", weights, "--csv", "out.csv")[0] == 0
    finished = read_rows(tmp_path / "out.csv")[:2]
    with open("out.csv") as f:
        lines = f.readlines()
    Path("out.csv").write_text("".join(lines[:3]))  # interrupted: two rows finished

    line = refused(mgc(capsys, "predict", tmp_path / "d13", "--weights", weights, "--csv", "out.csv", "--skip-existing"), "skipping", code=0)
    assert "skipping 2 files" in line
    (tmp_path / "link").symlink_to("d13", target_is_directory=True)
    line = refused(mgc(capsys, "predict", "link", "--weights", weights, "--csv", "out.csv", "--skip-existing"), "skipping", code=0)
    assert "skipping 3 files" in line
    rows = read_rows(tmp_path / "out.csv")
    assert sorted(os.path.realpath(row["path"]) for row in rows) == sorted(str(p.resolve()) for p in (tmp_path / "d13").iterdir())
    assert rows[:2] == finished


def test_a_csv_written_before_the_warning_and_novelty_columns_resumes(capsys, weights, tmp_path, one_thread):
    music = tmp_path / "music"
    songs = [write_tone(music / f"song{i}.wav", 300 + 1000 * i, 1.0) for i in range(2)]
    tags = tmp_path / "tags.csv"
    assert mgc(capsys, "predict", songs[0], "--weights", weights, "--csv", tags)[0] == 0
    [finished] = read_rows(tags)
    with open(tags, "w", newline="") as f:  # mgcli 0.1.0's columns; the first song finished (by this model: see issue 30)
        csv.writer(f).writerows([["path", "genre", "probability", "high", "low", "error"], list(finished.values())[:6]])
    line = refused(mgc(capsys, "predict", music, "--weights", weights, "--csv", tags, "--skip-existing"), "skipping", code=0)
    assert "skipping 1 files" in line
    rows = read_rows(tags)
    assert rows[0] == {**finished, "warning": "", "novelty": ""}
    assert [row["path"] for row in rows] == [str(s) for s in songs]


# ---------------------------------------------------------------- 10. exit codes


@pytest.mark.parametrize(
    "files, options, expected",
    [
        (["song.wav"], [], 0),
        (["song.wav", "bad.mp3"], [], 1),  # one file failed, the others were tagged
        (["bad.mp3"], [], 1),  # ... also when it is the only one: a file's failure is never a usage error
        (["missing.wav"], [], 1),
        (["song.wav"], ["--weights", "missing.pt"], 2),  # refused before any work
        (["song.wav"], ["--aggregate", "median"], 2),
        (["song.wav"], ["--hop", "0"], 2),
        (["empty"], [], 2),
    ],
)
def test_exit_codes_follow_one_rule(capsys, weights, song, tmp_path, files, options, expected):
    (tmp_path / "bad.mp3").write_text("not audio")
    (tmp_path / "empty").mkdir()
    options = options if "--weights" in options else ["--weights", weights, *options]
    code, _, err = mgc(capsys, "predict", *[tmp_path / f for f in files], *options)
    assert code == expected and "Traceback" not in err, err
    if expected == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith("error:")


# ---------------------------------------------------------------- 11. silence and truncated files


def test_silent_and_truncated_audio_is_tagged_with_a_warning(capsys, weights, tmp_path, one_thread):
    music = tmp_path / "music"
    write_tone(music / "tone.wav", 440, 2.0)
    sf.write(music / "silent.wav", np.zeros(32000, np.float32), 16000)
    mostly = np.zeros(32000, np.float32)
    mostly[:1600] = 0.3 * np.sin(np.arange(1600) / 5)  # 0.1 s of sound in 2 s
    sf.write(music / "mostly-silent.wav", mostly, 16000)
    write_tone(tmp_path / "whole.wav", 440, 4.0, rate=16000)
    whole = (tmp_path / "whole.wav").read_bytes()
    (music / "truncated.wav").write_bytes(whole[: len(whole) // 2])  # the header still promises 4 s

    tags, records = tmp_path / "tags.csv", tmp_path / "tags.json"
    code, _, err = mgc(capsys, "predict", music, "--weights", weights, "--csv", tags, "--json", records)
    assert code == 0 and "Traceback" not in err and "tagged 4 files, 0 failed, 3 with a warning" in err
    rows = {Path(row["path"]).name: row for row in read_rows(tags)}
    assert list(rows["tone.wav"])[-3:] == ["error", "warning", "novelty"]
    assert all(row["genre"] and not row["error"] for row in rows.values())  # warned, and tagged all the same
    expected = {"tone.wav": "", "silent.wav": "silent", "mostly-silent.wav": "95% silence", "truncated.wav": "truncated: its header promises 4.0 s, the file holds 2.0 s"}
    for name, warning in expected.items():
        assert warning in rows[name]["warning"] and bool(rows[name]["warning"]) == bool(warning)
        if warning:
            assert rows[name]["warning"].startswith(str(music / name))
            assert refused((code, "", err), rows[name]["warning"], code=0) == f"warning: {rows[name]['warning']}"
    assert {Path(r["path"]).name: r.get("warning", "") for r in json.loads(records.read_text())} == {n: r["warning"] for n, r in rows.items()}

    code, out, err = mgc(capsys, "predict", music / "silent.wav", "--weights", weights)
    assert code == 0 and "probability" in out  # the table, as always
    assert err.strip() == f"warning: {music / 'silent.wav'}: silent: the genre is a guess"


def test_short_rows_in_a_manifest_or_split_file_give_one_line(capsys, weights, tone_dataset, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,label\n{tone_dataset / 'low' / 'low.00000.wav'},low\n{tone_dataset / 'low' / 'low.00001.wav'}\n")
    refused(mgc(capsys, "evaluate", "--data", manifest, "--weights", weights), f"{manifest}: line 3 has no label")
    split_file = tmp_path / "splits.csv"
    split_file.write_text("path,split\nlow/low.00000.wav,test\nlow/low.00001.wav\n")  # a row without a split: not in any
    code, _, err = mgc(capsys, "evaluate", "--data", tone_dataset, "--weights", weights, "--split-file", split_file, "--hop", "0.5")
    assert code == 0 and "Traceback" not in err, err
