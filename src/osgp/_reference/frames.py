"""Pure-Python twin of osgp._native.frames (same names, signatures, errors and
error offsets).  See csrc/osgp_frame.c for the layouts and their sources."""

from __future__ import annotations

import hmac
from typing import Any, Tuple

import numpy as np

from osgp._reference._buffers import as_bytes
from osgp._reference.legacy import OmaDigest, crc16_lon, oma_digest
from osgp.errors import (
    AuthenticationError,
    ChecksumError,
    ConfigurationError,
    MalformedError,
    TruncatedError,
)

MAX_MESSAGE = 476  # MEP guide p.8
LON_FIELDS = (
    "lpdu_hdr",
    "pdu_fmt",
    "addr_fmt",
    "domain_len",
    "src_subnet",
    "src_node",
    "selfield",
    "dest_subnet",
    "dest_node",
    "group",
    "member",
    "pdu_hdr",
    "nid",
    "domain",
    "pdu_offset",
    "pdu_end",
)
LON_DTYPE = np.dtype(
    [(f, "u1") for f in LON_FIELDS[:12]]
    + [("nid", "u1", (6,)), ("domain", "u1", (6,)), ("pdu_offset", "=u2"), ("pdu_end", "=u2")],
    align=True,
)

# Per-frame statuses of the batch forms: the osgp_status values of csrc/osgp.h.
OK, AUTH, TRUNCATED, MALFORMED, CHECKSUM = 0, 3, 8, 9, 10
_DOMAIN = (0, 1, 3, 6)


class _Fail(Exception):
    def __init__(self, status: int, off: int) -> None:
        self.status, self.off = status, off


def _raise(st: int, layer: str, off: int) -> None:
    if st == AUTH:
        raise AuthenticationError(f"{layer} digest mismatch")
    if st == TRUNCATED:
        raise TruncatedError("frame truncated", layer=layer, offset=off)
    if st == CHECKSUM:
        raise ChecksumError("link CRC mismatch", layer=layer, offset=off)
    raise MalformedError("malformed frame", layer=layer, offset=off)


def _mep_key(key: Any) -> bytes:
    k = as_bytes(key, "key")
    if not 16 <= len(k) <= 20:
        raise ConfigurationError(f"MEP access key must be 16..20 bytes, got {len(k)}")
    return k[:16]


def _mep_body(f: bytes, max_message: int, min_body: int) -> int:
    if len(f) < 2:
        raise _Fail(TRUNCATED, 0)
    n = (f[0] << 8) | f[1]
    if n > max_message:
        raise _Fail(MALFORMED, 0)
    if len(f) - 2 < n:
        raise _Fail(TRUNCATED, len(f))
    if len(f) - 2 > n:
        raise _Fail(MALFORMED, 2 + n)
    if n < min_body:
        raise _Fail(TRUNCATED, 2 + n)
    return n


def _request(k: bytes, f: bytes, max_message: int) -> Tuple[int, int]:
    n = _mep_body(f, max_message, 13)
    plain = n - 8
    seq = int.from_bytes(f[2 + plain - 4 : 2 + plain], "big")
    if not hmac.compare_digest(oma_digest(k, f[2 : 2 + plain]), f[2 + plain : 2 + n]):
        raise _Fail(AUTH, 2 + plain)
    return f[2], seq


def mep_request_check(key: Any, frame: Any, max_message: int = MAX_MESSAGE) -> Tuple[int, int]:
    """(code, seq) of a plaintext MEP request; AuthenticationError when its
    digest does not verify."""
    k = _mep_key(key)
    try:
        return _request(k, as_bytes(frame, "frame"), max_message)
    except _Fail as e:
        _raise(e.status, "mep", e.off)
        raise  # pragma: no cover


def mep_response_check(
    key: Any, request_frame: Any, response_frame: Any, max_message: int = MAX_MESSAGE
) -> bytes:
    """The response APDU; AuthenticationError when the chained digest does not verify."""
    k = _mep_key(key)
    q, r = as_bytes(request_frame, "request_frame"), as_bytes(response_frame, "response_frame")
    try:
        rn = _mep_body(q, max_message, 13)
        sn = _mep_body(r, max_message, 9)
        d = OmaDigest(k)
        d.update(q[2 : 2 + rn - 8])
        d.update(r[2 : 2 + sn - 8])
        if not hmac.compare_digest(d.digest(), r[2 + sn - 8 : 2 + sn]):
            raise _Fail(AUTH, 2 + sn - 8)
    except _Fail as e:
        _raise(e.status, "mep", e.off)
    return r[2 : len(r) - 8]


def _offsets(offsets: Any, size: int) -> np.ndarray:
    o = np.ascontiguousarray(offsets, dtype=np.int64)
    if o.ndim != 1 or o.shape[0] < 1:
        raise ConfigurationError("offsets must be a 1-d int64 array of n+1 entries")
    for i in range(o.shape[0] - 1):
        if o[i] < 0 or o[i + 1] < o[i] or o[i + 1] > size:
            raise ConfigurationError(f"offsets[{i}:{i + 2}] do not lie in the data in order")
    return o


def mep_request_check_batch(
    key: Any, data: Any, offsets: Any, max_message: int = MAX_MESSAGE
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """``(status, code, seq, ok)``: ``ok[i]`` 1 when frame i verified, else 0;
    never raises for a frame that fails (see the native docstring)."""
    k = _mep_key(key)
    buf = as_bytes(data, "data")
    o = _offsets(offsets, len(buf))
    n = o.shape[0] - 1
    status = np.zeros(n, dtype=np.uint8)
    code = np.zeros(n, dtype=np.uint8)
    seq = np.zeros(n, dtype=np.uint32)
    for i in range(n):
        f = buf[o[i] : o[i + 1]]
        code[i] = f[2] if len(f) > 2 else 0
        try:
            c, s = _request(k, f, max_message)
            seq[i] = s
        except _Fail as e:
            status[i] = e.status
            if e.status == AUTH:
                seq[i] = int.from_bytes(f[len(f) - 12 : len(f) - 8], "big")
    return status, code, seq, bytes(int(s == OK) for s in status)


def mep_split(data: Any, max_message: int = MAX_MESSAGE) -> Tuple[np.ndarray, np.ndarray, int]:
    buf = as_bytes(data, "data")
    starts, lengths = [], []
    pos = 0
    while len(buf) - pos >= 2:
        n = (buf[pos] << 8) | buf[pos + 1]
        if n > max_message:
            _raise(MALFORMED, "mep", pos)
        if len(buf) - pos - 2 < n:
            break
        starts.append(pos + 2)
        lengths.append(n)
        pos += 2 + n
    return np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.uint16), pos


def _lon(f: bytes, lpdu: bool, crc: bool) -> tuple:
    end = len(f)
    if crc:
        if len(f) < 2 + (1 if lpdu else 0) + 3:
            raise _Fail(TRUNCATED, len(f))
        end = len(f) - 2
        if int.from_bytes(f[end:], "big") != crc16_lon(f[:end]):
            raise _Fail(CHECKSUM, end)
    p = 0

    def need(k: int) -> None:
        if end - p < k:
            raise _Fail(TRUNCATED, p)

    hdr = 0
    if lpdu:
        need(1)
        hdr = f[p]
        p += 1
    need(3)
    b0 = f[p]
    if b0 >> 6:
        raise _Fail(MALFORMED, p)
    pdu_fmt, addr_fmt, dlen = (b0 >> 4) & 3, (b0 >> 2) & 3, _DOMAIN[b0 & 3]
    src_subnet, sn = f[p + 1], f[p + 2]
    p += 3
    sel, src_node = sn >> 7, sn & 0x7F
    dsub = dnode = group = member = 0
    nid = bytes(6)
    if addr_fmt == 0:
        need(1)
        dsub = f[p]
        p += 1
    elif addr_fmt == 1:
        need(1)
        group = f[p]
        p += 1
    elif addr_fmt == 2:
        need(2)
        dsub, dnode = f[p], f[p + 1] & 0x7F  # b7 set by standard senders, not the node
        p += 2
        if not sel:
            need(2)
            group, member = f[p], f[p + 1]
            p += 2
    else:
        need(7)
        dsub, nid = f[p], f[p + 1 : p + 7]
        p += 7
    need(dlen)
    domain = f[p : p + dlen]
    p += dlen
    pdu_offset = p
    need(1)
    pdu_hdr = 0
    if pdu_fmt != 3:
        pdu_hdr = f[p]
        t = (pdu_hdr >> 4) & 7
        if (pdu_fmt == 0 and (t == 3 or t > 5)) or (pdu_fmt == 1 and t in (1, 3, 6, 7)):
            raise _Fail(MALFORMED, pdu_offset)
    return (
        hdr,
        pdu_fmt,
        addr_fmt,
        dlen,
        src_subnet,
        src_node,
        sel,
        dsub,
        dnode,
        group,
        member,
        pdu_hdr,
        bytes(nid),
        bytes(domain),
        pdu_offset,
        end,
    )


def lon_parse(frame: Any, lpdu: bool = True, crc: bool = True) -> tuple:
    try:
        return _lon(as_bytes(frame, "frame"), lpdu, crc)
    except _Fail as e:
        _raise(e.status, "lon", e.off)
        raise  # pragma: no cover


def lon_parse_batch(
    data: Any, offsets: Any, lpdu: bool = True, crc: bool = True
) -> Tuple[np.ndarray, np.ndarray]:
    buf = as_bytes(data, "data")
    o = _offsets(offsets, len(buf))
    n = o.shape[0] - 1
    status = np.zeros(n, dtype=np.uint8)
    out = np.zeros(n, dtype=LON_DTYPE)
    for i in range(n):
        try:
            t = _lon(buf[o[i] : o[i + 1]], lpdu, crc)
        except _Fail as e:
            status[i] = e.status
            continue
        rec = out[i]
        for name, v in zip(LON_FIELDS, t):
            if name in ("nid", "domain"):
                arr = np.zeros(6, dtype=np.uint8)
                arr[: len(v)] = np.frombuffer(v, dtype=np.uint8)
                rec[name] = arr
            else:
                rec[name] = v
    return status, out
