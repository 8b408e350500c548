"""Batching variable-length sequences by length, with the lengths the recurrent engine needs.

Sorting every batch's members to similar lengths cuts padding (and recurrent steps); shuffling whole buckets
keeps the order of batches random. :func:`bucket_batches` returns index lists that partition
``range(len(lengths))``: every sequence appears in exactly one batch.

Example::

    for idx in bucket_batches(lengths, batch_size=32, shuffle=True, seed=epoch):
        x, lens = pad_batch([seqs[i] for i in idx])      # x (B, T_max) long, lens (B,) long
        y, _ = lstm(embed(x), lengths=lens)
"""
from __future__ import annotations

import random
from typing import List, Optional, Sequence, Tuple

import torch


def bucket_batches(lengths: Sequence[int], batch_size: int, *, shuffle: bool = True, seed: Optional[int] = None,
                   bucket_factor: int = 50) -> List[List[int]]:
    """Index batches grouping sequences of similar length.

    Args:
        lengths: length of each sequence.
        batch_size: maximum sequences per batch (positive).
        shuffle: when True the order is randomised: indices are shuffled, cut into pools of
            ``batch_size * bucket_factor``, each pool sorted by length and cut into batches ("sort-ish"), and the
            batches shuffled. When False, indices are sorted by length (stable) and cut in order.
        seed: seed of the shuffle (None: Python's global random state).
        bucket_factor: batches per sorting pool.
    Returns a list of batches (lists of indices); together they hold each index exactly once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be a positive integer")
    n = len(lengths)
    rng = random.Random(seed) if seed is not None else random
    if not shuffle:
        order = sorted(range(n), key=lambda i: lengths[i])
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    idx = list(range(n))
    rng.shuffle(idx)
    pool = batch_size * max(1, bucket_factor)
    batches: List[List[int]] = []
    for start in range(0, n, pool):
        chunk = sorted(idx[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_batch(seqs: Sequence[Sequence[int]], pad: int = 0, max_len: Optional[int] = None
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(padded (B, T) long tensor, lengths (B,) long tensor) of id sequences.

    Sequences longer than ``max_len`` are cut to it; an empty sequence gets length 1 (one pad token) since the
    recurrent engine needs lengths >= 1.
    """
    cut = [list(s[:max_len]) if max_len else list(s) for s in seqs]
    lens = [max(1, len(s)) for s in cut]
    out = torch.full((len(cut), max(lens) if lens else 1), pad, dtype=torch.long)
    for i, s in enumerate(cut):
        if s:
            out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out, torch.tensor(lens, dtype=torch.long)
