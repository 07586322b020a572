"""Candidate "none of these genres" scores, measured: how well each tells the valid tracks of the
ten genres (GTZAN and Emotify) from the valid tracks of ../shared/data/outside (electronic music).
Prints each score's AUROC and the share of outside tracks it flags at the threshold that 95% of
the in-genre tracks pass; it asserts nothing and changes nothing.

    python benchmarks/novelty.py     # about 3 minutes on 2 CPU cores

The genre scores come from default-train-only.pt (it has not seen the valid splits), the tag
scores from musicnn's Million Song Dataset tagger. OUT_OF_GENRE_TAGS is chosen by what the tags
mean (styles outside GTZAN's ten), not by these figures: the outside set holds one style only,
so a score that separates it well may still miss folk or R&B.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mgcli.calibration import calibrate
from mgcli.inference import aggregate, classify_files, load_model, softmax
from mgcli.shipped import WEIGHTS_DIR
from mgcli.tags import load_tagger, tag_files

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT_OF_GENRE_TAGS = ["electronic", "electronica", "electro", "House", "ambient", "experimental", "folk", "rnb", "soul", "funk"]


def valid_files(dataset: str) -> list[str]:
    with open(DATA / dataset / "splits.csv", newline="") as f:
        return [str(DATA / dataset / row["path"]) for row in csv.DictReader(f) if row["split"] == "valid"]


def auroc(outside: np.ndarray, inside: np.ndarray) -> float:
    """P(an outside track scores above an inside one), ties counting half."""
    above = (outside[:, None] > inside[None, :]).mean()
    return float(above + 0.5 * (outside[:, None] == inside[None, :]).mean())


def main() -> None:
    inside, outside = valid_files("gtzan") + valid_files("emotify"), valid_files("outside")
    model = load_model(WEIGHTS_DIR / "default-train-only.pt", "cpu")
    tagger = load_tagger(None, "cpu")
    temperature = model.temperatures.get("mean_prob", 1.0)

    def genre_scores(files: list[str]) -> dict[str, np.ndarray]:
        logits = [r.clip_logits for r in classify_files(model, files)]
        probabilities = np.array([calibrate(aggregate(l), temperature) for l in logits])
        return {
            "1 - top genre probability": 1 - probabilities.max(axis=1),
            "entropy of the genre probabilities": -(probabilities * np.log(probabilities + 1e-12)).sum(axis=1),
            "energy (-logsumexp of the clip logits, mean)": np.array([-np.logaddexp.reduce(l, axis=1).mean() for l in logits]),
            "clips disagreeing with the track's genre": np.array([1 - (softmax(l).argmax(1) == aggregate(l).argmax()).mean() for l in logits]),
        }

    def tag_scores(files: list[str]) -> dict[str, np.ndarray]:
        tags = np.array([r.probabilities for r in tag_files(tagger, files)])
        chosen = [tagger.labels.index(t) for t in OUT_OF_GENRE_TAGS]
        return {"MSD tags outside the ten genres, summed": tags[:, chosen].sum(axis=1)} | {
            f"MSD tag '{t}'": tags[:, tagger.labels.index(t)] for t in OUT_OF_GENRE_TAGS
        }

    scores_in = genre_scores(inside) | tag_scores(inside)
    scores_out = genre_scores(outside) | tag_scores(outside)
    print(f"{len(inside)} in-genre valid tracks against {len(outside)} outside valid tracks\n")
    print("| score | AUROC | outside tracks flagged at the 95% in-genre threshold |\n|---|---:|---:|")
    for name in scores_in:
        threshold = np.quantile(scores_in[name], 0.95)
        flagged = (scores_out[name] > threshold).mean()
        print(f"| {name} | {auroc(scores_out[name], scores_in[name]):.3f} | {flagged:.2f} |")


if __name__ == "__main__":
    main()
