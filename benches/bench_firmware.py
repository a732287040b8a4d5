"""Firmware download airtime: secure group broadcast plus unicast repair
against unicast to every meter (docs/operations-firmware.md).

Group "firmware-airtime": one run of each (``extra_info`` has the simulated
airtime and the ratio): the broadcast job on the whole fleet, and the same
job with ``broadcast=False`` (every packet by unicast EP09, the same
verification and switch) on ``UNICAST_METERS`` meters, whose airtime per
meter, times the fleet size, is the unicast figure (unicast airtime grows
linearly with the meters: each gets the same exchanges).  The medium loses
10 % of the frames at every receiver (:class:`FlatLoss`).

``OSGP_BENCH_FIRMWARE=full`` runs the issue's scale (a 200 KiB image to
1,000 meters); by default a smaller one keeps CI quick.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import pytest

from osgp.concentrator import KeyVault, Store
from osgp.concentrator.engine import KEY_PURPOSE, Concentrator, StatusPolicy
from osgp.concentrator.firmware import BROADCAST_KEY
from osgp.concentrator.operations import Operations
from osgp.link import lon
from osgp.services import firmware as F
from osgp.sim.fleet import FleetSpec, build_fleet
from osgp.sim.network import MediumProfile

FULL = os.environ.get("OSGP_BENCH_FIRMWARE") == "full"
METERS, IMAGE_KIB = (1000, 200) if FULL else (100, 8)
UNICAST_METERS = 4
LOSS = 0.10
GROUP = 9
NEW = F.version_word(5, 0, 1)


@dataclass(frozen=True)
class FlatLoss(MediumProfile):
    """Every receiver within reach loses ``base_loss`` of the frames."""

    def loss(self, distance: float) -> float:
        return 1.0 if distance > self.reach_m else self.base_loss


def firmware_run(tmp: Any, meters: int, kib: int, broadcast: bool) -> Dict[str, Any]:
    """Build and commission the fleet, run one firmware job to its end."""
    spec = FleetSpec(
        meters=meters,
        segments=4 if meters >= 4 else 1,
        seed=7,
        out_of_reach=0.0,
        profile=FlatLoss(base_loss=LOSS),
    )
    fleet = build_fleet(spec)
    store = Store(f"sqlite:///{tmp}/fw-{broadcast}-{meters}.db", vault=KeyVault(bytes(32)))
    eng = Concentrator(store, fleet.network, policy=StatusPolicy(attempts=6, retry_s=30))
    bkey = bytes(range(12))
    ids = []
    for seg in fleet.segments:
        eng.add_channel(seg)
        subnets = list(fleet.subnets(seg.name))
        for i, node in enumerate(list(seg.members)):
            addr = lon.SubnetNode(subnets[i // 126], 2 + i % 126)
            seg.readdress(node, addr)
            nid = node.neuron_id
            assert nid is not None
            m = fleet.meters[nid]
            port = m.port("plc")
            port.carrier.addresses = (addr, lon.NeuronId(nid))
            m.groups.append(GROUP)
            m._apply_groups()
            m.broadcasts.set_key(bkey)
            d = store.upsert_device(
                nid, serial=m.serial, segment=seg.name, subnet=addr.subnet, node=addr.node
            )
            store.put_key(d, KEY_PURPOSE, fleet.factory_key(nid))
            store.put_key(d, BROADCAST_KEY, bkey)
            store.put_routes(d, [([], 1.0)])
            eng.add_meter(d, seg)
            ids.append(d)
    image = random.Random(1).randbytes(kib * 1024)
    ops = Operations(eng)
    net = fleet.network
    job = ops.firmware(image, NEW, GROUP, switch_at=None, broadcast=broadcast)
    while not ops.idle:
        net.run(until=net.now + 3600)
    states: Dict[str, int] = {}
    for o in ops.report(job).values():
        states[o.state] = states.get(o.state, 0) + 1
    on_new = sum(m.banks.version == NEW for m in fleet.meters.values())
    store.close()
    return {
        "meters": meters,
        "airtime_s": sum(s.airtime_s for s in fleet.segments),
        "virtual_s": net.now,
        "states": states,
        "on_new_image": on_new,
        "frames": sum(s.stats["frames"] for s in fleet.segments),
    }


def _both(tmp: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    return (
        firmware_run(tmp, METERS, IMAGE_KIB, True),
        firmware_run(tmp, UNICAST_METERS, IMAGE_KIB, False),
    )


@pytest.mark.benchmark(group="firmware-airtime")
def test_firmware_broadcast_against_unicast(benchmark, tmp_path):
    bc, uc = benchmark.pedantic(_both, args=(tmp_path,), rounds=1)
    unicast_s = uc["airtime_s"] / uc["meters"] * METERS
    benchmark.extra_info.update(
        image_kib=IMAGE_KIB,
        meters=METERS,
        broadcast_airtime_s=round(bc["airtime_s"]),
        unicast_airtime_s=round(unicast_s),
        ratio=round(unicast_s / bc["airtime_s"], 1),
        broadcast_virtual_s=round(bc["virtual_s"]),
    )
    assert bc["on_new_image"] == METERS, bc
    assert uc["on_new_image"] == UNICAST_METERS, uc


if __name__ == "__main__":  # python benches/bench_firmware.py: the figures, untimed
    import sys
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as d:
        n, kib = int(sys.argv[1]), int(sys.argv[2])
        t = time.process_time()
        r = firmware_run(d, n, kib, sys.argv[3] != "unicast")
        print(r, f"cpu {time.process_time() - t:.0f} s")
