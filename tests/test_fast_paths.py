"""The transaction fast paths agree with the general code they short-cut.

* PlcCarrier.frame (header template) against lon.encode_lpdu of the same Npdu;
* PlcCarrier.receive (frames.lon_parse header parse) against lon.decode_lpdu,
  on well-formed frames and on random / bit-flipped bytes (same outcome:
  the same APDU, "not ours", or a DecodeError);
* decode_response's read fast path against its cursor path (a bytearray
  input takes the cursor path);
* CryptoContext's precomputed nonce prefix against AesPskProfile.nonce.

Runs on the native frames kernel and, with OSGP_NO_EXTENSIONS=1, on the twin.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osgp.errors import DecodeError
from osgp.link import carrier as S
from osgp.link import lon
from osgp.security import aes_psk
from osgp.services import messages as m

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
