"""Writers: the results of `predict` and `tags` as CSV, per-clip timeline CSV and JSON files.

The CSV's columns (`path,genre,probability,<one per label>,error,warning`, and predict's
`novelty` after them) are read by other tools: keep them stable, and add new ones at the end.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from . import MgcError, first_line
from .files import AppendedFile, OutputLock, read_csv_rows
from .inference import TrackResult, genre_of, top_k


# The columns of predict's and tags' CSV beside the labels': no label may take one of their names.
CSV_COLUMNS = ("path", "genre", "tag", "probability", "error", "warning", "novelty")


class CsvWriter:
    """Rows `path,genre,probability,<one column per label>,error,warning`, on disk as they are written
    (`top` names the second column: "tag" for `mgc tags`); with `novelty`, predict's, a last column
    `novelty` (empty where the model gives none), and `unknown_above` turns the genre of a track whose
    novelty is above it into "unknown" (inference.genre_of; `probability` stays its top genre's).

    `resume=True` keeps the rows of an earlier, interrupted run (dropping a torn last line, and
    the failed rows of `retried`, this run's files, which it tries again) so that its finished
    files are skipped; otherwise an existing file is only replaced when `overwrite=True`, so no
    earlier results are lost by accident. While it is open no other run can write the file
    (files.OutputLock).
    """

    def __init__(
        self, path: str | Path, labels: list[str], resume: bool = False, overwrite: bool = False, top: str = "genre",
        novelty: bool = False, unknown_above: float | None = None, retried: Iterable[str | Path] = (),
    ):
        self.path = Path(path)
        self.labels = labels
        self.unknown_above = unknown_above
        self.header = ["path", top, "probability", *labels, "error", "warning", *(["novelty"] if novelty else [])]
        self.done: set[str] = set()  # the kept rows' files, as real paths: see is_done
        self.sample: tuple[str, np.ndarray] | None = None  # a kept row's file and its probabilities, to check the model by
        self.lock = OutputLock(self.path)
        try:
            kept: list[list[str]] = []
            if resume and self.path.is_file():
                kept = self._kept_rows({os.path.realpath(path) for path in retried})
                error = self.header.index("error")
                finished = [row for row in kept if not row[error]]
                self.done = {os.path.realpath(row[0]) for row in finished}
                with contextlib.suppress(IndexError, ValueError):  # no finished row, or cells that are no numbers: no sample
                    self.sample = finished[0][0], np.array([float(p) for p in finished[0][3 : 3 + len(labels)]])
            elif not resume:
                check_replaceable(self.path, overwrite, resumable=True)
            self.file = AppendedFile(self.path, csv_text([self.header, *kept]))
        except BaseException:
            self.lock.release()
            raise

    def is_done(self, path: str | Path) -> bool:
        """Whether a kept row tagged this file, however either path is spelt (relative, absolute, via links)."""
        return os.path.realpath(path) in self.done

    def _kept_rows(self, retried: set[str]) -> list[list[str]]:
        """The whole rows but the failed ones of `retried` (real paths), widened to the current
        header if the file predates its last columns (warning, novelty): those cells stay empty.

        An empty file (a run stopped before its header was written) has none.
        """
        rows = read_csv_rows(self.path, errors="surrogateescape")  # names that are not UTF-8 are their bytes
        if not rows:
            return []
        older = [self.header[:width] for width in range(self.header.index("warning"), len(self.header))]
        if rows[0] not in (self.header, *older):
            raise MgcError(f"{self.path}: written for other labels or by another tool; cannot resume it")
        width, error = len(rows[0]), self.header.index("error")
        whole = [row for row in rows[1:] if len(row) == width and (row[error] or row[2])]
        kept = [row for row in whole if not (row[error] and os.path.realpath(row[0]) in retried)]
        return [row + [""] * (len(self.header) - width) for row in kept]

    def write(self, result: TrackResult) -> None:
        if result.probabilities is None:
            row = [result.path, "", "", *[""] * len(self.labels), result.error, ""]
        else:
            best = int(np.argmax(result.probabilities))
            probs = [f"{p:.4f}" for p in result.probabilities]
            genre = genre_of(result, self.labels, self.unknown_above)
            row = [result.path, genre, probs[best], *probs, "", result.warning]
        if len(self.header) > len(row):  # the novelty column
            row.append("" if result.novelty is None else f"{result.novelty:.4f}")
        self.file.append(csv_text([row]))

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.lock.release()


class TimelineCsvWriter:
    """Rows `path,start,end,genre,probability,<one column per label>`: one per clip of every tagged file.

    The records of `inference.timeline`; files that failed get no rows. Like CsvWriter it never replaces an
    existing file unless `overwrite=True`, and holds it against other runs; it cannot resume one.
    """

    def __init__(self, path: str | Path, labels: list[str], overwrite: bool = False):
        self.path = Path(path)
        self.labels = labels
        self.lock = OutputLock(self.path)
        try:
            check_replaceable(self.path, overwrite, resumable=False)
            self.file = AppendedFile(self.path, csv_text([["path", "start", "end", "genre", "probability", *labels]]))
        except BaseException:
            self.lock.release()
            raise

    def write(self, path: str, timeline: list[dict]) -> None:
        rows = []
        for s in timeline:
            probs = [f"{s['probabilities'][label]:.4f}" for label in self.labels]
            window = [f"{s['start']:.3f}", f"{s['end']:.3f}"]
            rows.append([path, *window, s["genre"], f"{s['probability']:.4f}", *probs])
        self.file.append(csv_text(rows))

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.lock.release()


def check_replaceable(path: str | Path | None, overwrite: bool, resumable: bool) -> None:
    """Refuse an existing file that a run would replace without `overwrite`, so that no earlier results
    are lost by accident; `resumable`: the command could resume it instead (--skip-existing). Commands
    call it before their work too, so that no output is written before another is refused."""
    if path and Path(path).is_file() and not overwrite:
        resume = "--skip-existing to resume it or " if resumable else ""
        raise MgcError(f"{path} exists: pass {resume}--overwrite to replace it")


def csv_text(rows: list[list[str]]) -> str:
    """Rows as CSV text."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


def result_dict(
    result: TrackResult, labels: list[str], k: int, timeline: list[dict] | None = None, unknown_above: float | None = None
) -> dict:
    """A result as JSON; its clips' `timeline` (inference.timeline), when given, goes under "timeline".

    "novelty" is null where the model gives none; `unknown_above` as in CsvWriter.
    """
    if result.probabilities is None:
        return {"path": result.path, "error": result.error}
    best = top_k(result.probabilities, labels, k)
    record = {
        "path": result.path,
        "genre": genre_of(result, labels, unknown_above),
        "probability": round(best[0][1], 4),
        "top_k": [{"genre": g, "probability": round(p, 4)} for g, p in best],
        "probabilities": {label: round(float(p), 4) for label, p in zip(labels, result.probabilities)},
        "clips": result.clips,
        "clip_starts": result.clip_starts,
        "novelty": None if result.novelty is None else round(result.novelty, 4),
    }
    if result.warning:
        record["warning"] = result.warning
    if timeline is not None:
        record["timeline"] = timeline
    return record


def tags_dict(result: TrackResult, labels: list[str]) -> dict:
    """A `tag_files` result as JSON: every tag's probability, most probable first."""
    if result.probabilities is None:
        return {"path": result.path, "error": result.error}
    tags = {label: round(p, 4) for label, p in top_k(result.probabilities, labels, len(labels))}
    record = {"path": result.path, "tags": tags, "clips": result.clips, "clip_starts": result.clip_starts}
    if result.warning:
        record["warning"] = result.warning
    return record


class JsonWriter:
    """A JSON list of a run's records (`result_dict`, `tags_dict`), each on disk as it is written
    (files.AppendedFile), after the `kept` records of an earlier run: a run that is stopped keeps
    every record it finished. `close` ends the list; a run killed before it (SIGKILL) leaves one
    that `earlier_records` still reads. Never a bare NaN: that is no JSON."""

    def __init__(self, path: str | Path, kept: Iterable[dict] = ()):
        self.file = AppendedFile(path, "[")
        self.empty = True
        for record in kept:
            self.write(record)

    def write(self, record: dict) -> None:
        text = json.dumps(record, indent=2, allow_nan=False).replace("\n", "\n  ")
        self.file.append(("\n  " if self.empty else ",\n  ") + text)
        self.empty = False

    def close(self) -> None:
        try:
            self.file.append("]\n" if self.empty else "\n]\n")
        finally:
            self.file.close()


def earlier_records(path: str | Path) -> list[dict]:
    """The records of a JSON file an earlier run wrote (none if there is no such file), for a resumed
    run to keep; of a list a killed run left unfinished, its whole records."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        records = _whole_records(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as error:
        raise MgcError(f"{path}: not a JSON file mgc wrote ({first_line(error)}); cannot resume it") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("path"), str) for r in records):
        raise MgcError(f"{path}: not a JSON file mgc wrote (records with a path); cannot resume it")
    return records


def _whole_records(text: str) -> list:
    """The items of a JSON list, or of the start of one (a JsonWriter killed before its close):
    every item read whole, up to the end or to a torn last one. ValueError if it is no list."""
    decoder = json.JSONDecoder()
    items: list = []
    position = _after_space(text, 0)
    if not text.startswith("[", position):
        json.loads(text)  # the error that says what it is instead
        raise ValueError("not a list")
    position = _after_space(text, position + 1)
    while position < len(text) and text[position] != "]":
        try:
            item, position = decoder.raw_decode(text, position)
        except ValueError:
            break  # torn: the run was killed as it wrote this one
        items.append(item)
        position = _after_space(text, position)
        if text.startswith(",", position):
            position = _after_space(text, position + 1)
    return items


def _after_space(text: str, position: int) -> int:
    return _SPACE.match(text, position).end()


_SPACE = re.compile(r"\s*")
