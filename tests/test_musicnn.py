"""The musicnn port against musicnn's own TensorFlow outputs (tests/fixtures/musicnn-reference.npz)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mgcli import audio
from mgcli.checkpoint import WEIGHTS_DIR, load_checkpoint, model_from_checkpoint

from conftest import SHARED_GTZAN

REFERENCE = np.load(Path(__file__).parent / "fixtures" / "musicnn-reference.npz")
FILES = sorted({key.split("/")[0] for key in REFERENCE.files}, key=int)
TAGGERS = {"MSD_musicnn": "musicnn-msd.pt", "MTT_musicnn": "musicnn-mtt.pt",
           "MSD_vgg": "musicnn-vgg-msd.pt", "MTT_vgg": "musicnn-vgg-mtt.pt"}
MUSICNN_PATCH_HOP = 187 * 256  # musicnn's patches follow each other every 187 frames


def tagger(file_name: str):
    return model_from_checkpoint(load_checkpoint(WEIGHTS_DIR / file_name), torch.device("cpu")).network


@pytest.mark.parametrize("model", TAGGERS)
def test_port_matches_musicnn_on_the_same_log_mel(model):
    network = tagger(TAGGERS[model])
    for i in FILES:
        log_mel = torch.from_numpy(REFERENCE[f"{i}/log_mel"])
        with torch.no_grad():
            tags = torch.sigmoid(network.tag_logits_from_mel(log_mel)).numpy()
            np.testing.assert_allclose(tags, REFERENCE[f"{i}/{model}/tags"], atol=1e-4)
            if "musicnn" in model:
                penultimate = network.embed(log_mel)[1].numpy()
                np.testing.assert_allclose(penultimate, REFERENCE[f"{i}/{model}/penultimate"], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("model", TAGGERS)
def test_port_matches_musicnn_end_to_end_from_audio(model):
    """Our decoder and front end against librosa's and musicnn's, on the real files."""
    data = SHARED_GTZAN.parent
    if not data.is_dir():
        pytest.skip("../shared/data is absent")
    network = tagger(TAGGERS[model])
    for i in FILES:
        wave = audio.load(data / str(REFERENCE[f"{i}/path"]))
        clips = audio.cut_clips(wave, hop=MUSICNN_PATCH_HOP)
        full = [c for start, c in zip(range(0, len(wave), MUSICNN_PATCH_HOP), clips) if start + audio.CLIP_SAMPLES <= len(wave)]
        with torch.no_grad():
            tags = torch.sigmoid(network(torch.from_numpy(np.stack(full)))).mean(dim=0).numpy()
        reference = REFERENCE[f"{i}/{model}/track_tags"]
        np.testing.assert_allclose(tags, reference, atol=0.02)
        # The same top 5, up to a swap with a tag that ties musicnn's 5th within 0.005 (two VGG cases).
        fifth = np.sort(reference)[-5]
        assert set(np.argsort(-tags)[:5]) <= set(np.flatnonzero(reference >= fifth - 0.005))


def _musicnn_wheel() -> Path | None:
    wheel = os.environ.get("MUSICNN_WHEEL")
    return Path(wheel) if wheel and Path(wheel).is_file() else None


def test_converter_on_the_real_wheel_gives_the_shipped_weights(tmp_path):
    from mgcli.convert_musicnn import convert, installed_package

    wheel = _musicnn_wheel()
    if wheel is None:
        try:
            installed_package()
        except Exception:
            pytest.skip("no musicnn wheel (set MUSICNN_WHEEL) and no musicnn package installed")
    written = convert(wheel, tmp_path)
    assert {p.name for p in written} >= set(TAGGERS.values())
    for name in TAGGERS.values():
        new, shipped = load_checkpoint(tmp_path / name), load_checkpoint(WEIGHTS_DIR / name)
        assert new["labels"] == shipped["labels"] and len(new["labels"]) == 50
        for key, value in shipped["state_dict"].items():
            assert torch.equal(new["state_dict"][key], value), key
