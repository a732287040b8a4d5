"""The simulated network's event loop: a session's timer that comes due is
served at its deadline while other exchanges keep the medium busy."""

from __future__ import annotations

import io

from osgp.link import lon
from osgp.link.carrier import PlcCarrier, PlcDeviceCarrier
from osgp.link.pcapng import parse_cnip_udp_frame, read_pcapng
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.session import ClientSession, DeviceSession
from osgp.session.events import Completed, Failed
from osgp.sim.network import MediumProfile, Network

KEY = bytes(range(1, 13))


def _segment(capture=None):
    net = Network(seed=3, capture=capture)
    seg = net.add_segment("s", profile=MediumProfile(loss_free=True))
    addr = lon.SubnetNode(2, 1)
    dev = DeviceSession(
        PlcDeviceCarrier([addr]), LegacySuite(KEY, PLC_ENVELOPE), tables={0x17: bytearray(40)}
    )
    seg.add_meter(addr, 50.0, dev)
    return net, seg


def _client(seg, addr):
    c = ClientSession(PlcCarrier(addr, path=[]), LegacySuite(KEY, PLC_ENVELOPE))
    seg.attach(c)
    return c


def test_a_timer_that_comes_due_is_served_at_its_deadline():
    buf = io.BytesIO()
    net, seg = _segment(buf)
    live = _client(seg, lon.SubnetNode(2, 1))
    dead = _client(seg, lon.SubnetNode(2, 99))  # no such meter: every try times out
    seen = []
    seg.on_events = lambda evs: seen.extend((net.now, e) for e in evs)
    reads = [live.read(0x17, 0, 40) for _ in range(30)]  # the medium stays busy meanwhile
    lost = dead.read(0x17, 0, 40)
    net.run(until=3600)
    assert all(op.error is None for op in reads)
    assert lost.done and lost.error is not None
    failed = [t for t, e in seen if isinstance(e, Failed)]
    assert len(failed) == 1 and sum(isinstance(e, Completed) for _, e in seen) == 30
    tries = [
        (t - net.epoch_ns) / 1e9
        for t, _, f in read_pcapng(buf.getvalue())
        if _dest(f) == lon.SubnetNode(2, 99)
    ]
    assert len(tries) == dead.retries + 1
    # the last try's timer ran its whole length from the frame's start, no more
    timeout = dead.timers.response_timeout(0)
    assert abs(failed[0] - (tries[-1] + timeout)) < 1e-9


def _dest(frame: bytes) -> lon.Address:
    _, lpdu, _ = parse_cnip_udp_frame(frame)
    return lon.decode_lpdu(lpdu, crc=False).npdu.dest


def _wake_times(net, seg):
    return sorted(e[0] for e in net._heap if e[2] == net._wake and e[3][0] is seg)


def test_schedule_wake_pushes_as_wake_at_does():
    # Network._schedule_wake writes Network._wake_at out: one wake event per
    # distinct time of a segment, whichever of the two asked for it
    net, seg = _segment()
    seg.busy_until = 5.0
    net._schedule_wake(seg)
    net._wake_at(seg, 5.0)
    net._schedule_wake(seg, 5.0)
    net._wake_at(seg, 7.0)
    net._schedule_wake(seg, 7.0)
    net._schedule_wake(seg, 9.0)
    net._wake_at(seg, 9.0)
    assert _wake_times(net, seg) == [5.0, 7.0, 9.0]
    assert seg._wakes == {5.0, 7.0, 9.0}
    net.now = 6.0
    net._schedule_wake(seg, 2.0)  # a time gone by: as soon as possible
    assert _wake_times(net, seg) == [5.0, 6.0, 7.0, 9.0]


def test_a_reception_is_ordered_with_other_events_of_its_instant_as_at_orders_them():
    # Segment._transmit writes Network.at out for the reception event: it
    # takes its place among the events of the same instant in the order
    # they were scheduled
    net, seg = _segment()
    node = seg.nodes[(2 << 7) | 1]
    frame = lon.encode_lpdu(
        lon.Lpdu(lon.Npdu(1, 1, lon.SubnetNode(2, 1), lon.Spdu(lon.SPDU_REQUEST, 1, b"\x30")))
    )
    end = seg.profile.airtime(len(frame))
    seen = []
    net.at(end, lambda now: seen.append(("before", node.heard)))
    seg.send(None, frame)
    net.at(0.0, lambda now: net.at(end, lambda now: seen.append(("after", node.heard))))
    net.run(until=10.0)
    assert seen == [("before", 0), ("after", 1)]
