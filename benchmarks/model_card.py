"""Measure a shipped checkpoint for its model card (weights/README.md) and print the card's figures.

    python benchmarks/model_card.py                            # weights/default-train-only.pt
    python benchmarks/model_card.py --weights weights/other.pt
    python benchmarks/model_card.py --runs runs/zoo/bbnn runs/recipe/bbnn-cos   # compare training runs

Scores the checkpoint on the `valid` splits of ../shared/data/gtzan, emotify and allmusic
(their splits.csv; 3-s hop, every aggregation), each alone and all together, and prints
markdown: per split the summary, the per-genre table (with a row per set label, such as
AllMusic's pop|rock|metal) and the confusion matrix; then the CPU
time to classify a real 30-s track. The card quotes this output verbatim; tests/test_real_data.py
re-runs the scoring part and checks that the card still says the same.

With --runs it compares training runs instead, from their log.jsonl: valid figures at the best
epoch, at the last, and averaged over the last five (the single best epoch of a noisy curve
flatters a recipe; the late average does not).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench import timed

from mgcli.inference import classify, load_model
from mgcli.torch_engine import GenreModel
from mgcli.training.datasets import find_tracks, split_tracks
from mgcli.training.evaluate import evaluate_datasets

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = ("gtzan", "emotify", "allmusic")
SPEED_TRACK = DATA / "gtzan" / "jazz" / "jazz.00000.ogg"


def valid_reports(model: GenreModel, data: Path = DATA) -> dict[str, dict]:
    """`evaluate_datasets` on each dataset's valid split and on all together (3-s hop, mean_prob)."""
    valid = {name: split_tracks(find_tracks(data / name), split_file=data / name / "splits.csv")["valid"]
             for name in DATASETS}
    report = evaluate_datasets(model, valid)
    return report.pop("datasets") | {"all": report}


def figures_markdown(reports: dict[str, dict], labels: list[str]) -> str:
    """The card's measured figures for each valid split, as markdown."""
    return "\n\n".join(split_markdown(name, report, labels) for name, report in reports.items())


def split_markdown(name: str, report: dict, labels: list[str]) -> str:
    """One split's figures: summary, per-genre table and confusion matrix."""
    track, clip = report["track"], report["clip"]
    by_method = " / ".join(f"{a:.3f}" for a in report["track_accuracy"].values())
    title = "GTZAN, Emotify and AllMusic valid splits together" if name == "all" else f"{name} valid split"
    tracks = track["count"] + sum(row["support"] for row in track["sets"])
    clips = clip["count"] + sum(row["support"] for row in clip["sets"])
    sets = f"; {tracks - track['count']} of the tracks have a set label" if track["sets"] else ""
    lines = [
        f"#### {title}: {tracks} tracks, {clips} clips (3-s clips, 3-s hop){sets}",
        "",
        "| | value |",
        "|---|---:|",
        f"| track accuracy (tracks of one genre), {' / '.join(report['track_accuracy'])} | {by_method} |",
        f"| clip accuracy | {clip['accuracy']:.3f} |",
        f"| macro recall (tracks, genres and set labels present in valid) | {track['macro']['recall']:.3f} |",
        f"| macro precision / F1 | {track['macro']['precision']:.3f} / {track['macro']['f1']:.3f} |",
        *calibration_rows(report["calibration"]),
        *([f"| novelty at or under 0.5 (tracks) | {report['novelty']['pass']:.3f} |"] if "novelty" in report else []),
        "",
        "| genre | recall | precision | valid tracks |",
        "|---|---:|---:|---:|",
    ]
    for c in track["per_class"]:
        if c["support"]:
            lines.append(f"| {c['label']} | {c['recall']:.3f} | {c['precision']:.3f} | {c['support']} |")
        else:
            lines.append(f"| {c['label']} | — | {c['precision']:.3f} | 0 |")
    for row in track["sets"]:
        answers = ", ".join(f"{genre} {n}" for genre, n in row["answers"].items())
        lines.append(f"| {row['label']} (answered inside the set; its answers: {answers}) | {row['recall']:.3f} | | {row['support']} |")
    lines += [
        "",
        "Confusion matrix (tracks; rows: true genre, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(label[:5] for label in labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for label, row in zip(labels, track["confusion"]):
        lines.append(f"| {label} | " + " | ".join(str(v) if v else "·" for v in row) + " |")
    return "\n".join(lines)


def calibration_rows(calibration: dict) -> list[str]:
    """The track probabilities' calibration error and log-likelihood, before and after the checkpoint's temperature."""
    return [
        f"| mean top probability (tracks): uncalibrated → calibrated "
        f"| {calibration['confidence_uncalibrated']:.3f} → {calibration['confidence']:.3f} |",
        f"| calibration error (ECE, tracks, 10 bins): uncalibrated → temperature {calibration['temperature']:.3f} "
        f"| {calibration['ece_uncalibrated']:.3f} → {calibration['ece']:.3f} |",
        f"| ECE a perfectly calibrated model would show on these tracks (simulated) | {calibration['ece_if_calibrated']:.3f} |",
        f"| negative log-likelihood (tracks): uncalibrated → calibrated | {calibration['nll_uncalibrated']:.3f} → {calibration['nll']:.3f} |",
        f"| calibration error (ECE) of the clips' own probabilities | {calibration['clip_ece']:.3f} |",
    ]


def runs_markdown(runs: list[Path]) -> str:
    """Valid track accuracy / macro recall per run: best epoch, last epoch, mean of the last five."""
    lines = [
        "| run | epochs | best epoch: track acc / macro recall | last epoch | mean of the last 5 |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in runs:
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
        best = max(log, key=lambda m: (m["valid_macro_recall"], m["valid_track_accuracy"], -m["valid_loss"]))
        late = log[-5:]
        late_acc = sum(m["valid_track_accuracy"] for m in late) / len(late)
        late_recall = sum(m["valid_macro_recall"] for m in late) / len(late)
        lines.append(
            f"| `{run}` | {len(log)} | {best['valid_track_accuracy']:.3f} / {best['valid_macro_recall']:.3f} "
            f"(epoch {best['epoch']}) | {log[-1]['valid_track_accuracy']:.3f} / {log[-1]['valid_macro_recall']:.3f} "
            f"| {late_acc:.3f} / {late_recall:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Not default.pt: that one is trained on train + valid, so its valid figures would be training figures.
    parser.add_argument("--weights", type=Path, default=ROOT / "weights" / "default-train-only.pt")
    parser.add_argument("--runs", type=Path, nargs="+", help="training run folders to compare (log.jsonl)")
    args = parser.parse_args()
    if args.runs:
        print(runs_markdown(args.runs))
        return
    torch.manual_seed(0)
    model = load_model(args.weights, "cpu", engine="torch")
    print(figures_markdown(valid_reports(model), model.labels))
    seconds, _ = timed(lambda: classify(model, SPEED_TRACK), 5)
    print(f"\nCPU: {seconds:.3f} s to classify `{SPEED_TRACK.name}` (30 s: decode, resample, 10 clips, "
          f"aggregation), median of 5 after a warm-up, {torch.get_num_threads()} threads.")


if __name__ == "__main__":
    main()
