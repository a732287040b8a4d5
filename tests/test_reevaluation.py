"""Scheduled re-evaluation of the topology on the simulated fleet: a meter
moved to another transformer between collection rounds is found on its new
segment, re-routed there, and its collection goes on with nothing lost and
nothing stored twice.  The truth is the simulated meter's own state (its
BT64 ring and BT63 status, its address on the medium)."""

from __future__ import annotations

import numpy as np
import pytest

from osgp import loadprofile, tables
from osgp.concentrator import KeyVault, Store
from osgp.concentrator.discovery import Discovery, Topology
from osgp.concentrator.engine import Concentrator
from osgp.concentrator.reevaluation import Reevaluator
from osgp.concentrator.schedule import Collector, periodic
from osgp.demo import discover_and_commission, load_fleet
from osgp.errors import ConfigurationError
from osgp.link import lon
from osgp.sim.fleet import FleetSpec, build_fleet

H = 3600.0


@pytest.fixture
def world(tmp_path):
    """Two segments discovered, commissioned and loaded into a concentrator."""
    fleet = build_fleet(FleetSpec(meters=24, segments=2, seed=5))
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", vault=KeyVault(bytes(range(32))))
    done = discover_and_commission(fleet, store, 5, groups=())
    assert done.found == done.commissioned == len(fleet.meters)
    eng = Concentrator(store, fleet.network)
    load_fleet(eng, fleet, store)
    return fleet, done.plans, done.topologies, store, eng


def _truth(meter, until_ts):
    img = {t: meter.image(t) for t in (0, 61, 62, 63, 64)}
    lp = loadprofile.decode(img[61], img[62], img[63], img[64], bt00=img[0])
    ts = lp.timestamps.astype("int64")
    keep = ts <= until_ts
    return {
        (t, c): int(lp.values[keep][i, c])
        for i, t in enumerate(ts[keep].tolist())
        for c in range(lp.values.shape[1])
    }


def test_a_moved_meter_is_found_re_routed_and_read_on_its_new_segment(world):
    fleet, plans, topologies, store, eng = world
    net = fleet.network
    a, b = fleet.segments
    t0 = topologies[0]
    relays = {p for r in t0.meters.values() for p in r.path}
    nid = next(n for n in sorted(t0.meters) if not t0.meters[n].path and n not in relays)
    dev = store.device_by_neuron(nid).id
    col = Collector(eng)
    reev = Reevaluator(eng, {s.name: s for s in fleet.segments}, plans, topologies)
    base = net.now + H - net.now % H  # the next full hour after commissioning
    for h in (1, 6, 18):
        net.at(base + h * H, lambda now, h=h: col.start_round(f"{h} h"))
    net.at(base + 2 * H, lambda now: fleet.move(nid, b.name, 150.0))
    # after the move, a round finds it silent on its old segment
    net.at(base + 2.1 * H, lambda now: col.start_round("2.1 h"))
    stop = periodic(net, 6 * H, reev.start, first=base + 3 * H)
    net.run(until=base + 21 * H)
    stop()
    rounds = {r.name: r for r in col.rounds}
    assert rounds["1 h"].ok == rounds["1 h"].meters
    assert dev in rounds["2.1 h"].missed
    first = reev.history[0]
    (moved,) = [c for c in first.changes if c.reason == "moved"]
    assert (moved.nid, moved.old_segment, moved.new_segment) == (nid, a.name, b.name)
    assert first.moved == [nid] and not first.failed
    assert len(reev.history) >= 3  # every 6 hours; later ones find nothing to move
    assert all(not r.moved for r in reev.history[1:])
    # the meter itself answers at the address the store now gives it, on its new segment
    d = store.device(dev)
    node = fleet.node(nid)
    assert d.segment == b.name and node.segment is b
    assert node.address == lon.SubnetNode(d.subnet, d.node)
    assert eng.meters[dev].channel is b
    for name in ("6 h", "18 h"):
        assert dev not in rounds[name].missed and rounds[name].ok == rounds[name].meters
    # nothing lost, nothing doubled: every interval up to the last round, once
    last = int(net.utc(rounds["18 h"].started)) - 900
    t = store.intervals(dev)
    got_ts = t.column("ts_utc").cast("int64").to_pylist()
    pairs = list(zip(got_ts, t.column("channel").to_pylist()))
    assert len(pairs) == len(set(pairs)), "an interval stored twice"
    got = dict(zip(pairs, t.column("raw").to_pylist()))
    want = _truth(fleet.meters[nid], last)
    assert want and {k: got.get(k) for k in want} == want
    # and the meter was told, on its new segment: no closed block left unread
    m = fleet.meters[nid]
    ctx = {"BT00": m.image(0), "BT61": m.image(61)}
    status = tables.decode(63, m.image(63), ctx)["LP_STATUS_SETS"][0]
    nblks = tables.decode(61, m.image(61), ctx)["LP_DATA_SETS"][0]["NBR_BLKS_SET"]
    assert len(loadprofile.block_order(nblks, status, unread_only=True)[0]) <= 1


def test_periodic_calls_at_its_interval_until_stopped():
    fleet = build_fleet(FleetSpec(meters=2, segments=1, seed=1))
    net, calls = fleet.network, []
    with pytest.raises(ConfigurationError):
        periodic(net, 0, calls.append)
    stop = periodic(net, 100.0, calls.append, first=50.0)
    net.run(until=360.0)
    stop()
    net.run(until=1000.0)
    assert np.allclose(calls, [50.0, 150.0, 250.0, 350.0])


def test_a_meter_on_a_new_path_of_its_segment_is_re_routed_and_read(world):
    fleet, plans, topologies, store, eng = world
    net = fleet.network
    a = fleet.segments[0]
    t0 = topologies[0]
    relays = {p for r in t0.meters.values() for p in r.path}
    nid = next(n for n in sorted(t0.meters) if not t0.meters[n].path and n not in relays)
    far = max(t0.meters, key=lambda n: fleet.node(n).position)
    dev = store.device_by_neuron(nid).id
    col = Collector(eng)
    reev = Reevaluator(eng, {s.name: s for s in fleet.segments}, plans, topologies)
    fleet.move(nid, a.name, fleet.node(far).position - 5.0)  # out beyond direct reach
    reev.start()
    net.run(until=net.now + 3 * H)
    (r,) = reev.history
    assert nid in r.rerouted and not r.moved
    (path,) = [c for c in r.changes if c.nid == nid]
    assert path.reason == "path" and path.new_path and path.new_path == a.route_to(nid)
    assert [len(x.path) for x in store.routes(dev)][0] == len(path.new_path)
    relayed = fleet.node(path.new_path[0]).relayed
    done = col.start_round("after")
    net.run(until=net.now + 2 * H)
    assert done.done and dev not in done.missed
    # read through its new repeater, which relayed the exchanges
    assert fleet.node(path.new_path[0]).relayed > relayed
    assert store.registers(dev).num_rows > 0


def test_a_failed_discovery_loses_no_meter_and_is_recorded(world, monkeypatch):
    # one segment's discovery stops on a defect of the procedure: its meters
    # are not reported lost (they were not looked at), the other segment is
    # re-evaluated, and the failure is in the outcome and the audit log
    fleet, plans, topologies, store, eng = world
    net = fleet.network
    a, b = fleet.segments
    sweep = Discovery._sweep

    def broken(self, *args):
        yield from sweep(self, *args)
        if self.segment == a.name:
            raise KeyError("a node it never knew")

    monkeypatch.setattr(Discovery, "_sweep", broken)
    reev = Reevaluator(eng, {s.name: s for s in fleet.segments}, plans, topologies)
    reev.start()
    net.run(until=net.now + 3 * H)
    (r,) = reev.history
    assert list(r.errors) == [a.name] and "KeyError" in r.errors[a.name]
    assert r.changes == [] and not r.moved and not r.rerouted
    assert reev.topologies[a.name] is topologies[0]  # the baseline stays for the next time
    assert reev.topologies[b.name] is not topologies[1]  # b was discovered again
    audit = [e for e in store.audit_log() if e.actor == "reevaluation"]
    assert [e.action for e in audit] == ["discovery failed"] and a.name in audit[0].detail


def _relayed_meter(t0, fleet):
    """A meter behind one repeater, and another repeater as far out as that
    one (within 30 m of it, a lateral choice) that the meter is in reach of."""
    reach = fleet.segments[0].profile.reach_m
    for nid in sorted(t0.meters):
        path = t0.meters[nid].path
        if len(path) != 1:
            continue
        here, rep = fleet.node(nid).position, fleet.node(path[0]).position
        for other in sorted(t0.meters):
            o = fleet.node(other).position
            if (
                other not in (nid, path[0])
                and not t0.meters[other].path
                and abs(o - rep) < 30.0
                and abs(here - o) < 0.6 * reach
            ):
                return nid, path[0], other
    raise AssertionError("no meter behind a repeater with a lateral alternative")


def _lateral(t0, store, nid, other):
    """``t0`` with ``nid`` behind ``other`` instead: what a sweep that missed
    the old link would find."""
    t = Topology.from_dict(t0.to_dict())
    r = t.meters[nid]
    d = store.device_by_neuron(other)
    t.proxies[other] = lon.SubnetNode(d.subnet, d.node)
    r.path, r.alternates = [other], []
    r.addresses = [t.proxies[other]]
    return t


def _reevaluate_lateral(fleet, plans, topologies, store, eng, monkeypatch, nid, other):
    """A re-evaluation whose sweep of the first segment finds ``nid`` behind
    ``other`` instead of its repeater."""
    result = Discovery._result

    def lateral(self):
        t = result(self)
        return _lateral(t, store, nid, other) if self.segment == fleet.segments[0].name else t

    monkeypatch.setattr(Discovery, "_result", lateral)
    reev = Reevaluator(eng, {s.name: s for s in fleet.segments}, plans, topologies)
    reev.start()
    fleet.network.run(until=fleet.network.now + 3 * H)
    (r,) = reev.history
    assert [c.reason for c in r.changes if c.nid == nid] == ["path"]
    return r


def test_a_lateral_path_keeps_a_primary_that_never_failed_first(world, monkeypatch):
    fleet, plans, topologies, store, eng = world
    net, t0 = fleet.network, topologies[0]
    nid, rep, other = _relayed_meter(t0, fleet)
    dev = store.device_by_neuron(nid).id
    col = Collector(eng)
    first = col.start_round("before")
    net.run(until=net.now + 2 * H)
    assert first.done and dev not in first.missed
    (primary, *_) = store.routes(dev)
    assert primary.successes > 0 and primary.failures == 0
    session = eng.meters[dev].session
    r = _reevaluate_lateral(fleet, plans, topologies, store, eng, monkeypatch, nid, other)
    assert nid in r.kept and nid not in r.rerouted
    a = store.device_by_neuron(rep)
    o = store.device_by_neuron(other)
    paths = [x.path for x in store.routes(dev)]
    assert paths[:2] == [[(a.subnet, a.node)], [(o.subnet, o.node)]]
    assert eng.meters[dev].session is session  # the same route: nothing reopened
    # the old repeater goes away: failover takes the new path the sweep found
    fleet.move(rep, fleet.segments[1].name, 40.0)
    relayed = fleet.node(other).relayed
    again = col.start_round("after")
    net.run(until=net.now + 4 * H)
    assert again.done and dev not in again.missed
    assert fleet.node(other).relayed > relayed


def test_a_new_path_keeps_the_old_one_as_an_alternate(world, monkeypatch):
    fleet, plans, topologies, store, eng = world
    t0 = topologies[0]
    nid, rep, other = _relayed_meter(t0, fleet)
    dev = store.device_by_neuron(nid).id
    before = [x.path for x in store.routes(dev)]
    # never read: the primary has no record, so the new path goes first
    r = _reevaluate_lateral(fleet, plans, topologies, store, eng, monkeypatch, nid, other)
    assert nid in r.rerouted and nid not in r.kept
    o = store.device_by_neuron(other)
    paths = [x.path for x in store.routes(dev)]
    assert paths[0] == [(o.subnet, o.node)]
    assert paths[1:] == [p for p in before if p != paths[0]][:3]
    assert eng.meters[dev].route.path == [(o.subnet, o.node)]
