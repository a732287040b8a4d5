# distutils: sources = csrc/osgp_frame.c csrc/osgp_oma.c csrc/osgp_oma_batch.c csrc/osgp_cpu.c csrc/osgp_crc.c
# cython: freethreading_compatible = False
"""Native frame kernels: MEP frame parse + digest verification (one-shot and
batch), MEP stream splitting, LonTalk LPDU/NPDU header parse (one-shot and
batch).  Twin: osgp._reference.frames (same names, same errors)."""

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t

import numpy as np

from osgp._native.buffers cimport InBuf, in_acquire, in_release
from osgp._native.osgp_c cimport *
from osgp._native.status cimport status_class

from osgp.errors import ConfigurationError, DecodeError

MAX_MESSAGE = 476  # MEP guide p.8
LON_FIELDS = ("lpdu_hdr", "pdu_fmt", "addr_fmt", "domain_len", "src_subnet", "src_node",
              "selfield", "dest_subnet", "dest_node", "group", "member", "pdu_hdr", "nid",
              "domain", "pdu_offset", "pdu_end")
LON_DTYPE = np.dtype([(f, "u1") for f in LON_FIELDS[:12]]
                     + [("nid", "u1", (6,)), ("domain", "u1", (6,)),
                        ("pdu_offset", "=u2"), ("pdu_end", "=u2")], align=True)
if LON_DTYPE.itemsize != sizeof(osgp_lon_header):
    raise ImportError("osgp_lon_header layout does not match LON_DTYPE")

osgp_crc16_lon(0xFFFF, NULL, 0)  # build the CRC table before any nogil batch


# Per-frame statuses of the batch forms (the osgp_status values, csrc/osgp.h).
OK = OSGP_OK
AUTH = OSGP_ERR_AUTH
TRUNCATED = OSGP_ERR_TRUNCATED
MALFORMED = OSGP_ERR_MALFORMED
CHECKSUM = OSGP_ERR_CHECKSUM

cdef dict _MESSAGES = {
    OSGP_ERR_AUTH: "digest mismatch",
    OSGP_ERR_KEY_LENGTH: "OMA digest key must be 6, 12 or 16 bytes",
    OSGP_ERR_TRUNCATED: "frame truncated",
    OSGP_ERR_CHECKSUM: "link CRC mismatch",
    OSGP_ERR_MALFORMED: "malformed frame",
}


cdef int _raise(osgp_status st, str layer, size_t off) except -1:
    cls = status_class(st)
    msg = _MESSAGES.get(st, f"frame kernel status {<int>st}")
    if issubclass(cls, DecodeError):
        raise cls(msg, layer=layer, offset=off)
    raise cls(f"{layer} {msg}" if st == OSGP_ERR_AUTH else msg)


cdef inline int _mep_key(Py_ssize_t n) except -1:
    if n < 16 or n > 20:
        raise ConfigurationError(f"MEP access key must be 16..20 bytes, got {n}")
    return 0


def mep_request_check(key, frame, Py_ssize_t max_message=MAX_MESSAGE):
    """Parse a plaintext MEP request frame and verify its digest: (code, seq).
    AuthenticationError when the digest does not verify."""
    cdef InBuf k, f
    cdef uint32_t seq = 0
    cdef uint8_t code = 0
    cdef size_t off = 0
    cdef osgp_status st
    in_acquire(key, &k, "key")
    try:
        _mep_key(k.len)
        in_acquire(frame, &f, "frame")
        try:
            st = osgp_mep_request_check(k.ptr, 16, f.ptr, f.len, max_message, &seq, &code, &off)
        finally:
            in_release(&f)
    finally:
        in_release(&k)
    if st != OSGP_OK:
        _raise(st, "mep", off)
    return code, seq


def mep_response_check(key, request_frame, response_frame, Py_ssize_t max_message=MAX_MESSAGE):
    """Verify the response digest chained over a plaintext request; returns
    the response APDU.  AuthenticationError when the digest does not verify."""
    cdef InBuf k, q, r
    cdef size_t off = 0
    cdef osgp_status st
    in_acquire(key, &k, "key")
    try:
        _mep_key(k.len)
        in_acquire(request_frame, &q, "request_frame")
        try:
            in_acquire(response_frame, &r, "response_frame")
            try:
                st = osgp_mep_response_check(k.ptr, 16, q.ptr, q.len, r.ptr, r.len, max_message, &off)
                if st == OSGP_OK:
                    return (<const char *>r.ptr)[2 : r.len - 8]
            finally:
                in_release(&r)
        finally:
            in_release(&q)
    finally:
        in_release(&k)
    _raise(st, "mep", off)


cdef object _offsets(object offsets):
    o = np.ascontiguousarray(offsets, dtype=np.int64)
    if o.ndim != 1 or o.shape[0] < 1:
        raise ConfigurationError("offsets must be a 1-d int64 array of n+1 entries")
    return o


cdef int _check_offsets(const int64_t[::1] o, Py_ssize_t size) except -1:
    cdef Py_ssize_t i
    for i in range(o.shape[0] - 1):
        if o[i] < 0 or o[i + 1] < o[i] or o[i + 1] > size:
            raise ConfigurationError(f"offsets[{i}:{i + 2}] do not lie in the data in order")
    return 0


def mep_request_check_batch(key, data, offsets, Py_ssize_t max_message=MAX_MESSAGE):
    """Frames data[offsets[i]:offsets[i+1]]: ``(status, code, seq, ok)``.
    ``ok`` is a bytes of n flags, ``ok[i]`` 1 when frame i parsed and its digest
    verified, else 0; ``status[i]`` (uint8 array) says why: OK, AUTH (digest
    mismatch), TRUNCATED or MALFORMED.  A frame that fails never raises (the
    single call mep_request_check raises AuthenticationError).  GIL released."""
    cdef InBuf k, d
    o = _offsets(offsets)
    cdef const int64_t[::1] ov = o
    cdef Py_ssize_t n = o.shape[0] - 1
    status = np.zeros(n, dtype=np.uint8)
    code = np.zeros(n, dtype=np.uint8)
    seq = np.zeros(n, dtype=np.uint32)
    cdef uint8_t[::1] sv = status
    cdef uint8_t[::1] cv = code
    cdef uint32_t[::1] qv = seq
    cdef osgp_status st
    in_acquire(key, &k, "key")
    try:
        _mep_key(k.len)
        in_acquire(data, &d, "data")
        try:
            _check_offsets(ov, d.len)
            if n:
                with nogil:
                    st = osgp_mep_request_check_batch(k.ptr, 16, d.ptr, &ov[0], n, max_message,
                                                      &sv[0], &cv[0], &qv[0])
        finally:
            in_release(&d)
    finally:
        in_release(&k)
    return status, code, seq, (status == OSGP_OK).astype(np.uint8).tobytes()


def mep_split(data, Py_ssize_t max_message=MAX_MESSAGE):
    """Split consecutive MEP frames: (starts int64[], lengths uint16[], consumed).
    starts are body offsets (after the length); length 0 = alert."""
    cdef InBuf d
    cdef size_t count = 0, consumed = 0, off = 0
    cdef osgp_status st
    in_acquire(data, &d, "data")
    try:
        cap = d.len // 2 + 1
        starts = np.empty(cap, dtype=np.int64)
        lengths = np.empty(cap, dtype=np.uint16)
        st = osgp_mep_split(d.ptr, d.len, max_message, <int64_t *> <size_t> starts.ctypes.data,
                            <uint16_t *> <size_t> lengths.ctypes.data, cap, &count, &consumed, &off)
    finally:
        in_release(&d)
    if st != OSGP_OK:
        _raise(st, "mep", off)
    return starts[:count].copy(), lengths[:count].copy(), consumed


cdef tuple _lon_tuple(osgp_lon_header *h):
    return (h.lpdu_hdr, h.pdu_fmt, h.addr_fmt, h.domain_len, h.src_subnet, h.src_node,
            h.selfield, h.dest_subnet, h.dest_node, h.group, h.member, h.pdu_hdr,
            (<char *>h.nid)[:6], (<char *>h.domain)[:h.domain_len], h.pdu_offset, h.pdu_end)


def lon_parse(frame, bint lpdu=True, bint crc=True):
    """Header fields of one LPDU (or bare NPDU with lpdu=False), in LON_FIELDS order."""
    cdef InBuf f
    cdef osgp_lon_header h
    cdef size_t off = 0
    cdef osgp_status st
    in_acquire(frame, &f, "frame")
    try:
        st = osgp_lon_parse(f.ptr, f.len, lpdu, crc, &h, &off)
    finally:
        in_release(&f)
    if st != OSGP_OK:
        _raise(st, "lon", off)
    return _lon_tuple(&h)


def lon_parse_batch(data, offsets, bint lpdu=True, bint crc=True):
    """(status uint8[n], headers LON_DTYPE[n]): status OK, TRUNCATED, MALFORMED
    or CHECKSUM per frame (a failed frame's header is zeroed, nothing raises);
    GIL released for the loop."""
    cdef InBuf d
    o = _offsets(offsets)
    cdef const int64_t[::1] ov = o
    cdef Py_ssize_t n = o.shape[0] - 1
    status = np.zeros(n, dtype=np.uint8)
    out = np.zeros(n, dtype=LON_DTYPE)
    cdef uint8_t[::1] sv = status
    cdef osgp_lon_header *hp = <osgp_lon_header *> <size_t> out.ctypes.data
    in_acquire(data, &d, "data")
    try:
        _check_offsets(ov, d.len)
        if n:
            with nogil:
                osgp_lon_parse_batch(d.ptr, &ov[0], n, lpdu, crc, hp, &sv[0])
    finally:
        in_release(&d)
    return status, out
