"""The concentrator on asyncio over CN/IP: simulated meters served on a
loopback UDP socket, read into a store; what the store holds is compared
with what the meters hold, after normal rounds, a lossy link and a collector
killed at random moments."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from osgp import loadprofile, tables
from osgp.concentrator import KeyVault, Store
from osgp.concentrator.aio import commission, plc_profile, run_collection
from osgp.concentrator.engine import StatusPolicy
from osgp.sim.serve import CnipMeterServer

from .simulate_cnip import simulate_cnip

MASTER = bytes(range(32))
FAST = plc_profile(100)  # loopback answers in well under a millisecond


def truth(meter):
    """What a meter holds, from its own tables: intervals (ts, channel) ->
    raw value, the entries of its history log read so far, its total log
    count, and its active energy register."""
    img = {t: meter.image(t) for t in (0, 61, 62, 63, 64, 71, 74)}
    lp = loadprofile.decode(img[61], img[62], img[63], img[64], bt00=img[0])
    ts = lp.timestamps.astype("int64")
    intervals = {
        (int(t), ch): int(v)
        for t, row in zip(ts.tolist(), lp.values.tolist())
        for ch, v in enumerate(row)
    }
    head = tables.decode(74, img[74], {"BT00": img[0], "BT71": img[71]})
    unread = head["NBR_UNREAD_ENTRIES"]
    logged = head["LAST_ENTRY_SEQ_NBR"] + 1
    hist = meter.history()
    read = hist[: len(hist) - unread]
    return intervals, read, logged - unread, meter.registers()["active"]


def check_store(store, server, ids):
    """Every meter's readings in the store equal the meter's, each once."""
    with server.lock:
        facts = [truth(m) for m in server.meters]
    for d, (intervals, read, n_read, active) in zip(ids, facts):
        iv = store.intervals(d).to_pydict()
        keys = list(zip([int(t.timestamp()) for t in iv["ts_utc"]], iv["channel"]))
        assert len(set(keys)) == len(keys), "an interval stored twice"
        got = dict(zip(keys, iv["raw"]))
        assert len(got) == len(intervals) > 0
        assert got == intervals
        ev = store.events(d).to_pydict()
        assert len(set(ev["seq"])) == len(ev["seq"]) == n_read, "events lost or doubled"
        # the entries still in the meter's ring are the newest stored, in order
        by_seq = sorted(zip(ev["seq"], ev["ts_utc"], ev["code"], ev["arg"]))
        newest = by_seq[len(by_seq) - len(read) :]
        # every argument byte, trailing zeros included (fixed-length in BT74)
        assert [(c, bytes(a)) for _, _, c, a in newest] == [
            (c | (0x800 if mfg else 0), a) for _, c, mfg, a in read
        ]
        assert [int(t.timestamp()) for _, t, _, _ in newest] == [int(t) for t, *_ in read]
        reg = store.registers(d).to_pydict()
        last = max(reg["read_at"])
        latest = {n: v for n, v, t in zip(reg["name"], reg["value"], reg["read_at"]) if t == last}
        assert latest["total.summation0"] == active


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'c.db'}", vault=KeyVault(MASTER))
    yield s
    s.close()


def collect(store, server, **kw):
    kw.setdefault("policy", StatusPolicy(attempts=4, retry_s=0.2))
    kw.setdefault("profile", FAST)
    return asyncio.run(run_collection(store, {"s1": server.url}, **kw))


def test_rounds_store_what_the_meters_hold_and_nothing_twice(store):
    with CnipMeterServer(8, seed=3, speed=900.0, start_offset=86400.0) as server:
        ids = commission(store, "s1", server.fleet)
        first = collect(store, server, rounds=2, interval_s=1.5)
        assert [r.ok for r in first] == [8, 8]
        assert first[0].stored["intervals"] >= 8 * 96 * 2  # a day, two channels
        assert first[1].stored["intervals"] > 0  # intervals closed meanwhile
        server.freeze()
        last = collect(store, server, rounds=2)
        assert [r.ok for r in last] == [8, 8]
        assert last[1].stored["intervals"] == 0  # nothing new when time stands still
        check_store(store, server, ids)


def test_lossy_duplicating_reordering_link_loses_and_doubles_nothing(store):
    with CnipMeterServer(
        4,
        seed=4,
        speed=900.0,
        start_offset=86400.0,
        drop=0.3,
        duplicate=0.1,
        reorder=0.1,
        reorder_s=0.15,
        fault_seed=11,
    ) as server:
        ids = commission(store, "s1", server.fleet)
        kw = dict(
            policy=StatusPolicy(attempts=4, retry_s=0.1),
            max_outstanding=4,
            profile=plc_profile(60, retries=6),
        )
        read = set()

        def watch(eng):
            eng.on_task_done.append(lambda t: t.error is None and read.add(t.meter.device_id))

        collect(store, server, rounds=1, **kw)
        server.freeze()
        for _ in range(10):
            collect(store, server, rounds=1, on_engine=watch, **kw)
            if read == set(ids):
                break
        assert read == set(ids)
        assert server.injected["drop"] > 0 and server.injected["duplicate"] > 0
        assert server.injected["reorder"] > 0
        check_store(store, server, ids)


KILLS = 20


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_collector_killed_at_random_moments_resumes_without_loss(tmp_path):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    store = Store(url, vault=KeyVault(MASTER))
    rng = random.Random(20261201)
    env = dict(os.environ, OSGP_TEST_MASTER=MASTER.hex())
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with CnipMeterServer(10, seed=5, speed=1800.0, start_offset=86400.0) as server:
        ids = commission(store, "s1", server.fleet)
        cmd = [
            sys.executable,
            "-m",
            "osgp.concentrator.aio",
            "--store",
            url,
            "--channel",
            f"s1={server.url}",
            "--key-env",
            "OSGP_TEST_MASTER",
            "--response-ms",
            "100",
            "--retry",
            "0.1",
            "--max-outstanding",
            "4",
        ]
        killed = 0
        t0 = time.monotonic()
        while killed < KILLS:
            proc = subprocess.Popen(
                cmd + ["--rounds", "1000", "--interval", "0.05"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(rng.uniform(0.8, 2.5))
            if proc.poll() is not None:
                pytest.fail(f"the collector ended by itself: {proc.stderr.read().decode()}")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stderr.close()
            killed += 1
        assert time.monotonic() - t0 < 80
        server.freeze()
        done = subprocess.run(cmd + ["--rounds", "1"], env=env, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        assert b"10 ok, 0 failed" in done.stdout
        check_store(store, server, ids)
        # the runs that were killed stored readings too (progress was made)
        assert store.intervals().num_rows > 10 * 96 * 2
    store.close()


def test_osgp_simulate_cnip_prints_its_url_and_meters(tmp_path):
    fleet = tmp_path / "fleet.json"
    options = ("--speed", "60", "--duration", "30", "--fleet-json", str(fleet))
    with simulate_cnip(3, *options) as (url, meters):
        assert json.loads(fleet.read_text()) == {"url": url, "meters": meters}
        assert len({m["neuron_id"] for m in meters}) == 3
        store = Store("sqlite://", vault=KeyVault(MASTER))
        ids = commission(store, "s1", meters)
        rounds = asyncio.run(
            run_collection(
                store, {"s1": url}, profile=FAST, registers=True, load_profile=False, events=False
            )
        )
        assert rounds[0].ok == 3
        assert all(store.registers(d).num_rows for d in ids)


def test_junk_from_the_peer_is_counted_and_collection_goes_on(store):
    rng = random.Random(3)
    junk = [b"", b"\x00", bytes(19), rng.randbytes(40)]
    junk += [bytes([0, 40, 1, 1, 0, 0]) + bytes(14) + rng.randbytes(20) for _ in range(20)]
    channels = []

    def spray(eng):
        ch = next(iter(eng.meters.values())).channel
        channels.append(ch)
        for j in junk:  # from the meters' own address, so the endpoint takes them
            server.sock.sendto(j, ch.transport.local_address)

    with CnipMeterServer(3, seed=6, start_offset=86400.0) as server:
        ids = commission(store, "s1", server.fleet)
        rounds = collect(store, server, on_engine=spray)
        assert rounds[0].ok == 3
        ch = channels[0]
        dropped = ch.transport.framing.dropped + sum(ch.router.drops.values())
        assert dropped + ch.stats["rejected frames"] == len(junk)
        assert all(store.intervals(d).num_rows for d in ids)


def test_a_transport_that_cannot_send_at_once_still_carries_the_round(store, monkeypatch):
    # as a serial port read by a helper thread: every frame through send's coroutine
    from osgp.transport.aio import AsyncCnipTransport

    monkeypatch.setattr(AsyncCnipTransport, "_writes_at_once", lambda self: False)
    channels = []
    with CnipMeterServer(3, seed=8, speed=900.0, start_offset=86400.0) as server:
        ids = commission(store, "s1", server.fleet)
        server.freeze()  # what the meters hold stays what the store is compared with
        rounds = collect(
            store,
            server,
            max_outstanding=2,
            on_engine=lambda eng: channels.extend({m.channel for m in eng.meters.values()}),
        )
        assert rounds[0].ok == 3
        ch = channels[0]
        assert ch.stats["frames sent"] >= ch.router.delivered > 3 * 20
        check_store(store, server, ids)
