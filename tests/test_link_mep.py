"""MEP link: every published frame of the MEP guide (p.15-17, 44-53) reproduced."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osgp.errors import AuthenticationError, DecodeError, MalformedError, TruncatedError
from osgp.link import mep
from osgp.security.suite import MEP_ENVELOPE, LegacySuite
from osgp.services import messages as m

from .conftest import load_vectors

V = load_vectors("mep_frames.json")
KEY = bytes.fromhex(V["key"])
EXCHANGES = V["exchanges"]


@pytest.mark.parametrize("ex", EXCHANGES, ids=[e["name"] for e in EXCHANGES])
def test_published_request_frame(ex):
    frame = mep.encode_request(KEY, bytes.fromhex(ex["request_apdu"]), int(ex["seq"], 16))
    assert frame.hex() == ex["request"]


@pytest.mark.parametrize("ex", EXCHANGES, ids=[e["name"] for e in EXCHANGES])
def test_published_response_verifies(ex):
    req, resp = bytes.fromhex(ex["request"]), bytes.fromhex(ex["response"])
    apdu = mep.decode_response(KEY, req, resp)
    # the response APDU is the frame minus length and digest (published layout)
    assert apdu == resp[2:-8]
    if "response_apdu" in ex:
        assert apdu.hex() == ex["response_apdu"]


@pytest.mark.parametrize("ex", EXCHANGES, ids=[e["name"] for e in EXCHANGES])
def test_device_side_reproduces_published_response(ex):
    apdu, seq, ctx = mep.decode_request(KEY, bytes.fromhex(ex["request"]))
    assert apdu.hex() == ex["request_apdu"] and seq == int(ex["seq"], 16)
    resp = bytes.fromhex(ex["response"])
    assert mep.encode_response(KEY, ctx, resp[2:-8]) == resp


def test_resync_example_p15():
    # 0x0C carries 77635B90; the client retries with 77635B91 (p.15).
    r = m.decode_response(
        mep.decode_response(
            KEY, bytes.fromhex(EXCHANGES[0]["request"]), bytes.fromhex(EXCHANGES[0]["response"])
        )
    )
    assert r.code == 0x0C and r.seq == 0x77635B90
    with pytest.raises(Exception) as ei:
        m.check_response(r)
    assert ei.value.expected == 0x77635B91
    retry = mep.encode_request(KEY, bytes.fromhex("3f0017000000002c"), ei.value.expected)
    assert retry.hex() == EXCHANGES[1]["request"]


def test_bt23_read_response_parses():
    ex = EXCHANGES[1]
    apdu = mep.decode_response(KEY, bytes.fromhex(ex["request"]), bytes.fromhex(ex["response"]))
    r = m.decode_response(apdu, m.PartialRead(0x17, 0, 0x2C))
    assert r.code == 0 and len(r.data) == 0x2C and r.data[16] == 8 and r.data[20] == 3


def test_rc4_derived_vector():
    rv = V["rc4_derived"]
    f = mep.encode_request(KEY, bytes.fromhex(rv["request_apdu"]), int(rv["seq"], 16), encrypt=True)
    assert f[2:-8].hex() == rv["request_cipher"] and f[-8:].hex() == rv["request_digest"]


def test_encrypted_round_trip_and_mirroring():
    req = mep.encode_request(KEY, b"\x3f\x00\x17\x00\x00\x00\x00\x04", 9, encrypt=True)
    apdu, seq, ctx = mep.decode_request(KEY, req)
    assert ctx.encrypted and seq == 9
    resp = mep.encode_response(KEY, ctx, b"\x00\x00\x04abcd")
    assert b"abcd" not in resp  # mirrored: the response is encrypted too (p.11)
    assert mep.decode_response(KEY, req, resp) == b"\x00\x00\x04abcd"


def test_bad_digest_raises_authentication_error():
    ex = EXCHANGES[1]
    resp = bytearray(bytes.fromhex(ex["response"]))
    resp[-1] ^= 1
    with pytest.raises(AuthenticationError):
        mep.decode_response(KEY, bytes.fromhex(ex["request"]), bytes(resp))
    resp = bytearray(bytes.fromhex(ex["response"]))
    resp[10] ^= 0x40
    with pytest.raises(AuthenticationError):
        mep.decode_response(KEY, bytes.fromhex(ex["request"]), bytes(resp))


def test_mak_then_mbk():
    mbk = bytes(range(16))
    req = mep.encode_request(mbk, b"\x30\x00\x01", 5)
    apdu, _, ctx = mep.decode_request([KEY, mbk], req)
    assert apdu == b"\x30\x00\x01" and ctx.key == mbk
    with pytest.raises(AuthenticationError):
        mep.decode_request([KEY], req)


def test_truncation_and_length_errors():
    f = bytes.fromhex(EXCHANGES[1]["request"])
    for n in range(len(f)):
        with pytest.raises(DecodeError) as ei:
            mep.decode_request(KEY, f[:n])
        assert ei.value.layer.startswith("mep")
    with pytest.raises(MalformedError):
        mep.unframe(f + b"\x00")
    with pytest.raises(MalformedError):
        mep.unframe(b"\x01\xdd" + bytes(477))


def test_frame_reader_split_and_alert():
    a = bytes.fromhex(EXCHANGES[0]["response"])
    b = bytes.fromhex(EXCHANGES[1]["response"])
    r = mep.FrameReader()
    stream = mep.ALERT + a + b + mep.ALERT
    out = []
    for i in range(0, len(stream), 5):
        out += r.feed(stream[i : i + 5])
    assert out == [mep.Alert(), a[2:], b[2:], mep.Alert()]
    with pytest.raises(MalformedError):
        r.feed(b"\xff\xff")
    assert r.pending == 0


def test_segments_117():
    ex = EXCHANGES[5]
    resp = bytes.fromhex(ex["response"])  # 124 bytes: two segments (p.20)
    seg = mep.segments(resp)
    assert [len(s) for s in seg] == [117, len(resp) - 117] and b"".join(seg) == resp


@settings(max_examples=60, deadline=None)
@given(
    st.binary(min_size=1, max_size=100),
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.binary(min_size=1, max_size=100),
)
def test_round_trip_property(apdu, seq, enc, resp):
    req = mep.encode_request(KEY, apdu, seq, encrypt=enc)
    got, s, ctx = mep.decode_request(KEY, req)
    assert (got, s, ctx.encrypted) == (apdu, seq, enc)
    if enc and resp == b"\x0b":
        return
    assert mep.decode_response(KEY, req, mep.encode_response(KEY, ctx, resp)) == resp


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_only_raises_hierarchy(data):
    req = bytes.fromhex(EXCHANGES[1]["request"])
    for call in (
        lambda: mep.decode_response(KEY, req, data),
        lambda: mep.decode_request(KEY, data),
    ):
        try:
            call()
        except (DecodeError, AuthenticationError):
            pass


def test_suite_is_pluggable_object():
    s = LegacySuite(KEY, MEP_ENVELOPE)
    wire, ctx = s.seal_request(b"\x30\x00\x01", 1)
    assert mep.frame(wire) == mep.encode_request(KEY, b"\x30\x00\x01", 1)
    with pytest.raises(TruncatedError):
        s.open_response(ctx, b"\x00" * 8)
