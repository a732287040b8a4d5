"""The capture family's range kernels (gather, ranges_equal), native and
twin, against plain slicing; ranges outside the buffer are clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest

from osgp import _backend
from osgp.errors import ConfigurationError

IMPLS = [m for m in (_backend.native_module("capture"), _backend.reference("capture")) if m]


@pytest.mark.parametrize("mod", IMPLS, ids=lambda m: m.__name__)
def test_gather_and_equal_match_slicing(mod):
    rng = random.Random(99)
    data = bytes(rng.randrange(4) for _ in range(5000))  # few symbols: many equal ranges
    for _ in range(50):
        n = rng.randrange(0, 40)
        ln = [rng.randrange(0, 6) for _ in range(n)]
        a = [rng.randrange(0, len(data) - x + 1) for x in ln]
        b = [rng.randrange(0, len(data) - x + 1) for x in ln]
        out, off = mod.gather(data, np.array(a), np.array(ln))
        assert out.tobytes() == b"".join(data[s : s + k] for s, k in zip(a, ln))
        assert off.tolist() == [sum(ln[:i]) for i in range(n + 1)]
        eq = mod.ranges_equal(data, np.array(a), np.array(b), np.array(ln))
        assert eq.tolist() == [data[x : x + k] == data[y : y + k] for x, y, k in zip(a, b, ln)]


@pytest.mark.parametrize("mod", IMPLS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("start, length", [(-1, 2), (9, 2), (0, 11), (3, -1)])
def test_a_range_outside_the_buffer_is_a_configuration_error(mod, start, length):
    data = bytes(10)
    with pytest.raises(ConfigurationError, match="outside"):
        mod.gather(data, np.array([0, start]), np.array([1, length]))
    with pytest.raises(ConfigurationError, match="outside"):
        mod.ranges_equal(data, np.array([start]), np.array([0]), np.array([length]))
    with pytest.raises(ConfigurationError, match="one size"):
        mod.gather(data, np.array([0, 1]), np.array([1]))
