"""`mgc tags`: musicnn's 50 tags with their probabilities, from the shipped tagger weights/musicnn-msd.pt."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_tone
from test_cli import mgc, read_rows

from mgcli import MgcError
from mgcli.tags import DEFAULT_TAGGER, load_tagger, tag, tag_probabilities

pytestmark = pytest.mark.skipif(not DEFAULT_TAGGER.is_file(), reason="no shipped musicnn weights")


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_tone(tmp_path_factory.mktemp("tags") / "song.wav", 440, 6.0, rate=16000)


def test_tag_probabilities_are_each_clips_sigmoid_averaged():
    logits = np.array([[0.0, 2.0, -800.0], [2.0, -2.0, 800.0]])
    sigmoid = 1 / (1 + np.exp(-np.clip(logits, -50, 50)))
    assert tag_probabilities(logits) == pytest.approx(sigmoid.mean(axis=0))  # no overflow at +-800


def test_tag_gives_all_50_tags_most_probable_first(song, one_thread):
    tags = tag(load_tagger(device="cpu"), song)
    assert len(tags) == 50 and "rock" in tags and "female vocalists" in tags
    probabilities = list(tags.values())
    assert all(0 <= p <= 1 for p in probabilities) and probabilities == sorted(probabilities, reverse=True)
    with pytest.raises(MgcError, match="no such file"):
        tag(load_tagger(device="cpu"), song.with_name("gone.wav"))


def test_tags_prints_the_top_k_and_writes_every_tag_as_json(capsys, song, tmp_path, one_thread):
    code, out, err = mgc(capsys, "tags", song, "--top-k", "5", "--json", tmp_path / "t.json", "--device", "cpu")
    assert code == 0, err
    [record] = json.loads((tmp_path / "t.json").read_text())
    assert record["clips"] == 2 and len(record["tags"]) == 50
    top = list(record["tags"])[:5]
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.count("│") == 3]
    assert rows == top  # the table: the five most probable, in order


def test_tags_of_a_folder_to_csv_go_past_a_bad_file(capsys, song, tmp_path, one_thread):
    (tmp_path / "broken.wav").write_text("not audio")
    csv_file = tmp_path / "tags.csv"
    code, out, err = mgc(capsys, "tags", song, tmp_path / "broken.wav", "--csv", csv_file,
                         "--weights", DEFAULT_TAGGER.with_name("musicnn-mtt.pt"), "--device", "cpu")
    assert code == 1 and "failed:" in err and str(song) in out
    rows = {row["path"]: row for row in read_rows(csv_file)}
    good, bad = rows[str(song)], rows[str(tmp_path / "broken.wav")]
    assert list(good)[:3] == ["path", "tag", "probability"] and len(good) == 3 + 50 + 2 and "guitar" in good
    assert good["tag"] and float(good["probability"]) == max(float(good[t]) for t in list(good)[3:53])
    assert bad["error"] and not bad["tag"]


def test_a_genre_classifier_is_no_tagger(capsys, song):
    code, _, err = mgc(capsys, "tags", song, "--weights", DEFAULT_TAGGER.with_name("default.pt"))
    assert code == 2 and "not a tagger" in err and len(err.strip().splitlines()) == 1
