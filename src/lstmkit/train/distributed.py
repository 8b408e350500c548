"""Data-parallel helpers: detect a torchrun launch, start gloo, shard global batches, reduce sums, rank-0 checks.

The same script runs alone or under ``torchrun --nproc_per_node=N``: fit then wraps the model in
DistributedDataParallel, each rank trains on its share of every global batch (``batch_size`` stays the global
batch), gradients are averaged so each step equals the single-process step on that global batch, and only rank
0 prints and writes files.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def maybe_init() -> bool:
    """Initialise the gloo process group when launched by torchrun (WORLD_SIZE > 1); True when distributed."""
    if not tdist.is_available():
        return False
    if tdist.is_initialized():
        return tdist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ:
        tdist.init_process_group("gloo")
        return True
    return False


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def rank() -> int:
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def is_rank0() -> bool:
    return rank() == 0


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's share of a global batch's sample indices (strided, so shares differ by at most one)."""
    return indices[rank()::world_size()]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (``t`` itself when not distributed)."""
    if world_size() > 1:
        t = t.clone()
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def any_rank(flag: bool) -> bool:
    """True when ``flag`` is true on any rank (so a stop decided on one rank, e.g. TerminateOnNaN on its local
    batch loss, stops every rank together instead of leaving the others waiting in a collective)."""
    if world_size() == 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0])
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item() > 0)
