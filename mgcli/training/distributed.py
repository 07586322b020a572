"""Data-parallel training: `torchrun --nproc-per-node N -m mgcli train ...` runs N ranks as one run.

torchrun starts N copies of `mgc train` and tells each its place in the environment
(WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `process_group` joins them
(gloo on the CPU, NCCL on CUDA, one GPU per rank: cuda:LOCAL_RANK); `loop.fit` then
trains with DistributedDataParallel whenever a process group is up:

- `--batch-size` stays the global batch: each rank takes batch_size / N clips per step,
  rank r the epoch's clips r, r + N, r + 2N, ..., so step k of all ranks together is one
  process's step k (the clip plan is still drawn from (seed, epoch), so resume stays exact);
- each rank's loss is scaled so that DDP's average of the ranks' gradients is the gradient
  of the global batch's class-weighted mean, as in one process (`global_share`);
- BatchNorm normalises each rank's own batch_size / N clips in training, the one way
  (besides which random dropout masks are drawn) in which N ranks do not train as one
  process: SyncBatchNorm refuses CPU tensors in this torch (2.14), so gloo runs cannot
  use it, and CUDA runs behave as CPU ones do;
- after each epoch every rank re-estimates BatchNorm on one process's whole batches and
  validates, with the same weights, so the ranks stay identical without sending weights
  around (DDP also hands rank 0's BatchNorm buffers to the others at every step);
- each rank seeds torch with (seed, epoch, rank), so its clips draw dropout masks of their own;
- only rank 0 writes checkpoints and logs and prints.

Without WORLD_SIZE (or with WORLD_SIZE=1) none of this runs: one process trains as before.
The ranks share one filesystem: every rank reads the dataset and, on resume, `last.pt`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from .. import MgcError

T = TypeVar("T")

# Rank 0 may decode a whole dataset into the cache while the other ranks wait for it in a
# collective; the default timeouts (30 min with gloo, 10 with NCCL) could stop them first.
TIMEOUT = timedelta(hours=3)


def launched() -> bool:
    """Whether torchrun started this process as one of several (WORLD_SIZE > 1)."""
    return _environment_int("WORLD_SIZE", "1") > 1


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the ranks torchrun started (gloo on the CPU, NCCL on CUDA) and leave at the end, errors too.

    Alone it does nothing. On CUDA each rank works on GPU LOCAL_RANK.
    """
    if not launched():
        yield
        return
    gpu = None
    if device.type == "cuda":
        if device.index is not None:
            raise MgcError(f"under torchrun each process uses GPU LOCAL_RANK: pass --device cuda, not {device}")
        gpu = torch.device("cuda", _environment_int("LOCAL_RANK"))
        torch.cuda.set_device(gpu)
    dist.init_process_group("nccl" if gpu is not None else "gloo", timeout=TIMEOUT, device_id=gpu)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _environment_int(name: str, default: str | None = None) -> int:
    value = os.environ.get(name, default)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MgcError(f"{name}={value!r} in the environment: launch several processes with torchrun") from None


def rank() -> int:
    """This process's rank: 0 when it trains alone. Outside the process group (after `process_group`
    has ended) it is the rank torchrun gave it, so that rank 0 alone reports the result."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _environment_int("RANK", "0") if launched() else 0


def world_size() -> int:
    """How many ranks train together: 1 when this process trains alone."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_device(device: torch.device) -> torch.device:
    """The device this rank trains on: with CUDA in a process group, its own GPU (what `process_group` set)."""
    if world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def from_main(make: Callable[[], T]) -> T:
    """`make()` run by rank 0 alone, its result sent to every rank (alone: just `make()`).

    For work that must happen once, such as decoding a dataset into the cache the ranks share:
    several ranks writing the same cache files would trip over each other. An MgcError that
    `make` raises is raised on every rank.
    """
    if world_size() == 1:
        return make()
    box: list = [None]
    if rank() == 0:
        try:
            box = [make()]
        except MgcError as error:  # every rank stops with the one-line message, not a broken connection
            box = [error]
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], MgcError):
        raise box[0]
    return box[0]


def global_share(weight: torch.Tensor) -> torch.Tensor:
    """world size × this rank's `weight` / all ranks' `weight` summed: the factor for a rank's mean loss.

    Each rank's loss is a mean over its clips weighted by class (`loop.clip_loss`), and DDP
    averages the ranks' gradients. Scaled by this factor (its clip weights' sum as `weight`),
    that average is the gradient of the weighted mean over the whole global batch, as one
    process computes it, even when one rank holds the clips of a heavily weighted class.
    """
    total = weight.detach().clone()
    dist.all_reduce(total)
    return dist.get_world_size() * weight.detach() / total


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Each value summed over all ranks (tensors on `device`: NCCL cannot reduce CPU tensors)."""
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()
