"""Writers: the results of `predict` and `tags` as CSV, per-clip timeline CSV and JSON files.

The CSV's columns (`path,genre,probability,<one per label>,error,warning`, and predict's
`novelty` after them) are read by other tools: keep them stable, and add new ones at the end.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from . import MgcError, first_line
from .files import AppendedFile, OutputLock, write_text_atomic
from .inference import TrackResult, genre_of, top_k


class CsvWriter:
    """Rows `path,genre,probability,<one column per label>,error,warning`, on disk as they are written
    (`top` names the second column: "tag" for `mgc tags`); with `novelty`, predict's, a last column
    `novelty` (empty where the model gives none), and `unknown_above` turns the genre of a track whose
    novelty is above it into "unknown" (inference.genre_of; `probability` stays its top genre's).

    `resume=True` keeps the good rows of an earlier, interrupted run (dropping failed rows
    and a torn last line) so those files are skipped; otherwise an existing file is only
    replaced when `overwrite=True`, so no earlier results are lost by accident. While it is
    open no other run can write the file (files.OutputLock).
    """

    def __init__(
        self, path: str | Path, labels: list[str], resume: bool = False, overwrite: bool = False, top: str = "genre",
        novelty: bool = False, unknown_above: float | None = None,
    ):
        self.path = Path(path)
        self.labels = labels
        self.unknown_above = unknown_above
        self.header = ["path", top, "probability", *labels, "error", "warning", *(["novelty"] if novelty else [])]
        self.done: set[str] = set()  # the kept rows' files, as real paths: see is_done
        self.lock = OutputLock(self.path)
        try:
            kept: list[list[str]] = []
            if self.path.exists():
                if resume:
                    kept = self._good_rows()
                    self.done = {os.path.realpath(row[0]) for row in kept}
                elif not overwrite:
                    raise MgcError(f"{self.path} exists: pass --skip-existing to resume it or --overwrite to replace it")
            self.file = AppendedFile(self.path, csv_text([self.header, *kept]))
        except BaseException:
            self.lock.release()
            raise

    def is_done(self, path: str | Path) -> bool:
        """Whether a kept row tagged this file, however either path is spelt (relative, absolute, via links)."""
        return os.path.realpath(path) in self.done

    def _good_rows(self) -> list[list[str]]:
        """The finished rows, widened to the current header if the file predates its last columns
        (warning, novelty): those cells stay empty.

        An empty file (a run stopped before its header was written) has none.
        """
        with open(self.path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = list(csv.reader(f))
        if not rows:
            return []
        older = [self.header[:width] for width in range(self.header.index("warning"), len(self.header))]
        if rows[0] not in (self.header, *older):
            raise MgcError(f"{self.path}: written for other labels or by another tool; cannot resume it")
        width, error = len(rows[0]), self.header.index("error")
        good = [row for row in rows[1:] if len(row) == width and not row[error] and row[2]]
        return [row + [""] * (len(self.header) - width) for row in good]

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
            if self.path.exists() and not overwrite:
                raise MgcError(f"{self.path} exists: pass --overwrite to replace it")
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


def write_json(path: str | Path, records: list[dict]) -> None:
    """The `result_dict` records of a run, written atomically (never a bare NaN: that is no JSON)."""
    write_text_atomic(path, json.dumps(records, indent=2, allow_nan=False) + "\n")


def earlier_records(path: str | Path) -> list[dict]:
    """The records of a JSON file an earlier run wrote (none if there is no such file), for a resumed run to keep."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        records = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise MgcError(f"{path}: not a JSON file mgc wrote ({first_line(error)}); cannot resume it") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("path"), str) for r in records):
        raise MgcError(f"{path}: not a JSON file mgc wrote (records with a path); cannot resume it")
    return records
