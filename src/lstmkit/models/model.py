"""Keras-style Model base: a torch Module with compile/fit/evaluate/predict, summary, save and load.

Subclass it like ``keras.Model`` (define layers in ``__init__`` and the computation in ``call`` or ``forward``),
register it with :func:`lstmkit.models.register` to make it loadable, and the constructor arguments become its
saved configuration automatically::

    @register
    class Forecaster(Model):
        def __init__(self, units=32, horizon=1):
            super().__init__()
            self.lstm = LSTM(units)
            self.head = Dense(horizon)

        def call(self, x):
            return self.head(self.lstm(x))

    m = Forecaster(units=16); m.compile("adam", "mse"); m.fit(x, y, epochs=5)
    m.save("out/model"); m2 = load_model("out/model")
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

from lstmkit._registry import Configurable

_OPTIMIZERS = {  # Keras name -> (torch class, Keras defaults mapped to torch argument names)
    "adam": ("Adam", {"lr": 1e-3, "eps": 1e-7}),
    "adamw": ("AdamW", {"lr": 1e-3, "eps": 1e-7, "weight_decay": 0.004}),
    "sgd": ("SGD", {"lr": 1e-2}),
    "rmsprop": ("RMSprop", {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7}),
    "adagrad": ("Adagrad", {"lr": 1e-3, "initial_accumulator_value": 0.1}),
    "adadelta": ("Adadelta", {"lr": 1e-3, "rho": 0.95, "eps": 1e-7}),
    "adamax": ("Adamax", {"lr": 1e-3, "eps": 1e-7}),
    "nadam": ("NAdam", {"lr": 1e-3, "eps": 1e-7}),
}


def optimizer_spec(optimizer, learning_rate: Optional[float] = None) -> Dict[str, Any]:
    """JSON spec {"class": torch.optim class name, "kwargs": {...}} of an optimizer given by Keras name,
    torch optimizer instance, or an existing spec."""
    if isinstance(optimizer, dict):
        return optimizer
    if isinstance(optimizer, str):
        key = optimizer.lower()
        if key not in _OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r} is not known; expected one of {sorted(_OPTIMIZERS)} or a "
                             f"torch.optim.Optimizer")
        cls, kw = _OPTIMIZERS[key]
        kw = dict(kw)
        if learning_rate is not None:
            kw["lr"] = float(learning_rate)
        return {"class": cls, "kwargs": kw}
    if isinstance(optimizer, torch.optim.Optimizer):
        kw = {k: v for k, v in optimizer.defaults.items() if isinstance(v, (int, float, bool, tuple, list))}
        return {"class": type(optimizer).__name__, "kwargs": kw}
    raise ValueError(f"optimizer={optimizer!r}: expected a Keras optimizer name (e.g. 'adam') or a "
                     f"torch.optim.Optimizer instance")


class Model(Configurable, nn.Module):
    """Base of Keras-style models (see module docstring). ``forward`` calls ``call`` unless overridden."""

    def __init__(self, name: Optional[str] = None):
        super().__init__()
        self.name = name or type(self).__name__.lower()
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self._optimizer_spec = None
        self._compile_config: Optional[dict] = None
        self._build_spec: Optional[dict] = None
        self.loss_fn = None
        self.metric_fns = []
        self.stop_training = False
        self.history = None

    # -- forward and build -----------------------------------------------------------------------------------
    def call(self, x, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: define call(self, x) or forward(self, x)")

    def forward(self, x, **kwargs):
        return self.call(x, **kwargs)

    def __call__(self, x, *args, **kwargs):
        if self._build_spec is None and torch.is_tensor(x):
            self._build_spec = {"shape": [None] + list(x.shape[1:]), "dtype": str(x.dtype).replace("torch.", "")}
        return super().__call__(x, *args, **kwargs)

    @property
    def built(self) -> bool:
        return self._build_spec is not None

    def build_from_spec(self, spec: dict) -> None:
        """Create lazily-built weights by running a one-sample dummy input of the recorded shape and dtype."""
        shape = [1 if d is None else int(d) for d in spec["shape"]]
        was = self.training
        self.eval()
        with torch.no_grad():
            self(torch.zeros(shape, dtype=getattr(torch, spec["dtype"])))
        self.train(was)
        self.reset_states()
        self._build_spec = dict(spec)

    def build(self, input_shape, dtype: str = "float32") -> None:
        """Build for inputs of ``input_shape`` (batch axis included, None allowed), as ``keras.Model.build``."""
        self.build_from_spec({"shape": [None] + list(input_shape)[1:], "dtype": dtype})

    def reset_states(self) -> None:
        """Reset every stateful recurrent layer."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_states") and hasattr(m, "_states"):
                m.reset_states()

    # -- compile -----------------------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, *, learning_rate: Optional[float] = None,
                clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, **unused):
        """Configure training.

        Args: optimizer (Keras name such as "adam" with Keras defaults, or a torch.optim.Optimizer); loss (Keras
        name, see :mod:`lstmkit.train.losses`, or a callable ``(y_true, y_pred) -> per-sample or scalar loss``);
        metrics (list of names such as "accuracy", "mae", "mse", or callables); learning_rate (overrides the named
        optimizer's default); clipnorm / clipvalue (gradient clipping by global norm / value).
        """
        from lstmkit.train import losses, metrics as M

        self._optimizer_spec = optimizer_spec(optimizer, learning_rate)
        self.optimizer = optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
        self.loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "loss")
        self.loss_fn = losses.get(loss) if loss is not None else None
        self.metric_fns = [M.get(m, loss) for m in (metrics or [])]
        self.clipnorm, self.clipvalue = clipnorm, clipvalue
        self._compile_config = {
            "optimizer": self._optimizer_spec,
            "loss": loss if isinstance(loss, str) else None,
            "metrics": [m for m in (metrics or []) if isinstance(m, str)],
            "clipnorm": clipnorm, "clipvalue": clipvalue,
        }

    def compile_from_config(self, cfg: dict) -> None:
        self.compile(cfg["optimizer"], cfg.get("loss"), cfg.get("metrics") or None,
                     clipnorm=cfg.get("clipnorm"), clipvalue=cfg.get("clipvalue"))

    def _make_optimizer(self) -> Optional[torch.optim.Optimizer]:
        """The optimizer, created from the compile spec once the weights exist."""
        if self.optimizer is None and self._optimizer_spec is not None:
            spec = self._optimizer_spec
            cls = getattr(torch.optim, spec["class"])
            params = [p for p in self.parameters() if p.requires_grad]
            if not params:
                return None
            self.optimizer = cls(params, **spec["kwargs"])
        return self.optimizer

    # -- training API (lstmkit.train does the work) -----------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0, **kwargs):
        """Train; returns a History whose ``.history`` maps 'loss', metric names and 'val_*' to per-epoch lists.
        See :func:`lstmkit.train.fit` for every argument."""
        from lstmkit.train.loop import fit
        return fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                   validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
                   class_weight=class_weight, sample_weight=sample_weight, initial_epoch=initial_epoch, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, return_dict=False,
                 **kwargs):
        """Loss (and metrics) on (x, y): a float, a list [loss, *metrics], or a dict with return_dict=True."""
        from lstmkit.train.loop import evaluate
        return evaluate(self, x, y, batch_size=batch_size, verbose=verbose, sample_weight=sample_weight,
                        return_dict=return_dict)

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        """Outputs for ``x`` as a numpy array, in inference mode, batch by batch."""
        from lstmkit.train.loop import predict
        return predict(self, x, batch_size=batch_size, verbose=verbose)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        from lstmkit.train.loop import train_on_batch
        return train_on_batch(self, x, y, sample_weight=sample_weight, class_weight=class_weight,
                              return_dict=return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        return self.evaluate(x, y, batch_size=len(x), verbose=0, sample_weight=sample_weight,
                             return_dict=return_dict)

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=len(x), verbose=0)

    # -- inspection and persistence ----------------------------------------------------------------------------
    def count_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def summary(self, print_fn=print) -> None:
        """Print layers with output shapes and parameter counts, then totals (as keras.Model.summary)."""
        from lstmkit.models.summary import summary_lines
        for line in summary_lines(self):
            print_fn(line)

    def save(self, path, include_optimizer: bool = True, metadata: Optional[dict] = None):
        """Save to directory ``path`` (see :func:`lstmkit.models.save_model`)."""
        from lstmkit.models.saving import save_model
        return save_model(self, path, include_optimizer=include_optimizer, metadata=metadata)

    def save_weights(self, path) -> None:
        """Weights only, as one checksummed safetensors file, written atomically."""
        from lstmkit.models.saving import save_weights_file
        save_weights_file(self, path)

    def load_weights(self, path, strict: bool = True) -> None:
        """Load weights from a :meth:`save_weights` file or a :meth:`save` directory into this (built) model;
        ModelFileError naming the file if it is missing, truncated, corrupted or does not fit."""
        from lstmkit.models.saving import load_weights_file
        load_weights_file(self, path, strict=strict)

    def get_weights(self):
        return [p.detach().cpu().numpy() for p in self.state_dict().values()]
