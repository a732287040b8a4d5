"""The simulated fleet (osgp.sim.fleet): deterministic from its seed, meters
unconfigured and reachable by Neuron ID with their factory key, about the
requested share beyond direct reach, meters that move to another
transformer; Neuron-ID and broadcast frames delivered by the network."""

from __future__ import annotations

import pytest

from osgp.errors import ConfigurationError
from osgp.link import lon
from osgp.link.carrier import PlcCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.session import ClientSession
from osgp.sim.fleet import FleetSpec, Placement, build_fleet


def test_same_seed_same_fleet_other_seed_other_fleet():
    a = build_fleet(FleetSpec(meters=60, segments=3, seed=5))
    b = build_fleet(FleetSpec(meters=60, segments=3, seed=5))
    c = build_fleet(FleetSpec(meters=60, segments=3, seed=6))
    assert list(a.meters) == list(b.meters)
    assert a.placement == b.placement
    assert [a.factory_key(n) for n in a.meters] == [b.factory_key(n) for n in b.meters]
    assert set(a.meters).isdisjoint(c.meters)
    nid = next(iter(a.meters))
    assert a.factory_key(nid) != c.factory_key(nid)
    assert len(a.factory_key(nid)) == 12
    assert len({a.factory_key(n) for n in a.meters}) == 60


def test_meters_are_spread_and_about_a_quarter_need_repeaters():
    fleet = build_fleet(FleetSpec(meters=400, segments=4, seed=2))
    assert len(fleet.meters) == 400 and all(len(n) == 6 for n in fleet.meters)
    per = {s.name: len(s.members) for s in fleet.segments}
    assert per == {"seg-1": 100, "seg-2": 100, "seg-3": 100, "seg-4": 100}
    far = 0
    for seg in fleet.segments:
        for node in seg.members:
            assert node.address is None  # unconfigured until commissioning
            p = fleet.placement[node.neuron_id]
            assert p.segment == seg.name and p.position_m == node.position
            assert 1 <= p.phase <= 3 and p.transformer == "TR-" + seg.name[4:]
            hops = seg.route_to(node.neuron_id)  # raises if a meter had no chain
            far += bool(hops)
    assert 0.2 <= far / 400 <= 0.3
    assert max(len(s.route_to(n.neuron_id)) for s in fleet.segments for n in s.members) >= 2


def test_a_direct_meter_is_read_by_neuron_id_with_its_factory_key():
    fleet = build_fleet(FleetSpec(meters=30, segments=1, seed=3))
    seg = fleet.segments[0]
    nid = next(n for n in fleet.meters if not seg.route_to(n))
    meter = fleet.meters[nid]
    c = ClientSession(
        PlcCarrier(lon.NeuronId(nid), src=tuple(seg.concentrator)),
        LegacySuite(fleet.factory_key(nid), PLC_ENVELOPE),
    )
    seg.attach(c)
    op = c.read(1)
    fleet.network.run(until=120)
    assert op.error is None and op.result == meter.image(1)
    assert meter.serial.encode() in op.result
    # the wrong key is refused by the meter's digest check
    other = next(n for n in fleet.meters if n != nid)
    bad = ClientSession(
        PlcCarrier(lon.NeuronId(nid), src=tuple(seg.concentrator)),
        LegacySuite(fleet.factory_key(other), PLC_ENVELOPE),
    )
    seg.attach(bad)
    op = bad.read(1)
    fleet.network.run(until=400)
    assert op.error is not None


def test_a_moved_meter_hangs_on_its_new_segment_only():
    fleet = build_fleet(FleetSpec(meters=40, segments=2, seed=4))
    a, b = fleet.segments
    nid = a.members[0].neuron_id
    node = fleet.node(nid)
    fleet.move(nid, "seg-2", 55.0)
    assert nid not in a.by_nid and node not in a.members
    assert b.by_nid[nid] is node and node.segment is b and node.position == 55.0
    assert fleet.placement[nid] == Placement("seg-2", 55.0, fleet.placement[nid].phase, "TR-2")
    assert b.route_to(nid) == []
    with pytest.raises(ConfigurationError):
        fleet.move(nid, "seg-9", 1.0)
    with pytest.raises(ConfigurationError):
        fleet.node(b"\x00" * 6)


def test_a_configured_meter_keeps_its_address_when_free():
    fleet = build_fleet(FleetSpec(meters=10, segments=2, seed=4))
    a, b = fleet.segments
    n1, n2 = a.members[0], a.members[1]
    a.readdress(n1, lon.SubnetNode(1, 9))
    b.readdress(b.members[0], lon.SubnetNode(1, 10))
    a.readdress(n2, lon.SubnetNode(1, 10))
    fleet.move(n1.neuron_id, "seg-2", 10.0)
    fleet.move(n2.neuron_id, "seg-2", 20.0)
    assert n1.address == lon.SubnetNode(1, 9) and b.nodes[(1 << 7) | 9] is n1
    assert n2.address is None  # 1/10 is taken on seg-2
    with pytest.raises(ConfigurationError):
        b.readdress(n2, lon.SubnetNode(1, 9))
    assert list(fleet.subnets("seg-2")) == list(range(9, 17))


def test_bad_specs_are_refused():
    for kw in ({"meters": -1}, {"segments": 0}, {"out_of_reach": 1.5}, {"segments": 40}):
        with pytest.raises(ConfigurationError):
            FleetSpec(**kw)
