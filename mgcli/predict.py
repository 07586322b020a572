"""Runs over many files, `mgc predict` and `mgc tags` as library calls: paths in, results out,
each result written to the output files as it comes.

`predict_paths` and `tag_paths` refuse bad input (a hop, an output that cannot be written, a
shard) before the model is loaded or any file decoded, find the files, load the model and open
the writers; the `Run` they return yields one result per file, in order, so that a caller can
show progress. A file that fails is a result with an error, never the end of the run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import MgcError, inference
from .audio import DEFAULT_HOP_SECONDS, SAMPLE_RATE
from .catalogue import find_audio, parse_shard, shard_files
from .clips import AUTO_CLIPS, check_clip_budget, hop_samples
from .files import check_outputs
from .inference import (
    Model, TrackResult, check_aggregation, check_batch_size, classify_files, load_model, model_files, refuse_tagger,
)
from .shipped import DEFAULT_TAGGER, default_weights
from .tags import load_tagger, tag_files
from .writers import CsvWriter, JsonWriter, TimelineCsvWriter, check_replaceable, earlier_records, result_dict, tags_dict


@dataclass
class Run:
    """A run over files: the model, the files and, as they come, their results."""

    model: Model
    files: list[Path]  # every file named (of this shard)
    todo: list[Path]  # those an earlier run has not finished (see predict_paths' skip_existing)
    results: Iterator[TrackResult]  # one per file of `todo`, in order, each already written out
    timeline: Callable[[TrackResult], list[dict]] | None = None  # predict's: a result's clips (inference.timeline)


def predict_paths(
    paths: Iterable[str | Path],
    weights: str | Path | None = None,
    top_k: int = 3,
    csv: str | Path | None = None,
    json_out: str | Path | None = None,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    aggregation: str = "mean_prob",
    batch_size: int | None = None,
    skip_existing: bool = False,
    shard: str | None = None,
    overwrite: bool = False,
    timeline: bool = False,
    timeline_csv: str | Path | None = None,
    timeline_png: str | Path | None = None,
    device: str = "auto",
    engine: str = "auto",
    unknown_above: float | None = None,
    clip_budget: int | None = AUTO_CLIPS,
    settle: bool = True,
) -> Run:
    """Tag the audio files in `paths` (files and folders, searched recursively) with their genre.

    Outputs, each optional: `csv` (one row per file; `skip_existing` resumes it, `overwrite`
    replaces it), `json_out` (the `top_k` genres and every probability per file, with every
    clip's when `timeline`), `timeline_csv` (one row per clip) and `timeline_png` (one
    file's clips drawn; needs mgcli[plot]). `shard` "I/N" keeps shard I of N of the files.
    `unknown_above`: the outputs name the genre of a track whose novelty is above it "unknown"
    (novelty.py; the model must give a novelty score). `clip_budget` N: each track is heard in N
    clips spread over it (None: every clip), and with `settle` in every clip where those leave
    its genre in doubt (inference.classify_files); a timeline reads every clip.
    """
    check_aggregation(aggregation)
    if unknown_above is not None and not 0.0 <= unknown_above <= 1.0:
        raise MgcError(f"--unknown-above must be a novelty from 0 to 1, not {unknown_above:g}")
    if timeline_csv and skip_existing:
        raise MgcError("--timeline-csv cannot resume; leave out --skip-existing or write the timeline in a run of its own")
    if skip_existing and overwrite:
        raise MgcError("--skip-existing keeps the CSV's rows and --overwrite replaces them: pass one of them")
    files = _files(paths, weights or default_weights(), hop_seconds, batch_size, clip_budget,
                   (csv, json_out, timeline_csv, timeline_png), shard)
    if timeline or timeline_csv or timeline_png:
        clip_budget = None  # the genre over time is wanted all of the time
    if timeline_png:
        from .explain.plot import draw_timeline, require_matplotlib

        require_matplotlib()
        if len(files) != 1:
            raise MgcError(f"--timeline-png draws one track, and {len(files)} files were given")
    if not skip_existing:
        check_replaceable(csv, overwrite, resumable=True)
    check_replaceable(timeline_csv, overwrite, resumable=False)
    earlier = earlier_records(json_out) if json_out and skip_existing else []  # a resumed run keeps them
    model = load_model(weights, device, engine)
    refuse_tagger(model, weights)
    if unknown_above is not None and model.novelty is None:
        raise MgcError(f"{weights or 'the default'}: gives no novelty score, so --unknown-above cannot apply "
                       "(a musicnn that keeps its tagger, calibrated with `mgc calibrate`, gives one)")
    with contextlib.ExitStack() as opening:  # a writer that fails to open closes those opened before it
        rows = opening.enter_context(contextlib.closing(CsvWriter(
            csv, model.labels, skip_existing, overwrite, novelty=True, unknown_above=unknown_above, retried=files
        ))) if csv else None
        clip_rows = opening.enter_context(contextlib.closing(
            TimelineCsvWriter(timeline_csv, model.labels, overwrite)
        )) if timeline_csv else None
        if rows and rows.sample:
            _check_same_model(rows, model, hop_seconds, aggregation, batch_size, clip_budget, settle)
        todo = [f for f in files if not (rows and rows.is_done(f))]
        tagged_now = {os.path.realpath(f) for f in todo}
        records = opening.enter_context(contextlib.closing(JsonWriter(
            json_out, [r for r in earlier if os.path.realpath(r["path"]) not in tagged_now]
        ))) if json_out else None
        writers = opening.pop_all()

    def clips_of(result: TrackResult) -> list[dict]:
        return inference.timeline(
            result.clip_logits, model.labels, hop_samples(hop_seconds) / SAMPLE_RATE, model.clip_samples / SAMPLE_RATE
        )

    def results() -> Iterator[TrackResult]:
        first = None
        with writers:
            for result in classify_files(model, todo, hop_seconds, aggregation, batch_size, clip_budget, settle=settle):
                if records:  # before its row: a file the CSV has finished is in the JSON too, however the run ends
                    records.write(result_dict(
                        result, model.labels, top_k, clips_of(result) if timeline and not result.error else None, unknown_above
                    ))
                if rows:
                    rows.write(result)
                if clip_rows and not result.error:
                    clip_rows.write(result.path, clips_of(result))
                first = first or result
                yield result
        if timeline_png and first and not first.error:
            draw_timeline(timeline_png, clips_of(first), model.labels, Path(first.path).name)

    return Run(model, files, todo, results(), clips_of)


# How far a finished file's probabilities may move when it is tagged again: its row rounds them
# to 4 decimals, and the engines agree within 1e-4.
SAME_MODEL_TOLERANCE = 5e-4


def _check_same_model(
    rows: CsvWriter, model: Model, hop_seconds: float, aggregation: str, batch_size: int | None, clip_budget: int | None,
    settle: bool,
) -> None:
    """Refuse to resume a CSV that another model, or other settings, wrote (the CSV's columns name
    the labels, not the model): one finished file is tagged again, and must give its row's
    probabilities. A file no longer there proves nothing, and is let be."""
    path, written = rows.sample
    [result] = classify_files(model, [path], hop_seconds, aggregation, batch_size, clip_budget, settle=settle)
    if result.probabilities is not None and np.abs(result.probabilities - written).max() > SAME_MODEL_TOLERANCE:
        raise MgcError(f"{rows.path}: its rows were written by another model or with another --hop or --aggregate "
                       f"({path} now gives other probabilities); resume it with those, or write a new CSV")


def tag_paths(
    paths: Iterable[str | Path],
    weights: str | Path | None = None,
    csv: str | Path | None = None,
    json_out: str | Path | None = None,
    overwrite: bool = False,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    batch_size: int | None = None,
    device: str = "auto",
    engine: str = "auto",
    clip_budget: int | None = None,
    settle: bool = False,
) -> Run:
    """musicnn's tags of the audio files in `paths`, written to `csv` and `json_out` (see `predict_paths`)."""
    files = _files(paths, weights or DEFAULT_TAGGER, hop_seconds, batch_size, clip_budget, (csv, json_out), None)
    check_replaceable(csv, overwrite, resumable=False)
    model = load_tagger(weights, device, engine)
    with contextlib.ExitStack() as opening:  # a writer that fails to open closes the one opened before it
        rows = opening.enter_context(contextlib.closing(
            CsvWriter(csv, model.labels, overwrite=overwrite, top="tag")
        )) if csv else None
        records = opening.enter_context(contextlib.closing(JsonWriter(json_out))) if json_out else None
        writers = opening.pop_all()

    def results() -> Iterator[TrackResult]:
        with writers:
            for result in tag_files(model, files, hop_seconds, batch_size, clip_budget, settle):
                if records:
                    records.write(tags_dict(result, model.labels))
                if rows:
                    rows.write(result)
                yield result

    return Run(model, files, files, results())


def _files(
    paths: Iterable[str | Path], weights: str | Path, hop_seconds: float, batch_size: int | None, clip_budget: int | None,
    outputs: tuple, shard: str | None,
) -> list[Path]:
    """The audio files to run on, once the hop, the batch, the clip budget and every output are known to be
    good (and apart from the inputs: the files and the model's, `weights` and its twin)."""
    paths = list(paths)
    hop_samples(hop_seconds)  # these refuse bad input now, not after hours of tagging
    check_batch_size(batch_size)
    check_clip_budget(clip_budget)
    shard_index, shard_count = parse_shard(shard) if shard else (0, 1)
    files = find_audio(paths)
    if not files:
        raise MgcError("no audio files found in " + ", ".join(map(str, paths)))
    check_outputs(outputs, [*files, *model_files(weights)])
    return shard_files(files, paths, shard_index, shard_count)
