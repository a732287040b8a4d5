"""The simulator's receive path under random and mutated frames on every link
(MEP, optical C12.18, PLC/LonTalk): nothing raises out of a port's
``receive_data``/``poll_transmit`` and the meter keeps answering a fresh
client.  The harness is ``fuzz/fuzz_sim.py`` (its mutation loop runs long
there; here it runs briefly, with a Hypothesis search beside it)."""

from __future__ import annotations

import importlib
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osgp.link import optical as o

FUZZ = os.path.join(os.path.dirname(__file__), "..", "fuzz")
sys.path.insert(0, FUZZ)
try:
    F = importlib.import_module("fuzz_sim")
finally:
    sys.path.remove(FUZZ)

SEEDS = {
    link: [F.Sealer(link, F.make_meter(link))(a) for a in F.request_apdus(link)] for link in F.LINKS
}


def _frames(link):
    seed = st.sampled_from(SEEDS[link])
    flipped = st.tuples(seed, st.integers(0, 1 << 16), st.integers(0, 7)).map(
        lambda t: (
            t[0][: t[1] % len(t[0])]
            + bytes([t[0][t[1] % len(t[0])] ^ 1 << t[2]])
            + t[0][t[1] % len(t[0]) + 1 :]
        )
    )
    cut = st.tuples(seed, st.integers(0, 1 << 16)).map(lambda t: t[0][: t[1] % len(t[0])])
    return st.lists(st.one_of(st.binary(max_size=300), seed, flipped, cut), max_size=8)


@pytest.mark.parametrize("link", F.LINKS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_and_damaged_frames_leave_the_meter_answering(link, data):
    meter = F.make_meter(link)
    now = 10.0
    gaps = st.sampled_from([0.0, 0.01, 0.3, 2.0, 30.0])
    for frame in data.draw(_frames(link)):
        now += data.draw(gaps)
        F.feed(meter, frame, now)  # raises nothing
    now += 120.0
    meter.advance(now)
    assert F.answers(meter, link, now), F.last_failure


def test_mutation_loop_runs_clean():
    n, checks = F.run_loop(1500, seed=3, check=250)
    assert (n, checks) == (1500, 18)


def test_a_partial_mep_frame_times_out():
    # found by the loop: a truncated frame (length 48, 4 bytes sent) used to
    # swallow every later request; the inter-byte rule (MEP guide p.20) drops it
    meter = F.make_meter("mep")
    assert F.feed(meter, bytes.fromhex("003080003000"), 1.0) == []
    assert F.answers(meter, "mep", 1.2)
    assert meter.ports[0].session.carrier.drops["partial frame timed out"] == 1


def test_an_abandoned_optical_session_times_out():
    # found by the loop: a session left open (a response never ACKed, the
    # peer's last toggle remembered) made a new client's identify look like a
    # duplicate; the C12.18 channel traffic timeout (6 s) ends it
    meter = F.make_meter("optical")
    seal = F.Sealer("optical", meter)
    out = F.feed(meter, seal(o.Identify().encode()), 1.0)
    assert out[0] == bytes([o.ACK]) and len(out) == 2  # ACK + identify response, never ACKed
    assert F.answers(meter, "optical", 8.0)
    assert meter.ports[0].session.carrier.drops["session timed out"] == 1
