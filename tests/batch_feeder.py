"""A simulated feeder of SimMeters read through the power-line network with
capture on: the sessions' own results are what ``osgp decode`` must
reproduce from the capture (tests/test_batch*.py)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from osgp import tables
from osgp.link import lon
from osgp.link.carrier import PlcCarrier, PlcDeviceCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.session import ClientSession
from osgp.sim import SimMeter
from osgp.sim.network import MediumProfile, Network

START = 1_767_225_600  # 2026-01-01T00:00:00Z, the network's default epoch
DIMS = (0, 21, 61, 71)
TABLES = (23, 28, 62, 63, 74, 64)  # registers, present values, LP control and status, events, data
SPACING = 100.0
# a session counts retries over a whole operation (all partial reads of BT64)
RETRIES = 30


@dataclass
class Feeder:
    capture: bytes
    keys: Dict[Tuple[int, int], bytes]
    meters: Dict[Tuple[int, int], SimMeter]
    #: what each session read: {(subnet, node): {table: image}} (last read wins)
    read: Dict[Tuple[int, int], Dict[int, bytes]] = field(default_factory=dict)
    #: the times (network seconds) at which each round started
    rounds: List[float] = field(default_factory=list)


def key_of(i: int) -> bytes:
    return bytes([0x30 + i]) * 12


def build(n: int = 4, *, seed: int = 7, rounds: Tuple[float, ...] = (1.5 * 86400,)) -> Feeder:
    """``n`` meters 100 m apart (the far ones behind repeaters), each read
    (dimension tables, then TABLES, BT64 in partial reads) at each time of
    ``rounds``; every frame captured."""
    buf = io.BytesIO()
    net = Network(seed=seed, capture=buf)
    seg = net.add_segment("feeder", profile=MediumProfile(reach_m=250.0, base_loss=0.02))
    meters, keys, clients = {}, {}, {}
    for i in range(n):
        addr = lon.SubnetNode(2, 1 + i)
        k = (addr.subnet, addr.node)
        keys[k] = key_of(i)
        link = (PlcDeviceCarrier([addr]), LegacySuite(keys[k], PLC_ENVELOPE))
        meters[k] = SimMeter(f"SIM{i:07d}", seed=seed * 100 + i, start=START, links=[link])
        seg.add_meter(addr, SPACING * (i + 1), meters[k].ports[0])
    for k in meters:
        addr = lon.SubnetNode(*k)
        c = ClientSession(
            PlcCarrier(addr, path=seg.route_to(addr)),
            LegacySuite(keys[k], PLC_ENVELOPE),
            retries=RETRIES,
        )
        seg.attach(c)
        clients[k] = c
    f = Feeder(b"", keys, meters)
    for t in rounds:
        net.run(until=t)
        f.rounds.append(t)
        dims = {k: [c.read(d) for d in DIMS] for k, c in clients.items()}
        net.run(until=t + 3000)
        ops = {}
        for k, c in clients.items():
            ctx = {f"BT{d:02d}": _ok(op) for d, op in zip(DIMS, dims[k])}
            f.read.setdefault(k, {}).update({d: ctx[f"BT{d:02d}"] for d in DIMS})
            ops[k] = [_read(c, tid, ctx) for tid in TABLES]
        net.run(until=t + 30000)
        for k in clients:
            f.read[k].update({tid: _ok(op) for tid, op in zip(TABLES, ops[k])})
    f.capture = buf.getvalue()
    return f


def _read(c: ClientSession, tid: int, ctx: dict):
    """One read, in partial reads when the table is larger than a response
    holds (as a collector does)."""
    if tid == 64:
        size = tables.decode(61, ctx["BT61"], ctx)["LP_MEMORY_LEN"]
    else:
        size = len(tables.encode(tid, {}, ctx))
    return c.read(tid, 0, size) if size > c.services.max_read else c.read(tid)


def _ok(op) -> bytes:
    assert op.done and op.error is None, op.error
    return op.result
