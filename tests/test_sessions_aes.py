"""Client and device sessions back to back with the OSGP-AES-128-PSK suite
(osgp.security.aes_suite) over MEP, PLC and a PLC proxy chain.

Expected frames are checked against the ``cryptography`` package's AES-CCM
(an independent implementation), with the nonce written out from the
INFERRED layout of AesPskProfile: flags(1) || address(6) || key id(2 BE) || seq(4 BE).
"""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from osgp import session as S
from osgp.errors import AuthenticationError, SequenceError
from osgp.link import carrier as C
from osgp.link import lon
from osgp.security import aes_psk
from osgp.security.aes_suite import (
    MEP_AES_ENVELOPE,
    PLC_AES_ENVELOPE,
    AesPskSuite,
)
from osgp.services import procedures as P
from osgp.services.messages import ET, FullRead, PartialRead, PartialWrite
from osgp.session import Completed

from .conftest import pump, reply

PK = bytes(range(0x40, 0x50))
NID = bytes.fromhex("04a1b2c3d4e5")
OTHER = bytes(range(16))


def tables():
    return {
        0x17: bytearray(range(200)),
        52: bytearray(b"\x19\x02\x10\x0f\x3b\x37\x01"),
        ET + 3: bytearray(b"SERIAL-0001".ljust(30, b" ")),
        1000: bytearray(bytes(i * 7 & 0xFF for i in range(1000))),
    }


def make_aes_pair(link, *, tables=None, procedures=None, groups=(), path=(), dkey=PK):
    csuite = AesPskSuite(
        PK,
        NID,
        role="concentrator",
        envelope=MEP_AES_ENVELOPE if link == "mep" else PLC_AES_ENVELOPE,
    )
    dsuite = AesPskSuite(
        dkey, NID, role="device", envelope=MEP_AES_ENVELOPE if link == "mep" else PLC_AES_ENVELOPE
    )
    tables = tables if tables is not None else {}
    if link == "mep":
        c = S.ClientSession(C.MepCarrier(), csuite)
        d = S.DeviceSession(
            C.MepDeviceCarrier(), dsuite, tables=tables, procedures=procedures, groups=groups
        )
    else:
        me = lon.SubnetNode(3, 17)
        c = S.ClientSession(
            C.PlcCarrier(me, path=path), csuite, profile=S.PLC_AES
        )
        d = S.DeviceSession(
            C.PlcDeviceCarrier([me, lon.NeuronId(NID)]),
            dsuite,
            profile=S.PLC_AES,
            tables=tables,
            procedures=procedures,
            groups=groups,
        )
    return c, d


@pytest.fixture(params=["mep", "plc"])
def aes_link(request):
    return request.param


def run(c, d, op):
    events = pump(c, d)
    assert op.done, events
    return events


# -- every service ------------------------------------------------------------------------
def test_full_and_partial_reads(aes_link):
    t = tables()
    c, d = make_aes_pair(aes_link, tables=t)
    op1, op2 = c.read(52), c.read(1000, 10, 300)
    run(c, d, op1)
    assert op1.result == bytes(t[52])
    pump(c, d)
    assert op2.result == bytes(t[1000][10:310])
    assert op2.exchanges == -(-300 // c.services.max_read)
    # every frame was numbered by the CryptoContexts, one per direction
    n = op1.exchanges + op2.exchanges
    assert c.suite.ctx.send_seq == n and d.suite.ctx.send_seq == n
    assert d.suite.ctx.window.highest == n - 1 and c.suite.ctx.window.highest == n - 1


def test_writes(aes_link):
    t = tables()
    c, d = make_aes_pair(aes_link, tables=t)
    op1 = c.write(52, b"\x1a\x01\x01\x00\x00\x00\x00")
    data = bytes(range(256)) * 2
    op2 = c.write(1000, data, 100)
    run(c, d, op1)
    pump(c, d)
    assert op1.error is None and op2.error is None
    assert t[52][:3] == b"\x1a\x01\x01" and bytes(t[1000][100:612]) == data


def test_device_error_is_reported(aes_link):
    c, d = make_aes_pair(aes_link, tables=tables())
    op = c.read(99)
    run(c, d, op)
    assert op.error is not None and op.error.code == 0x05


def test_procedures(aes_link):
    c, d = make_aes_pair(
        aes_link,
        tables=tables(),
        procedures={0x811: lambda p: (0, b"\xaa" + p), 10: lambda p: iter([(1, b""), (0, b"ok")])},
    )
    op1 = c.call(17, b"\x00\xf8", mfg=True)
    op2 = c.call(10)
    run(c, d, op1)
    pump(c, d)
    assert op1.result == b"\xaa\x00\xf8" and op2.result == b"ok"
    assert d.tables[P.BT08][:2] == (10).to_bytes(2, "little")


def test_transaction(aes_link):
    c, d = make_aes_pair(aes_link, tables=tables())
    op = c.transact([PartialRead(0x17, 0, 4), FullRead(52), PartialRead(99, 0, 1)], txn=7)
    run(c, d, op)
    assert [x.code for x in op.result] == [0, 0, 5]
    assert op.result[0].data == bytes([0, 1, 2, 3])


def test_group_broadcast_transaction(aes_link):
    c, d = make_aes_pair(aes_link, tables=tables(), groups=(0x0102,))
    op = c.transact([FullRead(52)], txn=3, groups=(0x01FF,))
    op2 = c.transact([FullRead(52)], txn=4, groups=(0x0203,))
    run(c, d, op)
    pump(c, d)
    assert op.result[0].data == bytes(d.tables[52]) and op2.result == []


def test_pending_table_write(aes_link):
    from osgp.services.messages import PED, pending_write

    c, d = make_aes_pair(aes_link, tables=tables())
    ped = PED(0, bytes([26, 1, 1, 0, 0]), self_read=True)
    w = pending_write(52, 0, b"\x1a\x01\x01", ped)
    op = c.write(w.table, w.data, 0)
    run(c, d, op)
    assert d.pending[52][0] == ped


# -- the frames are the CCM frames of the envelope (checked with `cryptography`) ------------
def _nonce(direction, seq, key_id=0):
    return bytes([direction]) + NID + struct.pack(">HI", key_id, seq)


def test_wire_frames_match_independent_ccm():
    c, d = make_aes_pair("mep", tables=tables())
    op = c.read(52)
    req = c.poll_transmit(0.0)
    ccm = AESCCM(PK, tag_length=8)
    # MEP frame: length:2 BE | body (mep.frame); body = seq:4 || C || T
    body = req[2:]
    assert body[:4] == bytes(4)
    assert ccm.decrypt(_nonce(0, 0), body[4:], body[:4]) == FullRead(52).encode()
    resp = reply(d, req)[2:]
    # response: the device's own counter, AAD = request seq || response seq (bind_response)
    assert resp[:4] == bytes(4)
    plain = ccm.decrypt(_nonce(1, 0), resp[4:], body[:4] + resp[:4])
    assert plain == b"\x00\x00\x07" + bytes(d.tables[52])
    ev = c.receive_data(len(resp).to_bytes(2, "big") + resp)
    assert op.result == bytes(d.tables[52]) and any(isinstance(e, Completed) for e in ev)


# -- replay, reorder, tamper, wrong key -----------------------------------------------------
def test_plc_retry_gets_the_saved_response_not_a_second_execution():
    # ISO/IEC 14908-1 request/response duplicate detection on the device
    c, d = make_aes_pair("plc", tables=tables())
    op = c.read(52)
    lost = []

    def drop(side, data):
        if side == "d" and not lost:
            lost.append(data)
            return True
        return False

    pump(c, d, drop=drop)
    assert op.result == bytes(d.tables[52]) and op.exchanges == 1 and op.retries == 1
    assert d.carrier.drops["duplicate request"] == 1
    assert d.suite.ctx.window.highest == 0  # opened once


def test_replayed_request_gets_sealed_0x0c_and_client_resyncs():
    aes_link = "mep"
    c, d = make_aes_pair(aes_link, tables=tables())
    op = c.read(52)
    lost = []

    def drop(side, data):
        if side == "d" and not lost:
            lost.append(data)
            return True
        return False

    # the retry resends the identical frame: a replay for the device's window
    pump(c, d, drop=drop)
    assert op.result == bytes(d.tables[52]) and op.exchanges == 2
    # the device answered the replay with a protected 0x0C and did not run it twice
    assert d.suite.ctx.window.highest == 1 and c.suite.ctx.send_seq == 2


def test_sequence_field_tampered_far_ahead_is_sequence_error():
    c, d = make_aes_pair("mep")
    wire, _ = c.suite.seal_request(FullRead(52).encode())
    with pytest.raises(SequenceError):
        d.suite.open_request(b"\x7f" + wire[1:])  # 2**30 ahead: refused before the tag check
    d.suite.open_request(wire)  # the window did not move


def test_device_suite_raises_sequence_error_on_replay():
    c, d = make_aes_pair("mep")
    wire, _ = c.suite.seal_request(FullRead(52).encode())
    d.suite.open_request(wire)
    with pytest.raises(SequenceError) as ei:
        d.suite.open_request(wire)
    assert ei.value.received == 0 and ei.value.current == 0 and ei.value.expected == 1


def test_reordered_within_window_accepted_once():
    c, d = make_aes_pair("mep")
    frames = [c.suite.seal_request(FullRead(52).encode())[0] for _ in range(5)]
    order = [0, 3, 1, 4, 2]
    for i in order:
        apdu, seq, _ = d.suite.open_request(frames[i])
        assert seq == i and apdu == FullRead(52).encode()
    for i in order:
        with pytest.raises(SequenceError):
            d.suite.open_request(frames[i])


def test_older_than_window_rejected():
    c, d = make_aes_pair("mep")
    size = MEP_AES_ENVELOPE.aes.replay_window
    frames = [c.suite.seal_request(b"\x30\x00\x34")[0] for _ in range(size + 1)]
    d.suite.open_request(frames[-1])  # highest = 64; the window holds 64 numbers: 1..64
    d.suite.open_request(frames[1])  # highest - 63: still inside
    with pytest.raises(SequenceError):
        d.suite.open_request(frames[0])  # highest - 64: too old


@pytest.mark.parametrize("pos", [3, 4, -1])  # seq low byte, ciphertext, tag
def test_tampered_request_gets_0x0b(aes_link, pos):
    c, d = make_aes_pair(aes_link, tables=tables())
    wire, _ = c.suite.seal_request(FullRead(52).encode())
    bad = bytearray(wire)
    bad[pos] ^= 0x01
    with pytest.raises(AuthenticationError):
        d.suite.open_request(bytes(bad))
    # through the sessions: the device answers 0x0B in clear, the client fails
    op = c.read(52)
    first = c.poll_transmit(0.0)
    raw = bytearray(first)
    raw[-1] ^= 0x80
    if aes_link == "plc":  # keep the link CRC right: tamper inside the APDU
        lp = lon.decode_lpdu(first)
        apdu = bytearray(lp.npdu.pdu.apdu)
        apdu[-1] ^= 0x80
        pdu = lon.Spdu(lp.npdu.pdu.type, lp.npdu.pdu.trans, bytes(apdu))
        raw = bytearray(lon.encode_lpdu(lon.Lpdu(lon.Npdu(1, 1, lp.npdu.dest, pdu))))
    c.receive_data(reply(d, bytes(raw)))
    assert op.done and isinstance(op.error, AuthenticationError)


def test_tampered_response_fails_operation(aes_link):
    c, d = make_aes_pair(aes_link, tables=tables())
    op = c.read(52)

    req = c.poll_transmit(0.0)
    resp = reply(d, req)
    if aes_link == "mep":
        bad = bytearray(resp)
        bad[-3] ^= 0x04
    else:
        lp = lon.decode_lpdu(resp)
        apdu = bytearray(lp.npdu.pdu.apdu)
        apdu[6] ^= 0x04
        pdu = lon.Spdu(lp.npdu.pdu.type, lp.npdu.pdu.trans, bytes(apdu))
        bad = lon.encode_lpdu(lon.Lpdu(lon.Npdu(3, 17, lp.npdu.dest, pdu)))
    c.receive_data(bytes(bad))
    assert op.done and isinstance(op.error, AuthenticationError)


def test_replayed_response_is_dropped():
    c, d = make_aes_pair("mep", tables=tables())
    op1, op2 = c.read(52), c.read(0x17, 0, 4)
    req1 = c.poll_transmit(0.0)
    resp1 = reply(d, req1)
    c.receive_data(resp1)
    assert op1.done and op1.error is None
    req2 = c.poll_transmit(1.0)
    # an old response (replayed) to the second request is ignored, not accepted
    assert c.receive_data(resp1) == [] and not op2.done
    resp2 = reply(d, req2)
    c.receive_data(resp2)
    assert op2.result == bytes(range(4))


def test_response_bound_to_its_request():
    # the device's response to request 0 does not open as the answer to request 1
    c, d = make_aes_pair("mep")
    w0, _ = c.suite.seal_request(FullRead(52).encode())
    w1, ctx1 = c.suite.seal_request(FullRead(52).encode())
    _, _, dctx = d.suite.open_request(w0)
    resp = d.suite.seal_response(dctx, b"\x00\x00\x01\x07")
    with pytest.raises(AuthenticationError):
        c.suite.open_response(ctx1, resp)


def test_wrong_key_gets_0x0b(aes_link):
    c, d = make_aes_pair(aes_link, tables=tables(), dkey=OTHER)
    op = c.read(52)
    run(c, d, op)
    assert isinstance(op.error, AuthenticationError)


def test_truncated_frames_are_dropped(aes_link):
    c, d = make_aes_pair(aes_link, tables=tables())
    for n in range(12):
        with pytest.raises(Exception) as ei:
            d.suite.open_request(bytes(n))
        assert type(ei.value).__name__ == "TruncatedError"
        with pytest.raises(Exception) as ei:
            c.suite.open_response(bytes(4), bytes(n) if n != 1 else b"\x00")
        assert type(ei.value).__name__ == "TruncatedError"


# -- PLC proxy chain --------------------------------------------------------------------------
def test_plc_proxy_chain_session():
    path = [lon.SubnetNode(3, 40), lon.SubnetNode(3, 41), lon.SubnetNode(3, 42)]
    c, d = make_aes_pair("plc", tables=tables(), path=path)
    op = c.read(0x17, 0, 40)
    first = lon.decode_lpdu(c.poll_transmit(0.0))
    assert first.npdu.dest == path[0] and first.npdu.pdu.apdu[0] == 0x4D  # proxy (Annex G)
    delivered = lon.encode_lpdu(
        lon.Lpdu(lon.Npdu(3, 42, lon.SubnetNode(3, 17), first.npdu.pdu, first.npdu.domain))
    )
    resp = reply(d, delivered)
    rl = lon.decode_lpdu(resp)
    back = lon.encode_lpdu(
        lon.Lpdu(lon.Npdu(3, 40, lon.SubnetNode(1, 1), rl.npdu.pdu, rl.npdu.domain))
    )
    c.receive_data(back)
    assert op.result == bytes(range(40))


# -- key renewal mid-session ------------------------------------------------------------------
def test_key_renewal_mid_session(aes_link):
    t = tables()
    c, d = make_aes_pair(aes_link, tables=t)
    op = c.read(52)
    run(c, d, op)
    # the concentrator transports the next key id's random value inside the
    # session (a table write), both sides derive the renewed key
    rand = bytes(range(100, 116))
    new = aes_psk.renew_key(PK, 1, rand)
    assert new != PK
    op = c.write(1000, rand, 0)
    run(c, d, op)
    assert aes_psk.renew_key(PK, 1, bytes(t[1000][:16])) == new
    old_client = AesPskSuite(PK, NID, envelope=c.suite.envelope, send_seq=c.suite.ctx.send_seq)
    c.suite.renew(new, 1)
    d.suite.renew(new, 1)
    op = c.read(0x17, 0, 8)
    run(c, d, op)
    assert op.result == bytes(range(8))
    assert c.suite.ctx.key_id == 1 and c.suite.ctx.send_seq == 1
    # the frame is sealed under the new key and key id (independent CCM)
    wire, _ = c.suite.seal_request(FullRead(52).encode())
    assert (
        AESCCM(new, tag_length=8).decrypt(_nonce(0, 1, 1), wire[4:], wire[:4])
        == FullRead(52).encode()
    )
    # a frame under the old key is refused by the renewed device
    stale, _ = old_client.seal_request(FullRead(52).encode())
    with pytest.raises(AuthenticationError):
        d.suite.open_request(stale)


def test_suite_from_handshake_contexts():
    psk = bytes(range(32))
    server = aes_psk.ConcentratorHandshake({b"meter": psk}, b"dc")
    peer = aes_psk.DeviceHandshake(psk, b"meter")
    m3 = server.receive_2(peer.receive_1(server.start()))
    server.receive_4(peer.receive_3(m3))
    c = AesPskSuite(context=server.context(NID))
    d = AesPskSuite(context=peer.context(NID), role="device")
    wire, ctx = c.seal_request(PartialWrite(1000, 0, b"\x01").encode())
    apdu, seq, dctx = d.open_request(wire)
    assert apdu == PartialWrite(1000, 0, b"\x01").encode() and seq == 0
    assert c.open_response(ctx, d.seal_response(dctx, b"\x00")) == b"\x00"


def test_restarted_client_resyncs_from_0x0c(aes_link):
    # a client that lost its counter (restart) starts below the device's window
    c, d = make_aes_pair(aes_link, tables=tables())
    for _ in range(70):
        c.suite.seal_request(b"\x30\x00\x34")
    d.suite.open_request(c.suite.seal_request(b"\x30\x00\x34")[0])  # device highest = 70
    c.suite.ctx.send_seq = 0
    op = c.read(52)
    run(c, d, op)
    assert op.result == bytes(d.tables[52]) and op.exchanges == 2
    assert d.suite.ctx.window.highest == 71 and c.suite.ctx.send_seq == 72
