"""`mgc calibrate`: fit a checkpoint's temperatures on labelled tracks (calibration.py says why
and how) and, for a network that keeps a tagger, its novelty scale (novelty.py), or take both
from another checkpoint, and write them into the checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import MgcError, quiet
from ..audio import DEFAULT_HOP_SECONDS
from ..calibration import calibration_report, fit_temperature
from ..checkpoint import load_checkpoint, novelty_of, save_checkpoint, temperatures_of
from ..clips import hop_samples
from ..files import check_outputs
from ..inference import AGGREGATIONS, aggregate, refuse_tagger
from ..novelty import NOVELTY_THRESHOLD, fit_novelty
from ..shipped import WEIGHTS_DIR
from ..torch_engine import model_from_checkpoint, pick_device
from .datasets import SPLITS, load_datasets, pair_split_files, tracks_in_split, warn_absent
from .evaluate import outside_tag_logits, run_tracks, warn_unknown_labels


def calibrate(
    weights: str | Path,
    data: Sequence[Path] = (),
    split_file: Sequence[Path] = (),
    split: str = "valid",
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    copy_from: str | Path | None = None,
    out_file: str | Path | None = None,
    outside: Sequence[Path] = (),
    device: str = "auto",
    notify: Callable[[str], None] = quiet,
) -> dict:
    """Calibrate the checkpoint `weights` and write it to `out_file` (default: over `weights`, atomically).

    The temperature of each aggregation is fit on the tracks of `split` of the datasets `data`
    (one `split_file` per dataset, in order), or, with `copy_from`, taken from that calibrated
    checkpoint: a model trained on the valid split too (the shipped default) cannot be calibrated
    on it, its twin trained without it can. The novelty scale of a network that keeps a tagger
    is fit on the same tracks, or copied with the temperatures; given music `outside` the genres
    (files and folders), its tag weights are learnt from those tracks against these
    (novelty.fit_novelty). Returns {"temperatures", "novelty":
    the scale or None, "reports": {aggregation: calibration_report} (empty when copied),
    "novelty_pass": the share of the tracks at or under the novelty threshold (None when copied
    or none), "tracks", "failed": [(path, error)]}.
    """
    out_file = Path(out_file or weights)
    # The checkpoint itself may be written over: that is the default, and atomic.
    check_outputs([out_file], [Path(weights).with_suffix(".onnx"), *([copy_from] if copy_from else []), *data, *split_file])
    if copy_from is None and not data:
        raise MgcError("give --data (and --split-file) to fit the temperatures on, or --copy-from a calibrated checkpoint")
    if copy_from is not None and (data or outside):
        raise MgcError("--copy-from takes the temperatures and novelty as they are: leave out --data and --outside")
    if split not in (*SPLITS, "all"):
        raise MgcError(f"unknown split {split!r} (use {', '.join(SPLITS)} or all)")
    hop = hop_samples(hop_seconds)
    pair_split_files(data, split_file)
    checkpoint = load_checkpoint(weights)
    result: dict = {"reports": {}, "tracks": 0, "failed": [], "novelty_pass": None}
    model = model_from_checkpoint(checkpoint, pick_device(device), str(weights))
    refuse_tagger(model, weights)
    keeps_tagger = bool(checkpoint["config"].get("keep_tagger"))
    novelty = None
    if copy_from is not None:
        source = load_checkpoint(copy_from)
        if source["labels"] != checkpoint["labels"]:
            raise MgcError(f"{copy_from}: its labels differ from {weights}'s")
        temperatures = temperatures_of(source, str(copy_from))
        if not temperatures:
            raise MgcError(f"{copy_from}: not calibrated (calibrate it first)")
        novelty = novelty_of(source, str(copy_from)) if keeps_tagger else None
        if keeps_tagger and novelty is None:
            raise MgcError(f"{copy_from}: has no novelty scale for {weights}'s tagger (calibrate a checkpoint that keeps one)")
    else:
        datasets = load_datasets(data, split_file)
        warn_absent(datasets, (split,), notify)
        tracks = [track for dataset in datasets for track in tracks_in_split(dataset, split)]
        warn_unknown_labels(tracks, model.labels, notify)
        scored, result["failed"] = run_tracks(model, tracks, hop, None)
        if len(scored) < 2:
            raise MgcError(f"{len(scored)} tracks of the model's genres in the {split} split: too few to fit a temperature on")
        # The fit takes every track, a set label on its summed probability; the report, like
        # evaluate's, the tracks of one genre, whose top probability says how often it is right.
        truths = np.array([truth for truth, _ in scored])
        single = truths.sum(axis=1) == 1
        temperatures = {}
        for aggregation in AGGREGATIONS:
            probabilities = np.array([aggregate(outputs.logits, aggregation) for _, outputs in scored])
            temperatures[aggregation] = fit_temperature(probabilities, truths)
            result["reports"][aggregation] = calibration_report(
                probabilities[single], truths[single].argmax(axis=1), temperatures[aggregation])
        result["tracks"] = len(scored)
        if outside and not keeps_tagger:
            raise MgcError(f"--outside fits the novelty score, and {weights} keeps no tagger to give one")
        if keeps_tagger:
            tag_labels = load_checkpoint(WEIGHTS_DIR / model.network.shipped_backbone)["labels"]
            outside_tags = outside_tag_logits(model, outside, hop, notify) if outside else []
            novelty = fit_novelty(tag_labels, [outputs.tag_logits for _, outputs in scored], outside_tags)
            result["novelty_pass"] = float(np.mean([novelty.novelty(o.tag_logits) <= NOVELTY_THRESHOLD for _, o in scored]))
    checkpoint["temperatures"] = temperatures
    if novelty is not None:
        checkpoint["novelty"] = novelty.to_dict()
    save_checkpoint(checkpoint, out_file)
    twin = out_file.with_suffix(".onnx")
    if twin.is_file():
        notify(f"warning: {twin} predates this calibration, so predict runs {out_file.name} on PyTorch until "
               f"you export it again: mgc export {out_file} --format onnx --out {twin}")
    return result | {"temperatures": temperatures, "novelty": novelty}
