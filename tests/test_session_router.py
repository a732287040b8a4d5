"""The router of a shared power-line medium: many sessions, one channel,
cross-talk, duplicates, stale and foreign frames."""

from __future__ import annotations

import heapq
import random

import pytest

from osgp.link import lon
from osgp.link.carrier import PlcCarrier, PlcDeviceCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.session import Arbiter, ClientSession, DeviceSession, Router

OWN = lon.SubnetNode(1, 1)
OTHER_CONCENTRATOR = lon.SubnetNode(9, 1)


def meter_address(i):
    return lon.SubnetNode(2 + i // 100, 1 + i % 100)


def meter_tables(i):
    return {
        52: bytearray(bytes([26, 1 + i % 12, 1 + i % 28, i % 24, i % 60, 7, 1])),
        0x17: bytearray(((i * 31 + k * 7) & 0xFF) for k in range(150)),
    }


def build_fleet(n, rng):
    router = Router(OWN)
    clients, devices = [], {}
    for i in range(n):
        addr = meter_address(i)
        key = bytes(rng.randrange(256) for _ in range(12))
        c = ClientSession(
            PlcCarrier(addr, src=(OWN.subnet, OWN.node)), LegacySuite(key, PLC_ENVELOPE)
        )
        d = DeviceSession(
            PlcDeviceCarrier([addr]), LegacySuite(key, PLC_ENVELOPE), tables=meter_tables(i)
        )
        router.attach(c)
        clients.append(c)
        devices[(addr.subnet, addr.node)] = d
    return router, clients, devices


def response_to(other, frame, device):
    """The device's answer to a request from another concentrator."""
    lp = lon.decode_lpdu(frame)
    n = lp.npdu
    foreign = lon.encode_lpdu(lon.Lpdu(lon.Npdu(other.subnet, other.node, n.dest, n.pdu, n.domain)))
    device.receive_data(foreign)
    return foreign, device.poll_transmit()


def with_transaction(frame, trans):
    """The same response with another transaction number (and a valid CRC)."""
    lp = lon.decode_lpdu(frame)
    n = lp.npdu
    pdu = lon.Spdu(n.pdu.type, trans, n.pdu.apdu)
    return lon.encode_lpdu(lon.Lpdu(lon.Npdu(n.src_subnet, n.src_node, n.dest, pdu, n.domain)))


class Medium:
    """Virtual-time channel: the concentrator's frames reach the addressed
    meter; what meters send is heard by the router, with faults."""

    def __init__(self, rng, devices):
        self.rng, self.devices = rng, devices
        self.queue = []  # (time, order, frame) heard by the router
        self.order = 0
        self.sent_to_router = 0

    def hear(self, t, frame):
        self.order += 1
        heapq.heappush(self.queue, (t, self.order, frame))
        self.sent_to_router += 1

    def carry(self, now, frame):
        rng = self.rng
        dest = lon.decode_lpdu(frame).npdu.dest
        d = self.devices[(dest.subnet, dest.node)]
        if rng.random() < 0.05:
            return  # the request is lost
        d.receive_data(frame, now)
        resp = d.poll_transmit(now)
        if resp is None:
            return
        r = rng.random()
        if r < 0.05:
            return  # the response is lost
        late = r < 0.10  # arrives after the client's retry timer
        t = now + (1.6 if late else rng.uniform(0.03, 0.09))
        self.hear(t, resp)
        if rng.random() < 0.15:
            self.hear(t + rng.uniform(0.0, 0.3), resp)  # heard twice (a repeater echo)
        if rng.random() < 0.15:
            # another concentrator reads a random meter: its request and the
            # meter's answer (addressed to it) are on the medium too
            foreign_req, foreign_resp = response_to(OTHER_CONCENTRATOR, frame, d)
            self.hear(t, foreign_req)
            if foreign_resp is not None:
                self.hear(t + 0.01, foreign_resp)
        if rng.random() < 0.05:
            self.hear(t, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
        if rng.random() < 0.05:
            self.hear(t, with_transaction(resp, rng.randrange(16)))  # an answer to another exchange

    def due(self, now):
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(heapq.heappop(self.queue)[2])
        return out

    def next_time(self):
        return self.queue[0][0] if self.queue else None


def run_medium(router, clients, medium, arbiter, *, limit=100_000):
    now, events = 0.0, []
    for _ in range(limit):
        while True:
            picked = arbiter.poll_transmit(now)
            if picked is None:
                break
            medium.carry(now, picked[1])
        batch = medium.due(now)
        if batch:
            events += router.receive(batch, now)
            continue
        events += arbiter.handle_timeout(now)
        times = [t for t in (medium.next_time(), arbiter.next_deadline()) if t is not None]
        if not times:
            return events
        now = max(now, min(times))
    raise AssertionError("the medium did not settle")


def test_thousand_sessions_on_one_medium():
    rng = random.Random(20261201)
    router, clients, devices = build_fleet(1000, rng)
    arbiter = Arbiter(clients, max_outstanding=40)
    ops = [(c, c.read(52), c.read(0x17, 0, 150)) for c in clients]
    medium = Medium(rng, devices)
    run_medium(router, clients, medium, arbiter)
    for i, (_, clock, regs) in enumerate(ops):
        t = meter_tables(i)
        assert clock.error is None and clock.result == bytes(t[52]), (i, clock.error)
        assert regs.error is None and regs.result == bytes(t[0x17]), (i, regs.error)
    # every frame heard was delivered once or dropped with its reason
    assert router.delivered + sum(router.drops.values()) == medium.sent_to_router
    for reason in (
        "duplicate",
        "not for us",
        "not a response",
        "undecodable",
        "stale transaction",
    ):
        assert router.drops[reason] > 0, (reason, router.drops)
    # nothing that reached a session was for someone else
    assert sum(sum(c.drops.values()) + sum(c.carrier.drops.values()) for c in clients) == 0
    assert sum(op[1].exchanges + op[2].exchanges for op in ops) >= 3000


def _pair(i, rng=None):
    addr = meter_address(i)
    key = bytes([i + 1]) * 12
    c = ClientSession(PlcCarrier(addr), LegacySuite(key, PLC_ENVELOPE))
    d = DeviceSession(
        PlcDeviceCarrier([addr]), LegacySuite(key, PLC_ENVELOPE), tables=meter_tables(i)
    )
    return c, d


def test_response_of_another_meter_with_the_same_transaction_number():
    # Two meters waiting on the same 4-bit transaction number: the response of
    # one must never reach the other's security suite (it would fail there).
    router = Router(OWN)
    (a, da), (b, db) = _pair(0), _pair(1)
    router.attach(a)
    router.attach(b)
    op_a, op_b = a.read(52), b.read(52)
    fa, fb = a.poll_transmit(0.0), b.poll_transmit(0.0)
    assert lon.decode_lpdu(fa).npdu.pdu.trans == lon.decode_lpdu(fb).npdu.pdu.trans
    da.receive_data(fa)
    db.receive_data(fb)
    ra, rb = da.poll_transmit(), db.poll_transmit()
    assert router.route(rb) is b
    b.receive_data(rb)
    assert op_b.result == bytes(meter_tables(1)[52]) and not op_a.done
    # the same frame again is a duplicate, not an answer for a
    assert router.route(rb) is None and router.drops["duplicate"] == 1
    assert router.route(ra) is a


def test_sessions_behind_one_repeater_get_distinct_transaction_numbers():
    router = Router(OWN)
    rep = [lon.SubnetNode(5, 5)]
    sessions = [
        ClientSession(PlcCarrier(meter_address(i), path=rep), LegacySuite(bytes(12), PLC_ENVELOPE))
        for i in range(15)
    ]
    for s in sessions:
        router.attach(s)
        s.read(52)
    trans = [lon.decode_lpdu(s.poll_transmit(0.0)).npdu.pdu.trans for s in sessions]
    assert len(set(trans)) == 15
    extra = ClientSession(
        PlcCarrier(meter_address(20), path=rep), LegacySuite(bytes(12), PLC_ENVELOPE)
    )
    router.attach(extra)
    extra.read(52)
    assert lon.decode_lpdu(extra.poll_transmit(0.0)).npdu.pdu.trans not in trans


def test_route_and_route_batch_agree():
    rng = random.Random(7)
    router1, clients1, devices1 = build_fleet(50, random.Random(1))
    router2, clients2, devices2 = build_fleet(50, random.Random(1))
    frames = []
    for c1, c2 in zip(clients1, clients2):
        c1.read(52)
        c2.read(52)
        f1, f2 = c1.poll_transmit(0.0), c2.poll_transmit(0.0)
        assert f1 == f2
        d = devices1[(c1.carrier.dest.subnet, c1.carrier.dest.node)]
        d.receive_data(f1)
        resp = d.poll_transmit()
        frames += [resp, f1]
        if rng.random() < 0.3:
            frames.append(resp)
        if rng.random() < 0.2:
            frames.append(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 30))))
    one = [router1.route(f) for f in frames]
    many = router2.route_batch(frames)
    assert [(clients1.index(s), f) for s, f in zip(one, frames) if s is not None] == [
        (clients2.index(s), f) for s, f in many
    ]
    assert router1.drops == router2.drops and router1.delivered == router2.delivered == 50


def test_router_refuses_a_session_it_cannot_serve():
    from osgp.errors import ConfigurationError
    from osgp.link.carrier import MepCarrier

    router = Router(OWN)
    with pytest.raises(ConfigurationError):
        router.attach(ClientSession(MepCarrier(), LegacySuite(bytes([1]) * 16)))
    with pytest.raises(ConfigurationError):
        router.attach(
            ClientSession(
                PlcCarrier(meter_address(0), src=(4, 4)), LegacySuite(bytes(12), PLC_ENVELOPE)
            )
        )
