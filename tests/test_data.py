"""Finding tracks, splitting them, the decode cache and training clips."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from conftest import write_tone

from mgcli import MgcError
from mgcli.catalogue import find_audio
from mgcli.training.augment import Augment, TrainClips, mask_clip
from mgcli.training.cache import preprocess, read_cache
from mgcli.training.datasets import (
    cache_folders,
    find_tracks,
    labels_of,
    load_datasets,
    pair_split_files,
    split_datasets,
    split_tracks,
    stratified_folds,
    tracks_in_split,
)


def test_folder_per_genre_and_manifest_give_the_same_tracks(tone_dataset, tmp_path):
    tracks = find_tracks(tone_dataset)
    assert len(tracks) == 12 and labels_of(tracks) == ["high", "low"]
    assert tracks[0].key == "high/high.00000.wav"
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\n" + "".join(f"{t.path},{t.label},train\n" for t in tracks))
    from_manifest = find_tracks(manifest)
    assert [(t.path, t.label, t.split) for t in from_manifest] == [(t.path, t.label, "train") for t in tracks]


def test_find_audio_recurses_follows_symlinks_and_keeps_named_files(tone_dataset, tmp_path):
    (tmp_path / "link").symlink_to(tone_dataset, target_is_directory=True)
    (tmp_path / "notes.txt").write_text("not audio")
    found = find_audio([tmp_path, tmp_path / "notes.txt"])
    assert len(found) == 13 and tmp_path / "notes.txt" in found  # named explicitly: reported later


def test_split_file_matches_by_path_or_by_stem(tone_dataset, tmp_path):
    split_file = tmp_path / "splits.csv"
    split_file.write_text(
        "path,genre,split\nlow/low.00000.ogg,low,valid\nlow/low.00001.wav,low,train\nhigh/high.00000.flac,high,test\n"
    )
    split = split_tracks(find_tracks(tone_dataset), split_file=split_file)
    assert [t.key for t in split["valid"]] == ["low/low.00000.wav"]
    assert [t.key for t in split["train"]] == ["low/low.00001.wav"]
    assert [t.key for t in split["test"]] == ["high/high.00000.wav"]


def test_stratified_folds_spread_every_class_evenly():
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 5
    folds = stratified_folds(labels, 5, seed=3)
    for label in "abc":
        per_fold = Counter(f for f, l in zip(folds, labels) if l == label)
        assert max(per_fold.values()) - min(per_fold.values()) <= 1 and len(per_fold) == 5
    assert folds == stratified_folds(labels, 5, seed=3)
    with pytest.raises(MgcError):
        stratified_folds(labels, 1)


def test_fold_and_fraction_splits_are_disjoint_and_complete(tone_dataset):
    tracks = find_tracks(tone_dataset)
    for kwargs in ({"folds": 3, "fold": 1}, {"valid_fraction": 0.25}):
        split = split_tracks(tracks, **kwargs)
        assert sorted(t.key for t in split["train"] + split["valid"]) == sorted(t.key for t in tracks)
        assert {t.label for t in split["valid"]} == {"low", "high"}
    with pytest.raises(MgcError, match="--fold"):
        split_tracks(tracks, folds=3, fold=3)


def test_preprocess_caches_reuses_and_lists_bad_files(tmp_path):
    data = tmp_path / "data"
    write_tone(data / "rock" / "a.wav", 300, 1.5, rate=44100)
    write_tone(data / "rock" / "b.flac", 500, 0.5, rate=8000, format="FLAC")
    (data / "jazz").mkdir()
    (data / "jazz" / "broken.mp3").write_bytes(b"\x00" * 100)
    write_tone(data / "jazz" / "c.ogg", 700, 1.0)
    cache = tmp_path / "cache"
    report = preprocess(find_tracks(data), cache)
    assert (report.cached, report.reused, len(report.failed)) == (3, 0, 1)
    assert "broken.mp3" in report.failed[0][0]
    index = json.loads((cache / "index.json").read_text())
    assert len(index["tracks"]) == 3 and len(index["failed"]) == 1
    cached = {t.key: t for t in read_cache(cache)}
    assert np.load(cached["rock/a.wav"].cache_file).dtype == np.int16
    assert len(np.load(cached["rock/a.wav"].cache_file)) == 24000

    again = preprocess(find_tracks(data), cache)
    assert (again.cached, again.reused) == (0, 3)
    assert find_tracks(cache)[0].cache_file  # a cache is itself a dataset


def test_training_clips_depend_only_on_seed_epoch_and_index(tone_dataset, tmp_path):
    preprocess(find_tracks(tone_dataset), tmp_path)
    tracks = read_cache(tmp_path)
    labels = labels_of(tracks)
    a = TrainClips(tracks, labels, clips_per_track=3, clip_samples=4000, seed=7)
    b = TrainClips(tracks, labels, clips_per_track=3, clip_samples=4000, seed=7)
    assert len(a) == 36
    a.set_epoch(2)
    b.set_epoch(2)
    clip_a, target_a = a[5]
    clip_b, target_b = b[5]
    assert target_a == target_b and clip_a.equal(clip_b) and clip_a.shape == (4000,)
    a.set_epoch(3)
    assert a.plan != b.plan


def test_balanced_drawing_evens_out_classes(tmp_path):
    data = tmp_path / "data"
    for i in range(8):
        write_tone(data / "big" / f"{i}.wav", 300, 0.6, rate=16000, seed=i)
    write_tone(data / "small" / "0.wav", 900, 0.6, rate=16000)
    preprocess(find_tracks(data), tmp_path / "cache")
    tracks = read_cache(tmp_path / "cache")
    clips = TrainClips(tracks, labels_of(tracks), clips_per_track=50, clip_samples=4000, balanced=True)
    drawn = Counter(clips.targets[i] for i, _ in clips.plan)
    assert 0.4 < drawn[1] / len(clips) < 0.6


def test_masks_silence_a_span_and_remove_a_band():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(48000).astype(np.float32)
    masked = mask_clip(noise, 2, np.random.default_rng(1))
    assert masked.shape == noise.shape and masked.dtype == np.float32
    silent = masked == 0.0
    assert 0 < silent.mean() <= 0.2
    # away from the silenced spans the clip is the noise less some bands: it keeps most of its energy
    assert 0.5 < (masked[~silent] ** 2).sum() / (noise[~silent] ** 2).sum() < 1.0
    spectrum = np.abs(np.fft.rfft(np.where(silent, 0.0, masked)))
    assert (spectrum < 1e-3 * spectrum.max()).mean() > 0.001  # a band is gone
    assert np.array_equal(masked, mask_clip(noise, 2, np.random.default_rng(1)))


def test_same_genre_mixing_keeps_the_label_and_changes_the_clip(tone_dataset, tmp_path):
    preprocess(find_tracks(tone_dataset), tmp_path)
    tracks = read_cache(tmp_path)
    labels = labels_of(tracks)
    plain = TrainClips(tracks, labels, 2, 4000, Augment(1.0, 1.0, 0.0), seed=3)
    mixed = TrainClips(tracks, labels, 2, 4000, Augment(1.0, 1.0, 0.0, mix_prob=1.0), seed=3)
    for i in range(len(plain)):
        (a, ya), (b, yb) = plain[i], mixed[i]
        assert ya == yb and not a.equal(b)


# ---------------------------------------------------------------- several datasets


def make_mid_dataset(root, per_class: int = 3):
    """A dataset to go beside the tone dataset: file names of its own, and a genre ("mid") the other lacks."""
    for i in range(per_class):
        write_tone(root / "low" / f"other.low.{i}.wav", 200 + 50 * i, 1.0, seed=i)
        write_tone(root / "mid" / f"other.mid.{i}.wav", 900 + 100 * i, 1.0, seed=i)
    return root


def test_several_datasets_decode_into_caches_of_their_own(tone_dataset, tmp_path):
    other = make_mid_dataset(tmp_path / "other")
    caches = cache_folders([tone_dataset, other], None, tmp_path / "run")
    assert caches == [tmp_path / "run" / "cache-1", tmp_path / "run" / "cache-2"]
    assert cache_folders([other], tmp_path / "c", tmp_path / "run") == [tmp_path / "c"]  # one dataset: as before

    messages = []
    first, second = load_datasets([tone_dataset, other], caches=caches, notify=messages.append)
    assert len(first.tracks) == 12 and len(second.tracks) == 6 and len(messages) == 2
    assert all(t.cache_file.startswith(str(caches[1])) for t in second.tracks)
    assert second.tracks[0].key == "low/other.low.0.wav"  # keys as in the dataset: what split files name
    split = split_datasets([first, second], valid_fraction=0.34)
    assert len(split["train"]) + len(split["valid"]) == 18
    assert labels_of(split["train"]) == ["high", "low", "mid"]  # the union


def test_each_dataset_is_split_by_its_own_split_file(tone_dataset, tmp_path):
    other = make_mid_dataset(tmp_path / "other")
    tone_split, other_split = tmp_path / "tone.csv", tmp_path / "other.csv"
    tone_split.write_text("path,split\nlow/low.00000.wav,train\nhigh/high.00000.wav,valid\n")
    other_split.write_text("path,split\nmid/other.mid.0.wav,train\nlow/other.low.0.wav,valid\nmid/other.mid.1.wav,test\n")
    datasets = load_datasets([tone_dataset, other], [tone_split, other_split])
    split = split_datasets(datasets, folds=2, fold=0)  # split files come first, as with one dataset
    assert [t.key for t in split["train"]] == ["low/low.00000.wav", "mid/other.mid.0.wav"]
    assert [t.key for t in split["valid"]] == ["high/high.00000.wav", "low/other.low.0.wav"]
    assert [t.key for t in tracks_in_split(datasets[1], "test")] == ["mid/other.mid.1.wav"]
    with pytest.raises(MgcError, match="no tracks in split 'test'"):
        tracks_in_split(datasets[0], "test")


def test_split_files_pair_with_datasets_and_keys_must_differ(tone_dataset, tmp_path):
    split_file = tmp_path / "splits.csv"
    split_file.write_text("path,split\nlow/low.00000.wav,train\n")
    assert pair_split_files([tone_dataset], [split_file]) == [split_file]
    assert pair_split_files([tone_dataset, tmp_path], []) == [None, None]
    with pytest.raises(MgcError, match="2 datasets and 1 split files"):
        pair_split_files([tone_dataset, tmp_path], [split_file])
    with pytest.raises(MgcError, match="no such split file"):
        pair_split_files([tone_dataset], [tmp_path / "gone.csv"])
    with pytest.raises(MgcError, match="both hold high/high.00000.wav"):
        load_datasets([tone_dataset, tone_dataset])
