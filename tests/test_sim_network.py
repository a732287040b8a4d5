"""The simulated power-line network: airtime, loss, repeating through Annex G
proxy chains, capture to pcapng, determinism."""

from __future__ import annotations

import io

import pytest

from osgp.link import lon
from osgp.link.carrier import PlcCarrier, PlcDeviceCarrier, ProxyFailed
from osgp.link.pcapng import parse_cnip_udp_frame, read_pcapng
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.session import ClientSession, DeviceSession
from osgp.sim.network import SENT_WINDOW_S, MediumProfile, Network

SPACING = 100.0  # metres between meters on the feeder


def feeder(n, *, seed=1, capture=None, base_loss=0.02, reach=250.0, loss_free=False):
    net = Network(seed=seed, capture=capture)
    prof = MediumProfile(reach_m=reach, base_loss=base_loss, loss_free=loss_free)
    seg = net.add_segment("feeder-1", profile=prof)
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


class _DeafFor:
    """A meter that does not hear the first ``deaf`` requests it is sent."""

    def __init__(self, device, deaf):
        self.device, self.deaf = device, deaf

    def receive_data(self, frame, now):
        if self.deaf:
            self.deaf -= 1
            return
        self.device.receive_data(frame, now)

    def poll_transmit(self, now):
        return self.device.poll_transmit(now)


def _silent_target_chain(stages, deaf):
    net, seg, clients = feeder(stages + 1, loss_free=True)
    far = clients[-1]
    assert len(far.carrier.path) == stages
    node = seg.nodes[(2 << 7) | (stages + 1)]
    node.device = None if deaf is None else _DeafFor(node.device, deaf)
    return net, seg, far


@pytest.mark.parametrize("stages", [2, 3, 5])
def test_a_silent_target_is_reported_by_the_agent_not_by_a_stage_before_it(stages):
    # every stage waits for all the stages ahead of it, the agent included,
    # so the agent's 0x4C (count 0: its target did not answer) comes back
    # before any earlier stage gives up
    net, seg, far = _silent_target_chain(stages, None)
    op = far.read(0x17, 0, 40)
    net.run(until=3600)
    assert op.done and isinstance(op.error, ProxyFailed)
    assert (op.error.count, op.error.hop) == (0, stages)
    # one timeout a try (the agent's), the rest relayed its answer
    assert seg.stats["proxy stage timed out"] == op.retries + 1


@pytest.mark.parametrize("stages", [2, 3, 5])
def test_an_answer_on_the_agents_last_retry_comes_back(stages):
    # the agent sends the request 1 + retries times (the SICB's TxCtrl);
    # a target that hears only the last still gets its answer through
    net, seg, far = _silent_target_chain(stages, 3)
    assert far.carrier.proxy_tx.retries == 3
    op = far.read(0x17, 0, 40)
    net.run(until=3600)
    assert op.error is None and op.result == expected(stages)
    assert seg.stats["proxy stage timed out"] == 0


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


def test_a_repeated_frame_counts_once_as_needed_and_memory_is_bounded():
    net = Network(seed=1)
    seg = net.add_segment("s", profile=MediumProfile(loss_free=True))

    def request(i):
        spdu = lon.Spdu(lon.SPDU_REQUEST, 1, bytes([0x30, 0, i]))
        return lon.encode_lpdu(lon.Lpdu(lon.Npdu(1, 1, lon.SubnetNode(2, 9), spdu)))

    for t in (0.0, 5.0, 60.0):  # a retry repeats its frame within seconds
        net.at(t, lambda now: seg.send(None, request(0)))
    net.run(until=100.0)
    assert (seg.stats["frames"], seg.needed_frames) == (3, 1)
    # other frames, one every 50 s for two windows: the first one is forgotten
    n = int(2 * SENT_WINDOW_S // 50) + 2
    for i in range(1, n + 1):
        net.at(50.0 + 50 * i, lambda now, i=i: seg.send(None, request(i)))
    net.run(until=100.0 + 50 * n)
    assert seg.needed_frames == 1 + n
    assert len(seg._sent) + len(seg._sent_before) <= 2 * SENT_WINDOW_S // 50 + 1 < n + 1
    net.at(net.now, lambda now: seg.send(None, request(0)))
    net.run(until=net.now + 10)
    assert seg.needed_frames == 2 + n
