"""lstmkit: LSTM networks for Python, complete and fast.

Subpackages: ``lstmkit.functional`` (the reference math), ``lstmkit.nn`` (torch-style modules),
``lstmkit.layers`` / ``lstmkit.models`` (Keras-style), ``lstmkit.data``, ``lstmkit.tasks`` and the
``lstmkit`` command line.
"""
__version__ = "0.1.0"

from lstmkit import backend  # noqa: E402,F401
