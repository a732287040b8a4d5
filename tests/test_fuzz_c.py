"""Support files of the C libFuzzer harnesses (fuzz/c/): the compiled table
programs they embed are those of the current schema compiler, and every
harness gets a seed corpus.  The harnesses themselves run in .ci/run."""

from __future__ import annotations

import importlib.util
import os

C_DIR = os.path.join(os.path.dirname(__file__), "..", "fuzz", "c")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"fuzz_c_{name}", os.path.join(C_DIR, f"{name}.py")
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_table_programs_header_is_current():
    with open(os.path.join(C_DIR, "table_programs.h"), encoding="utf-8") as fh:
        committed = fh.read()
    assert committed == _load("gen_programs").render(), "run fuzz/c/gen_programs.py"


def test_every_harness_gets_seeds(tmp_path):
    assert _load("make_seeds").main(["make_seeds", str(tmp_path)]) == 0
    harnesses = sorted(
        f[:-2] for f in os.listdir(C_DIR) if f.startswith("fuzz_") and f.endswith(".c")
    )
    assert len(harnesses) == 8
    for name in harnesses:
        seeds = list((tmp_path / name).iterdir())
        assert seeds, name
        assert all(s.stat().st_size > 0 for s in seeds)
