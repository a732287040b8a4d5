"""Shared fixtures: every kernel test runs on each available implementation
(conventions 4): the compiled module and its pure-Python twin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from osgp import _backend

VECTORS = Path(__file__).parent / "vectors"
NO_EXTENSIONS = _backend.FORCED_REFERENCE


def load_vectors(name: str):
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)


def implementations(family: str):
    """pytest params: ("native", module) when compiled and enabled, ("reference", module)."""
    params = []
    native = _backend.native_module(family)
    if native is not None:
        params.append(pytest.param(native, id="native"))
    params.append(pytest.param(_backend.reference(family), id="reference"))
    return params


# Kernel modules are stateless, so the fixtures are session scoped (which also
# lets hypothesis tests take them).
@pytest.fixture(scope="session", params=implementations("legacy"))
def legacy(request):
    return request.param


@pytest.fixture(scope="session")
def legacy_native():
    mod = _backend.native_module("legacy")
    if mod is None:
        pytest.skip("native extensions disabled or not built")
    return mod


@pytest.fixture(scope="session")
def legacy_ref():
    return _backend.reference("legacy")


def pytest_report_header(config):
    import osgp

    mode = "native" if osgp.native else "reference (pure Python)"
    return f"osgp kernels: {mode}; OSGP_NO_EXTENSIONS={os.environ.get('OSGP_NO_EXTENSIONS', '')!r}"


# ==== tables / load profile fixtures ====
@pytest.fixture(params=implementations("tables"))
def tables_kernel(request):
    """The table-program / load-profile kernel: native and twin."""
    return request.param


@pytest.fixture(params=["native", "reference"])
def tables_backend(request, monkeypatch):
    """Run osgp.tables / osgp.loadprofile on one backend (skips native when not built)."""
    import osgp.loadprofile as lp
    import osgp.tables as tb

    mod = (
        _backend.native_module("tables")
        if request.param == "native"
        else _backend.reference("tables")
    )
    if mod is None:
        pytest.skip("native extensions disabled or not built")
    monkeypatch.setattr(tb, "_kernel", mod)
    monkeypatch.setattr(lp, "_kernel", mod)
    return request.param


# ==== end tables / load profile fixtures ====


# ==== AES family (osgp._native.aes / osgp._reference.aes) ====
@pytest.fixture(params=implementations("aes"))
def aes(request):
    return request.param


@pytest.fixture
def aes_native():
    mod = _backend.native_module("aes")
    if mod is None:
        pytest.skip("native extensions disabled or not built")
    return mod


@pytest.fixture
def aes_ref():
    return _backend.reference("aes")


# ==== end AES ====
