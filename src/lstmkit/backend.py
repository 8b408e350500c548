"""Backend selection: "auto" | "native" | "reference", with one warning when auto falls back.

The reference backend is the pure-PyTorch loop over the step functions in ``lstmkit.functional``;
it always exists and is the spec. The native backend is the fused C++ engine in ``lstmkit._native``.

Resolution order for a module built with ``backend="auto"``:
1. the environment variable ``LSTMKIT_BACKEND`` ("native" or "reference") if set;
2. the process-wide default set with :func:`set_default`;
3. native when the compiled engine imports, otherwise reference (warning once, saying why).

Forcing ``"native"`` (argument or environment) when the engine is unavailable raises ``RuntimeError``.
"""
from __future__ import annotations

import os
import warnings

BACKENDS = ("auto", "native", "reference")
ENV_VAR = "LSTMKIT_BACKEND"

_default = "auto"
_warned = False
_native_checked = False
_native_module = None
_native_error: str | None = None


def validate(name: str) -> str:
    """Return ``name`` if it is a known backend, else raise ValueError naming it."""
    if name not in BACKENDS:
        raise ValueError(f"backend={name!r} is not a known backend; expected one of {BACKENDS}")
    return name


def set_default(name: str) -> None:
    """Set the process-wide backend used by modules built with ``backend="auto"``."""
    global _default
    _default = validate(name)


def get_default() -> str:
    """The process-wide default backend ("auto" unless changed with :func:`set_default`)."""
    return _default


def native_module():
    """The compiled engine module, or None when it is not available (see :func:`native_error`)."""
    global _native_checked, _native_module, _native_error
    if not _native_checked:
        _native_checked = True
        try:
            from lstmkit._native import ops  # noqa: WPS433 (import on first use keeps startup light)

            _native_module = ops if ops.available() else None
            if _native_module is None:
                _native_error = ops.unavailable_reason()
        except Exception as exc:  # ImportError, missing symbols, ABI mismatch...
            _native_error = f"{type(exc).__name__}: {exc}"
    return _native_module


def native_available() -> bool:
    """True when the compiled native engine can be used in this process."""
    return native_module() is not None


def native_error() -> str | None:
    """Why the native engine is unavailable (None when it is available)."""
    native_module()
    return _native_error


def release_memory() -> int:
    """Give back to the system the memory the native engine keeps for reuse (its pool of large buffers).

    The engine keeps freed multi-megabyte tensors (at most ``LSTMKIT_POOL_MB``, default 2048) so that repeated
    calls do not pay fresh page faults; call this after training to shrink the process. Returns the bytes
    released (0 when the engine is not built).
    """
    ops = native_module()
    return int(ops._C.release_pool()) if ops is not None else 0


def resolve(requested: str = "auto") -> str:
    """Turn a requested backend into the one to run: "native" or "reference".

    Args:
        requested: "auto", "native" or "reference" (the module's ``backend=`` argument).

    Raises:
        ValueError: unknown backend name (argument or ``LSTMKIT_BACKEND``).
        RuntimeError: "native" was forced but the engine is unavailable.
    """
    global _warned
    validate(requested)
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env:
        if env not in BACKENDS:
            raise ValueError(f"{ENV_VAR}={env!r} is not a known backend; expected one of {BACKENDS}")
        if env != "auto":
            requested = env
    if requested == "auto":
        requested = _default
    if requested == "reference":
        return "reference"
    if requested == "native":
        if not native_available():
            raise RuntimeError(f"backend='native' was requested but the native engine is unavailable: "
                               f"{native_error()}")
        return "native"
    # auto
    if native_available():
        return "native"
    if not _warned:
        _warned = True
        warnings.warn(f"lstmkit: native engine unavailable ({native_error()}); using the reference "
                      f"backend", RuntimeWarning, stacklevel=3)
    return "reference"
