"""Train and measure every zoo model the same way; print the table of docs/models.md.

    python benchmarks/zoo.py                      # every row of ROWS, resuming finished or partial runs
    python benchmarks/zoo.py --only bbnn mel-linear
    python benchmarks/zoo.py --table              # only print the table from what is already trained
    python benchmarks/zoo.py --time-epochs        # re-time one epoch per row alone (run on an idle machine)

Each row is `mgc train` on the `train` part of ../shared/data/gtzan/splits.csv with the same
epoch budget, recipe and seed, scored every epoch on `valid`. Per row it records parameters,
multiply-accumulates per clip (torch's FLOP counter on one clip, halved; FFTs such as the mel
front ends' are not counted), the training epoch time (train + BatchNorm re-estimate + validation:
one epoch timed alone by --time-epochs where it has run, else the median of log.jsonl, which
other work on the machine may have slowed),
CPU seconds to predict a 30-s track (decode + resample + model, 3-s hop), and the valid
figures at the best epoch (what best.pt holds: chosen on valid, so optimistic) and at the last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import SOURCE_RATE, music_like, timed
from mgcli.checkpoint import load_model
from mgcli.predict import classify

ROOT = Path(__file__).resolve().parents[1]
GTZAN = ROOT.parent / "shared" / "data" / "gtzan"
EPOCHS = 20
RECIPE = ["--warmup-epochs", "1", "--seed", "0", "--device", "cpu"]

# (run name, registry name, config overrides, the paper's GTZAN track accuracy in % with its protocol,
# from ../shared/docs/reference.md). Sinc front ends are shrunk to train on 2 CPU cores.
ROWS = [  # cheapest first
    ("mel-linear", "mel-linear", {}, "none (our floor)"),
    ("resnet-mel-w16", "resnet-mel", {"backbone_width": 16, "fc_hidden": 128},
     "85.49 at full width (Chang et al., random 10-fold)"),
    ("bbnn", "bbnn", {}, "93.9 (Liu et al., random 10-fold); 89.0 (Heakl et al.'s split)"),
    ("samplecnn-mlms", "samplecnn-mlms", {}, "not in the reference notes"),
    ("multi-input", "multi-input", {}, "93.92 (Wang 2023)"),
    ("broadcast", "broadcast", {}, "90.0 (Heakl et al.'s split)"),
    ("samplecnn", "samplecnn", {}, "not in the reference notes"),
    ("ms-sincresnet-small", "ms-sincresnet",
     {"n_filters": 40, "kernel_sizes": [65, 129, 257], "backbone_width": 16, "fc_hidden": 128},
     "91.49 at full size (Chang et al., random 10-fold)"),
    ("sincnet", "sincnet", {}, "73.98 (Chang et al., random 10-fold)"),
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


def time_epochs(rows: list, out: Path, cache: Path) -> None:
    """One epoch of each row's training, alone, into a scratch folder: its seconds go to epoch_seconds.json."""
    timings_path = out / "epoch_seconds.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    with tempfile.TemporaryDirectory() as scratch:
        for run, model, overrides, _ in rows:
            train(run, model, overrides, Path(scratch), cache, epochs=1)
            timings[run] = json.loads((Path(scratch) / run / "log.jsonl").read_text().splitlines()[0])["seconds"]
            timings_path.write_text(json.dumps(timings, indent=2) + "\n")


def measure(run: str, paper: str, out: Path, track: Path) -> dict:
    log = [json.loads(line) for line in (out / run / "log.jsonl").read_text().splitlines() if line.strip()]
    best = max(log, key=lambda m: (m["valid_macro_recall"], m["valid_track_accuracy"], -m["valid_loss"]))
    model = load_model(out / run / "best.pt", "cpu")
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.network(torch.zeros(1, model.clip_samples))
    seconds, _ = timed(lambda: classify(model, track), 3)
    timings_path = out / "epoch_seconds.json"
    timed_alone = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    epoch_seconds = timed_alone.get(run, sorted(m["seconds"] for m in log)[len(log) // 2])
    return {
        "run": run, "model": model.name, "parameters": sum(p.numel() for p in model.network.parameters()),
        "macs_per_clip": counter.get_total_flops() / 2, "clip_seconds": model.clip_samples / 16000,
        "epochs": len(log), "epoch_seconds": epoch_seconds, "predict_30s_seconds": seconds,
        "best_epoch": best["epoch"], "best_track_accuracy": best["valid_track_accuracy"],
        "best_macro_recall": best["valid_macro_recall"],
        "last_track_accuracy": log[-1]["valid_track_accuracy"], "last_macro_recall": log[-1]["valid_macro_recall"],
        "paper": paper,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| model | parameters | MACs per clip | train s/epoch | predict s per 30-s track "
        "| valid track acc (best / last) | valid macro recall (best / last) | epochs trained (best) | paper: GTZAN track acc % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| `{r['run']}` | {r['parameters']:,} | {r['macs_per_clip'] / 1e9:.2f} G | {r['epoch_seconds']:.0f} "
            f"| {r['predict_30s_seconds']:.3f} | {r['best_track_accuracy']:.3f} / {r['last_track_accuracy']:.3f} "
            f"| {r['best_macro_recall']:.3f} / {r['last_macro_recall']:.3f} | {r['epochs']} ({r['best_epoch']}) | {r['paper']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "zoo")
    parser.add_argument("--only", nargs="+", help="run names from ROWS")
    parser.add_argument("--table", action="store_true", help="measure and print what is trained; train nothing")
    parser.add_argument("--time-epochs", action="store_true", help="time one training epoch per row, then the table")
    args = parser.parse_args()
    rows = [row for row in ROWS if not args.only or row[0] in args.only]
    cache = args.out / "gtzan-cache"
    if not args.table:
        subprocess.run([sys.executable, "-m", "mgcli", "preprocess", str(GTZAN), "--out", str(cache)], check=True)
    if args.time_epochs:
        time_epochs(rows, args.out, cache)
    elif not args.table:
        for run, model, overrides, _ in rows:
            train(run, model, overrides, args.out, cache)
    with tempfile.TemporaryDirectory() as tmp:
        track = Path(tmp) / "track.wav"
        sf.write(str(track), music_like(30.0), SOURCE_RATE)
        results = [measure(run, paper, args.out, track) for run, _, _, paper in rows if (args.out / run / "best.pt").exists()]
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
