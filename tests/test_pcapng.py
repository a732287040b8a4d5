"""pcapng captures of CN/IP frames, checked by an independent reader (dpkt)."""

from __future__ import annotations

import io
import random

import pytest

from osgp.errors import DecodeError
from osgp.link import lon
from osgp.link.pcapng import (
    CNIP_PORT,
    Endpoint,
    PcapngWriter,
    cnip_udp_frame,
    parse_cnip_udp_frame,
    read_pcapng,
    write_frames,
)

dpkt = pytest.importorskip("dpkt", reason="dpkt (test extra) reads our captures independently")

# documentation addresses (RFC 5737): captures are data, never traffic
A = Endpoint(bytes([192, 0, 2, 1]), bytes.fromhex("020000000001"))
B = Endpoint(bytes([192, 0, 2, 2]), bytes.fromhex("020000000002"))


def lpdus(n, seed=3):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        apdu = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
        npdu = lon.Npdu(1, 1, lon.SubnetNode(2, 1 + i % 100), lon.Spdu(0, i & 15, apdu))
        out.append(lon.encode_lpdu(lon.Lpdu(npdu), crc=False))
    return out


def test_dpkt_reads_every_frame_and_timestamp():
    frames = lpdus(500)
    times = [1_764_583_200_000_000_000 + i * 123_456_789 for i in range(500)]
    buf = io.BytesIO()
    assert write_frames(buf, zip(times, frames), A, B) == 500
    seen = list(dpkt.pcapng.Reader(io.BytesIO(buf.getvalue())))
    assert len(seen) == 500
    for (ts, raw), t, lpdu in zip(seen, times, frames):
        assert ts == pytest.approx(t / 1e9, abs=1e-6)
        eth = dpkt.ethernet.Ethernet(raw)
        ip, udp = eth.data, eth.data.data
        assert bytes(ip.src) == A.ip and bytes(ip.dst) == B.ip
        assert udp.sport == udp.dport == CNIP_PORT
        assert dpkt.in_cksum(raw[14:34]) == 0  # our IPv4 header checksum, as sent
        cnip = bytes(udp.data)
        assert int.from_bytes(cnip[:2], "big") == len(cnip) and cnip[20:] == lpdu
    # and our own reader agrees on every timestamp, to the nanosecond
    ours = list(read_pcapng(buf.getvalue()))
    assert [t for t, _, _ in ours] == times
    assert [parse_cnip_udp_frame(f)[1] for _, _, f in ours] == frames


def test_reader_rejects_bad_lengths_and_skips_unknown_blocks():
    buf = io.BytesIO()
    w = PcapngWriter(buf)
    w.write(cnip_udp_frame(lpdus(1)[0], A, B), 5)
    data = buf.getvalue()
    unknown = (0x0BAD).to_bytes(4, "little") + (16).to_bytes(4, "little") + bytes(4)
    unknown += (16).to_bytes(4, "little")
    assert len(list(read_pcapng(data + unknown))) == 1
    bad = bytearray(data)
    bad[len(data) - 4 - 1] ^= 0xFF  # trailing length of the last block... and its leading one
    last = data.rfind((6).to_bytes(4, "little"))
    bad[last + 4] = 0xFF
    with pytest.raises(DecodeError) as ei:
        list(read_pcapng(bytes(bad)))
    assert ei.value.layer == "pcapng" and ei.value.offset == last + 4
    with pytest.raises(DecodeError):
        list(read_pcapng(data[:-3]))
