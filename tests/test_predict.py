"""Track aggregation and predicting whole files, short and long."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_tone

from mgcli import MgcError
from mgcli.inference import aggregate, classify, load_model, top_k


def test_aggregations():
    logits = np.log(np.array([[0.6, 0.4], [0.6, 0.4], [0.1, 0.9]]))
    np.testing.assert_allclose(aggregate(logits, "mean_prob"), [1.3 / 3, 1.7 / 3])
    vote = aggregate(logits, "vote")
    assert vote.argmax() == 0 and vote.sum() == pytest.approx(1)  # two clips of three vote for 0
    mean_logit = aggregate(logits, "mean_logit")
    assert mean_logit.sum() == pytest.approx(1) and mean_logit.argmax() == 1
    with pytest.raises(MgcError):
        aggregate(logits, "median")


def test_a_tied_vote_is_broken_by_the_mean_probability():
    logits = np.log(np.array([[0.51, 0.49], [0.05, 0.95]]))
    assert aggregate(logits, "vote").argmax() == 1


def test_top_k_is_sorted():
    assert top_k(np.array([0.1, 0.7, 0.2]), ["a", "b", "c"], 2) == [("b", 0.7), ("c", 0.2)]


def test_classify_short_and_long_files(trained_run, tmp_path):
    model = load_model(trained_run / "best.pt", "cpu")
    short = classify(model, write_tone(tmp_path / "short.wav", 300, 0.2), hop_seconds=0.5)
    assert short.clips == 1 and short.probabilities.sum() == pytest.approx(1, abs=1e-5)
    long = classify(model, write_tone(tmp_path / "long.ogg", 3000, 12.0, rate=44100), hop_seconds=0.5)
    assert long.clips == 24  # 0.5-s clips every 0.5 s over 12 s, nothing wrapped
    assert model.labels[int(long.probabilities.argmax())] == "high"


def test_the_shipped_default_answers_without_weights_given(tmp_path):
    model = load_model(None, "cpu")
    assert len(model.labels) == 10 and "metal" in model.labels
    result = classify(model, write_tone(tmp_path / "song.mp3", 440, 4.0, rate=44100))
    assert result.probabilities.sum() == pytest.approx(1, abs=1e-5)
    assert model.labels[int(result.probabilities.argmax())] in model.labels


def test_batch_size_changes_speed_not_results(tmp_path):
    model = load_model(None, "cpu")
    assert model.batch_size == 4  # the CPU's default: a few clips' activations stay in cache
    song = write_tone(tmp_path / "song.wav", 220, 20.0, rate=16000)
    by_default = classify(model, song, hop_seconds=1.0)
    assert by_default.clips == 18
    for batch_size in (1, 7, 16):
        other = classify(model, song, hop_seconds=1.0, batch_size=batch_size)
        np.testing.assert_allclose(other.clip_logits, by_default.clip_logits, atol=1e-4)
