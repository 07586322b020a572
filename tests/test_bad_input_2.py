"""Bad input, round two (issue 24): special files, torn audio, NaN, shared outputs, full disks.

As in test_bad_input.py: each case checks the exit code (0 done, 1 some files failed, 2 refused,
130 Ctrl-C, 143 SIGTERM), that stderr holds no traceback and names the problem in one line, and
that nothing already written is lost or left half-written. Audio is made on the fly.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_SETS, write_tone
from test_bad_input import refused, time_limit, weights  # noqa: F401 (weights: a fixture)
from test_cli import mgc, read_rows

from mgcli import MgcError
from mgcli.audio import AudioError, DecodeNotes, stream
from mgcli.checkpoint import load_checkpoint, save_checkpoint
from mgcli.files import write_text_atomic
from mgcli.shipped import WEIGHTS_DIR
from mgcli.writers import CsvWriter

pytestmark = pytest.mark.usefixtures("one_thread")


def litter(folder: Path) -> list[str]:
    """Temporary and lock files left in a folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".tmp", ".lock")))


def decode(path: Path) -> tuple[np.ndarray, DecodeNotes]:
    notes = DecodeNotes()
    return np.concatenate(list(stream(path, notes=notes))), notes


# ---------------------------------------------------------------- 1. FIFOs, sockets, devices


def test_special_files_fail_at_once_with_what_they_are(capsys, weights, tmp_path):
    music = tmp_path / "d"
    write_tone(music / "a.wav", 300, 1.0)
    os.mkfifo(music / "pipe.wav")  # opening it would wait for a writer for ever
    (music / "zero.wav").symlink_to("/dev/zero")  # reading it would never end
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(music / "socket.wav"))
        with time_limit(60):
            code, _, err = mgc(capsys, "predict", music, "--weights", weights, "--csv", tmp_path / "out.csv")
            with pytest.raises(AudioError, match="not a regular file but a named pipe"):
                decode(music / "pipe.wav")  # what preprocess, evaluate and explain decode with
    rows = {Path(row["path"]).name: row for row in read_rows(tmp_path / "out.csv")}
    assert code == 1 and "Traceback" not in err, err
    assert rows["a.wav"]["genre"] and not rows["a.wav"]["error"]  # the file before them is tagged
    for name, kind in (("pipe.wav", "a named pipe"), ("zero.wav", "a character device"), ("socket.wav", "a socket")):
        assert rows[name]["error"] == f"{music / name}: not a regular file but {kind}, so no audio file"
        refused((code, "", err), rows[name]["error"], code=1)


# ---------------------------------------------------------------- 2. names that are not UTF-8, and control characters


def test_names_that_are_not_utf8_or_hold_control_characters_are_tagged_and_printed_escaped(capsys, weights, tmp_path):
    music = tmp_path / "d"
    write_tone(music / "a.wav", 300, 1.0)
    odd = [music / os.fsdecode(b"bad\xff.wav"), music / "clear\x1b[2J.wav"]
    for path in odd:
        write_tone(music / "tmp.wav", 2000, 1.0).rename(path)  # soundfile cannot name such a file itself
    code, out, err = mgc(capsys, "predict", music, "--weights", weights, "--csv", tmp_path / "out.csv",
                         "--json", tmp_path / "out.json", "--shard", "0/1")
    assert code == 0 and "Traceback" not in err, err
    raw = (tmp_path / "out.csv").read_bytes()
    assert b"/bad\xff.wav," in raw and b"/clear\x1b[2J.wav," in raw  # the CSV names the files as they are
    assert sorted(r["path"] for r in json.loads((tmp_path / "out.json").read_text())) == sorted(map(str, [music / "a.wav", *odd]))
    for path in odd:
        code, out, err = mgc(capsys, "predict", path, "--weights", weights)
        assert code == 0 and "Traceback" not in err, err
        assert "\x1b" not in out + err and ("bad\\xff.wav" in out or "clear\\x1b[2J.wav" in out)
    code, _, err = mgc(capsys, "predict", music / os.fsdecode(b"gone\xff.wav"), "--weights", weights)
    assert refused((code, "", err), "no such file", code=1) == f"failed: {music}/gone\\xff.wav: no such file"


# ---------------------------------------------------------------- 3. truncated MP3


def test_a_truncated_mp3_is_decoded_to_where_its_data_ends_with_a_warning(capsys, weights, tmp_path):
    whole = write_tone(tmp_path / "whole.mp3", 440, 10.0)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    wave, notes = decode(whole)
    assert abs(len(wave) / 16000 - 10.0) < 0.1 and not notes.warning(whole, 3.0)
    wave, notes = decode(cut)
    assert 4.0 < len(wave) / 16000 < 6.0  # not 10 s padded with silence
    assert np.abs(wave[-16000:]).max() > 0.1
    code, _, err = mgc(capsys, "predict", cut, "--weights", weights, "--csv", tmp_path / "out.csv")
    line = refused((code, "", err), "truncated: its header", code=0)
    assert line.startswith(f"warning: {cut}: truncated: its header promises 10.0 s, the file holds 4.")
    assert read_rows(tmp_path / "out.csv")[0]["warning"] == line.removeprefix("warning: ")


# ---------------------------------------------------------------- 4. huge samples, NaN


def test_huge_samples_fail_their_file_and_no_nan_reaches_the_json(capsys, weights, tmp_path):
    music = tmp_path / "d"
    write_tone(music / "a.wav", 300, 1.0)
    t = np.arange(16000) / 16000
    sf.write(music / "huge.wav", (1e18 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, subtype="FLOAT")
    code, _, err = mgc(capsys, "predict", music, "--weights", weights, "--json", tmp_path / "out.json")
    refused((code, "", err), "huge.wav: no audio: its samples reach 1e+18, where audio lies within ±1", code=1)

    def no_nan(constant: str):
        raise AssertionError(f"{constant} in the JSON")

    records = json.loads((tmp_path / "out.json").read_text(), parse_constant=no_nan)
    assert [bool(r.get("error")) for r in records] == [False, True]
    result = mgc(capsys, "explain", music / "huge.wav", "--weights", weights, "--out", tmp_path / "why.png")
    assert refused(result, "no audio", code=1).startswith("error:")
    assert len(result[2].strip().splitlines()) == 1 and not (tmp_path / "why.png").exists()


def test_a_model_that_answers_nan_gives_an_error_not_a_nan(weights):
    from mgcli.clips import ClipOutputs
    from mgcli.inference import _result, load_model

    model = load_model(weights, "cpu")
    for outputs in (ClipOutputs(np.array([[np.nan, 0.0]])), ClipOutputs(np.zeros((1, 2)), np.array([[np.inf, 0.0]]))):
        result = _result(model, "x.wav", [outputs], "", "", [0.0], "mean_prob")
        assert result.probabilities is None and result.error == "x.wav: the model's outputs for this audio are not finite numbers"


# ---------------------------------------------------------------- 5. a damaged sample rate


@pytest.mark.parametrize("rate", [2, 4_000_000])
def test_an_absurd_sample_rate_fails_its_file_at_once(capsys, weights, tmp_path, rate):
    song = write_tone(tmp_path / "song.wav", 440, 30.0, rate=22050, subtype="PCM_16")
    header = bytearray(song.read_bytes())
    header[24:32] = struct.pack("<II", rate, rate * 2)  # fmt chunk: sample rate, bytes per second
    song.write_bytes(header)
    with time_limit(30):  # at 2 Hz: 92 hours of audio to resample
        result = mgc(capsys, "predict", song, "--weights", weights)
    refused(result, f"its header gives a sample rate of {rate:,} Hz, outside the 1,000 to 768,000 Hz", code=1)


# ---------------------------------------------------------------- 6. a folder that cannot be read


def test_a_folder_that_cannot_be_read_fails_instead_of_vanishing(capsys, weights, tmp_path, monkeypatch):
    # As root, mode 000 reads all the same: the folder is made unreadable where os.walk lists it.
    music = tmp_path / "d"
    write_tone(music / "a.wav", 300, 1.0)
    write_tone(music / "locked" / "b.wav", 300, 1.0)
    scandir = os.scandir

    def locked_out(path=".", *args):
        if Path(path) == music / "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return scandir(path, *args)

    monkeypatch.setattr(os, "scandir", locked_out)
    code, _, err = mgc(capsys, "predict", music, "--weights", weights, "--csv", tmp_path / "out.csv")
    message = f"{music / 'locked'}: cannot read this folder (Permission denied): its files are left out"
    assert refused((code, "", err), message, code=1) == f"failed: {message}"
    assert [(row["path"], row["error"]) for row in read_rows(tmp_path / "out.csv")] == [
        (str(music / "a.wav"), ""), (str(music / "locked"), message)
    ]


# ---------------------------------------------------------------- 7. the CSV's folder deleted mid-run


def test_a_csv_deleted_during_the_run_is_written_again_at_its_end(weights, tmp_path):
    import shutil

    from mgcli.predict import predict_paths

    songs = [write_tone(tmp_path / "d" / f"s{i}.wav", 300 + 500 * i, 1.0) for i in range(3)]
    out = tmp_path / "out" / "x.csv"
    run = predict_paths(songs, weights, csv=out, device="cpu")
    for i, result in enumerate(run.results):
        if i == 0:
            shutil.rmtree(out.parent)
    assert [row["path"] for row in read_rows(out)] == list(map(str, songs))
    assert not litter(out.parent)


# ---------------------------------------------------------------- 8. two runs, one CSV


def test_a_csv_another_run_writes_is_refused_and_its_rows_are_kept(capsys, weights, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    out = tmp_path / "out.csv"
    first = CsvWriter(out, ["high", "low"])  # a run under way
    for args in (["--skip-existing"], ["--overwrite"]):
        result = mgc(capsys, "predict", song, "--weights", weights, "--csv", out, *args)
        assert refused(result, "another run is writing it") == f"error: {out}: another run is writing it; wait for that run to end, or write elsewhere"
    from mgcli.inference import TrackResult

    first.write(TrackResult(str(song), np.array([0.25, 0.75])))
    first.close()
    assert [row["genre"] for row in read_rows(out)] == ["low"]
    assert not litter(tmp_path)
    assert mgc(capsys, "predict", song, "--weights", weights, "--csv", out, "--overwrite")[0] == 0  # released


def test_atomic_writes_never_share_a_temporary_file(tmp_path, monkeypatch):
    names = []
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: names.append(self.name) or os.close(os.open(self, os.O_WRONLY)))
    write_text_atomic(tmp_path / "x.json", "[]")
    write_text_atomic(tmp_path / "x.json", "[]")
    assert len(set(names)) == 2 and all(name.startswith("x.json.") and name.endswith(".tmp") for name in names)


# ---------------------------------------------------------------- 9. --skip-existing --json


def test_a_resumed_run_keeps_the_earlier_json_records(capsys, weights, tmp_path):
    songs = [write_tone(tmp_path / "d" / f"s{i}.wav", 300 + 500 * i, 1.0) for i in range(3)]
    out = ["--csv", tmp_path / "x.csv", "--json", tmp_path / "x.json"]
    assert mgc(capsys, "predict", *songs[:2], "--weights", weights, *out)[0] == 0
    earlier = json.loads((tmp_path / "x.json").read_text())
    assert mgc(capsys, "predict", *songs[:2], "--weights", weights, *out, "--skip-existing")[0] == 0
    assert json.loads((tmp_path / "x.json").read_text()) == earlier  # not []
    assert mgc(capsys, "predict", *songs, "--weights", weights, *out, "--skip-existing")[0] == 0
    records = json.loads((tmp_path / "x.json").read_text())
    assert records[:2] == earlier and records[2]["path"] == str(songs[2])
    (tmp_path / "x.json").write_text("not json")
    result = mgc(capsys, "predict", *songs, "--weights", weights, *out, "--skip-existing")
    refused(result, "x.json: not a JSON file mgc wrote")


# ---------------------------------------------------------------- 10. an output that is an input, or another output


def test_an_output_that_is_an_input_or_another_output_is_refused(capsys, weights, tmp_path):
    music = tmp_path / "d"
    song = write_tone(music / "a.wav", 440, 1.0)
    audio = song.read_bytes()
    is_input, twice = f"{song}: is also an input of this run", "x: is named for two outputs"
    for args, message in (
        (["predict", song, "--json", song], is_input),
        (["predict", music, "--csv", song, "--overwrite"], is_input),
        (["predict", song, "--csv", tmp_path / "x", "--json", tmp_path / "x"], twice),
        (["tags", music, "--csv", tmp_path / "x", "--json", tmp_path / "d" / ".." / "x"], twice),
        (["explain", song, "--out", song], is_input),
        (["predict", song, "--json", weights], f"{weights}: is also an input of this run"),
        (["tags", song, "--csv", weights], f"{weights}: is also an input of this run"),
        (["evaluate", "--data", music, "--json", weights], f"{weights}: is also an input of this run"),
    ):
        result = mgc(capsys, *args, "--weights", weights)
        assert refused(result, message).startswith("error:")
        assert len(result[2].strip().splitlines()) == 1
    assert song.read_bytes() == audio and not (tmp_path / "x").exists() and load_checkpoint(weights)


# ---------------------------------------------------------------- 11. a full disk


def full_disk_after(monkeypatch, name: str, good_writes: int) -> None:
    """os.write fails with ENOSPC on the file `name` after `good_writes` writes to it."""
    write, writes = os.write, []

    def write_or_fail(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(name):
            writes.append(fd)
            if len(writes) > good_writes:
                raise OSError(errno.ENOSPC, "No space left on device")
        return write(fd, data)

    monkeypatch.setattr(os, "write", write_or_fail)


def test_a_full_disk_stops_the_run_in_one_line_and_keeps_the_rows_written(capsys, weights, tmp_path, monkeypatch):
    songs = [write_tone(tmp_path / "d" / f"s{i}.wav", 300 + 500 * i, 1.0) for i in range(3)]
    full_disk_after(monkeypatch, "x.csv", 1)
    result = mgc(capsys, "predict", *songs, "--weights", weights, "--csv", tmp_path / "x.csv")
    refused(result, f"{tmp_path / 'x.csv'}: cannot write it (No space left on device); its earlier lines are kept")
    assert [row["path"] for row in read_rows(tmp_path / "x.csv")] == [str(songs[0])]
    assert not litter(tmp_path)


def test_a_full_disk_leaves_the_earlier_json_and_checkpoint_and_no_temporary_file(capsys, weights, tmp_path, monkeypatch):
    import torch

    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    (tmp_path / "x.json").write_text("[]\n")
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(weights.read_bytes())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    result = mgc(capsys, "predict", song, "--weights", weights, "--json", tmp_path / "x.json")
    refused(result, f"{tmp_path / 'x.json'}: cannot write it (No space left on device); any earlier file there is intact")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(MgcError, match="No space left on device"):
        save_checkpoint({}, ckpt)
    assert (tmp_path / "x.json").read_text() == "[]\n" and ckpt.read_bytes() == weights.read_bytes()
    assert not litter(tmp_path)


def test_a_full_disk_ends_a_real_process_with_one_line_and_exit_2(weights, tmp_path):
    """... and the MP3 decoder's own lines stay off the terminal (item 17)."""
    songs = [write_tone(tmp_path / "d" / "s0.mp3", 440, 4.0)] + [write_tone(tmp_path / "d" / f"s{i}.wav", 300 + 500 * i, 1.0) for i in range(1, 4)]
    data = bytearray(songs[0].read_bytes())
    data[1000:3000:37] = bytes(b ^ 0xFF for b in data[1000:3000:37])  # libmpg123 says "Note: Illegal Audio-MPEG-Header ..."
    songs[0].write_bytes(data)
    script = (
        "import errno, os, sys\n"
        "write = os.write\n"
        "def full(fd, data):\n"
        "    if os.readlink(f'/proc/self/fd/{fd}').endswith('x.csv') and b's1.wav' in data:\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    return write(fd, data)\n"
        "os.write = full\n"
        "from mgcli.cli import main\n"
        "sys.argv = ['mgc', *sys.argv[1:]]\n"
        "main()\n"
    )
    args = ["predict", *songs, "--weights", weights, "--csv", tmp_path / "x.csv", "--device", "cpu"]
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    *warnings, last = [line for line in result.stderr.splitlines() if line]
    assert last == f"error: {tmp_path / 'x.csv'}: cannot write it (No space left on device); its earlier lines are kept"
    assert all(line.startswith(f"warning: {songs[0]}: ") for line in warnings), result.stderr
    assert [row["path"] for row in read_rows(tmp_path / "x.csv")] == [str(songs[0])]
    assert not litter(tmp_path)


# ---------------------------------------------------------------- 12. a hop too long to count


def test_a_hop_that_would_overflow_is_refused(capsys, weights, tone_dataset, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    for args in (
        ["predict", song, "--weights", weights],
        ["tags", song],
        ["evaluate", "--data", tone_dataset, "--weights", weights],
    ):
        refused(mgc(capsys, *args, "--hop", "1e308"), "hop must be a finite number of seconds, at least 0.05 and at most 86,400")
    result = mgc(capsys, "train", "--data", tone_dataset, "--out", tmp_path / "run", "--eval-hop", "1e308", *TINY_SETS)
    refused(result, "at most 86,400")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 13. a manifest naming a missing file


def test_a_manifest_naming_a_missing_file_skips_it(tone_dataset, tmp_path):
    from mgcli.training.datasets import load_datasets

    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,label\n{tone_dataset / 'low' / 'low.00000.wav'},low\n{tmp_path / 'gone.wav'},high\n")
    heard = []
    [dataset] = load_datasets([manifest], caches=[tmp_path / "cache"], notify=heard.append)
    assert [t.label for t in dataset.tracks] == ["low"]
    assert heard[-1] == f"skipped: {tmp_path / 'gone.wav'}: no such file"


# ---------------------------------------------------------------- 15. evaluate and labels the model lacks


def test_evaluate_says_which_tracks_it_cannot_score(capsys, weights, tmp_path):
    data = tmp_path / "data"
    for label, count in (("low", 1), ("high", 1), ("jazz", 2), ("rock", 1)):
        for i in range(count):
            write_tone(data / label / f"{i}.wav", 300 + 700 * i, 0.5)
    code, _, err = mgc(capsys, "evaluate", "--data", data, "--weights", weights, "--json", tmp_path / "e.json")
    line = refused((code, "", err), "genre the model does not know", code=0)
    assert line == "warning: 3 of 5 tracks have a genre the model does not know, left out of the scores: jazz 2, rock 1"
    assert json.loads((tmp_path / "e.json").read_text())["track"]["count"] == 2
    for label in ("low", "high"):
        for wav in (data / label).iterdir():
            wav.unlink()
        (data / label).rmdir()
    refused(mgc(capsys, "evaluate", "--data", data, "--weights", weights), "none of the 3 tracks has a genre the model knows")


# ---------------------------------------------------------------- 16. predict with a tagger


def test_predict_refuses_a_tagger(capsys, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    tagger = WEIGHTS_DIR / "musicnn-msd.pt"
    result = mgc(capsys, "predict", song, "--weights", tagger, "--csv", tmp_path / "x.csv", "--device", "cpu")
    assert refused(result, "not a genre classifier") == f"error: {tagger}: a tagger (50 tags), not a genre classifier: use `mgc tags`"
    assert not (tmp_path / "x.csv").exists()


# ---------------------------------------------------------------- 17. smaller things


def test_explain_fails_a_file_that_is_not_audio_with_exit_1(capsys, weights, tmp_path):
    (tmp_path / "bad.wav").write_text("not audio")
    for name, message in (("gone.wav", "no such file"), ("bad.wav", "not a readable audio file")):
        result = mgc(capsys, "explain", tmp_path / name, "--weights", weights, "--out", tmp_path / "why.png")
        assert refused(result, message, code=1) .startswith(f"error: {tmp_path / name}: ")


def test_a_file_that_cannot_be_read_fails_with_the_reason(weights, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    song.chmod(0)
    command = [sys.executable, "-m", "mgcli", "predict", str(song), "--weights", str(weights), "--device", "cpu"]
    if os.geteuid() == 0:  # root reads anything unless it drops that power
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
        if subprocess.run([*drop, "true"]).returncode:
            pytest.skip("running as root, and setpriv cannot drop the power to read anything")
        command = [*drop, *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr  # a file that failed; not a usage error
    assert result.stderr.strip() == f"failed: {song}: cannot read it (Permission denied)"


def test_a_folder_given_as_a_checkpoint_is_named_as_one(capsys, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    (tmp_path / "run").mkdir()
    line = refused(mgc(capsys, "predict", song, "--weights", tmp_path / "run"), "is a folder")
    assert line == f"error: {tmp_path / 'run'}: is a folder, not a checkpoint (a run's is {tmp_path / 'run' / 'best.pt'})"


def test_an_empty_csv_resumes(capsys, weights, tmp_path):
    song = write_tone(tmp_path / "song.wav", 440, 1.0)
    (tmp_path / "x.csv").write_text("")  # a run stopped before its header was written
    assert mgc(capsys, "predict", song, "--weights", weights, "--csv", tmp_path / "x.csv", "--skip-existing")[0] == 0
    assert [row["path"] for row in read_rows(tmp_path / "x.csv")] == [str(song)]


def test_conflicting_labels_or_splits_are_refused(capsys, weights, tone_dataset, tmp_path):
    low, high = tone_dataset / "low" / "low.00000.wav", tone_dataset / "high" / "high.00000.wav"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,label\n{low},low\n{high},high\n{low},high\n{high},high\n")  # the same row twice is fine
    line = refused(mgc(capsys, "evaluate", "--data", manifest, "--weights", weights), "keep one")
    assert line == f"error: {manifest}: line 4 gives {low} as 'high', line 2 as 'low'; keep one"
    split_file = tmp_path / "splits.csv"
    split_file.write_text("path,split\nlow/low.00000.wav,test\nlow/low.00000.wav,train\n")
    refused(mgc(capsys, "evaluate", "--data", tone_dataset, "--weights", weights, "--split-file", split_file),
            "line 3 gives low/low.00000.wav as 'train', line 2 as 'test'; keep one")


def test_training_without_a_valid_split_says_how_best_was_chosen(capsys, tone_dataset, tmp_path):
    result = mgc(capsys, "train", "--data", tone_dataset, "--out", tmp_path / "run", "--epochs", "1", "--valid-fraction", "0",
                 "--warmup-epochs", "0", "--batch-size", "8", "--clips-per-track", "1", "--device", "cpu", *TINY_SETS)
    assert result[0] == 0, result[2]
    assert f"{tmp_path / 'run'}/best.pt (no valid split: the last epoch)" in result[1]


def test_sigterm_ends_a_run_like_ctrl_c_with_exit_143(weights, tmp_path):
    songs = [write_tone(tmp_path / "d" / f"s{i:02d}.wav", 300 + 50 * i, 4.0) for i in range(40)]
    out = tmp_path / "x.csv"
    command = [sys.executable, "-m", "mgcli", "predict", str(tmp_path / "d"), "--weights", str(weights), "--csv", str(out), "--device", "cpu"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (not out.exists() or len(read_rows(out)) < 2) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and err.strip().endswith("terminated") and "Traceback" not in err, err
    rows = read_rows(out)
    assert 2 <= len(rows) < len(songs) and all(row["genre"] for row in rows)
    assert not litter(tmp_path)

