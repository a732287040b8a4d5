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
    assert o.Negotiate().encode() == bytes.fromhex("6100400206")  # docs/protocol.md §3.3 (NES)
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


# -- device side: C12.18 service sequence (PsemDeviceState via DeviceSession) --------
# Requests are framed and responses parsed here with the independent CRC above,
# so the device's own packet codec does not check itself.
def frame(data: bytes, toggle: int) -> bytes:
    body = bytes([0xEE, 0, 0x20 if toggle else 0, 0]) + len(data).to_bytes(2, "big") + data
    return body + crc_x25_independent(body).to_bytes(2, "little")


def split_packets(wire: bytes):
    """Independent packet parse: (ctrl, seq, data, total length) per packet."""
    out = []
    while wire:
        assert wire[0] == 0xEE
        n = int.from_bytes(wire[4:6], "big")
        pkt, wire = wire[: 8 + n], wire[8 + n :]
        assert int.from_bytes(pkt[-2:], "little") == crc_x25_independent(pkt[:-2])
        out.append((pkt[2], pkt[3], pkt[6:-2], len(pkt)))
    return out


class Probe:
    """A minimal C12.18 client over a DeviceSession: one request, every
    response packet ACKed, the packets kept for inspection."""

    def __init__(self, device):
        self.d = device
        self.toggle = 0
        self.packets = []

    def raw(self, data: bytes):
        return transmitted(self.d, data)

    def ask(self, apdu: bytes, toggle=None) -> bytes:
        t = self.toggle if toggle is None else toggle
        self.toggle = t ^ 1
        tx = self.raw(frame(apdu, t))
        assert tx[0] == b"\x06", tx  # the request's ACK comes first, always
        self.packets = []
        wire = b"".join(tx[1:])
        while wire:
            (pkt,) = split_packets(wire)
            self.packets.append(pkt)
            wire = b"".join(self.raw(b"\x06"))
        return b"".join(p[2] for p in self.packets)


def transmitted(device, data):
    """What a device session sends after receiving ``data``."""
    device.receive_data(data)
    out = []
    frame = device.poll_transmit()
    while frame is not None:
        out.append(frame)
        frame = device.poll_transmit()
    return out


def device(table_sizes=(), *, max_size=64, max_packets=2, **psem):
    from osgp.link.carrier import OpticalDeviceCarrier
    from osgp.session import DeviceSession

    prof = o.OpticalProfile(packet_size=max_size, max_packets=max_packets)
    state = o.PsemDeviceState(
        max_packet_size=max_size, max_packets=max_packets, passwords=[b"secret"], **psem
    )
    tables = {t: bytearray((i * 7 + t) & 0xFF for i in range(n)) for t, n in table_sizes}
    return DeviceSession(OpticalDeviceCarrier(prof, psem=state), tables=tables), tables


def read_apdu(table: int) -> bytes:
    return b"\x30" + table.to_bytes(2, "big")


def read_ok(resp: bytes, image: bytes) -> bool:
    n = len(image)
    ck = (-sum(image)) & 0xFF
    return resp == b"\x00" + n.to_bytes(2, "big") + bytes(image) + bytes([ck])


def logged_on(p: Probe, size=64, n=2, password=b"secret"):
    assert p.ask(b"\x20")[0] == 0
    neg = p.ask(b"\x61" + size.to_bytes(2, "big") + bytes([n, 6]))
    assert p.ask(b"\x50\x00\x02" + b"osgp".ljust(10, b" ")) == b"\x00"
    assert p.ask(b"\x51" + password.ljust(20, b"\x00")) == b"\x00"
    return neg


def test_negotiate_grants_the_smaller_of_asked_and_supported():
    d, _ = device(max_size=1024, max_packets=4)
    p = Probe(d)
    assert p.ask(b"\x20")[0] == 0
    # 61 <size:2> <n> <baud>: response 00 <size:2> <n> <baud> (C12.18 negotiate)
    assert p.ask(bytes.fromhex("6102000206")) == bytes.fromhex("0002000206")
    assert p.ask(bytes.fromhex("610800100a")) == bytes.fromhex("000400040a")
    assert p.ask(bytes.fromhex("6100400106")) == bytes.fromhex("0000400106")
    # two offered bauds, the first unsupported: the second is chosen
    d2, _ = device(bauds=[6, 8])
    p2 = Probe(d2)
    p2.ask(b"\x20")
    assert p2.ask(bytes.fromhex("62004002 0a 08".replace(" ", ""))) == bytes.fromhex("0000400208")
    assert d2.carrier.psem.baud == 8
    assert p2.ask(bytes.fromhex("6000040100")) == b"\x01"  # 0x60 takes no baud: malformed


def test_grant_is_applied_64x1_and_overhead():
    # 64-byte packets carry 64 - 6 (header) - 2 (CRC) = 56 APDU bytes; a read
    # response is 1 + 2 + n + 1, so 52 data bytes fit one packet and 53 do not.
    d, t = device([(10, 52), (11, 53)])
    p = Probe(d)
    logged_on(p, 64, 1)
    assert read_ok(p.ask(read_apdu(10)), t[10])
    assert [(pk[1], pk[3]) for pk in p.packets] == [(0, 64)]
    assert p.ask(read_apdu(11)) == b"\x04"  # onp: does not fit the 1 granted packet


def test_grant_is_applied_512x2_and_64x8():
    d, t = device([(20, 371), (21, 1004), (22, 1005), (23, 400)], max_size=512, max_packets=8)
    p = Probe(d)
    assert logged_on(p, 512, 2) == bytes.fromhex("0002000206")
    assert read_ok(p.ask(read_apdu(20)), t[20]) and len(p.packets) == 1  # 375 bytes
    assert read_ok(p.ask(read_apdu(21)), t[21])  # 1008 = 2 x 504
    assert [(pk[0] & 0xC0, pk[1], pk[3]) for pk in p.packets] == [(0xC0, 1, 512), (0x80, 0, 512)]
    assert p.ask(read_apdu(22)) == b"\x04"  # 1009 > 2 x 504
    assert p.ask(b"\x21") == b"\x00"
    assert logged_on(p, 64, 8) == bytes.fromhex("0000400806")
    assert read_ok(p.ask(read_apdu(23)), t[23])  # 404 bytes: 8 packets of <= 56
    assert [pk[1] for pk in p.packets] == [7, 6, 5, 4, 3, 2, 1, 0]
    assert all(pk[3] <= 64 for pk in p.packets)


def test_terminate_and_identify_reset_duplicate_detection():
    d, t = device([(1, 8)])
    p = Probe(d)
    logged_on(p)  # toggles 0 1 0 1
    assert read_ok(p.ask(read_apdu(1), toggle=0), t[1])
    assert p.ask(b"\x21", toggle=1) == b"\x00"
    # the next session's first packet carries the terminate's toggle: after
    # terminate it is not a duplicate
    assert p.ask(b"\x20", toggle=1)[0] == 0
    # a client that restarts without terminate: identify after a read, same toggle
    p.ask(b"\x50\x00\x02" + bytes(10), toggle=0)
    p.ask(b"\x51" + b"secret".ljust(20, b"\x00"), toggle=1)
    assert read_ok(p.ask(read_apdu(1), toggle=0), t[1])
    assert p.ask(b"\x20", toggle=0)[0] == 0
    assert d.carrier.psem.state == "id"
    # genuine repeats are still ACKed and dropped
    assert p.raw(frame(b"\x20", 0)) == [b"\x06"]
    before = d.carrier.layer.duplicates
    p.ask(b"\x50\x00\x02" + bytes(10), toggle=1)
    assert p.raw(frame(b"\x50\x00\x02" + bytes(10), 1)) == [b"\x06"]
    assert d.carrier.layer.duplicates == before + 1


def test_service_states_passwords_and_wait():
    d, t = device([(1, 8), (2, 4)], read_passwords=[b"reader"])
    p = Probe(d)
    assert p.ask(read_apdu(1)) == b"\x0a"  # base state: isss
    assert p.ask(b"\x70\x05") == b"\x0a"
    assert p.ask(b"\x50\x00\x02" + bytes(10)) == b"\x0a"  # logon before identify
    assert p.ask(b"\x20")[0] == 0
    assert p.ask(read_apdu(1)) == b"\x0a"  # ID state: isss
    assert p.ask(b"\x51" + bytes(20)) == b"\x0a"  # security before logon
    assert p.ask(b"\x70\x05") == b"\x00" and d.carrier.psem.wait_seconds == 5
    assert p.ask(b"\x50\x00\x02" + b"osgp".ljust(10, b" ")) == b"\x00"
    assert p.ask(b"\x50\x00\x02" + bytes(10)) == b"\x0a"  # second logon
    assert p.ask(bytes.fromhex("6100400206")) == b"\x0a"  # negotiate after logon
    assert p.ask(read_apdu(1)) == b"\x03"  # session state, no clearance: isc
    assert p.ask(b"\x51" + b"wrong".ljust(20, b"\x00")) == b"\x01"  # err
    assert p.ask(read_apdu(1)) == b"\x03"
    assert p.ask(b"\x51" + b"reader".ljust(20, b"\x00")) == b"\x00"
    assert read_ok(p.ask(read_apdu(1)), t[1])
    write = b"\x40\x00\x02\x00\x02\x01\x02" + bytes([(-3) & 0xFF])
    assert p.ask(write) == b"\x03"  # read-only clearance
    assert p.ask(b"\x51" + b"secret".ljust(20, b"\x00")) == b"\x00"
    assert p.ask(write) == b"\x00" and t[2][:2] == b"\x01\x02"
    assert p.ask(b"\x70\x02") == b"\x00"  # wait in the session state: ok
    assert p.ask(b"\x7e") == b"\x02"  # unknown service: sns
    assert p.ask(b"\x52") == b"\x00"  # logoff -> ID state
    assert p.ask(read_apdu(1)) == b"\x0a"
    assert p.ask(b"\x50\x00") == b"\x01"  # truncated logon: err
    assert p.ask(b"\x52") == b"\x0a"  # logoff outside a session


def test_nak_flood_is_counted_not_raised():
    d, _ = device()
    p = Probe(d)
    tx = p.raw(frame(b"\x20", 0))
    assert tx[0] == b"\x06" and len(tx) == 2
    for _ in range(3):
        assert p.raw(b"\x15") == [tx[1]]  # retransmitted on NAK
    assert p.raw(b"\x15") == [] and d.carrier.layer.abandoned == 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.binary(max_size=40), st.integers(0, 1)),
            st.sampled_from([b"\x06", b"\x15", b"\x00", b"\xee"]),
            st.binary(max_size=12),
        ),
        max_size=25,
    )
)
def test_device_receive_never_raises(chunks):
    """Well-framed packets with any APDU, ACK/NAK bytes and noise, in any order."""
    d, _ = device([(1, 200)], max_size=64, max_packets=8)
    for ch in chunks:
        data = frame(*ch) if isinstance(ch, tuple) else ch
        for wire in transmitted(d, data):
            while wire:  # ACK/NAK bytes and whole packets of at most 64 bytes
                if wire[0] in (0x06, 0x15):
                    wire = wire[1:]
                    continue
                n = 8 + int.from_bytes(wire[4:6], "big")
                assert n <= 64 and len(wire) >= n
                split_packets(wire[:n])
                wire = wire[n:]


def test_declared_length_beyond_the_device_buffer_is_noise():
    d, t = device([(1, 8)])  # 64-byte packets at most
    p = Probe(d)
    bogus = bytes([0xEE, 0, 0, 0, 0x40, 0x00])  # declares 16 KiB of data
    assert p.raw(bogus) == []  # not waited for: the stream goes on
    assert p.ask(b"\x20")[0] == 0
    assert d.carrier.layer.rejected == 1
