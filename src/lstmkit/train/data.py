"""Turning fit/evaluate/predict inputs (numpy, tensors, Dataset, DataLoader) into tensors and batches."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def model_dtype(model) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def to_tensor(a, name: str, float_dtype: torch.dtype) -> Optional[torch.Tensor]:
    """numpy/list/tensor -> tensor; floating values in ``float_dtype`` (Keras casts to floatx), ints as int64."""
    if a is None:
        return None
    if isinstance(a, (list, tuple)) and a and (torch.is_tensor(a[0]) or isinstance(a[0], np.ndarray)) \
            and len(a) == 1:
        a = a[0]
    if not torch.is_tensor(a):
        try:
            a = np.asarray(a)
        except Exception as e:  # ragged lists and the like
            raise ValueError(f"{name}: cannot make an array of {type(a).__name__} ({e})") from None
        if a.dtype == object:
            raise ValueError(f"{name}: got an object array (ragged sequences?); pad them to one length first, "
                             f"e.g. with 0 and Embedding(mask_zero=True) or Masking")
        if a.dtype == np.bool_:
            a = a.astype(np.float32)
        a = torch.from_numpy(np.ascontiguousarray(a))
    if a.is_floating_point():
        return a.to(float_dtype)
    if a.dtype == torch.bool:
        return a.to(float_dtype)
    return a.long()


def is_loader(x) -> bool:
    return isinstance(x, (DataLoader, Dataset))


def as_loader(x, batch_size: int, shuffle: bool) -> DataLoader:
    return x if isinstance(x, DataLoader) else DataLoader(x, batch_size=batch_size, shuffle=shuffle)


def split_batch(batch) -> Tuple:
    """(x, y, sample_weight) from a DataLoader batch: a tensor, (x,), (x, y) or (x, y, w)."""
    if torch.is_tensor(batch):
        return batch, None, None
    batch = list(batch)
    batch += [None] * (3 - len(batch))
    return batch[0], batch[1], batch[2]


def index_batches(n: int, batch_size: int, shuffle: bool, seed: Optional[int]) -> list:
    """Batches of sample indices; a shuffled epoch's order depends only on ``seed`` (resume-safe)."""
    if shuffle:
        g = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    return list(order.split(batch_size))


def class_weights_for(y: torch.Tensor, class_weight: dict) -> torch.Tensor:
    """Per-sample weights from a {class: weight} dict; labels from ints, (N, 1) or one-hot targets."""
    if y.dim() >= 2 and y.shape[-1] > 1:
        labels = y.argmax(-1)
    else:
        labels = y.reshape(y.shape[0], -1)[:, 0].round().long()
    if labels.dim() > 1:
        labels = labels[:, 0]
    w = torch.ones(labels.shape[0])
    for c, cw in class_weight.items():
        w[labels == int(c)] = float(cw)
    return w


def iterate(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size]
