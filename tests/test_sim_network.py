"""The simulated power-line network: airtime, loss, repeating through Annex G
proxy chains, capture to pcapng, determinism."""

from __future__ import annotations

import io

import pytest

from osgp.link import lon
from osgp.link.carrier import PlcCarrier, PlcDeviceCarrier
from osgp.link.pcapng import parse_cnip_udp_frame, read_pcapng
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.session import ClientSession, DeviceSession
from osgp.sim.network import MediumProfile, Network

SPACING = 100.0  # metres between meters on the feeder


def feeder(n, *, seed=1, capture=None, base_loss=0.02, reach=250.0):
    net = Network(seed=seed, capture=capture)
    seg = net.add_segment("feeder-1", profile=MediumProfile(reach_m=reach, base_loss=base_loss))
    clients = []
    for i in range(n):
        addr = lon.SubnetNode(2, 1 + i)
        key = bytes([i + 1]) * 12
        image = bytearray(((i * 13 + k) & 0xFF) for k in range(40))
        dev = DeviceSession(
            PlcDeviceCarrier([addr]), LegacySuite(key, PLC_ENVELOPE), tables={0x17: image}
        )
        seg.add_meter(addr, SPACING * (i + 1), dev)
    for i in range(n):
        addr = lon.SubnetNode(2, 1 + i)
        path = seg.route_to(addr)
        c = ClientSession(
            PlcCarrier(addr, path=path), LegacySuite(bytes([i + 1]) * 12, PLC_ENVELOPE)
        )
        seg.attach(c)
        clients.append(c)
    return net, seg, clients


def expected(i):
    return bytes(((i * 13 + k) & 0xFF) for k in range(40))


def test_far_meters_are_read_through_repeater_chains():
    net, seg, clients = feeder(12)
    assert len(seg.route_to(lon.SubnetNode(2, 12))) >= 5  # 1,200 m away, 200 m a hop
    ops = [c.read(0x17, 0, 40) for c in clients]
    net.run(until=3600)
    for i, op in enumerate(ops):
        assert op.error is None and op.result == expected(i), (i, op.error)
    relayed = sum(n.relayed for n in seg.nodes.values())
    assert relayed > 0 and seg.stats["frames"] > 2 * len(clients)
    # half duplex: the medium was never carrying two frames at once
    assert seg.airtime_s <= net.now


def test_airtime_follows_the_bit_rate():
    prof = MediumProfile()
    assert prof.airtime(100) == pytest.approx((100 + 2 + 8) * 8 / 2360)


def test_a_dead_stage_answers_0x4c_and_the_operation_fails_with_its_hop():
    net, seg, clients = feeder(6)
    far = clients[-1]
    path = far.carrier.path
    assert len(path) >= 2
    dead = seg.nodes[(path[1].subnet << 7) | path[1].node]
    dead.position = 1e9  # out of everyone's reach
    op = far.read(0x17, 0, 40)
    net.run(until=3600)
    assert op.done and op.error is not None and "hop" in str(op.error)


def test_capture_is_deterministic_and_readable():
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        net, seg, clients = feeder(5, seed=42, capture=buf)
        for c in clients:
            c.read(0x17, 0, 40)
        net.run(until=600)
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    frames = list(read_pcapng(outs[0]))
    assert len(frames) == seg.stats["frames"]
    times = [t for t, _, _ in frames]
    assert times == sorted(times)
    for _, _, f in frames:
        _, lpdu, _ = parse_cnip_udp_frame(f)
        lon.decode_lpdu(lpdu, crc=False)  # every captured payload is a LonTalk frame
    dpkt = pytest.importorskip("dpkt")
    assert len(list(dpkt.pcapng.Reader(io.BytesIO(outs[0])))) == len(frames)
