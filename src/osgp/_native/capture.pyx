# distutils: sources = csrc/osgp_capture.c
# cython: freethreading_compatible = False
"""Native capture-file kernels: the pcapng / classic pcap block walker and the
CN/IP-in-UDP payload extraction.  Twin: osgp._reference.capture (same names,
same errors)."""

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t

import numpy as np

from osgp._native.buffers cimport InBuf, in_acquire, in_release
from osgp._native.osgp_c cimport *

from osgp.errors import ConfigurationError, MalformedError, TruncatedError

NO_TIME = OSGP_CAPTURE_NO_TIME
MAX_INTERFACES = OSGP_CAPTURE_MAX_IFACES
# Per-packet statuses of cnip_extract (csrc/osgp.h)
OK, OTHER, FRAGMENT, TRUNCATED, MALFORMED = 0, 1, 2, OSGP_ERR_TRUNCATED, OSGP_ERR_MALFORMED
FAULTS = ("", "truncated", "bad block length", "bad byte-order magic", "unsupported version",
          "option runs past its block", "bad if_tsresol", "packet larger than its block",
          "packet of an undescribed interface", "too many interfaces",
          "not a pcapng or pcap file")
_FORMATS = ("", "pcapng", "pcap")


def walk(data, bint strict=True):
    """Every packet of a pcapng or pcap buffer: ``(ts_ns int64[n], offset
    int64[n], length uint32[n], interface uint32[n], info dict)``; the GIL is
    released for the walk.  ``strict``: the first fault raises TruncatedError
    or MalformedError (layer ``pcapng`` or ``pcap``, the offset); else it is
    counted in ``info`` and the walk goes on where it can."""
    cdef InBuf d
    cdef osgp_capture_info info
    cdef size_t err_off = 0, cap
    cdef osgp_status st = OSGP_OK
    cdef int64_t[::1] tv
    cdef int64_t[::1] ov
    cdef uint32_t[::1] lv
    cdef uint32_t[::1] iv
    in_acquire(data, &d, "data")
    try:
        cap = <size_t>(d.len // 64 + 16)
        while True:
            ts = np.empty(cap, dtype=np.int64)
            off = np.empty(cap, dtype=np.int64)
            length = np.empty(cap, dtype=np.uint32)
            iface = np.empty(cap, dtype=np.uint32)
            tv, ov, lv, iv = ts, off, length, iface
            with nogil:
                st = osgp_capture_walk(d.ptr, <size_t>d.len, strict, &tv[0], &ov[0], &lv[0],
                                       &iv[0], cap, &info, &err_off)
            if st != OSGP_ERR_CAPACITY:
                break
            cap = <size_t>(d.len // 16 + 1)
    finally:
        in_release(&d)
    layer = "pcap" if info.format == 2 else "pcapng"
    if st == OSGP_ERR_TRUNCATED:
        raise TruncatedError(FAULTS[info.err_what], layer=layer, offset=err_off)
    if st != OSGP_OK:
        raise MalformedError(FAULTS[info.err_what], layer=layer, offset=err_off)
    cdef Py_ssize_t n = <Py_ssize_t>info.packets
    k = info.interfaces
    out = {
        "format": _FORMATS[info.format],
        "packets": n,
        "skipped": info.skipped,
        "unknown": info.unknown,
        "bad": info.bad,
        "truncated": info.truncated,
        "sections": info.sections,
        "linktypes": tuple(info.linktype[i] for i in range(k)),
        "tsresol": tuple(info.tsresol[i] for i in range(k)),
        "fault": (FAULTS[info.err_what], err_off) if info.err_what else None,
    }
    cols = [ts, off, length, iface]
    if n < cap // 2:
        cols = [c[:n].copy() for c in cols]
    else:
        cols = [c[:n] for c in cols]
    return cols[0], cols[1], cols[2], cols[3], out


def cnip_extract(data, offsets, lengths, interfaces, linktypes):
    """The LonTalk LPDU of every packet that is CN/IP in UDP: ``(lpdus uint8[],
    bounds int64[n+1], status uint8[n])``, packet i's LPDU at
    lpdus[bounds[i]:bounds[i+1]] (empty unless status[i] is OK; else OTHER,
    FRAGMENT, TRUNCATED or MALFORMED).  GIL released."""
    cdef InBuf d
    o = np.ascontiguousarray(offsets, dtype=np.int64)
    ln = np.ascontiguousarray(lengths, dtype=np.uint32)
    fi = np.ascontiguousarray(interfaces, dtype=np.uint32)
    lt = np.ascontiguousarray(linktypes, dtype=np.uint16)
    if o.ndim != 1 or ln.shape != o.shape or fi.shape != o.shape or lt.ndim != 1:
        raise ConfigurationError("offsets, lengths and interfaces must be 1-d arrays of one size")
    cdef Py_ssize_t n = o.shape[0]
    cdef const int64_t[::1] ov = o
    cdef const uint32_t[::1] lv = ln
    cdef const uint32_t[::1] iv = fi
    cdef const uint16_t[::1] tv = lt
    out = np.empty(int(ln.sum(dtype=np.uint64)) + 1, dtype=np.uint8)
    bounds = np.zeros(n + 1, dtype=np.int64)
    status = np.zeros(n, dtype=np.uint8)
    cdef uint8_t[::1] outv = out
    cdef int64_t[::1] bv = bounds
    cdef uint8_t[::1] sv = status
    cdef osgp_status st = OSGP_OK
    cdef const uint16_t *tp = &tv[0] if tv.shape[0] else NULL
    in_acquire(data, &d, "data")
    try:
        if n:
            with nogil:
                st = osgp_cnip_extract(d.ptr, <size_t>d.len, &ov[0], &lv[0], &iv[0], n, tp,
                                       <size_t>tv.shape[0], &outv[0], &bv[0], &sv[0])
    finally:
        in_release(&d)
    if st != OSGP_OK:
        raise ConfigurationError("packet offsets, lengths or interfaces outside the data")
    return out[: bounds[n]], bounds, status


def gather(data, starts, lengths):
    """Byte ranges ``data[starts[i]:starts[i] + lengths[i]]`` packed back to
    back: ``(bytes uint8[], offsets int64[n+1])``.  GIL released."""
    cdef InBuf d
    cdef osgp_status st = OSGP_OK
    s = np.ascontiguousarray(starts, dtype=np.int64)
    ln = np.ascontiguousarray(lengths, dtype=np.int64)
    if s.ndim != 1 or ln.shape != s.shape:
        raise ConfigurationError("gather: starts and lengths must be 1-d arrays of one size")
    cdef Py_ssize_t n = s.shape[0]
    out = np.empty(max(int(ln.sum()), 0) + 1, dtype=np.uint8)
    offsets = np.zeros(n + 1, dtype=np.int64)
    cdef const int64_t[::1] sv = s
    cdef const int64_t[::1] lv = ln
    cdef uint8_t[::1] ov = out
    cdef int64_t[::1] fv = offsets
    in_acquire(data, &d, "data")
    try:
        if n:
            with nogil:
                st = osgp_ranges_gather(d.ptr, <size_t>d.len, &sv[0], &lv[0], n, &ov[0], &fv[0])
    finally:
        in_release(&d)
    if st != OSGP_OK:
        raise ConfigurationError("gather: a range lies outside the data")
    return out[: offsets[n]], offsets


def ranges_equal(data, a, b, lengths):
    """Per i: ``data[a[i]:a[i]+lengths[i]] == data[b[i]:b[i]+lengths[i]]``
    (bool[n]).  GIL released."""
    cdef InBuf d
    cdef osgp_status st = OSGP_OK
    av = np.ascontiguousarray(a, dtype=np.int64)
    bv = np.ascontiguousarray(b, dtype=np.int64)
    ln = np.ascontiguousarray(lengths, dtype=np.int64)
    if av.ndim != 1 or bv.shape != av.shape or ln.shape != av.shape:
        raise ConfigurationError("ranges_equal: a, b and lengths must be 1-d arrays of one size")
    cdef Py_ssize_t n = av.shape[0]
    eq = np.zeros(n, dtype=np.uint8)
    cdef const int64_t[::1] ap = av
    cdef const int64_t[::1] bp = bv
    cdef const int64_t[::1] lp = ln
    cdef uint8_t[::1] ev = eq
    in_acquire(data, &d, "data")
    try:
        if n:
            with nogil:
                st = osgp_ranges_equal(d.ptr, <size_t>d.len, &ap[0], &bp[0], &lp[0], n, &ev[0])
    finally:
        in_release(&d)
    if st != OSGP_OK:
        raise ConfigurationError("ranges_equal: a range lies outside the data")
    return eq.view(bool)
