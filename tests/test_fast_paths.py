"""The transaction fast paths agree with the general code they short-cut.

* PlcCarrier.frame (header template) against lon.encode_lpdu of the same Npdu;
* PlcCarrier.receive (frames.lon_parse header parse) against lon.decode_lpdu,
  on well-formed frames and on random / bit-flipped bytes (same outcome:
  the same APDU, "not ours", or a DecodeError);
* decode_response's read fast path against its cursor path (a bytearray
  input takes the cursor path);
* CryptoContext's precomputed nonce prefix against AesPskProfile.nonce;
* CryptoContext.seal / open (KeyUsage.use, next_seq, the nonce and the
  ReplayWindow check and commit written out) against those steps one by one,
  with the `cryptography` package's AES-CCM as the cipher;
* ClientSession.poll_transmit's request gap against ready_at, and the end of a
  one-exchange operation against _finish;
* the ATM discovery request's one-step unpack against its field-by-field
  reads (same message, same cursor position, or the same error and offset),
  and the simulator's one decode of a broadcast for all its hearers against
  atm.decode.

Runs on the native frames kernel and, with OSGP_NO_EXTENSIONS=1, on the twin.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import example, given, settings
from hypothesis import strategies as st

from osgp.errors import AuthenticationError, DecodeError, ProtocolError, SequenceError
from osgp.link import carrier as S
from osgp.link import lon
from osgp.link._cursor import Cursor
from osgp.security import aes_psk
from osgp.security.suite import MEP_ENVELOPE, LegacySuite
from osgp.services import atm
from osgp.services import messages as m
from osgp.session import ClientSession, DeviceSession
from osgp.session.events import Completed

addresses = st.one_of(
    st.builds(lon.SubnetNode, st.integers(0, 255), st.integers(0, 127)),
    st.builds(lon.NeuronId, st.binary(min_size=6, max_size=6), st.integers(0, 255)),
    st.builds(lon.Group, st.integers(0, 255)),
    st.builds(lon.Broadcast, st.integers(0, 255)),
)
domains = st.sampled_from([b"", b"\x4f", b"\x01\x02\x03", b"\xaa\xbb\xcc\xdd\xee\xff"])


@settings(max_examples=300, deadline=None)
@given(
    dest=addresses,
    src=st.tuples(st.integers(0, 255), st.integers(0, 127)),
    domain=domains,
    apdu=st.binary(min_size=1, max_size=95),
    crc=st.booleans(),
    sends=st.integers(1, 20),
)
def test_carrier_frame_equals_encode_lpdu(dest, src, domain, apdu, crc, sends):
    c = S.PlcCarrier(dest, src=src, profile=lon.PlcProfile(domain=domain), crc=crc)
    for _ in range(sends):
        got = c.frame(apdu)
    want = lon.encode_lpdu(
        lon.Lpdu(
            lon.Npdu(src[0], src[1], dest, lon.Spdu(lon.SPDU_REQUEST, sends & 15, apdu), domain)
        ),
        crc=crc,
    )
    assert got == want


def slow_receive(carrier, data):
    """The carrier's receive as written over lon.decode_lpdu (no proxy path)."""
    lp = lon.decode_lpdu(data, crc=carrier.crc)
    pdu = lp.npdu.pdu
    if (
        not isinstance(pdu, lon.Spdu)
        or pdu.type != carrier.profile.service_response
        or pdu.trans != carrier._trans
        or (lp.npdu.src_subnet, lp.npdu.src_node & 0x7F)
        != (carrier.dest.subnet, carrier.dest.node)
    ):
        return b"", []
    return b"", [carrier.profile.unwrap(pdu.apdu)]


def outcome(fn, *args):
    try:
        tx, items = fn(*args)
    except DecodeError:
        return "decode-error"
    return tx, [bytes(i) for i in items]


def same_effect(fast, slow):
    """The session drops a frame either way when it raises DecodeError or
    yields nothing; the fast path may skip checks of PDUs it never delivers
    (e.g. an AuthPDU's length), but every frame it refuses, the slow path
    refuses too, and what it delivers is identical."""
    if fast == "decode-error":
        return slow == "decode-error"
    if fast == (b"", []):
        return slow in ("decode-error", (b"", []))
    return fast == slow


pdus = st.one_of(
    st.builds(lon.Spdu, st.sampled_from([0, 2]), st.integers(0, 15), st.binary(max_size=40)),
    st.builds(lon.Tpdu, st.sampled_from([0, 1, 2]), st.integers(0, 15), st.binary(max_size=40)),
    st.builds(lon.Apdu, st.binary(min_size=1, max_size=40)),
)


@settings(max_examples=400, deadline=None)
@given(
    dest=addresses,
    domain=domains,
    pdu=pdus,
    trans=st.integers(0, 15),
    flip=st.one_of(st.none(), st.none(), st.integers(0, 1000)),
    crc=st.booleans(),
)
def test_carrier_receive_equals_decode_lpdu(dest, domain, pdu, trans, flip, crc):
    c = S.PlcCarrier(lon.SubnetNode(3, 17), crc=crc)
    c._trans = trans
    c.expected = (c.source_key, trans)  # an exchange with that number is outstanding
    frame = bytearray(lon.encode_lpdu(lon.Lpdu(lon.Npdu(3, 17, dest, pdu, domain)), crc=crc))
    if flip is not None:
        frame[flip % len(frame)] ^= 1 << (flip % 8)
    frame = bytes(frame)
    assert same_effect(outcome(c.receive, frame), outcome(slow_receive, c, frame))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=40), crc=st.booleans(), trans=st.integers(0, 15))
def test_carrier_receive_random_bytes(data, crc, trans):
    c = S.PlcCarrier(lon.SubnetNode(3, 17), crc=crc)
    c._trans = trans
    c.expected = (c.source_key, trans)  # an exchange with that number is outstanding
    assert same_effect(outcome(c.receive, data), outcome(slow_receive, c, data))
    assert outcome(c.receive, bytearray(data)) == outcome(c.receive, data)


def test_carrier_receive_matching_response():
    c = S.PlcCarrier(lon.SubnetNode(3, 17))
    c.frame(b"\x30\x00\x34")
    resp = lon.encode_lpdu(
        lon.Lpdu(lon.Npdu(3, 17, lon.SubnetNode(1, 1), lon.Spdu(2, 1, b"\x00\x00\x01\x07")))
    )
    assert c.receive(resp) == (b"", [b"\x00\x00\x01\x07"])
    stale = lon.encode_lpdu(
        lon.Lpdu(lon.Npdu(3, 17, lon.SubnetNode(1, 1), lon.Spdu(2, 2, b"\x00\x00\x01\x07")))
    )
    assert c.receive(stale) == (b"", [])


def response_outcome(apdu, request, profile):
    try:
        r = m.decode_response(apdu, request, profile)
    except DecodeError as e:
        return type(e).__name__
    return (r.code, None if r.data is None else bytes(r.data), r.seq)


@settings(max_examples=500, deadline=None)
@given(
    body=st.binary(max_size=12),
    code=st.sampled_from([0, 0, 0, 5, 0x0C]),
    count=st.one_of(st.none(), st.integers(0, 14)),
    request=st.sampled_from(
        [m.FullRead(52), m.PartialRead(0x17, 0, 4), m.FullWrite(52, b"x"), None]
    ),
    profile=st.sampled_from([m.MEP_SERVICES, m.PLC_SERVICES, m.OPTICAL_SERVICES]),
)
def test_decode_response_fast_path_equals_cursor_path(body, code, count, request, profile):
    apdu = bytes([code]) + (b"" if count is None else count.to_bytes(2, "big")) + body
    assert response_outcome(apdu, request, profile) == response_outcome(
        bytearray(apdu), request, profile
    )


@settings(max_examples=200, deadline=None)
@given(
    address=st.binary(min_size=6, max_size=6),
    key_id=st.integers(0, 0xFFFF),
    seqs=st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=5),
    role=st.sampled_from(["concentrator", "device"]),
)
def test_nonce_prefix_equals_profile_nonce(address, key_id, seqs, role):
    ctx = aes_psk.CryptoContext(bytes(16), address, role=role, key_id=key_id)
    p = aes_psk.DEFAULT_PROFILE
    for s in seqs:
        for d in (0, 1):
            assert ctx._nonce(d, s) == p.nonce(d, False, address, key_id, s)
    ctx.renew(bytes(range(16)))
    for d in (0, 1):
        assert ctx._nonce(d, seqs[0]) == p.nonce(d, False, address, (key_id + 1) & 0xFFFF, seqs[0])
    ctx.key_id = 7  # set by hand: the cached prefix is not used for another key id
    assert ctx._nonce(1, 9) == p.nonce(1, False, address, 7, 9)


def test_nonce_with_another_layout_uses_the_profile():
    class Reversed(aes_psk.AesPskProfile):
        def nonce(self, direction, broadcast, address, key_id, seq):
            return super().nonce(direction, broadcast, address, key_id, seq)[::-1]

    prof = Reversed()
    ctx = aes_psk.CryptoContext(bytes(16), bytes(6), role="device", profile=prof)
    assert ctx._prefix is None
    assert ctx._nonce(1, 5) == prof.nonce(1, False, bytes(6), 0, 5)


@pytest.mark.parametrize("link_profile", [lon.PLC_PROFILE, lon.PlcProfile(message_code=0x51)])
def test_carrier_round_trip_with_message_code(link_profile):
    c = S.PlcCarrier(lon.SubnetNode(3, 17), profile=link_profile)
    f = c.frame(b"\x30\x00\x34")
    n = lon.decode_lpdu(f).npdu
    assert link_profile.unwrap(n.pdu.apdu) == b"\x30\x00\x34"
    resp = lon.encode_lpdu(
        lon.Lpdu(lon.Npdu(3, 17, lon.SubnetNode(1, 1), lon.Spdu(2, 1, link_profile.wrap(b"\x00"))))
    )
    assert c.receive(resp) == (b"", [b"\x00"])


@settings(max_examples=200, deadline=None)
@given(
    dest=addresses,
    domain=domains,
    apdu=st.binary(min_size=1, max_size=95),
    trans=st.integers(0, 15),
    crc=st.booleans(),
)
def test_carrier_delivers_matching_responses(dest, domain, apdu, trans, crc):
    c = S.PlcCarrier(lon.SubnetNode(3, 17), crc=crc)
    c._trans = trans
    c.expected = (c.source_key, trans)  # an exchange with that number is outstanding
    pdu = lon.Spdu(lon.SPDU_RESPONSE, trans, apdu)
    frame = lon.encode_lpdu(lon.Lpdu(lon.Npdu(3, 17, dest, pdu, domain)), crc=crc)
    assert c.receive(frame) == (b"", [apdu]) == slow_receive(c, frame)


def lpdu_outcome(fn, *args):
    try:
        return fn(*args)
    except DecodeError as e:
        return (type(e).__name__, e.layer, e.offset)


all_pdus = st.one_of(
    pdus,
    st.builds(
        lon.Spdu,
        st.sampled_from([4, 5]),
        st.integers(0, 15),
        st.binary(max_size=20),
        st.booleans(),
        st.binary(max_size=4),
    ),
    st.builds(
        lon.Tpdu,
        st.sampled_from([0, 1, 2, 4]),
        st.integers(0, 15),
        st.binary(max_size=20),
        st.booleans(),
        st.binary(max_size=4),
    ),
    st.builds(
        lon.AuthPdu,
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(0, 15),
        st.binary(min_size=8, max_size=8),
        st.integers(0, 255),
    ),
)
all_addresses = st.one_of(
    addresses,
    st.builds(
        lon.GroupAck,
        st.integers(0, 255),
        st.integers(0, 127),
        st.integers(0, 255),
        st.integers(0, 255),
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    dest=all_addresses,
    domain=domains,
    pdu=all_pdus,
    lp=st.tuples(st.booleans(), st.booleans(), st.integers(0, 63)),
    flip=st.one_of(st.none(), st.none(), st.integers(0, 1000)),
    cut=st.one_of(st.none(), st.none(), st.integers(0, 60)),
    crc=st.booleans(),
)
def test_decode_lpdu_fast_path_equals_general_path(dest, domain, pdu, lp, flip, cut, crc):
    if isinstance(pdu, lon.AuthPdu) and pdu.fmt != 1:
        pdu = lon.AuthPdu(pdu.fmt, pdu.type, pdu.trans, pdu.value, None)
    if isinstance(pdu, (lon.Spdu, lon.Tpdu)) and pdu.type not in (4, 5):
        pdu = pdu._replace(mlist=None)  # only reminders carry a member list
    n = lon.Npdu(7, 9, dest, pdu, domain)
    frame = bytearray(lon.encode_lpdu(lon.Lpdu(n, *lp), crc=crc))
    if flip is not None:
        frame[flip % len(frame)] ^= 1 << (flip % 8)
    if cut is not None:
        frame = frame[: cut % (len(frame) + 1)]
    frame = bytes(frame)
    got = lpdu_outcome(lambda f: lon.decode_lpdu(f, crc=crc), frame)
    assert got == lpdu_outcome(lon._decode_lpdu, frame, crc)
    if flip is None and cut is None:
        assert got == lon.Lpdu(n, *lp)  # round trip


# -- CryptoContext.seal / open against their steps one by one ------------------------------
KEY16 = bytes(range(0x20, 0x30))


def _contexts(role, maximum, fraction, count, warned, highest, bits, send_seq):
    """Two contexts in the same state: one for the code under test, one
    stepped through the general calls."""
    prof = dataclasses.replace(
        aes_psk.DEFAULT_PROFILE,
        replay_window=8,
        max_ahead=16,
        max_key_usage=maximum,
        usage_warning=fraction,
    )
    out = []
    for _ in range(2):
        ctx = aes_psk.CryptoContext(KEY16, bytes(6), role=role, profile=prof, send_seq=send_seq)
        ctx.usage.count, ctx.usage.warned = count, warned
        ctx.window.highest, ctx.window.bits = highest, bits
        out.append(ctx)
    return out


def _state(ctx):
    u, w = ctx.usage, ctx.window
    return (u.count, u.warned, list(u.events), w.highest, w.bits, ctx.send_seq)


def _outcome(f, *args):
    try:
        return ("ok", f(*args))
    except (ProtocolError, SequenceError, AuthenticationError) as exc:
        return (type(exc).__name__,)


def _general_seal(ctx, payload, header):
    ctx.usage.use("unicast")
    seq = ctx.next_seq()
    sb = struct.pack(">I", seq)
    nonce = ctx.profile.nonce(ctx.tx_dir, False, ctx.address, ctx.key_id, seq)
    return sb + AESCCM(KEY16, ctx.profile.tag_len).encrypt(nonce, payload, header + sb)


def _general_open(ctx, frame, header):
    seq = int.from_bytes(frame[:4], "big")
    ctx.window.check(seq)
    ctx.usage.use("unicast")
    nonce = ctx.profile.nonce(ctx.rx_dir, False, ctx.address, ctx.key_id, seq)
    try:
        plain = AESCCM(KEY16, ctx.profile.tag_len).decrypt(nonce, frame[4:], header + frame[:4])
    except InvalidTag:
        raise AuthenticationError("bad tag") from None
    ctx.window.commit(seq)
    return plain


usage_states = st.tuples(
    st.integers(1, 6), st.sampled_from([0.5, 0.8, 1.0]), st.integers(0, 6), st.booleans()
).filter(lambda t: t[2] <= t[0])


@settings(max_examples=300, deadline=None)
@given(
    role=st.sampled_from(["concentrator", "device"]),
    usage=usage_states,
    send_seq=st.sampled_from([0, 1, 0xFFFFFFFE, 0xFFFFFFFF, 0x1_0000_0000]),
    payload=st.binary(max_size=40),
    header=st.binary(max_size=6),
)
def test_seal_equals_its_steps(role, usage, send_seq, payload, header):
    fast, ref = _contexts(role, *usage, -1, 0, send_seq)
    assert _outcome(fast.seal, payload, header) == _outcome(_general_seal, ref, payload, header)
    assert _state(fast) == _state(ref)


@settings(max_examples=400, deadline=None)
@given(
    role=st.sampled_from(["concentrator", "device"]),
    usage=usage_states,
    highest=st.integers(-1, 40),
    bits=st.integers(0, 0xFF),
    delta=st.integers(-12, 20),
    tamper=st.booleans(),
    payload=st.binary(max_size=40),
    header=st.binary(max_size=6),
)
def test_open_equals_its_steps(role, usage, highest, bits, delta, tamper, payload, header):
    fast, ref = _contexts(role, *usage, highest, bits if highest >= 0 else 0, 0)
    seq = max(0, highest + delta)
    peer = aes_psk.CryptoContext(
        KEY16,
        bytes(6),
        role="device" if role == "concentrator" else "concentrator",
        profile=fast.profile,
        send_seq=seq,
    )
    frame = bytearray(peer.seal(payload, header))
    if tamper:
        frame[-1] ^= 0x01
    frame = bytes(frame)
    assert _outcome(fast.open, frame, header) == _outcome(_general_open, ref, frame, header)
    assert _state(fast) == _state(ref)


# -- ClientSession: request gap and the end of a one-exchange operation --------------------
TABLE = bytes(range(44))


def _mep_pair():
    key = bytes([1]) * 16
    from osgp.link.carrier import MepCarrier, MepDeviceCarrier

    c = ClientSession(MepCarrier(), LegacySuite(key, MEP_ENVELOPE), seq=100)
    d = DeviceSession(
        MepDeviceCarrier(), LegacySuite(key, MEP_ENVELOPE), tables={0x17: bytearray(TABLE)}, seq=100
    )
    return c, d


def _exchange(c, d, now):
    d.receive_data(c.poll_transmit(now))
    return d.poll_transmit()


@settings(max_examples=200, deadline=None)
@given(gap_ms=st.integers(0, 3000), dt=st.floats(0.0, 4.0, allow_nan=False))
@example(gap_ms=1000, dt=1.0)  # now == ready_at: the request may go
@example(gap_ms=1000, dt=0.999)
def test_poll_transmit_waits_as_ready_at_says(gap_ms, dt):
    c, d = _mep_pair()
    c.timers = dataclasses.replace(c.timers, request_gap_ms=gap_ms)
    op = c.read(0x17, 0, 44)
    c.receive_data(_exchange(c, d, 10.0), 10.05)
    assert op.done and op.result == TABLE
    c.read(0x17, 0, 44)
    ready = c.ready_at()
    assert ready == (10.0 + gap_ms / 1000.0 if gap_ms else None)
    assert c.next_deadline() == ready
    sent = c.poll_transmit(10.0 + dt)
    assert (sent is None) == (ready is not None and 10.0 + dt < ready)


@pytest.mark.parametrize("count", [44, 3])
def test_one_exchange_ends_as_finish_does(count):
    """The response of a one-exchange read ends the operation as
    ``_finish(Completed(...))`` ends the same operation in a twin session."""
    ends = []
    for direct in (True, False):
        c, d = _mep_pair()
        op = c.read(0x17, 0, count)
        resp = _exchange(c, d, 1.0)
        if direct:
            events = c.receive_data(resp, 1.1)
        else:
            c._finish(Completed(op, TABLE[:count]))
            events = c.take_events()
        assert [type(e) for e in events] == [Completed] and events[0].op is op
        ends.append(
            (events[0].result, op.done, op.result, op.error, c._op, c._msg, c._pending_frame)
        )
    assert ends[0] == ends[1] == (TABLE[:count], True, TABLE[:count], None, None, None, None)


def _discover_outcome(decode, body, base):
    c = Cursor(body, atm.LAYER, base=base)
    try:
        return decode(c), c.pos
    except DecodeError as exc:
        return type(exc), str(exc), exc.offset


@settings(max_examples=600, deadline=None)
@given(
    head=st.tuples(
        st.integers(0, 255),
        st.sampled_from([0, 1, 2, 16, 17, 255]),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.sampled_from([0, 1, 16, 255]),
        st.sampled_from([0, 1, 200, 0xFFFF]),
        st.integers(0, 255),
        st.sampled_from([0, 1, 3, 24, 25, 255]),
    ),
    tail=st.binary(max_size=80),
    fit=st.booleans(),
    cut=st.sampled_from([0, 0, 0, 1, 3, 12]),
    base=st.integers(0, 40),
)
@example(head=(1, 1, 0, 0xFFFF, 16, 200, 0, 2), tail=bytes(6), fit=True, cut=0, base=0)
@example(head=(1, 16, 7, 7, 1, 1, 0, 25), tail=b"t", fit=True, cut=0, base=3)
@example(head=(1, 0, 0, 9, 1, 1, 0, 1), tail=b"t", fit=True, cut=0, base=0)
@example(head=(1, 17, 0, 9, 1, 1, 0, 1), tail=b"t", fit=True, cut=0, base=0)
@example(head=(1, 1, 9, 8, 1, 1, 0, 1), tail=b"t", fit=True, cut=0, base=0)
@example(head=(1, 1, 0, 9, 0, 1, 0, 1), tail=b"t", fit=True, cut=0, base=0)
@example(head=(1, 1, 0, 9, 1, 0, 0, 1), tail=b"t", fit=True, cut=0, base=0)
def test_discover_unpack_equals_field_reads(head, tail, fit, cut, base):
    body = struct.pack(">BBHHBHBB", *head)
    if fit:  # exactly the tags announced, so well-formed heads take the one-step path
        tail = (tail * 80)[: 3 * head[7]] if tail else bytes(3 * head[7])
    body = (body + tail)[: max(0, len(body + tail) - cut)]
    assert _discover_outcome(atm._decode_discover, body, base) == _discover_outcome(
        atm._decode_discover_fields, body, base
    )


def test_shared_discover_decode_equals_decode():
    from osgp.sim.atm import _LastDiscover

    a = atm.encode(atm.Discover(1, 1, 0, 0x7FFF, 16, 200, 0, (b"abc",)))
    b = atm.encode(atm.Discover(2, 3, 5, 9, 8, 100, atm.UNCONFIGURED_ONLY))
    for apdu in (a, a, b, a):
        assert _LastDiscover.decode(apdu) == atm.decode(apdu)[1]
    with pytest.raises(DecodeError):
        _LastDiscover.decode(a[:-1])  # a malformed one raises and is not kept
    assert _LastDiscover.decode(a) == atm.decode(a)[1]
