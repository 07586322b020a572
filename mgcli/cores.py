"""The cores other processes leave idle: how many threads an engine should run on this machine."""

from __future__ import annotations

import os
import time


def cpu_sample() -> tuple[float, float, float] | None:
    """(busy seconds of all cores, this process's CPU seconds, wall seconds) now; None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle + iowait
    times = os.times()
    return (sum(ticks[:8]) - idle) / tick, times.user + times.system, time.monotonic()


def machine_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def engine_threads(since: tuple[float, float, float] | None) -> int:
    """An engine's intra-op threads: OMP_NUM_THREADS when set, but no more than the machine's cores
    (1,000 threads on 2 cores took 44 s where 2 took 0.3 s), else the cores idle since `since`."""
    try:
        return max(1, min(int(os.environ["OMP_NUM_THREADS"]), machine_cores()))
    except (KeyError, ValueError):
        return idle_cores(since)


def decoding_threads(device_type: str) -> int:
    """Threads that decode files ahead of a network on `device_type` ("cpu" or "cuda").

    On CUDA every core: the GPU reads a 30-s track's clips in milliseconds, and what it waits for
    is decoding and resampling, on the CPU. On the CPU half the cores (at least one): the
    network's threads need the others, and the network is the larger cost: 10 clips of a 4-min
    MP3 take about 0.1 s in it on 2 cores, and 0.05 s to read by seeking (audio.read_clips).
    """
    return machine_cores() if device_type == "cuda" else max(1, machine_cores() // 2)


def idle_cores(since: tuple[float, float, float] | None) -> int:
    """How many of this machine's cores other processes left idle since `since` (at least 1).

    Why: two intra-op threads on two cores, one of them busy with another program (a browser,
    a music player), wait on each other at every operation: a model went from 26 ms to
    90-225 ms per clip there (bbnn, measured for issue 16), while one thread took 45 ms. So mgcli uses the cores it finds
    free. Its own CPU time in the window is not counted as busy.
    """
    available = machine_cores()
    now = cpu_sample()
    if since is None or now is None or now[2] - since[2] < 0.02:
        return available
    others_busy = max(0.0, (now[0] - since[0]) - (now[1] - since[1])) / (now[2] - since[2])
    return max(1, min(available, round(available - others_busy)))
