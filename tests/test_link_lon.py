"""LonTalk (ISO/IEC 14908-1) frames, CN/IP, Annex G proxy frames."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osgp.errors import ChecksumError, ConfigurationError, DecodeError, MalformedError
from osgp.link import lon
from osgp.link import lon_proxy as px

from .conftest import load_vectors

V = load_vectors("lon_frames.json")


def crc_lon_independent(data: bytes) -> int:
    """CRC-16/GENIBUS written out from docs/protocol.md §6.1 (poly 0x1021 MSB first,
    init FFFF, complemented), independent of osgp.crypto."""
    reg = 0xFFFF
    for byte in data:
        for bit in range(7, -1, -1):
            top = (reg >> 15) ^ ((byte >> bit) & 1)
            reg = (reg << 1) & 0xFFFF
            if top:
                reg ^= 0x1021
    return reg ^ 0xFFFF


def test_crc_check_value():
    assert crc_lon_independent(bytes.fromhex(V["crc_check"]["data"])) == int(
        V["crc_check"]["crc"], 16
    )


def _dest(spec):
    kind, *args = spec
    if kind == "NeuronId":
        return lon.NeuronId(bytes.fromhex(args[0]), args[1])
    return getattr(lon, kind)(*args)


def _pdu(spec):
    kind, *args = spec
    if kind == "Apdu":
        return lon.Apdu(bytes.fromhex(args[0]))
    return getattr(lon, kind)(args[0], args[1], bytes.fromhex(args[2]))


@pytest.mark.parametrize("f", V["npdu"], ids=[f["name"] for f in V["npdu"]])
def test_hand_npdu_frames(f):
    n = lon.Npdu(
        f["src"][0], f["src"][1], _dest(f["dest"]), _pdu(f["pdu"]), bytes.fromhex(f["domain"])
    )
    assert lon.encode_npdu(n).hex() == f["hex"]
    assert lon.decode_npdu(bytes.fromhex(f["hex"])) == n


@pytest.mark.parametrize("f", V["npdu"], ids=[f["name"] for f in V["npdu"]])
def test_lpdu_crc_matches_independent(f):
    n = lon.decode_npdu(bytes.fromhex(f["hex"]))
    lp = lon.Lpdu(n, priority=True, backlog=3)
    wire = lon.encode_lpdu(lp)
    assert wire[0] == 0x83
    assert int.from_bytes(wire[-2:], "big") == crc_lon_independent(wire[:-2])
    assert lon.decode_lpdu(wire) == lp
    bad = bytearray(wire)
    bad[2] ^= 1
    with pytest.raises(ChecksumError) as ei:
        lon.decode_lpdu(bytes(bad))
    assert ei.value.layer == "lon.lpdu"


def _with_crc(body: bytes) -> bytes:
    return body + crc_lon_independent(body).to_bytes(2, "big")


B7_CLEAR = V["npdu_dest_b7_clear"]


@pytest.mark.parametrize("f", B7_CLEAR, ids=[f["name"] for f in B7_CLEAR])
def test_frames_with_destination_b7_clear_still_decode(f):
    """Captures of osgp's output before the selector fix (destination node b7
    = 0) decode to the same NPDU as the standard form; re-encoding them
    gives the standard form (b7 = 1)."""
    now = next(g for g in V["npdu"] if g["name"] == f["same_as"])
    old, new = bytes.fromhex(f["hex"]), bytes.fromhex(now["hex"])
    assert old != new and old[:4] == new[:4] and old[4] | 0x80 == new[4]
    n = lon.decode_npdu(old)
    assert n == lon.decode_npdu(new)
    assert lon.encode_npdu(n) == new
    for hdr in (0x00, 0x83):  # LPDU through the native header parse (fast path) and CRC
        assert lon.decode_lpdu(_with_crc(bytes([hdr]) + old)).npdu == n
        assert lon.decode_lpdu(bytes([hdr]) + old, crc=False).npdu == n


@pytest.mark.parametrize(
    "dest,src_b7,dest_b7",
    [
        (lon.SubnetNode(17, 3), 0x80, 0x80),  # 2a
        (lon.SubnetNode(0, 0), 0x80, 0x80),
        (lon.SubnetNode(255, 127), 0x80, 0x80),
        (lon.GroupAck(2, 7, 9, 3), 0x00, 0x80),  # 2b
        (lon.Broadcast(4), 0x80, None),
        (lon.Group(9), 0x80, None),
        (lon.NeuronId(bytes(range(6)), 1), 0x80, None),
    ],
)
def test_selector_bits(dest, src_b7, dest_b7):
    """Source node b7: 0 for format 2b only; destination node b7: 1 in 2a and
    2b (lon-stack-dx lcs_network.c NetworkLayerSend)."""
    raw = lon.encode_npdu(lon.Npdu(1, 5, dest, lon.Apdu(b"\x30")))
    assert raw[2] == src_b7 | 5
    if dest_b7 is not None:
        assert raw[4] == dest_b7 | dest.node


# ---- Wireshark's LON dissector as the independent decoder ----------------------------
# Frames go to tshark inside CN/IP over UDP port 1628 (Wireshark decodes LON only
# as a CN/IP payload, packet-cnip.c), in a pcap of raw IPv4 packets (LINKTYPE_RAW).

TSHARK = shutil.which("tshark")
WS_FRAMES = [
    (1, 1, lon.SubnetNode(3, 17), lon.Spdu(0, 5, b"\x30\x00\x17"), b"\x4f"),
    (3, 17, lon.SubnetNode(1, 1), lon.Spdu(2, 5, b"\x00" + bytes(40)), b"\x4f"),
    (0, 0, lon.SubnetNode(0, 0), lon.Tpdu(0, 15, b"\x3f\x01"), b""),
    (255, 127, lon.SubnetNode(255, 127), lon.Spdu(0, 0, b"\x30"), b"\x01\x02\x03"),
    (3, 5, lon.GroupAck(2, 7, 9, 3), lon.Tpdu(2, 1, b""), b""),
    (4, 126, lon.GroupAck(200, 127, 255, 63), lon.Spdu(2, 9, b"\x00\x11"), b"\xaa"),
    (1, 2, lon.Broadcast(6), lon.Apdu(b"\x33"), b""),
    (1, 2, lon.Group(9), lon.Tpdu(0, 3, b"\x30"), b"\x4f"),
    (10, 1, lon.NeuronId(bytes.fromhex("04a1b2c3d4e5"), 7), lon.Spdu(0, 12, b"\x30"), b""),
]


def _pcap(payloads) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # LINKTYPE_RAW
    lo = bytes([127, 0, 0, 1])
    for i, payload in enumerate(payloads):
        udp = struct.pack(">HHHH", 1628, 1628, 8 + len(payload), 0) + payload
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, lo, lo)
        s = sum(struct.unpack(">10H", ip))
        s = (s & 0xFFFF) + (s >> 16)
        ip = ip[:10] + struct.pack(">H", ~(s + (s >> 16)) & 0xFFFF) + ip[12:]
        pkt = ip + udp
        out += struct.pack("<IIII", i, 0, len(pkt), len(pkt)) + pkt
    return out


def _tshark_lon(tmp_path, lpdus):
    """Wireshark's decode of each LPDU: (address subtree title, {field: shown
    value}, {field: whole byte before the field's mask})."""
    cap = tmp_path / "lon.pcap"
    cap.write_bytes(_pcap([lon.encode_cnip(lon.CnipHeader(), w) for w in lpdus]))
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # not under ASan
    xml = subprocess.run(
        [TSHARK, "-n", "-r", str(cap), "-T", "pdml"],
        capture_output=True,
        check=True,
        timeout=120,
        env=env,
    ).stdout
    out = []
    for pkt in ET.fromstring(xml).iter("packet"):
        proto = pkt.find("proto[@name='lon']")
        assert proto is not None, "tshark did not decode the CN/IP payload as LON"
        fields = [f for f in proto.iter("field") if f.get("name") is not None]
        title = next(f.get("show") for f in fields if f.get("show", "").startswith("Address type"))
        shown = {f.get("name"): f.get("show") for f in fields}
        whole = {
            f.get("name"): int(f.get("unmaskedvalue"), 16) for f in fields if f.get("unmaskedvalue")
        }
        out.append((title, shown, whole))
    return out


WS_TITLES = {
    lon.Broadcast: "Address type 0 (broadcast)",
    lon.Group: "Address type 1 (multicast)",
    lon.SubnetNode: "Address type 2a (unicast)",
    lon.GroupAck: "Address type 2b (multicast)",
    lon.NeuronId: "Address type 3 (UID)",
}


@pytest.mark.skipif(TSHARK is None, reason="tshark (Wireshark) not installed: apt install tshark")
def test_wireshark_decodes_our_addresses(tmp_path):
    wires = [
        lon.encode_lpdu(lon.Lpdu(lon.Npdu(ss, sn, d, p, dom)), crc=False)
        for ss, sn, d, p, dom in WS_FRAMES
    ]
    got = _tshark_lon(tmp_path, wires)
    assert len(got) == len(WS_FRAMES)
    for (ss, sn, d, p, dom), (title, shown, whole) in zip(WS_FRAMES, got):
        num = {k: int(v, 16) for k, v in shown.items() if v and v.startswith("0x")}
        assert (num["lon.srcnet"], num["lon.srcnode"]) == (ss, sn)
        # Wireshark tells 2a from 2b by the source node selector bit
        assert title == WS_TITLES[type(d)]
        assert whole["lon.srcnode"] >> 7 == (0 if isinstance(d, lon.GroupAck) else 1)
        if isinstance(d, lon.SubnetNode):
            assert (num["lon.dstnet"], num["lon.dstnode"]) == (d.subnet, d.node)
            assert whole["lon.dstnode"] >> 7 == 1
        elif isinstance(d, lon.GroupAck):
            # packet-lon.c labels the 2b destination subnet byte "lon.dstgrp"
            assert (num["lon.dstgrp"], num["lon.dstnode"]) == (d.subnet, d.node)
            assert (num["lon.grp"], num["lon.grpmem"]) == (d.group, d.member)
            assert whole["lon.dstnode"] >> 7 == 1
        elif isinstance(d, lon.Broadcast):
            assert num["lon.dstnet"] == d.subnet
        elif isinstance(d, lon.Group):
            assert num["lon.dstgrp"] == d.group
        else:
            assert num["lon.dstnet"] == d.subnet
            assert bytes.fromhex(shown["lon.uid"].replace(":", "")) == d.nid
        assert shown["lon.domain"].replace(":", "") == dom.hex()
        if not isinstance(p, lon.Apdu):
            assert num["lon.trans_no"] == p.trans
            assert num["lon.spdu_type" if isinstance(p, lon.Spdu) else "lon.tpdu_type"] == p.type


def test_records_compare_like_frozen_dataclasses():
    """Equal only to the same class with equal fields; hashable, immutable,
    dataclass-style repr; decoded records equal constructed ones."""
    assert lon.Broadcast(0) != lon.Group(0) and not lon.Broadcast(0) == lon.Group(0)
    assert lon.Spdu(0, 1, b"\x30") != lon.Tpdu(0, 1, b"\x30")
    assert lon.SubnetNode(3, 17) != (3, 17) and (3, 17) != lon.SubnetNode(3, 17)
    assert lon.SubnetNode(3, 17) == lon.SubnetNode(3, 17)
    assert len({lon.SubnetNode(3, 17), lon.SubnetNode(3, 17), lon.NeuronId(bytes(6))}) == 2
    lp = lon.Lpdu(lon.Npdu(1, 1, lon.SubnetNode(3, 17), lon.Spdu(0, 5, b"\x30"), b"\x4f"))
    assert repr(lp.npdu.dest) == "SubnetNode(subnet=3, node=17)"
    assert repr(lp).startswith("Lpdu(npdu=Npdu(src_subnet=1, src_node=1, dest=SubnetNode(")
    with pytest.raises(AttributeError):
        lp.npdu.dest.node = 4  # type: ignore[misc]
    got = lon.decode_lpdu(lon.encode_lpdu(lp))
    assert got == lp and hash(got) == hash(lp) and {lp: 1}[got] == 1
    assert (got.npdu.dest.fmt, got.npdu.pdu.kind, got.npdu.pdu.apdu) == (2, 1, b"\x30")
    assert lp._replace(backlog=3).backlog == 3 and lp.backlog == 0


@pytest.mark.parametrize(
    "lp,message",
    [
        (lon.Lpdu(lon.Npdu(1, 1, lon.SubnetNode(3, 128), lon.Apdu(b"\x30"))), "node must fit in 7"),
        (lon.Lpdu(lon.Npdu(1, 1, lon.SubnetNode(256, 1), lon.Apdu(b"\x30"))), "subnet must fit"),
        (lon.Lpdu(lon.Npdu(1, -1, lon.Broadcast(), lon.Apdu(b"\x30"))), "node must fit in 7"),
        (lon.Lpdu(lon.Npdu(1, 1, lon.Group(9), lon.Spdu(0, 16, b"\x30"))), "trans must fit"),
        (lon.Lpdu(lon.Npdu(1, 1, lon.Group(9), lon.Spdu(1, 1, b"\x30"))), "invalid Spdu type 1"),
        (lon.Lpdu(lon.Npdu(1, 1, lon.Group(9), lon.Apdu(b"\x30")), backlog=64), "backlog must"),
        (lon.Lpdu(lon.Npdu(1, 1, lon.Group(9), lon.Apdu(b"\x30"), version=4)), "version must"),
        (lon.Lpdu(lon.Npdu(1, 1, lon.GroupAck(1, 2, 3, 256), lon.Apdu(b"\x30"))), "member must"),
        (lon.Lpdu(lon.Npdu(1, 1, lon.NeuronId(bytes(5)), lon.Apdu(b"\x30"))), "Neuron ID is 6"),
    ],
)
def test_encode_names_the_bad_field(lp, message):
    with pytest.raises(ConfigurationError, match=message):
        lon.encode_lpdu(lp)


def test_reminder_mlist_and_authpdu():
    t = lon.Tpdu(lon.TPDU_REM_MSG, 4, b"\x33", mlist=b"\x0f\x01")
    n = lon.Npdu(1, 2, lon.Group(9), t)
    assert lon.decode_npdu(lon.encode_npdu(n)).pdu == t
    a = lon.AuthPdu(1, 1, 5, bytes(range(8)), group=9)
    raw = lon.encode_npdu(lon.Npdu(1, 2, lon.Group(9), a))
    # AuthPDU header: fmt 1 <<6 | type 1 <<4 | trans 5 = 0x55 (docs/protocol.md §2.2)
    assert raw[4] == 0x55 and raw[-1] == 9
    assert lon.decode_npdu(raw).pdu == a


def test_reserved_types_and_version_rejected():
    with pytest.raises(MalformedError):
        lon.decode_npdu(bytes.fromhex("0001800033"))  # TPDU type 3 (0x30) reserved
    with pytest.raises(MalformedError):
        lon.decode_npdu(bytes.fromhex("7001800033"))  # version 1
    with pytest.raises(ConfigurationError):
        lon.encode_npdu(lon.Npdu(1, 1, lon.Broadcast(), lon.Apdu(b"\x00"), b"\x01\x02"))


def test_cnip_round_trip():
    payload = lon.encode_lpdu(
        lon.Lpdu(lon.decode_npdu(bytes.fromhex(V["npdu"][0]["hex"]))), crc=False
    )
    h = lon.CnipHeader(session=0x11223344, sequence=7, timestamp=99, extension=b"\x00" * 4)
    pkt = lon.encode_cnip(h, payload)
    assert pkt[:2] == (20 + 4 + len(payload)).to_bytes(2, "big") and pkt[3] == 0x01 and pkt[4] == 1
    h2, p2 = lon.decode_cnip(pkt)
    assert h2 == h and lon.decode_lpdu(p2, crc=False).npdu == lon.decode_npdu(
        bytes.fromhex(V["npdu"][0]["hex"])
    )
    with pytest.raises(MalformedError):
        lon.decode_cnip(pkt[:-1])


def test_proxy_hand_frame():
    f = V["proxy"][0]
    p = px.decode_proxy(bytes.fromhex(f["hex"]))
    assert len(p.repeaters) == f["count"] and p.uniform_by_dest
    assert [r.node for r in p.repeaters] == f["repeaters"]
    assert (p.txctrl.timer, p.txctrl.retries) == tuple(f["txctrl"])
    assert p.sicb.target_type == f["target_type"] and p.sicb.service == f["service"]
    assert p.apdu.hex() == f["apdu"]
    assert px.encode_proxy(p).hex() == f["hex"]


def _full_chain(n, **kw):
    reps = tuple(px.Repeater(i + 1, 4, bool(i & 1)) for i in range(n))
    return px.ProxyRequest(
        reps, px.Sicb(1), px.ProxyTarget(1, b"\x04\x63"), b"\x30\x00\x34", px.TxCtrl(9, 3), **kw
    )


def test_fifteen_repeaters_relay_to_agent():
    p = _full_chain(15)
    raw = px.encode_proxy(p)
    assert raw[1] & 0x0F == 15
    hops = []
    while True:
        nxt, fwd = px.relay(px.decode_proxy(raw), own_subnet=4, src_subnet=1)
        if fwd is None:
            assert nxt == p.target
            break
        hops.append(nxt)
        raw = px.encode_proxy(fwd)
    assert [h[1] for h in hops] == list(range(1, 16))
    with pytest.raises(ConfigurationError):
        px.encode_proxy(_full_chain(16))


def test_uniform_lists_take_the_implied_subnet():
    reps = (px.Repeater(7), px.Repeater(8))
    p = px.ProxyRequest(
        reps, px.Sicb(5), px.ProxyTarget(5, b"\x09"), b"\x30\x00\x01", uniform_by_src=True
    )
    assert px.relay(p, own_subnet=4, src_subnet=2)[0] == (2, 7, False)
    p2 = px.ProxyRequest(
        reps, px.Sicb(7), px.ProxyTarget(7, b"\x09"), b"\x30\x00\x01", uniform_by_dest=True
    )
    assert px.relay(p2, own_subnet=4, src_subnet=2)[0] == (4, 7, False)


@pytest.mark.parametrize(
    "ttype,fields",
    [
        (0, b"\x01\x02"),
        (1, b"\x01\x02"),
        (2, b"\x01" * 7),
        (3, b"\x00\x01"),
        (4, b"\x05"),
        (5, b"\x06"),
        (6, b"\x02" * 6),
        (7, b"\x07"),
    ],
)
def test_every_target_type(ttype, fields):
    p = px.ProxyRequest((), px.Sicb(ttype, service=1), px.ProxyTarget(ttype, fields), b"\x00")
    raw = px.encode_proxy(p)
    assert px.decode_proxy(raw) == p
    assert raw[2] >> 5 == ttype  # no repeaters: no list, no txctrl; SICB follows the header


def test_alt_key_modes():
    for kt, klen in ((0, 6), (1, 12)):
        p = px.ProxyRequest(
            (),
            px.Sicb(4, mode=px.MODE_ALT_KEY),
            px.ProxyTarget(4, b"\x01"),
            b"\x00",
            alt_key_type=kt,
            alt_key=bytes(range(klen)),
        )
        assert px.decode_proxy(px.encode_proxy(p)) == p


def test_failure_and_timers():
    assert px.decode_proxy_response(px.encode_failure(3)) == px.ProxyFailure(3)
    assert px.decode_proxy_response(b"\x4d\x00\x01") == b"\x00\x01"
    assert [px.tx_timer_ms(c) for c in range(6)] == [16, 24, 32, 48, 64, 96]
    assert px.tx_timer_ms(15) == 3072
    assert px.hop_timeout_ms(100, 3, 4, False) == 356
    assert px.hop_timeout_ms(100, 3, 8, False) == 100 + 768
    assert px.hop_timeout_ms(100, 3, 4, True) == 100 + 1536
    assert px.hop_timeout_ms(100, 3, 10, False) == 100 + 1536


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_npdu_garbage_only_decode_errors(data):
    for fn in (lon.decode_npdu, lon.decode_lpdu, px.decode_proxy, lon.decode_cnip):
        try:
            fn(data)
        except DecodeError as e:
            assert e.layer and e.offset is not None


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 255),
    st.integers(0, 127),
    st.sampled_from([b"", b"\x01", b"abc", b"abcdef"]),
    st.integers(0, 15),
    st.binary(min_size=1, max_size=30),
    st.integers(0, 3),
)
def test_npdu_round_trip(subnet, node, domain, trans, apdu, kind):
    pdu = [
        lon.Tpdu(0, trans, apdu),
        lon.Spdu(2, trans, apdu),
        lon.Apdu(apdu),
        lon.Tpdu(1, trans, apdu, auth=True),
    ][kind]
    for dest in (
        lon.SubnetNode(subnet, node),
        lon.NeuronId(bytes(range(6)), subnet),
        lon.Group(node),
        lon.Broadcast(subnet),
        lon.GroupAck(subnet, node, 1, 2),
    ):
        n = lon.Npdu(subnet, node, dest, pdu, domain)
        assert lon.decode_lpdu(lon.encode_lpdu(lon.Lpdu(n))).npdu == n


def test_plc_profile_message_code():
    prof = lon.PlcProfile(message_code=0x3D)
    assert prof.unwrap(prof.wrap(b"\x30\x00\x01")) == b"\x30\x00\x01"
    with pytest.raises(MalformedError):
        prof.unwrap(b"\x30")
    with pytest.raises(ConfigurationError):
        lon.PLC_PROFILE.wrap(bytes(96))
    assert "INFERRED" in lon.PLC_PROFILE.status
