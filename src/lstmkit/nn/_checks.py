"""Input validation for the recurrent modules: every error names the argument, what it got and what was expected."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor


def check_input(input: Tensor, input_size: int, ref: Tensor) -> bool:
    """Check ``input`` against the module; return True when it is unbatched ``(T, D)``."""
    if not isinstance(input, Tensor):
        raise ValueError(f"input must be a torch.Tensor or PackedSequence, got {type(input).__name__}")
    if input.dim() not in (2, 3):
        raise ValueError(f"input must be 2-D (T, D) unbatched or 3-D (T, B, D) / (B, T, D) with batch_first, "
                         f"got {input.dim()}-D with shape {tuple(input.shape)}")
    if input.size(-1) != input_size:
        raise ValueError(f"input.size(-1) must be input_size={input_size}, got {input.size(-1)} "
                         f"(input shape {tuple(input.shape)})")
    if input.dtype != ref.dtype:
        raise ValueError(f"input dtype {input.dtype} does not match the module's parameters ({ref.dtype}); "
                         f"convert one of them, e.g. module.to({input.dtype})")
    if input.device != ref.device:
        raise ValueError(f"input is on {input.device} but the module's parameters are on {ref.device}")
    return input.dim() == 2


def check_state(name: str, state: Tensor, expected: tuple, ref: Tensor) -> None:
    """Check one initial state tensor (``hx`` h or c) for shape, dtype and device."""
    if not isinstance(state, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(state).__name__}")
    if tuple(state.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(state.shape)}")
    if state.dtype != ref.dtype:
        raise ValueError(f"{name} dtype {state.dtype} does not match the input's dtype {ref.dtype}")
    if state.device != ref.device:
        raise ValueError(f"{name} is on {state.device} but the input is on {ref.device}")


def check_lengths(lengths: Union[Tensor, Sequence[int], None], batch: int, steps: int) -> Optional[Tensor]:
    """Validate ``lengths`` and return it as a CPU int64 tensor of shape ``(B,)``, or None.

    Lengths must be whole numbers in ``[1, T]``, one per sequence. Lengths all equal to T are returned as None,
    since then no masking is needed.
    """
    return lengths_and_common(lengths, batch, steps)[0]


def lengths_and_common(lengths: Union[Tensor, Sequence[int], None], batch: int,
                       steps: int) -> tuple[Optional[Tensor], Optional[int]]:
    """:func:`check_lengths`, and the length L < T that every sequence shares (e.g. a single sequence's), else
    None: a layer then runs L steps with no masking."""
    if lengths is None:
        return None, None
    if isinstance(lengths, Tensor):
        lt = lengths.detach()
        lt = lt if lt.device.type == "cpu" else lt.cpu()
    else:
        try:
            lt = torch.as_tensor(list(lengths) if not isinstance(lengths, (int, float)) else [lengths])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"lengths must be a 1-D tensor or sequence of ints, got {lengths!r}") from exc
    if lt.dim() == 0:
        lt = lt.reshape(1)
    if lt.dim() != 1 or lt.numel() != batch:
        raise ValueError(f"lengths must have shape ({batch},) (one length per sequence), got {tuple(lt.shape)}")
    if lt.dtype.is_floating_point:
        if torch.isnan(lt).any():
            raise ValueError(f"lengths must be whole numbers in [1, {steps}], got NaN in {lt.tolist()}")
        if (lt != lt.round()).any():
            raise ValueError(f"lengths must be whole numbers in [1, {steps}], got {lt.tolist()}")
    elif lt.dtype == torch.bool or lt.is_complex():
        raise ValueError(f"lengths must be integers, got dtype {lt.dtype}")
    if lt.dtype != torch.int64:
        lt = lt.to(torch.int64)
    # the range as Python ints: for a batch of ordinary size one tolist() costs less than three tensor reductions
    if lt.numel() == 0:  # an empty batch: nothing to mask
        return None, None
    if lt.numel() <= 1024:
        vals = lt.tolist()
        lo, hi = min(vals), max(vals)
    else:
        lo, hi = (int(v) for v in torch.aminmax(lt))
    if lo < 1 or hi > steps:
        raise ValueError(f"lengths must lie in [1, T={steps}], got min {lo} and max {hi}")
    if lo == steps:
        return None, None
    return lt, (lo if lo == hi else None)


def reverse_padded(x: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """Reverse each sequence of ``x`` ``(T, B, ...)`` within its own length; padding stays where it is."""
    if lengths is None:
        return x.flip(0)
    steps = x.size(0)
    t = torch.arange(steps).unsqueeze(1)  # (T, 1)
    lens = lengths.unsqueeze(0)  # (1, B)
    idx = torch.where(t < lens, lens - 1 - t, t).to(x.device)  # (T, B)
    idx = idx.reshape(steps, -1, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, idx)
