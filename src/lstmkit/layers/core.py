"""Keras-style core layers: Dense, Dropout, Activation, Embedding (mask_zero), Masking, TimeDistributed, Flatten."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from lstmkit.layers.base import Layer, get_activation, init_weight, register


@register
class Dense(Layer):
    """Fully connected layer on the last axis: ``y = activation(x @ kernel + bias)``.

    Args: units; activation (Keras name or callable, default None = linear); use_bias=True;
    kernel_initializer="glorot_uniform"; bias_initializer="zeros". Shapes: ``(B, ..., D) -> (B, ..., units)``.
    Example: ``Dense(1, activation="sigmoid")``.
    """

    def __init__(self, units: int, activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ValueError(f"Dense: units={units!r}; expected a positive integer")
        self.units, self.use_bias = int(units), use_bias
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.linear: Optional[nn.Linear] = None

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.linear = nn.Linear(d, self.units, bias=self.use_bias)
        init_weight(self.linear.weight, self.kernel_initializer, d, self.units)
        if self.use_bias:
            init_weight(self.linear.bias, self.bias_initializer, d, self.units)

    def call(self, x, mask=None):
        return self.activation(self.linear(x))


@register
class Activation(Layer):
    """Applies an activation by Keras name, e.g. ``Activation("softmax")``."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.fn = get_activation(activation)

    def call(self, x, mask=None):
        return self.fn(x)


@register
class Dropout(Layer):
    """Dropout with rate ``rate`` in training, identity in inference (inverted scaling, as Keras)."""

    def __init__(self, rate: float, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout: rate={rate!r}; expected a float in [0, 1)")
        self.rate = float(rate)

    def call(self, x, mask=None):
        return nn.functional.dropout(x, self.rate, self.training)


@register
class Flatten(Layer):
    """Flattens all but the batch axis: ``(B, ...) -> (B, prod(...))``."""

    def call(self, x, mask=None):
        return x.reshape(x.shape[0], -1)

    def compute_mask(self, x, mask):
        return None


@register
class Embedding(Layer):
    """Token ids to vectors. With ``mask_zero=True`` id 0 is padding: the output carries a mask ``ids != 0``
    that recurrent layers use to skip those steps.

    Args: input_dim (vocabulary size), output_dim, embeddings_initializer="uniform" (U(-0.05, 0.05) as Keras),
    mask_zero=False, input_length (ignored, accepted for old Keras code).
    Shapes: ``(B, T)`` int -> ``(B, T, output_dim)``.
    """

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform", mask_zero: bool = False,
                 input_length=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim, self.mask_zero = int(input_dim), int(output_dim), bool(mask_zero)
        self.embedding = nn.Embedding(self.input_dim, self.output_dim)
        init_weight(self.embedding.weight, embeddings_initializer, self.input_dim, self.output_dim)

    def call(self, x, mask=None):
        if x.is_floating_point():
            if not torch.equal(x, x.round()):
                raise ValueError(f"layer {self.name!r}: Embedding input must hold integer token ids; got "
                                 f"non-integer values of dtype {x.dtype}")
            x = x.long()
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.input_dim):
            raise ValueError(f"layer {self.name!r}: token ids must be in [0, {self.input_dim - 1}] "
                             f"(input_dim={self.input_dim}); got values in [{int(x.min())}, {int(x.max())}]")
        return self.embedding(x.long())

    def compute_mask(self, x, mask):
        return (x != 0) if self.mask_zero else mask


@register
class Masking(Layer):
    """Marks steps whose features all equal ``mask_value`` as padding (mask False) and zeroes them.

    Shapes: ``(B, T, D) -> (B, T, D)``, output mask ``(B, T)`` = any(x != mask_value, -1).
    """

    def __init__(self, mask_value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def compute_mask(self, x, mask):
        return (x != self.mask_value).any(dim=-1)

    def call(self, x, mask=None):
        return x * (x != self.mask_value).any(dim=-1, keepdim=True).to(x.dtype)


@register
class TimeDistributed(Layer):
    """Applies ``layer`` to every time step: ``(B, T, ...) -> (B, T, ...')`` by folding T into the batch."""

    def __init__(self, layer: Layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def call(self, x, mask=None):
        b, t = x.shape[:2]
        y = self.layer(x.reshape((b * t,) + tuple(x.shape[2:])))
        return y.reshape((b, t) + tuple(y.shape[1:]))
