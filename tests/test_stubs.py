"""The hand-written .pyi stubs match the compiled modules (docs/conventions.md §3)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from osgp import _backend

FAMILIES = ["legacy", "tables", "aes", "frames", "capture"]


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


def test_mypy_sees_the_crypto_signatures(tmp_path):
    """osgp.crypto re-exports the kernels with their stub signatures, not Any:
    mypy reveals them and rejects a wrong argument type."""
    pytest.importorskip("mypy")
    src = tmp_path / "use_crypto.py"
    src.write_text(
        "from osgp import crypto\n"
        "reveal_type(crypto.oma_digest)\n"
        "reveal_type(crypto.aes_encrypt_block)\n"
        "reveal_type(crypto.AesKey(bytes(16)).cmac_kdf)\n"
        "crypto.oma_digest(bytes(16), 5)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "c"),
         "--config-file", os.devnull, "--follow-imports=silent", "--no-error-summary", str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    got = [line.split(": ", 1)[1] for line in proc.stdout.splitlines()]
    buf = "typing_extensions.Buffer"
    assert got == [
        f'note: Revealed type is "def (key: {buf}, data: {buf}) -> bytes"',
        f'note: Revealed type is "def (key: {buf} | osgp._native.aes.AesKey, block: {buf}) '
        '-> bytes"',
        f'note: Revealed type is "def (data: {buf}, length: int) -> bytes"',
        'error: Argument 2 to "oma_digest" has incompatible type "int"; expected "Buffer"  '
        "[arg-type]",
    ], proc.stdout + proc.stderr
