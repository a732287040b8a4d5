"""Pure-Python twin of osgp._native.capture (same names, signatures, errors
and error offsets).  See csrc/osgp_capture.c for the layouts and their sources
(draft-ietf-opsawg-pcapng, draft-ietf-opsawg-pcap, ISO/IEC 14908-4)."""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from osgp._reference._buffers import as_bytes
from osgp.errors import ConfigurationError, MalformedError, TruncatedError

NO_TIME = -(1 << 63)
MAX_INTERFACES = 256
OK, OTHER, FRAGMENT, TRUNCATED, MALFORMED = 0, 1, 2, 8, 9
FAULTS = (
    "",
    "truncated",
    "bad block length",
    "bad byte-order magic",
    "unsupported version",
    "option runs past its block",
    "bad if_tsresol",
    "packet larger than its block",
    "packet of an undescribed interface",
    "too many interfaces",
    "not a pcapng or pcap file",
)
(
    _FINE,
    _TRUNC,
    _LENGTH,
    _MAGIC,
    _VERSION,
    _OPTION,
    _RESOL,
    _OVERRUN,
    _NO_IF,
    _TOO_MANY,
    _NOT_CAPTURE,
) = range(11)

_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6
_SKIPPED = frozenset((4, 5, 9, 0x0A, 0x0BAD, 0x40000BAD))  # NRB ISB journal DSB custom
_BOM = 0x1A2B3C4D
_PCAP_US, _PCAP_NS = 0xA1B2C3D4, 0xA1B23C4D
_PCAP_MAX_RECORD = 0x40000
_M64 = (1 << 64) - 1


class _Stop(Exception):
    """A fault that ends the walk: (status class, what, offset)."""


def _signed(x: int) -> int:
    x &= _M64
    return x - (1 << 64) if x >> 63 else x


def _ticks_ns(t: int, resol: int) -> int:
    r = resol & 0x7F
    if not resol & 0x80:
        return (t * 10 ** (9 - r)) & _M64 if r <= 9 else t // 10 ** (r - 9)
    q, rem, e = t >> r, t & ((1 << r) - 1), r
    if e > 32:
        rem >>= e - 32
        e = 32
    return (q * 1_000_000_000 + (((rem * 1_000_000_000) & _M64) >> e)) & _M64


def _resol_ok(resol: int) -> bool:
    return (resol & 0x7F) <= 63 if resol & 0x80 else resol <= 19


class _Walk:
    def __init__(self, buf: bytes, strict: bool) -> None:
        self.b, self.strict = buf, strict
        self.ts: List[int] = []
        self.off: List[int] = []
        self.length: List[int] = []
        self.iface: List[int] = []
        self.counts = dict.fromkeys(("skipped", "unknown", "bad", "truncated"), 0)
        self.sections = 0
        self.linktype: List[int] = []
        self.tsresol: List[int] = []
        self.snaplen: List[int] = []
        self.tsoffset: List[int] = []
        self.fault: Optional[Tuple[int, int]] = None
        self.format = ""
        self.cls: Any = None

    def fail(self, cls: Any, what: int, at: int, counter: str, fatal: bool) -> None:
        """As FAULT in osgp_capture.c."""
        if self.fault is None:
            self.fault = (what, at)
        if self.strict:
            self.cls = cls
            raise _Stop()
        self.counts[counter] += 1
        if fatal:
            raise _Stop()

    def emit(self, ts: int, off: int, caplen: int, iface: int) -> None:
        self.ts.append(ts)
        self.off.append(off)
        self.length.append(caplen)
        self.iface.append(iface)

    def pcapng(self) -> None:
        b, n, pos, first_if, e = self.b, len(self.b), 0, 0, "<"
        self.format = "pcapng"
        while pos < n:
            if n - pos < 12:
                self.fail(TruncatedError, _TRUNC, pos, "truncated", True)
            kind = struct.unpack_from("<I", b, pos)[0]
            if kind == _SHB:
                bom = struct.unpack_from("<I", b, pos + 8)[0]
                if bom not in (_BOM, 0x4D3C2B1A):
                    self.fail(MalformedError, _MAGIC, pos + 8, "bad", True)
                e = "<" if bom == _BOM else ">"
            else:
                kind = struct.unpack_from(e + "I", b, pos)[0]
            total = struct.unpack_from(e + "I", b, pos + 4)[0]
            if total < 12 or total % 4:
                self.fail(MalformedError, _LENGTH, pos + 4, "bad", True)
            if total > n - pos:
                self.fail(TruncatedError, _TRUNC, pos, "truncated", True)
            body, blen = pos + 8, total - 12
            if struct.unpack_from(e + "I", b, pos + total - 4)[0] != total:
                self.fail(MalformedError, _LENGTH, pos + total - 4, "bad", False)
                pos += total
                continue
            if kind == _SHB:
                if blen < 16:
                    self.fail(MalformedError, _LENGTH, pos + 4, "bad", False)
                elif struct.unpack_from(e + "H", b, body + 4)[0] != 1:
                    self.fail(MalformedError, _VERSION, body + 4, "bad", True)
                self.sections += 1
                first_if = len(self.linktype)
            elif kind == _IDB:
                self.idb(body, blen, pos, e)
            elif kind in (_EPB, _PB):
                self.packet_block(kind, body, blen, pos, e, first_if)
            elif kind == _SPB:
                self.simple_block(body, blen, pos, e, first_if)
            elif kind in _SKIPPED:
                self.counts["skipped"] += 1
            else:
                self.counts["unknown"] += 1
            pos += total

    def idb(self, body: int, blen: int, pos: int, e: str) -> None:
        b = self.b
        if blen < 8:
            self.fail(MalformedError, _LENGTH, pos + 4, "bad", False)
            return
        resol, tsoffset = 6, 0  # default: microseconds (draft 4.2)
        i, end = body + 8, body + 8 + blen - 8
        while i + 4 <= end:
            code, olen = struct.unpack_from(e + "HH", b, i)
            padded = (olen + 3) & ~3
            if code == 0:
                break
            if padded > end - i - 4:
                self.fail(MalformedError, _OPTION, i, "bad", False)
                break
            if code == 9 and olen >= 1:  # if_tsresol
                if not _resol_ok(b[i + 4]):
                    self.fail(MalformedError, _RESOL, i + 4, "bad", False)
                    break
                resol = b[i + 4]
            elif code == 14 and olen >= 8:  # if_tsoffset
                tsoffset = _signed(struct.unpack_from(e + "Q", b, i + 4)[0])
            i += 4 + padded
        if len(self.linktype) >= MAX_INTERFACES:
            self.fail(MalformedError, _TOO_MANY, pos, "bad", False)
            return
        self.linktype.append(struct.unpack_from(e + "H", b, body)[0])
        self.snaplen.append(struct.unpack_from(e + "I", b, body + 4)[0])
        self.tsresol.append(resol)
        self.tsoffset.append(tsoffset)

    def packet_block(self, kind: int, body: int, blen: int, pos: int, e: str, first: int) -> None:
        b = self.b
        if blen < 20:
            self.fail(MalformedError, _LENGTH, pos + 4, "bad", False)
            return
        local = struct.unpack_from(e + ("I" if kind == _EPB else "H"), b, body)[0]
        hi, lo, caplen = struct.unpack_from(e + "III", b, body + 4)
        if caplen > blen - 20:
            self.fail(MalformedError, _OVERRUN, body + 12, "bad", False)
            return
        if local >= len(self.linktype) - first:
            self.fail(MalformedError, _NO_IF, body, "bad", False)
            return
        g = first + local
        ns = _ticks_ns((hi << 32) | lo, self.tsresol[g]) + self.tsoffset[g] * 1_000_000_000
        self.emit(_signed(ns), body + 20, caplen, g)

    def simple_block(self, body: int, blen: int, pos: int, e: str, first: int) -> None:
        if blen < 4:
            self.fail(MalformedError, _LENGTH, pos + 4, "bad", False)
            return
        if len(self.linktype) == first:
            self.fail(MalformedError, _NO_IF, pos, "bad", False)
            return
        caplen = min(struct.unpack_from(e + "I", self.b, body)[0], blen - 4)
        snap = self.snaplen[first]
        if snap and caplen > snap:
            caplen = snap
        self.emit(NO_TIME, body + 4, caplen, first)

    def pcap(self, e: str, nano: bool) -> None:
        b, n, pos = self.b, len(self.b), 24
        self.format = "pcap"
        if n < 24:
            self.fail(TruncatedError, _TRUNC, 0, "truncated", True)
        if struct.unpack_from(e + "H", b, 4)[0] != 2:
            self.fail(MalformedError, _VERSION, 4, "bad", True)
        self.sections = 1
        snaplen, linktype = struct.unpack_from(e + "II", b, 16)
        self.linktype, self.snaplen = [linktype & 0xFFFF], [snaplen]
        self.tsresol, self.tsoffset = [9 if nano else 6], [0]
        while pos < n:
            if n - pos < 16:
                self.fail(TruncatedError, _TRUNC, pos, "truncated", True)
            sec, frac, incl = struct.unpack_from(e + "III", b, pos)
            if incl > _PCAP_MAX_RECORD:
                self.fail(MalformedError, _LENGTH, pos + 8, "bad", True)
            if incl > n - pos - 16:
                self.fail(TruncatedError, _TRUNC, pos, "truncated", True)
            self.emit(sec * 1_000_000_000 + frac * (1 if nano else 1000), pos + 16, incl, 0)
            pos += 16 + incl


def walk(
    data: Any, strict: bool = True
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Dict[str, Any]]:
    buf = as_bytes(data, "data")
    w = _Walk(buf, strict)
    if buf:
        if len(buf) < 4:
            raise MalformedError(FAULTS[_NOT_CAPTURE], layer="pcapng", offset=0)
        m = struct.unpack_from("<I", buf, 0)[0]
        mb = struct.unpack_from(">I", buf, 0)[0]
        try:
            if m == _SHB:
                w.pcapng()
            elif m in (_PCAP_US, _PCAP_NS):
                w.pcap("<", m == _PCAP_NS)
            elif mb in (_PCAP_US, _PCAP_NS):
                w.pcap(">", mb == _PCAP_NS)
            else:
                raise MalformedError(FAULTS[_NOT_CAPTURE], layer="pcapng", offset=0)
        except _Stop:
            if w.cls is not None and w.fault is not None:
                layer = "pcap" if w.format == "pcap" else "pcapng"
                raise w.cls(FAULTS[w.fault[0]], layer=layer, offset=w.fault[1]) from None
    info = {
        "format": w.format,
        "packets": len(w.ts),
        **w.counts,
        "sections": w.sections,
        "linktypes": tuple(w.linktype),
        "tsresol": tuple(w.tsresol),
        "fault": (FAULTS[w.fault[0]], w.fault[1]) if w.fault else None,
    }
    info = {k: info[k] for k in _INFO_ORDER}
    return (
        np.array(w.ts, dtype=np.int64),
        np.array(w.off, dtype=np.int64),
        np.array(w.length, dtype=np.uint32),
        np.array(w.iface, dtype=np.uint32),
        info,
    )


_INFO_ORDER = (
    "format",
    "packets",
    "skipped",
    "unknown",
    "bad",
    "truncated",
    "sections",
    "linktypes",
    "tsresol",
    "fault",
)


def _cnip_one(p: bytes, linktype: int) -> Tuple[int, int, int]:
    """(status, LPDU start, LPDU end) of one packet, as cnip_one in C."""
    n, ip = len(p), 0
    if linktype == 1:  # Ethernet II, up to two 802.1Q / 802.1ad tags
        ip = 14
        if n < ip:
            return TRUNCATED, 0, 0
        ethertype, tags = int.from_bytes(p[12:14], "big"), 0
        while ethertype in (0x8100, 0x88A8) and tags < 2:
            ip += 4
            if n < ip:
                return TRUNCATED, 0, 0
            ethertype = int.from_bytes(p[ip - 2 : ip], "big")
            tags += 1
        if ethertype != 0x0800:
            return OTHER, 0, 0
    elif linktype == 113:  # Linux cooked capture
        ip = 16
        if n < ip:
            return TRUNCATED, 0, 0
        if p[14:16] != b"\x08\x00":
            return OTHER, 0, 0
    elif linktype not in (101, 228):
        return OTHER, 0, 0
    if n - ip < 20:
        return (OTHER if n - ip >= 1 and p[ip] >> 4 != 4 else TRUNCATED), 0, 0
    if p[ip] >> 4 != 4 or p[ip + 9] != 17:
        return OTHER, 0, 0
    ihl = (p[ip] & 0x0F) * 4
    iplen = int.from_bytes(p[ip + 2 : ip + 4], "big")
    if ihl < 20 or iplen < ihl:
        return MALFORMED, 0, 0
    if iplen > n - ip:
        return TRUNCATED, 0, 0
    if int.from_bytes(p[ip + 6 : ip + 8], "big") & 0x3FFF:
        return FRAGMENT, 0, 0
    u = ip + ihl
    if iplen - ihl < 8:
        return TRUNCATED, 0, 0
    sport, dport, ulen = struct.unpack_from("!HHH", p, u)
    if sport not in (1628, 1629) and dport not in (1628, 1629):
        return OTHER, 0, 0
    if ulen < 8 or ulen > iplen - ihl:
        return MALFORMED, 0, 0
    c, clen = u + 8, ulen - 8
    if clen < 20:
        return TRUNCATED, 0, 0
    if int.from_bytes(p[c : c + 2], "big") != clen or 20 + 4 * p[c + 4] > clen:
        return MALFORMED, 0, 0
    if p[c + 3] != 0x01 or p[c + 5] & 0x1F:
        return OTHER, 0, 0
    s = c + 20 + 4 * p[c + 4]
    return (OK if s < c + clen else TRUNCATED), s, c + clen


def cnip_extract(
    data: Any, offsets: Any, lengths: Any, interfaces: Any, linktypes: Any
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    buf = as_bytes(data, "data")
    o = np.ascontiguousarray(offsets, dtype=np.int64)
    ln = np.ascontiguousarray(lengths, dtype=np.uint32)
    fi = np.ascontiguousarray(interfaces, dtype=np.uint32)
    lt = np.ascontiguousarray(linktypes, dtype=np.uint16)
    if o.ndim != 1 or ln.shape != o.shape or fi.shape != o.shape or lt.ndim != 1:
        raise ConfigurationError("offsets, lengths and interfaces must be 1-d arrays of one size")
    n = o.shape[0]
    status = np.zeros(n, dtype=np.uint8)
    bounds = np.zeros(n + 1, dtype=np.int64)
    parts = []
    w = 0
    for i in range(n):
        a, k, f = int(o[i]), int(ln[i]), int(fi[i])
        if a < 0 or a > len(buf) or k > len(buf) - a or f >= lt.shape[0]:
            raise ConfigurationError("packet offsets, lengths or interfaces outside the data")
        st, s, e = _cnip_one(buf[a : a + k], int(lt[f]))
        status[i] = st
        if st == OK:
            parts.append(buf[a + s : a + e])
            w += e - s
        bounds[i + 1] = w
    return np.frombuffer(b"".join(parts), dtype=np.uint8).copy(), bounds, status


def _range_arrays(what: str, *arrays: Any) -> List[np.ndarray]:
    a = [np.ascontiguousarray(x, dtype=np.int64) for x in arrays]
    if any(x.ndim != 1 or x.shape != a[0].shape for x in a):
        raise ConfigurationError(f"{what}: starts and lengths must be 1-d arrays of one size")
    return a


def _inside(what: str, size: int, starts: np.ndarray, lengths: np.ndarray) -> None:
    if ((starts < 0) | (lengths < 0) | (starts > size) | (lengths > size - starts)).any():
        raise ConfigurationError(f"{what}: a range lies outside the data")


def gather(data: Any, starts: Any, lengths: Any) -> Tuple[np.ndarray, np.ndarray]:
    s, ln = _range_arrays("gather", starts, lengths)
    buf = np.frombuffer(as_bytes(data, "data"), dtype=np.uint8)
    _inside("gather", len(buf), s, ln)
    offsets = np.zeros(len(s) + 1, dtype=np.int64)
    np.cumsum(ln, out=offsets[1:])
    parts = [buf[a : a + n] for a, n in zip(s.tolist(), ln.tolist())]
    out = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    return out, offsets


def ranges_equal(data: Any, a: Any, b: Any, lengths: Any) -> np.ndarray:
    av, bv, ln = _range_arrays("ranges_equal", a, b, lengths)
    raw = as_bytes(data, "data")
    _inside("ranges_equal", len(raw), av, ln)
    _inside("ranges_equal", len(raw), bv, ln)
    ranges = zip(av.tolist(), bv.tolist(), ln.tolist())
    return np.array([raw[x : x + n] == raw[y : y + n] for x, y, n in ranges], dtype=bool)
