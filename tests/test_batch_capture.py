"""The capture kernels (pcapng / pcap walker, CN/IP extraction) on both
implementations, checked against dpkt and against the frames the simulator
wrote; damaged files give DecodeErrors or counts, never a crash."""

from __future__ import annotations

import gzip
import io
import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from osgp import _backend
from osgp.batch import archive
from osgp.errors import DecodeError, MalformedError, TruncatedError
from osgp.link.pcapng import Endpoint, cnip_udp_frame

from .batch_feeder import build
from .conftest import implementations

dpkt = pytest.importorskip("dpkt", reason="dpkt (test extra) reads the captures independently")

A = Endpoint(bytes([192, 0, 2, 1]), bytes.fromhex("020000000001"))  # RFC 5737 addresses
B = Endpoint(bytes([192, 0, 2, 2]), bytes.fromhex("020000000002"))
IMPLS = implementations("capture")


@pytest.fixture(scope="module", params=IMPLS)
def cap(request):
    return request.param


@pytest.fixture(scope="module")
def sim():
    """A simulator capture and every (frame, t_ns) its writer was given."""
    written = []
    import osgp.link.pcapng as pcapng

    orig = pcapng.PcapngWriter.write

    def spy(self, frame, t_ns):
        written.append((bytes(frame), int(t_ns)))
        orig(self, frame, t_ns)

    pcapng.PcapngWriter.write = spy
    try:
        f = build(3, seed=11)
    finally:
        pcapng.PcapngWriter.write = orig
    return f.capture, written


def packets(cap, data, strict=True):
    ts, off, ln, _, info = cap.walk(data, strict)
    return [(bytes(data[o : o + n]), int(t)) for t, o, n in zip(ts, off, ln)], info


# ---- independent writers (the format as the drafts define it) -------------------------------
def block(e, kind, body):
    body += bytes(-len(body) % 4)
    return struct.pack(e + "II", kind, 12 + len(body)) + body + struct.pack(e + "I", 12 + len(body))


def option(e, code, value):
    return struct.pack(e + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def pcapng_file(e, pkts, *, resol=None, tsoffset=None, extra=b""):
    """One section in byte order ``e`` ('<' or '>'), one Ethernet interface,
    an EPB per (frame, ticks)."""
    out = block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if resol is not None:
        opts += option(e, 9, bytes([resol]))
    if tsoffset is not None:
        opts += option(e, 14, struct.pack(e + "q", tsoffset))
    if opts:
        opts += option(e, 0, b"")
    out += block(e, 1, struct.pack(e + "HHI", 1, 0, 0xFFFF) + opts) + extra
    for frame, ticks in pkts:
        head = struct.pack(e + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
        out += block(e, 6, head + frame)
    return out


def pcap_file(e, pkts, nano):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for frame, (sec, frac) in pkts:
        out += struct.pack(e + "IIII", sec, frac, len(frame), len(frame)) + frame
    return out


def cnip_frames(n, seed=5):
    rng = random.Random(seed)
    return [
        cnip_udp_frame(
            bytes([0x01, 0x16, 0x01, 0x02] + [rng.randrange(256)] * rng.randrange(3, 40)), A, B
        )
        for _ in range(n)
    ]


# ---- every frame and timestamp ---------------------------------------------------------------
def test_simulator_capture_every_frame_and_timestamp(cap, sim):
    data, written = sim
    got, info = packets(cap, data)
    assert got == written  # byte for byte, to the nanosecond, in order
    assert info["format"] == "pcapng" and info["linktypes"] == (1,) and info["tsresol"] == (9,)
    seen = list(dpkt.pcapng.Reader(io.BytesIO(data)))
    assert [bytes(b) for _, b in seen] == [f for f, _ in got]
    for (t, _), (_, ours) in zip(seen, got):
        assert abs(t * 1e9 - ours) < 1e3  # dpkt gives float seconds


def test_simulator_capture_cnip_payloads_match_dpkt(cap, sim):
    data, _ = sim
    ts, off, ln, fi, info = cap.walk(data)
    lpdus, bounds, status = cap.cnip_extract(data, off, ln, fi, info["linktypes"])
    assert (status == cap.OK).all()
    for i, (_, raw) in enumerate(dpkt.pcapng.Reader(io.BytesIO(data))):
        udp = dpkt.ethernet.Ethernet(raw).data.data
        hl = 20 + 4 * bytes(udp.data)[4]  # CN/IP header + extension words
        assert lpdus[bounds[i] : bounds[i + 1]].tobytes() == bytes(udp.data)[hl:]


@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_written_by_dpkt(cap, nano):
    frames = cnip_frames(50)
    times = [1_767_225_600 + i * 0.125 + (i % 7) * 1e-6 for i in range(50)]
    buf = io.BytesIO()
    w = dpkt.pcap.Writer(buf, nano=nano)
    for f, t in zip(frames, times):
        w.writepkt(f, ts=t)
    data = buf.getvalue()
    got, info = packets(cap, data)
    assert info["format"] == "pcap" and info["tsresol"] == ((9,) if nano else (6,))
    back = list(dpkt.pcap.Reader(io.BytesIO(data)))
    assert [f for f, _ in got] == [bytes(b) for _, b in back] == frames
    for (t, _), (_, ours) in zip(back, got):
        if nano:  # dpkt gives a Decimal: exact
            assert int(t * 10**9) == ours
        else:
            assert abs(t * 1e9 - ours) < 1e3


@pytest.mark.parametrize("e", ["<", ">"])
def test_both_byte_orders_pcapng_and_pcap(cap, e):
    frames = cnip_frames(20)
    ticks = [1_767_225_600_000_000 + 977 * i for i in range(20)]  # microseconds (default)
    data = pcapng_file(e, list(zip(frames, ticks)))
    got, _ = packets(cap, data)
    assert got == [(f, t * 1000) for f, t in zip(frames, ticks)]
    assert len(list(dpkt.pcapng.Reader(io.BytesIO(data)))) == 20  # dpkt reads it too
    secs = [(1_767_225_600 + i, 1000 * i) for i in range(20)]
    got, _ = packets(cap, pcap_file(e, list(zip(frames, secs)), nano=True))
    assert got == [(f, s * 10**9 + n) for f, (s, n) in zip(frames, secs)]
    back = list(dpkt.pcap.Reader(io.BytesIO(pcap_file(e, list(zip(frames, secs)), nano=True))))
    assert [bytes(b) for _, b in back] == frames


@pytest.mark.parametrize(
    "resol, per_second", [(3, 10**3), (6, 10**6), (9, 10**9), (12, 10**12), (0x80 | 20, 2**20)]
)
def test_if_tsresol_and_tsoffset(cap, resol, per_second):
    frames = cnip_frames(5)
    ticks = [1_700_000 * per_second + 12345 * i for i in range(5)]  # fits 64 bits in ps
    data = pcapng_file("<", list(zip(frames, ticks)), resol=resol, tsoffset=-3600)
    got, _ = packets(cap, data)
    want = [t * 10**9 // per_second - 3600 * 10**9 for t in ticks]
    assert [t for _, t in got] == want
    r = dpkt.pcapng.Reader(io.BytesIO(data))
    assert [abs(ts * 1e9 - w) < 2e3 for (ts, _), w in zip(r, want)] == [True] * 5


def test_other_blocks_counted_and_packets_of_every_kind(cap):
    e = "<"
    f1, f2, f3 = cnip_frames(3)
    extra = block(e, 4, b"\x00\x00\x00\x00")  # NRB, end of records
    extra += block(e, 5, struct.pack(e + "III", 0, 0, 0))  # ISB
    extra += block(e, 0x1234, b"abcd")  # unknown
    extra += block(e, 3, struct.pack(e + "I", len(f1)) + f1)  # SPB: no timestamp
    extra += block(e, 2, struct.pack(e + "HHIIII", 0, 0, 0, 5, len(f2), len(f2)) + f2)  # PB
    data = pcapng_file(e, [(f3, 7)], extra=extra)
    data += pcapng_file(">", [(f1, 9)])  # a second section, big-endian, its own interface
    ts, off, ln, fi, info = cap.walk(data)
    assert [bytes(data[o : o + n]) for o, n in zip(off, ln)] == [f1, f2, f3, f1]
    assert ts.tolist() == [cap.NO_TIME, 5000, 7000, 9000] and fi.tolist() == [0, 0, 0, 1]
    assert (info["skipped"], info["unknown"], info["sections"]) == (2, 1, 2)


def test_non_cnip_packets_get_their_status(cap):
    good = cnip_frames(1)[0]
    other_port = bytearray(good)
    other_port[34:38] = struct.pack("!HH", 5000, 5001)
    frag = bytearray(good)
    frag[20:22] = b"\x20\x00"  # MF
    vlan = good[:12] + b"\x81\x00\x00\x05" + good[12:]
    arp = good[:12] + b"\x08\x06" + good[14:]
    bad_len = bytearray(good)
    bad_len[42:44] = b"\x00\x05"  # CN/IP length field disagrees with UDP
    pkts = [good, bytes(other_port), bytes(frag), vlan, arp, good[:40], bytes(bad_len)]
    data = pcapng_file("<", [(p, 1) for p in pkts])
    ts, off, ln, fi, info = cap.walk(data)
    lp, b, status = cap.cnip_extract(data, off, ln, fi, info["linktypes"])
    assert status.tolist() == [
        cap.OK,
        cap.OTHER,
        cap.FRAGMENT,
        cap.OK,
        cap.OTHER,
        cap.TRUNCATED,
        cap.MALFORMED,
    ]
    assert lp[b[0] : b[1]].tobytes() == lp[b[3] : b[4]].tobytes() == good[62:]


# ---- damaged input -----------------------------------------------------------------------------
def test_truncation_at_every_length_raises_or_counts(cap):
    data = pcapng_file("<", [(f, i) for i, f in enumerate(cnip_frames(4))])
    whole = len(packets(cap, data)[0])
    for cut in range(1, len(data)):
        part = data[:cut]
        try:
            cap.walk(part, True)
        except TruncatedError as exc:
            assert exc.layer == "pcapng" and 0 <= exc.offset < cut
        except MalformedError as exc:
            assert cut < 4 and exc.offset == 0  # too short to be a capture
        else:
            assert cut % 4 == 0  # ends on a block boundary
        if cut >= 4:
            got, info = packets(cap, part, strict=False)
            assert len(got) <= whole and info["truncated"] in (0, 1)


def test_bad_block_length_names_its_offset(cap):
    data = bytearray(pcapng_file("<", [(f, 1) for f in cnip_frames(3)]))
    shb_idb = len(pcapng_file("<", []))
    struct.pack_into("<I", data, shb_idb + 4, 13)  # not a multiple of 4
    with pytest.raises(MalformedError) as ei:
        cap.walk(bytes(data))
    assert ei.value.layer == "pcapng" and ei.value.offset == shb_idb + 4
    got, info = packets(cap, bytes(data), strict=False)
    assert got == [] and info["bad"] == 1 and info["fault"] == ("bad block length", shb_idb + 4)
    with pytest.raises(MalformedError, match="not a pcapng or pcap file"):
        cap.walk(b"GIF89a......")


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(3)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :]
        else:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
    return bytes(b)


SEEDS = [
    pcapng_file("<", [(f, 1000 * i) for i, f in enumerate(cnip_frames(3))], resol=0x80 | 10),
    pcapng_file(">", [(f, i) for i, f in enumerate(cnip_frames(2))], tsoffset=5),
    pcap_file("<", [(f, (1, 2)) for f in cnip_frames(3)], nano=False),
    pcap_file(">", [(f, (1, 2)) for f in cnip_frames(2)], nano=True),
]


def outcome(mod, data, strict):
    try:
        ts, off, ln, fi, info = mod.walk(data, strict)
    except DecodeError as exc:
        return type(exc).__name__, exc.layer, exc.offset, str(exc)
    ex = mod.cnip_extract(data, off, ln, fi, info["linktypes"])
    return [a.tolist() for a in (ts, off, ln, fi)], info, [a.tolist() for a in ex]


@pytest.mark.skipif(_backend.native_module("capture") is None, reason="native kernels not built")
@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(SEEDS) - 1), st.integers(0, 2**32), st.booleans())
def test_native_and_twin_agree_on_mutated_captures(which, seed, strict):
    data = mutate(SEEDS[which], random.Random(seed))
    native, twin = _backend.native_module("capture"), _backend.reference("capture")
    assert outcome(native, data, strict) == outcome(twin, data, strict)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_the_hierarchy(data):
    for mod in (p.values[0] for p in IMPLS):
        for strict in (True, False):
            try:
                ts, off, ln, fi, info = mod.walk(data, strict)
            except DecodeError:
                continue
            mod.cnip_extract(data, off, ln, fi, info["linktypes"])
            assert (off + ln <= len(data)).all()


# ---- compressed and memory-mapped files ----------------------------------------------------------
def test_gzip_zstd_and_plain_files_read_alike(tmp_path, sim):
    data, written = sim
    plain = tmp_path / "c.pcapng"
    plain.write_bytes(data)
    gz = tmp_path / "c.pcapng.gz"
    gz.write_bytes(gzip.compress(data))
    want = [f for f, _ in written]
    for p in (plain, gz):
        frames, info = archive.read_frames(archive.open_capture(p))
        assert info["packets"] == len(want)
        assert frames.ts_ns.tolist() == [t for _, t in written]
    zstandard = pytest.importorskip("zstandard", reason="zstd input needs osgp[zstd]")
    zs = tmp_path / "c.pcapng.zst"
    zs.write_bytes(zstandard.ZstdCompressor().compress(data))
    frames, info = archive.read_frames(archive.open_capture(zs))
    assert info["packets"] == len(want) and frames.ts_ns.tolist() == [t for _, t in written]


def test_damaged_gzip_is_a_decode_error(tmp_path):
    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(b"x" * 1000)[:-12])
    with pytest.raises(DecodeError) as ei:
        archive.open_capture(p)
    assert ei.value.layer == "gzip"


def test_frames_are_the_lpdus_in_capture_order(sim):
    data, written = sim
    frames, _ = archive.read_frames(data)
    assert len(frames) == len(written)
    for i in (0, len(written) // 2, len(written) - 1):
        assert frames.frame(i) == written[i][0][62:]  # Ethernet 14 + IPv4 20 + UDP 8 + CN/IP 20
    assert np.all(np.diff(frames.ts_ns) >= 0)
