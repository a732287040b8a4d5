"""Optical port: ANSI C12.18 packets, ACK/NAK, services."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osgp.errors import (
    ChecksumError,
    ConfigurationError,
    DecodeError,
    MalformedError,
    ResponseTimeout,
)
from osgp.link import optical as o
from osgp.services import messages as m

from .conftest import load_vectors

V = load_vectors("c1218_frames.json")


def crc_x25_independent(data: bytes) -> int:
    """CRC-16/X-25 from its definition (reflected 0x8408, init/xorout FFFF)."""
    reg = 0xFFFF
    for b in data:
        for i in range(8):
            mix = (reg ^ (b >> i)) & 1
            reg >>= 1
            if mix:
                reg ^= 0x8408
    return reg ^ 0xFFFF


@pytest.mark.parametrize("f", V["published"], ids=lambda f: f["name"])
def test_published_packet(f):
    body = bytes.fromhex(f["frame_wo_crc"])
    pkt = o.encode_packet(o.Packet(body[6:], body[2], body[3]))
    assert pkt == body + bytes.fromhex(f["crc_wire"])
    p = o.decode_packet(pkt)
    assert p.toggle and m.decode_request(p.data, m.OPTICAL_SERVICES) == m.PartialRead(0x17, 0, 8)


@pytest.mark.parametrize("f", V["hand"], ids=lambda f: f["name"])
def test_hand_packets(f):
    data = bytes.fromhex(f["data"])
    pkt = o.encode_packet(o.Packet(data, int(f["ctrl"], 16)))
    assert pkt[:6] == bytes([0xEE, 0, int(f["ctrl"], 16), 0]) + len(data).to_bytes(2, "big")
    assert int.from_bytes(pkt[-2:], "little") == crc_x25_independent(pkt[:-2])
    assert o.decode_packet(pkt).data == data


def test_services_encode():
    assert o.Negotiate().encode() == bytes.fromhex("6100400206")  # reference 3.3 (NES)
    assert o.Logon(2, "osgp").encode() == bytes.fromhex("5000026f736770202020202020")
    assert o.Security(b"pw").encode() == b"\x51pw" + bytes(18)
    assert o.decode_session_request(o.Logon(2, "osgp").encode()) == o.Logon(2, "osgp")
    assert o.decode_session_request(o.Negotiate().encode()) == o.Negotiate()
    assert o.decode_session_request(b"\x3f\x00") is None
    r = o.IdentifyResponse(0, 2, 0, b"\x06\x03")
    assert o.IdentifyResponse.decode(r.encode()) == r


def test_read_response_checksum():
    apdu = bytes.fromhex(V["hand"][3]["data"])  # 00 0003 010203 fa: fa = -(1+2+3) mod 256
    r = m.decode_response(apdu, m.FullRead(1), m.OPTICAL_SERVICES)
    assert r.data == b"\x01\x02\x03"
    with pytest.raises(ChecksumError):
        m.decode_response(apdu[:-1] + b"\xfb", m.FullRead(1), m.OPTICAL_SERVICES)


def test_bad_crc_and_framing():
    pkt = bytearray(o.encode_packet(o.Packet(b"\x20")))
    pkt[-1] ^= 1
    with pytest.raises(ChecksumError) as ei:
        o.decode_packet(bytes(pkt))
    assert ei.value.layer == "optical" and ei.value.offset == 7
    with pytest.raises(MalformedError):
        o.decode_packet(b"\xef" + bytes(pkt[1:]))


def test_multipacket_and_duplicates():
    prof = o.OpticalProfile(packet_size=16, max_packets=4)
    a, b = o.PacketLayer(prof), o.PacketLayer(prof)
    apdu = bytes(range(30))  # 8 data bytes per packet -> 4 packets
    first = a.send(apdu)
    p = o.decode_packet(first)
    assert p.ctrl & o.CTRL_MULTI and p.ctrl & o.CTRL_FIRST and p.seq == 3
    tx, got = b.receive(first)
    assert tx == bytes([o.ACK]) and got == []
    tx2, got2 = b.receive(first)  # a repeat (same toggle): ACKed, dropped
    assert tx2 == bytes([o.ACK]) and got2 == []
    out = []
    nxt, _ = a.receive(bytes([o.ACK]))
    while nxt:
        tx, got = b.receive(nxt)
        out += got
        nxt, _ = a.receive(tx)
    assert out == [apdu] and a.done


def test_retry_limit():
    a = o.PacketLayer()
    first = a.send(b"\x20")
    for _ in range(3):
        assert a.timeout() == first
    with pytest.raises(ResponseTimeout):
        a.timeout()


def test_too_large_for_negotiated_packets():
    with pytest.raises(ConfigurationError):
        o.PacketLayer().send(bytes(100))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_garbage(data):
    try:
        o.decode_packet(data)
    except DecodeError as e:
        assert e.layer == "optical"
    layer = o.PacketLayer()
    tx, apdus = layer.receive(data)  # never raises: bad packets are NAKed
    assert set(tx) <= {o.ACK, o.NAK}
