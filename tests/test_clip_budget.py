"""--clips N: a track heard in N clips spread over it, decoded ahead by a pool of threads; --clips
auto: every clip of a track whose N leave its genre in doubt."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY, write_tone
from test_bad_input import refused, weights  # noqa: F401 (a fixture)
from test_cli import mgc

from mgcli import MgcError, inference
from mgcli.clips import AUTO_CLIPS, clip_count, iter_clips, parse_clip_budget, spread_clips
from mgcli.cores import machine_cores
from mgcli.inference import classify, classify_files, is_settled, load_model
from mgcli.models import build
from mgcli.torch_engine import GenreModel

pytestmark = pytest.mark.usefixtures("one_thread")

CLIP = TINY["clip_samples"]  # half a second at 16 kHz


@pytest.mark.parametrize(("length", "hop"), [(48_000, 48_000), (100, 30), (100, 100), (100, 7)])
def test_clip_count_is_the_clip_cutters(length, hop):
    for n_samples in range(0, 1_000, 7):
        assert clip_count(n_samples, length, hop) == len(list(iter_clips([np.zeros(n_samples, np.float32)], length, hop)))


def test_clips_are_spread_evenly_and_every_clip_is_kept_when_there_are_no_more():
    assert spread_clips(80, 10) == [4, 12, 20, 28, 36, 44, 52, 60, 68, 76]  # the middle of each tenth
    assert spread_clips(80, 1) == [40]
    assert spread_clips(10, 10) == list(range(10)) and spread_clips(7, 10) == list(range(7))
    for n_clips in range(1, 60):
        for budget in range(1, n_clips + 1):
            picked = spread_clips(n_clips, budget)
            assert len(set(picked)) == budget and picked == sorted(picked) and 0 <= picked[0] and picked[-1] < n_clips


def test_a_clip_budget_is_a_whole_number_auto_or_all():
    assert parse_clip_budget("all") == parse_clip_budget("ALL") == (None, False)
    assert parse_clip_budget("3") == (3, False) and parse_clip_budget("auto") == (AUTO_CLIPS, True)
    for bad in ("0", "-3", "2.5", "ten", ""):
        with pytest.raises(MgcError, match="--clips must be"):
            parse_clip_budget(bad)


def test_budgeted_clips_are_the_same_clips_as_every_clips(trained_run, tmp_path):
    """The clips read are those the clip cutter gives, at the spread indices: the same logits, in order."""
    model = load_model(trained_run / "best.pt", "cpu")
    song = write_tone(tmp_path / "long.ogg", 3000, 12.0, rate=44100)
    every = classify(model, song, hop_seconds=0.5)
    assert every.clips == 24 and every.clip_starts == [0.5 * i for i in range(24)]
    some = classify(model, song, hop_seconds=0.5, clip_budget=4)
    picked = spread_clips(24, 4)
    assert some.clips == 4 and some.clip_starts == [0.5 * i for i in picked]
    np.testing.assert_allclose(some.clip_logits, every.clip_logits[picked], atol=1e-4)  # the fast path reads spans, this clips
    short = classify(model, song, hop_seconds=0.5, clip_budget=100)  # no more clips than the budget: all of them
    np.testing.assert_allclose(short.clip_logits, every.clip_logits, atol=1e-4)


def test_a_truncated_file_has_its_clips_spread_over_what_it_holds(trained_run, tmp_path):
    model = load_model(trained_run / "best.pt", "cpu")
    whole = write_tone(tmp_path / "whole.wav", 3000, 8.0, rate=16000).read_bytes()
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(whole[: len(whole) // 4])  # the header still promises 8 s: 16 clips, the file holds 4
    result = classify(model, truncated, hop_seconds=0.5, clip_budget=2)
    assert result.clips == 2 and result.clip_starts == [0.5, 1.5]  # spread over 2 s, not over the promised 8
    assert "truncated" in result.warning


def test_a_long_mp3_is_read_by_seeking_to_its_clips_and_a_truncated_one_decoded_whole(trained_run, tmp_path, monkeypatch):
    """A 4-min MP3 decoded whole cost 0.2 s, its 10 clips read by seeking a quarter of that
    (audio.read_clips): the same clips, within float32 rounding; a truncated MP3, whose header
    promises more than it holds, is decoded whole, its clips spread over what it holds."""
    model = load_model(trained_run / "best.pt", "cpu")
    song = write_tone(tmp_path / "long.mp3", 3000, 12.0, rate=44100, channels=2)
    every = classify(model, song, hop_seconds=0.5)
    decoded_whole = []
    decode = inference._decoded_picks
    monkeypatch.setattr(inference, "_decoded_picks", lambda *args: decoded_whole.append(args[0]) or decode(*args))
    some = classify(model, song, hop_seconds=0.5, clip_budget=4)
    assert not decoded_whole and some.clip_starts == [0.5 * i for i in spread_clips(24, 4)]
    np.testing.assert_allclose(some.clip_logits, every.clip_logits[spread_clips(24, 4)], atol=1e-4)
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(song.read_bytes()[: song.stat().st_size // 2])
    result = classify(model, truncated, hop_seconds=0.5, clip_budget=4)
    assert set(decoded_whole) == {str(truncated)} and "truncated: its header promises 12.0 s" in result.warning
    assert result.clip_starts == [0.5 * i for i in spread_clips(every.clips // 2, 4)]


def test_a_lead_is_settled_when_it_stands_out_of_the_clips_spread_and_the_track_left_unread(trained_run):
    model = load_model(trained_run / "best.pt", "cpu")  # two genres
    clear = np.log(np.array([[0.9, 0.1], [0.8, 0.2], [0.85, 0.15]]))
    split = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]))
    assert is_settled(model, clear, n_clips=80)
    assert not is_settled(model, split, n_clips=80)  # a lead of 0.2 +- 0.45 among three clips
    assert is_settled(model, split, n_clips=3)  # every clip was read: nothing is left to change it
    assert not is_settled(model, clear[:1], n_clips=80)  # one clip has no spread to judge by
    # the same lead is surer of a shorter track, which leaves fewer clips unread
    assert is_settled(model, split, n_clips=4, standard_errors=0.5) and not is_settled(model, split, n_clips=80, standard_errors=0.5)


def test_auto_reads_every_clip_of_a_track_its_clips_leave_in_doubt(trained_run, tmp_path):
    model = load_model(trained_run / "best.pt", "cpu")  # trained on low and high tones
    low, high = (sf.read(write_tone(tmp_path / f"{hz}.wav", hz, 3.0))[0] for hz in (300, 3000))
    sf.write(tmp_path / "both.wav", np.concatenate([low, high]), 22050)
    both = classify_files(model, [tmp_path / "both.wav", write_tone(tmp_path / "high.wav", 3000, 6.0)], 0.5, clip_budget=2, settle=True)
    doubtful, clear = list(both)
    assert doubtful.clips == 12 and doubtful.clip_starts == [0.5 * i for i in range(12)]  # one clip of each half: a tie
    assert clear.clips == 2


def test_the_decoding_pool_keeps_the_files_order_and_their_failures(trained_run, tmp_path):
    model = load_model(trained_run / "best.pt", "cpu")
    files = [write_tone(tmp_path / f"{i}.wav", 300 + 500 * i, 1.0 + i) for i in range(5)]
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    files.insert(2, tmp_path / "bad.wav")
    one = list(classify_files(model, files, 0.5, clip_budget=3, decoders=1))
    many = list(classify_files(model, files, 0.5, clip_budget=3, decoders=3))
    assert [r.path for r in many] == [str(f) for f in files]
    assert "not a readable audio file" in many[2].error and many[2].probabilities is None
    for a, b in zip(one, many):
        assert a.clip_starts == b.clip_starts and a.error == b.error
        if not a.error:
            np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    assert [r.clips for r in many] == [2, 3, 0, 3, 3, 3]  # 1 s at a 0.5-s hop is 2 clips; then 3 of 4, 5, 6 ...


def test_cuda_decodes_on_every_core_and_the_cpu_on_a_few():
    network = build("ms-sincresnet", n_classes=2, **TINY)
    assert GenreModel("tiny", network, ["a", "b"], torch.device("cuda")).decoders == machine_cores()
    assert GenreModel("tiny", network, ["a", "b"], torch.device("cpu")).decoders == max(1, machine_cores() // 2)


def test_predict_reads_the_budget_and_the_json_says_which_clips(capsys, weights, tmp_path):  # noqa: F811
    song = write_tone(tmp_path / "song.wav", 440, 6.0, rate=16000)  # 12 half-second clips
    out = tmp_path / "out.json"
    code, _, err = mgc(capsys, "predict", song, "--weights", weights, "--clips", "3", "--json", out, "--hop", "0.5")
    assert code == 0, err
    [record] = json.loads(out.read_text())
    assert record["clips"] == 3 and record["clip_starts"] == [1.0, 3.0, 5.0]
    code, _, err = mgc(capsys, "predict", song, "--weights", weights, "--clips", "all", "--json", out, "--hop", "0.5")
    assert code == 0, err
    assert json.loads(out.read_text())[0]["clip_starts"] == [0.5 * i for i in range(12)]
    code, _, err = mgc(capsys, "predict", song, "--weights", weights, "--clips", "3", "--timeline", "--json", out, "--hop", "0.5")
    assert code == 0, err
    [record] = json.loads(out.read_text())
    assert record["clips"] == 12 and len(record["timeline"]) == 12  # the genre over time reads every clip
    code, _, err = mgc(capsys, "predict", song, "--weights", weights, "--json", out, "--hop", "0.5")  # auto
    assert code == 0, err
    assert json.loads(out.read_text())[0]["clips"] in (10, 12)  # 10, or all 12 where those leave the genre in doubt
    for bad in ("-3", "0", "many"):
        refused(mgc(capsys, "predict", song, "--weights", weights, "--clips", bad), "--clips must be")
        refused(mgc(capsys, "tags", song, "--clips", bad), "--clips must be")


def test_a_long_file_costs_its_budget_in_the_default_model_on_both_engines(tmp_path):
    """The default reads 10 clips of a long track, the same ones and the same answer on both engines."""
    rate = 22050
    t = np.arange(45 * rate) / rate  # 15 clips of 3 s
    sf.write(tmp_path / "long.ogg", (0.3 * np.sin(2 * np.pi * 440 * t * (1 + t / 90))).astype(np.float32), rate)
    onnx_model, torch_model = load_model(None, "cpu", engine="onnx"), load_model(None, "cpu", engine="torch")
    onnx_result = classify(onnx_model, tmp_path / "long.ogg", clip_budget=10)
    torch_result = classify(torch_model, tmp_path / "long.ogg", clip_budget=10)
    assert onnx_result.clips == 10 and onnx_result.clip_starts == torch_result.clip_starts
    assert onnx_result.clip_starts == [3.0 * i for i in spread_clips(15, 10)]
    np.testing.assert_allclose(onnx_result.probabilities, torch_result.probabilities, atol=1e-4)
