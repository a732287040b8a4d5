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
