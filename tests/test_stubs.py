"""The hand-written .pyi stubs match the compiled modules (conventions 3)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from osgp import _backend

FAMILIES = ["legacy", "tables", "aes", "frames"]


@pytest.mark.parametrize("family", FAMILIES)
def test_stub_matches_native_module(family):
    if _backend.native_module(family) is None:
        pytest.skip("native extensions disabled or not built")
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", f"osgp._native.{family}", "--ignore-missing-stub"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("family", FAMILIES)
def test_twin_has_every_public_name(family):
    """The twin offers every public name of the stub, with the same kind."""
    import ast
    from importlib import resources

    stub = resources.files("osgp._native").joinpath(f"{family}.pyi").read_text()
    names = {
        node.name
        for node in ast.parse(stub).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }
    twin = _backend.reference(family)
    missing = sorted(n for n in names if not hasattr(twin, n))
    assert not missing, f"twin osgp._reference.{family} lacks {missing}"
