"""Fixtures for the core-layer tests: reference backend by default, a `backend` fixture over the available backends."""
import pytest

from lstmkit import backend as lk_backend

from core_helpers import BACKENDS


@pytest.fixture(autouse=True)
def _reference_backend(monkeypatch):
    """Force the reference backend (LSTMKIT_BACKEND overrides every module's backend=) unless a test resets it."""
    monkeypatch.setenv(lk_backend.ENV_VAR, "reference")
    yield


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Each available backend in turn ("native" only when built); forced through the environment as well."""
    monkeypatch.setenv(lk_backend.ENV_VAR, request.param)
    return request.param
