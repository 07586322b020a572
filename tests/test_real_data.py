"""Checks on the real GTZAN clips in ../shared/data (skipped where that folder is absent)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_GTZAN

from mgcli import audio
from mgcli.clips import cut_clips
from mgcli.inference import classify, load_model
from mgcli.training.datasets import find_tracks, split_tracks

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_GTZAN.is_dir(), reason="../shared/data/gtzan is not here"),
]


def test_the_artist_aware_split_file_applies():
    split = split_tracks(find_tracks(SHARED_GTZAN), split_file=SHARED_GTZAN / "splits.csv")
    assert (len(split["train"]), len(split["valid"]), len(split["test"])) == (226, 102, 0)
    assert not {t.key for t in split["train"]} & {t.key for t in split["valid"]}


def test_real_clips_decode_to_30_seconds_of_16k_audio():
    for genre in ("blues", "metal", "classical"):
        path = sorted((SHARED_GTZAN / genre).glob("*.ogg"))[0]
        wave = audio.load(path)
        assert 29.5 < len(wave) / audio.SAMPLE_RATE < 30.5
        assert 0.01 < np.sqrt(np.mean(wave**2)) < 1.0
        assert len(cut_clips(wave)) == 10


def test_predict_on_a_real_clip_gives_a_distribution_over_the_labels(trained_run):
    model = load_model(trained_run / "best.pt", "cpu")
    result = classify(model, sorted((SHARED_GTZAN / "jazz").glob("*.ogg"))[0])
    assert result.probabilities.sum() == pytest.approx(1, abs=1e-5) and result.clips == 10


def test_the_shipped_default_names_a_genre_for_every_real_clip_it_is_given():
    model = load_model(None, "cpu")
    for genre in ("blues", "classical", "metal", "pop"):
        result = classify(model, sorted((SHARED_GTZAN / genre).glob("*.ogg"))[-1])
        assert result.probabilities.sum() == pytest.approx(1, abs=1e-5)
        assert model.labels[int(result.probabilities.argmax())] in model.labels and len(model.labels) == 10


@pytest.mark.skipif(
    not os.environ.get("MGC_SLOW_CHECKS"),
    reason="re-scores the card's 3,300 valid clips with musicnn, about 4 minutes: set MGC_SLOW_CHECKS=1",
)
def test_the_model_card_quotes_what_the_shipped_weights_score():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from model_card import figures_markdown, valid_reports

    if not all((SHARED_GTZAN.parent / name).is_dir() for name in ("emotify", "allmusic")):
        pytest.skip("../shared/data/emotify or allmusic is not here")
    # the train-only twin of the default: the one whose valid figures the card can quote
    model = load_model(ROOT / "weights" / "default-train-only.pt", "cpu", engine="torch")
    card = (ROOT / "weights" / "README.md").read_text()
    assert figures_markdown(valid_reports(model, SHARED_GTZAN.parent), model.labels) in card
