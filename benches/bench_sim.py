"""The simulated meter: one table read served through DeviceSession.receive_data
+ poll_transmit, against the same session serving a plain bytearray (the
floor: what the session itself costs), and the memory of an idle meter.
Group "sim-read": each call serves BATCH MEP reads of BT23 (64 bytes), so a
read costs the reported time / BATCH.  Group "sim-memory": building one meter;
``extra_info`` carries the tracemalloc figure per idle meter."""

from __future__ import annotations

import tracemalloc

import pytest

from osgp.link.carrier import MepCarrier, MepDeviceCarrier
from osgp.security.suite import MEP_ENVELOPE, LegacySuite
from osgp.session import ClientSession, DeviceSession
from osgp.sim import SimMeter

KEY = bytes([1]) * 16  # default MEP MAK (MEP guide p.14)
BATCH = 200
NOW = 86400.0 + 7.0


def _meter():
    return SimMeter(
        "BENCH00001", seed=7, links=[(MepDeviceCarrier(), LegacySuite(KEY, MEP_ENVELOPE))]
    )


def _frames(table):
    """BATCH read requests with sequence numbers 1..BATCH (MEP p.9-11)."""
    m = _meter()
    c = ClientSession(MepCarrier(), LegacySuite(KEY, MEP_ENVELOPE))
    out = []
    for _ in range(BATCH):
        c.read(table)
        f = c.poll_transmit(NOW + len(out))
        out.append(f)
        m.ports[0].receive_data(f, NOW)
        c.receive_data(m.ports[0].poll_transmit(NOW), NOW + len(out))
    return out


FRAMES = _frames(23)


def _serve(session, frames):
    for f in frames:
        session.receive_data(f, NOW)
        session.poll_transmit(NOW)
    return session


def _fresh_meter():
    m = _meter()
    m.advance(NOW)
    m.image(23)  # rendered once; every read in the batch finds it current
    return (m.ports[0].session, FRAMES), {}


def _fresh_plain():
    bt23 = bytearray(_meter_image())
    d = DeviceSession(MepDeviceCarrier(), LegacySuite(KEY, MEP_ENVELOPE), tables={23: bt23})
    return (d, FRAMES), {}


def _meter_image():
    m = _meter()
    m.advance(NOW)
    return m.image(23)


@pytest.mark.benchmark(group="sim-read")
def test_read_simulated_meter(benchmark):
    s = benchmark.pedantic(_serve, setup=_fresh_meter, rounds=30)
    assert s.window.current == BATCH and not s.drops
    benchmark.extra_info["reads_per_call"] = BATCH


@pytest.mark.benchmark(group="sim-read")
def test_read_plain_device_session(benchmark):
    s = benchmark.pedantic(_serve, setup=_fresh_plain, rounds=30)
    assert s.window.current == BATCH and not s.drops
    benchmark.extra_info["reads_per_call"] = BATCH


def _serve_live(port, frames):
    """Each read 1 s of virtual time after the last: the meter advances and
    re-encodes BT23 for every read (the worst case of lazy refresh)."""
    for i, f in enumerate(frames):
        port.receive_data(f, NOW + i)
        port.poll_transmit(NOW + i)
    return port


def _fresh_port():
    m = _meter()
    m.advance(NOW - 1)
    return (m.ports[0], FRAMES), {}


@pytest.mark.benchmark(group="sim-read")
def test_read_simulated_meter_advancing(benchmark):
    p = benchmark.pedantic(_serve_live, setup=_fresh_port, rounds=10)
    assert p.session.window.current == BATCH
    benchmark.extra_info["reads_per_call"] = BATCH


def idle_bytes(n=200, days=3.0):
    """tracemalloc bytes per meter for ``n`` meters with one MEP port each,
    run ``days`` of virtual time (a full load-profile ring) and never read."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    meters = [
        SimMeter(
            f"IDLE{i:06d}", seed=i, links=[(MepDeviceCarrier(), LegacySuite(KEY, MEP_ENVELOPE))]
        )
        for i in range(n)
    ]
    for m in meters:
        m.advance(days * 86400)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / n, meters


@pytest.mark.benchmark(group="sim-memory")
def test_idle_meter_memory(benchmark):
    per_meter, meters = idle_bytes()
    benchmark.extra_info["bytes_per_idle_meter"] = round(per_meter)
    m = benchmark(_meter)
    assert m.registers()["active"] == 0 and meters[0].registers()["active"] > 0
    assert per_meter < 20 * 1024
