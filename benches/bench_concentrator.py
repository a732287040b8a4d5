"""Concentrator benchmarks: host CPU per read through the asyncio concentrator.

* concentrator-aio: one collection round (dimension tables, BT23 registers, a
  day of load profile, the history log, BP05 on both) of ``N_METERS``
  simulated meters served as CN/IP on loopback by ``osgp simulate`` in
  another process, through :func:`osgp.concentrator.aio.run_collection` into
  a SQLite store.  A *read* is one completed request/response exchange on
  the medium; the figures are this process's CPU time (``process_time``: the
  event loop, sessions, router, arbiter, engine, decoding and the store) per
  exchange and per meter collection.  Goal: <= 50 us per exchange.
  Baseline: the bare PLC session transaction (``read`` -> ``poll_transmit``
  -> ``receive_data``, as in bench_session.py) timed the same way; the ratio
  is reported in ``extra_info``.

    python -m pytest benches/bench_concentrator.py --benchmark-only -s
"""

from __future__ import annotations

import asyncio
import time

import pytest

from osgp.concentrator import KeyVault, Store
from osgp.concentrator.aio import commission, plc_profile, run_collection
from osgp.concentrator.engine import StatusPolicy
from osgp.link import lon
from osgp.link.carrier import PlcCarrier, PlcDeviceCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.session import ClientSession, DeviceSession
from tests.simulate_cnip import simulate_cnip

N_METERS = 200
DATA = bytes(range(44))


@pytest.fixture(scope="module")
def served():
    with simulate_cnip(N_METERS, "--speed", "1", "--start-offset", "86400") as fleet:
        yield fleet


def _collect(url, meters, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'bench.db'}", vault=KeyVault(bytes(32)))
    commission(store, "s1", meters)
    channels = []
    t0 = time.process_time()
    rounds = asyncio.run(
        run_collection(
            store,
            {"s1": url},
            profile=plc_profile(200),
            max_outstanding=16,
            policy=StatusPolicy(attempts=4, retry_s=0.2),
            on_engine=lambda eng: channels.extend({m.channel for m in eng.meters.values()}),
        )
    )
    cpu = time.process_time() - t0
    store.close()
    return rounds[0], cpu, sum(ch.router.delivered for ch in channels)


def _bare_transaction_cpu(n=20_000):
    """Process time of one bare PLC legacy session transaction."""
    addr = lon.SubnetNode(3, 17)
    key = bytes.fromhex("dfdfdfdfdfdfdfdfdfdfdfdf")
    c = ClientSession(PlcCarrier(addr), LegacySuite(key, PLC_ENVELOPE), seq=100)
    d = DeviceSession(
        PlcDeviceCarrier([addr]),
        LegacySuite(key, PLC_ENVELOPE),
        tables={0x17: bytearray(DATA)},
        seq=100,
    )
    c.read(0x17, 0, 44)
    req = c.poll_transmit(0.0)
    d.receive_data(req)
    resp = d.poll_transmit()
    c.receive_data(resp)
    t0 = time.process_time()
    for i in range(n):
        c.counter.last = 100
        c.carrier._trans = 0
        op = c.read(0x17, 0, 44)
        c.poll_transmit(float(i + 1))
        c.receive_data(resp, float(i + 1))
        assert op.result == DATA
    return (time.process_time() - t0) / n


@pytest.mark.benchmark(group="concentrator-aio")
def test_concentrator_aio_collection(benchmark, served, tmp_path):
    url, meters = served
    r, cpu, exchanges = benchmark.pedantic(
        _collect, (url, meters, tmp_path), rounds=1, iterations=1
    )
    assert r.ok == N_METERS and r.stored["intervals"] >= N_METERS * 95 * 2  # about a day each
    bare = _bare_transaction_cpu()
    per_exchange = cpu / exchanges
    info = {
        "meters": N_METERS,
        "exchanges": exchanges,
        "cpu_s": round(cpu, 3),
        "cpu_per_exchange_us": round(per_exchange * 1e6, 1),
        "cpu_per_meter_ms": round(cpu / N_METERS * 1e3, 2),
        "bare_transaction_us": round(bare * 1e6, 2),
        "ratio_to_bare": round(per_exchange / bare, 1),
    }
    benchmark.extra_info.update(info)
    print("\nconcentrator-aio", info)
