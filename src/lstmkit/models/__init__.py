"""Keras-style models: Sequential, the Model base for subclassing, and pickle-free save/load."""
from lstmkit._registry import get_class, register  # noqa: F401
from lstmkit.models.model import Model  # noqa: F401
from lstmkit.models.saving import ModelFileError, load_model, read_config, save_model  # noqa: F401
from lstmkit.models.sequential import Sequential  # noqa: F401
from lstmkit.models.keras_import import from_keras  # noqa: F401
