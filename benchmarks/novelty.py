"""The "none of these genres" score, measured: how well novelty (novelty.py) and the scores it was
chosen over tell the tracks of the ten genres (GTZAN and Emotify) from ../shared/data/outside
(electronic music). Prints each score's AUROC and the share of outside tracks it flags at the
threshold that 95% of the in-genre valid tracks pass; it asserts nothing and changes nothing.

    python benchmarks/novelty.py     # about 5 minutes on 2 CPU cores

The model is default-train-only.pt: it has not trained on the valid splits, and its novelty
scale was fit on their in-genre tracks (`mgc calibrate`). The train splits are out of that fit
too (the tagger that gives the tags never saw them; the genre network did), so the train rows
check the scale on tracks it was not fit on. OUT_OF_GENRE_TAGS are chosen by what the tags mean
(styles outside GTZAN's ten), not by these figures: the outside set holds one style only, so a
score that separates it well may still miss folk or R&B.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mgcli.audio import load
from mgcli.calibration import calibrate
from mgcli.checkpoint import load_checkpoint
from mgcli.clips import hop_samples
from mgcli.inference import aggregate, load_model, softmax, track_outputs
from mgcli.novelty import NOVELTY_THRESHOLD, OUT_OF_GENRE_TAGS, auroc
from mgcli.shipped import WEIGHTS_DIR

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def split_files(dataset: str, split: str) -> list[str]:
    with open(DATA / dataset / "splits.csv", newline="") as f:
        return [str(DATA / dataset / row["path"]) for row in csv.DictReader(f) if row["split"] == split]


def main() -> None:
    model = load_model(WEIGHTS_DIR / "default-train-only.pt", "cpu", "torch")
    tag_labels = load_checkpoint(WEIGHTS_DIR / "musicnn-msd.pt")["labels"]
    temperature = model.temperatures.get("mean_prob", 1.0)
    hop = hop_samples(3.0)

    def scores(files: list[str]) -> dict[str, np.ndarray]:
        outputs = [track_outputs(model, [load(path)], hop) for path in files]
        probabilities = np.array([calibrate(aggregate(o.logits), temperature) for o in outputs])
        tag_probabilities = np.array([(1 / (1 + np.exp(-o.tag_logits))).mean(axis=0) for o in outputs])
        return {
            "novelty (shipped: the tags below, summed and scaled)": np.array([model.novelty.novelty(o.tag_logits) for o in outputs]),
            "1 - top genre probability": 1 - probabilities.max(axis=1),
            "entropy of the genre probabilities": -(probabilities * np.log(probabilities + 1e-12)).sum(axis=1),
            "energy (-logsumexp of the clip logits, mean)": np.array([-np.logaddexp.reduce(o.logits, axis=1).mean() for o in outputs]),
            "clips disagreeing with the track's genre": np.array(
                [1 - (softmax(o.logits).argmax(1) == aggregate(o.logits).argmax()).mean() for o in outputs]),
        } | {f"tag '{tag}'": tag_probabilities[:, tag_labels.index(tag)] for tag in OUT_OF_GENRE_TAGS}

    sets = {
        "gtzan valid": split_files("gtzan", "valid"), "emotify valid": split_files("emotify", "valid"),
        "gtzan train": split_files("gtzan", "train"), "emotify train": split_files("emotify", "train"),
        "outside valid": split_files("outside", "valid"), "outside train": split_files("outside", "train"),
    }
    measured = {name: scores(files) for name, files in sets.items()}
    joined = lambda *names: {k: np.concatenate([measured[n][k] for n in names]) for k in measured[names[0]]}
    inside, outside = joined("gtzan valid", "emotify valid"), measured["outside valid"]
    print(f"{len(inside['1 - top genre probability'])} in-genre valid tracks against {len(sets['outside valid'])} outside valid tracks\n")
    print("| score | AUROC | against GTZAN | against Emotify | outside flagged at the 95% in-genre threshold |")
    print("|---|---:|---:|---:|---:|")
    for name in inside:
        threshold = np.quantile(inside[name], 0.95)
        print(f"| {name} | {auroc(outside[name], inside[name]):.3f} | {auroc(outside[name], measured['gtzan valid'][name]):.3f} "
              f"| {auroc(outside[name], measured['emotify valid'][name]):.3f} | {(outside[name] > threshold).mean():.2f} |")

    key = next(iter(inside))
    train_inside, train_outside = joined("gtzan train", "emotify train")[key], measured["outside train"][key]
    print(f"\nnovelty at the shipped threshold ({NOVELTY_THRESHOLD}):")
    for name in sets:
        novelty = measured[name][key]
        side = "flagged" if name.startswith("outside") else "pass"
        share = (novelty > NOVELTY_THRESHOLD).mean() if side == "flagged" else (novelty <= NOVELTY_THRESHOLD).mean()
        print(f"  {name:<14} {len(novelty):>4} tracks  {side} {share:.1%}  (median novelty {np.median(novelty):.2f})")
    print(f"  AUROC on the train splits (out of the scale's fit): {auroc(train_outside, train_inside):.3f}")
    disco = np.concatenate([measured[s][key][[f"/disco/" in p for p in sets[s]]] for s in ("gtzan valid", "gtzan train")])
    print("\n| --unknown-above | in-genre valid tracks that pass | outside valid tracks flagged | GTZAN disco tracks flagged |")
    print("|---:|---:|---:|---:|")
    for threshold in (0.5, 0.7, 0.8, 0.9):
        print(f"| {threshold} | {(inside[key] <= threshold).mean():.1%} | {(outside[key] > threshold).mean():.1%} "
              f"| {(disco > threshold).sum()} of {len(disco)} |")


if __name__ == "__main__":
    main()
