"""Set labels (`pop|rock|metal`: the track is one of these genres) and validation per dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_tone_dataset, write_tone

from mgcli.calibration import negative_log_likelihood
from mgcli.checkpoint import load_checkpoint
from mgcli.training.datasets import apply_split_file, find_tracks, labels_of, parse_label, target_masks, target_names
from mgcli.training.evaluate import evaluate, label_report
from mgcli.training.train import train

MEL = {"n_mels": 16, "clip_samples": 8000}


def test_a_set_label_has_one_spelling_and_names_genres_not_a_class(tmp_path):
    assert parse_label(" rock | pop|metal|pop ") == "metal|pop|rock"
    assert parse_label("jazz") == "jazz" and parse_label(" | ") == ""
    write_tone(tmp_path / "a.wav", 200, 1.0)
    write_tone(tmp_path / "b.wav", 3000, 1.0)
    (tmp_path / "m.csv").write_text("path,label\na.wav,jazz\nb.wav,rock|pop\n")
    tracks = find_tracks(tmp_path / "m.csv")
    assert [t.label for t in tracks] == ["jazz", "pop|rock"]
    assert labels_of(tracks) == ["jazz", "pop", "rock"]
    names = target_names(labels_of(tracks), tracks)
    assert names == ["jazz", "pop", "rock", "pop|rock"]
    assert target_masks(names, ["jazz", "pop", "rock"]).tolist()[-1] == [False, True, True]


def test_a_split_files_genres_column_labels_its_tracks(tmp_path):
    data = tmp_path / "d"
    write_tone(data / "pop_rock" / "x.wav", 300, 1.0)
    write_tone(data / "jazz" / "y.wav", 300, 1.0)
    (tmp_path / "splits.csv").write_text("path,genre,genres,split\npop_rock/x.wav,pop_rock,pop|rock|metal,train\njazz/y.wav,jazz,,valid\n")
    tracks = apply_split_file(find_tracks(data), tmp_path / "splits.csv")
    assert {t.key: (t.label, t.split) for t in tracks} == {"pop_rock/x.wav": ("metal|pop|rock", "train"), "jazz/y.wav": ("jazz", "valid")}
    assert labels_of(tracks) == ["jazz", "metal", "pop", "rock"]


def test_a_set_is_scored_right_when_the_answer_is_in_it_on_a_row_of_its_own():
    labels = ["jazz", "metal", "pop", "rock"]
    one = lambda *genres: np.isin(labels, genres)  # noqa: E731
    truths = [one("jazz"), one("jazz"), one("pop", "rock", "metal"), one("pop", "rock", "metal"), one("pop", "rock", "metal")]
    report = label_report(truths, [0, 2, 3, 1, 0], labels)
    assert report["accuracy"] == 0.5 and report["count"] == 2  # the one-genre tracks alone
    [row] = report["sets"]
    assert row == {"label": "metal|pop|rock", "support": 3, "recall": pytest.approx(2 / 3), "answers": {"rock": 1, "metal": 1, "jazz": 1}}
    assert report["macro"]["recall"] == pytest.approx((0.5 + 2 / 3) / 2)  # jazz's recall and the set's
    # a set's likelihood is its summed probability
    probabilities = np.array([[0.1, 0.2, 0.3, 0.4]])
    assert negative_log_likelihood(probabilities, np.array([[False, True, True, True]])) == pytest.approx(-np.log(0.9))


def test_training_on_two_datasets_with_a_set_label_chooses_on_each_and_evaluates_the_set(tmp_path, one_thread):
    first = make_tone_dataset(tmp_path / "first", per_class=4, seconds=1.0)
    (tmp_path / "first.csv").write_text("path,split\n" + "".join(
        f"{g}/{g}.{i:05d}.wav,{'valid' if i == 0 else 'train'}\n" for g in ("low", "high") for i in range(4)))
    second = tmp_path / "second"
    for i in range(4):  # a folder the split file labels "high or low", as AllMusic's pop_rock/
        write_tone(second / "either" / f"e{i}.wav", 300 if i % 2 else 4000, 1.0, seed=i)
    (tmp_path / "second.csv").write_text("path,genres,split\n" + "".join(
        f"either/e{i}.wav,high|low,{'valid' if i < 2 else 'train'}\n" for i in range(4)))
    out = tmp_path / "run"
    history = train([first, second], out, "mel-linear", MEL, [tmp_path / "first.csv", tmp_path / "second.csv"],
                    epochs=2, batch_size=4, warmup_epochs=0, lr=0.01, eval_hop_seconds=0.5, device="cpu")
    assert load_checkpoint(out / "last.pt")["labels"] == ["high", "low"]  # the set never became a class
    by_dataset = history[-1]["valid_by_dataset"]
    assert list(by_dataset) == [str(first), str(second)]
    assert history[-1]["valid_mean_macro_recall"] == pytest.approx(np.mean([d["macro_recall"] for d in by_dataset.values()]))
    json_out = tmp_path / "eval.json"
    evaluate([second], out / "last.pt", [tmp_path / "second.csv"], "valid", hop_seconds=0.5, json_out=json_out, device="cpu")
    [row] = json.loads(json_out.read_text())["track"]["sets"]
    assert row["label"] == "high|low" and row["support"] == 2 and row["recall"] == 1.0  # every answer is high or low
    # the final model: the valid tracks train too, and nothing validates
    final = train([first, second], tmp_path / "final", "mel-linear", MEL, [tmp_path / "first.csv", tmp_path / "second.csv"],
                  train_on_valid=True, epochs=1, batch_size=4, warmup_epochs=0, device="cpu")
    assert "valid_loss" not in final[-1]
    assert load_checkpoint(tmp_path / "final" / "last.pt")["train"]["split"] == {
        "train": sorted([f"{g}/{g}.{i:05d}.wav" for g in ("low", "high") for i in range(4)] + [f"either/e{i}.wav" for i in range(4)]),
        "valid": []}
