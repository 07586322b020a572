"""mgcli speed benchmark: prints tables of measured times and ratios; it asserts nothing.

    python benchmarks/bench.py                          # shipped default + ms-sincresnet (minutes on 2 cores)
    python benchmarks/bench.py --models default bbnn    # registry names (default config) or checkpoint files
    python benchmarks/bench.py --device cuda            # the same on a GPU, with mixed precision
    python benchmarks/bench.py --quick                  # tiny model, short audio: seconds (the tests run this)
    python benchmarks/bench.py --sections library --baseline /tmp/base   # the library's table only, against
                                                        # a checkout of an earlier commit (git worktree add /tmp/base COMMIT)

Per model it times `predict` end to end (decode + resample + clips + model + aggregation) on a
30-s WAV and a 4-min MP3, folder tagging, and training steps, in this process on the PyTorch
engine; beside each fast path it times the naive reference in the same run and prints the
ratio and the largest output difference. Then the two engines of `mgc predict` as a user runs
it, whole processes timed in paired rounds (on the CPU), start-up time, preprocess throughput
and the peak memory of predicting a one-hour file. Last, a music library: `mgc predict` on a
folder of twenty 4-min MP3s and one of a hundred 30-s MP3s, whole processes in paired rounds,
in tracks per minute, with the default `--clips`, `--clips 10` and every clip (`--clips all`,
what predict did before it had `--clips`), and in process the share of the time the network
runs (the rest it waits for audio) with one decoding thread and with the model's choice.
Times are medians of `--repeats` runs after one warm-up run; audio is generated (tones, noise,
clicks), so the figures do not depend on the data at hand.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from mgcli.audio import CLIP_SAMPLES, SAMPLE_RATE, load
from mgcli.clips import hop_samples
from mgcli.clips import AUTO_CLIPS
from mgcli.inference import classify, classify_files, load_model, track_outputs
from mgcli.models import build, count_parameters
from mgcli.models.sincresnet import SincResNet
from mgcli.torch_engine import GenreModel, pick_device, place
from mgcli.training.augment import Augment, TrainClips
from mgcli.training.cache import preprocess
from mgcli.training.datasets import find_tracks

SOURCE_RATE = 44_100  # the files are written at CD rate, so every prediction includes resampling
GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
SECTIONS = ["models", "engines", "tool", "library"]
QUICK_MODEL = dict(
    n_filters=8, kernel_sizes=(33, 65, 129), pooled_width=32, backbone_width=8, fc_hidden=16, clip_samples=8000
)


def music_like(seconds: float, rate: int = SOURCE_RATE, seed: int = 0) -> np.ndarray:
    """Stereo float32: a wandering harmonic tone, a noise floor and a click every half second."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 220 * 2 ** (np.floor(t * 2) % 12 / 12)  # a new semitone every half second
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    clicks = (np.arange(len(t)) % (rate // 2) < 40).astype(float)
    mono = 0.2 * tone + 0.02 * rng.standard_normal(len(t)) + 0.3 * clicks
    return np.stack([mono, np.roll(mono, 100)], axis=1).astype(np.float32)


def timed(run, repeats: int) -> tuple[float, object]:
    """Median wall time of `repeats` runs after one warm-up run, and the last result."""
    result = run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    """One core kept busy by another process, as a browser or music player would (`yes > /dev/null`)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it start spinning
        yield
    finally:
        spinner.kill()
        spinner.wait()


def open_model(spec: str, device: torch.device, quick: bool) -> GenreModel:
    """`default`, a checkpoint file, or a registry name (default config, untrained: speed only)."""
    if quick:
        network = build("ms-sincresnet", n_classes=len(GENRES), **QUICK_MODEL)
        return GenreModel("ms-sincresnet (tiny)", place(network, device).eval(), GENRES, device)
    if spec == "default" or spec.endswith(".pt"):
        return load_model(None if spec == "default" else spec, str(device), engine="torch")
    network = build(spec, n_classes=len(GENRES))
    return GenreModel(spec, place(network, device).eval(), GENRES, device)


def naive(model: GenreModel) -> GenreModel:
    return GenreModel(model.name, model.network, model.labels, model.device, fast_path=False)


def bench_model(model: GenreModel, spec: str, files: dict, args) -> list[tuple[str, str]]:
    rows = [("parameters", f"{count_parameters(model.network):,}")]
    threads = torch.get_num_threads()
    hop = args.hop
    seconds, _ = timed(lambda: classify(model, files["30s"], hop), args.repeats)
    rows.append((f"predict, {files['short_label']} WAV (hop {hop:g} s)", f"{seconds:.3f} s"))
    with busy_core():  # loaded as `mgc predict` would be on a busy machine: it picks its threads then
        busy_model = open_model(spec, model.device, args.quick)
        busy_threads = torch.get_num_threads()
        loaded, _ = timed(lambda: classify(busy_model, files["30s"], hop), args.repeats)
    torch.set_num_threads(threads)
    rows.append((f"  with one other core busy (a spinning process), {busy_threads} thread(s)", f"{loaded:.3f} s"))
    rows.append(("  ratio", f"{loaded / seconds:.2f}x"))
    seconds, _ = timed(lambda: classify(model, files["4min"], hop), args.repeats)
    rows.append((f"predict, {files['long_label']} MP3 (hop {hop:g} s, {model.batch_size}-clip batches)", f"{seconds:.3f} s"))
    if model.batch_size != 16:
        wide, _ = timed(lambda: classify(model, files["4min"], hop, batch_size=16), args.repeats)
        rows.append(("  16-clip batches (reference)", f"{wide:.3f} s"))
        rows.append(("  ratio", f"{wide / seconds:.2f}x"))

    folder = files["folder"]
    overlapped, _ = timed(lambda: list(classify_files(model, folder, hop)), args.repeats)
    one_by_one, _ = timed(lambda: [classify(model, path, hop) for path in folder], args.repeats)
    rows.append((f"tag a folder of {len(folder)} {files['short_label']} MP3s", f"{60 * len(folder) / overlapped:.0f} tracks/min"))
    rows.append(("  file by file (reference)", f"{60 * len(folder) / one_by_one:.0f} tracks/min"))
    rows.append(("  ratio", f"{one_by_one / overlapped:.2f}x"))

    if model.reads_spans:
        wave = load(files["30s"])
        paper_hop = hop_samples(0.5)
        fast_s, fast = timed(lambda: track_outputs(model, [wave], paper_hop).logits, args.repeats)
        slow_s, slow = timed(lambda: track_outputs(naive(model), [wave], paper_hop).logits, args.repeats)
        rows.append((f"{files['short_label']} track at the paper's 0.5-s hop, fast path", f"{fast_s:.3f} s"))
        rows.append(("  clip by clip (naive reference)", f"{slow_s:.3f} s"))
        rows.append(("  ratio", f"{slow_s / fast_s:.2f}x, max |logit diff| {np.abs(fast - slow).max():.1e}"))
        if isinstance(model.network, SincResNet):
            rows += front_end_rows(model, wave, paper_hop, args.repeats)

    rows.append(("training, batch of 16 clips", f"{train_clips_per_second(model, args.repeats):.1f} clips/s"))
    return rows


def front_end_rows(model: GenreModel, wave: np.ndarray, hop: int, repeats: int) -> list[tuple[str, str]]:
    """Where a fast path's time goes: per clip, for one span of a SincResNet (the model's batch of clips)."""
    network, n = model.network, min(model.batch_size, (len(wave) - model.clip_samples) // hop + 1)
    span = torch.from_numpy(wave[: model.clip_samples + (n - 1) * hop]).to(model.device)
    clips = span.unfold(0, model.clip_samples, hop).contiguous()
    with torch.inference_mode():
        fast_s, image = timed(lambda: network.front_end.forward_span(span, hop, n, model.clip_samples), repeats)
        slow_s, _ = timed(lambda: network.learned_spectrogram(clips), repeats)
        image = image.contiguous(memory_format=torch.channels_last)
        rest_s, _ = timed(lambda: network.head(network.pool(network.backbone(image))), repeats)

    def per_clip(seconds: float) -> str:
        return f"{1000 * seconds / n:.0f} ms per clip"

    return [
        (f"  sinc front end, fast path (span of {n} clips)", per_clip(fast_s)),
        ("  sinc front end, clip by clip", per_clip(slow_s)),
        ("  ResNet-18 + head, the same in both paths", per_clip(rest_s)),
    ]


def train_clips_per_second(model: GenreModel, repeats: int) -> float:
    """Forward, backward and SGD step on random clips; the network is left in eval mode after."""
    network = model.network
    clips = torch.randn(16, model.clip_samples, device=model.device)
    targets = torch.randint(len(model.labels), (16,), device=model.device)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.0)  # lr 0: the weights stay as they are
    state = {k: v.clone() for k, v in network.state_dict().items()}  # BatchNorm statistics do change
    network.train()

    def step() -> None:
        with torch.autocast("cuda", torch.bfloat16, enabled=model.device.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(network(clips).float(), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    seconds, _ = timed(step, repeats)
    network.load_state_dict(state)
    network.eval()
    return 16 / seconds


def paired_seconds(commands: dict[str, list[str]], rounds: int) -> dict[str, float]:
    """Median wall time of each command, run one after the other in `rounds` rounds after a warm-up round.

    Paired: a slow moment of the machine (another program, the disk cache) hits every command
    of its round, so the ratios between them hold better than the times themselves.
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(rounds + 1):
        for name, argv in commands.items():
            began = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            if round_:
                times[name].append(time.perf_counter() - began)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def engine_rows(files: dict, repeats: int, quick: bool) -> list[tuple[str, str]]:
    """`mgc predict` with the shipped default on each engine, whole processes as a user runs them, and in process."""
    mgc = [sys.executable, "-m", "mgcli"]
    one = str(files["30s"])
    commands = {
        "import torch": [sys.executable, "-c", "import torch"],
        "onnx": [*mgc, "predict", one, "--device", "cpu"],
        "torch": [*mgc, "predict", one, "--device", "cpu", "--engine", "torch"],
    }
    if not quick:
        folder, long = [str(path) for path in files["folder"]], str(files["4min"])
        commands.update({
            "tags": [*mgc, "tags", one, "--device", "cpu"],
            "folder onnx": [*mgc, "predict", *folder, "--device", "cpu"],
            "folder torch": [*mgc, "predict", *folder, "--device", "cpu", "--engine", "torch"],
            "long onnx": [*mgc, "predict", long, "--device", "cpu"],
            "long torch": [*mgc, "predict", long, "--device", "cpu", "--engine", "torch"],
        })
    t = paired_seconds(commands, repeats)
    short = files["short_label"]
    rows = [
        ("`python -c \"import torch\"`", f"{t['import torch']:.2f} s"),
        (f"`mgc predict` {short} WAV, onnx engine (the default on the CPU)", f"{t['onnx']:.2f} s"),
        ("  ratio to importing torch", f"{t['onnx'] / t['import torch']:.2f}x"),
        (f"`mgc predict` {short} WAV, `--engine torch`", f"{t['torch']:.2f} s"),
        ("  ratio to importing torch", f"{t['torch'] / t['import torch']:.2f}x"),
    ]
    if quick:
        return rows
    with busy_core():
        loaded = paired_seconds({"onnx": commands["onnx"]}, repeats)["onnx"]
    n = len(files["folder"])
    onnx_model, torch_model = load_model(None, "cpu", engine="onnx"), load_model(None, "cpu", engine="torch")
    per_track = {
        engine: timed(lambda: list(classify_files(model, files["folder"])), repeats)[0] / n
        for engine, model in (("onnx", onnx_model), ("torch", torch_model))
    }
    return rows + [
        ("  onnx, one other core busy (a spinning process)", f"{loaded:.2f} s"),
        ("  ratio to idle", f"{loaded / t['onnx']:.2f}x"),
        (f"`mgc tags` {short} WAV, onnx engine", f"{t['tags']:.2f} s"),
        ("  ratio to `mgc predict`", f"{t['tags'] / t['onnx']:.2f}x"),
        (f"`mgc predict` {n} {short} MP3s in one call, onnx engine", f"{t['folder onnx']:.2f} s"),
        ("  `--engine torch`", f"{t['folder torch']:.2f} s"),
        ("  ratio torch / onnx", f"{t['folder torch'] / t['folder onnx']:.2f}x"),
        ("  in process, model loaded: onnx per track", f"{per_track['onnx']:.3f} s"),
        ("  in process, model loaded: torch per track", f"{per_track['torch']:.3f} s"),
        ("  ratio onnx / torch", f"{per_track['onnx'] / per_track['torch']:.2f}x"),
        (f"`mgc predict` {files['long_label']} MP3, onnx engine", f"{t['long onnx']:.2f} s"),
        ("  `--engine torch`", f"{t['long torch']:.2f} s"),
        ("  ratio torch / onnx", f"{t['long torch'] / t['long onnx']:.2f}x"),
    ]


def startup_rows() -> list[tuple[str, str]]:
    rows = []
    for label, argv in [("`mgc --help`", ["--help"]), ("`mgc predict` (argument error)", ["predict"])]:
        command = [sys.executable, "-m", "mgcli", *argv]
        seconds, _ = timed(lambda: subprocess.run(command, capture_output=True), 3)
        rows.append((f"start-up, {label}", f"{seconds:.2f} s"))
    return rows


def preprocess_row(folder: list[Path], label: str, workdir: Path) -> tuple[str, str]:
    tracks = find_tracks(folder[0].parent.parent)
    counter = iter(range(1_000))
    seconds, _ = timed(lambda: preprocess(tracks, workdir / f"cache{next(counter)}"), 1)
    return (f"preprocess {len(tracks)} {label} MP3s", f"{len(tracks) / seconds:.1f} tracks/s")


def peak_memory_rows(spec: str, device: str, path: Path, quick: bool, label: str) -> list[tuple[str, str]]:
    """Peak RSS (VmHWM) of a fresh process that loads the model, before and after predicting `path`.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking parent
    (this benchmark, large after the models above), VmHWM starts afresh with the new program.
    """
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from bench import open_model\n"
        "from mgcli.torch_engine import pick_device\n"
        "from mgcli.inference import classify\n"
        "def peak():\n"
        "    lines = open('/proc/self/status').read().splitlines()\n"
        "    return next(int(line.split()[1]) for line in lines if line.startswith('VmHWM'))\n"
        "model = open_model(sys.argv[2], pick_device(sys.argv[3]), sys.argv[4] == '1')\n"
        "classify(model, sys.argv[5], 0.5)\n"  # load the model and warm up on a short file
        "before = peak()\n"
        "classify(model, sys.argv[6])\n"
        "print(before, peak())\n"
    )
    warm = path.with_name("warm.wav")
    sf.write(str(warm), music_like(4.0), SOURCE_RATE)
    here = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [sys.executable, "-c", code, here, spec, device, "1" if quick else "0", str(warm), str(path)],
        capture_output=True, text=True, check=True,
    )
    before_kib, after_kib = map(int, done.stdout.split())
    return [
        ("peak RSS, model loaded and warmed up", f"{before_kib / 1024:.0f} MiB"),
        (f"peak RSS, after predicting a {label} WAV", f"{after_kib / 1024:.0f} MiB"),
    ]


def data_path_row(folder: list[Path], clip_samples: int, workdir: Path) -> tuple[str, str]:
    """Augmented training clips per second from the decoded cache, with no model: what feeds training."""
    cache = workdir / "train-cache"
    preprocess(find_tracks(folder[0].parent.parent), cache)
    clips = TrainClips(find_tracks(cache), GENRES, 4, clip_samples, Augment(0.9, 1.1, 0.02), False, 0)
    seconds, _ = timed(lambda: [clips[i] for i in range(len(clips))], 3)
    return ("training data path (cache -> augmented clips, 1 worker)", f"{len(clips) / seconds:.0f} clips/s")


def make_library(root: Path, quick: bool) -> dict[str, list[Path]]:
    """Two folders of MP3s as a music library holds them, by their tracks' length: long tracks first, then
    short ones (20 of 4 min and 100 of 30 s; quick: 2 of 20 s and 3 of 6 s)."""
    library = {}
    for count, seconds in [(2, 20.0), (3, 6.0)] if quick else [(20, 240.0), (100, 30.0)]:
        name = f"{seconds / 60:g}-min" if seconds >= 60 else f"{seconds:g}-s"
        folder = root / f"library-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        library[name] = []
        for i in range(count):
            path = folder / f"track{i:03d}.mp3"
            sf.write(str(path), music_like(seconds, seed=100 + i), SOURCE_RATE)
            library[name].append(path)
    return library


def network_share(model, files: list[Path], clip_budget: int | None, settle: bool, decoders: int) -> tuple[float, float]:
    """(tracks per minute, the share of the time the network runs) of `classify_files`, model loaded:
    the rest of the time it waits for decoded audio (or aggregates, which takes microseconds)."""
    busy = [0.0]
    run_clips = model.clip_outputs

    def timed_clips(clips):
        began = time.perf_counter()
        try:
            return run_clips(clips)
        finally:
            busy[0] += time.perf_counter() - began

    model.clip_outputs = timed_clips
    try:
        began = time.perf_counter()
        list(classify_files(model, files, clip_budget=clip_budget, decoders=decoders, settle=settle))
        seconds = time.perf_counter() - began
    finally:
        del model.clip_outputs  # the instance attribute: the class's method again
    return 60 * len(files) / seconds, busy[0] / seconds


def library_rows(library: dict[str, list[Path]], device: torch.device, rounds: int, baseline: Path | None) -> list[tuple[str, str]]:
    """`mgc predict FOLDER --csv` with the shipped default (`--clips auto`), whole processes in paired
    rounds, against `--clips 10` on long tracks (on 30-s ones it reads what auto reads) and every clip
    (`--clips all`, what predict did before `--clips`) and, given a checkout of an earlier commit,
    its `mgc predict`; then the network's share of the time, in process."""
    long, short = library
    predict = ["-m", "mgcli", "predict", "--device", device.type, "--overwrite"]
    # run from the checkout: `python -m` puts the current folder first on the path, before PYTHONPATH
    before = ["env", "-C", str(baseline), f"PYTHONPATH={baseline}", sys.executable] if baseline else []
    variants = {"default": [], "--clips 10": ["--clips", "10"], "--clips all": ["--clips", "all"]}
    commands = {}
    for name, files in library.items():
        folder = [str(files[0].parent), "--csv", str(files[0].parent.with_suffix(".csv"))]
        for variant, extra in variants.items():
            if variant != "--clips 10" or name == long:
                commands[name, variant] = [sys.executable, *predict, *folder, *extra]
        if baseline:
            commands[name, "before"] = [*before, *predict, *folder]
    if baseline:
        one = [str(library[short][0]), "--csv", str(library[short][0].with_suffix(".csv"))]
        commands["one", "default"] = [sys.executable, *predict, *one]
        commands["one", "before"] = [*before, *predict, *one]
        commands["one", "import torch"] = [sys.executable, "-c", "import torch"]
    t = paired_seconds(commands, rounds)
    rows = []
    for name, files in library.items():
        per_minute = {variant: 60 * len(files) / seconds for (folder, variant), seconds in t.items() if folder == name}
        rows.append((f"{len(files)} {name} MP3s, default (`--clips auto`)", f"{per_minute['default']:.1f} tracks/min ({t[name, 'default']:.1f} s)"))
        for variant in per_minute.keys() - {"default"}:
            label = "before (the baseline checkout)" if variant == "before" else f"`{variant}`"
            rows.append((f"  {label}", f"{per_minute[variant]:.1f} tracks/min ({t[name, variant]:.1f} s)"))
            rows.append((f"  ratio {variant} / default", f"{per_minute[variant] / per_minute['default']:.2f}x"))
    if baseline:
        rows += [
            (f"one {short} MP3, default", f"{t['one', 'default']:.2f} s"),
            ("  before (the baseline checkout)", f"{t['one', 'before']:.2f} s"),
            ("  `python -c \"import torch\"`", f"{t['one', 'import torch']:.2f} s"),
            ("  ratio default / importing torch", f"{t['one', 'default'] / t['one', 'import torch']:.2f}x"),
        ]
    model = load_model(None, device.type)
    list(classify_files(model, library[short][:1]))  # warm-up
    runs = sorted({("auto", model.decoders), ("auto", 1), ("auto", 2), ("all", 1)})
    budgets = {"auto": (AUTO_CLIPS, True), "10": (10, False), "all": (None, False)}
    for name, files in library.items():
        measured: dict[tuple[str, int], list[tuple[float, float]]] = {run: [] for run in runs}
        for _ in range(rounds):  # paired, as the whole processes above
            for clips, decoders in runs:
                measured[clips, decoders].append(network_share(model, files, *budgets[clips], decoders))
        for (clips, decoders), results in measured.items():
            per_minute, share = (statistics.median(values) for values in zip(*results))
            threads = "1 streaming decoding thread" if clips == "all" else f"{decoders} decoding thread(s)"
            rows.append((f"{name} folder in process ({model.engine} engine), `--clips {clips}`, {threads}: "
                         "the network's share of the time", f"{share:.0%} ({per_minute:.0f} tracks/min)"))
    return rows


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n### {title}\n\n| measurement | value |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default", "ms-sincresnet"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hop", type=float, default=3.0, help="predict's hop in seconds (default 3)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder-size", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiny model, short audio, one repeat")
    parser.add_argument("--audio-dir", type=Path, help="write the generated audio here and keep it (for musicnn_tf_speed.py)")
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier commit: the library table times its `mgc predict` too")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=SECTIONS, help="the tables to measure (default: all)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.repeats, args.folder_size = ["tiny"], 1, 3
    device = pick_device(args.device)

    cpu = platform.processor() or platform.machine()
    print(f"mgcli benchmark: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        audio_dir = args.audio_dir or workdir
        audio_dir.mkdir(parents=True, exist_ok=True)
        short, long_seconds, hour_seconds = (3.0, 10.0, 60.0) if args.quick else (30.0, 240.0, 3600.0)
        files = {"30s": audio_dir / "track.wav", "4min": audio_dir / "long.mp3"}
        files["short_label"], files["long_label"] = f"{short:g}-s", f"{long_seconds / 60:g}-min"
        sf.write(str(files["30s"]), music_like(short), SOURCE_RATE)
        sf.write(str(files["4min"]), music_like(long_seconds, seed=1), SOURCE_RATE)
        files["folder"] = []
        for i in range(args.folder_size):
            path = workdir / "folder" / GENRES[i % len(GENRES)] / f"track{i}.mp3"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), music_like(short, seed=10 + i), SOURCE_RATE)
            files["folder"].append(path)
        hour = workdir / "hour.wav"
        rng = np.random.default_rng(0)
        with sf.SoundFile(str(hour), "w", SAMPLE_RATE, 1, "PCM_16") as sound:
            for _ in range(int(hour_seconds // 60)):  # written a minute at a time
                sound.write((0.1 * rng.standard_normal(60 * SAMPLE_RATE)).astype(np.float32))

        for spec in args.models if "models" in args.sections else []:
            model = open_model(spec, device, args.quick)
            print_table(f"{model.name} ({spec})", bench_model(model, spec, files, args))
        if device.type == "cpu" and "engines" in args.sections:
            print_table(f"the shipped default, whole processes ({args.repeats} paired rounds)",
                        engine_rows(files, args.repeats, args.quick))
        if "tool" in args.sections:
            print_table("the tool", [
                *startup_rows(),
                preprocess_row(files["folder"], files["short_label"], workdir),
                data_path_row(files["folder"], CLIP_SAMPLES, workdir),
                *peak_memory_rows(args.models[0], str(device), hour, args.quick, f"{hour_seconds / 60:g}-min"),
            ])
        if "library" in args.sections:
            library = make_library(workdir, args.quick)
            print_table(f"a music library, the shipped default ({args.repeats} paired rounds)",
                        library_rows(library, device, args.repeats, args.baseline))


if __name__ == "__main__":
    main()
