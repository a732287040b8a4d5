"""Session layer: timers as deadlines (virtual clock and asyncio), the channel
arbiter (priorities, cancellation, outstanding limit), state that survives a
restart, and per-device table sets."""

from __future__ import annotations

import asyncio
import json

import pytest

from osgp import tables
from osgp.errors import ResponseTimeout
from osgp.link import lon
from osgp.link.carrier import MepCarrier, MepDeviceCarrier, PlcCarrier
from osgp.link.lon_proxy import hop_timeout_ms, tx_timer_ms
from osgp.security.aes_suite import MEP_AES_ENVELOPE, AesPskSuite
from osgp.security.suite import MEP_ENVELOPE, PLC_ENVELOPE, LegacySuite
from osgp.session import (
    MEP,
    PLC,
    Arbiter,
    ClientSession,
    DeviceSession,
    OperationCancelled,
    Priority,
)

from .conftest import MEP_KEY, make_pair, pump

T52 = bytearray(b"\x19\x02\x10\x0f\x3b\x37\x01")


# -- timers ----------------------------------------------------------------------------------
def test_mep_response_timer_and_request_gap_from_the_guide():
    c, d = make_pair("mep", tables={52: bytearray(T52)})
    c.read(52)
    c.read(52)
    assert c.poll_transmit(10.0) is not None
    assert c.next_deadline() == pytest.approx(10.5)  # 500 ms response timeout (MEP p.20)
    d.receive_data(c._last)
    c.receive_data(d.poll_transmit())
    # the next request waits 100 ms after the previous one (MEP p.20-21)
    assert c.poll_transmit(10.05) is None
    assert c.next_deadline() == pytest.approx(10.1)
    assert c.poll_transmit(10.1) is not None


def test_plc_timer_grows_with_the_proxy_chain():
    direct = ClientSession(PlcCarrier(lon.SubnetNode(3, 17)), LegacySuite(bytes(12), PLC_ENVELOPE))
    path = [lon.SubnetNode(3, 40), lon.SubnetNode(3, 41), lon.SubnetNode(3, 42)]
    chained = ClientSession(
        PlcCarrier(lon.SubnetNode(3, 17), path=path), LegacySuite(bytes(12), PLC_ENVELOPE)
    )
    for s in (direct, chained):
        s.read(52)
        s.poll_transmit(0.0)
    base = PLC.timers.response_ms
    assert direct.next_deadline() == pytest.approx(base / 1000)
    # each stage: its repeater retries (timer code 12 = 1,024 ms, 3 retries) plus
    # the per-hop allowance for the stages still ahead (lcs_proxy.c rules: code
    # >= 10 adds 512 ms per remaining stage)
    tx = PLC.proxy.tx
    assert (tx.timer, tx.retries) == (12, 3) and tx_timer_ms(12) == 1024
    last = tx_timer_ms(tx.timer) * (tx.retries + 1)
    extra = sum(hop_timeout_ms(last, 3 - 1 - i, tx.timer, False) for i in range(3))
    assert extra == 3 * last + 512 * (2 + 1 + 0)
    assert chained.next_deadline() == pytest.approx((base + extra) / 1000)


def test_timeouts_on_a_virtual_clock_fail_after_the_retries():
    c, _ = make_pair("plc", tables={52: bytearray(T52)})
    op = c.read(52)
    now, sent = 0.0, []
    while True:
        f = c.poll_transmit(now)
        if f is None:
            break
        sent.append((now, f))
        now = c.next_deadline()
        c.handle_timeout(now)
    assert isinstance(op.error, ResponseTimeout)
    assert len(sent) == 1 + PLC.timers.retries and len({f for _, f in sent}) == 1
    gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:])]
    assert gaps == [pytest.approx(PLC.timers.response_ms / 1000)] * PLC.timers.retries


def test_the_same_sessions_run_on_an_asyncio_loop():
    """A real event loop drives the unchanged sessions: frames travel through
    asyncio queues, timers are loop.call_at at next_deadline()."""

    async def main():
        c, d = make_pair("mep", tables={52: bytearray(T52), 0x17: bytearray(range(200))})
        loop = asyncio.get_running_loop()
        to_device, to_client = asyncio.Queue(), asyncio.Queue()
        ops = [c.read(52), c.read(0x17, 0, 150)]
        dropped = []

        async def device():
            while True:
                frame = await to_device.get()
                d.receive_data(frame, loop.time())
                out = d.poll_transmit(loop.time())
                if out is not None and not dropped:
                    dropped.append(out)  # lose the first response: the timer must fire
                    continue
                if out is not None:
                    loop.call_later(0.005, to_client.put_nowait, out)

        task = asyncio.ensure_future(device())
        while not all(op.done for op in ops):
            f = c.poll_transmit(loop.time())
            if f is not None:
                to_device.put_nowait(f)
                continue
            deadline = c.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                frame = await asyncio.wait_for(to_client.get(), timeout)
            except asyncio.TimeoutError:
                c.handle_timeout(loop.time())
                continue
            c.receive_data(frame, loop.time())
        task.cancel()
        return ops

    ops = asyncio.run(asyncio.wait_for(main(), 10))
    assert ops[0].result == bytes(T52) and ops[0].retries == 1
    assert ops[1].result == bytes(range(150))


# -- arbiter -----------------------------------------------------------------------------------
def _mep_pair(n_tables=None):
    c = ClientSession(MepCarrier(), LegacySuite(MEP_KEY, MEP_ENVELOPE))
    d = DeviceSession(
        MepDeviceCarrier(), LegacySuite(MEP_KEY, MEP_ENVELOPE), tables={52: bytearray(T52)}
    )
    return c, d


def test_arbiter_serves_alarms_before_scheduled_collection():
    pairs = [_mep_pair() for _ in range(3)]
    arb = Arbiter([c for c, _ in pairs], max_outstanding=1)
    order = []
    sched = pairs[0][0].read(52, priority=Priority.SCHEDULED)
    demand = pairs[1][0].read(52, priority=Priority.ON_DEMAND)
    alarm = pairs[2][0].read(52, priority=Priority.ALARM)
    devices = {id(c): d for c, d in pairs}
    now = 0.0
    while not all(op.done for op in (sched, demand, alarm)):
        picked = arb.poll_transmit(now)
        assert picked is not None
        s, frame = picked
        assert arb.poll_transmit(now) is None  # one exchange at a time
        order.append(s)
        d = devices[id(s)]
        d.receive_data(frame)
        s.receive_data(d.poll_transmit())
    assert order == [pairs[2][0], pairs[1][0], pairs[0][0]]


def test_cancel_a_queued_and_an_in_flight_operation():
    c, d = _mep_pair()
    first, second, third = c.read(52), c.read(52), c.read(52)
    assert second.cancel() and second.done and isinstance(second.error, OperationCancelled)
    frame = c.poll_transmit(0.0)  # first is in flight
    assert first.cancel()
    assert not first.done  # ends with the exchange in flight
    d.receive_data(frame)
    c.receive_data(d.poll_transmit())
    assert first.done and isinstance(first.error, OperationCancelled)
    pump(c, d, now=1.0)
    assert third.result == bytes(T52) and not third.cancel()


def test_arbiter_limits_outstanding_requests_and_lets_acks_through():
    pairs = [make_pair("optical", tables={52: bytearray(T52)}) for _ in range(3)]
    arb = Arbiter([c for c, _ in pairs], max_outstanding=2)
    for c, _ in pairs:
        c.read(52)
    sent = [arb.poll_transmit(0.0) for _ in range(3)]
    assert sent[2] is None and arb.outstanding == 2
    # a device answers: the client owes it an ACK, which goes out despite the limit
    s, frame = sent[0]
    d = next(d for c, d in pairs if c is s)
    d.receive_data(frame)
    d.poll_transmit()  # the device's ACK of the request
    s.receive_data(b"\x06")
    s.receive_data(d.poll_transmit())  # the response: the client owes an ACK
    nxt = arb.poll_transmit(0.0)
    assert nxt == (s, b"\x06")


def test_arbiter_asks_no_session_while_the_medium_is_full():
    pairs = [_mep_pair() for _ in range(3)]
    arb = Arbiter([c for c, _ in pairs], max_outstanding=1)
    asked = []
    for c, _ in pairs:
        c.read(52)
        poll = c.poll_transmit
        c.poll_transmit = lambda now=0.0, c=c, poll=poll: asked.append(c) or poll(now)
    s, frame = arb.poll_transmit(0.0)
    assert asked == [s]
    for _ in range(3):
        assert arb.poll_transmit(0.0) is None
    assert asked == [s] and arb.outstanding == 1  # the two waiting were not asked
    d = next(d for c, d in pairs if c is s)
    d.receive_data(frame)
    s.receive_data(d.poll_transmit())  # its response: the medium has room again
    nxt, _ = arb.poll_transmit(1.0)
    assert nxt is not s and asked == [s, nxt] and arb.outstanding == 1


# -- state ---------------------------------------------------------------------------------------
def test_legacy_sessions_resume_from_plain_data_without_resync():
    c, d = make_pair("plc", tables={52: bytearray(T52)})
    for _ in range(3):
        op = c.read(52)
        pump(c, d)
        assert op.error is None
    snap_c, snap_d = json.loads(json.dumps(c.state())), json.loads(json.dumps(d.state()))
    c2, d2 = make_pair("plc", tables={52: bytearray(T52)})
    c2.restore(snap_c)
    d2.restore(snap_d)
    assert c2.state() == c.state() and d2.state() == d.state()
    op = c2.read(52)
    pump(c2, d2)
    assert op.result == bytes(T52) and op.exchanges == 1  # no 0x0C on the way


def test_aes_sessions_resume_from_plain_data_without_resync():
    key, nid = bytes(range(16)), bytes.fromhex("04a1b2c3d4e5")

    def pair(cstate=None, dstate=None):
        c = ClientSession(
            MepCarrier(), AesPskSuite(key, nid, envelope=MEP_AES_ENVELOPE), state=cstate
        )
        d = DeviceSession(
            MepDeviceCarrier(),
            AesPskSuite(key, nid, role="device", envelope=MEP_AES_ENVELOPE),
            tables={52: bytearray(T52)},
            state=dstate,
        )
        return c, d

    c, d = pair()
    for _ in range(5):
        c.read(52)
    pump(c, d)
    assert c.suite.ctx.send_seq == 5 and c.suite.ctx.usage.count == 10
    sc, sd = json.loads(json.dumps(c.state())), json.loads(json.dumps(d.state()))
    c2, d2 = pair(sc, sd)
    assert c2.suite.ctx.window.state() == c.suite.ctx.window.state()
    assert c2.suite.ctx.usage.count == 10 and d2.suite.ctx.send_seq == d.suite.ctx.send_seq
    op = c2.read(52)
    pump(c2, d2)
    assert op.result == bytes(T52) and op.exchanges == 1
    # a replay of a frame sent before the restart is still refused
    old = pair()[0]
    old.read(52)
    replay = old.poll_transmit(0.0)
    d2.receive_data(replay)
    assert d2.poll_transmit() is not None  # answered (0x0C), never served as a read
    assert d2.suite.ctx.window.highest == 5


def test_state_of_another_link_is_refused():
    from osgp.errors import ProtocolError

    c, _ = make_pair("mep")
    p, _ = make_pair("plc")
    with pytest.raises(ProtocolError):
        p.restore(c.state())


# -- table sets ------------------------------------------------------------------------------------
def test_a_device_dialect_overrides_one_table_only():
    bt52_v2 = {
        "id": 52,
        "name": "BT52",
        "title": "Clock (firmware dialect: seconds since 2000, UINT32)",
        "fields": [{"name": "SECONDS", "type": "UINT32"}],
    }
    dialect = tables.DEFAULT_SET.derive([bt52_v2], name="fw-4.2")
    assert dialect.decode(52, (1234).to_bytes(4, "little"))["SECONDS"] == 1234
    # the default set and every other table are untouched
    assert tables.decode(52, bytes.fromhex("0402100f3b3700"))["CLOCK_CALENDAR"].year == 2004
    assert dialect.program(1) is tables.program(1)
    assert 52 in dialect and 52 + 4096 in dialect and 999 not in dialect
    # a session bundle carries the device's own set
    assert MEP.with_tables(dialect).tables is dialect and MEP.tables is tables.DEFAULT_SET
