"""Scaling figures for docs/scaling.md: training under torchrun, and exported files' speed. Asserts nothing.

    python benchmarks/scaling.py                          # both parts (about 6 minutes on 2 cores)
    python benchmarks/scaling.py --part train --procs 2 --model bbnn --epochs 1
    python benchmarks/scaling.py --part export --weights weights/default.pt

train: `mgc train` on the `train` part of ../shared/data/gtzan/splits.csv (validated on `valid`),
once in one process with every core's thread and once under `torchrun --nproc-per-node N`
with the cores shared out, from the same seed. It prints wall time, seconds per epoch (from
log.jsonl: train + BatchNorm re-estimate + validation) and how far apart the two runs'
final weights and valid figures are.

export: the model as PyTorch (eager, channels-last, as `predict` runs it), TorchScript and
ONNX (onnxruntime, needs mgcli[onnx]), each timed on batches of 4 random clips (median of
20 after 3 warm-up calls), with the largest logit difference from eager.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mgcli.checkpoint import load_checkpoint
from mgcli.export import export_model
from mgcli.inference import load_model

ROOT = Path(__file__).resolve().parents[1]
GTZAN = ROOT.parent / "shared" / "data" / "gtzan"


def train_part(args) -> None:
    cores = os.cpu_count() or 1
    cache = args.out / "gtzan-cache"
    subprocess.run([sys.executable, "-m", "mgcli", "preprocess", str(GTZAN), "--out", str(cache)], check=True,
                   capture_output=True)
    common = ["train", "--data", str(cache), "--split-file", str(GTZAN / "splits.csv"), "--model", args.model,
              "--epochs", str(args.epochs), "--warmup-epochs", "0", "--seed", "0", "--device", "cpu"]
    runs = {
        f"1 process, {cores} threads": ([sys.executable, "-m", "mgcli"], cores, args.out / "one"),
        f"{args.procs} processes (torchrun), {max(1, cores // args.procs)} thread(s) each": (
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.procs), "-m", "mgcli"],
            max(1, cores // args.procs), args.out / f"ranks{args.procs}",
        ),
    }
    rows = []
    for name, (launcher, threads, out) in runs.items():
        shutil.rmtree(out, ignore_errors=True)  # a fresh run each time, never a resumed one
        environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
        began = time.perf_counter()
        subprocess.run([*launcher, *common, "--out", str(out)], check=True, env=environment, capture_output=True)
        wall = time.perf_counter() - began
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        rows.append((name, wall, log, load_checkpoint(out / "last.pt")["state_dict"]))

    print(f"\n### {args.model}, {args.epochs} epoch(s) on GTZAN train (226 tracks), 2 cores\n")
    print("| run | wall s (with start-up) | s per epoch | train loss (last epoch) | valid track acc | valid macro recall |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, wall, log, _ in rows:
        epoch_seconds = statistics.median(m["seconds"] for m in log)
        last = log[-1]
        print(f"| {name} | {wall:.1f} | {epoch_seconds:.1f} | {last['train_loss']:.3f} "
              f"| {last['valid_track_accuracy']:.3f} | {last['valid_macro_recall']:.3f} |")
    (_, _, _, one), (_, _, _, many) = rows
    gap = max((one[k].float() - many[k].float()).abs().max().item() for k in one if one[k].is_floating_point())
    size = max(one[k].float().abs().max().item() for k in one if one[k].is_floating_point())
    print(f"\nlargest weight difference between the runs: {gap:.2e} (largest weight: {size:.2e})")


def median_ms(run, repeats: int = 20) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def export_part(args) -> None:
    model = load_model(args.weights, "cpu", engine="torch")
    clips = torch.randn(4, model.clip_samples, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        reference = model.network(clips)
        runners = {"PyTorch eager (as predict runs it)": lambda: model.network(clips)}
        sizes = {}
        scripted = torch.jit.load(str(export_model(model, "torchscript", Path(tmp) / "model.pt")))
        runners["TorchScript (torch.jit.load)"] = lambda: scripted(clips)
        sizes["TorchScript (torch.jit.load)"] = (Path(tmp) / "model.pt").stat().st_size
        try:
            import onnxruntime
        except ImportError:
            print('(onnxruntime is missing: pip install "mgcli[onnx]" for the ONNX row)')
        else:
            export_model(model, "onnx", Path(tmp) / "model.onnx")
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = onnxruntime.InferenceSession(str(Path(tmp) / "model.onnx"), options, providers=["CPUExecutionProvider"])
            runners["ONNX (onnxruntime, CPU)"] = lambda: torch.from_numpy(session.run(None, {"waveform": clips.numpy()})[0])
            sizes["ONNX (onnxruntime, CPU)"] = (Path(tmp) / "model.onnx").stat().st_size
        print(f"\n### {model.name} ({args.weights or 'weights/default.pt'}), batches of 4 clips, "
              f"{torch.get_num_threads()} threads\n")
        print("| runner | ms per batch | file size | max \\|logit diff\\| vs eager |")
        print("|---|---:|---:|---:|")
        for name, run in runners.items():
            size = f"{sizes[name] / 1e6:.2f} MB" if name in sizes else "-"
            diff = (run() - reference).abs().max().item()
            print(f"| {name} | {median_ms(run):.1f} | {size} | {diff:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["train", "export", "both"], default="both")
    parser.add_argument("--model", default="bbnn", help="train part: registry name")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--weights", default=None, help="export part: checkpoint (default: the shipped weights)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "scaling")
    args = parser.parse_args()
    print(f"mgcli scaling: {os.cpu_count()} cores, torch {torch.__version__}")
    if args.part in ("export", "both"):
        export_part(args)
    if args.part in ("train", "both"):
        train_part(args)


if __name__ == "__main__":
    main()
