"""Cross-validation as the paper ran it: train on K-1 stratified folds, test on the last, for every fold."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import MgcError, quiet
from ..checkpoint import load_checkpoint
from ..files import check_output_folder, write_text_atomic
from ..models import make_config
from ..torch_engine import model_from_checkpoint, pick_device
from . import distributed
from .cache import Track
from .config import TrainConfig, train_config
from .datasets import cache_folders, labels_of, load_datasets, split_tracks
from .evaluate import RANDOM_FOLDS_WARNING, evaluate_tracks
from .loop import fit


def cross_validate(
    model_name: str,
    tracks: list[Track],
    labels: list[str],
    out_dir: str | Path,
    config: TrainConfig,
    folds: int = 10,
    model_overrides: dict | None = None,
    device: str = "auto",
    verbose: bool = True,
) -> dict:
    """The paper's protocol: train on K-1 stratified folds, test on the last, for every fold.

    Each fold's test score comes from its final epoch (no model selection on the test
    fold). A fold whose run is already complete is not trained again, so an interrupted
    cross-validation resumes. Returns per-fold and mean ± std figures.
    """
    out = Path(out_dir)
    results = []
    for fold in range(folds):
        split = split_tracks(tracks, folds=folds, fold=fold, seed=config.seed)
        run = out / f"fold-{fold}"
        fit(
            model_name, split["train"], [], labels, run, config, model_overrides, device,
            resume=True, verbose=verbose,
        )
        model = model_from_checkpoint(load_checkpoint(run / "last.pt"), pick_device(device))
        report = evaluate_tracks(model, split["valid"], config.eval_hop_seconds, config.aggregate)
        results.append({
            "fold": fold,
            "tracks": len(split["valid"]),
            "track_accuracy": report["track"]["accuracy"],
            "clip_accuracy": report["clip"]["accuracy"],
            "macro_recall": report["track"]["macro"]["recall"],
        })
    summary = {
        metric: {"mean": float(np.mean([r[metric] for r in results])), "std": float(np.std([r[metric] for r in results]))}
        for metric in ("track_accuracy", "clip_accuracy", "macro_recall")
    }
    report = {
        "protocol": f"{folds}-fold stratified random cross-validation",
        "warning": RANDOM_FOLDS_WARNING, "model": model_name, "epochs": config.epochs,
        "folds": results, "summary": summary,
    }
    write_text_atomic(out / "crossval.json", json.dumps(report, indent=2) + "\n")
    return report


def crossval(
    data: Sequence[Path],
    out_dir: Path,
    model_name: str = "ms-sincresnet",
    overrides: dict | None = None,
    folds: int = 10,
    cache: Path | None = None,
    device: str = "auto",
    notify: Callable[[str], None] = quiet,
    **settings,
) -> dict:
    """`mgc crossval`: `cross_validate` on every track of the datasets `data` (settings as in `train.train`)."""
    if distributed.launched():  # every rank would run every fold into the same folder
        raise MgcError("crossval runs in one process; under torchrun train each fold: mgc train --folds K --fold I")
    make_config(model_name, **(overrides or {}))
    config = train_config(**settings)
    check_output_folder(out_dir)
    datasets = load_datasets(data, (), cache_folders(data, cache, out_dir), notify)
    tracks = [track for dataset in datasets for track in dataset.tracks]
    return cross_validate(model_name, tracks, labels_of(tracks), out_dir, config, folds, overrides, device)
