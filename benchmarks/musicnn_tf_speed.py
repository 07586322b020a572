"""musicnn's own TensorFlow code on the same files as benchmarks/bench.py, for the speed comparison.

Runs in the throwaway TensorFlow environment of tests/fixtures/musicnn_reference.py, never
in mgcli's:

    python benchmarks/bench.py --models default --audio-dir /tmp/bench-audio   # keeps its files
    /tmp/tfenv/bin/python benchmarks/musicnn_tf_speed.py /tmp/bench-audio/track.wav /tmp/bench-audio/long.mp3

Per file it prints the median wall time of `musicnn.extractor.extractor(file, "MSD_musicnn")`
(librosa decoding and mel, TensorFlow graph and checkpoint, every 3-s patch, the taggram) over
3 runs after a warm-up, with TensorFlow's default threads: what a musicnn user waits for.
"""

import statistics
import sys
import time

from musicnn import extractor


def main(paths: list[str]) -> None:
    for path in paths:
        extractor.extractor(path, model="MSD_musicnn", extract_features=False)
        times = []
        for _ in range(3):
            began = time.perf_counter()
            extractor.extractor(path, model="MSD_musicnn", extract_features=False)
            times.append(time.perf_counter() - began)
        print(f"{path}: {statistics.median(times):.3f} s (musicnn 0.1.0, TensorFlow, MSD_musicnn)")


if __name__ == "__main__":
    main(sys.argv[1:])
