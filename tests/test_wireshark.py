"""The OSGP Wireshark dissector (src/osgp/wireshark): tshark with the shipped
plugin dissects captures the simulator writes, and every dissected field is
compared, frame by frame, with what osgp encoded (each frame decoded again by
osgp's own link, security and service decoders, the request digests verified
and the responses opened with the device keys).  The plugin's constants are
checked against a fresh generation from osgp's tables."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
from importlib import resources

import pytest

from osgp import codes, loadprofile, tables
from osgp.crypto import oma_digest
from osgp.errors import AuthenticationError, DecodeError
from osgp.link import lon, lon_proxy
from osgp.link.carrier import MepCarrier, MepDeviceCarrier, PlcCarrier, PlcDeviceCarrier
from osgp.link.pcapng import (
    Endpoint,
    PcapngWriter,
    cnip_udp_frame,
    parse_cnip_udp_frame,
    read_pcapng,
)
from osgp.security.suite import MEP_ENVELOPE, PLC_ENVELOPE, LegacySuite
from osgp.services import messages
from osgp.session import ClientSession, DeviceSession
from osgp.sim import SimMeter, layouts
from osgp.sim.network import MediumProfile, Network
from osgp.tables.events import EVENTS, MFG_EVENTS
from osgp.tables.schema import table_name as schema_table_name
from osgp.wireshark import generate
from osgp.wireshark.cli import install

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(
    TSHARK is None, reason="tshark (Wireshark) not installed: apt install tshark"
)
PLUGIN = str(resources.files("osgp.wireshark").joinpath(generate.PLUGIN_NAME))
FIELDS = [
    "frame.number",
    "osgp.link",
    "osgp.type",
    "osgp.request_code",
    "osgp.response_code",
    "osgp.table",
    "osgp.table.name",
    "osgp.table.mfg",
    "osgp.offset",
    "osgp.count",
    "osgp.data",
    "osgp.seq",
    "osgp.current_seq",
    "osgp.digest",
    "osgp.digest.status",
    "osgp.digest.expected",
    "osgp.encrypted",
    "osgp.proc.number",
    "osgp.proc.name",
    "osgp.psn",
    "osgp.proc.result",
    "osgp.proxy.repeater",
    "osgp.proxy.target",
    "osgp.proxy.fail_count",
    "osgp.proxy.fail_stage",
    "osgp.request_in",
    "osgp.response_in",
    "osgp.payload",
    "_ws.expert.message",
    "osgp.malformed",
    "osgp.undecoded",
    "osgp.suite",
    "osgp.aes.seq",
    "osgp.aes.ciphertext",
    "osgp.aes.tag",
    "osgp.aes.tag.status",
    "osgp.aes.nonce",
    "osgp.aes.direction",
    "osgp.aes.address",
    "osgp.aes.key_id",
    "osgp.aes.request_seq",
    "osgp.aes.tag_bad",
    "osgp.event.seq",
    "osgp.event.code",
    "osgp.event.mfg",
    "osgp.event.name",
    "osgp.event.argument",
]
GOOD, BAD, UNCHECKED, ZERO_TRAILER = 1, 2, 0, 3
SPACING = 100.0
BT07, BT08, TABLE = 7, 8, 0x17
ET = messages.ET


def test_the_shipped_plugin_is_generated_from_osgps_tables():
    text = generate.template()
    assert generate.plugin() == text, "run: python -m osgp.wireshark.generate --write"
    assert generate.main(["--check"]) == 0
    # the constants come from the library, not from a copy
    for e in tables.catalogue():
        assert generate.lua_str(e.title) in text
    assert "INFERRED: Annex G repeating" in text


def test_install_and_print(tmp_path, capsys):
    from osgp.cli import main

    path = install(tmp_path / "plugins")
    assert path.read_text(encoding="utf-8") == generate.plugin()
    assert main(["wireshark", "--install", "--dir", str(tmp_path / "other")]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "other" / generate.PLUGIN_NAME) in out
    assert main(["wireshark", "--print"]) == 0
    assert capsys.readouterr().out == generate.plugin()


def test_the_plugin_ships_in_the_package():
    assert resources.files("osgp.wireshark").joinpath(generate.PLUGIN_NAME).is_file()


def test_nothing_but_the_command_line_imports_the_dissector_package():
    from .test_layers import SRC, imports, module_name

    users = {
        module_name(path)
        for path in SRC.rglob("*.py")
        for target, _ in imports(path)
        if target == "osgp.wireshark" or target.startswith("osgp.wireshark.")
    }
    assert {u for u in users if not u.startswith("osgp.wireshark")} == {"osgp.cli"}


# -- running tshark ----------------------------------------------------------------------
def key_line(addr, key):
    """One record of the key file (Wireshark's UAT text format): ``key`` is a
    legacy key, or (key, "aes", key id, nonce address) for the AES suite."""
    fields = [addr] + [
        k.hex() if isinstance(k, bytes) else str(k)
        for k in (key if isinstance(key, tuple) else (key,))
    ]
    return ",".join(f'"{f}"' for f in fields) + "\n"


def tshark(tmp_path, capture: bytes, *opts: str, keys=None, verbose=False):
    """Per frame: {field: [values]} from ``tshark -T json``, two passes (so a
    request shows the frame of its response).  HOME is a scratch folder, so no
    personal plugin or preference of the user takes part."""
    cap = tmp_path / "capture.pcapng"
    cap.write_bytes(capture)
    key_file = tmp_path / "osgp_keys"
    key_file.write_text(
        "".join(key_line(addr, key) for addr, key in (keys or {}).items()), encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # not under ASan
    env["HOME"] = str(tmp_path)
    env.pop("XDG_CONFIG_HOME", None)
    cmd = [TSHARK, "-n", "-2", "-X", f"lua_script:{PLUGIN}", "-r", str(cap)]
    cmd += ["-o", f"osgp.keys_file:{key_file}", *opts]
    if verbose:
        p = subprocess.run(cmd + ["-V"], capture_output=True, timeout=300, env=env, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout + p.stderr
    for f in FIELDS:
        cmd += ["-e", f]
    p = subprocess.run(cmd + ["-T", "json"], capture_output=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr.decode()
    assert b"Lua" not in p.stderr, p.stderr.decode()
    return [pkt["_source"]["layers"] for pkt in json.loads(p.stdout)]


def one(layers, field):
    """The single value of ``field`` (None when absent), as an int where it is one."""
    v = layers.get(field)
    if v is None:
        return None
    assert len(v) == 1, (field, v)
    s = v[0]
    try:
        return int(s, 0)
    except ValueError:
        return s


def hexval(layers, field):
    v = layers.get(field)
    if v is None:
        return None
    assert len(v) == 1, (field, v)
    return v[0].replace(":", "")


# -- what osgp encoded, frame by frame ------------------------------------------------------
def addr_of(a):
    return f"{a.subnet}/{a.node}"


def plc_oracle(capture: bytes, keys):
    """Each captured frame decoded by osgp: LonTalk, proxy, envelope (request
    digests verified, responses opened with the key of the target) and
    service layers.  Requests and responses pair by (source, destination,
    transaction number), a response's digest chaining over its request."""
    out, pending, last = [], {}, {}
    for i, (_, _, frame) in enumerate(read_pcapng(capture), 1):
        _, lpdu, _ = parse_cnip_udp_frame(frame)
        n = lon.decode_lpdu(lpdu, crc=False).npdu
        src, dst, sp = f"{n.src_subnet}/{n.src_node}", addr_of(n.dest), n.pdu
        apdu = sp.apdu
        rec = {"frame": i, "dst": dst}
        if sp.type == lon.SPDU_REQUEST:
            target = dst
            if apdu[0] == lon_proxy.PROXY:
                p = lon_proxy.decode_proxy(apdu)
                rec["repeaters"] = [f"{r.subnet}/{r.node}" for r in p.repeaters]
                target = f"{p.target.fields[0]}/{p.target.fields[1] & 0x7F}"
                rec["target"] = target
                apdu = p.apdu
            suite = LegacySuite(keys[target], PLC_ENVELOPE)
            rec.update(type=0, code=apdu[0], digest=apdu[-8:].hex(), body=apdu[:-8])
            try:
                body, seq, ctx = suite.open_request(apdu)
            except AuthenticationError:
                rec.update(status=BAD, plain=None)
                pending[(src, dst, sp.trans)] = (i, None, suite, len(rec.get("repeaters", [])))
                out.append(rec)
                continue
            rec.update(status=GOOD, seq=seq, encrypted=ctx.encrypted, plain=body)
            rec["request"] = messages.decode_request(body, messages.PLC_SERVICES)
            pending[(src, dst, sp.trans)] = (i, ctx, suite, len(rec.get("repeaters", [])))
        else:
            key = (dst, src, sp.trans)
            if key in pending:
                rec["request_in"] = pending[key][0]
                last[key] = pending.pop(key)
            req_frame, ctx, suite, nreps = last[key]
            rec["type"] = 1
            if apdu[0] == lon_proxy.PROXY_FAIL:
                rec.update(fail_count=apdu[1], fail_stage=nreps + 1 - apdu[1])
                out.append(rec)
                continue
            if apdu[0] == lon_proxy.PROXY:
                apdu = apdu[1:]
            rec["digest"] = apdu[-8:].hex()
            if ctx is None:  # the request did not verify: 0x0B in clear, zero trailer
                assert apdu == b"\x0b" + bytes(8)
                rec.update(code=0x0B, status=ZERO_TRAILER, plain=b"\x0b")
            else:
                plain = suite.open_response(ctx, apdu)
                rec.update(code=plain[0], status=GOOD, plain=plain, encrypted=ctx.encrypted)
                rec["request_of"] = next(r for r in out if r["frame"] == req_frame)
        out.append(rec)
    return out


def table_name(tid):
    names = {e.id: e.name for e in tables.catalogue("table")}
    return names.get(tid) or schema_table_name(tid)


def check_frame(want, got):
    """The dissected fields of one frame against osgp's decode of it."""
    f = want["frame"]
    assert one(got, "frame.number") == f
    assert one(got, "osgp.link") == "PLC"
    assert one(got, "osgp.type") == want["type"], f
    assert one(got, "osgp.request_in") == want.get("request_in"), f
    if "fail_count" in want:
        assert one(got, "osgp.proxy.fail_count") == want["fail_count"], f
        assert one(got, "osgp.proxy.fail_stage") == want["fail_stage"], f
        assert any("Proxy chain failed" in m for m in got["_ws.expert.message"]), f
        return
    assert got.get("osgp.proxy.repeater", []) == want.get("repeaters", []), f
    assert one(got, "osgp.proxy.target") == want.get("target"), f
    assert hexval(got, "osgp.digest") == want["digest"], f
    assert one(got, "osgp.digest.status") == want["status"], f
    if want["type"] == 0:
        assert one(got, "osgp.request_code") == want["code"] or want.get("encrypted"), f
        if want["status"] == BAD:
            assert any("Digest does not verify" in m for m in got["_ws.expert.message"]), f
            return
        req = want["request"]
        assert one(got, "osgp.request_code") == want["plain"][0], f
        assert one(got, "osgp.encrypted") == int(want["encrypted"]), f
        assert one(got, "osgp.seq") == want["seq"], f
        assert one(got, "osgp.table") == req.table, f
        assert one(got, "osgp.table.mfg") == int(req.table & ET != 0), f
        assert one(got, "osgp.table.name") == table_name(req.table), f
        # messages are NamedTuples: a full read has no fields but ``table``
        fields = getattr(req, "_fields", ())
        assert one(got, "osgp.offset") == (req.offset if "offset" in fields else None), f
        assert one(got, "osgp.count") == (
            (req.count if "count" in fields else None) if "data" not in fields else len(req.data)
        ), f
        data = getattr(req, "data", b"")
        assert hexval(got, "osgp.data") == (data.hex() or None), f
        if req.table == BT07:
            assert one(got, "osgp.proc.number") == int.from_bytes(data[:2], "little") & 0x7FF
            assert one(got, "osgp.psn") == data[2], f
        return
    plain = want["plain"]
    assert one(got, "osgp.response_code") == plain[0], f
    if want["status"] == ZERO_TRAILER:
        assert any("Authentication failure" in m for m in got["_ws.expert.message"]), f
        return
    assert one(got, "osgp.encrypted") == int(want["encrypted"]), f
    req = want["request_of"]["request"]
    if plain[0] == 0 and len(plain) > 1:
        count = int.from_bytes(plain[1:3], "big")
        assert one(got, "osgp.count") == count and hexval(got, "osgp.data") == plain[3:].hex(), f
        if req.table == BT08:
            assert one(got, "osgp.proc.result") == plain[6], f
            assert one(got, "osgp.psn") == plain[5], f
    elif plain[0] == 0x0C:
        assert one(got, "osgp.current_seq") == int.from_bytes(plain[1:5], "big"), f
        assert any("Invalid sequence number" in m for m in got["_ws.expert.message"]), f
    elif plain[0]:
        assert got["_ws.expert.message"], f


# -- a simulated feeder with every service ---------------------------------------------------
def device_key(i):
    return bytes([0x11 * (i + 1)]) * 12


def build_feeder(capture, *, encrypt=(), dead_repeater=False):
    """Five meters 100 m apart (250 m reach): the far ones through repeaters."""
    net = Network(seed=7, capture=capture)
    seg = net.add_segment("feeder", profile=MediumProfile(reach_m=250.0, base_loss=0.0))
    for i in range(5):
        addr = lon.SubnetNode(2, 1 + i)
        image = bytearray(((i * 13 + k) & 0xFF) for k in range(40))
        dev = DeviceSession(
            PlcDeviceCarrier([addr]),
            LegacySuite(device_key(i), PLC_ENVELOPE),
            tables={TABLE: image, 1: bytearray(32), BT07: bytearray(8), BT08: bytearray(8)},
            read_only=[1],
            procedures={5: lambda params: (0, b"\x2a" + params)},
            seq=100 if i == 3 else 0,
        )
        seg.add_meter(addr, SPACING * (i + 1), dev)
    clients = []
    for i in range(5):
        addr = lon.SubnetNode(2, 1 + i)
        c = ClientSession(
            PlcCarrier(addr, path=seg.route_to(addr)),
            LegacySuite(device_key(i), PLC_ENVELOPE, encrypt=i in encrypt),
        )
        seg.attach(c)
        clients.append(c)
    if dead_repeater:
        far = clients[4].carrier.path
        seg.nodes[(far[1].subnet << 7) | far[1].node].position = 1e9
    return net, seg, clients


def every_service(clients):
    for i, c in enumerate(clients[:4]):
        c.read(TABLE)  # full read
        c.read(TABLE, 4, 12)  # partial read
        c.write(TABLE, bytes(range(40)))  # full write
        c.write(TABLE, b"\x01\x02\x03", 8)  # partial write
        c.call(5, bytes([i]))  # BT07 write, BT08 read
        c.read(0x99)  # a table the meter lacks: 0x05
        c.write(1, b"\x00")  # read-only: 0x03


KEYS = {f"2/{1 + i}": device_key(i) for i in range(5)}


@pytest.fixture(scope="module")
def feeder_capture():
    buf = io.BytesIO()
    net, seg, clients = build_feeder(buf, encrypt=(2,))
    every_service(clients)
    # a client with the wrong key: the device answers 0x0B
    wrong = ClientSession(PlcCarrier(lon.SubnetNode(2, 1)), LegacySuite(bytes(12), PLC_ENVELOPE))
    seg.attach(wrong)
    wrong.read(TABLE)
    net.run(until=3600)
    assert sum(n.relayed for n in seg.nodes.values()) > 0
    return buf.getvalue()


@needs_tshark
def test_every_service_response_code_and_proxy_chain_frame_by_frame(tmp_path, feeder_capture):
    want = plc_oracle(feeder_capture, KEYS)
    got = tshark(tmp_path, feeder_capture, keys=KEYS)
    assert len(got) == len(want)
    for w, g in zip(want, got):
        check_frame(w, g)
    # the capture holds what the test is about
    codes = {(w["type"], w.get("code")) for w in want if w.get("status") != BAD}
    for code in (0x30, 0x3F, 0x40, 0x4F):
        assert (0, code) in codes
    for code in (0x00, 0x03, 0x05, 0x0B, 0x0C):
        assert (1, code) in codes
    assert any(w.get("repeaters") for w in want) and any(w.get("encrypted") for w in want)
    assert any(w.get("request", None) and w["request"].table == BT07 for w in want)
    # every request a response answered points at it
    by_frame = {one(g, "frame.number"): g for g in got}
    for w in want:
        if "request_in" in w:
            assert one(by_frame[w["request_in"]], "osgp.response_in") == w["frame"]


@needs_tshark
def test_without_keys_nothing_is_checked_and_rc4_stays_undecoded(tmp_path, feeder_capture):
    want = plc_oracle(feeder_capture, KEYS)
    got = tshark(tmp_path, feeder_capture)
    for w, g in zip(want, got):
        if "fail_count" in w:
            continue
        if w.get("status") == ZERO_TRAILER:
            assert one(g, "osgp.digest.status") == ZERO_TRAILER
        elif w["type"] == 0:
            assert one(g, "osgp.digest.status") == UNCHECKED
        if w.get("encrypted"):
            # an encrypted message shows as undecoded unless its first byte
            # happens to be a valid code
            if one(g, "osgp.payload") is not None:
                assert any("RC4-encrypted" in m for m in g["_ws.expert.message"])
        elif w.get("plain") is not None:
            field = "osgp.request_code" if w["type"] == 0 else "osgp.response_code"
            assert one(g, field) == w["plain"][0]


@needs_tshark
def test_a_wrong_key_makes_the_digests_bad(tmp_path, feeder_capture):
    keys = dict(KEYS, **{"2/2": bytes(range(12))})
    want = plc_oracle(feeder_capture, KEYS)
    got = tshark(tmp_path, feeder_capture, keys=keys)
    bad = 0
    for w, g in zip(want, got):
        if w["type"] == 0 and w["status"] == GOOD:
            wrong = w.get("target", w["dst"]) == "2/2"
            assert one(g, "osgp.digest.status") == (BAD if wrong else GOOD), w["frame"]
            if wrong:
                assert any("Digest does not verify" in m for m in g["_ws.expert.message"])
                assert one(g, "osgp.digest.expected") == oma_digest(keys["2/2"], w["body"]).hex()
                bad += 1
    assert bad >= 7  # every service to meter 2/2


@needs_tshark
def test_a_dead_stage_answers_0x4c_with_the_failing_stage(tmp_path):
    buf = io.BytesIO()
    net, seg, clients = build_feeder(buf, dead_repeater=True)
    clients[4].read(TABLE)
    net.run(until=3600)
    cap = buf.getvalue()
    want = plc_oracle(cap, KEYS)
    assert any("fail_count" in w for w in want)
    got = tshark(tmp_path, cap, keys=KEYS)
    for w, g in zip(want, got):
        check_frame(w, g)


@needs_tshark
def test_field_descriptions_mark_the_inferred_choices(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["HOME"] = str(tmp_path)
    env.pop("XDG_CONFIG_HOME", None)
    install(tmp_path / ".local" / "lib" / "wireshark" / "plugins")  # the personal folder
    out = subprocess.run(
        [TSHARK, "-G", "fields"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    ).stdout
    rows = {r.split("\t")[2]: r for r in out.splitlines() if r.startswith("F\t")}
    for f in ("osgp.seq", "osgp.digest", "osgp.request_code", "osgp.proxy.repeater"):
        assert "INFERRED" in rows[f], f
    assert "VERIFIED" in rows["osgp.digest"]  # MEP's envelope


# -- malformed payloads ------------------------------------------------------------------------
def _lon_capture(apdus):
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    a = Endpoint(bytes([192, 0, 2, 1]), bytes.fromhex("020000000001"))
    b = Endpoint(bytes([192, 0, 2, 255]), b"\xff" * 6)
    for i, (typ, apdu) in enumerate(apdus):
        n = lon.Npdu(1, 1, lon.SubnetNode(2, 3), lon.Spdu(typ, i % 16, apdu))
        if typ == lon.SPDU_RESPONSE:
            n = lon.Npdu(2, 3, lon.SubnetNode(1, 1), lon.Spdu(typ, i % 16, apdu))
        lpdu = lon.encode_lpdu(lon.Lpdu(n), crc=False)
        w.write(cnip_udp_frame(lpdu, a, b, sequence=i), 1_000_000 * i)
    return buf.getvalue()


def well_formed(typ, apdu):
    """osgp's own decoders accept this APDU as an OSGP message."""
    try:
        if typ == lon.SPDU_REQUEST:
            if apdu[0] == lon_proxy.PROXY:
                apdu = lon_proxy.decode_proxy(apdu).apdu
            if len(apdu) < 13:
                return False
            messages.decode_request(apdu[:-12], messages.PLC_SERVICES)
            return True
        if apdu[0] == lon_proxy.PROXY_FAIL:
            return len(apdu) == 2
        if apdu[0] == lon_proxy.PROXY:
            apdu = apdu[1:]
        if len(apdu) < 9 or apdu[0] not in codes.RESPONSE_CODES:
            return False
        messages.decode_response(apdu[:-8], None, messages.PLC_SERVICES)
        return True
    except DecodeError:
        return False


def _broken(rng):
    """A payload osgp's decoders reject, and how."""
    kind = rng.randrange(6)
    tail = bytes(rng.randrange(256) for _ in range(12))
    if kind == 0:  # shorter than code + seq + digest
        return lon.SPDU_REQUEST, bytes([0x3F]) + bytes(rng.randrange(256) for _ in range(5))
    if kind == 1:  # write whose count disagrees with its data
        return lon.SPDU_REQUEST, bytes([0x40, 0, 0x17, 0, 50]) + bytes(7) + tail
    if kind == 2:  # read response whose count disagrees
        return lon.SPDU_RESPONSE, bytes([0x00, 0, 40]) + bytes(3) + tail[:8]
    if kind == 3:  # a truncated proxy frame
        return lon.SPDU_REQUEST, bytes([0x4D, 0x03, 2])
    if kind == 4:  # not a request code
        return lon.SPDU_REQUEST, bytes([0x99]) + tail
    return lon.SPDU_RESPONSE, bytes([0x4C])  # failure without its count


@needs_tshark
def test_malformed_payloads_show_as_malformed_and_never_fail_tshark(tmp_path):
    rng = random.Random(2024)
    broken = [_broken(rng) for _ in range(60)]
    kinds = (lon.SPDU_REQUEST, lon.SPDU_RESPONSE)
    noise = [
        (rng.choice(kinds), bytes(rng.randrange(256) for _ in range(k)))
        for k in (rng.randrange(1, 120) for _ in range(200))
    ]
    cap = _lon_capture(broken + noise)
    got = tshark(tmp_path, cap, keys={"*": bytes(12)})
    assert len(got) == len(broken) + len(noise)
    for g in got[: len(broken)]:
        msgs = g.get("_ws.expert.message", [])
        assert any(
            "not a request code" in m
            or "need" in m
            or "count" in m
            or "proxy" in m.lower()
            or "0x4C" in m
            for m in msgs
        ), g
        assert not any("decode stopped" in m for m in msgs), g
    for (typ, apdu), g in zip(noise, got[len(broken) :]):
        assert one(g, "osgp.link") == "PLC"
        flagged = "osgp.malformed" in g or "osgp.undecoded" in g
        assert flagged == (not well_formed(typ, apdu)), (typ, apdu.hex(), g)
        assert not any("decode stopped" in m for m in g.get("_ws.expert.message", [])), g
    text = tshark(tmp_path, cap, verbose=True)
    assert "Lua Error" not in text and "decode stopped" not in text


def _exchange(client, port):
    """Frames of a client and a device session run back to back (no loss)."""
    frames, now = [], 0.0
    for _ in range(200):
        f = client.poll_transmit(now)
        if f is None:
            d = client.next_deadline()
            if d is None:
                return frames
            now = d
            client.handle_timeout(now)
            continue
        frames.append(f)
        port.receive_data(f, now)
        r = port.poll_transmit(now)
        while r is not None:
            frames.append(r)
            client.receive_data(r, now)
            r = port.poll_transmit(now)
    raise AssertionError("the exchange did not settle")


# -- MEP serial frames on DLT_USER0 ------------------------------------------------------------
MEP_KEY = bytes([1]) * 16  # MEP guide p.14-15
DLT_USER0 = 147


def _mep_capture(frames, linktype=DLT_USER0):
    buf = io.BytesIO()
    w = PcapngWriter(buf, linktype=linktype)
    for i, f in enumerate(frames):
        w.write(f, 1_000_000 * i)
    return buf.getvalue()


@needs_tshark
@pytest.mark.parametrize("dlt", [DLT_USER0, DLT_USER0 + 5])
def test_mep_guide_request_verifies_in_lua(tmp_path, dlt):
    """The MEP guide's partial read (p.15) and its digest under MAK 01 x 16, on
    the default DLT_USER0 and on another link type chosen by preference."""
    frame = bytes.fromhex("00143f0017000000002c77635b9113db85a135a0575e")
    opts = () if dlt == DLT_USER0 else ("-o", f"osgp.mep_dlt:{dlt}")
    got = tshark(tmp_path, _mep_capture([frame], dlt), *opts, keys={"mep": MEP_KEY})
    (g,) = got
    assert one(g, "osgp.link") == "MEP"
    assert (one(g, "osgp.request_code"), one(g, "osgp.table")) == (0x3F, 0x17)
    assert (one(g, "osgp.offset"), one(g, "osgp.count")) == (0, 0x2C)
    assert one(g, "osgp.seq") == 0x77635B91
    assert one(g, "osgp.digest.status") == GOOD


@needs_tshark
@pytest.mark.parametrize("encrypt", [False, True])
def test_mep_exchanges_of_a_simulated_meter(tmp_path, encrypt):
    meter = SimMeter(
        "SIM0000042",
        start=1_767_225_600,
        links=[(MepDeviceCarrier(), LegacySuite(MEP_KEY, MEP_ENVELOPE))],
        seed=5,
    )
    port = meter.ports[0]
    client = ClientSession(MepCarrier(), LegacySuite(MEP_KEY, MEP_ENVELOPE, encrypt=encrypt))
    client.read(1)
    client.read(52, 0, 6)
    client.call(10, bytes(7))  # BP10 with a bad parameter block
    frames = _exchange(client, port)
    got = tshark(tmp_path, _mep_capture(frames), keys={"mep": MEP_KEY})
    suite = LegacySuite(MEP_KEY, MEP_ENVELOPE)
    assert len(got) == len(frames)
    ctx = None
    for i, (f, g) in enumerate(zip(frames, got)):
        assert one(g, "osgp.digest.status") == GOOD, i
        assert one(g, "osgp.encrypted") == int(encrypt), i
        wire = f[2:]
        if i % 2 == 0:
            body, seq, ctx = suite.open_request(wire)
            assert one(g, "osgp.request_code") == body[0] and one(g, "osgp.seq") == seq
            assert one(g, "osgp.table") == int.from_bytes(body[1:3], "big")
        else:
            plain = suite.open_response(ctx, wire)
            assert one(g, "osgp.response_code") == plain[0]
            assert one(g, "osgp.request_in") == i  # frame numbers count from 1
            if plain[0] == 0 and len(plain) > 1:
                assert hexval(g, "osgp.data") == plain[3:].hex()


# -- a simulated meter addressed by its Neuron ID ------------------------------------------------
PLC_OMAK = bytes.fromhex("dfdfdfdfdfdfdfdfdfdfdfdf")  # the Annex E test-vector key
NID = lon.NeuronId(bytes.fromhex("04a1b2c3d4e5"))


@needs_tshark
@pytest.mark.parametrize("encrypt", [False, True])
def test_a_sim_meter_addressed_by_neuron_id(tmp_path, encrypt):
    meter = SimMeter(
        "SIM0000042",
        start=1_767_225_600,
        links=[
            (PlcDeviceCarrier([lon.SubnetNode(3, 17), NID]), LegacySuite(PLC_OMAK, PLC_ENVELOPE))
        ],
        seed=5,
    )
    client = ClientSession(PlcCarrier(NID), LegacySuite(PLC_OMAK, PLC_ENVELOPE, encrypt=encrypt))
    client.read(1)
    client.read(52, 0, 6)
    client.call(10, bytes(7))
    frames = _exchange(client, meter.ports[0])
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    a = Endpoint(bytes([192, 0, 2, 1]), bytes.fromhex("020000000001"))
    b = Endpoint(bytes([192, 0, 2, 255]), b"\xff" * 6)
    for i, f in enumerate(frames):
        w.write(cnip_udp_frame(f[:-2], a, b, sequence=i), 1_000_000 * i)  # CN/IP: no CRC
    got = tshark(tmp_path, buf.getvalue(), keys={NID.nid.hex(): PLC_OMAK})
    suite = LegacySuite(PLC_OMAK, PLC_ENVELOPE)
    assert len(got) == len(frames) >= 8
    ctx = None
    for i, (f, g) in enumerate(zip(frames, got)):
        wire = lon.decode_lpdu(f).npdu.pdu.apdu
        assert one(g, "osgp.digest.status") == GOOD, i
        assert one(g, "osgp.encrypted") == int(encrypt), i
        if i % 2 == 0:
            body, seq, ctx = suite.open_request(wire)
            assert one(g, "osgp.request_code") == body[0] and one(g, "osgp.seq") == seq
            assert one(g, "osgp.response_in") == i + 2
        else:
            plain = suite.open_response(ctx, wire)
            assert one(g, "osgp.response_code") == plain[0]
            assert one(g, "osgp.request_in") == i


@needs_tshark
def test_every_response_code_by_name(tmp_path):
    """One exchange per response code of osgp.codes, sealed by osgp's legacy
    suite; tshark names each code as osgp does and verifies each digest."""
    import xml.etree.ElementTree as ET_XML

    client, device = LegacySuite(PLC_OMAK, PLC_ENVELOPE), LegacySuite(PLC_OMAK, PLC_ENVELOPE)
    me, meter = lon.SubnetNode(1, 1), lon.SubnetNode(3, 17)
    lpdus = []
    for i, code in enumerate(sorted(codes.RESPONSE_CODES)):
        wire, _ = client.seal_request(messages.FullRead(TABLE).encode(), 10 + i)
        _, _, ctx = device.open_request(wire)
        body = bytes([code]) + (bytes(4) if code == 0x0C else b"")
        resp = device.seal_response(ctx, body)
        for src, dst, typ, apdu in ((me, meter, 0, wire), (meter, me, 2, resp)):
            n = lon.Npdu(src.subnet, src.node, dst, lon.Spdu(typ, i % 16, apdu))
            lpdus.append(lon.encode_lpdu(lon.Lpdu(n), crc=False))
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    a = Endpoint(bytes([192, 0, 2, 1]), bytes.fromhex("020000000001"))
    b = Endpoint(bytes([192, 0, 2, 255]), b"\xff" * 6)
    for i, lpdu in enumerate(lpdus):
        w.write(cnip_udp_frame(lpdu, a, b, sequence=i), 1_000_000 * i)
    cap = tmp_path / "codes.pcapng"
    cap.write_bytes(buf.getvalue())
    keys = tmp_path / "keys"
    keys.write_text(f'"3/17","{PLC_OMAK.hex()}"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["HOME"] = str(tmp_path)
    xml = subprocess.run(
        [TSHARK, "-n", "-2", "-X", f"lua_script:{PLUGIN}", "-o", f"osgp.keys_file:{keys}"]
        + ["-r", str(cap), "-T", "pdml"],
        capture_output=True,
        check=True,
        timeout=300,
        env=env,
    ).stdout
    packets = list(ET_XML.fromstring(xml).iter("packet"))
    assert len(packets) == 2 * len(codes.RESPONSE_CODES)
    for code, pkt in zip(sorted(codes.RESPONSE_CODES), packets[1::2]):
        f = {e.get("name"): e for e in pkt.iter("field")}
        assert int(f["osgp.response_code"].get("show"), 0) == code
        assert codes.RESPONSE_CODES[code] in f["osgp.response_code"].get("showname")
        assert codes.ResponseCode(code).name in f["osgp.response_code"].get("showname")
        status = int(f["osgp.digest.status"].get("show"))
        # sealed with the request's context, even 0x0B carries a chained digest
        assert status == GOOD, code


@needs_tshark
def test_history_log_entries_named_from_the_event_catalogue(tmp_path):
    """A SimMeter logs events (self read, demand reset, procedures); a client
    reads BT71 and then BT74 in partial reads; tshark decodes every entry that
    lies wholly inside one read and names it from osgp.tables.events."""
    addr = lon.SubnetNode(3, 17)
    meter = SimMeter(
        "SIM0000042",
        start=1_767_225_600,
        links=[(PlcDeviceCarrier([addr]), LegacySuite(PLC_OMAK, PLC_ENVELOPE))],
        seed=5,
    )
    client = ClientSession(PlcCarrier(addr), LegacySuite(PLC_OMAK, PLC_ENVELOPE))
    ep = layouts.EP
    client.call(layouts.EP12 - ep, b"", mfg=True)  # self read
    client.call(layouts.EP34 - ep, b"", mfg=True)  # demand reset
    client.call(layouts.EP23 - ep, b"\x00", mfg=True)  # contactor: a manufacturer event
    bt00, bt71 = client.read(0), client.read(71)
    frames = _exchange(client, meter.ports[0])
    dims = tables.decode(71, bt71.result)
    flags = dims["LOG_FLAGS"]
    entry = 4 + dims["HIST_DATA_LENGTH"] + 6 * flags["HIST_DATE_TIME_FLAG"]
    entry += 2 * (flags["EVENT_NUMBER_FLAG"] + flags["HIST_SEQ_NBR_FLAG"])
    bt74 = client.read(74, 0, 11 + dims["NBR_HISTORY_ENTRIES"] * entry)  # [OPT p.51-53]
    frames += _exchange(client, meter.ports[0])
    assert bt74.exchanges > 1 and flags["HIST_SEQ_NBR_FLAG"]
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    a = Endpoint(bytes([192, 0, 2, 1]), bytes.fromhex("020000000001"))
    b = Endpoint(bytes([192, 0, 2, 255]), b"\xff" * 6)
    for i, f in enumerate(frames):
        w.write(cnip_udp_frame(f[:-2], a, b, sequence=i), 1_000_000 * i)
    got = tshark(tmp_path, buf.getvalue(), keys={"3/17": PLC_OMAK})
    log = loadprofile.decode_event_log(bt71.result, bt74.result, bt00=bt00.result)
    by_seq = {int(e["seq"]): e for e in log}
    seen = []
    for g in got:
        for seq, code, mfg, name, arg in zip(
            g.get("osgp.event.seq", []),
            g.get("osgp.event.code", []),
            g.get("osgp.event.mfg", []),
            g.get("osgp.event.name", []),
            g.get("osgp.event.argument", []),
        ):
            e = by_seq[int(seq)]
            assert (int(code), bool(int(mfg))) == (int(e["code"]), bool(e["mfg"]))
            assert (MFG_EVENTS if e["mfg"] else EVENTS)[name] == int(e["code"])
            assert arg.replace(":", "") == bytes(e["argument"]).hex()
            seen.append(name)
    assert {"self read", "demand reset", "contactor opened"} <= set(seen)
    # only valid entries, each once; those split across two reads are left out
    assert len(log) // 2 <= len(seen) <= len(log)
