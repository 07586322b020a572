"""Bad input, round three (issue 30): no output over an input, nothing lost on interrupt, no traceback left.

As in test_bad_input_2.py: each case checks the exit code (0 done, 1 some files failed, 2 refused),
that stderr holds no traceback and names the problem in one line, and that nothing already written
is lost. Numbers are the issue's items. Audio is made on the fly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tone
from test_bad_input import refused, weights  # noqa: F401 (weights: a fixture)
from test_bad_input_2 import litter
from test_cli import mgc, read_rows

from mgcli import MgcError
from mgcli.checkpoint import load_checkpoint, save_checkpoint
from mgcli.shipped import WEIGHTS_DIR

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- 1. outputs through symlinks, devices and pipes


def read_fifo_in_background(fifo: Path) -> list[bytes]:
    """What a reader of `fifo` receives, filled in by a thread of its own."""
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            received.append(f.read())

    threading.Thread(target=read, daemon=True).start()
    return received


def test_an_output_through_a_symlink_is_written_into_its_target_and_a_pipe_in_place(capsys, weights, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    for name in ("json", "csv", "pt"):
        (tmp_path / f"link.{name}").symlink_to(f"target.{name}")
    out = ["--json", tmp_path / "link.json", "--csv", tmp_path / "link.csv"]
    assert mgc(capsys, "predict", song, "--weights", weights, *out)[0] == 0
    code, _, err = mgc(capsys, "predict", song, "--weights", weights, *out, "--skip-existing")
    assert code == 0 and "skipping 1 files already in" in err, err  # the link's target is the CSV resumed
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "link.csv").is_symlink()
    assert [r["path"] for r in json.loads((tmp_path / "target.json").read_text())] == [str(song)]
    assert [row["path"] for row in read_rows(tmp_path / "target.csv")] == [str(song)]
    save_checkpoint(load_checkpoint(weights), tmp_path / "link.pt")
    assert (tmp_path / "link.pt").is_symlink() and load_checkpoint(tmp_path / "target.pt")

    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    received = read_fifo_in_background(fifo)
    try:
        code, _, err = mgc(capsys, "predict", song, "--weights", weights, "--json", fifo, "--csv", "/dev/null")
    finally:
        with contextlib.suppress(OSError):  # a run refused before writing: free the reader
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert code == 0 and "Traceback" not in err, err
    time.sleep(0.2)
    assert [r["path"] for r in json.loads(received[0])] == [str(song)]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not litter(tmp_path)


# ---------------------------------------------------------------- 2. an output over the model's ONNX twin


def test_an_output_over_the_onnx_twin_of_the_weights_is_refused(capsys, weights, tmp_path, monkeypatch):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    checkpoint, twin = tmp_path / "tw.pt", tmp_path / "tw.onnx"
    shutil.copy(weights, checkpoint)
    twin.write_bytes(b"the twin")
    for args in (
        ["predict", song, "--weights", checkpoint, "--json", twin],
        ["predict", song, "--weights", checkpoint, "--csv", twin, "--overwrite"],
        ["evaluate", "--data", tmp_path, "--weights", checkpoint, "--json", twin],
        ["explain", song, "--weights", checkpoint, "--out", twin],
        ["calibrate", checkpoint, "--copy-from", checkpoint, "--out", twin],
    ):
        refused(mgc(capsys, *args), f"{twin}: is also an input of this run")
    # the shipped weights, read when no --weights is given (copies here: the real ones stay untouched)
    monkeypatch.setattr("mgcli.predict.default_weights", lambda: checkpoint)
    refused(mgc(capsys, "predict", song, "--json", twin), f"{twin}: is also an input of this run")
    tagger = tmp_path / "msd.pt"
    shutil.copy(WEIGHTS_DIR / "musicnn-msd.pt", tagger)
    shutil.copy(WEIGHTS_DIR / "musicnn-msd.onnx", tmp_path / "msd.onnx")
    monkeypatch.setattr("mgcli.predict.DEFAULT_TAGGER", tagger)
    refused(mgc(capsys, "tags", song, "--json", tmp_path / "msd.onnx"), "msd.onnx: is also an input of this run")
    assert twin.read_bytes() == b"the twin"
    assert (tmp_path / "msd.onnx").read_bytes() == (WEIGHTS_DIR / "musicnn-msd.onnx").read_bytes()


# ---------------------------------------------------------------- 3, 4. export and ensemble over their input


def test_export_and_ensemble_refuse_to_write_over_their_input(capsys, weights, tmp_path):
    checkpoint = tmp_path / "best.pt"
    shutil.copy(weights, checkpoint)
    result = mgc(capsys, "export", checkpoint, "--format", "onnx", "--out", tmp_path / "." / "best.pt")
    refused(result, "best.pt: is also an input of this run")
    shutil.copy(weights, tmp_path / "a.pt")
    refused(mgc(capsys, "ensemble", tmp_path / "a.pt", checkpoint, "--out", checkpoint), f"{checkpoint}: is also an input of this run")
    assert checkpoint.read_bytes() == weights.read_bytes()


# ---------------------------------------------------------------- 5. an interrupted run keeps its JSON


@pytest.mark.parametrize("ending", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_an_interrupted_run_keeps_every_finished_file_in_its_json(capsys, weights, tmp_path, ending):
    songs = [write_tone(tmp_path / "d" / f"s{i:02d}.wav", 300 + 50 * i, 4.0) for i in range(30)]
    csv, out = tmp_path / "x.csv", tmp_path / "x.json"
    outputs = ["--csv", csv, "--json", out]
    command = [sys.executable, "-m", "mgcli", "predict", tmp_path / "d", "--weights", weights, *outputs, "--device", "cpu"]
    process = subprocess.Popen(list(map(str, command)), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (not csv.exists() or len(read_rows(csv)) < 2) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(ending)
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    finished = [row["path"] for row in read_rows(csv)]
    assert 2 <= len(finished) < len(songs)
    if ending != signal.SIGKILL:  # ended as Ctrl-C ends it: the JSON is whole, the lock gone
        assert process.returncode == 128 + ending, err
        assert [r["path"] for r in json.loads(out.read_text())] == finished
        assert not litter(tmp_path)
    code, _, err = mgc(capsys, "predict", tmp_path / "d", "--weights", weights, *outputs, "--skip-existing")
    assert code == 0 and f"skipping {len(finished)} files" in err, err
    records = json.loads(out.read_text())
    assert sorted(r["path"] for r in records) == list(map(str, songs)) and all(r["genre"] for r in records)


# ---------------------------------------------------------------- 6. --skip-existing keeps other files' rows


def test_a_resume_keeps_the_failed_rows_of_files_outside_the_run(capsys, weights, tmp_path):
    music = tmp_path / "d"
    song = write_tone(music / "one.wav", 440, 1.0)
    (music / "bad.wav").write_text("not audio")
    csv = tmp_path / "folder.csv"
    assert mgc(capsys, "predict", music, "--weights", weights, "--csv", csv)[0] == 1
    before = read_rows(csv)
    assert [bool(row["error"]) for row in before] == [True, False]
    assert mgc(capsys, "predict", song, "--weights", weights, "--csv", csv, "--skip-existing")[0] == 0
    assert read_rows(csv) == before  # bad.wav's row stays: this run did not try it
    assert mgc(capsys, "predict", music, "--weights", weights, "--csv", csv, "--skip-existing")[0] == 1
    assert read_rows(csv) == before[1:] + before[:1]  # tried again: its row replaced, not doubled
    refused(mgc(capsys, "predict", song, "--weights", weights, "--csv", csv, "--skip-existing", "--overwrite"),
            "--skip-existing keeps the CSV's rows and --overwrite replaces them: pass one of them")
    assert read_rows(csv) == before[1:] + before[:1]


# ---------------------------------------------------------------- 11. a damaged or unfinished cache


def test_a_damaged_or_unfinished_cache_is_refused_in_one_line_and_preprocess_mends_it(capsys, weights, tone_dataset, tmp_path):
    from mgcli.training.cache import preprocess
    from mgcli.training.datasets import find_tracks

    cache = tmp_path / "cache"
    tracks = find_tracks(tone_dataset)

    def interrupt(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        preprocess(tracks, cache, interrupt)
    for command in (["evaluate", "--data", cache, "--weights", weights], ["train", "--data", cache, "--out", tmp_path / "run"]):
        refused(mgc(capsys, *command), f"{cache}: an interrupted preprocess left it incomplete (3 tracks so far)")
    assert mgc(capsys, "preprocess", tone_dataset, "--out", cache)[0] == 0
    [gone, cut, *_] = sorted((cache / "audio").iterdir())
    gone.unlink()
    cut.write_bytes(cut.read_bytes()[:-100])
    line = refused(mgc(capsys, "evaluate", "--data", cache, "--weights", weights), "is missing or damaged")
    assert line.startswith(f"error: {cache}: the decoded audio of 2 tracks is missing or damaged")
    assert mgc(capsys, "preprocess", tone_dataset, "--out", cache)[0] == 0  # decodes those two anew
    assert mgc(capsys, "evaluate", "--data", cache, "--weights", weights, "--hop", "1")[0] == 0


# ---------------------------------------------------------------- 12, 13. CSV files that are no UTF-8 CSV text


def test_a_manifest_or_resumed_csv_that_is_no_utf8_csv_text_is_refused_in_one_line(capsys, weights, tone_dataset, tmp_path):
    low = tone_dataset / "low" / "low.00000.wav"
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(f"path,label\n{low},low\n{low},électro\n".encode("latin-1"))
    refused(mgc(capsys, "evaluate", "--data", manifest, "--weights", weights), f"{manifest}: line 3 is not UTF-8 text; save the file as UTF-8")
    manifest.write_text("path,label\n")
    refused(mgc(capsys, "evaluate", "--data", manifest, "--weights", weights), f"{manifest}: a manifest with a header and no rows names no tracks")
    split_file = tmp_path / "splits.csv"
    split_file.write_bytes(b"path,split\nlow/low.00000.wav,test\x00\n")
    refused(mgc(capsys, "evaluate", "--data", tone_dataset, "--weights", weights, "--split-file", split_file),
            f"{split_file}: line 2 holds a NUL byte, so it is no CSV text mgc reads")
    csv = tmp_path / "x.csv"
    assert mgc(capsys, "predict", low, "--weights", weights, "--csv", csv)[0] == 0
    finished = csv.read_bytes()
    for damage in (b"\x00", b'"' + b"x" * 200_000 + b'"'):
        csv.write_bytes(finished + damage + b"\n")
        result = mgc(capsys, "predict", low, "--weights", weights, "--csv", csv, "--skip-existing")
        refused(result, "no CSV text mgc reads")
        assert csv.read_bytes() == finished + damage + b"\n"


# ---------------------------------------------------------------- 14. model settings of the wrong type or size


@pytest.mark.parametrize("setting, message", [
    ("n_mels={", "model resnet-mel: n_mels must be a whole number from 1 to 1,048,576, not '{'"),
    ("n_mels=-5", "n_mels must be a whole number from 1 to 1,048,576, not -5"),
    ("n_mels=100000000", "n_mels must be a whole number from 1 to 1,048,576, not 100000000"),
    ("n_mels=100000", "a mel filterbank of 100,000 bands by 257 frequencies is too large to build"),
    ("fc_hidden=160000", "these settings make a network of 422,579,555 numbers, more than the 400,000,000 mgc builds"),
    ("dropout=1.5", "these settings make no network (dropout probability has to be between 0 and 1, but got 1.5)"),
    ("spp=1", "spp must be true or false, not 1"),
])
def test_model_settings_are_checked_against_their_types_and_sizes_before_anything_is_built(capsys, tmp_path, setting, message):
    # No dataset: the settings are refused before it is looked for.
    result = mgc(capsys, "train", "--data", tmp_path / "none", "--out", tmp_path / "run", "--model", "resnet-mel", "--set", setting)
    refused(result, message)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 15, 16, 27. explain's steps, inspect's start


def test_explain_steps_and_inspect_start_are_refused_before_any_work_or_file(capsys, weights, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    result = mgc(capsys, "explain", song, "--weights", weights, "--steps", "1000000", "--out", tmp_path / "why.png")
    refused(result, "--steps must be 1 to 1,024, not 1,000,000")
    for start, message in (("nan", "--start must be a number of seconds, at least 0, not nan"),
                           ("-1", "--start must be a number of seconds, at least 0, not -1.0"),
                           ("1000", "--start 1000.0 s is outside")):
        result = mgc(capsys, "inspect", weights, "--out", tmp_path / "drawn", "--audio", song, "--start", start)
        refused(result, message)
    assert not (tmp_path / "why.png").exists() and not list((tmp_path / "drawn").glob("*.png"))


# ---------------------------------------------------------------- 17. standard output is an output


def test_a_full_standard_output_ends_the_run_in_one_line(weights, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    command = [sys.executable, "-m", "mgcli", "predict", str(song), "--weights", str(weights), "--device", "cpu"]
    with open("/dev/full", "w") as full:
        result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr == "error: standard output: cannot write it (No space left on device)\n", result.stderr


# ---------------------------------------------------------------- 18. a folder nested 1,000 deep


def test_a_folder_nested_a_thousand_deep_is_searched(capsys, weights, tmp_path):
    deep = tmp_path / "d"
    deep.mkdir()
    for _ in range(1000):
        deep = deep / "d"
        deep.mkdir()  # one level at a time: Path.mkdir(parents=True) recurses too
    song = write_tone(tmp_path / "song.wav", 440, 1.0).rename(deep / "song.wav")  # libsndfile opens no path this long
    try:
        code, _, err = mgc(capsys, "predict", tmp_path / "d", "--weights", weights, "--csv", tmp_path / "x.csv")
    finally:
        subprocess.run(["rm", "-rf", str(tmp_path / "d")], check=True)  # shutil.rmtree recurses too, in pytest's cleanup
    assert "Traceback" not in err, err
    [row] = read_rows(tmp_path / "x.csv")
    assert row["path"] == str(song) and code in (0, 1)  # found; libsndfile may refuse so long a name: a failed file


# ---------------------------------------------------------------- 7, 8, 9. endless work and unbounded memory


def test_folds_past_the_smallest_genre_and_batches_past_memory_are_refused(capsys, weights, tone_dataset, tmp_path):
    result = mgc(capsys, "crossval", "--data", tone_dataset, "--out", tmp_path / "cv", "--folds", "1000", "--cache", tmp_path / "cache")
    refused(result, "--folds 1000: genre 'high' has 6 tracks, so some folds would hold none of it out; use --folds 6 or fewer")
    assert not (tmp_path / "cv" / "fold-0").exists()
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    for command in ("predict", "tags"):
        result = mgc(capsys, command, song, "--weights", weights, "--batch-size", "1000000000")
        refused(result, "--batch-size must be 1 to 256 clips per pass, not 1,000,000,000: memory grows with it")


def test_omp_num_threads_is_held_to_the_machines_cores(weights, monkeypatch):
    import torch

    from mgcli.cores import machine_cores
    from mgcli.onnx_engine import load_onnx_model
    from mgcli.torch_engine import load_torch_model

    monkeypatch.setenv("OMP_NUM_THREADS", "1000")
    session = load_onnx_model(WEIGHTS_DIR / "bbnn.onnx").session
    assert session.get_session_options().intra_op_num_threads == machine_cores()
    load_torch_model(weights, "cpu")
    assert torch.get_num_threads() == machine_cores()


# ---------------------------------------------------------------- 19, 20, 21. labels, splits and shares that mean nothing


def test_labels_named_as_csv_columns_unknown_splits_and_odd_valid_fractions_are_refused(capsys, tone_dataset, tmp_path):
    low = tone_dataset / "low" / "low.00000.wav"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,label\n{low},path\n{tone_dataset / 'high' / 'high.00000.wav'},high\n")
    train = ["train", "--out", tmp_path / "run", "--cache", tmp_path / "cache"]
    refused(mgc(capsys, *train, "--data", manifest), "label 'path' is also the name of a column of predict's CSV")
    split_file = tmp_path / "splits.csv"
    split_file.write_text("path,split\nlow/low.00000.wav,train\nlow/low.00001.wav,validation\n")
    refused(mgc(capsys, *train, "--data", tone_dataset, "--split-file", split_file),
            f"{split_file}: line 3 gives the unknown split 'validation' (use train, valid, test)")
    for fraction in ("1.5", "-0.5", "nan"):
        refused(mgc(capsys, *train, "--data", tone_dataset, "--valid-fraction", fraction),
                f"--valid-fraction must be from 0 (no valid split) to 0.5, not {float(fraction)}")
    assert not list(tmp_path.glob("run/*.pt"))


# ---------------------------------------------------------------- 22, 23, 25. taggers, damaged twins, missing outside music


def test_a_tagger_is_refused_as_a_genre_model_by_every_command(capsys, tone_dataset, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    tagger = WEIGHTS_DIR / "musicnn-msd.pt"
    message = f"{tagger}: a tagger (50 tags), not a genre classifier: use `mgc tags`"
    for command in (
        ["evaluate", "--data", tone_dataset, "--weights", tagger, "--device", "cpu"],
        ["calibrate", tagger, "--data", tone_dataset, "--out", tmp_path / "calibrated.pt", "--device", "cpu"],
        ["explain", song, "--weights", tagger, "--out", tmp_path / "why.png", "--device", "cpu"],
    ):
        refused(mgc(capsys, *command), message)
    assert not list(tmp_path.glob("*.p*g")) and not (tmp_path / "calibrated.pt").exists()


def test_a_damaged_twin_falls_back_to_pytorch_and_missing_outside_music_is_refused(capsys, weights, tone_dataset, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    shutil.copy(weights, tmp_path / "tw.pt")
    (tmp_path / "tw.onnx").write_bytes(b"damaged")
    code, out, err = mgc(capsys, "predict", song, "--weights", tmp_path / "tw.pt", "--device", "cpu")
    assert code == 0 and "low" in out and "Traceback" not in err, err
    refused(mgc(capsys, "predict", song, "--weights", tmp_path / "tw.pt", "--engine", "onnx"), "not a readable ONNX model")
    result = mgc(capsys, "evaluate", "--data", tone_dataset, "--weights", WEIGHTS_DIR / "default.pt", "--outside", tmp_path / "missing")
    refused(result, f"{tmp_path / 'missing'}: no such file or folder (--outside)")


# ---------------------------------------------------------------- 24. a track much shorter than a clip


def test_a_track_much_shorter_than_a_clip_is_tagged_with_a_warning(capsys, weights, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "one.wav", np.full(1, 0.1, dtype=np.float32), 16000)
    write_tone(tmp_path / "tenth.wav", 440, 0.1)
    write_tone(tmp_path / "half.wav", 440, 0.3)  # the tiny model's clip is 0.5 s: more than half of it is audio
    code, _, err = mgc(capsys, "predict", tmp_path / "one.wav", tmp_path / "tenth.wav", tmp_path / "half.wav",
                       "--weights", weights, "--csv", tmp_path / "x.csv")
    assert code == 0 and "Traceback" not in err, err
    warnings = {Path(row["path"]).name: row["warning"] for row in read_rows(tmp_path / "x.csv")}
    short = "s of audio in a 0.5-s clip, the rest silence: the genre is a guess"
    assert warnings["one.wav"] == f"{tmp_path / 'one.wav'}: short: 6.3e-05 {short}"
    assert warnings["tenth.wav"] == f"{tmp_path / 'tenth.wav'}: short: 0.1 {short}"
    assert warnings["half.wav"] == ""


# ---------------------------------------------------------------- 27. everything checked before the first write and the long work


def test_no_output_is_written_before_another_is_refused_and_a_bad_backbone_is_found_first(capsys, weights, tone_dataset, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    csv = tmp_path / "x.csv"
    result = mgc(capsys, "predict", song, "--weights", weights, "--csv", csv, "--timeline-csv", tmp_path / "x.csv.lock")
    refused(result, f"{tmp_path / 'x.csv.lock'}: is the lock file this run holds beside {csv}; name another file")
    (tmp_path / "clips.csv").write_text("earlier clips\n")
    result = mgc(capsys, "predict", song, "--weights", weights, "--csv", csv, "--timeline-csv", tmp_path / "clips.csv")
    refused(result, f"{tmp_path / 'clips.csv'} exists: pass --overwrite to replace it")
    (tmp_path / "tags.csv").write_text("earlier tags\n")
    refused(mgc(capsys, "tags", song, "--csv", tmp_path / "tags.csv"), f"{tmp_path / 'tags.csv'} exists: pass --overwrite to replace it")
    assert not csv.exists() and (tmp_path / "clips.csv").read_text() == "earlier clips\n"
    (tmp_path / "backbone.pt").write_text("no weights")
    result = mgc(capsys, "train", "--data", tmp_path / "none", "--out", tmp_path / "run", "--model", "musicnn",
                 "--init-backbone", tmp_path / "backbone.pt")  # no dataset: the backbone is refused before it is looked for
    refused(result, f"cannot read backbone weights {tmp_path / 'backbone.pt'}")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 28. wording


class Evil:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def test_refusals_say_what_is_wrong(capsys, weights, tmp_path):
    import warnings

    import torch

    from mgcli.checkpoint import make_checkpoint
    from mgcli.models import build
    from mgcli.training.config import TrainConfig
    from mgcli.training.run_state import restore
    from conftest import TINY

    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    with pytest.raises(MgcError, match=r"a run of ms-sincresnet, not sincresnet; cannot resume it with this model$"):
        restore(weights, build("ms-sincresnet", **TINY, n_classes=2), "sincresnet", ["high", "low"], TrainConfig(), {})
    onnx = WEIGHTS_DIR / "bbnn.onnx"
    for command in (["evaluate", "--data", tmp_path, "--weights", onnx], ["inspect", onnx, "--out", tmp_path / "drawn"]):
        refused(mgc(capsys, *command), f"{onnx}: an ONNX file, and this needs the PyTorch network: give its .pt checkpoint")
    torch.save({"weights": Evil()}, tmp_path / "evil.pt")
    refused(mgc(capsys, "predict", song, "--weights", tmp_path / "evil.pt"), "unsupported GLOBAL posix.system")
    result = mgc(capsys, "predict", "/proc/self/status", "--weights", weights)
    assert refused(result, "not a readable audio file", code=1) and "empty file" not in result[2]
    cjk = tmp_path / "cjk.pt"
    save_checkpoint(make_checkpoint("ms-sincresnet", build("ms-sincresnet", **TINY, n_classes=2), ["低音", "高音"]), cjk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = mgc(capsys, "explain", song, "--weights", cjk, "--out", tmp_path / "why.png", "--device", "cpu")
    assert code == 0 and (tmp_path / "why.png").is_file(), err
    assert not [w for w in caught if "missing from" in str(w.message)]


# ---------------------------------------------------------------- 29. `-` as an output


def test_a_dash_as_an_output_is_refused_and_dev_stdout_is_written_in_place(capsys, weights, tmp_path, monkeypatch):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    monkeypatch.chdir(tmp_path)
    for option in ("--csv", "--json"):
        result = mgc(capsys, "predict", song, "--weights", weights, option, "-")
        refused(result, "-: would be a file named '-'; name a file, or /dev/stdout for standard output")
    assert not (tmp_path / "-").exists()
    command = [sys.executable, "-m", "mgcli", "predict", str(song), "--weights", str(weights), "--csv", "/dev/stdout"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)  # stdout: a pipe
    assert result.returncode == 0 and result.stdout.startswith("path,genre,probability,high,low,error,warning,novelty\n"), result.stderr
    assert str(song) in result.stdout


# ---------------------------------------------------------------- 10. explain says how far it is


def test_explain_reports_every_clip_as_it_is_done(weights, tmp_path):
    from mgcli.explain.explain import explain

    song = write_tone(tmp_path / "song.wav", 440, 2.0)  # the tiny model's 0.5-s clips: 4
    heard = []
    explain(song, tmp_path / "why.png", weights, steps=2, device="cpu", on_clip=lambda done, total: heard.append((done, total)))
    assert heard == [(1, 4), (2, 4), (3, 4), (4, 4)]


# ---------------------------------------------------------------- 26. a resumed CSV of another model


def test_a_csv_another_model_wrote_is_not_resumed(capsys, weights, tmp_path):
    import torch

    songs = [write_tone(tmp_path / "d" / f"s{i}.wav", 300 + 500 * i, 1.0) for i in range(3)]
    csv = tmp_path / "x.csv"
    assert mgc(capsys, "predict", *songs[:2], "--weights", weights, "--csv", csv)[0] == 0
    finished = csv.read_bytes()
    checkpoint = load_checkpoint(weights)  # the same model and labels, its output layer's bias moved
    [bias] = [key for key, value in checkpoint["state_dict"].items() if key.endswith("bias") and value.shape == (2,)][-1:]
    checkpoint["state_dict"][bias] += torch.tensor([1.0, -1.0])
    other = tmp_path / "other.pt"
    save_checkpoint(checkpoint, other)
    result = mgc(capsys, "predict", *songs, "--weights", other, "--csv", csv, "--skip-existing")
    refused(result, f"{csv}: its rows were written by another model or with another --hop or --aggregate ({songs[0]} now gives other probabilities)")
    assert csv.read_bytes() == finished and not litter(tmp_path)
    assert mgc(capsys, "predict", *songs, "--weights", weights, "--csv", csv, "--skip-existing")[0] == 0  # its own model resumes
    assert [row["path"] for row in read_rows(csv)] == list(map(str, songs))
