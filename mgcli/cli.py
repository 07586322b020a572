"""The `mgc` command: a thin layer over the library. Torch is imported only inside commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import MgcError, __version__
from .audio import DEFAULT_HOP_SECONDS
from .explain.plot import (
    CUTOFFS_PIXELS,
    EXPLAIN_PIXELS,
    RESPONSES_PIXELS,
    SPECTROGRAMS_PIXELS,
    TIMELINE_PIXELS,
)

app = typer.Typer(
    help="Music genre classification: MS-SincResNet and friends.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# markup=False: what these print (file names, labels, messages) is text; "Björk [live].ogg" is no Rich markup.
out = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)

Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]
Hop = Annotated[float, typer.Option(help="Seconds between clip starts (paper: 0.5; default: back-to-back 3-s clips).")]
Aggregate = Annotated[str, typer.Option(help="Clips to track: mean_prob, vote (paper) or mean_logit.")]
Data = Annotated[list[Path], typer.Option(help="Dataset folder, CSV manifest or preprocess cache; repeat for several datasets as one.")]
SplitFiles = Annotated[list[Path], typer.Option("--split-file", help="CSV with path,split columns (train/valid/test): one per --data, in order, or none.")]
ModelName = Annotated[str, typer.Option("--model", help="Model name (see `mgc models`).")]
Sets = Annotated[list[str], typer.Option("--set", help="Model config override key=value (repeatable).")]
Epochs = Annotated[int, typer.Option(min=1)]
BatchSize = Annotated[Optional[int], typer.Option(min=1, help="Clips per optimiser step (default 16).")]
OptimizerName = Annotated[Optional[str], typer.Option("--optimizer", help="sgd (paper) or adam.")]
Lr = Annotated[Optional[float], typer.Option(help="Learning rate after warm-up (paper: 0.005).")]
Warmup = Annotated[Optional[int], typer.Option(help="Epochs at 1e-5 first (paper: 5).")]
Seed = Annotated[Optional[int], typer.Option(help="Seed of every random choice (default 0).")]
Schedule = Annotated[Optional[str], typer.Option(help="Learning rate after warm-up: step (paper: halve every 30 epochs) or cosine.")]
LabelSmoothing = Annotated[Optional[float], typer.Option(min=0.0, max=0.5, help="Label smoothing of the loss (default 0).")]
Mix = Annotated[Optional[float], typer.Option("--mix", min=0.0, max=1.0, help="Share of clips mixed with another track of their genre.")]
Masks = Annotated[Optional[int], typer.Option(min=0, help="SpecAugment-style time and frequency masks per clip.")]
Balance = Annotated[Optional[str], typer.Option(help="Class balance: loss, sampler or none.")]
Cache = Annotated[Optional[Path], typer.Option(help="Where to cache decoded audio (default: OUT/cache; with several --data, CACHE-1, CACHE-2, ...).")]


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except MgcError as error:
        err.print(_tagged("error:", "red", str(error)))
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


def _tagged(tag: str, style: str, message: str) -> Text:
    """`tag` in colour, then `message` as plain text."""
    return Text.assemble((tag, style), " ", message)


def _version(value: bool) -> None:
    if value:
        out.print(f"mgcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    pass


def _parse_sets(pairs: list[str]) -> dict:
    """`--set key=value` model overrides; values are JSON where they parse (numbers, lists, booleans)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MgcError(f"--set takes key=value, got {pair!r}")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            overrides[key] = value
    return overrides


# ---------------------------------------------------------------- predict


@app.command()
def predict(
    paths: Annotated[list[Path], typer.Argument(help="Audio files and/or folders (searched recursively).")],
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint to use (default: the shipped weights).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Genres to show per file.")] = 3,
    csv: Annotated[Optional[Path], typer.Option(help="Write one row per file: path,genre,probability,<labels>,error.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON.")] = None,
    hop: Hop = DEFAULT_HOP_SECONDS,
    aggregate: Aggregate = "mean_prob",
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Clips per forward pass (default: 4 on the CPU, 16 on CUDA).")] = None,
    skip_existing: Annotated[bool, typer.Option(help="Resume --csv: keep its finished rows and skip those files.")] = False,
    shard: Annotated[Optional[str], typer.Option(metavar="I/N", help="Tag only shard I of N (0 <= I < N): a stable share of the files, for N machines or a job array.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --csv or --timeline-csv file.")] = False,
    timeline: Annotated[bool, typer.Option(help="Add every clip's window, top genre and probabilities to --json (and a table for one file).")] = False,
    timeline_csv: Annotated[Optional[Path], typer.Option(help="Write one row per clip: path,start,end,genre,probability,<labels>.")] = None,
    timeline_png: Annotated[Optional[Path], typer.Option(help=f"Draw one file's clips as a {TIMELINE_PIXELS[0]} x {TIMELINE_PIXELS[1]} PNG strip (needs mgcli\\[plot]).")] = None,
    device: Device = "auto",
) -> None:
    """Tag audio files with their genre."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from .audio import SAMPLE_RATE
    from .catalogue import find_audio, parse_shard, shard_files
    from .clips import hop_samples
    from .explain.plot import draw_timeline, require_matplotlib
    from .files import check_output_file
    from .inference import AGGREGATIONS, classify_files, load_model
    from .inference import timeline as segments_of
    from .inference import top_k as best_of
    from .writers import CsvWriter, TimelineCsvWriter, result_dict, write_json

    if aggregate not in AGGREGATIONS:
        raise MgcError(f"unknown aggregation {aggregate!r} (use {', '.join(AGGREGATIONS)})")
    if timeline_csv and skip_existing:
        raise MgcError("--timeline-csv cannot resume; leave out --skip-existing or write the timeline in a run of its own")
    # Refuse a bad hop or an output that cannot be written now, not after hours of tagging.
    hop_samples(hop)
    for output in (csv, json_out, timeline_csv, timeline_png):
        if output:
            check_output_file(output)
    shard_index, shard_count = parse_shard(shard) if shard else (0, 1)
    files = find_audio(paths)
    if not files:
        raise MgcError("no audio files found in " + ", ".join(map(str, paths)))
    files = shard_files(files, paths, shard_index, shard_count)
    if timeline_png:
        require_matplotlib()
        if len(files) != 1:
            raise MgcError(f"--timeline-png draws one track, and {len(files)} files were given")
    model = load_model(weights, device)
    writer = CsvWriter(csv, model.labels, resume=skip_existing, overwrite=overwrite) if csv else None
    timeline_writer = TimelineCsvWriter(timeline_csv, model.labels, overwrite) if timeline_csv else None

    def clip_segments(result) -> list[dict]:
        return segments_of(result.clip_logits, model.labels, hop_samples(hop) / SAMPLE_RATE, model.clip_samples / SAMPLE_RATE)

    todo = [f for f in files if writer is None or not writer.is_done(f)]
    if writer and len(todo) < len(files):
        err.print(f"skipping {len(files) - len(todo)} files already in {csv}")

    results = []
    failed = warned = 0
    single = len(files) == 1 and not csv
    with Progress(
        TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=single,
    ) as progress:
        task = progress.add_task("files", total=len(todo))
        for result in classify_files(model, todo, hop, aggregate, batch_size):
            results.append(result)
            if writer:
                writer.write(result)
            if timeline_writer and not result.error:
                timeline_writer.write(result.path, clip_segments(result))
            if result.error:
                failed += 1
                progress.console.print(_tagged("failed:", "red", result.error), highlight=False)
            elif not csv and not single:
                genre, p = best_of(result.probabilities, model.labels, 1)[0]
                out.print(f"{result.path}\t{genre}\t{p:.3f}", highlight=False)
            if result.warning:
                warned += 1
                progress.console.print(_tagged("warning:", "yellow", result.warning), highlight=False)
            progress.advance(task)
    for finished in (writer, timeline_writer):
        if finished:
            finished.close()
    if json_out:
        records = [result_dict(r, model.labels, top_k, clip_segments(r) if timeline and not r.error else None) for r in results]
        write_json(json_out, records)

    if single and not results[0].error:
        out.print(f"{results[0].path} ({results[0].clips} clips, {aggregate})", highlight=False)
        table = Table()
        table.add_column("genre")
        table.add_column("probability", justify="right")
        for genre, p in best_of(results[0].probabilities, model.labels, top_k):
            table.add_row(genre, f"{p:.3f}")
        out.print(table)
        if timeline:
            clips = Table(title="clips", title_justify="left")
            for column in ("from (s)", "to (s)", "genre", "probability"):
                clips.add_column(column, justify="left" if column == "genre" else "right")
            for s in clip_segments(results[0]):
                clips.add_row(f"{s['start']:.2f}", f"{s['end']:.2f}", s["genre"], f"{s['probability']:.3f}")
            out.print(clips)
    elif not single:
        target = f" → {csv}" if csv else ""
        warnings = f", {warned} with a warning" if warned else ""
        err.print(f"tagged {len(results) - failed} files, {failed} failed{warnings}{target}")
    if timeline_png and not results[0].error:
        draw_timeline(timeline_png, clip_segments(results[0]), model.labels, Path(results[0].path).name)
        err.print(f"written: {timeline_png}")
    if failed:
        raise typer.Exit(1)


@app.command()
def tags(
    paths: Annotated[list[Path], typer.Argument(help="Audio files and/or folders (searched recursively).")],
    weights: Annotated[Optional[Path], typer.Option(help="Tagger checkpoint (default: musicnn's Million Song Dataset tagger, weights/musicnn-msd.pt; weights/musicnn-mtt.pt is its MagnaTagATune one).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Tags to show per file.")] = 10,
    csv: Annotated[Optional[Path], typer.Option(help="Write one row per file: path,tag,probability,<tags>,error,warning.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write every tag's probability as JSON.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --csv file.")] = False,
    hop: Hop = DEFAULT_HOP_SECONDS,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Clips per forward pass (default: 4 on the CPU, 16 on CUDA).")] = None,
    device: Device = "auto",
) -> None:
    """musicnn's tags (genre, mood, era, instruments) with their probabilities: sigmoid per 3-s clip, mean over the track."""
    from .catalogue import find_audio
    from .clips import hop_samples
    from .files import check_output_file
    from .inference import top_k as best_of
    from .tags import load_tagger, tag_files
    from .writers import CsvWriter, tags_dict, write_json

    hop_samples(hop)  # these refuse bad input now, before the model is loaded or any file read
    for output in (csv, json_out):
        if output:
            check_output_file(output)
    files = find_audio(paths)
    if not files:
        raise MgcError("no audio files found in " + ", ".join(map(str, paths)))
    model = load_tagger(weights, device)
    writer = CsvWriter(csv, model.labels, overwrite=overwrite, top="tag") if csv else None
    results = []
    for result in tag_files(model, files, hop, batch_size):
        results.append(result)
        if writer:
            writer.write(result)
        if result.error:
            err.print(_tagged("failed:", "red", result.error), highlight=False)
        elif len(files) > 1:
            best = ", ".join(f"{t} {p:.2f}" for t, p in best_of(result.probabilities, model.labels, top_k))
            out.print(f"{result.path}\t{best}", highlight=False)
        if result.warning:
            err.print(_tagged("warning:", "yellow", result.warning), highlight=False)
    if writer:
        writer.close()
    if json_out:
        write_json(json_out, [tags_dict(r, model.labels) for r in results])
    if len(files) == 1 and not results[0].error:
        out.print(f"{results[0].path} ({results[0].clips} clips)", highlight=False)
        table = Table()
        table.add_column("tag")
        table.add_column("probability", justify="right")
        for name, p in best_of(results[0].probabilities, model.labels, top_k):
            table.add_row(name, f"{p:.3f}")
        out.print(table)
    if any(r.error for r in results):
        raise typer.Exit(1)


# ---------------------------------------------------------------- datasets


@app.command()
def preprocess(
    data: Annotated[Path, typer.Argument(help="Folder-per-genre tree or CSV manifest (path,label[,split]).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Cache folder to write (reused when run again).")],
) -> None:
    """Decode a dataset once into a compact 16 kHz cache that train and evaluate read."""
    from rich.progress import Progress

    from .files import check_output_folder
    from .training.cache import preprocess as build_cache
    from .training.datasets import find_tracks

    check_output_folder(out_dir)
    tracks = find_tracks(data)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("decoding", total=len(tracks))
        report = build_cache(tracks, out_dir, on_track=lambda _: progress.advance(task))
    for path, error in report.failed:
        err.print(_tagged("skipped:", "yellow", error), highlight=False)
    out.print(
        f"{out_dir}: {report.cached} tracks decoded, {report.reused} reused, {len(report.failed)} skipped"
    )


def _load_datasets(data: list[Path], split_files: list[Path], caches: list[Path] | None) -> list:
    """`data.load_datasets`, saying what it decodes and which tracks it skips."""
    from .training.datasets import load_datasets

    datasets = load_datasets(data, split_files, caches, notify=lambda message: err.print(message, highlight=False))
    for dataset in datasets:
        for _, error in dataset.skipped:
            err.print(_tagged("skipped:", "yellow", error), highlight=False)
    return datasets


def _warn_absent(datasets: list, splits: tuple[str, ...]) -> None:
    """Name the tracks each split file gives to `splits` that its dataset lacks: else they go unscored without a word."""
    from .training.datasets import absent_from_split_file

    for dataset in datasets:
        absent = absent_from_split_file(dataset.tracks, dataset.split_file, splits) if dataset.split_file else []
        if absent:
            shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            message = f"{dataset.split_file} names {len(absent)} {'/'.join(splits)} track(s) missing from {dataset.source}: {shown}"
            err.print(_tagged("warning:", "yellow", message), highlight=False)


def _train_config(**values) -> "TrainConfig":
    from .training.train import TrainConfig

    return TrainConfig(**{k: v for k, v in values.items() if v is not None})


# ---------------------------------------------------------------- train


@app.command()
def train(
    data: Data,
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder: last.pt, best.pt, log.jsonl.")],
    model: ModelName = "ms-sincresnet",
    set_: Sets = [],
    epochs: Epochs = 100,
    split_file: SplitFiles = [],
    folds: Annotated[Optional[int], typer.Option(help="Stratified k-fold: number of folds.")] = None,
    fold: Annotated[Optional[int], typer.Option(help="With --folds: the fold held out for validation.")] = None,
    valid_fraction: Annotated[float, typer.Option(help="Without a split: stratified validation share.")] = 0.2,
    batch_size: BatchSize = None,
    clips_per_track: Annotated[Optional[int], typer.Option(min=1, help="Random clips per track per epoch (paper: 4).")] = None,
    optimizer: OptimizerName = None,
    lr: Lr = None,
    warmup_epochs: Warmup = None,
    balance: Balance = None,
    schedule: Schedule = None,
    label_smoothing: LabelSmoothing = None,
    mix: Mix = None,
    masks: Masks = None,
    eval_hop: Annotated[Optional[float], typer.Option(help="Validation clip hop in seconds.")] = None,
    seed: Seed = None,
    workers: Annotated[Optional[int], typer.Option(help="Data-loading worker processes.")] = None,
    init_backbone: Annotated[Optional[Path], typer.Option(help="Pretrained weights: a torchvision ResNet-18 file, or a musicnn tagger checkpoint (musicnn models start from weights/musicnn-msd.pt without it).")] = None,
    pretrained_lr_scale: Annotated[Optional[float], typer.Option(min=0.0, help="Learning rate of pretrained parameters relative to the new genre layer (default 1).")] = None,
    feature_hop: Annotated[Optional[float], typer.Option(min=0.05, help="Models with a frozen part: seconds between the training clips whose features are cached (default 1.5).")] = None,
    cache: Cache = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last.pt.")] = False,
    device: Device = "auto",
) -> None:
    """Train a model of the zoo on labelled audio.

    On N processes (one per GPU, or per group of CPU cores): torchrun --nproc-per-node N -m mgcli train ...
    """
    import torch

    from .files import check_output_folder
    from .inference import pick_device
    from .models import build
    from .training.datasets import (
        cache_folders,
        describe_counts,
        labels_of,
        pair_split_files,
        split_datasets,
    )
    from .training.distributed import from_main, process_group, rank
    from .training.train import fit

    overrides = _parse_sets(set_)
    with torch.device("meta"):  # a wrong name, key or value fails now, not after decoding the data
        build(model, **overrides)
    config = _train_config(
        epochs=epochs, batch_size=batch_size, clips_per_track=clips_per_track, optimizer=optimizer, lr=lr,
        warmup_epochs=warmup_epochs, balance=balance, schedule=schedule, label_smoothing=label_smoothing,
        mix_prob=mix, masks=masks, eval_hop_seconds=eval_hop, seed=seed, workers=workers,
        pretrained_lr_scale=pretrained_lr_scale, feature_hop_seconds=feature_hop,
    )
    pair_split_files(data, split_file)  # refused now if unpaired, missing or malformed, not after decoding the data
    check_output_folder(out_dir)
    with process_group(pick_device(device)):  # under torchrun the ranks train as one run; alone, nothing changes
        # Under torchrun rank 0 alone decodes into the caches, and the others take its tracks.
        datasets = from_main(lambda: _load_datasets(data, split_file, cache_folders(data, cache, out_dir)))
        split = split_datasets(datasets, folds=folds, fold=fold, valid_fraction=valid_fraction, seed=config.seed)
        labels = labels_of(split["train"] + split["valid"])
        if not split["train"]:
            raise MgcError("the split leaves no training tracks")
        if rank() == 0:
            _warn_absent(datasets, ("train", "valid"))
            err.print(f"train: {len(split['train'])} tracks ({describe_counts(split['train'], labels)})")
            err.print(f"valid: {len(split['valid'])} tracks ({describe_counts(split['valid'], labels)})")
        history = fit(
            model, split["train"], split["valid"], labels, out_dir, config, overrides, device,
            str(init_backbone) if init_backbone else None, resume,
        )
        if history and rank() == 0:
            out.print(f"done: {out_dir}/best.pt (chosen on valid), {out_dir}/last.pt, {out_dir}/log.jsonl")


@app.command()
def crossval(
    data: Data,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for fold-*/ runs and crossval.json.")],
    model: ModelName = "ms-sincresnet",
    set_: Sets = [],
    folds: Annotated[int, typer.Option(min=2)] = 10,
    epochs: Epochs = 100,
    batch_size: BatchSize = None,
    optimizer: OptimizerName = None,
    lr: Lr = None,
    warmup_epochs: Warmup = None,
    balance: Balance = None,
    schedule: Schedule = None,
    label_smoothing: LabelSmoothing = None,
    mix: Mix = None,
    masks: Masks = None,
    seed: Seed = None,
    cache: Cache = None,
    device: Device = "auto",
) -> None:
    """K-fold cross-validation as the paper ran it: train and test on every fold, mean ± std."""
    from .files import check_output_folder
    from .models import make_config
    from .training.datasets import cache_folders, labels_of
    from .training.distributed import launched
    from .training.train import cross_validate

    if launched():  # every rank would run every fold into the same folder
        raise MgcError("crossval runs in one process; under torchrun train each fold: mgc train --folds K --fold I")

    overrides = _parse_sets(set_)
    make_config(model, **overrides)
    config = _train_config(
        epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, warmup_epochs=warmup_epochs,
        balance=balance, schedule=schedule, label_smoothing=label_smoothing, mix_prob=mix, masks=masks, seed=seed,
    )
    check_output_folder(out_dir)
    tracks = [t for dataset in _load_datasets(data, [], cache_folders(data, cache, out_dir)) for t in dataset.tracks]
    report = cross_validate(model, tracks, labels_of(tracks), out_dir, config, folds, overrides, device)
    table = Table(title=report["protocol"])
    for column in ("fold", "tracks", "track acc", "clip acc", "macro recall"):
        table.add_column(column, justify="right")
    for r in report["folds"]:
        table.add_row(str(r["fold"]), str(r["tracks"]), f"{r['track_accuracy']:.3f}", f"{r['clip_accuracy']:.3f}", f"{r['macro_recall']:.3f}")
    s = report["summary"]
    table.add_row("mean ± std", "", *(f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" for m in ("track_accuracy", "clip_accuracy", "macro_recall")))
    out.print(table)
    out.print(_tagged("note:", "yellow", report["warning"]))
    out.print(f"written: {out_dir / 'crossval.json'}")


# ---------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    data: Data,
    weights: Annotated[Path, typer.Option(help="Checkpoint to score.")],
    split_file: SplitFiles = [],
    split: Annotated[Optional[str], typer.Option(help="Which split to score: train, valid, test or all (default: test with --split-file, else all).")] = None,
    aggregate: Aggregate = "mean_prob",
    hop: Hop = DEFAULT_HOP_SECONDS,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON.")] = None,
    device: Device = "auto",
) -> None:
    """Score a checkpoint: clip and track accuracy, per-class figures, confusion matrix.

    With several --data: each dataset's scores, then all of them together.
    """
    from .clips import hop_samples
    from .files import check_output_file, write_text_atomic
    from .inference import AGGREGATIONS, load_model
    from .training.datasets import (
        SPLITS,
        load_datasets,
        pair_split_files,
        tracks_in_split,
    )
    from .training.evaluate import evaluate_datasets, evaluate_tracks

    if aggregate not in AGGREGATIONS:
        raise MgcError(f"unknown aggregation {aggregate!r} (use {', '.join(AGGREGATIONS)})")
    split = split or ("test" if split_file else "all")
    if split not in (*SPLITS, "all"):
        raise MgcError(f"unknown split {split!r} (use {', '.join(SPLITS)} or all)")
    hop_samples(hop)  # these refuse bad input now, before the model is loaded or any track decoded
    pair_split_files(data, split_file)
    if json_out:
        check_output_file(json_out)
    model = load_model(weights, device)
    datasets = load_datasets(data, split_file)
    chosen = {str(d.source): tracks_in_split(d, split) for d in datasets}
    if split != "all":
        _warn_absent(datasets, (split,))
    if len(chosen) == 1:
        report = evaluate_tracks(model, *chosen.values(), hop, aggregate)
    else:
        report = evaluate_datasets(model, chosen, hop, aggregate)
    for path, error in report["failed"]:
        err.print(_tagged("skipped:", "yellow", error), highlight=False)
    for source, part in report.get("datasets", {}).items():
        _print_report(part, model.labels, f"{weights} on {source} ({split})")
    _print_report(report, model.labels, f"{weights} on {' + '.join(map(str, data))} ({split})")
    if json_out:
        sources = str(data[0]) if len(data) == 1 else [str(d) for d in data]
        document = {"weights": str(weights), "data": sources, "split": split, "labels": model.labels, **report}
        write_text_atomic(json_out, json.dumps(document, indent=2) + "\n")
        out.print(f"written: {json_out}")


def _print_report(report: dict, labels: list[str], title: str) -> None:
    track, clip = report["track"], report["clip"]
    summary = Table(title=title, title_justify="left", show_header=False)
    summary.add_row("tracks / clips", f"{track['count']} / {clip['count']}")
    summary.add_row("clip accuracy", f"{clip['accuracy']:.3f}")
    for method, accuracy in report["track_accuracy"].items():
        marker = " (chosen)" if method == report["aggregate"] else ""
        summary.add_row(f"track accuracy, {method}{marker}", f"{accuracy:.3f}")
    for metric in ("precision", "recall", "f1"):
        summary.add_row(f"macro {metric} (tracks)", f"{track['macro'][metric]:.3f}")
    out.print(summary)

    per_class = Table(title="per class (tracks)", title_justify="left")
    for column in ("genre", "precision", "recall", "f1", "support"):
        per_class.add_column(column, justify="left" if column == "genre" else "right")
    for c in track["per_class"]:
        per_class.add_row(c["label"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"]))
    out.print(per_class)

    confusion = Table(title="confusion (rows: true, columns: predicted)", title_justify="left")
    confusion.add_column("")
    for label in labels:
        confusion.add_column(label[:5], justify="right")
    for label, row in zip(labels, track["confusion"]):
        confusion.add_row(label, *(str(v) if v else "·" for v in row))
    out.print(confusion)


# ---------------------------------------------------------------- models


@app.command()
def models() -> None:
    """List the model zoo with parameter counts."""
    from .models import describe

    table = Table()
    table.add_column("name")
    table.add_column("parameters", justify="right")
    table.add_column("what it is")
    for row in describe():
        table.add_row(row["name"], f"{row['parameters']:,}", row["summary"])
    out.print(table)


# ---------------------------------------------------------------- export


@app.command("export")
def export_checkpoint(
    fmt: Annotated[str, typer.Option("--format", help="onnx (needs mgcli\\[onnx]) or torchscript.")],
    out_file: Annotated[Path, typer.Option("--out", help="File to write.")],
    weights: Annotated[Optional[str], typer.Argument(metavar="CKPT", help="Checkpoint to export, or `default` for the shipped weights (the default).")] = None,
) -> None:
    """Write a model as one ONNX or TorchScript file that runs without mgcli: waveform clips in, logits out."""
    from .export import export_model
    from .files import check_output_file
    from .inference import load_model

    check_output_file(out_file)
    model = load_model(None if weights in (None, "default") else weights, "cpu")
    path = export_model(model, fmt, out_file)
    out.print(
        f"written: {path} ({fmt}: {model.name}, {len(model.labels)} labels, {model.clip_samples}-sample clips)",
        highlight=False,
    )


@app.command("ensemble")
def ensemble_checkpoints(
    members: Annotated[list[Path], typer.Argument(metavar="CKPT...", help="Trained musicnn checkpoints (freeze=front-end, one tagger).")],
    out_file: Annotated[Path, typer.Option("--out", help="Checkpoint to write.")],
) -> None:
    """Join musicnn networks fine-tuned from one tagger into one model: one front end, their probabilities averaged."""
    from .checkpoint import ensemble_checkpoint, save_checkpoint
    from .files import check_output_file

    check_output_file(out_file)
    checkpoint = ensemble_checkpoint(members)
    save_checkpoint(checkpoint, out_file)
    out.print(Text(f"written: {out_file} (musicnn-ensemble of {len(members)}, {len(checkpoint['labels'])} labels)"))


# ---------------------------------------------------------------- explain and inspect
# In help text "\\[plot]" is rich markup's escape: typer would otherwise take "[plot]" for a style.


@app.command()
def explain(
    file: Annotated[Path, typer.Argument(help="Audio file to explain.")],
    out_png: Annotated[Path, typer.Option("--out", help=f"PNG to write ({EXPLAIN_PIXELS[0]} x {EXPLAIN_PIXELS[1]} pixels).")],
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint to explain (default: the shipped weights).")] = None,
    label: Annotated[Optional[str], typer.Option(help="Genre to explain (default: the predicted one).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Integrated-gradients steps per clip; a clip costs about steps + 2 forward and backward passes.")] = 16,
    device: Device = "auto",
) -> None:
    """Show where a model hears a genre: Grad-CAM and integrated gradients over the whole track (needs mgcli\\[plot])."""
    from .explain.explain import explain_file
    from .explain.plot import draw_explanation, require_matplotlib
    from .files import check_output_file
    from .inference import load_model

    require_matplotlib()
    check_output_file(out_png)
    model = load_model(weights, device)
    explanation = explain_file(model, file, label, steps)
    draw_explanation(out_png, explanation)
    out.print(f"{file}: {explanation.label} explained over {len(explanation.timeline)} clips → {out_png}", highlight=False)


@app.command("inspect")
def inspect_checkpoint(
    weights: Annotated[Path, typer.Argument(help="Checkpoint to inspect.")],
    out_dir: Annotated[Path, typer.Option("--out", help=(
        f"Folder for sinc-cutoffs.png ({CUTOFFS_PIXELS[0]} x {CUTOFFS_PIXELS[1]} pixels), sinc-responses.png "
        f"({RESPONSES_PIXELS[0]} x {RESPONSES_PIXELS[1]}) and, with --audio, spectrograms.png "
        f"({SPECTROGRAMS_PIXELS[0]} x {SPECTROGRAMS_PIXELS[1]})."
    ))],
    audio: Annotated[Optional[Path], typer.Option(help="Also draw a clip of this file: the learned representation beside its mel, linear, harmonic and percussive spectrograms.")] = None,
    start: Annotated[Optional[float], typer.Option(help="With --audio: where the clip starts, in seconds (default: the middle of the track).")] = None,
) -> None:
    """Draw a checkpoint's learned sinc filters and, with --audio, how it sees a clip (needs mgcli\\[plot])."""
    from .explain.inspect import clip_spectrograms, sinc_filters
    from .explain.plot import (
        draw_sinc_cutoffs,
        draw_sinc_responses,
        draw_spectrograms,
        require_matplotlib,
    )
    from .files import check_output_folder
    from .inference import load_model

    if start is not None and audio is None:
        raise MgcError("--start places the --audio clip: give --audio FILE too")
    require_matplotlib()
    check_output_folder(out_dir)
    model = load_model(weights, "cpu")
    banks = sinc_filters(model.network)
    if not banks and audio is None:
        raise MgcError(f"{weights}: {model.name} has no sinc filters to draw; pass --audio FILE for its spectrograms")
    written = []
    if banks:
        written += [out_dir / "sinc-cutoffs.png", out_dir / "sinc-responses.png"]
        draw_sinc_cutoffs(written[0], banks)
        draw_sinc_responses(written[1], banks)
    if audio:
        clip = clip_spectrograms(model, audio, start)
        if clip.learned is None:
            err.print(f"{model.name} has no multi-scale sinc front end: spectrograms.png shows the hand-made spectrograms only")
        written.append(out_dir / "spectrograms.png")
        draw_spectrograms(written[-1], clip)
    for path in written:
        out.print(f"written: {path}", highlight=False)
