"""Sequential: a linear stack of layers (list or ``.add``), passing Keras masks from layer to layer."""
from __future__ import annotations

from typing import Iterable, List, Optional

import torch
from torch import nn

from lstmkit._registry import deserialize, register, serialize
from lstmkit.models.model import Model


@register
class Sequential(Model):
    """A stack of layers applied in order, as ``keras.Sequential``.

    Args: layers (list, default empty; more with :meth:`add`), name. When the first layer is given
    ``input_shape`` the model is built at once (so ``summary()`` works before training); otherwise on the first
    call. A mask produced by ``Embedding(mask_zero=True)`` or ``Masking`` flows to the following layers.

    Example::

        model = Sequential([LSTM(50, input_shape=(10, 1)), Dense(1, activation="sigmoid")])
        model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=10)
    """

    def __init__(self, layers: Optional[Iterable[nn.Module]] = None, name: Optional[str] = None):
        super().__init__(name=name or "sequential")
        self.layers = nn.ModuleList()
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: nn.Module) -> None:
        """Append ``layer`` (an lstmkit layer or any torch module taking one tensor)."""
        if not isinstance(layer, nn.Module):
            raise ValueError(f"Sequential.add: expected an lstmkit layer or torch.nn.Module; got "
                             f"{type(layer).__name__}")
        names = {getattr(m, "name", None) for m in self.layers}
        if getattr(layer, "name", None) in names:  # unique names, as Keras: lstm, lstm_1, ...
            base, k = layer.name, 1
            while f"{base}_{k}" in names:
                k += 1
            layer.name = f"{base}_{k}"
        self.layers.append(layer)
        first = self.layers[0]
        hint = getattr(first, "input_shape_hint", None)
        if hint is not None:
            from lstmkit.layers.core import Embedding
            dtype = "int64" if isinstance(first, Embedding) else "float32"
            self.build_from_spec({"shape": [None] + list(hint), "dtype": dtype})

    def pop(self) -> nn.Module:
        layer = self.layers[-1]
        del self.layers[-1]
        return layer

    @property
    def input_shape_hint(self):
        return getattr(self.layers[0], "input_shape_hint", None) if len(self.layers) else None

    def call(self, x, mask: Optional[torch.Tensor] = None):
        if not len(self.layers):
            raise ValueError("Sequential model has no layers; add some with .add(layer)")
        for layer in self.layers:
            if hasattr(layer, "compute_mask"):
                out = layer(x, mask=mask)
                mask = layer.compute_mask(x, mask)
            else:
                out = layer(x)
            x = out
        return x

    def forward(self, x, mask=None):
        return self.call(x, mask=mask)

    def get_config(self) -> dict:
        return {"name": self.name, "layers": [serialize(layer) for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict):
        return cls(layers=[deserialize(c) for c in config["layers"]], name=config.get("name"))

    def __getitem__(self, i) -> nn.Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def layer_list(self) -> List[nn.Module]:
        return list(self.layers)
