"""Train and measure every zoo model the same way; print the table of docs/models.md.

    python benchmarks/zoo.py                      # every row not yet in zoo-results.json (resumes a partial run)
    python benchmarks/zoo.py --only bbnn mel-linear --redo   # measure these again
    python benchmarks/zoo.py --table              # only print the table from zoo-results.json
    python benchmarks/zoo.py --retime             # re-time both speed columns of every recorded row, in one sitting

Each row is `mgc train` on the `train` part of ../shared/data/gtzan/splits.csv with the same epoch
budget, recipe and seed, scored every epoch on `valid`. As soon as a row has trained it is
measured and written to benchmarks/zoo-results.json, which is kept in git: the runs themselves
(runs/zoo/) are hours of CPU that a new checkout does not have, so a row measured once stays
measured and the zoo goes on from the next row. Per row it records parameters,
multiply-accumulates per clip (torch's FLOP counter on one clip, halved; FFTs such as the mel
front ends' are not counted), the training epoch time (train + BatchNorm re-estimate + validation:
one epoch timed alone by --retime where it has run, else the median of log.jsonl), CPU seconds to
predict a 30-s track (decode + resample + model, 3-s hop, default batch; retimed likewise), the
valid figures at the best epoch (what best.pt holds: chosen on valid, so optimistic) and at the
last, and the valid curve and training clip accuracy of every epoch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
from bench import SOURCE_RATE, music_like, timed
from torch.utils.flop_counter import FlopCounterMode

from mgcli.inference import classify, load_model
from mgcli.torch_engine import GenreModel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "zoo-results.json"
GTZAN = ROOT.parent / "shared" / "data" / "gtzan"
EPOCHS = 20
RECIPE = ["--warmup-epochs", "1", "--seed", "0", "--device", "cpu"]

# (run name, registry name, config overrides, the paper's GTZAN track accuracy in % with its protocol,
# from ../shared/docs/reference.md). Sinc front ends are shrunk to train on 2 CPU cores.
ROWS = [  # cheapest first, as far as epoch times are known
    ("mel-linear", "mel-linear", {}, "none (our floor)"),
    ("resnet-mel-w16", "resnet-mel", {"backbone_width": 16, "fc_hidden": 128},
     "85.49 at full width (Chang et al., random 10-fold)"),
    ("bbnn", "bbnn", {}, "93.9 (Liu et al., random 10-fold); 89.0 (Heakl et al.'s split)"),
    ("samplecnn-mlms", "samplecnn-mlms", {}, "not in the reference notes"),
    ("broadcast", "broadcast", {}, "90.0 (Heakl et al.'s split)"),
    ("ms-sincresnet-small", "ms-sincresnet",
     {"n_filters": 40, "kernel_sizes": [65, 129, 257], "backbone_width": 16, "fc_hidden": 128},
     "91.49 at full size (Chang et al., random 10-fold)"),
    ("sincnet", "sincnet", {}, "73.98 (Chang et al., random 10-fold)"),
    ("multi-input", "multi-input", {}, "93.92 (Wang 2023)"),
    ("samplecnn", "samplecnn", {}, "not in the reference notes"),
]


def train(run: str, model: str, overrides: dict, out: Path, cache: Path, epochs: int = EPOCHS) -> None:
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    command = [
        sys.executable, "-m", "mgcli", "train", "--data", str(cache), "--split-file", str(GTZAN / "splits.csv"),
        "--model", model, "--out", str(out / run), "--epochs", str(epochs), *RECIPE, *sets,
    ]
    if (out / run / "last.pt").exists():
        command.append("--resume")
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)


def retime(rows: list, cache: Path, track: Path, results: dict[str, dict]) -> None:
    """Both speed columns of each recorded row again, one row after another in one sitting.

    The machine's speed differs from session to session, so times taken in the sessions that
    trained the rows do not compare. One epoch of the row's training runs into a scratch folder
    (its seconds replace the log median), then predict runs with that checkpoint: its speed
    depends on the architecture, not on the weights.
    """
    with tempfile.TemporaryDirectory() as scratch:
        for run, model, overrides, _ in rows:
            if run not in results:
                continue
            train(run, model, overrides, Path(scratch), cache, epochs=1)
            log = (Path(scratch) / run / "log.jsonl").read_text().splitlines()
            results[run].update(
                epoch_seconds=json.loads(log[0])["seconds"], epoch_seconds_timed_alone=True,
                predict_30s_seconds=predict_seconds(load_model(Path(scratch) / run / "best.pt", "cpu", engine="torch"), track),
            )
            save(results)


def predict_seconds(model: GenreModel, track: Path) -> float:
    seconds, _ = timed(lambda: classify(model, track), 3)
    return seconds


def measure(run: str, paper: str, out: Path, track: Path) -> dict:
    log = [json.loads(line) for line in (out / run / "log.jsonl").read_text().splitlines() if line.strip()]
    best = max(log, key=lambda m: (m["valid_macro_recall"], m["valid_track_accuracy"], -m["valid_loss"]))
    model = load_model(out / run / "best.pt", "cpu", engine="torch")
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.network(torch.zeros(1, model.clip_samples))
    return {
        "run": run, "model": model.name, "parameters": sum(p.numel() for p in model.network.parameters()),
        "macs_per_clip": counter.get_total_flops() / 2, "clip_seconds": model.clip_samples / 16000,
        "epochs": len(log), "epoch_seconds": sorted(m["seconds"] for m in log)[len(log) // 2],
        "epoch_seconds_timed_alone": False, "predict_30s_seconds": predict_seconds(model, track),
        "best_epoch": best["epoch"], "best_track_accuracy": best["valid_track_accuracy"],
        "best_macro_recall": best["valid_macro_recall"],
        "last_track_accuracy": log[-1]["valid_track_accuracy"], "last_macro_recall": log[-1]["valid_macro_recall"],
        "valid_track_accuracy_per_epoch": [m["valid_track_accuracy"] for m in log],
        "valid_macro_recall_per_epoch": [m["valid_macro_recall"] for m in log],
        "train_clip_accuracy_per_epoch": [m["train_clip_accuracy"] for m in log],
        "paper": paper, "measured": time.strftime("%Y-%m-%d"),
    }


def save(results: dict[str, dict]) -> None:
    """Write the recorded rows in ROWS order, atomically: a session may end at any moment."""
    order = [run for run, *_ in ROWS]
    rows = sorted(results.values(), key=lambda r: order.index(r["run"]))
    partial = RESULTS.with_suffix(".json.partial")
    partial.write_text(json.dumps(rows, indent=2) + "\n")
    partial.replace(RESULTS)


def mean_of_last_5(values: list[float]) -> float:
    return sum(values[-5:]) / 5


def table(results: list[dict]) -> str:
    """One row per model; the valid figures as best epoch / last epoch / mean of the last 5 (the curves are noisy).

    The training clip accuracy over the last 5 epochs (in training mode: augmented, with dropout) tells a
    model that has not yet fitted its training data from one that fits it and does not generalise.
    """
    lines = [
        "| model | parameters | MACs per clip | train s/epoch | predict s per 30-s track "
        "| valid track acc (best / last / last 5) | valid macro recall (best / last / last 5) "
        "| train clip acc (last 5) | epochs trained (best) | paper: GTZAN track acc % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        epoch_seconds = f"{r['epoch_seconds']:.0f}" + ("" if r["epoch_seconds_timed_alone"] else " (log)")
        accuracy = r["valid_track_accuracy_per_epoch"]
        recall = r["valid_macro_recall_per_epoch"]
        lines.append(
            f"| `{r['run']}` | {r['parameters']:,} | {r['macs_per_clip'] / 1e9:.2f} G | {epoch_seconds} "
            f"| {r['predict_30s_seconds']:.3f} "
            f"| {r['best_track_accuracy']:.3f} / {accuracy[-1]:.3f} / {mean_of_last_5(accuracy):.3f} "
            f"| {r['best_macro_recall']:.3f} / {recall[-1]:.3f} / {mean_of_last_5(recall):.3f} "
            f"| {mean_of_last_5(r['train_clip_accuracy_per_epoch']):.3f} | {r['epochs']} ({r['best_epoch']}) | {r['paper']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "zoo", help="where the runs are trained")
    parser.add_argument("--only", nargs="+", choices=[run for run, *_ in ROWS], help="run names from ROWS")
    parser.add_argument("--redo", action="store_true", help="measure recorded rows again, training (or finishing) their runs first")
    parser.add_argument("--table", action="store_true", help="print the recorded table; train nothing")
    parser.add_argument("--retime", action="store_true", help="time one training epoch and predict per recorded row")
    args = parser.parse_args()
    rows = [row for row in ROWS if not args.only or row[0] in args.only]
    results = {r["run"]: r for r in json.loads(RESULTS.read_text())} if RESULTS.exists() else {}
    cache = args.out / "gtzan-cache"
    if not args.table:
        subprocess.run([sys.executable, "-m", "mgcli", "preprocess", str(GTZAN), "--out", str(cache)], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            track = Path(tmp) / "track.wav"
            sf.write(str(track), music_like(30.0), SOURCE_RATE)
            if args.retime:
                retime(rows, cache, track, results)
            else:
                for run, model, overrides, paper in rows:
                    if run in results and not args.redo:
                        continue
                    train(run, model, overrides, args.out, cache)
                    results[run] = measure(run, paper, args.out, track)
                    save(results)
    print(table([results[run] for run, *_ in rows if run in results]))


if __name__ == "__main__":
    main()
