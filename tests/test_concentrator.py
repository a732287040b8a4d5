"""The concentrator on the simulated network: collection rounds, the
nothing-lost-nothing-doubled rule, routes, meter status and restarts.

The truth every test compares with is the simulated meter's own state: its
BT64 ring decoded in full, its history log and its register values, never
what the concentrator stored about itself."""

from __future__ import annotations

import random
from functools import partial

import numpy as np
import pytest

from osgp import loadprofile, tables
from osgp.concentrator import KeyVault, Store
from osgp.concentrator.collect import collect
from osgp.concentrator.engine import (
    KEY_PURPOSE,
    NORMAL,
    PERMANENT_FAULT,
    TEMPORARY_FAULT,
    Concentrator,
    StatusPolicy,
)
from osgp.concentrator.schedule import Collector
from osgp.errors import ConfigurationError
from osgp.link import lon
from osgp.link.carrier import PlcDeviceCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.sim import Faults, SimMeter
from osgp.sim.network import MediumProfile, Network
from osgp.tables.events import EVENTS, MFG_EVENTS

SPACING = 60.0
DAY = 86400.0


class Feeder:
    """Meters along one segment, commissioned by hand into a store (the
    addresses and keys a commissioning step would have given them)."""

    def __init__(self, tmp_path, n=8, *, seed=1, base_loss=0.01, faults=None, reach=250.0):
        self.net = Network(seed=seed)
        self.seg = self.net.add_segment(
            "seg-1", profile=MediumProfile(reach_m=reach, base_loss=base_loss)
        )
        self.url = f"sqlite:///{tmp_path / 'store.db'}"
        self.vault = KeyVault(bytes(range(32)))
        self.store = Store(self.url, vault=self.vault)
        self.meters = {}
        for i in range(n):
            addr = lon.SubnetNode(2, 1 + i)
            key = bytes([i + 1]) * 12
            nid = bytes([4, 0, 0, 0, 0, i + 1])
            m = SimMeter(
                f"SIM{i:05d}",
                links=[
                    (PlcDeviceCarrier([addr, lon.NeuronId(nid)]), LegacySuite(key, PLC_ENVELOPE))
                ],
                faults=faults(i) if callable(faults) else faults,
            )
            self.seg.add_meter(addr, SPACING * (i + 1), m.ports[0])
            d = self.store.upsert_device(
                nid, serial=m.serial, segment="seg-1", subnet=2, node=1 + i, status=NORMAL
            )
            self.store.put_key(d, KEY_PURPOSE, key)
            path = [(p.subnet, p.node) for p in self.seg.route_to(addr)]
            self.store.put_routes(d, [(path, 1.0)])
            self.meters[d] = m
        self.start()

    def start(self, policy=None):
        """A concentrator over the store (again after a restart)."""
        old = getattr(self, "eng", None)
        for m in old.meters.values() if old is not None else ():
            self.seg.detach(m.session)  # what a dead process had in flight is gone with it
        self.eng = Concentrator(self.store, self.net, policy=policy or StatusPolicy())
        self.eng.add_channel(self.seg)
        for d in self.meters:
            self.eng.add_meter(d, self.seg)
        self.col = Collector(self.eng)
        return self.eng

    def rounds(self, hours, until):
        for h in hours:
            self.net.at(h * 3600, lambda now, h=h: self.col.start_round(f"h{h}"))
        self.net.run(until=until)
        return self.col.rounds

    # -- truth
    def lp_truth(self, d, until_ts):
        m = self.meters[d]
        img = {t: m.image(t) for t in (0, 61, 62, 63, 64)}
        lp = loadprofile.decode(img[61], img[62], img[63], img[64], bt00=img[0])
        ts = lp.timestamps.astype("int64")
        keep = ts <= until_ts
        return ts[keep], lp.values[keep]

    def stored(self, d):
        t = self.store.intervals(d)
        ts = np.array(t.column("ts_utc").cast("int64").to_pylist(), dtype=np.int64)
        ch = np.array(t.column("channel").to_pylist())
        raw = np.array(t.column("raw").to_pylist())
        return ts, ch, raw


def assert_complete(f, until_ts):
    """Every interval up to ``until_ts`` stored exactly once with the meter's values."""
    for d in f.meters:
        ts, values = f.lp_truth(d, until_ts)
        got_ts, ch, raw = f.stored(d)
        pairs = list(zip(got_ts.tolist(), ch.tolist()))
        assert len(pairs) == len(set(pairs)), f"meter {d}: an interval stored twice"
        got = {(t, c): r for t, c, r in zip(got_ts.tolist(), ch.tolist(), raw.tolist())}
        want = {
            (t, c): int(values[i, c])
            for i, t in enumerate(ts.tolist())
            for c in range(values.shape[1])
        }
        missing = set(want) - set(got)
        assert not missing, f"meter {d}: {len(missing)} intervals lost, e.g. {sorted(missing)[:3]}"
        assert {k: got[k] for k in want} == want, f"meter {d}: values differ"


def test_a_day_of_rounds_stores_every_interval_once(tmp_path):
    f = Feeder(tmp_path, n=8)
    rounds = f.rounds((6, 12, 18, 24.1), until=DAY + 3 * 3600)
    assert [r.done for r in rounds] == [True] * 4
    assert all(r.ok == 8 for r in rounds), [(r.ok, r.failed, dict(r.errors)) for r in rounds]
    last = max(f.net.utc(r.started) for r in rounds)
    assert_complete(f, int(last) - 900)
    # the open block was read in pieces: later rounds did not fetch it again
    assert rounds[1].stored["intervals"] < rounds[0].stored["intervals"] * 1.5
    # every meter acknowledged the day's block: nothing left unread but the open one
    for m in f.meters.values():
        st = loadprofile.block_order(4, _bt63(m), unread_only=True)[0]
        assert len(st) <= 1
    # the registers are the meter's own BT23 values at the read
    regs = f.store.registers(1).to_pylist()
    assert {r["name"] for r in regs} >= {"total.summation0", "total.summation1"}


def _bt63(m):
    from osgp import tables

    return tables.decode(63, m.image(63), {"BT00": m.image(0), "BT61": m.image(61)})[
        "LP_STATUS_SETS"
    ][0]


def test_a_catch_up_waits_for_the_meters_its_round_is_still_retrying(tmp_path):
    """A catch-up asked for while its round still retries a meter takes that
    meter once its last attempt has failed, and reads it."""
    f = Feeder(tmp_path, n=4, base_loss=0.0)
    dead, t0 = max(f.meters), 3 * 3600.0
    f.net.run(until=t0)
    f.meters[dead].power_fail(t0)
    first = f.col.start_round("first")
    f.net.run(until=t0 + 5)
    assert not first.done and not first.missed  # the dead meter is still being retried
    f.col.catch_up(first, not_before=t0 + 900)
    f.net.at(t0 + 600, f.meters[dead].power_restore)
    f.net.run(until=t0 + 1800)
    assert first.missed == [dead]
    names = [r.name for r in f.col.rounds]
    assert names == ["first", "catch-up"], names
    catch = f.col.rounds[1]
    assert catch.started >= t0 + 900 and catch.meters == 1 and catch.ok == 1
    # the meter's own load profile up to the catch-up's read is stored in full
    ts, values = f.lp_truth(dead, int(f.net.utc(catch.finished)))
    got_ts, ch, raw = f.stored(dead)
    assert len(ts) >= 12 and sorted(set(got_ts.tolist())) == ts.tolist()
    got = {(t, c): r for t, c, r in zip(got_ts.tolist(), ch.tolist(), raw.tolist())}
    assert all(got[(t, 0)] == values[i, 0] for i, t in enumerate(ts.tolist()))
    assert len(loadprofile.block_order(4, _bt63(f.meters[dead]), unread_only=True)[0]) <= 1


def _round_with_a_dead_meter(tmp_path, n):
    """A round at 3 h with its last meter dead: (feeder, the dead meter's
    id, the round's start, the round)."""
    f = Feeder(tmp_path, n=n, base_loss=0.0)
    dead, t0 = max(f.meters), 3 * 3600.0
    f.net.run(until=t0)
    f.meters[dead].power_fail(t0)
    return f, dead, t0, f.col.start_round("first")


def _dead_meter_with_catch_ups(tmp_path, n, *, hours):
    """That round, and catch-ups every 0.5 h for ``hours``."""
    f, dead, t0, first = _round_with_a_dead_meter(tmp_path, n)
    f.col.catch_up(first, every_s=1800, until=t0 + hours * 3600)
    return f, dead, t0


def test_catch_ups_repeat_every_interval_until_the_meter_is_read(tmp_path):
    """A meter dead through the first catch-ups is read by a later one; the
    catch-ups stop once nothing is missed, and none starts at or after ``until``."""
    f, dead, t0 = _dead_meter_with_catch_ups(tmp_path, 3, hours=6)
    f.net.at(t0 + 2.2 * 3600, f.meters[dead].power_restore)
    assert not f.col.idle
    f.net.run(until=t0 + 8 * 3600)
    assert f.col.idle
    catches = f.col.rounds[1:]
    assert [r.name for r in catches] == ["catch-up"] * len(catches)
    # dead until 2.2 h: the catch-ups before then miss it, the first after reads it
    assert all(r.meters == 1 and r.missed == [dead] for r in catches[:-1])
    assert catches[-1].ok == 1 and catches[-1].started >= t0 + 2.2 * 3600
    assert len(catches) >= 4  # 0.5 h apart at least, each taking its retries
    starts = [r.started for r in catches]
    assert all(b - a >= 1800 for a, b in zip(starts, starts[1:]))
    assert all(b >= a.finished for a, b in zip(catches, starts[1:]))
    ts, _ = f.lp_truth(dead, int(f.net.utc(catches[-1].finished)))
    assert sorted(set(f.stored(dead)[0].tolist())) == ts.tolist()


def test_a_meter_busy_when_a_catch_up_starts_is_in_the_next_one(tmp_path):
    f, dead, t0, first = _round_with_a_dead_meter(tmp_path, 2)
    f.net.at(t0 + 3600, f.meters[dead].power_restore)
    f.col.catch_up(first, not_before=t0 + 5400, every_s=1800, until=t0 + 4 * 3600)
    m = f.eng.meters[dead]
    probe = partial(collect, f.eng, m, load_profile=False, events=False)
    f.net.at(t0 + 5399, lambda now: f.eng.start(m, probe(), "probe"))
    busy = []
    f.net.at(t0 + 5400, lambda now: busy.append(m.busy))
    f.net.run(until=t0 + 5 * 3600)
    assert busy == [True]
    skipped, read = f.col.rounds[1:]
    assert (skipped.meters, skipped.missed) == (0, [dead])
    assert read.started >= skipped.started + 1800 and (read.meters, read.ok) == (1, 1)
    ts, _ = f.lp_truth(dead, int(f.net.utc(read.finished)))
    assert sorted(set(f.stored(dead)[0].tolist())) == ts.tolist()


def test_catch_ups_end_at_until_with_the_meter_still_missed(tmp_path):
    f, dead, t0 = _dead_meter_with_catch_ups(tmp_path, 2, hours=2)
    f.net.run(until=t0 + 12 * 3600)
    assert f.col.idle
    catches = f.col.rounds[1:]
    assert catches and all(r.missed == [dead] for r in catches)
    assert all(r.started < t0 + 2 * 3600 for r in catches)
    assert 2 <= len(catches) <= 4
    with pytest.raises(ConfigurationError):
        f.col.catch_up(f.col.rounds[0], every_s=0)


def test_events_are_collected_once_and_acknowledged(tmp_path):
    f = Feeder(tmp_path, n=3)
    f.rounds((24.1, 30), until=DAY + 8 * 3600)
    for d, m in f.meters.items():
        t = f.store.events(d)
        seqs = t.column("seq").to_pylist()
        assert len(seqs) == len(set(seqs))
        # the meter's log before the last round is all in the store
        hist = m.history()
        got = {
            (int(ts), c & 0x7FF)
            for ts, c in zip(
                t.column("ts_utc").cast("int64").to_pylist(), t.column("code").to_pylist()
            )
        }
        want = {(int(h[0]), h[1]) for h in hist if h[0] < f.net.utc(30 * 3600) - 600}
        assert want <= got, sorted(want - got)[:5]
        # named from the event catalogue, as the meter logged them
        logged = {(h[1], h[2]) for h in hist}
        for c, name in zip(t.column("code").to_pylist(), t.column("name").to_pylist()):
            assert (c & 0x7FF, bool(c & 0x800)) in logged
            names = MFG_EVENTS if c & 0x800 else EVENTS
            assert names[name] == c & 0x7FF


def test_self_reads_are_collected_once_and_acknowledged(tmp_path):
    f = Feeder(tmp_path, n=3)
    f.rounds((12, 24.1, 30, 48.1), until=2 * DAY + 3 * 3600)
    assert all(r.done and r.ok == 3 for r in f.col.rounds)
    for d, m in f.meters.items():
        img = {t: m.image(t) for t in (0, 21, 26)}
        ctx = {"BT00": tables.decode(0, img[0])}
        ctx["BT21"] = tables.decode(21, img[21], ctx)
        bt26 = tables.decode(26, img[26], ctx)
        assert bt26["NBR_VALID_ENTRIES"] == 2  # the midnights of day 1 and day 2
        assert bt26["NBR_UNREAD_ENTRIES"] == 0  # each acknowledged after its commit
        want = {
            e["END_DATE_TIME"].to_datetime().timestamp(): e["SELF_READ_REGISTER_DATA"]
            for e in bt26["SELF_READS"][: bt26["NBR_VALID_ENTRIES"]]
        }
        regs = [r for r in f.store.registers(d).to_pylist() if r["name"].startswith("self_read.")]
        got = {}
        for r in regs:
            got.setdefault(r["read_at"].timestamp(), {})[r["name"]] = r["value"]
        assert set(got) == set(want)
        for at, snapshot in want.items():
            total = snapshot["TOT_DATA_BLOCK"]
            assert got[at]["self_read.total.summation0"] == float(total["SUMMATIONS"][0])
            assert got[at]["self_read.total.summation1"] == float(total["SUMMATIONS"][1])
        # each snapshot holds what a BT23 read holds (the register names the rounds
        # stored from BT23), and its sequence number
        live = {r["name"] for r in f.store.registers(d).to_pylist()} - {r["name"] for r in regs}
        for names in got.values():
            assert {n.removeprefix("self_read.") for n in names} == live | {"seq"}


def test_a_restart_mid_day_loses_and_doubles_nothing(tmp_path):
    f = Feeder(tmp_path, n=6)
    f.rounds((6,), until=6 * 3600 + 20)  # killed in the middle of the first round
    assert not all(r.done for r in f.col.rounds)
    f.store.close()
    f.store = Store(f.url, vault=f.vault)
    f.start()
    rounds = f.rounds((12, 24.1), until=DAY + 3 * 3600)
    assert all(r.done and r.ok == 6 for r in rounds[-2:])
    assert_complete(f, int(f.net.utc(24.1 * 3600)) - 900)


@pytest.mark.parametrize("seed", [3, 4])
def test_lossy_medium_and_faulty_meters(tmp_path, seed):
    """30 % of frames lost on top of distance, duplicates, reordering and
    reboots: every meter read in the end, nothing lost or doubled."""
    faults = lambda i: Faults(seed=seed * 100 + i, drop=0.3, duplicate=0.1, delay=0.05)  # noqa: E731
    f = Feeder(tmp_path, n=5, seed=seed, faults=faults)
    rng = random.Random(seed)
    for m in f.meters.values():
        t = rng.uniform(2, 20) * 3600
        f.net.at(t, lambda now, m=m: m.reboot(now))
    f.rounds((6, 12, 18, 24.1, 26, 28), until=DAY + 8 * 3600)
    last = f.col.rounds[-1]
    assert last.ok == 5, dict(last.errors)
    assert_complete(f, int(f.net.utc(24.1 * 3600)) - 900)


def test_a_dead_route_fails_over_and_the_status_follows(tmp_path):
    f = Feeder(tmp_path, n=6)
    far = max(f.meters)
    routes = f.store.routes(far)
    assert routes[0].path, "the far meter needs repeaters"
    # a useless first route (through a node that does not exist), the real one second
    f.store.put_routes(far, [([(2, 99)], 0.9), (routes[0].path, 0.8)])
    eng = f.start()
    f.rounds((6,), until=6 * 3600 + 3600)
    r = f.col.rounds[0]
    assert r.ok == 6 and eng.stats["route changes"] >= 1
    new = {tuple(map(tuple, x.path)): x for x in f.store.routes(far)}
    real = tuple(map(tuple, routes[0].path))
    assert new[((2, 99),)].failures >= 1 and new[real].successes >= 1


def test_status_machine_temporary_then_permanent_then_normal(tmp_path):
    f = Feeder(tmp_path, n=2)
    policy = StatusPolicy(attempts=2, retry_s=60, permanent_s=2 * 3600)
    eng = f.start(policy)
    gone = f.seg.nodes[(2 << 7) | 2]
    home = gone.position
    gone.position = 1e9  # out of reach
    f.rounds((1,), until=1.5 * 3600)
    assert eng.meters[2].status == TEMPORARY_FAULT and eng.meters[1].status == NORMAL
    eng = f.start(policy)  # a restart: the fault's start comes back from the store
    assert eng.meters[2].status == TEMPORARY_FAULT
    f.rounds((4,), until=4.5 * 3600)
    assert eng.meters[2].status == PERMANENT_FAULT
    assert f.store.device(2).status == PERMANENT_FAULT
    gone.position = home
    f.rounds((6,), until=6.5 * 3600)
    assert eng.meters[2].status == NORMAL and f.store.device(2).status == NORMAL
