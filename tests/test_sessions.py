"""Client session wired back to back with a device session, for every service
over every link (MEP, optical C12.18, PLC/LonTalk)."""

from __future__ import annotations

import pytest

from osgp.errors import AuthenticationError, DeviceError, ResponseTimeout
from osgp.services import procedures as P
from osgp.services.messages import ET, PED, FullRead, PartialRead
from osgp.session import AlertReceived, Completed, Failed

from .conftest import make_pair, pump


def run(client, device, op, **kw):
    events = pump(client, device, **kw)
    assert op.done, events
    return events


def tables():
    return {
        0x17: bytearray(range(200)),  # BT23-sized test image
        52: bytearray(b"\x19\x02\x10\x0f\x3b\x37\x01"),
        ET + 3: bytearray(b"SERIAL-0001".ljust(30, b" ")),
        1000: bytearray(1000),
    }


def test_full_read(link_name):
    c, d = make_pair(link_name, tables=tables())
    op = c.read(52)
    run(c, d, op)
    assert op.result == b"\x19\x02\x10\x0f\x3b\x37\x01"


def test_large_partial_read_is_split_and_reassembled(link_name):
    t = tables()
    t[1000][:] = bytes(i * 7 & 0xFF for i in range(1000))
    c, d = make_pair(link_name, tables=t)
    op = c.read(1000, 10, 900)
    run(c, d, op)
    assert op.result == bytes(t[1000][10:910])
    assert op.exchanges == -(-900 // c.services.max_read)


def test_read_beyond_end_returns_zeros(link_name):
    c, d = make_pair(link_name, tables=tables())
    op = c.read(52, 4, 8)
    run(c, d, op)
    assert op.result == b"\x3b\x37\x01" + bytes(5)


def test_large_write_is_split(link_name):
    t = tables()
    c, d = make_pair(link_name, tables=t)
    data = bytes(range(256)) * 2
    op = c.write(1000, data, 100)
    run(c, d, op)
    assert op.error is None and bytes(t[1000][100:612]) == data
    assert op.exchanges == -(-512 // c.services.max_write)


def test_full_write(link_name):
    t = tables()
    c, d = make_pair(link_name, tables=t)
    op = c.write(52, b"\x1a\x01\x01\x00\x00\x00\x00")
    run(c, d, op)
    assert op.error is None and t[52][:2] == b"\x1a\x01"


def test_unknown_table_raises_device_error(link_name):
    c, d = make_pair(link_name, tables=tables())
    op = c.read(99)
    run(c, d, op)
    assert isinstance(op.error, DeviceError) and op.error.code == 0x05
    assert op.error.name == "inappropriate action requested"


def test_procedure(link_name):
    seen = []

    def ep17(params):
        seen.append(params)
        return (0, b"\xaa")

    c, d = make_pair(link_name, tables=tables(), procedures={0x811: ep17})
    op = c.call(17, b"\x00\xf8\x03", mfg=True)
    run(c, d, op)
    assert op.result == b"\xaa" and seen == [b"\x00\xf8\x03"]
    assert d.tables[P.BT07][:3] == bytes([0x11, 0x08, 5])  # EP17, PSN 5


def test_slow_procedure_is_polled(link_name):
    c, d = make_pair(
        link_name,
        tables=tables(),
        procedures={10: lambda p: iter([(1, b""), (1, b""), (0, b"done")])},
    )
    op = c.call(10)
    run(c, d, op)
    assert op.result == b"done"


def test_procedure_failure_codes(link_name):
    c, d = make_pair(link_name, tables=tables(), procedures={5: lambda p: (2, b"")})
    op = c.call(5)
    op2 = c.call(77)
    run(c, d, op)
    assert isinstance(op.error, P.ProcedureError) and op.error.result == 2
    pump(c, d)
    assert isinstance(op2.error, P.ProcedureError) and op2.error.result == 6


def test_transaction(link_name):
    c, d = make_pair(link_name, tables=tables())
    op = c.transact([PartialRead(0x17, 0, 4), FullRead(52), PartialRead(99, 0, 1)], txn=7)
    run(c, d, op)
    r = op.result
    assert [x.code for x in r] == [0, 0, 5]
    assert r[0].data == bytes([0, 1, 2, 3]) and r[1].data == bytes(d.tables[52])


def test_transaction_duplicate_not_reexecuted(link_name):
    c, d = make_pair(link_name, tables=tables())
    from osgp.services.messages import PartialWrite

    d.tables[1000][0] = 0
    op = c.transact([PartialWrite(1000, 0, b"\x05")], txn=9)
    run(c, d, op)
    d.tables[1000][0] = 0
    op2 = c.transact([PartialWrite(1000, 0, b"\x05")], txn=9)
    pump(c, d)
    assert op2.done and d.tables[1000][0] == 0  # same txn + CRC: not executed again


def test_group_broadcast_transaction(link_name):
    c, d = make_pair(link_name, tables=tables(), groups=(0x0102,))
    op = c.transact([FullRead(52)], txn=3, groups=(0x01FF,))
    run(c, d, op)
    assert op.result[0].data == bytes(d.tables[52])
    op2 = c.transact([FullRead(52)], txn=4, groups=(0x0203,))
    pump(c, d)
    assert op2.result == []  # group-broadcast denied


def test_pending_table_write(link_name):
    c, d = make_pair(link_name, tables=tables())
    from osgp.services.messages import pending_write

    ped = PED(0, bytes([26, 1, 1, 0, 0]), self_read=True)
    w = pending_write(52, 0, b"\x1a\x01\x01", ped)
    op = c.write(w.table, w.data, 0)
    run(c, d, op)
    assert d.pending[52][0] == ped
    assert "absolute time, at 2026-01-01 00:00 UTC, self-read first" in d.events[-1]
    d.activate_pending(52)
    assert d.tables[52][:3] == b"\x1a\x01\x01"


def test_retry_resends_identical_frame(link_name):
    c, d = make_pair(link_name, tables=tables())
    op = c.read(52)
    sent = c.poll_transmit(0.0)
    deadline = c.next_deadline()
    assert deadline == c.profile.timers.response_timeout()
    assert c.handle_timeout(deadline - 0.001) == [] and c.poll_transmit(deadline - 0.001) is None
    assert c.handle_timeout(deadline) == []
    retry = c.poll_transmit(deadline)
    assert retry == sent
    d.receive_data(retry, deadline)
    pump(c, d, now=deadline)
    assert op.done and op.retries == 1


def test_timeout_exhaustion_fails(link_name):
    c, d = make_pair(link_name, tables=tables())
    op = c.read(52)
    now, evs = 0.0, []
    while c.poll_transmit(now) is not None:
        now = c.next_deadline()
        evs += c.handle_timeout(now)
    assert op.retries == c.retries
    assert op.done and isinstance(op.error, ResponseTimeout)
    assert any(isinstance(e, Failed) for e in evs)


@pytest.mark.parametrize("link", ["mep", "plc"])
def test_sequence_resync(link):
    c, d = make_pair(link, tables=tables(), seq_client=0x01020303, seq_device=0x77635B90)
    op = c.read(52)
    run(c, d, op)
    assert op.result is not None and op.exchanges == 2
    assert c.counter.last == 0x77635B91 and d.window.current == 0x77635B91


@pytest.mark.parametrize("link", ["mep", "plc"])
def test_encrypted_exchange(link):
    c, d = make_pair(link, tables=tables(), encrypt=True)
    op = c.read(0x17, 0, 60)
    run(c, d, op)
    assert op.result == bytes(range(60))


@pytest.mark.parametrize("link", ["mep", "plc"])
def test_wrong_key_gets_0x0b(link):
    from osgp.security.suite import MEP_ENVELOPE, PLC_ENVELOPE, LegacySuite

    c, d = make_pair(link, tables=tables())
    env = MEP_ENVELOPE if link == "mep" else PLC_ENVELOPE
    d.suite = LegacySuite(bytes(range(len(c.suite.keys[0]))), env)
    op = c.read(52)
    run(c, d, op)
    assert isinstance(op.error, AuthenticationError)


def test_lost_response_then_retry_gets_0x0c_then_succeeds():
    c, d = make_pair("mep", tables=tables())
    op = c.read(52)
    lost = []

    def drop(side, data):
        if side == "d" and not lost:
            lost.append(data)
            return True
        return False

    pump(c, d, drop=drop)  # lost response, retry of the identical frame ->
    # reused number -> 0x0C -> resync -> ok
    assert op.result == bytes(d.tables[52]) and op.exchanges == 2


def test_mep_alert_is_reported():
    c, d = make_pair("mep", tables=tables())
    assert c.receive_data(b"\x00\x00") == [AlertReceived()]


def test_optical_session_services():
    from osgp.link import optical as o

    c, d = make_pair("optical", tables=tables(), open_session=False)
    ops = [
        c.exchange(o.Identify()),
        c.exchange(o.Negotiate()),
        c.exchange(o.Logon(2, "osgp")),
        c.exchange(o.Security(b"secret")),
        c.read(52),
        c.exchange(o.Logoff()),
        c.exchange(o.Terminate()),
    ]
    pump(c, d)
    assert all(op.done and op.error is None for op in ops)
    assert o.IdentifyResponse.decode(ops[0].result).version == 1
    assert o.NegotiateResponse.decode(ops[1].result) == o.NegotiateResponse(64, 2, 6)


def test_optical_nak_and_retry():
    c, d = make_pair("optical", tables=tables())
    op = c.read(52)
    first = c.poll_transmit(0.0)
    bad = bytearray(first)
    bad[-1] ^= 0xFF
    assert d.receive_data(bytes(bad)) == []
    assert d.poll_transmit(0.0) == b"\x15"  # NAK
    assert c.receive_data(b"\x15") == []
    assert c.poll_transmit(0.0) == first  # retransmitted
    d.receive_data(first)
    pump(c, d)
    assert op.result == bytes(d.tables[52])


def test_plc_proxy_chain_session():
    from osgp.link import lon, lon_proxy

    path = [lon.SubnetNode(3, 40), lon.SubnetNode(3, 41), lon.SubnetNode(3, 42)]
    c, d = make_pair("plc", tables=tables(), path=path)
    op = c.read(52)

    def relay_net(frame):
        # hop by hop through the repeaters until the agent forwards to the target
        lp = lon.decode_lpdu(frame)
        p = lon_proxy.decode_proxy(lp.npdu.pdu.apdu)
        hops = [lp.npdu.dest]
        while True:
            nxt, fwd = lon_proxy.relay(p, own_subnet=3, src_subnet=lp.npdu.src_subnet)
            if fwd is None:
                break
            hops.append(lon.SubnetNode(nxt[0], nxt[1]))
            p = fwd
        assert hops == path
        return frame

    first = c.poll_transmit(0.0)
    relay_net(first)
    # the device accepts the agent-delivered proxy frame addressed to it
    lp = lon.decode_lpdu(first)
    delivered = lon.encode_lpdu(
        lon.Lpdu(lon.Npdu(3, 42, lon.SubnetNode(3, 17), lp.npdu.pdu, lp.npdu.domain))
    )
    d.receive_data(delivered)
    resp = d.poll_transmit(0.0)
    rl = lon.decode_lpdu(resp)
    back = lon.encode_lpdu(
        lon.Lpdu(lon.Npdu(3, 40, lon.SubnetNode(1, 1), rl.npdu.pdu, rl.npdu.domain))
    )
    ev = c.receive_data(back)
    assert op.result == bytes(d.tables[52]) and any(isinstance(e, Completed) for e in ev)


def test_plc_proxy_failure_reports_stage():
    from osgp.link import lon, lon_proxy

    path = [lon.SubnetNode(3, 40), lon.SubnetNode(3, 41)]
    c, d = make_pair("plc", tables=tables(), path=path)
    op = c.read(52)
    first = lon.decode_lpdu(c.poll_transmit(0.0))
    fail = lon.encode_lpdu(
        lon.Lpdu(
            lon.Npdu(
                3,
                40,
                lon.SubnetNode(1, 1),
                lon.Spdu(2, first.npdu.pdu.trans, lon_proxy.encode_failure(1)),
            )
        )
    )
    c.receive_data(fail)
    # a failed chain costs one try: the request goes out again as a new transaction
    again = lon.decode_lpdu(c.poll_transmit(0.0))
    assert not op.done and op.retries == 1 and again.npdu.pdu.trans != first.npdu.pdu.trans
    assert again.npdu.pdu.apdu != first.npdu.pdu.apdu  # re-sealed: the next sequence number
    c.retries = 1  # no tries left: the next failure ends the operation with its stage
    fail2 = lon.encode_lpdu(
        lon.Lpdu(
            lon.Npdu(
                3,
                40,
                lon.SubnetNode(1, 1),
                lon.Spdu(2, again.npdu.pdu.trans, lon_proxy.encode_failure(1)),
            )
        )
    )
    c.receive_data(fail2)
    assert op.done and "hop 1" in str(op.error) and op.error.hop == 1


@pytest.mark.parametrize("link", ["mep", "plc"])
def test_full_read_larger_than_the_link_is_refused_with_onp(link):
    c, d = make_pair(link, tables={1000: bytearray(1000)})
    op = c.read(1000)  # a full read: 1,000 bytes cannot fit one MEP or PLC message
    run(c, d, op)
    assert isinstance(op.error, DeviceError) and op.error.code == 0x04
    assert d.drops["response too large for the link"] == 1 and op.retries == 0
    part = c.read(1000, 0, 1000)  # the partial reads a collector uses instead
    run(c, d, part)
    assert part.result == bytes(1000)
