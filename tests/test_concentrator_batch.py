"""The concentrator's host-cost paths: segment loads in one read, batched
store writes that resume their tasks only after the commit, and transports
that hand payloads to a callback."""

from __future__ import annotations

import asyncio

import pytest

from osgp.concentrator import KeyVault, Store
from osgp.concentrator.engine import KEY_PURPOSE, Concentrator
from osgp.errors import StoreError
from osgp.transport import aio

MASTER = bytes(range(32))


@pytest.fixture
def store(store_url):
    with Store(store_url, vault=KeyVault(MASTER)) as st:
        yield st


class _Clock:
    """A runtime whose timers run only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list = []

    def time(self) -> float:
        return self.now

    def utc(self, now: float) -> float:
        return 1_700_000_000.0 + now

    def call_at(self, t, fn) -> None:
        self.timers.append((t, fn))

    def fire(self) -> None:
        timers, self.timers = self.timers, []
        for t, fn in sorted(timers, key=lambda x: x[0]):
            self.now = max(self.now, t)
            fn(self.now)


def _devices(store, n, segment="s1"):
    ids = []
    for i in range(n):
        d = store.upsert_device(bytes([0, 0, 0, 0, 1, i]), segment=segment, subnet=2, node=10 + i)
        store.put_key(d, KEY_PURPOSE, bytes([i]) * 12)
        store.put_routes(d, [([], 1.0), ([(2, 99)], 0.5)])
        ids.append(d)
    return ids


def test_meter_records_match_the_per_device_reads(store):
    ids = _devices(store, 3)
    store.put_key(ids[1], KEY_PURPOSE, b"\x77" * 12)  # a renewal: the newest key is active
    store.set_cursor(ids[0], "lp", {"open_seq": 4})
    store.set_cursor(ids[2], "dims", {"0": "00"})
    other = store.upsert_device(b"\x09" * 6, segment="s2", subnet=3, node=4)
    recs = store.meter_records("s1", KEY_PURPOSE, ("dims", "lp"))
    assert [r.device.id for r in recs] == ids and other not in [r.device.id for r in recs]
    for r in recs:
        d = r.device.id
        assert r.device == store.device(d)
        assert r.key == store.key(d, KEY_PURPOSE)
        assert r.routes == store.routes(d)
        want = {s: store.cursor(d, s) for s in ("dims", "lp")}
        assert r.cursors == want  # None where the store has none
    assert recs[1].key == b"\x77" * 12


def test_add_meters_loads_the_segment(store):
    ids = _devices(store, 4)
    store.upsert_device(b"\x05" * 6, segment="s1")  # not commissioned: left out
    store.set_cursor(ids[3], "lp", {"open_seq": 1, "open_k": 5})

    class Ch:
        name, concentrator, on_events, crc = "s1", None, None, True
        attached: list = []

        def attach(self, s):
            self.attached.append(s)

        def detach(self, s):
            self.attached.remove(s)

    from osgp.link import lon

    ch = Ch()
    ch.concentrator = lon.SubnetNode(1, 1)
    eng = Concentrator(store, _Clock())
    meters = eng.add_meters(ch)
    assert [m.device_id for m in meters] == ids and len(ch.attached) == 4
    assert meters[2].key == bytes([2]) * 12 and len(meters[2].routes) == 2
    assert meters[3].cursors["lp"] == {"open_seq": 1, "open_k": 5}
    assert meters[0].cursors["lp"] is None  # none stored, and the engine knows it


def test_batch_commits_together_and_rolls_back_together(store):
    (d,) = _devices(store, 1)
    with store.batch():
        store.set_cursor(d, "a", {"x": 1})
        store.set_cursor(d, "b", {"x": 2})
        assert store.cursor(d, "a") is None  # a read sees only what is committed
    assert store.cursor(d, "a") == {"x": 1} and store.cursor(d, "b") == {"x": 2}
    with pytest.raises(StoreError):
        with store.batch():
            store.set_cursor(d, "a", {"x": 3})
            store.set_status(d + 1000, "normal", 1.0)  # no such device
    assert store.cursor(d, "a") == {"x": 1}  # rolled back with the failed one


def test_update_meta_keeps_the_other_keys(store):
    d = store.upsert_device(b"\x01" * 6, meta={"hops": 2})
    store.update_meta(d, {"units": ["Wh"]}, cursor=("dims", {"0": "ab"}))
    assert store.device(d).meta == {"hops": 2, "units": ["Wh"]}
    assert store.cursor(d, "dims") == {"0": "ab"}
    with pytest.raises(StoreError, match="no device"):
        store.update_meta(d + 1000, {})


def test_batched_writes_resume_tasks_only_after_the_commit(store):
    ids = _devices(store, 3)
    clock = _Clock()
    eng = Concentrator(store, clock, write_batch_s=0.5)
    seen = []

    def task(d):
        n = yield eng.write(store.commit_registers, d, 1.0, {"r": (float(d), "Wh")})
        seen.append((d, n, store.cursor(d, "after")))  # resumed: the reading is in the store
        yield eng.write(store.set_cursor, d, "after", {"ok": True})
        return n

    for m_id in ids:
        eng.meters[m_id] = m = _FakeMeter(m_id)
        eng.start(m, task(m_id), "t")  # type: ignore[arg-type]
    assert seen == [] and store.registers().num_rows == 0  # nothing committed, nothing resumed
    assert len(clock.timers) == 1  # one batch for the three
    clock.fire()
    assert [s[:2] for s in seen] == [(d, 1) for d in ids]
    assert store.registers().num_rows == 3
    clock.fire()
    assert all(store.cursor(d, "after") == {"ok": True} for d in ids)
    assert eng.stats["write batches"] == 2 and eng.stats["tasks ok"] == 3


def test_one_failing_write_fails_only_its_task(store):
    ids = _devices(store, 2)
    clock = _Clock()
    eng = Concentrator(store, clock, write_batch_s=0.1)
    results = {}

    def task(d):
        try:
            yield eng.write(store.set_status, d, "normal", 5.0)
            results[d] = "ok"
        except StoreError as exc:
            results[d] = str(exc)

    bad = ids[1] + 1000
    for d in (ids[0], bad):
        m = _FakeMeter(d)
        eng.start(m, task(d), "t")  # type: ignore[arg-type]
    eng.write_soon(store.route_outcome, store.routes(ids[1])[0].id, True)
    clock.fire()
    assert results[ids[0]] == "ok" and "no device" in results[bad]
    assert store.device(ids[0]).status == "normal"
    assert store.routes(ids[1])[0].successes == 1  # the write nothing waited for, also committed


def test_unbatched_writes_run_at_once(store):
    (d,) = _devices(store, 1)
    eng = Concentrator(store, _Clock())
    w = eng.write(store.set_cursor, d, "x", {"a": 1})
    assert w.done and w.error is None and store.cursor(d, "x") == {"a": 1}
    with pytest.raises(StoreError):
        eng.write_soon(store.set_status, d + 1000, "normal", 1.0)


class _FakeMeter:
    def __init__(self, device_id: int) -> None:
        self.device_id, self.busy = device_id, False


def test_set_receiver_takes_queued_and_live_payloads():
    async def main():
        a, b = aio.memory_pair("recv-cb")
        await a.send(b"one")
        await asyncio.sleep(0.01)  # queued before a receiver is set
        got = []
        b.set_receiver(got.append)
        assert got == [b"one"]
        await a.send(b"two")
        await asyncio.sleep(0.01)
        assert got == [b"one", b"two"]
        b.set_receiver(None)
        await a.send(b"three")
        assert await b.receive(1) == b"three" and got == [b"one", b"two"]
        await a.close()
        await b.close()

    asyncio.run(main())
