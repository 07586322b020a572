"""Choosing the musicnn-based default on the valid splits of GTZAN and Emotify.

    python benchmarks/musicnn_experiments.py [--only NAME ...]

Trains every recipe below on GTZAN train + Emotify train, scores each on GTZAN valid,
Emotify valid and both together, and writes each result to benchmarks/musicnn-results.json
(kept in git) as soon as it exists. musicnn's front end is frozen in every recipe here, so
its output is computed once per clip and kept in the dataset caches
(`training.features.track_features`): the first recipe waits for it (about 15 minutes on 2
cores), the others take minutes. Needs the caches of
`mgc preprocess ../shared/data/gtzan --out runs/gtzan-cache` (and emotify likewise).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from mgcli.checkpoint import load_checkpoint
from mgcli.torch_engine import model_from_checkpoint
from mgcli.training.cache import read_cache
from mgcli.training.config import TrainConfig
from mgcli.training.datasets import apply_split_file, labels_of
from mgcli.training.evaluate import evaluate_datasets
from mgcli.training.loop import fit

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "musicnn-results.json"
DATASETS = {"gtzan": ROOT / "runs" / "gtzan-cache", "emotify": ROOT / "runs" / "emotify-cache"}

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
    "finetune-mtt": ("musicnn", {"pretrained": "mtt", "head_dropout": 0.5}, dict(ADAM, epochs=10, lr=0.001, pretrained_lr_scale=0.1, weight_decay=1e-4)),
}

# The default's members: the dropout recipe from five seeds (last epochs; see weights/README.md).
ENSEMBLE = ["finetune-dropout"] + [f"finetune-dropout-seed{seed}" for seed in range(1, 5)]


def tracks_by_dataset() -> dict[str, list]:
    return {
        name: apply_split_file(read_cache(cache), SHARED / name / "splits.csv") for name, cache in DATASETS.items()
    }


def score_run(run: Path, datasets: dict[str, list], checkpoint: str = "best.pt") -> dict:
    """A checkpoint's scores on each valid split and both together, through predict's own path."""
    model = model_from_checkpoint(load_checkpoint(run / checkpoint), torch.device("cpu"))
    report = evaluate_datasets(model, {name: [t for t in tracks if t.split == "valid"] for name, tracks in datasets.items()})
    return {name: summary(r) for name, r in report["datasets"].items()} | {"both": summary(report)}


def summary(report: dict) -> dict:
    return {
        "track_accuracy": report["track"]["accuracy"],
        "macro_recall": report["track"]["macro"]["recall"],
        "clip_accuracy": report["clip"]["accuracy"],
        "tracks": report["track"]["count"],
        "per_class_recall": {c["label"]: c["recall"] for c in report["track"]["per_class"] if c["support"]},
        "confusion": report["track"]["confusion"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="recipes to run (default: all not yet in the results file)")
    parser.add_argument("--redo", action="store_true", help="run recipes again even if recorded")
    args = parser.parse_args()
    torch.set_num_threads(1)  # two threads ran its training steps 10x slower whenever anything else ran beside it
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    datasets = tracks_by_dataset()
    train = [t for tracks in datasets.values() for t in tracks if t.split == "train"]
    valid = [t for tracks in datasets.values() for t in tracks if t.split == "valid"]
    labels = labels_of(train + valid)
    for name in args.only or RECIPES:
        if name in results and not args.redo:
            continue
        if name == "ensemble":
            results[name] = ensemble_row(ENSEMBLE, datasets)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")
            both = results[name]["valid_last"]["both"]
            print(f"{name}: both valid {both['track_accuracy']:.3f} acc / {both['macro_recall']:.3f} macro recall", flush=True)
            continue
        model, overrides, settings = RECIPES[name]
        run = ROOT / "runs" / "musicnn" / name
        config = TrainConfig(**settings)
        history = fit(model, train, valid, labels, run, config, overrides, "cpu", resume=True)
        best = max(history, key=lambda m: (m["valid_macro_recall"], m["valid_track_accuracy"], -m["valid_loss"]))
        results[name] = {
            "model": model, "settings": overrides, "train": asdict(config), "best_epoch": best["epoch"],
            "valid": score_run(run, datasets),
            "valid_last": score_run(run, datasets, "last.pt"),
            "curve": [(m["valid_track_accuracy"], m["valid_macro_recall"]) for m in history],
        }
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        both = results[name]["valid"]["both"]
        print(f"{name}: both valid {both['track_accuracy']:.3f} acc / {both['macro_recall']:.3f} macro recall", flush=True)


def ensemble_row(members: list[str], datasets: dict[str, list]) -> dict:
    """The ensemble of the members' last epochs (one shared front end), scored like the recipes."""
    from mgcli.checkpoint import make_checkpoint, save_checkpoint
    from mgcli.models.musicnn import ensemble_of

    checkpoints = [load_checkpoint(ROOT / "runs" / "musicnn" / name / "last.pt") for name in members]
    networks = [model_from_checkpoint(c, torch.device("cpu")).network for c in checkpoints]
    run = ROOT / "runs" / "musicnn" / "ensemble"
    save_checkpoint(make_checkpoint("musicnn-ensemble", ensemble_of(networks), checkpoints[0]["labels"]), run / "last.pt")
    scores = score_run(run, datasets, "last.pt")
    return {"model": "musicnn-ensemble", "members": members, "valid_last": scores}


if __name__ == "__main__":
    sys.exit(main())
