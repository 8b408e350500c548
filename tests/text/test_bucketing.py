"""Length bucketing: every sequence in exactly one batch, batches of similar lengths, correct padding/lengths."""
import random

import torch

from lstmkit.data.bucketing import bucket_batches, pad_batch


def test_partition_no_loss_no_duplicate():
    rng = random.Random(1)
    lengths = [rng.randint(1, 60) for _ in range(1037)]
    for shuffle in (True, False):
        batches = bucket_batches(lengths, 32, shuffle=shuffle, seed=3)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 32 for b in batches)


def test_buckets_reduce_padding_and_shuffle_depends_on_seed():
    rng = random.Random(2)
    lengths = [rng.randint(1, 100) for _ in range(2000)]
    b1 = bucket_batches(lengths, 20, seed=0)
    pad = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in b1)
    naive = [list(range(i, min(i + 20, 2000))) for i in range(0, 2000, 20)]
    pad_naive = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in naive)
    assert pad < pad_naive / 5
    assert b1 != bucket_batches(lengths, 20, seed=1)
    assert b1 == bucket_batches(lengths, 20, seed=0)


def test_pad_batch_values_and_lengths():
    x, lens = pad_batch([[5, 6, 7], [8], []], pad=0)
    assert x.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert lens.tolist() == [3, 1, 1]
    x, lens = pad_batch([[1, 2, 3, 4]], max_len=2)
    assert x.tolist() == [[1, 2]] and lens.dtype == torch.long and lens.tolist() == [2]
