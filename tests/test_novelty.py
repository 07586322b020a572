"""Novelty: the scale, a musicnn that keeps its tagger, and the score through calibrate, export and predict."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SHARED_GTZAN, make_tone_dataset, write_tone
from test_cli import mgc, read_rows
from test_musicnn import TINY_MUSICNN, tiny_tagger

from mgcli import MgcError
from mgcli.checkpoint import load_checkpoint
from mgcli.inference import classify_files, load_model
from mgcli.novelty import IN_GENRE_PASS, NOVELTY_THRESHOLD, OUT_OF_GENRE_TAGS, NoveltyScale, auroc, fit_novelty
from mgcli.shipped import WEIGHTS_DIR

pytestmark = pytest.mark.usefixtures("one_thread")
MSD_TAGS = load_checkpoint(WEIGHTS_DIR / "musicnn-msd.pt")["labels"]


def tag_logits(rng: np.random.Generator, n_tracks: int, level: float) -> list[np.ndarray]:
    """Clip tag logits [5 clips, 50 tags] of tracks whose out-of-genre tags sit around `level`."""
    return [rng.normal(level, 1.0, size=(5, len(MSD_TAGS))) for _ in range(n_tracks)]


def test_the_scale_puts_the_typical_track_at_0_and_lets_95_percent_of_in_genre_tracks_pass():
    rng = np.random.default_rng(0)
    in_genre = tag_logits(rng, 400, -4.0)
    scale = fit_novelty(MSD_TAGS, in_genre)
    assert list(scale.tags) == list(OUT_OF_GENRE_TAGS) and all(MSD_TAGS[i] == t for t, i in scale.tags.items())
    novelty = np.array([scale.novelty(t) for t in in_genre])
    assert np.mean(novelty <= NOVELTY_THRESHOLD) == pytest.approx(IN_GENRE_PASS, abs=0.01)
    assert np.mean(novelty == 0.0) == pytest.approx(0.5, abs=0.01)  # at or below the median: 0
    outside = np.array([scale.novelty(t) for t in tag_logits(rng, 50, 1.0)])
    assert (outside > NOVELTY_THRESHOLD).all() and outside.max() == 1.0
    assert auroc(outside, novelty) > 0.99 and auroc(novelty, novelty) == 0.5


def test_the_scale_refuses_damage_and_too_little_to_fit_on():
    rng = np.random.default_rng(1)
    scale = fit_novelty(MSD_TAGS, tag_logits(rng, 30, -3.0))
    assert NoveltyScale.from_dict(scale.to_dict(), "x") == scale
    for damaged in ({}, {"tags": {}, "typical": 0.1, "threshold": 0.5}, {**scale.to_dict(), "threshold": float("nan")},
                    {**scale.to_dict(), "threshold": scale.typical}, "junk"):
        with pytest.raises(MgcError, match="x: its novelty scale is damaged"):
            NoveltyScale.from_dict(damaged, "x")
    with pytest.raises(MgcError, match="too few"):
        fit_novelty(MSD_TAGS, tag_logits(rng, 5, -3.0))
    with pytest.raises(MgcError, match="no tag 'electronic'"):
        fit_novelty([f"tag{i}" for i in range(50)], tag_logits(rng, 30, -3.0))


def test_given_outside_music_the_weights_are_learnt_from_every_tag_not_only_the_ten():
    rng = np.random.default_rng(2)
    in_genre = tag_logits(rng, 200, -3.0)
    outside = tag_logits(rng, 60, -3.0)
    guitar = MSD_TAGS.index("guitar")  # no out-of-genre tag: music like none of the genres, heard only by its other tags
    for logits in outside:
        logits[:, guitar] += 4.0
    ten = fit_novelty(MSD_TAGS, in_genre)
    learnt = fit_novelty(MSD_TAGS, in_genre, outside)
    assert list(learnt.tags) == MSD_TAGS and max(learnt.weights, key=learnt.weights.get) == "guitar"
    assert NoveltyScale.from_dict(learnt.to_dict(), "x") == learnt
    fresh_in, fresh_out = tag_logits(rng, 100, -3.0), tag_logits(rng, 30, -3.0)
    for logits in fresh_out:
        logits[:, guitar] += 4.0
    score = lambda scale, tracks: np.array([scale.novelty(t) for t in tracks])  # noqa: E731
    assert auroc(score(learnt, fresh_out), score(learnt, fresh_in)) > 0.95
    assert auroc(score(ten, fresh_out), score(ten, fresh_in)) < 0.7
    with pytest.raises(MgcError, match="3 tracks outside the genres: too few"):
        fit_novelty(MSD_TAGS, in_genre, outside[:3])


@pytest.fixture(scope="module")
def tagger_runs(tmp_path_factory):
    """The same tiny musicnn fine-tuned twice from one tagger: with keep_tagger and without; (run, plain run, tagger, data)."""
    from mgcli.training.config import TrainConfig
    from mgcli.training.datasets import find_tracks, labels_of, split_tracks
    from mgcli.training.loop import fit

    root = tmp_path_factory.mktemp("novelty")
    data = make_tone_dataset(root / "tones", per_class=11, seconds=1.0)
    tracks = find_tracks(data)
    split = split_tracks(tracks, valid_fraction=0.3)
    tagger = tiny_tagger(root)
    config = TrainConfig(epochs=3, batch_size=8, optimizer="adam", lr=0.01, warmup_epochs=0, feature_hop_seconds=0.5)
    runs = {}
    for keep in (True, False):
        runs[keep] = root / f"run-{keep}"
        torch.set_num_threads(1)
        fit("musicnn", split["train"], split["valid"], labels_of(tracks), runs[keep], config,
            {**TINY_MUSICNN, "pretrained": "msd", "keep_tagger": keep}, "cpu", init_backbone=str(tagger), verbose=False)
    return runs[True], runs[False], tagger, data


def test_keep_tagger_trains_the_same_genre_network_and_keeps_the_tagger_as_it_was(tagger_runs):
    run, plain, tagger, _ = tagger_runs
    kept, without = (load_checkpoint(r / "last.pt")["state_dict"] for r in (run, plain))
    pretrained = load_checkpoint(tagger)["state_dict"]
    assert {k for k in kept if not k.startswith("tagger.")} == set(without)
    for name, value in without.items():  # drawn apart from the random stream: the same genre network
        assert torch.equal(kept[name], value), name
    tagger_names = [k for k in kept if k.startswith("tagger.")]
    assert tagger_names and all(torch.equal(kept[k], pretrained[k.removeprefix("tagger.")]) for k in tagger_names)

    from mgcli.checkpoint import network_from_checkpoint

    network = network_from_checkpoint(load_checkpoint(run / "last.pt")).eval()
    tags_alone = network_from_checkpoint(load_checkpoint(tagger)).eval()
    wave = torch.randn(3, TINY_MUSICNN["clip_samples"])
    with torch.no_grad():
        logits, tags = network.forward_with_tags(wave)
        torch.testing.assert_close(logits, network(wave))
        torch.testing.assert_close(tags, tags_alone(wave))
    network.train()
    assert not network.tagger.training and not any(p.requires_grad for p in network.tagger.parameters())


def test_keep_tagger_needs_a_frozen_pretrained_front_end():
    from mgcli.models import build

    for settings in ({"pretrained": ""}, {"pretrained": "msd", "freeze": "none"}, {"head": "tags", "n_classes": 50}):
        with pytest.raises(MgcError, match="keep_tagger needs"):
            build("musicnn", keep_tagger=True, **{"pretrained": "msd", **TINY_MUSICNN, **settings})


def test_a_genre_layer_on_the_embedding_and_the_kept_taggers_tags(tmp_path, tagger_runs):
    from mgcli.checkpoint import network_from_checkpoint
    from mgcli.models import build
    from mgcli.training.config import TrainConfig
    from mgcli.training.datasets import find_tracks, labels_of, split_tracks
    from mgcli.training.loop import fit

    _, _, tagger, data = tagger_runs
    with pytest.raises(MgcError, match="needs keep_tagger=true"):
        build("musicnn", head="penultimate+tags", pretrained="msd", **TINY_MUSICNN)
    tracks = find_tracks(data)
    split = split_tracks(tracks, valid_fraction=0.3)
    config = TrainConfig(epochs=2, batch_size=8, optimizer="adam", lr=0.01, warmup_epochs=0, feature_hop_seconds=0.5)
    settings = {**TINY_MUSICNN, "pretrained": "msd", "keep_tagger": True, "head": "penultimate+tags"}
    fit("musicnn", split["train"], split["valid"], labels_of(tracks), tmp_path / "run", config, settings, "cpu",
        init_backbone=str(tagger), verbose=False)
    network = network_from_checkpoint(load_checkpoint(tmp_path / "run" / "last.pt")).eval()
    kept = {k.removeprefix("tagger."): v for k, v in network.state_dict().items() if k.startswith("tagger.")}
    assert all(torch.equal(v, load_checkpoint(tagger)["state_dict"][k]) for k, v in kept.items())  # the tags stay the tagger's
    assert network.head.in_features == TINY_MUSICNN["backend_units"] + 50
    wave = torch.randn(3, TINY_MUSICNN["clip_samples"])
    with torch.no_grad():
        logits, tags = network.forward_with_tags(wave)
        torch.testing.assert_close(logits, network(wave))
        network.tagger.tags.bias += 1.0  # other tags, other genre logits: the genre layer reads them
        assert not torch.allclose(network(wave), logits)


def test_novelty_through_calibrate_export_and_predict(capsys, tagger_runs, tmp_path):
    run, _, _, data = tagger_runs
    checkpoint = tmp_path / "model.pt"
    outside = tmp_path / "outside"  # tones between the two genres': music of neither
    for i, freq in enumerate(np.linspace(700, 1800, 12)):
        write_tone(outside / f"mid.{i}.wav", freq, 1.0, seed=i)
    code, out, err = mgc(capsys, "calibrate", run / "last.pt", "--data", data, "--split", "all", "--hop", "0.5",
                         "--out", checkpoint, "--outside", outside)
    assert code == 0, err
    assert "novelty" in out and "tags weighted" in out and "of the tracks at or under 0.5" in out
    scale = NoveltyScale.from_dict(load_checkpoint(checkpoint)["novelty"], "test")
    files = sorted(data.rglob("*.wav"))

    code, _, err = mgc(capsys, "export", checkpoint, "--format", "onnx", "--out", checkpoint.with_suffix(".onnx"))
    assert code == 0, err
    by_torch = list(classify_files(load_model(checkpoint, "cpu", "torch"), files, 0.5))
    by_onnx = list(classify_files(load_model(checkpoint, "cpu", "onnx"), files, 0.5))
    novelty = np.array([r.novelty for r in by_torch])
    np.testing.assert_allclose([r.novelty for r in by_onnx], novelty, atol=1e-4)
    assert ((0 <= novelty) & (novelty <= 1)).all() and np.mean(novelty <= NOVELTY_THRESHOLD) >= 0.9
    assert load_model(checkpoint.with_suffix(".onnx")).novelty == scale

    table = tmp_path / "tags.csv"
    code, _, err = mgc(capsys, "predict", data, "--weights", checkpoint, "--hop", "0.5", "--csv", table,
                       "--json", tmp_path / "tags.json")
    assert code == 0, err
    with open(table, newline="") as f:
        assert next(csv.reader(f))[-3:] == ["error", "warning", "novelty"]
    rows = {r["path"]: r for r in read_rows(table)}
    for result in by_onnx:
        assert float(rows[result.path]["novelty"]) == pytest.approx(result.novelty, abs=1e-4)
    records = json.loads((tmp_path / "tags.json").read_text())
    assert all(r["novelty"] == pytest.approx(rows[r["path"]]["novelty"] and float(rows[r["path"]]["novelty"]), abs=1e-4) for r in records)

    # --unknown-above 0: every track above the typical in-genre evidence is "unknown", the rest keep their genre
    code, _, err = mgc(capsys, "predict", data, "--weights", checkpoint, "--hop", "0.5", "--csv", table, "--overwrite",
                       "--unknown-above", "0")
    assert code == 0, err
    for row in read_rows(table):
        novel = float(row["novelty"]) > 0
        assert (row["genre"] == "unknown") == novel
        assert float(row["probability"]) == max(float(row[label]) for label in ("high", "low"))
    assert 0 < sum(r["genre"] == "unknown" for r in read_rows(table)) < len(files)


def test_a_single_file_that_fits_no_genre_says_so(capsys, tagger_runs, tmp_path):
    run, _, _, data = tagger_runs
    checkpoint = tmp_path / "model.pt"
    assert mgc(capsys, "calibrate", run / "last.pt", "--data", data, "--split", "all", "--out", checkpoint)[0] == 0
    song = sorted(data.rglob("*.wav"))[0]
    novelty = next(classify_files(load_model(checkpoint, "cpu"), [song])).novelty
    code, out, _ = mgc(capsys, "predict", song, "--weights", checkpoint, "--unknown-above", str(novelty / 2))
    assert code == 0
    said = [line for line in out.splitlines() if "fits none of the 2 genres" in line]
    assert said == ([f"genre: unknown; novelty {novelty:.2f}: this track fits none of the 2 genres well, "
                     "so the genres above are only the nearest"] if novelty > 0 else [])


def test_unknown_above_is_refused_out_of_range_and_for_a_model_without_novelty(capsys, trained_run, tone_dataset):
    song = tone_dataset / "low" / "low.00000.wav"
    code, _, err = mgc(capsys, "predict", song, "--weights", trained_run / "best.pt", "--unknown-above", "0.5")
    assert code == 2 and "gives no novelty score, so --unknown-above cannot apply" in err and "Traceback" not in err
    code, _, err = mgc(capsys, "predict", song, "--weights", trained_run / "best.pt", "--unknown-above", "1.5")
    assert code == 2 and "--unknown-above must be a novelty from 0 to 1, not 1.5" in err


def test_a_csv_written_before_the_novelty_column_resumes(capsys, trained_run, tone_dataset, tmp_path):
    songs = sorted(tone_dataset.rglob("*.wav"))[:2]
    table = tmp_path / "old.csv"
    assert mgc(capsys, "predict", songs[0], "--weights", trained_run / "best.pt", "--csv", table)[0] == 0
    with open(table, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][-1] == "novelty" and rows[1][-1] == ""  # a model without novelty: the column is empty
    with open(table, "w", newline="") as f:  # as an older mgcli wrote it
        csv.writer(f).writerows([row[:-1] for row in rows])
    code, _, err = mgc(capsys, "predict", *songs, "--weights", trained_run / "best.pt", "--csv", table, "--skip-existing")
    assert code == 0, err
    assert "skipping 1 files" in err
    with open(table, newline="") as f:
        resumed = list(csv.reader(f))
    assert resumed[0] == rows[0] and resumed[1] == rows[1] and len(resumed) == 3


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_GTZAN.is_dir(), reason="needs ../shared/data")
def test_the_shipped_default_tells_outside_music_from_the_ten_genres():
    """24 outside valid tracks (every kind) against 24 in-genre valid tracks, 12 of GTZAN and Emotify each.

    The shipped weights were learnt from these outside tracks among others: this checks that the
    shipped score works as calibrated; benchmarks/novelty.py measures it out of fold."""
    shared = SHARED_GTZAN.parent

    def valid(dataset: str, n: int) -> list[str]:
        with open(shared / dataset / "splits.csv", newline="") as f:
            paths = [str(shared / dataset / r["path"]) for r in csv.DictReader(f) if r["split"] == "valid"]
        return paths[:: max(1, len(paths) // n)][:n]

    model = load_model(None, "cpu")
    inside = np.array([r.novelty for r in classify_files(model, valid("gtzan", 12) + valid("emotify", 12))])
    outside = np.array([r.novelty for r in classify_files(model, valid("outside", 24))])
    assert auroc(outside, inside) >= 0.9
    assert np.mean(outside > NOVELTY_THRESHOLD) >= 0.5 and np.mean(inside <= NOVELTY_THRESHOLD) >= 0.8


def test_evaluate_reports_novelty_and_its_auroc_against_outside_music(capsys, tagger_runs, tmp_path):
    run, _, _, data = tagger_runs
    checkpoint = tmp_path / "model.pt"
    assert mgc(capsys, "calibrate", run / "last.pt", "--data", data, "--split", "all", "--out", checkpoint)[0] == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):  # noise: what lies outside the tones' two genres
        sf.write(str(outside / f"noise{i}.wav"), (0.2 * rng.standard_normal(16_000)).astype(np.float32), 16_000)
    (outside / "broken.wav").write_bytes(b"junk")
    code, out, err = mgc(capsys, "evaluate", "--data", data, "--weights", checkpoint, "--outside", outside,
                         "--json", tmp_path / "report.json")
    assert code == 0, err
    assert "broken.wav" in err and "novelty against 3 outside tracks" in out
    novelty = json.loads((tmp_path / "report.json").read_text())["novelty"]
    assert novelty["outside_tracks"] == 3 and 0 <= novelty["auroc"] <= 1 and novelty["pass"] >= 0.9

    inside = np.array([r.novelty for r in classify_files(load_model(checkpoint, "cpu"), sorted(data.rglob("*.wav")))])
    assert novelty["pass"] == pytest.approx(np.mean(inside <= NOVELTY_THRESHOLD))


def test_evaluate_refuses_outside_music_for_a_model_without_novelty(capsys, trained_run, tone_dataset):
    code, _, err = mgc(capsys, "evaluate", "--data", tone_dataset, "--weights", trained_run / "best.pt",
                       "--outside", tone_dataset)
    assert code == 2 and "--outside measures the novelty score, and this model gives none" in err
