"""The meter's regular walk a span at a time (osgp.sim.walk) against the
one-end-at-a-time code it stands for: the load model's vector forms against
its scalar ones, and whole meters advanced both ways, table by table."""

from __future__ import annotations

import numpy as np
import pytest

from osgp.sim.meter import _RENDER, LoadProfileConfig, SimMeter
from osgp.sim.model import LoadModel, MeterClock, splitmix64, splitmix64_many

TABLES = sorted(_RENDER)  # every rendered table: registers, demand, self reads, load profile, logs


class OneByOne(SimMeter):
    """A meter that takes the general path for every end (``SimMeter._fire``
    after ``SimMeter._events``), never the span-at-a-time walk."""

    def _irregular(self) -> bool:
        return True


def test_splitmix64_many_is_splitmix64():
    xs = [0, 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15, 12345678901234567]
    got = splitmix64_many(np.array(xs, dtype=np.uint64))
    assert [int(x) for x in got] == [splitmix64(x) for x in xs]


@pytest.mark.parametrize("seed", [0, 7, 2**64 - 3])
def test_slot_powers_are_slot_power(seed):
    model = LoadModel(seed)
    ks = np.arange(1_962_000, 1_962_000 + 96 * 9, dtype=np.int64)  # nine days, a week boundary
    p, q = model.slot_powers(ks)
    assert [(int(a), int(b)) for a, b in zip(p, q)] == [model.slot_power(int(k)) for k in ks]


def test_cumulative_many_is_cumulative_and_moves_the_cursor_alike():
    rng = np.random.default_rng(5)
    origin = 1_767_225_600.0
    ts = origin + np.cumsum(rng.uniform(0.0, 2000.0, 300))
    ts[10] = ts[9]  # an instant asked twice
    vec, one = LoadModel(42, origin), LoadModel(42, origin)
    got = vec.cumulative_many(ts)
    want = [one.cumulative(float(t)) for t in ts]
    assert [tuple(float(x) for x in row) for row in got] == want
    assert (vec._k, vec._c) == (one._k, one._c)
    later = float(ts[-1]) + 5000.5
    assert vec.cumulative(later) == one.cumulative(later)
    behind = ts[:5]  # behind the cursor: summed afresh, as the scalar path does
    assert [tuple(r) for r in vec.cumulative_many(behind)] == [
        one.cumulative(float(t)) for t in behind
    ]


def test_virtual_many_is_virtual():
    clock = MeterClock(1_767_225_600.0, -37)
    clock.set(1234.5, 1_767_300_000.0)
    ms = 1_767_300_000.0 + 900.0 * np.arange(200)
    assert [float(x) for x in clock.virtual_many(ms)] == [clock.virtual(float(m)) for m in ms]


def _state(m):
    return (
        {t: m.image(t) for t in TABLES},
        m._lp_prev,
        m._lp_next,
        m._dmd_next,
        m._dmd_start,
        m._dmd_j0,
        m._sr_next,
        list(m._max),
        list(m._max_t),
        m._stamp,
        m.registers(),
    )


@pytest.mark.parametrize(
    "lp", [LoadProfileConfig(), LoadProfileConfig(channels=2, interval_min=5, intervals=30)]
)
def test_span_walk_equals_one_end_at_a_time(lp):
    rng = np.random.default_rng(11)
    span, one = SimMeter("WALK0001", seed=9, lp=lp), OneByOne("WALK0001", seed=9, lp=lp)
    t = 0.0
    for step in range(60):
        # spans of a few ends (walked one by one) and of many (in one pass)
        t += float(rng.choice([1.0, 37.5, 900.0, 3 * 3600.0, 6 * 3600.0, 86400.0 + 0.25]))
        for m in (span, one):
            m.advance(t)
            if step == 20:
                m.power_fail(t)
            if step == 24:
                m.power_restore(t)
            if step == 30:  # forward: the ends jumped over close at once
                m.set_clock(t, m.clock.meter(t) + 3 * 3600.0 + 10.0)
            if step == 40:
                m.demand_reset()
            if step == 45:  # back by two hours
                m.set_clock(t, m.clock.meter(t) - 7200.0)
        assert _state(span) == _state(one), step
    assert span.registers()["active"] > 0 and span._sr_seq == one._sr_seq > 0


def test_a_long_idle_span_wraps_the_ring_alike():
    lp = LoadProfileConfig(intervals=8, blocks=3)
    span, one = SimMeter("WALK0002", seed=4, lp=lp), OneByOne("WALK0002", seed=4, lp=lp)
    for m in (span, one):
        m.advance(5 * 86400.0 + 17.0)  # many times the ring, three self reads between
    assert _state(span) == _state(one)
