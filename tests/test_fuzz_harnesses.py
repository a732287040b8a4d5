"""The atheris harnesses' targets, run on seeds and random bytes (no atheris needed)."""

from __future__ import annotations

import importlib
import os
import random
import sys

import pytest

FUZZ = os.path.join(os.path.dirname(__file__), "..", "fuzz")
HARNESSES = [
    "fuzz_mep",
    "fuzz_optical",
    "fuzz_lon",
    "fuzz_services",
    "fuzz_frames",
    "fuzz_atm",
    "fuzz_capture",
    "fuzz_sim",
]
SEEDS = [
    b"",
    bytes.fromhex("00143f0017000000002c77635b9113db85a135a0575e"),
    bytes.fromhex("000d0c77635b9035863c1df5b91482"),
    bytes.fromhex("ee00200000083f0017000000000803f2"),
    bytes.fromhex("19028511034f0330"),
    bytes.fromhex("4d82290a234c573004a1b2c3d4e5300034"),
    bytes.fromhex("110000020008003f0017000000002c0200"),
    bytes.fromhex("1801010000ffff1000c80101616263"),  # ATM DISCOVER
    bytes.fromhex("1b01010001313233343536020508028400460a04b0000453494d31"),  # ATM REPORT
]


@pytest.mark.parametrize("name", HARNESSES)
def test_harness_targets(name):
    sys.path.insert(0, FUZZ)
    try:
        mod = importlib.import_module(name)
    finally:
        sys.path.remove(FUZZ)
    rng = random.Random(name)
    inputs = list(SEEDS)
    for s in SEEDS:
        for _ in range(20):
            b = bytearray(s)
            if b:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            inputs.append(bytes(b[: rng.randrange(len(b) + 1)]) if rng.random() < 0.3 else bytes(b))
    inputs += [bytes(rng.randrange(256) for _ in range(rng.randrange(64))) for _ in range(200)]
    for data in inputs:
        mod.test_one_input(data)
