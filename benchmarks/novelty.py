"""The "none of these genres" score, chosen by measurement: candidate novelty scores cross-validated
over artists on the in-genre valid tracks of GTZAN, Emotify and AllMusic and on all of
../shared/data/outside. Prints, for each candidate, the AUROC of each outside kind against the
in-genre valid tracks and the share of each collection's in-genre valid tracks at or under 0.5;
writes them to benchmarks/novelty-results.json. It changes nothing else.

    python benchmarks/novelty.py [--weights weights/default-train-only.pt]   # about 5 minutes on 2 CPU cores

What `mgc calibrate --outside` does, repeated in folds: the in-genre valid tracks and the
outside tracks are split into 5 folds by artist (no artist on both sides of a fold); on four,
a candidate learns its weights (outside against in-genre) and its scale (novelty.fit_novelty),
and it scores the fifth. So every figure
is out of fold: no track is scored by a score fit on its own artist. The in-genre train
tracks are in no fit at all (the tagger giving the tags is frozen, never trained here), so
they are one more check of the pass rate. Front-end outputs come from the dataset caches
(`mgc preprocess`, then any musicnn training fills them), as the experiments' do.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from mgcli.audio import load
from mgcli.calibration import calibrate
from mgcli.checkpoint import load_checkpoint
from mgcli.clips import hop_samples
from mgcli.inference import aggregate, load_model, track_outputs
from mgcli.novelty import (
    IN_GENRE_PASS, L2_PENALTY, NOVELTY_THRESHOLD, auroc, cross_fitted_evidence, fit_novelty, mean_tag_probabilities, tag_weights,
)
from mgcli.shipped import WEIGHTS_DIR
from mgcli.training.cache import read_cache
from mgcli.training.datasets import apply_split_file
from mgcli.training.features import track_features

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "novelty-results.json"
COLLECTIONS = ("gtzan", "emotify", "allmusic")
FOLDS = 5
PENALTIES = (0.001, 0.003, 0.01, 0.03, 0.1)
THRESHOLDS = (0.5, 0.7, 0.8, 0.9)  # --unknown-above values whose trade-off is reported


def artists(collection: str) -> dict[str, str]:
    """path -> artist of a collection's split file (the path itself where the artist is unknown)."""
    with open(DATA / collection / "splits.csv", newline="") as f:
        return {row["path"]: (row.get("artist") or "").strip() or row["path"] for row in csv.DictReader(f)}


def in_genre_tracks(model, hop_seconds: float = 3.0) -> list[dict]:
    """Every in-genre track of the three collections: its collection, split, artist, label, clip logits and
    tag logits, its mean tag probabilities and its genre probabilities (mean_prob, uncalibrated)."""
    network = model.network.eval()
    rows = []
    for collection in COLLECTIONS:
        tracks = apply_split_file(read_cache(ROOT / "runs" / f"{collection}-cache"), DATA / collection / "splits.csv")
        by_path = artists(collection)
        for split, hop in (("valid", hop_seconds), ("train", hop_seconds / 2)):  # train tracks are cached every 1.5 s
            chosen = [t for t in tracks if t.split == split]
            for track in chosen:  # one at a time: all the train tracks' front-end outputs take 6 GB
                [front] = track_features(network, [track], hop, torch.device("cpu"))
                front = front if split == "valid" else front[::2]  # every other 1.5-s clip: the 3-s hop
                with torch.inference_mode():
                    tags = network.tagger(front).numpy()
                    logits = network.from_front_features(front).numpy()
                rows.append({"collection": collection, "split": split, "artist": f"{collection}:{by_path[track.key]}",
                             "label": track.label, "logits": logits, "tags": mean_tag_probabilities(tags),
                             "tag_logits": tags, "genres": aggregate(logits)})
    return rows


def outside_tracks(model) -> list[dict]:
    """Every track of ../shared/data/outside, with its kind and artist, scored from its audio."""
    with open(DATA / "outside" / "splits.csv", newline="") as f:
        entries = list(csv.DictReader(f))
    rows = []
    for entry in entries:
        outputs = track_outputs(model, [load(DATA / "outside" / entry["path"])], hop_samples(3.0))
        rows.append({"kind": entry["kind"], "split": entry["split"], "artist": f"outside:{entry['artist'] or entry['path']}",
                     "logits": outputs.logits, "tags": mean_tag_probabilities(outputs.tag_logits),
                     "tag_logits": outputs.tag_logits, "genres": aggregate(outputs.logits)})
    return rows


def artist_folds(rows: list[dict], seed: int = 0) -> np.ndarray:
    """A fold per row, every artist's rows in one fold, the artists dealt at random."""
    names = sorted({r["artist"] for r in rows})
    fold_of = dict(zip(np.random.default_rng(seed).permutation(names), np.arange(len(names)) % FOLDS))
    return np.array([fold_of[r["artist"]] for r in rows])


def candidates(tag_labels: list[str], temperature: float) -> dict:
    """name -> a function (in-genre rows, outside rows to fit on) -> a function row -> novelty in [0, 1]."""

    def novelty_fit(penalty: float | None):
        def fit(inside, outside):  # what `mgc calibrate` fits, with --outside unless penalty is None
            scale = fit_novelty(tag_labels, [r["tag_logits"] for r in inside],
                                [r["tag_logits"] for r in outside] if penalty is not None else [], penalty or L2_PENALTY)
            return lambda row: scale.novelty(row["tag_logits"])
        return fit

    def uncertainty(inside, outside):  # scaled as novelty is: median in-genre -> 0, its 95th percentile -> 0.5
        score = lambda row: float(1 - calibrate(row["genres"], temperature).max())  # noqa: E731
        typical, threshold = np.quantile([score(r) for r in inside], [0.5, IN_GENRE_PASS])
        return lambda row: float(np.clip((score(row) - typical) / ((threshold - typical) / NOVELTY_THRESHOLD), 0.0, 1.0))

    def with_genre_entropy(inside, outside):  # the tags and the calibrated genre entropy in one regression, fit as fit_novelty does
        def features(row):
            genres = calibrate(row["genres"], temperature)
            return np.append(row["tags"], -(genres * np.log(np.maximum(genres, 1e-12))).sum())
        inside_x, outside_x = np.array([features(r) for r in inside]), np.array([features(r) for r in outside])
        weights = tag_weights(inside_x, outside_x, L2_PENALTY)
        typical, threshold = np.quantile(cross_fitted_evidence(inside_x, outside_x, L2_PENALTY), [0.5, IN_GENRE_PASS])
        return lambda row: float(np.clip((features(row) @ weights - typical) / ((threshold - typical) / NOVELTY_THRESHOLD), 0.0, 1.0))

    return {
        "ten out-of-genre tags, summed (the shipped score until issue 29)": novelty_fit(None),
        "1 - top genre probability (calibrated)": uncertainty,
        **{f"all 50 tags, weights learnt (L2 {p:g}{', shipped' if p == L2_PENALTY else ''})": novelty_fit(p) for p in PENALTIES},
        f"all 50 tags and the genre entropy, weights learnt (L2 {L2_PENALTY:g})": with_genre_entropy,
    }


def cross_validate(make, inside: list[dict], outside: list[dict], train_inside: list[dict]) -> dict:
    """Out-of-fold novelty of every valid in-genre and outside track (and of the in-genre train tracks, from every fold's score, averaged)."""
    rows = inside + outside
    folds = artist_folds(rows)
    novelty = np.zeros(len(rows))
    train_novelty = np.zeros(len(train_inside))
    for k in range(FOLDS):
        score = make([r for r, f in zip(inside, folds) if f != k], [r for r, f in zip(outside, folds[len(inside):]) if f != k])
        for i in np.flatnonzero(folds == k):
            novelty[i] = score(rows[i])
        train_novelty += np.array([score(r) for r in train_inside]) / FOLDS
    inside_novelty, outside_novelty = novelty[: len(inside)], novelty[len(inside):]
    kinds = {r["kind"] for r in outside}
    small = [k for k in kinds if k not in ("electronic", "rnb", "latin")]
    groups = {"electronic": ["electronic"], "rnb": ["rnb"], "latin": ["latin"], "small kinds (" + ", ".join(sorted(small)) + ")": small,
              "all outside": sorted(kinds)}
    report = {"auroc": {}, "flagged": {}, "pass": {}, "train_pass": {}}
    for name, members in groups.items():
        chosen = np.array([r["kind"] in members for r in outside])
        report["auroc"][name] = auroc(outside_novelty[chosen], inside_novelty)
        report["flagged"][name] = float(np.mean(outside_novelty[chosen] > NOVELTY_THRESHOLD))
    report["thresholds"] = {f"{t:g}": {"in-genre pass": float(np.mean(inside_novelty <= t)), "outside flagged": float(np.mean(outside_novelty > t))}
                            for t in THRESHOLDS}
    for collection in COLLECTIONS:
        chosen = np.array([r["collection"] == collection for r in inside])
        report["pass"][collection] = float(np.mean(inside_novelty[chosen] <= NOVELTY_THRESHOLD))
        chosen = np.array([r["collection"] == collection for r in train_inside])
        report["train_pass"][collection] = float(np.mean(train_novelty[chosen] <= NOVELTY_THRESHOLD))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR / "default-train-only.pt", help="a musicnn that keeps its tagger")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights, "cpu", "torch")
    tag_labels = load_checkpoint(WEIGHTS_DIR / "musicnn-msd.pt")["labels"]
    everything = in_genre_tracks(model)
    inside = [r for r in everything if r["split"] == "valid"]
    train_inside = [r for r in everything if r["split"] == "train"]
    outside = outside_tracks(model)
    results = {}
    for name, make in candidates(tag_labels, model.temperatures.get("mean_prob", 1.0)).items():
        results[name] = report = cross_validate(make, inside, outside, train_inside)
        print(name)
        print("  AUROC against the in-genre valid tracks: " + ", ".join(f"{k} {v:.3f}" for k, v in report["auroc"].items()))
        print("  flagged above 0.5: " + ", ".join(f"{k} {v:.0%}" for k, v in report["flagged"].items()))
        print("  in-genre at or under 0.5, valid (out of fold): " + ", ".join(f"{k} {v:.1%}" for k, v in report["pass"].items())
              + "; train (in no fit): " + ", ".join(f"{k} {v:.1%}" for k, v in report["train_pass"].items()))
        print("  thresholds: " + ", ".join(f"{t}: {v['in-genre pass']:.1%} pass, {v['outside flagged']:.1%} flagged"
                                         for t, v in report["thresholds"].items()), flush=True)
    counts = {"in-genre valid": len(inside), "in-genre train": len(train_inside), "outside": len(outside)}
    RESULTS.write_text(json.dumps({"weights": str(args.weights), "tracks": counts, "candidates": results}, indent=1) + "\n")
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
