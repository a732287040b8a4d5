"""The simulated fleet and topology management.

Group "fleet-build": building a 1,000-meter fleet (network, segments, nodes,
agents) against building the same 1,000 SimMeters alone (the floor).
Group "fleet-atm": discovering and commissioning 1,000 meters on 4 segments
with the reconstructed ATM engines; ``extra_info`` carries the virtual time,
the frames on the media per meter and the routes the second sweeps shortened
(there is no other discovery to compare with: the floor is the channel,
reported as frames per meter)."""

from __future__ import annotations

import hashlib

import pytest

from osgp.concentrator.commissioning import Commissioning
from osgp.concentrator.discovery import AddressPlan, Discovery
from osgp.link import lon
from osgp.link.carrier import PlcDeviceCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.sim import SimMeter
from osgp.sim.fleet import FleetSpec, build_fleet

METERS, SEGMENTS = 1000, 4


@pytest.mark.benchmark(group="fleet-build")
def test_build_fleet(benchmark):
    fleet = benchmark.pedantic(build_fleet, args=(FleetSpec(meters=METERS),), rounds=3)
    assert len(fleet.meters) == METERS


@pytest.mark.benchmark(group="fleet-build")
def test_build_meters_alone(benchmark):
    def build():
        return [
            SimMeter(
                f"SIM{i:07d}",
                seed=i,
                links=[
                    (
                        PlcDeviceCarrier([lon.NeuronId(i.to_bytes(6, "big"))]),
                        LegacySuite(bytes(12), PLC_ENVELOPE),
                    )
                ],
            )
            for i in range(METERS)
        ]

    assert len(benchmark.pedantic(build, rounds=3)) == METERS


def _discover_and_commission():
    fleet = build_fleet(FleetSpec(meters=METERS, segments=SEGMENTS, seed=3))
    plans, engines = {}, []
    for s in fleet.segments:
        plans[s.name] = AddressPlan(fleet.subnets(s.name), reserved=[s.concentrator])
        e = Discovery(s.name, s.concentrator, plans[s.name], expected=len(s.members))
        s.attach_engine(e)
        engines.append(e)
    fleet.network.run()
    found_at, found_frames = fleet.network.now, sum(s.stats["frames"] for s in fleet.segments)
    done = []
    for s, e in zip(fleet.segments, engines):
        s.detach_engine(e)
        c = Commissioning(
            e.topology,
            plans[s.name],
            lambda nid: hashlib.sha256(nid).digest()[:12],
            fleet.factory_key,
            groups=(1,),
        )
        s.attach_engine(c)
        done.append(c)
    fleet.network.run()
    return fleet, engines, done, found_at, found_frames


@pytest.mark.benchmark(group="fleet-atm")
def test_discover_and_commission_1000_meters(benchmark):
    fleet, engines, done, found_at, found_frames = benchmark.pedantic(
        _discover_and_commission, rounds=1
    )
    found = sum(len(e.topology.meters) for e in engines)
    ok = sum(o.ok for c in done for o in c.results.values())
    frames = sum(s.stats["frames"] for s in fleet.segments)
    assert found == METERS and ok == METERS
    benchmark.extra_info.update(
        {
            "virtual_s_discovery": round(found_at, 1),
            "virtual_s_total": round(fleet.network.now, 1),
            "frames_per_meter_discovery": round(found_frames / METERS, 2),
            "frames_per_meter_total": round(frames / METERS, 2),
            "routes_shortened": sum(e.stats["routes shortened"] for e in engines),
        }
    )
