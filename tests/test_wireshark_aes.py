"""The Wireshark dissector on OSGP-AES-128-PSK frames: tshark with the shipped
plugin decodes the envelope (sequence number, ciphertext, CCM tag, and from
the key file the nonce's address and key id), verifies the tag with AES-128
and CCM written in Lua, and decrypts.  Every frame is compared with osgp's own
decode of it: the nonce rebuilt by ``AesPskProfile.nonce`` and the frame
opened by ``osgp.crypto.ccm_open`` (the native or reference kernel, checked
against FIPS 197 / RFC 3610 vectors elsewhere in the suite)."""

from __future__ import annotations

import io

import pytest

from osgp import codes, crypto
from osgp.errors import AuthenticationError
from osgp.link import lon, lon_proxy
from osgp.link.carrier import MepCarrier, MepDeviceCarrier, PlcCarrier, PlcDeviceCarrier
from osgp.link.pcapng import (
    Endpoint,
    PcapngWriter,
    cnip_udp_frame,
    parse_cnip_udp_frame,
    read_pcapng,
)
from osgp.security import aes_psk
from osgp.security.aes_suite import MEP_AES_ENVELOPE, PLC_AES_ENVELOPE, AesPskSuite
from osgp.services import messages
from osgp.session import PLC_AES, ClientSession, DeviceSession
from osgp.sim import SimMeter
from osgp.sim.network import MediumProfile, Network

from .test_wireshark import (
    BT07,
    BT08,
    TABLE,
    _exchange,
    _mep_capture,
    hexval,
    needs_tshark,
    one,
    tshark,
)

PROFILE = PLC_AES_ENVELOPE.aes
GOOD, BAD, UNCHECKED, NO_REQUEST, CLEAR_0B = 1, 2, 0, 3, 4
SPACING = 100.0


def aes_key(i):
    return bytes([0x21 * (i + 1) & 0xFF]) * 16


def nid(i):
    return bytes([0x04, 0xA1, 0xB2, 0xC3, 0xD4, i])


def key_records(key_of=aes_key, key_id=0):
    return {f"2/{1 + i}": (key_of(i), "aes", key_id, nid(i)) for i in range(5)}


def build_aes_feeder(capture, key_id=0):
    """Five meters 100 m apart (250 m reach) under the AES suite, the far ones
    through repeaters."""
    net = Network(seed=11, capture=capture)
    seg = net.add_segment("feeder", profile=MediumProfile(reach_m=250.0, base_loss=0.0))
    clients = []
    for i in range(5):
        addr = lon.SubnetNode(2, 1 + i)
        dev = DeviceSession(
            PlcDeviceCarrier([addr, lon.NeuronId(nid(i))]),
            AesPskSuite(
                aes_key(i), nid(i), role="device", envelope=PLC_AES_ENVELOPE, key_id=key_id
            ),
            profile=PLC_AES,
            tables={
                TABLE: bytearray(range(i, i + 40)),
                1: bytearray(32),
                BT07: bytearray(8),
                BT08: bytearray(8),
            },
            read_only=[1],
            procedures={5: lambda params: (0, b"\x2a" + params)},
        )
        seg.add_meter(addr, SPACING * (i + 1), dev)
    for i in range(5):
        addr = lon.SubnetNode(2, 1 + i)
        c = ClientSession(
            PlcCarrier(addr, path=seg.route_to(addr)),
            AesPskSuite(aes_key(i), nid(i), envelope=PLC_AES_ENVELOPE, key_id=key_id),
            profile=PLC_AES,
        )
        seg.attach(c)
        clients.append(c)
    return net, seg, clients


def oracle(capture, key_id=0):
    """Each frame decoded by osgp: LonTalk, proxy, then the AES frame opened
    with the target's key and the nonce of AesPskProfile; responses bind the
    sequence number of the request they answer."""
    out, pending, last = [], {}, {}
    for i, (_, _, frame) in enumerate(read_pcapng(capture), 1):
        _, lpdu, _ = parse_cnip_udp_frame(frame)
        n = lon.decode_lpdu(lpdu, crc=False).npdu
        src, dst, sp = f"{n.src_subnet}/{n.src_node}", f"{n.dest.subnet}/{n.dest.node}", n.pdu
        apdu, rec = sp.apdu, {"frame": i}
        if sp.type == lon.SPDU_REQUEST:
            target = dst
            if apdu[0] == lon_proxy.PROXY:
                p = lon_proxy.decode_proxy(apdu)
                target = f"{p.target.fields[0]}/{p.target.fields[1] & 0x7F}"
                rec["repeaters"] = [f"{r.subnet}/{r.node}" for r in p.repeaters]
                apdu = p.apdu
            m = int(target.split("/")[1]) - 1
            direction, aad, exchange = aes_psk.DOWN, apdu[:4], (m, apdu[:4])
            pending[(src, dst, sp.trans)] = (i, exchange, len(rec.get("repeaters", [])))
            rec["type"] = 0
        else:
            key = (dst, src, sp.trans)
            if key in pending:
                rec["request_in"] = pending[key][0]
                last[key] = pending.pop(key)
            _, (m, req_seq), nreps = last[key]
            rec["type"] = 1
            if apdu[0] == lon_proxy.PROXY_FAIL:
                rec["fail_stage"] = nreps + 1 - apdu[1]
                out.append(rec)
                continue
            if apdu[0] == lon_proxy.PROXY:
                apdu = apdu[1:]
            if apdu == b"\x0b":
                rec.update(status=CLEAR_0B, plain=apdu)
                out.append(rec)
                continue
            direction, aad = aes_psk.UP, req_seq + apdu[:4]
            rec["request_seq"] = int.from_bytes(req_seq, "big")
        nonce = PROFILE.nonce(direction, False, nid(m), key_id, int.from_bytes(apdu[:4], "big"))
        rec.update(
            seq=int.from_bytes(apdu[:4], "big"),
            ciphertext=apdu[4:-8],
            tag=apdu[-8:],
            nonce=nonce,
            direction=direction,
            address=nid(m),
        )
        try:
            rec["plain"] = crypto.ccm_open(aes_key(m), nonce, apdu[4:], aad, PROFILE.tag_len)
            rec["status"] = GOOD
        except AuthenticationError:
            rec.update(plain=None, status=BAD)
        out.append(rec)
    return out


def check_aes_frame(w, g, key_id=0):
    f = w["frame"]
    assert one(g, "frame.number") == f
    assert one(g, "osgp.type") == w["type"], f
    assert one(g, "osgp.request_in") == w.get("request_in"), f
    if "fail_stage" in w:
        assert one(g, "osgp.proxy.fail_stage") == w["fail_stage"], f
        return
    assert one(g, "osgp.suite") == "OSGP-AES-128-PSK", f
    assert g.get("osgp.proxy.repeater", []) == w.get("repeaters", []), f
    assert one(g, "osgp.aes.tag.status") == w["status"], f
    if w["status"] == CLEAR_0B:
        assert one(g, "osgp.response_code") == 0x0B, f
        assert any("Authentication failure" in m for m in g["_ws.expert.message"]), f
        return
    assert one(g, "osgp.aes.seq") == w["seq"], f
    assert hexval(g, "osgp.aes.ciphertext") == (w["ciphertext"].hex() or None), f
    assert hexval(g, "osgp.aes.tag") == w["tag"].hex(), f
    assert hexval(g, "osgp.aes.nonce") == w["nonce"].hex(), f
    assert hexval(g, "osgp.aes.address") == w["address"].hex(), f
    assert one(g, "osgp.aes.direction") == w["direction"], f
    assert one(g, "osgp.aes.key_id") == key_id, f
    assert one(g, "osgp.aes.request_seq") == w.get("request_seq"), f
    plain = w["plain"]
    if plain is None:
        assert "osgp.aes.tag_bad" in g, f
        assert one(g, "osgp.request_code") is None and one(g, "osgp.response_code") is None, f
        return
    assert "osgp.aes.tag_bad" not in g, f
    assert one(g, "osgp.seq") is None, f  # the frame's number, not a legacy trailer
    if w["type"] == 0:
        req = messages.decode_request(plain, messages.PLC_SERVICES)
        assert one(g, "osgp.request_code") == plain[0], f
        assert one(g, "osgp.table") == req.table, f
        fields = getattr(req, "_fields", ())
        assert one(g, "osgp.offset") == (req.offset if "offset" in fields else None), f
        assert hexval(g, "osgp.data") == (getattr(req, "data", b"").hex() or None), f
        if req.table == BT07:
            assert one(g, "osgp.psn") == req.data[2], f
        return
    assert one(g, "osgp.response_code") == plain[0], f
    if plain[0] == 0 and len(plain) > 1:
        assert one(g, "osgp.count") == int.from_bytes(plain[1:3], "big"), f
        assert hexval(g, "osgp.data") == (plain[3:].hex() or None), f
    elif plain[0] == 0x0C:
        assert one(g, "osgp.current_seq") == int.from_bytes(plain[1:5], "big"), f


@pytest.fixture(scope="module")
def aes_capture():
    buf = io.BytesIO()
    net, seg, clients = build_aes_feeder(buf)
    for i, c in enumerate(clients[:4]):
        c.read(TABLE)
        c.read(TABLE, 4, 12)
        c.write(TABLE, bytes(range(40)))
        c.write(TABLE, b"\x01\x02\x03", 8)
        c.call(5, bytes([i]))
        c.read(0x99)  # 0x05
        c.write(1, b"\x00")  # read-only: 0x03
    net.run(until=3600)
    # a client with the wrong key (and a fresh sequence number, which the device
    # checks first): the device answers 0x0B in clear; one with the right key
    # but a used sequence number: a sealed 0x0C
    for key, seq in ((bytes(16), 1000), (aes_key(0), 0)):
        late = ClientSession(
            PlcCarrier(lon.SubnetNode(2, 1)),
            AesPskSuite(key, nid(0), envelope=PLC_AES_ENVELOPE, send_seq=seq),
            profile=PLC_AES,
        )
        seg.attach(late)
        late.read(TABLE)
        net.run(until=net.now + 600)
    assert sum(n.relayed for n in seg.nodes.values()) > 0
    return buf.getvalue()


@needs_tshark
def test_aes_frames_decrypted_frame_by_frame(tmp_path, aes_capture):
    want = oracle(aes_capture)
    got = tshark(tmp_path, aes_capture, keys=key_records())
    assert len(got) == len(want)
    for w, g in zip(want, got):
        check_aes_frame(w, g)
    # the capture holds what the test is about
    plains = [(w["type"], w["plain"][0]) for w in want if w.get("plain")]
    for code in (0x30, 0x3F, 0x40, 0x4F):
        assert (0, code) in plains
    for code in (0x00, 0x03, 0x05, 0x0B, 0x0C):
        assert (1, code) in plains
    assert any(w.get("repeaters") for w in want)
    assert any(w.get("status") == BAD for w in want)  # the wrong client's request
    assert any(w.get("status") == CLEAR_0B for w in want)


@needs_tshark
def test_a_wrong_key_shows_as_a_bad_tag_never_a_failure(tmp_path, aes_capture):
    want = oracle(aes_capture)
    keys = key_records(lambda i: bytes(range(16)) if i == 1 else aes_key(i))
    got = tshark(tmp_path, aes_capture, keys=keys)
    bad = 0
    for w, g in zip(want, got):
        if w.get("status") != GOOD:
            continue
        wrong = w["address"] == nid(1)
        assert one(g, "osgp.aes.tag.status") == (BAD if wrong else GOOD), w["frame"]
        if wrong:
            assert "osgp.aes.tag_bad" in g and "osgp.undecoded" in g
            assert any("CCM tag does not verify" in m for m in g["_ws.expert.message"])
            bad += 1
    assert bad >= 14  # every exchange with meter 2/2


@needs_tshark
def test_without_a_key_the_envelope_is_decoded_and_nothing_decrypted(tmp_path, aes_capture):
    want = oracle(aes_capture)
    got = tshark(tmp_path, aes_capture, "-o", "osgp.suite:aes")
    for w, g in zip(want, got):
        if "fail_stage" in w or w.get("status") == CLEAR_0B:
            continue
        assert one(g, "osgp.suite") == "OSGP-AES-128-PSK"
        assert one(g, "osgp.aes.seq") == w["seq"]
        assert hexval(g, "osgp.aes.tag") == w["tag"].hex()
        assert one(g, "osgp.aes.tag.status") == UNCHECKED
        assert one(g, "osgp.request_code") is None and one(g, "osgp.response_code") is None
        assert any("no key" in m for m in g["_ws.expert.message"])


@needs_tshark
def test_the_key_id_enters_the_nonce(tmp_path):
    buf = io.BytesIO()
    net, _, clients = build_aes_feeder(buf, key_id=0x0203)
    clients[0].read(TABLE)
    net.run(until=600)
    cap = buf.getvalue()
    want = oracle(cap, key_id=0x0203)
    assert all(w["status"] == GOOD for w in want)
    got = tshark(tmp_path, cap, keys=key_records(key_id=0x0203))
    for w, g in zip(want, got):
        check_aes_frame(w, g, key_id=0x0203)
    # the right key under another key id: every tag is bad
    got = tshark(tmp_path, cap, keys=key_records(key_id=0))
    assert [one(g, "osgp.aes.tag.status") for g in got] == [BAD] * len(want)


def _frames(pairs):
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    a = Endpoint(bytes([192, 0, 2, 1]), bytes.fromhex("020000000001"))
    b = Endpoint(bytes([192, 0, 2, 255]), b"\xff" * 6)
    me, meter = lon.SubnetNode(1, 1), lon.SubnetNode(3, 17)
    for i, (typ, apdu) in enumerate(pairs):
        src, dst = (me, meter) if typ == lon.SPDU_REQUEST else (meter, me)
        n = lon.Npdu(src.subnet, src.node, dst, lon.Spdu(typ, (i // 2) % 16, apdu))
        w.write(
            cnip_udp_frame(lon.encode_lpdu(lon.Lpdu(n), crc=False), a, b, sequence=i), 10**6 * i
        )
    return buf.getvalue()


@needs_tshark
def test_every_response_code_sealed_by_osgp_and_corrupted_tags(tmp_path):
    """One exchange per response code, sealed by osgp's AES suite, then the
    same exchanges with one bit of each tag flipped: tshark names every code
    and reports each corrupted tag as expert info."""
    key, addr = bytes(range(0x40, 0x50)), bytes.fromhex("04a1b2c3d4e5")
    client = AesPskSuite(key, addr, envelope=PLC_AES_ENVELOPE)
    device = AesPskSuite(key, addr, role="device", envelope=PLC_AES_ENVELOPE)
    frames, plains = [], []
    for code in sorted(codes.RESPONSE_CODES):
        req = messages.FullRead(TABLE).encode()
        wire, _ = client.seal_request(req)
        _, _, ctx = device.open_request(wire)
        body = bytes([code]) + (bytes.fromhex("00000007") if code == 0x0C else b"")
        frames += [(lon.SPDU_REQUEST, wire), (lon.SPDU_RESPONSE, device.seal_response(ctx, body))]
        plains += [req, body]
    keys = {"3/17": (key, "aes", 0, addr)}
    got = tshark(tmp_path, _frames(frames), keys=keys)
    assert len(got) == len(frames)
    for (typ, wire), plain, g in zip(frames, plains, got):
        if wire == b"\x0b":
            assert one(g, "osgp.aes.tag.status") == CLEAR_0B
        else:
            assert one(g, "osgp.aes.tag.status") == GOOD
            assert one(g, "osgp.aes.seq") == int.from_bytes(wire[:4], "big")
        field = "osgp.request_code" if typ == lon.SPDU_REQUEST else "osgp.response_code"
        assert one(g, field) == plain[0]
        if plain[0] == 0x0C and typ == lon.SPDU_RESPONSE:
            assert one(g, "osgp.current_seq") == 7
    broken = [(t, w[:-1] + bytes([w[-1] ^ 1]) if len(w) > 1 else w) for t, w in frames]
    got = tshark(tmp_path, _frames(broken), keys=keys)
    assert len(got) == len(broken)
    for (_, wire), g in zip(broken, got):
        if wire == b"\x0b":
            continue
        assert one(g, "osgp.aes.tag.status") == BAD
        assert any("CCM tag does not verify" in m for m in g["_ws.expert.message"])
        assert one(g, "osgp.request_code") is None and one(g, "osgp.response_code") is None
    # truncated frames are malformed, never a Lua error
    short = [(t, w[:5]) for t, w in frames if len(w) > 1]
    got = tshark(tmp_path, _frames(short), keys=keys)
    for g in got:
        assert "osgp.malformed" in g
        assert not any("decode stopped" in m for m in g.get("_ws.expert.message", []))


@needs_tshark
def test_mep_exchanges_of_a_simulated_meter_under_aes(tmp_path):
    """MEP frames of osgp.sim.SimMeter under the AES suite: requests told from
    responses by alternation, every frame opened and compared with osgp's."""
    key, addr = bytes(range(16)), bytes.fromhex("04a1b2c3d4e5")
    meter = SimMeter(
        "SIMAES",
        start=1_767_225_600,
        links=[
            (MepDeviceCarrier(), AesPskSuite(key, addr, role="device", envelope=MEP_AES_ENVELOPE))
        ],
        seed=5,
    )
    client = ClientSession(MepCarrier(), AesPskSuite(key, addr, envelope=MEP_AES_ENVELOPE))
    client.read(1)
    client.read(52, 0, 6)
    client.call(10, bytes(7))
    frames = _exchange(client, meter.ports[0])
    got = tshark(tmp_path, _mep_capture(frames), keys={"mep": (key, "aes", 0, addr)})
    assert len(got) == len(frames) >= 6
    prof = MEP_AES_ENVELOPE.aes
    req_seq = b""
    for i, (f, g) in enumerate(zip(frames, got)):
        wire = f[2:]
        direction = aes_psk.DOWN if i % 2 == 0 else aes_psk.UP
        seq = int.from_bytes(wire[:4], "big")
        nonce = prof.nonce(direction, False, addr, 0, seq)
        aad = wire[:4] if i % 2 == 0 else req_seq + wire[:4]
        plain = crypto.ccm_open(key, nonce, wire[4:], aad, prof.tag_len)
        assert one(g, "osgp.link") == "MEP" and one(g, "osgp.type") == i % 2, i
        assert one(g, "osgp.aes.tag.status") == GOOD, i
        assert (one(g, "osgp.aes.seq"), hexval(g, "osgp.aes.nonce")) == (seq, nonce.hex()), i
        if i % 2 == 0:
            req_seq = wire[:4]
            assert one(g, "osgp.request_code") == plain[0], i
            assert one(g, "osgp.table") == int.from_bytes(plain[1:3], "big"), i
        else:
            assert one(g, "osgp.response_code") == plain[0], i
            assert one(g, "osgp.request_in") == i
            if plain[0] == 0 and len(plain) > 1:
                assert hexval(g, "osgp.data") == plain[3:].hex(), i
