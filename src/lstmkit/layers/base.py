"""Keras-style Layer base: a torch Module built lazily from its first input's shape, with masks and configs."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from lstmkit._registry import Configurable, register


class Layer(Configurable, nn.Module):
    """Base of lstmkit.layers: a ``torch.nn.Module`` whose weights are created on the first call (``build``).

    Subclasses implement ``build(input_shape)`` (create parameters; ``input_shape`` is the full tensor shape of
    the first input, batch included) and ``call(x, mask=None)``; ``compute_mask(x, mask)`` says what mask the
    output carries (default: the input mask unchanged). ``get_config()`` returns the constructor arguments.

    Args (all layers): name (str, default the class name in snake case), input_shape (tuple without the batch
    dimension; None entries are free, e.g. ``(None, 10)`` for any sequence length), dtype (default float32).
    """

    def __init__(self, *, name: Optional[str] = None, input_shape: Optional[Sequence] = None,
                 input_dim: Optional[int] = None, batch_input_shape: Optional[Sequence] = None,
                 trainable: bool = True, dtype=None):
        super().__init__()
        self.name = name or _snake(type(self).__name__)
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        if input_shape is None and input_dim is not None:
            input_shape = (int(input_dim),)
        self.input_shape_hint = None if input_shape is None else tuple(
            None if d is None else int(d) for d in input_shape)
        self.built = False
        self.trainable_flag = trainable
        self.output_shape_seen: Optional[tuple] = None

    # -- lifecycle ---------------------------------------------------------------------------------------
    def build(self, input_shape: tuple) -> None:
        """Create the weights for an input of ``input_shape`` (batch first). Default: no weights."""

    def call(self, x, mask: Optional[Tensor] = None):
        raise NotImplementedError

    def compute_mask(self, x, mask: Optional[Tensor]) -> Optional[Tensor]:
        """The mask of this layer's output (default: unchanged)."""
        return mask

    def forward(self, x, mask: Optional[Tensor] = None):
        return self.call(x, mask=mask)

    def __call__(self, x, *args, **kwargs):
        if not self.built:
            self._check_input(x)
            self.build(tuple(x.shape) if torch.is_tensor(x) else tuple(x[0].shape))
            self.built = True
            if not self.trainable_flag:
                for p in self.parameters():
                    p.requires_grad_(False)
        else:
            self._check_input(x)
        out = super().__call__(x, *args, **kwargs)
        first = out[0] if isinstance(out, (list, tuple)) else out
        if torch.is_tensor(first):
            self.output_shape_seen = (None,) + tuple(first.shape[1:])
        return out

    def _check_input(self, x) -> None:
        """Rank and fixed sizes of ``x`` against ``input_shape`` (when given)."""
        hint = self.input_shape_hint
        if hint is None or not torch.is_tensor(x):
            return
        if x.dim() != len(hint) + 1:
            raise ValueError(f"layer {self.name!r}: input has shape {tuple(x.shape)} (rank {x.dim()}); expected "
                             f"rank {len(hint) + 1}: (batch,) + input_shape {hint}")
        for i, (got, want) in enumerate(zip(x.shape[1:], hint)):
            if want is not None and got != want:
                raise ValueError(f"layer {self.name!r}: input has shape {tuple(x.shape)}; dimension {i + 1} is "
                                 f"{got}, expected {want} (input_shape {hint})")

    def count_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg.setdefault("name", self.name)
        return cfg


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


# -- Keras initializers and activations -----------------------------------------------------------------------
def init_weight(w: Tensor, name: str, fan_in: int, fan_out: int) -> None:
    """Fill ``w`` in place with Keras initializer ``name`` given Keras fan_in/fan_out (kernel (fan_in, fan_out)).

    Known: glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, orthogonal, zeros, ones,
    uniform (±0.05), random_normal (std 0.05).
    """
    with torch.no_grad():
        if name == "glorot_uniform":
            lim = math.sqrt(6.0 / (fan_in + fan_out))
            w.uniform_(-lim, lim)
        elif name == "glorot_normal":
            w.normal_(0, math.sqrt(2.0 / (fan_in + fan_out)))  # Keras truncates; close enough for init
        elif name == "he_uniform":
            lim = math.sqrt(6.0 / fan_in)
            w.uniform_(-lim, lim)
        elif name == "he_normal":
            w.normal_(0, math.sqrt(2.0 / fan_in))
        elif name == "lecun_uniform":
            lim = math.sqrt(3.0 / fan_in)
            w.uniform_(-lim, lim)
        elif name == "orthogonal":
            nn.init.orthogonal_(w)
        elif name == "zeros":
            w.zero_()
        elif name == "ones":
            w.fill_(1.0)
        elif name in ("uniform", "random_uniform"):
            w.uniform_(-0.05, 0.05)
        elif name in ("normal", "random_normal"):
            w.normal_(0, 0.05)
        else:
            raise ValueError(f"initializer {name!r} is not known; expected one of glorot_uniform, glorot_normal, "
                             f"he_uniform, he_normal, lecun_uniform, orthogonal, zeros, ones, uniform, normal")


_ACTIVATIONS = {
    None: lambda x: x, "linear": lambda x: x, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=-1), "log_softmax": lambda x: torch.log_softmax(x, dim=-1),
    "elu": nn.functional.elu, "selu": torch.selu, "gelu": nn.functional.gelu, "softplus": nn.functional.softplus,
    "softsign": nn.functional.softsign, "swish": nn.functional.silu, "silu": nn.functional.silu,
    "leaky_relu": lambda x: nn.functional.leaky_relu(x, 0.2), "exponential": torch.exp,
    "hard_sigmoid": lambda x: torch.clamp(x / 6.0 + 0.5, 0.0, 1.0), "relu6": nn.functional.relu6,
}


def get_activation(name):
    """The function for a Keras activation name (or a callable, returned as is)."""
    if callable(name):
        return name
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not known; expected one of "
                         f"{sorted(k for k in _ACTIVATIONS if k)} or a callable")
    return _ACTIVATIONS[name]


__all__ = ["Layer", "register", "init_weight", "get_activation"]
