"""`mgc predict --shard I/N`: N machines tag disjoint shares of a catalogue whose CSVs concatenate into one."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_tone
from test_cli import mgc, read_rows

from mgcli import MgcError
from mgcli.catalogue import parse_shard, shard_files


def catalogue(root: Path, count: int) -> list[Path]:
    files = [root / f"artist{i % 7}" / f"track{i:03d}.mp3" for i in range(count)]
    for file in files:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.touch()
    return sorted(files)


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_shards_partition_the_files_exactly(tmp_path, count):
    files = catalogue(tmp_path / "music", 200)
    shards = [shard_files(files, [tmp_path / "music"], index, count) for index in range(count)]
    assert sorted(f for shard in shards for f in shard) == files  # every file once: no loss, no overlap
    assert all(shard == sorted(shard) for shard in shards)
    if count > 1:
        assert min(map(len, shards)) > 200 / count / 2  # a fair share each, not one shard with everything


def test_a_file_keeps_its_shard_when_the_catalogue_grows_or_moves(tmp_path):
    old = catalogue(tmp_path / "a", 50)
    grown = catalogue(tmp_path / "b", 80)  # the same 50 files and 30 more, mounted elsewhere
    for index in range(4):
        before = {f.relative_to(tmp_path / "a") for f in shard_files(old, [tmp_path / "a"], index, 4)}
        after = {f.relative_to(tmp_path / "b") for f in shard_files(grown, [tmp_path / "b"], index, 4)}
        assert before <= after


@pytest.mark.parametrize("text", ["4/4", "1", "-1/4", "a/b", "0/0", "1/2/3"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(MgcError, match="--shard must be I/N"):
        parse_shard(text)


def test_shard_csvs_concatenate_into_the_whole_run(capsys, trained_run, tmp_path):
    music = tmp_path / "music"
    for i in range(6):
        write_tone(music / f"song{i}.wav", 300 + 700 * i, 1.0)
    weights = trained_run / "best.pt"
    code, _, _ = mgc(capsys, "predict", music, "--weights", weights, "--csv", tmp_path / "all.csv")
    assert code == 0
    parts = []
    for index in range(3):
        code, _, _ = mgc(capsys, "predict", music, "--weights", weights, "--shard", f"{index}/3", "--csv", tmp_path / f"part{index}.csv")
        assert code == 0
        parts += read_rows(tmp_path / f"part{index}.csv")
    whole = read_rows(tmp_path / "all.csv")
    assert sorted(parts, key=lambda row: row["path"]) == whole

    code, _, err = mgc(capsys, "predict", music, "--weights", weights, "--shard", "3/3")
    assert code == 2 and "--shard must be I/N" in err
