"""Binding of the compiled engine (placeholder until the kernels land: reports unavailable)."""


def available() -> bool:
    return False


def unavailable_reason() -> str:
    return "the native engine has not been built into this version"
