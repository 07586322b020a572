"""How many clips a track needs: agreement of predict's answer from N clips spread over a track
(`--clips N`, clips.spread_clips) with its answer from every clip, and accuracy, against N.

    python benchmarks/clip_budget.py                              # weights/default.pt, ../shared/data
    python benchmarks/clip_budget.py --weights weights/default-train-only.pt
    python benchmarks/clip_budget.py --tagger                     # `mgc tags`: the top tag instead

Every clip of every track is run through the model once (3-s hop, as predict's default); each N
then picks its clips from those, as predict does, aggregates them (mean_prob, calibrated) and
compares; `auto` rows read every clip of a track whose N leave its top in doubt
(inference.is_settled, at several numbers of standard errors) again, and count both reads in
"clips run per track", the network's work. Tracks: Emotify's 60-s tracks (20 clips, labelled classical, pop or rock) and the
60-s electronic ones of outside/ (no label in the ten genres: agreement only), the longest real
music here; then GTZAN's and AllMusic's 30-s tracks (10 clips), which only N < 10 changes.
Accuracy counts AllMusic's pop_rock as right for pop, rock or metal (with --tagger it means
nothing: tags are no genres). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from mgcli.calibration import calibrate
from mgcli.clips import AUTO_CLIPS, spread_clips
from mgcli.inference import SETTLED_STANDARD_ERRORS, aggregate, classify_files, is_settled, load_model
from mgcli.shipped import DEFAULT_TAGGER
from mgcli.tags import tag_probabilities

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BUDGETS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 19)
LONG_SECONDS = 59.0  # "60-s" tracks: Emotify's are 60 s, give or take the encoder's padding


def tracks(data: Path) -> dict[str, list[tuple[Path, set[str], str]]]:
    """Per group: (path, the genres that count as right (empty: unlabelled), split)."""
    groups: dict[str, list] = {"60-s": [], "30-s": []}
    for name in ("emotify", "gtzan", "allmusic", "outside"):
        with open(data / name / "splits.csv", newline="") as f:
            for row in csv.DictReader(f):
                if name == "outside" and row["source"] != "emotify":
                    continue
                genres = set(row.get("genres", row.get("genre", "")).split("|")) - {""}
                group = "30-s" if name in ("gtzan", "allmusic") else "60-s"
                groups[group].append((data / name / row["path"], genres, row["split"]))
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="default: weights/default.pt (with --tagger: the MSD tagger)")
    parser.add_argument("--tagger", action="store_true", help="agreement of `mgc tags`' top tag")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    model = load_model(args.weights or (DEFAULT_TAGGER if args.tagger else None), "cpu")
    groups = tracks(args.data)
    print(f"weights: {args.weights or (DEFAULT_TAGGER if args.tagger else 'weights/default.pt')}, engine {model.engine}")
    for group, members in groups.items():
        results = list(classify_files(model, [path for path, _, _ in members]))
        kept = [(r, genres, split) for r, (_, genres, split) in zip(results, members) if not r.error]
        if group == "60-s":  # outside/ holds Emotify tracks of 25 to 60 s: only the long ones
            kept = [k for k in kept if k[0].clips * 3.0 >= LONG_SECONDS]
        labelled = [k for k in kept if k[1]]
        print(f"\n### {group} tracks: {len(kept)} ({len(labelled)} labelled, "
              f"{sum(k[2] == 'valid' for k in labelled)} of them valid), clips per track "
              f"{min(k[0].clips for k in kept)}-{max(k[0].clips for k in kept)}\n")
        print("| clips (N) | agreement with every clip | disagreeing tracks | of them labelled | accuracy, labelled | accuracy, valid split | clips run per track |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        def top_of(logits: np.ndarray) -> int:
            """The top tag, or genre, as `mgc tags` or `mgc predict` gives it from these clips."""
            if args.tagger:
                return int(tag_probabilities(logits).argmax())
            return int(calibrate(aggregate(logits), model.temperatures.get("mean_prob", 1.0)).argmax())

        auto = [(budget, z) for budget in (5, 8, AUTO_CLIPS) for z in (1.0, 1.5, SETTLED_STANDARD_ERRORS, 3.0)]
        for budget, z in [(budget, None) for budget in (*BUDGETS, None)] + auto:
            agree = agree_labelled = right = right_valid = read = 0
            for result, genres, split in kept:
                picked = result.clip_logits if budget is None else result.clip_logits[spread_clips(result.clips, budget)]
                read += len(picked)
                if z is not None and not is_settled(model, picked, result.clips, "mean_prob", z):
                    picked = result.clip_logits  # read again, every clip
                    read += len(picked)
                top = top_of(picked)
                agree += top == top_of(result.clip_logits)
                agree_labelled += bool(genres) and top == top_of(result.clip_logits)
                correct = model.labels[top] in genres
                right += correct
                right_valid += correct and split == "valid"
            n_valid = sum(split == "valid" for _, genres, split in labelled)
            label = "all" if budget is None else str(budget) if z is None else f"auto: {budget}, settled at {z:g} s.e."
            print(f"| {label} | {agree / len(kept):.1%} | {len(kept) - agree} | {len(labelled) - agree_labelled} | "
                  f"{right / max(1, len(labelled)):.1%} | {right_valid / max(1, n_valid):.1%} | {read / len(kept):.1f} |")


if __name__ == "__main__":
    main()
