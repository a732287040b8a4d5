"""Captures: LonTalk frames as CN/IP in UDP, written to pcapng (and read back).

A captured frame is an Ethernet II frame carrying IPv4, UDP to port 1628
(CN/IP data; 1629 is the priority port, ISO/IEC 14908-4 / EIA-852) and the
CN/IP header in front of the LonTalk LPDU, as a tap on a CN/IP link sees it,
so Wireshark and tshark dissect it (their ``cnip`` dissector hands the
payload to ``lon``).  CN/IP carries no LPDU CRC (docs/protocol.md §6.2).

File format: pcapng (IETF draft-ietf-opsawg-pcapng): one Section Header Block,
one Interface Description Block (link type 1 = Ethernet, ``if_tsresol`` 9 =
nanosecond timestamps), then one Enhanced Packet Block per frame; all in
little-endian byte order, every block padded to 32 bits.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO, Any, Iterator, List, Tuple

from osgp.errors import MalformedError, TruncatedError
from osgp.link.lon import CnipHeader, decode_cnip, encode_cnip

__all__ = [
    "CNIP_PORT",
    "CNIP_PRIORITY_PORT",
    "LINKTYPE_ETHERNET",
    "Endpoint",
    "cnip_udp_frame",
    "parse_cnip_udp_frame",
    "PcapngWriter",
    "read_pcapng",
    "write_frames",
]

CNIP_PORT, CNIP_PRIORITY_PORT = 1628, 1629  # ISO/IEC 14908-4 (IANA: cnip)
LINKTYPE_ETHERNET = 1
LAYER = "pcapng"

_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_END, _OPT_IF_TSRESOL = 0, 9
_ETH_IPV4 = 0x0800
_IP_UDP = 17


@dataclass(frozen=True)
class Endpoint:
    """One end of the captured CN/IP link (addresses as 4 and 6 bytes)."""

    ip: bytes
    mac: bytes
    port: int = CNIP_PORT


def _ip_checksum(header: bytes) -> int:
    """RFC 791 header checksum: ones' complement of the ones' complement sum."""
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def cnip_udp_frame(
    lpdu: bytes,
    src: Endpoint,
    dst: Endpoint,
    *,
    sequence: int = 0,
    session: int = 0,
    timestamp: int = 0,
    ip_id: int = 0,
) -> bytes:
    """An Ethernet II / IPv4 / UDP / CN/IP frame around one LPDU (no CRC)."""
    cnip = encode_cnip(
        CnipHeader(sequence=sequence & 0xFFFFFFFF, session=session, timestamp=timestamp), lpdu
    )
    udp_len = 8 + len(cnip)
    # UDP checksum 0: not computed (RFC 768 allows it over IPv4)
    udp = struct.pack("!HHHH", src.port, dst.port, udp_len, 0) + cnip
    ip = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + udp_len,
            ip_id & 0xFFFF,
            0x4000,
            64,
            _IP_UDP,
            0,
            src.ip,
            dst.ip,
        )
    )
    struct.pack_into("!H", ip, 10, _ip_checksum(bytes(ip)))
    return dst.mac + src.mac + struct.pack("!H", _ETH_IPV4) + bytes(ip) + udp


def parse_cnip_udp_frame(frame: bytes) -> Tuple[CnipHeader, bytes, Tuple[bytes, int, bytes, int]]:
    """(CN/IP header, LPDU, (src ip, src port, dst ip, dst port)) of a frame
    that :func:`cnip_udp_frame` builds; MalformedError for anything else."""
    if len(frame) < 14 + 20 + 8:
        raise TruncatedError(layer="cnip.udp", offset=0, needed=42, remaining=len(frame))
    if struct.unpack_from("!H", frame, 12)[0] != _ETH_IPV4:
        raise MalformedError("not an IPv4 frame", layer="cnip.udp", offset=12)
    ihl = (frame[14] & 0x0F) * 4
    if frame[14] >> 4 != 4 or ihl < 20 or frame[14 + 9] != _IP_UDP:
        raise MalformedError("not IPv4 / UDP", layer="cnip.udp", offset=14)
    u = 14 + ihl
    if len(frame) < u + 8:
        raise TruncatedError(layer="cnip.udp", offset=u, needed=8, remaining=len(frame) - u)
    sport, dport, ulen = struct.unpack_from("!HHH", frame, u)
    if ulen < 8 or u + ulen > len(frame):
        raise MalformedError(f"UDP length {ulen} does not fit", layer="cnip.udp", offset=u + 4)
    header, lpdu = decode_cnip(frame[u + 8 : u + ulen])
    ips = (bytes(frame[26:30]), sport, bytes(frame[30:34]), dport)
    return header, lpdu, ips


def _pad(n: int) -> int:
    return (-n) & 3


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Write frames to a pcapng stream.  ``out``: a binary file object;
    timestamps in nanoseconds (``write(frame, t_ns)``)."""

    def __init__(
        self,
        out: IO[bytes],
        *,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = 0xFFFF,
        application: str = "osgp",
    ) -> None:
        self.out = out
        self.count = 0
        app = application.encode()
        opts = struct.pack("<HH", 4, len(app)) + app + bytes(_pad(len(app)))  # shb_userappl
        opts += struct.pack("<HH", _OPT_END, 0)
        out.write(_block(_SHB, struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + opts))
        idb_opts = struct.pack("<HHB3x", _OPT_IF_TSRESOL, 1, 9) + struct.pack("<HH", _OPT_END, 0)
        out.write(_block(_IDB, struct.pack("<HHI", linktype, 0, snaplen) + idb_opts))

    def write(self, frame: bytes, t_ns: int) -> None:
        ts = int(t_ns)
        body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
        self.out.write(_block(_EPB, body + frame + bytes(_pad(len(frame)))))
        self.count += 1


def read_pcapng(data: bytes) -> Iterator[Tuple[int, int, bytes]]:
    """(timestamp in ns, link type, frame) of every Enhanced Packet Block.

    Reads little-endian sections written by :class:`PcapngWriter` and by other
    tools (``if_tsresol`` honoured: powers of ten and of two); unknown blocks
    are skipped; a bad block length raises MalformedError naming its offset."""
    pos, n = 0, len(data)
    ifaces: List[Tuple[int, int]] = []  # (link type, ticks per second)
    while pos < n:
        if n - pos < 12:
            raise TruncatedError(layer=LAYER, offset=pos, needed=12, remaining=n - pos)
        kind, total = struct.unpack_from("<II", data, pos)
        if kind == _SHB:
            if struct.unpack_from("<I", data, pos + 8)[0] != _BYTE_ORDER_MAGIC:
                raise MalformedError("big-endian or damaged section", layer=LAYER, offset=pos + 8)
            ifaces = []
        if total < 12 or total % 4 or pos + total > n:
            raise MalformedError(f"block length {total}", layer=LAYER, offset=pos + 4)
        body = data[pos + 8 : pos + total - 4]
        if kind == _IDB:
            ifaces.append((struct.unpack_from("<H", body, 0)[0], _tsresol(body[8:], pos)))
        elif kind == _EPB:
            iface, hi, lo, cap = struct.unpack_from("<IIII", body, 0)
            if iface >= len(ifaces) or 20 + cap > len(body):
                raise MalformedError("packet block does not fit", layer=LAYER, offset=pos)
            linktype, per_second = ifaces[iface]
            ticks = (hi << 32) | lo
            yield ticks * 1_000_000_000 // per_second, linktype, bytes(body[20 : 20 + cap])
        pos += total


def _tsresol(options: bytes, where: int) -> int:
    i = 0
    while i + 4 <= len(options):
        code, length = struct.unpack_from("<HH", options, i)
        if code == _OPT_END:
            break
        if code == _OPT_IF_TSRESOL and length >= 1:
            r = options[i + 4]
            return 2 ** (r & 0x7F) if r & 0x80 else 10**r
        i += 4 + length + _pad(length)
    return 1_000_000  # default resolution: microseconds


def write_frames(out: IO[bytes], frames: Any, src: Endpoint, dst: Endpoint) -> int:
    """Write ``(t_ns, lpdu)`` pairs as CN/IP frames; returns how many."""
    w = PcapngWriter(out)
    for i, (t_ns, lpdu) in enumerate(frames):
        w.write(cnip_udp_frame(lpdu, src, dst, sequence=i, ip_id=i), t_ns)
    return w.count
