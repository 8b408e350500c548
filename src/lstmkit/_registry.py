"""Registry of serializable classes (layers, models) so a JSON config can name a class and rebuild it."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Type

_REGISTRY: Dict[str, type] = {}


def register(name_or_cls=None) -> Callable:
    """Register a class under a name (default: its ``__name__``) so ``load_model`` can rebuild it from JSON.

    Usable bare or with a name::

        @register
        class MyModel(lstmkit.models.Model): ...

        @register("forecast.LSTMForecaster")
        class LSTMForecaster(lstmkit.models.Model): ...

    A class registered for saving must provide ``get_config() -> dict`` (JSON-able) whose items are its
    constructor keyword arguments, or override ``from_config``.
    """
    def deco(cls: Type, name: Optional[str] = None) -> Type:
        key = name or cls.__name__
        prev = _REGISTRY.get(key)
        if prev is not None and prev is not cls and (prev.__module__, prev.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"register: name {key!r} is already taken by {prev.__module__}.{prev.__qualname__}; "
                             f"pass another name, e.g. @register('{cls.__module__}.{cls.__name__}')")
        _REGISTRY[key] = cls
        cls._registered_name = key
        return cls

    if isinstance(name_or_cls, type):
        return deco(name_or_cls)
    return lambda cls: deco(cls, name_or_cls)


def get_class(name: str) -> type:
    """The class registered under ``name``; ValueError listing what is known otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown class name {name!r}: not registered with lstmkit.models.register "
                         f"(import the module that defines it first); known: {sorted(_REGISTRY)}") from None


def registered_name(obj) -> str:
    """The name ``obj``'s class is registered under; ValueError if it is not registered."""
    cls = obj if isinstance(obj, type) else type(obj)
    name = cls.__dict__.get("_registered_name")
    if name is None or _REGISTRY.get(name) is not cls:
        raise ValueError(f"{cls.__module__}.{cls.__qualname__} is not registered for saving: decorate it with "
                         f"@lstmkit.models.register and give it get_config()")
    return name


# -- automatic get_config from constructor arguments ---------------------------------------------------------
import inspect  # noqa: E402


class Configurable:
    """Mixin: records the constructor arguments so ``get_config()`` works without hand-written code.

    ``get_config()`` returns the arguments the object was built with (nested layers serialized as
    ``{"class_name", "config"}``), ``from_config(cfg)`` calls the constructor with them. Override both when the
    constructor takes something that is not JSON-able and not a registered object.
    """

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(arguments)))  # self
            params = inspect.signature(cls.__init__).parameters
            for k, p in list(params.items()):
                if p.kind is inspect.Parameter.VAR_KEYWORD and k in arguments:
                    arguments.update(arguments.pop(k))
                elif p.kind is inspect.Parameter.VAR_POSITIONAL and k in arguments:
                    arguments[k] = list(arguments[k])
        except TypeError:
            arguments = None  # the constructor will raise its own clear error
        object.__setattr__(obj, "_init_config", arguments)
        return obj

    def get_config(self) -> dict:
        """Constructor arguments as JSON-able data (see class doc)."""
        if getattr(self, "_init_config", None) is None:
            raise ValueError(f"{type(self).__name__}.get_config: constructor arguments were not recorded")
        return {k: serialize(v) for k, v in self._init_config.items()}

    @classmethod
    def from_config(cls, config: dict):
        """Build an instance from :meth:`get_config` output."""
        return cls(**{k: deserialize(v) for k, v in config.items()})


def serialize(value):
    """JSON-able form of a constructor argument: registered objects as {"class_name", "config"}, sequences as
    lists, numpy scalars as Python numbers; anything else raises ValueError naming its type."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if hasattr(value, "get_config") and getattr(type(value), "_registered_name", None):
        return {"__object__": registered_name(value), "config": value.get_config()}
    if isinstance(value, (list, tuple)):
        return [serialize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): serialize(v) for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    raise ValueError(f"cannot serialize constructor argument of type {type(value).__name__}; override "
                     f"get_config/from_config or pass JSON-able values")


def deserialize(value):
    """Inverse of :func:`serialize`."""
    if isinstance(value, dict) and "__object__" in value:
        cls = get_class(value["__object__"])
        return cls.from_config(value["config"])
    if isinstance(value, list):
        return [deserialize(v) for v in value]
    if isinstance(value, dict):
        return {k: deserialize(v) for k, v in value.items()}
    return value
