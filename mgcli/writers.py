"""Writers: the results of `predict` and `tags` as CSV, per-clip timeline CSV and JSON files.

The CSV's columns (`path,genre,probability,<one per label>,error,warning`) are read by other
tools: keep them stable.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from . import MgcError
from .files import write_atomic, write_text_atomic
from .inference import TrackResult, top_k


class CsvWriter:
    """Rows `path,genre,probability,<one column per label>,error,warning`, flushed as they are written
    (`top` names the second column: "tag" for `mgc tags`).

    `resume=True` keeps the good rows of an earlier, interrupted run (dropping failed rows
    and a torn last line) so those files are skipped; otherwise an existing file is only
    replaced when `overwrite=True`, so no earlier results are lost by accident.
    """

    def __init__(
        self, path: str | Path, labels: list[str], resume: bool = False, overwrite: bool = False, top: str = "genre"
    ):
        self.path = Path(path)
        self.labels = labels
        self.header = ["path", top, "probability", *labels, "error", "warning"]
        self.done: set[str] = set()  # the kept rows' files, as real paths: see is_done
        kept: list[list[str]] = []
        if self.path.exists():
            if resume:
                kept = self._good_rows()
                self.done = {os.path.realpath(row[0]) for row in kept}
            elif not overwrite:
                raise MgcError(f"{self.path} exists: pass --skip-existing to resume it or --overwrite to replace it")
        write_atomic(self.path, lambda tmp: _write_rows(tmp, [self.header, *kept]))
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)

    def is_done(self, path: str | Path) -> bool:
        """Whether a kept row tagged this file, however either path is spelt (relative, absolute, via links)."""
        return os.path.realpath(path) in self.done

    def _good_rows(self) -> list[list[str]]:
        """The finished rows, widened to the current header if the file predates the warning column."""
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0] not in (self.header, self.header[:-1]):
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
            row = [result.path, self.labels[best], probs[best], *probs, "", result.warning]
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TimelineCsvWriter:
    """Rows `path,start,end,genre,probability,<one column per label>`: one per clip of every tagged file.

    The records of `inference.timeline`; files that failed get no rows. Like CsvWriter it never replaces an
    existing file unless `overwrite=True`; it cannot resume one.
    """

    def __init__(self, path: str | Path, labels: list[str], overwrite: bool = False):
        self.path = Path(path)
        self.labels = labels
        if self.path.exists() and not overwrite:
            raise MgcError(f"{self.path} exists: pass --overwrite to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(["path", "start", "end", "genre", "probability", *labels])

    def write(self, path: str, timeline: list[dict]) -> None:
        for s in timeline:
            probs = [f"{s['probabilities'][label]:.4f}" for label in self.labels]
            window = [f"{s['start']:.3f}", f"{s['end']:.3f}"]
            self.writer.writerow([path, *window, s["genre"], f"{s['probability']:.4f}", *probs])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def result_dict(result: TrackResult, labels: list[str], k: int, timeline: list[dict] | None = None) -> dict:
    """A result as JSON; its clips' `timeline` (inference.timeline), when given, goes under "timeline"."""
    if result.probabilities is None:
        return {"path": result.path, "error": result.error}
    best = top_k(result.probabilities, labels, k)
    record = {
        "path": result.path,
        "genre": best[0][0],
        "probability": round(best[0][1], 4),
        "top_k": [{"genre": g, "probability": round(p, 4)} for g, p in best],
        "probabilities": {label: round(float(p), 4) for label, p in zip(labels, result.probabilities)},
        "clips": result.clips,
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
    record = {"path": result.path, "tags": tags, "clips": result.clips}
    if result.warning:
        record["warning"] = result.warning
    return record


def write_json(path: str | Path, records: list[dict]) -> None:
    """The `result_dict` records of a run, written atomically."""
    write_text_atomic(path, json.dumps(records, indent=2) + "\n")


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
