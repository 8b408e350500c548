"""Import a Keras 3 Sequential model (architecture and weights) as an lstmkit Sequential.

Supported Keras layers: LSTM, GRU (reset_after=True), SimpleRNN, Bidirectional of those, Dense, Embedding,
Dropout, Masking, Activation, TimeDistributed(Dense), InputLayer. Weight layouts are converted by
:mod:`lstmkit.nn.keras_weights`; predictions then match Keras' to float tolerance.

Example::

    model = from_keras(keras.models.load_model("model.keras"))
    model.predict(x)
"""
from __future__ import annotations

import numpy as np
import torch

from lstmkit import layers as L
from lstmkit.models.sequential import Sequential
from lstmkit.nn.keras_weights import load_keras_weights

_RNN_KINDS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn"}
_RNN_ARGS = ("units", "activation", "recurrent_activation", "use_bias", "return_sequences", "return_state",
             "go_backwards", "stateful", "dropout", "recurrent_dropout", "unit_forget_bias", "reset_after")


def _act(a):
    return a if isinstance(a, str) or a is None else getattr(a, "__name__", a)


def _convert_layer(kl):
    """(lstmkit layer, weight-copy function) for one Keras layer."""
    name = type(kl).__name__
    cfg = kl.get_config()
    if name in _RNN_KINDS:
        kw = {k: _act(cfg[k]) for k in _RNN_ARGS if k in cfg}
        if name == "SimpleRNN":
            kw.pop("recurrent_activation", None)
        if name != "LSTM":
            kw.pop("unit_forget_bias", None)
        if name != "GRU":
            kw.pop("reset_after", None)
        layer = getattr(L, name)(**kw)

        def copy(layer=layer, kl=kl, kind=_RNN_KINDS[name]):
            load_keras_weights(layer.rnn, kl.get_weights(), kind)
        return layer, copy
    if name == "Bidirectional":
        inner, copy_f = _convert_layer(kl.forward_layer)
        back, copy_b = _convert_layer(kl.backward_layer)
        back.go_backwards = False  # lstmkit's Bidirectional reverses the input itself
        layer = L.Bidirectional(inner, merge_mode=cfg.get("merge_mode", "concat"), backward_layer=back)

        def copy(copy_f=copy_f, copy_b=copy_b):
            copy_f()
            copy_b()
        return layer, copy
    if name == "Dense":
        layer = L.Dense(cfg["units"], activation=_act(cfg.get("activation")), use_bias=cfg.get("use_bias", True))

        def copy(layer=layer, kl=kl):
            w = kl.get_weights()
            with torch.no_grad():
                layer.linear.weight.copy_(torch.as_tensor(np.asarray(w[0]).T))
                if len(w) > 1:
                    layer.linear.bias.copy_(torch.as_tensor(np.asarray(w[1])))
        return layer, copy
    if name == "Embedding":
        layer = L.Embedding(cfg["input_dim"], cfg["output_dim"], mask_zero=cfg.get("mask_zero", False))

        def copy(layer=layer, kl=kl):
            with torch.no_grad():
                layer.embedding.weight.copy_(torch.as_tensor(np.asarray(kl.get_weights()[0])))
        return layer, copy
    if name == "Dropout":
        return L.Dropout(cfg["rate"]), lambda: None
    if name == "Masking":
        return L.Masking(cfg.get("mask_value", 0.0)), lambda: None
    if name == "Activation":
        return L.Activation(_act(cfg["activation"])), lambda: None
    if name == "TimeDistributed":
        inner, copy_i = _convert_layer(kl.layer)
        return L.TimeDistributed(inner), copy_i
    raise ValueError(f"from_keras: Keras layer {kl.name!r} of type {name} is not supported; supported: LSTM, GRU, "
                     f"SimpleRNN, Bidirectional, Dense, Embedding, Dropout, Masking, Activation, TimeDistributed")


def from_keras(keras_model) -> Sequential:
    """An lstmkit Sequential with the architecture and weights of a built Keras Sequential ``keras_model``."""
    pairs = [_convert_layer(kl) for kl in keras_model.layers if type(kl).__name__ != "InputLayer"]
    model = Sequential([p[0] for p in pairs])
    shape = tuple(keras_model.inputs[0].shape) if getattr(keras_model, "inputs", None) else None
    if shape is None:
        raise ValueError("from_keras: the Keras model is not built; call it on data or give it an Input first")
    first = model.layers[0]
    dtype = "int64" if isinstance(first, L.Embedding) else "float32"
    model.build_from_spec({"shape": [None] + list(shape[1:]), "dtype": dtype})
    for _, copy in pairs:
        copy()
    model.eval()
    return model
