"""The `mgc` command: a thin layer over the library. Torch is imported only inside commands."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import MgcError, __version__, printable
from .audio import DEFAULT_HOP_SECONDS, AudioError
from .explain import (
    CUTOFFS_PIXELS,
    EXPLAIN_PIXELS,
    FILTERS_PIXELS,
    RESPONSES_PIXELS,
    SPECTROGRAMS_PIXELS,
    TIMELINE_PIXELS,
)
from .novelty import NOVELTY_THRESHOLD

app = typer.Typer(
    help="Music genre classification: MS-SincResNet and friends.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class _Stdout(io.TextIOBase):
    """Standard output as `out` writes it (whatever sys.stdout is then: a test captures it). It is an
    output too: a write that fails (`> /dev/full`, a closed pipe) ends the run in one line, exit 2, and
    descriptor 1 goes to /dev/null, so that nothing is tried there again as Python exits."""

    def write(self, text: str) -> int:
        return self._tried(lambda: sys.stdout.write(text))

    def flush(self) -> None:
        self._tried(sys.stdout.flush)

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()

    @property
    def encoding(self) -> str:
        return sys.stdout.encoding

    def _tried(self, write):
        try:
            return write()
        except OSError as error:
            with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            raise MgcError(f"standard output: cannot write it ({error.strerror or error})") from None


# markup=False: what these print (file names, labels, messages) is text; "Björk [live].ogg" is no Rich markup.
out = Console(file=_Stdout(), soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)

Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")]
Engine = Annotated[str, typer.Option(help="auto (onnxruntime on the CPU when the weights have an ONNX file, else PyTorch), onnx or torch.")]
Hop = Annotated[float, typer.Option("--hop", help="Seconds between clip starts (paper: 0.5; default: back-to-back 3-s clips).")]
Aggregate = Annotated[str, typer.Option("--aggregate", help="Clips to track: mean_prob, vote (paper) or mean_logit.")]
# readable=False: a file that cannot be read is a file that failed (exit 1, its own line), not a usage error.
AudioPaths = Annotated[list[Path], typer.Argument(readable=False, help="Audio files and/or folders (searched recursively).")]
# A string, so that "all" is one; clips.parse_clip_budget reads it (a bad one is one line, exit 2).
ClipBudget = Annotated[str, typer.Option("--clips", metavar="N|auto|all", help="Clips read of each track, spread evenly over it, so a long track costs what a 30-s one does; 'auto': 10, and every clip of a track they leave in doubt; 'all': every clip.")]
ClipsPerPass = Annotated[Optional[int], typer.Option(min=1, help="Clips per forward pass (default: 4 on the CPU, 16 on CUDA).")]
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


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the program is, so that it ends as after Ctrl-C: outputs closed, nothing torn."""

    def __init__(self, signum: int):
        self.signum = signum


def _terminate(signum: int, frame) -> None:
    raise _Terminated(signum)


ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # a kill, a closed terminal


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2 (1 for an audio file that
    cannot be decoded, as in a batch run), never a traceback. Ctrl-C exits 130, SIGTERM 143, SIGHUP 129."""
    previous = {signum: signal.signal(signum, _terminate) for signum in ENDING_SIGNALS}
    try:
        with _without_c_chatter():
            app()
    except AudioError as error:
        err.print(_tagged("error:", "red", str(error)))
        sys.exit(1)
    except MgcError as error:
        err.print(_tagged("error:", "red", str(error)))
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except _Terminated as ended:
        err.print("terminated")
        sys.exit(128 + ended.signum)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _without_c_chatter() -> Iterator[None]:
    """Keep the C decoders' own lines off the terminal: libmpg123 prints "Note: Illegal Audio-MPEG-Header"
    and "error: part2_3_length too large" to file descriptor 2 from inside reads, on any thread, for
    files mgc then tags or reports in one line of its own. Descriptor 2 goes to /dev/null and
    sys.stderr, which mgc's messages (and any traceback) use, to a copy of the real one. Left
    alone when Python was asked to report imports (-X importtime): those go to descriptor 2 too."""
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, ValueError, io.UnsupportedOperation):
        real = False  # a stream of its own already (a test capturing it): nothing reaches it from C
    if not real or "importtime" in sys._xoptions or os.environ.get("PYTHONPROFILEIMPORTTIME"):
        yield
        return
    stderr = sys.stderr
    stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = open(saved, "w", encoding=stderr.encoding, errors=stderr.errors, buffering=1)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        sys.stderr.close()  # and the copy with it
        sys.stderr = stderr


def _notify(message: str) -> None:
    """Where library calls send their progress messages: stderr, a leading "skipped:" or "warning:" in colour."""
    tag, _, rest = message.partition(" ")
    style = {"skipped:": "yellow", "warning:": "yellow"}.get(tag)
    err.print(_tagged(tag, style, rest) if style else Text(printable(message)), highlight=False)


def _tagged(tag: str, style: str, message: str) -> Text:
    """`tag` in colour, then `message` as plain text (control characters in file names escaped)."""
    return Text.assemble((tag, style), " ", printable(message))


def _print_top(result, labels: list[str], k: int, column: str, note: str = "") -> None:
    """One file's `k` most probable labels as a table."""
    from .inference import top_k

    out.print(f"{printable(result.path)} ({result.clips} clips{note})", highlight=False)
    table = Table()
    table.add_column(column)
    table.add_column("probability", justify="right")
    for label, p in top_k(result.probabilities, labels, k):
        table.add_row(label, f"{p:.3f}")
    out.print(table)


def _version(value: bool) -> None:
    if value:
        out.print(f"mgcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    pass


# ---------------------------------------------------------------- predict


@app.command()
def predict(
    paths: AudioPaths,
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint (.pt) or exported ONNX file to use (default: the shipped weights).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Genres to show per file.")] = 3,
    csv: Annotated[Optional[Path], typer.Option(help="Write one row per file: path,genre,probability,<labels>,error.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON.")] = None,
    hop_seconds: Hop = DEFAULT_HOP_SECONDS,
    aggregation: Aggregate = "mean_prob",
    batch_size: ClipsPerPass = None,
    skip_existing: Annotated[bool, typer.Option(help="Resume --csv: keep its finished rows and skip those files.")] = False,
    shard: Annotated[Optional[str], typer.Option(metavar="I/N", help="Tag only shard I of N (0 <= I < N): a stable share of the files, for N machines or a job array.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --csv or --timeline-csv file.")] = False,
    timeline: Annotated[bool, typer.Option(help="Add every clip's window, top genre and probabilities to --json (and a table for one file).")] = False,
    timeline_csv: Annotated[Optional[Path], typer.Option(help="Write one row per clip: path,start,end,genre,probability,<labels>.")] = None,
    timeline_png: Annotated[Optional[Path], typer.Option(help=f"Draw one file's clips as a {TIMELINE_PIXELS[0]} x {TIMELINE_PIXELS[1]} PNG strip (needs mgcli\\[plot]).")] = None,
    device: Device = "auto",
    engine: Engine = "auto",
    unknown_above: Annotated[Optional[float], typer.Option(metavar="NOVELTY", help=f"Name the genre of tracks whose novelty is above this 'unknown' (0-1; at {NOVELTY_THRESHOLD}, 95% of in-genre valid tracks pass). Off by default.")] = None,
    clips: ClipBudget = "auto",
) -> None:
    """Tag audio files with their genre, and say how far each is from all of them (novelty).

    --timeline, --timeline-csv and --timeline-png read every clip, whatever --clips says.
    """
    options = dict(locals())  # the parameters, named as the library call's keywords
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .clips import parse_clip_budget
    from .inference import genre_of
    from .predict import predict_paths

    clip_budget, settle = parse_clip_budget(options.pop("clips"))  # --clips is these two, in the library
    run = predict_paths(**options, clip_budget=clip_budget, settle=settle)
    labels = run.model.labels
    if len(run.todo) < len(run.files):
        err.print(f"skipping {len(run.files) - len(run.todo)} files already in {csv}")
    results = []
    failed = warned = 0
    single = len(run.files) == 1 and not csv
    with Progress(
        TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=single,
    ) as progress:
        task = progress.add_task("files", total=len(run.todo))
        for result in run.results:
            results.append(result)
            if result.error:
                failed += 1
                progress.console.print(_tagged("failed:", "red", result.error), highlight=False)
            elif not csv and not single:
                genre, p = genre_of(result, labels, unknown_above), result.probabilities.max()
                out.print(f"{printable(result.path)}\t{genre}\t{p:.3f}", highlight=False)
            if result.warning:
                warned += 1
                progress.console.print(_tagged("warning:", "yellow", result.warning), highlight=False)
            progress.advance(task)

    if single and not results[0].error:
        _print_top(results[0], labels, top_k, "genre", f", {aggregation}")
        novelty = results[0].novelty
        if novelty is not None and novelty > (NOVELTY_THRESHOLD if unknown_above is None else unknown_above):
            named = "genre: unknown; " if unknown_above is not None else ""
            out.print(f"{named}novelty {novelty:.2f}: this track fits none of the {len(labels)} genres well, "
                      "so the genres above are only the nearest", highlight=False)
        if timeline:
            clips = Table(title="clips", title_justify="left")
            for column in ("from (s)", "to (s)", "genre", "probability"):
                clips.add_column(column, justify="left" if column == "genre" else "right")
            for c in run.timeline(results[0]):
                clips.add_row(f"{c['start']:.2f}", f"{c['end']:.2f}", c["genre"], f"{c['probability']:.3f}")
            out.print(clips)
    elif not single:
        target = f" → {csv}" if csv else ""
        warnings = f", {warned} with a warning" if warned else ""
        err.print(f"tagged {len(results) - failed} files, {failed} failed{warnings}{target}")
    if timeline_png and not results[0].error:
        err.print(f"written: {timeline_png}")
    if failed:
        raise typer.Exit(1)


@app.command()
def tags(
    paths: AudioPaths,
    weights: Annotated[Optional[Path], typer.Option(help="Tagger checkpoint (default: musicnn's Million Song Dataset tagger, weights/musicnn-msd.pt; weights/musicnn-mtt.pt is its MagnaTagATune one).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Tags to show per file.")] = 10,
    csv: Annotated[Optional[Path], typer.Option(help="Write one row per file: path,tag,probability,<tags>,error,warning.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write every tag's probability as JSON.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --csv file.")] = False,
    hop_seconds: Hop = DEFAULT_HOP_SECONDS,
    batch_size: ClipsPerPass = None,
    device: Device = "auto",
    engine: Engine = "auto",
    clips: ClipBudget = "all",
) -> None:
    """musicnn's tags (genre, mood, era, instruments) with their probabilities: sigmoid per 3-s clip, mean over the clips read."""
    options = dict(locals())  # the parameters, named as the library call's keywords
    from .clips import parse_clip_budget
    from .inference import top_k as best_of
    from .predict import tag_paths

    del options["top_k"]  # how many tags this prints; the files get them all
    clip_budget, settle = parse_clip_budget(options.pop("clips"))
    run = tag_paths(**options, clip_budget=clip_budget, settle=settle)
    labels = run.model.labels
    results = []
    for result in run.results:
        results.append(result)
        if result.error:
            err.print(_tagged("failed:", "red", result.error), highlight=False)
        elif len(run.files) > 1:
            best = ", ".join(f"{t} {p:.2f}" for t, p in best_of(result.probabilities, labels, top_k))
            out.print(f"{printable(result.path)}\t{best}", highlight=False)
        if result.warning:
            err.print(_tagged("warning:", "yellow", result.warning), highlight=False)
    if len(run.files) == 1 and not results[0].error:
        _print_top(results[0], labels, top_k, "tag")
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

    from .training.datasets import preprocess_dataset

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("decoding", total=None)
        report = preprocess_dataset(data, out_dir, lambda done, total: progress.update(task, completed=done, total=total))
    for path, error in report.failed:
        err.print(_tagged("skipped:", "yellow", error), highlight=False)
    out.print(
        f"{out_dir}: {report.cached} tracks decoded, {report.reused} reused, {len(report.failed)} skipped"
    )


# ---------------------------------------------------------------- train


@app.command()
def train(
    data: Data,
    out_dir: Annotated[Path, typer.Option("--out", help="Run folder: last.pt, best.pt, log.jsonl.")],
    model_name: ModelName = "ms-sincresnet",
    overrides: Sets = [],
    epochs: Epochs = 100,
    split_file: SplitFiles = [],
    folds: Annotated[Optional[int], typer.Option(help="Stratified k-fold: number of folds.")] = None,
    fold: Annotated[Optional[int], typer.Option(help="With --folds: the fold held out for validation.")] = None,
    valid_fraction: Annotated[float, typer.Option(help="Without a split: stratified validation share.")] = 0.2,
    train_on_valid: Annotated[bool, typer.Option(help="Train on the valid tracks too, without validation: the final model, once the settings are chosen on valid.")] = False,
    batch_size: BatchSize = None,
    clips_per_track: Annotated[Optional[int], typer.Option(min=1, help="Random clips per track per epoch (paper: 4).")] = None,
    optimizer: OptimizerName = None,
    lr: Lr = None,
    warmup_epochs: Warmup = None,
    balance: Balance = None,
    schedule: Schedule = None,
    label_smoothing: LabelSmoothing = None,
    mix_prob: Mix = None,
    masks: Masks = None,
    eval_hop_seconds: Annotated[Optional[float], typer.Option("--eval-hop", help="Validation clip hop in seconds.")] = None,
    seed: Seed = None,
    workers: Annotated[Optional[int], typer.Option(help="Data-loading worker processes.")] = None,
    init_backbone: Annotated[Optional[Path], typer.Option(help="Pretrained weights: a torchvision ResNet-18 file, or a musicnn tagger checkpoint (musicnn models start from weights/musicnn-msd.pt without it).")] = None,
    pretrained_lr_scale: Annotated[Optional[float], typer.Option(min=0.0, help="Learning rate of pretrained parameters relative to the new genre layer (default 1).")] = None,
    feature_hop_seconds: Annotated[Optional[float], typer.Option("--feature-hop", min=0.05, help="Models with a frozen part: seconds between the training clips whose features are cached (default 1.5).")] = None,
    cache: Cache = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last.pt.")] = False,
    device: Device = "auto",
) -> None:
    """Train a model of the zoo on labelled audio.

    On N processes (one per GPU, or per group of CPU cores): torchrun --nproc-per-node N -m mgcli train ...
    """
    options = dict(locals())  # the parameters, named as the library call's keywords
    from .models import parse_overrides
    from .training.distributed import rank
    from .training.train import train as train_model

    history = train_model(**options | {"overrides": parse_overrides(overrides)}, notify=_notify)
    if history and rank() == 0:
        chosen = "chosen on valid" if "valid_macro_recall" in history[-1] else "no valid split: the last epoch"
        out.print(f"done: {out_dir}/best.pt ({chosen}), {out_dir}/last.pt, {out_dir}/log.jsonl")


@app.command()
def crossval(
    data: Data,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for fold-*/ runs and crossval.json.")],
    model_name: ModelName = "ms-sincresnet",
    overrides: Sets = [],
    folds: Annotated[int, typer.Option(min=2)] = 10,
    epochs: Epochs = 100,
    batch_size: BatchSize = None,
    optimizer: OptimizerName = None,
    lr: Lr = None,
    warmup_epochs: Warmup = None,
    balance: Balance = None,
    schedule: Schedule = None,
    label_smoothing: LabelSmoothing = None,
    mix_prob: Mix = None,
    masks: Masks = None,
    seed: Seed = None,
    cache: Cache = None,
    device: Device = "auto",
) -> None:
    """K-fold cross-validation as the paper ran it: train and test on every fold, mean ± std."""
    options = dict(locals())  # the parameters, named as the library call's keywords
    from .models import parse_overrides
    from .training.crossval import crossval as cross_validate

    report = cross_validate(**options | {"overrides": parse_overrides(overrides)}, notify=_notify)
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
    aggregation: Aggregate = "mean_prob",
    hop_seconds: Hop = DEFAULT_HOP_SECONDS,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the full report as JSON.")] = None,
    outside: Annotated[list[Path], typer.Option(help="Music outside the model's genres (file or folder; repeatable): the novelty score's AUROC against the scored tracks.")] = [],
    device: Device = "auto",
) -> None:
    """Score a checkpoint: clip and track accuracy, per-class figures, confusion matrix, calibration, novelty.

    With several --data: each dataset's scores, then all of them together.
    """
    options = dict(locals())  # the parameters, named as the library call's keywords
    from .training.evaluate import evaluate as score

    report = score(**options, notify=_notify)
    for path, error in report["failed"]:
        err.print(_tagged("skipped:", "yellow", error), highlight=False)
    for source, part in report.get("datasets", {}).items():
        _print_report(part, report["labels"], f"{weights} on {source} ({report['split']})")
    _print_report(report, report["labels"], f"{weights} on {' + '.join(map(str, data))} ({report['split']})")
    if json_out:
        out.print(f"written: {json_out}")


def _print_report(report: dict, labels: list[str], title: str) -> None:
    track, clip, calibration = report["track"], report["clip"], report["calibration"]
    summary = Table(title=title, title_justify="left", show_header=False)
    summary.add_row("tracks / clips", f"{track['count']} / {clip['count']}")
    summary.add_row("clip accuracy", f"{clip['accuracy']:.3f}")
    for method, accuracy in report["track_accuracy"].items():
        marker = " (chosen)" if method == report["aggregate"] else ""
        summary.add_row(f"track accuracy, {method}{marker}", f"{accuracy:.3f}")
    for metric in ("precision", "recall", "f1"):
        summary.add_row(f"macro {metric} (tracks)", f"{track['macro'][metric]:.3f}")
    if "ece" in calibration:
        summary.add_row(f"calibration error, ECE (tracks, temperature {calibration['temperature']:.3f})",
                        f"{calibration['ece']:.3f} (uncalibrated {calibration['ece_uncalibrated']:.3f}; "
                        f"a calibrated model shows about {calibration['ece_if_calibrated']:.3f} on {track['count']} tracks)")
        summary.add_row("negative log-likelihood (tracks)", f"{calibration['nll']:.3f} (uncalibrated {calibration['nll_uncalibrated']:.3f})")
        summary.add_row("calibration error, ECE (clips, their own softmax)", f"{calibration['clip_ece']:.3f}")
    if "novelty" in report:
        novelty = report["novelty"]
        summary.add_row(f"novelty at or under {novelty['threshold']} (tracks)", f"{novelty['pass']:.1%} (median {novelty['median']:.2f})")
        if "auroc" in novelty:
            summary.add_row(f"novelty against {novelty['outside_tracks']} outside tracks",
                            f"AUROC {novelty['auroc']:.3f}; {novelty['outside_flagged']:.1%} of them above {novelty['threshold']}")
    out.print(summary)
    if "ece" in calibration:
        out.print(_reliability_table(calibration["reliability"]))

    per_class = Table(title="per class (tracks)", title_justify="left")
    for column in ("genre", "precision", "recall", "f1", "support"):
        per_class.add_column(column, justify="left" if column == "genre" else "right")
    for c in track["per_class"]:
        per_class.add_row(c["label"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"]))
    for row in track["sets"]:  # a set label: recall is the share answered inside the set
        per_class.add_row(row["label"], "", f"{row['recall']:.3f}", "", str(row["support"]))
    out.print(per_class)
    if track["sets"]:
        out.print("set labels (one of these genres): recall is the share of their tracks answered inside the set; "
                  "they count in the macro recall, not in the accuracy or the confusion matrix; their answers: "
                  + "; ".join(f"{row['label']}: " + ", ".join(f"{g} {n}" for g, n in row["answers"].items()) for row in track["sets"]),
                  highlight=False)

    confusion = Table(title="confusion (rows: true, columns: predicted)", title_justify="left")
    confusion.add_column("")
    for label in labels:
        confusion.add_column(label[:5], justify="right")
    for label, row in zip(labels, track["confusion"]):
        confusion.add_row(label, *(str(v) if v else "·" for v in row))
    out.print(confusion)


def _reliability_table(rows: list[dict]) -> Table:
    """A calibration report's reliability bins: tracks by top probability, their mean confidence and accuracy."""
    table = Table(title="reliability (tracks by their top probability)", title_justify="left")
    for column in ("top probability", "tracks", "mean probability", "accuracy"):
        table.add_column(column, justify="right")
    for row in rows:
        if row["count"]:
            table.add_row(f"{row['from']:.1f}-{row['to']:.1f}", str(row["count"]), f"{row['confidence']:.3f}", f"{row['accuracy']:.3f}")
    return table


@app.command("calibrate")
def calibrate_checkpoint(
    weights: Annotated[Path, typer.Argument(metavar="CKPT", help="Checkpoint to calibrate.")],
    data: Annotated[list[Path], typer.Option(help="Dataset to fit on (folder, manifest or cache); repeat for several.")] = [],
    split_file: SplitFiles = [],
    split: Annotated[str, typer.Option(help="Which split's tracks to fit on (train, valid, test or all).")] = "valid",
    hop_seconds: Hop = DEFAULT_HOP_SECONDS,
    copy_from: Annotated[Optional[Path], typer.Option(help="Take this calibrated checkpoint's temperatures (and novelty scale) instead (same labels): e.g. of a twin trained without the valid split.")] = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Checkpoint to write (default: over CKPT, atomically).")] = None,
    outside: Annotated[list[Path], typer.Option(help="Music outside the model's genres (file or folder; repeatable): the novelty score's tag weights are learnt from it against the fitted tracks.")] = [],
    device: Device = "auto",
) -> None:
    """Calibrate a checkpoint's track probabilities (one temperature per aggregation) and novelty scale, fit on valid tracks, kept in the checkpoint."""
    options = dict(locals())  # the parameters, named as the library call's keywords
    from .training.calibrate import calibrate

    result = calibrate(**options, notify=_notify)
    for path, error in result["failed"]:
        err.print(_tagged("skipped:", "yellow", error), highlight=False)
    source = f"fit on {result['tracks']} {split} tracks" if result["reports"] else f"of {copy_from}"
    out.print(f"{weights}: temperatures {source}", highlight=False)
    for aggregation, temperature in result["temperatures"].items():
        line = f"  {aggregation:<10} T {temperature:.3f}"
        if aggregation in result["reports"]:
            r = result["reports"][aggregation]
            line += (f"  ECE {r['ece_uncalibrated']:.3f} -> {r['ece']:.3f}  NLL {r['nll_uncalibrated']:.3f} -> {r['nll']:.3f}"
                     f"  (a calibrated model: ECE about {r['ece_if_calibrated']:.3f} here)")
        out.print(line, highlight=False)
    if result["novelty"] is not None:
        scale = result["novelty"]
        evidence = f"tag evidence ({len(scale.tags)} tags weighted)" if scale.weights else "out-of-genre tag evidence"
        line = f"  novelty    {evidence} {scale.typical:.3f} (median) -> 0, {scale.threshold:.3f} -> 0.5"
        if result["novelty_pass"] is not None:
            line += f"  ({result['novelty_pass']:.0%} of the tracks at or under 0.5)"
        out.print(line, highlight=False)
    out.print(f"written: {out_file or weights}", highlight=False)


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
    options = dict(locals())  # the parameters, named as the library call's keywords
    from .export import export_checkpoint as export

    model = export(**options)
    out.print(
        f"written: {out_file} ({fmt}: {model.name}, {len(model.labels)} labels, {model.clip_samples}-sample clips)",
        highlight=False,
    )


@app.command("ensemble")
def ensemble_checkpoints(
    members: Annotated[list[Path], typer.Argument(metavar="CKPT...", help="Trained musicnn checkpoints (freeze=front-end, one tagger).")],
    out_file: Annotated[Path, typer.Option("--out", help="Checkpoint to write.")],
) -> None:
    """Join musicnn networks fine-tuned from one tagger into one model: one front end, their probabilities averaged."""
    options = dict(locals())  # the parameters, named as the library call's keywords
    from .checkpoint import ensemble

    checkpoint = ensemble(**options)
    out.print(Text(f"written: {out_file} (musicnn-ensemble of {len(members)}, {len(checkpoint['labels'])} labels)"))


# ---------------------------------------------------------------- explain and inspect
# In help text "\\[plot]" is rich markup's escape: typer would otherwise take "[plot]" for a style.


@app.command()
def explain(
    file: Annotated[Path, typer.Argument(readable=False, help="Audio file to explain.")],
    out_png: Annotated[Path, typer.Option("--out", help=f"PNG to write ({EXPLAIN_PIXELS[0]} x {EXPLAIN_PIXELS[1]} pixels).")],
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint to explain (default: the shipped weights).")] = None,
    label: Annotated[Optional[str], typer.Option(help="Genre to explain (default: the predicted one).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Integrated-gradients steps per clip; a clip costs about steps + 2 forward and backward passes.")] = 16,
    device: Device = "auto",
) -> None:
    """Show where a model hears a genre: Grad-CAM and integrated gradients over the whole track (needs mgcli\\[plot])."""
    options = dict(locals())  # the parameters, named as the library call's keywords
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .explain.explain import explain as explain_track

    # A long track takes minutes (each clip costs about steps + 2 forward and backward passes): say how far it is.
    with Progress(TextColumn("explaining clips"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("clips", total=None)
        explanation = explain_track(**options, on_clip=lambda done, total: progress.update(task, completed=done, total=total))
    out.print(f"{file}: {explanation.label} explained over {len(explanation.timeline)} clips → {out_png}", highlight=False)


@app.command("inspect")
def inspect_checkpoint(
    weights: Annotated[Path, typer.Argument(help="Checkpoint to inspect.")],
    out_dir: Annotated[Path, typer.Option("--out", help=(
        f"Folder for sinc-cutoffs.png ({CUTOFFS_PIXELS[0]} x {CUTOFFS_PIXELS[1]} pixels) and sinc-responses.png "
        f"({RESPONSES_PIXELS[0]} x {RESPONSES_PIXELS[1]}) of sinc models, front-end-filters.png "
        f"({FILTERS_PIXELS[0]} x {FILTERS_PIXELS[1]}) of musicnn's and, with --audio, spectrograms.png "
        f"({SPECTROGRAMS_PIXELS[0]} x {SPECTROGRAMS_PIXELS[1]})."
    ))],
    audio: Annotated[Optional[Path], typer.Option(help="Also draw a clip of this file: the learned representation beside its mel, linear, harmonic and percussive spectrograms.")] = None,
    start: Annotated[Optional[float], typer.Option(help="With --audio: where the clip starts, in seconds (default: the middle of the track).")] = None,
) -> None:
    """Draw a checkpoint's learned filters (sinc, or musicnn's front end) and, with --audio, how it sees a clip (needs mgcli\\[plot])."""
    options = dict(locals())  # the parameters, named as the library call's keywords
    from .explain.inspect import inspect

    for path in inspect(**options, notify=_notify):
        out.print(f"written: {path}", highlight=False)
