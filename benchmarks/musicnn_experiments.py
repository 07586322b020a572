"""Choosing the musicnn-based default on the valid splits of GTZAN, Emotify and AllMusic.

    python benchmarks/musicnn_experiments.py [--only NAME ...] [--datasets gtzan emotify allmusic]

Trains every recipe below on the train splits of the datasets, scores each on every valid
split and all together, and writes each result to benchmarks/musicnn-results-<datasets>.json
(kept in git) as soon as it exists. Epochs and recipes are chosen on the mean over the
datasets of their macro recall (then accuracy): the pooled figure follows the largest.
(`musicnn-results-gtzan-emotify.json` holds the runs that chose the two-dataset default.)
musicnn's front end is frozen in every recipe here, so its output is computed once per clip
and kept in the dataset caches (`training.features.track_features`): the first recipe waits
for it (about 25 minutes on 2 cores for the three), the others take minutes. Needs the
caches of `mgc preprocess ../shared/data/gtzan --out runs/gtzan-cache` (emotify and allmusic likewise).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from mgcli.checkpoint import load_checkpoint
from mgcli.torch_engine import model_from_checkpoint
from mgcli.training.cache import read_cache
from mgcli.training.config import TrainConfig
from mgcli.training.datasets import apply_split_file, genres_of, labels_of
from mgcli.training.evaluate import score_tracks
from mgcli.training.features import track_features
from mgcli.training.loop import fit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATASETS = ("gtzan", "emotify", "allmusic")

ADAM = dict(optimizer="adam", warmup_epochs=0, schedule="cosine", seed=0)
# name -> (model, model settings, training settings)
RECIPES = {
    # The baseline to beat: logistic regression on the frozen penultimate embedding.
    "probe-lr": ("musicnn-probe", {}, dict(ADAM, epochs=30, lr=0.003, weight_decay=1e-4)),
    "probe-lr-pooled": ("musicnn-probe", {"head": "pooled"}, dict(ADAM, epochs=30, lr=0.003, weight_decay=1e-3)),
    "probe-lr-dropout": ("musicnn-probe", {"head_dropout": 0.5}, dict(ADAM, epochs=30, lr=0.003, weight_decay=1e-4)),
    # Mid end, back end and genre layer trained; pretrained parts at a tenth of the rate.
    "finetune": ("musicnn", {}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4)),
    "finetune-dropout": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4)),
    "finetune-smooth": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4, label_smoothing=0.1)),
    "finetune-sampler": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4, balance="sampler")),
    **{f"finetune-dropout-seed{seed}": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4) | {"seed": seed})
       for seed in range(1, 5)},
    # Re-weighed on three datasets (issue 29): epochs, balance, how much of musicnn moves, weight decay.
    "finetune-smooth-20": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=20, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4, label_smoothing=0.1)),
    "finetune-smooth-unbalanced": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4, label_smoothing=0.1, balance="none")),
    "finetune-smooth-rate0.3": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.3, weight_decay=1e-4, label_smoothing=0.1)),
    "finetune-smooth-rate0.03": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.03, weight_decay=1e-4, label_smoothing=0.1)),
    "finetune-smooth-decay": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-3, label_smoothing=0.1)),
    "finetune-smooth-20-clips8": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=20, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4, label_smoothing=0.1, clips_per_track=8)),
    **{f"finetune-smooth-20-seed{seed}": ("musicnn", {"head_dropout": 0.5}, dict(ADAM, epochs=20, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4, label_smoothing=0.1) | {"seed": seed})
       for seed in (1, 2)},
    # A genre layer on the fine-tuned embedding and the kept (frozen) tagger's tag logits.
    "finetune-smooth-20-tags": ("musicnn", {"head_dropout": 0.5, "head": "penultimate+tags", "keep_tagger": True}, dict(ADAM, epochs=20, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4, label_smoothing=0.1)),
    "finetune-smooth-20-pooled": ("musicnn", {"head_dropout": 0.5, "head": "pooled"}, dict(ADAM, epochs=20, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4, label_smoothing=0.1)),
    # The whole network trained, front end too, on the waveform with the loop's gain and noise augmentation.
    "finetune-smooth-20-frontend": ("musicnn", {"head_dropout": 0.5, "freeze": "none"}, dict(ADAM, epochs=20, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4, label_smoothing=0.1)),
    "finetune-mtt": ("musicnn", {"pretrained": "mtt", "head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4)),
}


def tracks_by_dataset(names: list[str]) -> dict[str, list]:
    """Each dataset's cached tracks, split and labelled by its split file, as `mgc train` reads them."""
    return {name: [replace(t, collection=name) for t in apply_split_file(read_cache(ROOT / "runs" / f"{name}-cache"),
                                                                           SHARED / name / "splits.csv")]
            for name in names}


def score_run(run: Path, datasets: dict[str, list], checkpoint: str = "best.pt") -> dict:
    """A checkpoint's scores on each valid split, all together ("both" for two), and their mean.

    From the front end's cached output of every 3-s clip (as validation reads it; the same
    clips as predict's path, which `benchmarks/model_card.py` takes for the shipped model).
    """
    model = model_from_checkpoint(load_checkpoint(run / checkpoint), torch.device("cpu"))
    network = model.network.eval()
    scored = {}
    for name, tracks in datasets.items():
        valid = [t for t in tracks if t.split == "valid"]
        with torch.inference_mode():
            logits = [network.from_front_features(f).numpy() for f in track_features(network, valid, 3.0, torch.device("cpu"))]
        scored[name] = [(np.isin(model.labels, genres_of(t.label)), x) for t, x in zip(valid, logits)]
    temperature = model.temperatures.get("mean_prob", 1.0)
    report = score_tracks([s for part in scored.values() for s in part], model.labels, "mean_prob", temperature)
    each = {name: summary(score_tracks(part, model.labels, "mean_prob", temperature)) for name, part in scored.items()}
    mean = {m: float(np.mean([e[m] for e in each.values()])) for m in ("track_accuracy", "macro_recall")}
    return each | {"both" if len(each) == 2 else "all": summary(report), "mean": mean}


def summary(report: dict) -> dict:
    return {
        "track_accuracy": report["track"]["accuracy"],
        "macro_recall": report["track"]["macro"]["recall"],
        "clip_accuracy": report["clip"]["accuracy"],
        "tracks": report["track"]["count"],
        "per_class_recall": {c["label"]: c["recall"] for c in report["track"]["per_class"] if c["support"]},
        "sets": {row["label"]: {"recall": row["recall"], "tracks": row["support"], "answers": row["answers"]}
                 for row in report["track"]["sets"]},
        "confusion": report["track"]["confusion"],
        "ece": report["calibration"].get("ece"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="recipes to run (default: all not yet in the results file)")
    parser.add_argument("--redo", action="store_true", help="run recipes again even if recorded")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS, help="train and score on these")
    args = parser.parse_args()
    results_file = ROOT / "benchmarks" / f"musicnn-results-{'-'.join(args.datasets)}.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    datasets = tracks_by_dataset(args.datasets)
    together = "both" if len(datasets) == 2 else "all"
    runs = ROOT / "runs" / "musicnn" / "-".join(args.datasets)
    train = [t for tracks in datasets.values() for t in tracks if t.split == "train"]
    valid = [t for tracks in datasets.values() for t in tracks if t.split == "valid"]
    labels = labels_of(train + valid)
    for name in args.only or RECIPES:
        if name in results and not args.redo:
            continue
        model, overrides, settings = RECIPES[name]
        config = TrainConfig(**settings)
        # A frozen front end's training steps are small: two threads ran them 10x slower whenever anything
        # else ran beside them. The whole network's, on the waveform, take both cores.
        torch.set_num_threads(2 if overrides.get("freeze") == "none" else 1)
        history = fit(model, train, valid, labels, runs / name, config, overrides, "cpu", resume=True)
        best = next(m for m in history if m["epoch"] == load_checkpoint(runs / name / "best.pt")["train"]["epoch"] + 1)
        results[name] = {
            "model": model, "settings": overrides, "train": asdict(config), "best_epoch": best["epoch"],
            "valid": score_run(runs / name, datasets),
            "valid_last": score_run(runs / name, datasets, "last.pt"),
            "curve": [m.get("valid_by_dataset") or (m["valid_track_accuracy"], m["valid_macro_recall"]) for m in history],
        }
        results_file.write_text(json.dumps(results, indent=1) + "\n")
        scores = results[name]["valid"]
        print(f"{name}: " + "  ".join(f"{d} {scores[d]['track_accuracy']:.3f} / {scores[d]['macro_recall']:.3f}"
                                       for d in (*datasets, together, "mean")) + " (accuracy / macro recall)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
