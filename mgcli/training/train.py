"""`mgc train` as a library call: decode the datasets, split them, and `loop.fit` the model on them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .. import MgcError, quiet
from ..files import check_output_folder
from ..models import build
from ..torch_engine import pick_device
from . import distributed
from .config import train_config
from .datasets import cache_folders, describe_counts, labels_of, load_datasets, pair_split_files, split_datasets, warn_absent
from .loop import fit
from .run_state import pretrained_weights


def train(
    data: Sequence[Path],
    out_dir: Path,
    model_name: str = "ms-sincresnet",
    overrides: dict | None = None,
    split_file: Sequence[Path] = (),
    folds: int | None = None,
    fold: int | None = None,
    valid_fraction: float = 0.2,
    train_on_valid: bool = False,
    init_backbone: Path | None = None,
    cache: Path | None = None,
    resume: bool = False,
    device: str = "auto",
    notify: Callable[[str], None] = quiet,
    **settings,
) -> list[dict]:
    """`mgc train`: train the model `model_name` (with config `overrides`) on the datasets `data` into `out_dir`.

    Every dataset is decoded into its cache first (CACHE, default OUT/cache; CACHE-1, CACHE-2, ...
    for several) and split by its `split_file` (one per dataset, in order, or none), else by
    `folds`/`fold`, its manifest or a stratified `valid_fraction`; with `train_on_valid`, the valid
    tracks train too and nothing validates (the final model of settings chosen on valid). `settings` are TrainConfig's
    fields (epochs, batch_size, lr, ...); one left None takes its default. Under torchrun the
    ranks train as one run (see `distributed`), and rank 0 alone decodes and notifies. Returns
    the per-epoch history.
    """
    if not 0 <= valid_fraction <= 0.5:  # one fold of round(1 / fraction) is held out, so at most half
        raise MgcError(f"--valid-fraction must be from 0 (no valid split) to 0.5, not {valid_fraction}")
    with torch.device("meta"):  # a wrong name, key or value fails now, not after decoding the data
        network = build(model_name, **(overrides or {}))
    if init_backbone:  # and so do weights that cannot be read or do not fit (no memory: the network's is meta)
        network.init_backbone(pretrained_weights(str(init_backbone)), str(init_backbone))
    config = train_config(**settings)
    pair_split_files(data, split_file)  # refused now if unpaired, missing or malformed, not after decoding the data
    check_output_folder(out_dir)
    with distributed.process_group(pick_device(device)):
        rank_notify = notify if distributed.rank() == 0 else quiet
        datasets = distributed.from_main(lambda: load_datasets(data, split_file, cache_folders(data, cache, out_dir), notify))
        split = split_datasets(datasets, folds=folds, fold=fold, valid_fraction=valid_fraction, seed=config.seed)
        if train_on_valid:
            split = {**split, "train": split["train"] + split["valid"], "valid": []}
        labels = labels_of(split["train"] + split["valid"])
        if not split["train"]:
            raise MgcError("the split leaves no training tracks")
        warn_absent(datasets, ("train", "valid"), rank_notify)
        rank_notify(f"train: {len(split['train'])} tracks ({describe_counts(split['train'], labels)})")
        rank_notify(f"valid: {len(split['valid'])} tracks ({describe_counts(split['valid'], labels)})")
        return fit(
            model_name, split["train"], split["valid"], labels, out_dir, config, overrides, device,
            str(init_backbone) if init_backbone else None, resume,
        )
