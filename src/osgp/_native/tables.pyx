# distutils: sources = csrc/osgp_table.c csrc/osgp_lp.c csrc/osgp_cpu.c
# cython: freethreading_compatible = False
"""Native table-program interpreter and load-profile block decoder.

Twin: osgp._reference.tables (same names, signatures and errors).  Used by
osgp.tables (schemas compile to a program run here) and osgp.loadprofile.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

from osgp._native.buffers cimport InBuf, in_acquire, in_release
from osgp._native.osgp_c cimport *
from osgp._native.status cimport status_class
from osgp._native.cpu cimport features_in_use, limit_features

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memcpy

cdef extern from "Python.h":
    object PyDictProxy_New(object mapping)
    tuple PyTuple_New(Py_ssize_t n)
    void PyTuple_SET_ITEM(object t, Py_ssize_t i, object v)
    void Py_INCREF(object o)


cdef extern from *:
    """
    /* A tuple-subclass instance of n items, as tuple's own subtype __new__
     * allocates it (items are set by the caller before it escapes). */
    static PyObject *osgp_pyx_tuple_subtype_alloc(PyObject *type, Py_ssize_t n)
    {
        return ((PyTypeObject *)type)->tp_alloc((PyTypeObject *)type, n);
    }
    """
    object _tuple_subtype_alloc "osgp_pyx_tuple_subtype_alloc"(object type, Py_ssize_t n)


cdef inline void _tuple_set(object t, Py_ssize_t i, object v):
    Py_INCREF(v)  # PyTuple_SET_ITEM steals a reference
    PyTuple_SET_ITEM(t, i, v)

from osgp._reference._values import TimeDate, ni_value
from osgp.errors import ArgumentTypeError, ConfigurationError, MalformedError, TruncatedError

GEOMETRY_FIELDS = ("block_size", "nint", "nch", "time_off", "tm_format", "simple_off",
                   "int0_off", "int_size", "ext_off", "ch0_off", "fmt_code", "ni_format",
                   "interval_s", "descending")
NONE = 0xFFFFFFFF


cdef object _fault_error(osgp_status st, osgp_table_fault *f, str layer, str what,
                         object meter=None):
    cls = status_class(st)
    if cls is TruncatedError:
        return cls(layer=layer, offset=f.offset, needed=f.needed, remaining=f.remaining,
                   pc=f.pc, meter=meter)
    if cls is MalformedError:
        return cls(f"{what}: impossible value", layer=layer, offset=f.offset, pc=f.pc,
                   meter=meter)
    if st == OSGP_ERR_PROGRAM:
        return cls(f"corrupt table program at word {f.pc}", pc=f.pc, meter=meter)
    return cls(f"{what}: inconsistent arguments (status {<int>st})", pc=f.pc, meter=meter)


cdef int _run_growing(InBuf *p, InBuf *d, list plist, Py_ssize_t nregs, int64_t **slots_out,
                      size_t *nslots, size_t *consumed) except -1:
    """Run the program, growing the slot buffer until the values fit.  Every try
    starts from the same registers (params, then zeros).  On success
    ``*slots_out`` holds ``*nslots`` values; the caller frees it."""
    cdef int64_t *regs = NULL
    cdef int64_t *slots = NULL
    cdef size_t cap = 64 + <size_t>d.len * 2, i
    cdef Py_ssize_t np_ = len(plist)
    cdef osgp_table_fault f
    cdef osgp_status st
    if p.len % 4:
        raise ConfigurationError("program length must be a multiple of 4")
    regs = <int64_t *>PyMem_Malloc((nregs + 1) * sizeof(int64_t))
    if regs == NULL:
        raise MemoryError()
    try:
        while True:
            slots = <int64_t *>PyMem_Malloc(cap * sizeof(int64_t))
            if slots == NULL:
                raise MemoryError()
            for i in range(<size_t>nregs):
                regs[i] = plist[i] if <Py_ssize_t>i < np_ else 0
            st = osgp_table_run(<const uint32_t *>p.ptr, <size_t>p.len // 4, d.ptr, d.len,
                                regs, nregs, slots, cap, nslots, consumed, &f)
            if st != OSGP_ERR_CAPACITY:
                break
            PyMem_Free(slots)
            slots = NULL
            if cap > (<size_t>1 << 34):
                raise MalformedError("table expands to too many values", layer="table",
                                     offset=f.offset)
            cap *= 4
        if st != OSGP_OK:
            raise _fault_error(st, &f, "table", "table field")
        slots_out[0] = slots
        slots = NULL
        return 0
    finally:
        PyMem_Free(regs)
        PyMem_Free(slots)


def table_run(program, params, data, Py_ssize_t nregs):
    """Run a compiled table program (uint32 LE words) over ``data``.

    ``params`` initialise registers 0..len-1 (the rest start at 0).  Returns
    (slots, consumed).  Errors carry ``.pc``, the failing instruction."""
    cdef InBuf p, d
    cdef int64_t *slots = NULL
    cdef size_t nslots = 0, consumed = 0, i
    cdef Py_ssize_t np_ = len(params)
    if nregs < np_:
        raise ConfigurationError(f"{np_} parameters for {nregs} registers")
    plist = [int(x) for x in params]
    in_acquire(program, &p, "program")
    try:
        in_acquire(data, &d, "data")
        try:
            _run_growing(&p, &d, plist, nregs, &slots, &nslots, &consumed)
            return [slots[i] for i in range(nslots)], consumed
        finally:
            PyMem_Free(slots)
            in_release(&d)
    finally:
        in_release(&p)


cdef int _geometry(object geometry, osgp_lp_geometry *g) except -1:
    cdef tuple t = tuple(geometry)
    if len(t) != 14:
        raise ConfigurationError(f"geometry needs 14 fields {GEOMETRY_FIELDS}, got {len(t)}")
    g.block_size = t[0]; g.nint = t[1]; g.nch = t[2]; g.time_off = t[3]; g.tm_format = t[4]
    g.simple_off = t[5]; g.int0_off = t[6]; g.int_size = t[7]; g.ext_off = t[8]
    g.ch0_off = t[9]; g.fmt_code = t[10]; g.ni_format = t[11]; g.interval_s = t[12]
    g.descending = t[13]
    if osgp_lp_check(g) != OSGP_OK:
        raise ConfigurationError(f"load-profile geometry does not fit in a block: {t}")
    return 0


cdef struct OutBufs:
    Py_buffer v, s, f, t, ok
    int held


cdef int _out(object obj, Py_buffer *view, Py_ssize_t need, str what) except -1:
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE | PyBUF_WRITABLE)
    except (TypeError, BufferError):
        raise ArgumentTypeError(f"{what} must be a writable contiguous buffer") from None
    if view.len < need:
        PyBuffer_Release(view)
        raise ConfigurationError(f"{what} needs at least {need} bytes, got {view.len}")
    return 0


_I32_FORMATS = ("i", "<i", "=i", "@i", "l", "<l", "=l", "@l")


cdef int _value_width(object values, uint32_t fmt_code) except -1:
    """8 (int64 values) or 4 for an int32 buffer (INT_FMT_CDE 1, 2, 8, 16, 32 only)."""
    try:
        mv = memoryview(values)
    except TypeError:
        return 8  # reported by _out
    if mv.itemsize != 4 or mv.format not in _I32_FORMATS:
        return 8
    if fmt_code not in (1, 2, 8, 16, 32):
        raise ConfigurationError(
            f"int32 values need INT_FMT_CDE 1, 2, 8, 16 or 32, not {fmt_code}; use int64")
    return 4


cdef int _acquire_outs(OutBufs *o, size_t rows, size_t nch, values, status, flags, times,
                       valid, size_t vw=8, Py_ssize_t valid_rows=-1) except -1:
    o.held = 0
    _out(values, &o.v, rows * nch * vw, "values"); o.held = 1
    _out(status, &o.s, rows * nch, "status"); o.held = 2
    _out(flags, &o.f, rows, "flags"); o.held = 3
    _out(times, &o.t, rows * 8, "times"); o.held = 4
    _out(valid, &o.ok, rows if valid_rows < 0 else valid_rows, "valid"); o.held = 5
    return 0


cdef void _release_outs(OutBufs *o) noexcept:
    if o.held >= 1: PyBuffer_Release(&o.v)
    if o.held >= 2: PyBuffer_Release(&o.s)
    if o.held >= 3: PyBuffer_Release(&o.f)
    if o.held >= 4: PyBuffer_Release(&o.t)
    if o.held >= 5: PyBuffer_Release(&o.ok)
    o.held = 0


def lp_decode(geometry, data, blocks, lasts, values, status, flags, times, valid,
              counts=None):
    """Decode load-profile blocks ``blocks`` (uint32 buffer of block indices,
    chronological) of ``data`` into dense rows (nint per block); ``lasts``
    (uint32 buffer or None) = last recorded interval per block.  ``values`` is
    int64, or int32 (format "i") for INT_FMT_CDE 1, 2, 8, 16, 32.  With
    ``counts`` (writable uint32 buffer, one entry per block) only the valid
    rows are kept, in one pass: counts[b] = rows kept from block b, ``valid``
    is scratch of nint bytes and the other outputs still hold nblocks*nint
    rows.  Returns the number of rows written."""
    cdef osgp_lp_geometry g
    cdef InBuf d, bb, lb
    cdef OutBufs o
    cdef Py_buffer cv
    cdef osgp_table_fault f
    cdef osgp_status st
    cdef size_t nb, nrows = 0
    cdef int compact = counts is not None
    cdef int vw
    _geometry(geometry, &g)
    vw = _value_width(values, g.fmt_code)
    if vw == 4 and compact:
        raise ConfigurationError("counts needs int64 values")
    in_acquire(blocks, &bb, "blocks")
    lb.held = False
    lb.ptr = NULL
    try:
        if bb.len % 4:
            raise ConfigurationError("blocks must be a buffer of uint32")
        nb = <size_t>bb.len // 4
        if lasts is not None:
            in_acquire(lasts, &lb, "lasts")
            if lb.len != bb.len:
                raise ConfigurationError("lasts must have one uint32 per block")
        in_acquire(data, &d, "data")
        try:
            _acquire_outs(&o, nb * g.nint, g.nch, values, status, flags, times, valid, vw,
                          (g.nint if nb else 0) if compact else -1)
            try:
                if compact:
                    _out(counts, &cv, nb * 4, "counts")
                    try:
                        with nogil:
                            st = osgp_lp_decode_rows(d.ptr, d.len, &g, <const uint32_t *>bb.ptr,
                                                     <const uint32_t *>lb.ptr, nb,
                                                     <int64_t *>o.v.buf, <uint8_t *>o.s.buf,
                                                     <uint8_t *>o.f.buf, <int64_t *>o.t.buf,
                                                     <uint8_t *>o.ok.buf, <uint32_t *>cv.buf,
                                                     &nrows, &f)
                    finally:
                        PyBuffer_Release(&cv)
                elif vw == 4:
                    nrows = nb * g.nint
                    with nogil:
                        st = osgp_lp_decode_i32(d.ptr, d.len, &g, <const uint32_t *>bb.ptr,
                                                <const uint32_t *>lb.ptr, nb, <int32_t *>o.v.buf,
                                                <uint8_t *>o.s.buf, <uint8_t *>o.f.buf,
                                                <int64_t *>o.t.buf, <uint8_t *>o.ok.buf, &f)
                else:
                    nrows = nb * g.nint
                    with nogil:
                        st = osgp_lp_decode(d.ptr, d.len, &g, <const uint32_t *>bb.ptr,
                                            <const uint32_t *>lb.ptr, nb, <int64_t *>o.v.buf,
                                            <uint8_t *>o.s.buf, <uint8_t *>o.f.buf,
                                            <int64_t *>o.t.buf, <uint8_t *>o.ok.buf, &f)
            finally:
                _release_outs(&o)
            if st != OSGP_OK:
                raise _fault_error(st, &f, "load profile", f"block {f.pc}")
            return nrows
        finally:
            in_release(&d)
    finally:
        in_release(&lb)
        in_release(&bb)


def lp_decode_batch(geometry, datas, blocks_list, lasts_list, values, status, flags, times,
                    valid):
    """Many meters with one geometry in one call, without the GIL.  Meter i's
    rows follow meter i-1's (len(blocks_list[i]) * nint rows each).  Returns
    the row offset of every meter (n+1 entries)."""
    cdef osgp_lp_geometry g
    # tuples hold the items whose bytes are read in place while the GIL is off
    # (another thread could change a caller's list meanwhile)
    datas, blocks_list = tuple(datas), tuple(blocks_list)
    if lasts_list is not None:
        lasts_list = tuple(lasts_list)
    cdef Py_ssize_t n = len(datas), i, acq = 0
    cdef InBuf *bufs = NULL
    cdef const uint8_t **ins = NULL
    cdef size_t *lens = NULL
    cdef const uint32_t **bl = NULL
    cdef const uint32_t **ll = NULL
    cdef size_t *nbs = NULL
    cdef size_t *offs = NULL
    cdef size_t failed = 0, rows = 0
    cdef OutBufs o
    cdef osgp_table_fault f
    cdef osgp_status st
    _geometry(geometry, &g)
    if len(blocks_list) != n or (lasts_list is not None and len(lasts_list) != n):
        raise ConfigurationError("one blocks (and lasts) buffer per meter")
    bufs = <InBuf *>PyMem_Malloc((3 * n + 1) * sizeof(InBuf))
    ins = <const uint8_t **>PyMem_Malloc((n + 1) * sizeof(void *))
    lens = <size_t *>PyMem_Malloc((n + 1) * sizeof(size_t))
    bl = <const uint32_t **>PyMem_Malloc((n + 1) * sizeof(void *))
    ll = <const uint32_t **>PyMem_Malloc((n + 1) * sizeof(void *))
    nbs = <size_t *>PyMem_Malloc((n + 1) * sizeof(size_t))
    offs = <size_t *>PyMem_Malloc((n + 1) * sizeof(size_t))
    try:
        if not (bufs and ins and lens and bl and ll and nbs and offs):
            raise MemoryError()
        for i in range(n):
            in_acquire(datas[i], &bufs[acq], "data"); acq += 1
            ins[i] = bufs[acq - 1].ptr
            lens[i] = bufs[acq - 1].len
            in_acquire(blocks_list[i], &bufs[acq], "blocks"); acq += 1
            if bufs[acq - 1].len % 4:
                raise ConfigurationError("blocks must be a buffer of uint32")
            bl[i] = <const uint32_t *>bufs[acq - 1].ptr
            nbs[i] = bufs[acq - 1].len // 4
            offs[i] = rows
            rows += nbs[i] * g.nint
            if lasts_list is not None:
                in_acquire(lasts_list[i], &bufs[acq], "lasts"); acq += 1
                if bufs[acq - 1].len != 4 * nbs[i]:
                    raise ConfigurationError("lasts must have one uint32 per block")
                ll[i] = <const uint32_t *>bufs[acq - 1].ptr
        offs[n] = rows
        if _value_width(values, g.fmt_code) != 8:
            raise ConfigurationError("lp_decode_batch needs int64 values")
        _acquire_outs(&o, rows, g.nch, values, status, flags, times, valid)
        try:
            with nogil:
                st = osgp_lp_decode_batch(ins, lens, n, &g, bl,
                                          ll if lasts_list is not None else NULL, nbs, offs,
                                          <int64_t *>o.v.buf, <uint8_t *>o.s.buf,
                                          <uint8_t *>o.f.buf, <int64_t *>o.t.buf,
                                          <uint8_t *>o.ok.buf, &failed, &f)
        finally:
            _release_outs(&o)
        if st != OSGP_OK:
            raise _fault_error(st, &f, "load profile", f"meter {failed} block {f.pc}", failed)
        return [offs[i] for i in range(n + 1)]
    finally:
        for i in range(acq):
            in_release(&bufs[i])
        PyMem_Free(bufs); PyMem_Free(ins); PyMem_Free(lens); PyMem_Free(bl); PyMem_Free(ll)
        PyMem_Free(nbs); PyMem_Free(offs)



def lp_decode_images(geometry, datas, blocks, starts, lasts, values, status, flags, times,
                     valid, counts=None):
    """N images of one geometry (one per meter) in one call without the GIL.
    ``blocks`` (uint32) and ``lasts`` (uint32 or None) hold every meter's blocks
    one after the other, meter i's being ``starts[i]:starts[i+1]`` (int64, n+1
    entries).  Dense (``counts`` None): block k's rows are k*nint.. of the
    outputs, ``values`` int64 or int32 as in lp_decode.  With ``counts`` (uint32,
    one per block) only the valid rows are kept, meter after meter (int64
    values, ``valid`` = nint bytes of scratch).  Returns the rows written."""
    cdef osgp_lp_geometry g
    datas = tuple(datas)  # keeps the images alive and unchanged while the GIL is off
    cdef Py_ssize_t n = len(datas), i, acq = 0
    cdef InBuf *bufs = NULL
    cdef InBuf bb, sb, lb
    cdef OutBufs o
    cdef Py_buffer cv
    cdef osgp_table_fault f
    cdef osgp_status st = OSGP_OK
    cdef const int64_t *sp
    cdef const uint32_t *bp
    cdef const uint32_t *lp
    cdef uint32_t *cp = NULL
    cdef size_t nb, r = 0, k = 0, s, e, failed = 0, nch, nint
    cdef int compact = counts is not None, vw
    _geometry(geometry, &g)
    nch, nint = g.nch, g.nint
    vw = _value_width(values, g.fmt_code)
    if vw == 4 and compact:
        raise ConfigurationError("counts needs int64 values")
    bb.held = sb.held = lb.held = False
    bufs = <InBuf *>PyMem_Malloc((n + 1) * sizeof(InBuf))
    if not bufs:
        raise MemoryError()
    try:
        in_acquire(blocks, &bb, "blocks")
        in_acquire(starts, &sb, "starts")
        if bb.len % 4:
            raise ConfigurationError("blocks must be a buffer of uint32")
        nb = <size_t>bb.len // 4
        if sb.len != 8 * (n + 1):
            raise ConfigurationError("starts must hold n + 1 int64 offsets")
        sp = <const int64_t *>sb.ptr
        if sp[0] != 0 or sp[n] != <int64_t>nb:
            raise ConfigurationError("starts must run from 0 to the number of blocks")
        for i in range(n):
            if sp[i + 1] < sp[i]:
                raise ConfigurationError("starts must not decrease")
        bp = <const uint32_t *>bb.ptr
        lp = NULL
        if lasts is not None:
            in_acquire(lasts, &lb, "lasts")
            if lb.len != bb.len:
                raise ConfigurationError("lasts must have one uint32 per block")
            lp = <const uint32_t *>lb.ptr
        for i in range(n):
            in_acquire(datas[i], &bufs[i], "data")
            acq += 1
        _acquire_outs(&o, nb * nint, nch, values, status, flags, times, valid, vw,
                      (nint if nb else 0) if compact else -1)
        try:
            if compact:
                _out(counts, &cv, nb * 4, "counts")
                cp = <uint32_t *>cv.buf
            try:
                with nogil:
                    for i in range(n):
                        s = <size_t>sp[i]
                        e = <size_t>sp[i + 1]
                        if compact:
                            st = osgp_lp_decode_rows(
                                bufs[i].ptr, bufs[i].len, &g, bp + s, lp + s if lp else NULL,
                                e - s, <int64_t *>o.v.buf + r * nch,
                                <uint8_t *>o.s.buf + r * nch, <uint8_t *>o.f.buf + r,
                                <int64_t *>o.t.buf + r, <uint8_t *>o.ok.buf, cp + s, &k, &f)
                            r += k
                        elif vw == 4:
                            st = osgp_lp_decode_i32(
                                bufs[i].ptr, bufs[i].len, &g, bp + s, lp + s if lp else NULL,
                                e - s, <int32_t *>o.v.buf + s * nint * nch,
                                <uint8_t *>o.s.buf + s * nint * nch, <uint8_t *>o.f.buf + s * nint,
                                <int64_t *>o.t.buf + s * nint, <uint8_t *>o.ok.buf + s * nint, &f)
                        else:
                            st = osgp_lp_decode(
                                bufs[i].ptr, bufs[i].len, &g, bp + s, lp + s if lp else NULL,
                                e - s, <int64_t *>o.v.buf + s * nint * nch,
                                <uint8_t *>o.s.buf + s * nint * nch, <uint8_t *>o.f.buf + s * nint,
                                <int64_t *>o.t.buf + s * nint, <uint8_t *>o.ok.buf + s * nint, &f)
                        if st != OSGP_OK:
                            failed = i
                            break
            finally:
                if compact:
                    PyBuffer_Release(&cv)
        finally:
            _release_outs(&o)
        if st != OSGP_OK:
            raise _fault_error(st, &f, "load profile", f"meter {failed} block {f.pc}", failed)
        return r if compact else nb * nint
    finally:
        for i in range(acq):
            in_release(&bufs[i])
        PyMem_Free(bufs)
        in_release(&lb)
        in_release(&sb)
        in_release(&bb)


# ---- dispatch knobs for tests and benches ----

def _lp_stream_min(nbytes=None):
    """Internal knob: total output bytes of one lp_decode call from which the
    fast path writes with streaming stores (0: always, -1: never; None: only
    query).  Returns the previous value (-1 for never).  Process-wide; for
    tests and benches only."""
    cdef size_t old
    if nbytes is None:
        old = osgp_lp_set_stream_min(0)
        osgp_lp_set_stream_min(old)
    else:
        old = osgp_lp_set_stream_min(<size_t>-1 if nbytes < 0 else <size_t>nbytes)
    return -1 if old == <size_t>-1 else old


def cpu_features():
    """CPU features the kernels may use (after OSGP_CPU and set_cpu_features)."""
    return features_in_use()


def set_cpu_features(names=None):
    """Limit the kernels to ``names`` (None: everything detected).  For tests."""
    limit_features(names)


# ---- slots -> nested mapping (osgp.tables.schema shape codes) -------------------------------

DEF S_INT = 0
DEF S_BITS = 1
DEF S_BYTES = 2
DEF S_NI = 3
DEF S_TIME = 4
DEF S_FLOAT = 5
DEF S_ARRAY = 6
DEF S_RECORD = 7
DEF S_IF = 8

cdef object _TupleNew = tuple.__new__


cdef struct BuildCtx:
    const int64_t *s
    Py_ssize_t i
    Py_ssize_t n
    const uint8_t *dp


cdef inline double _bits_to_double(int64_t v) noexcept:
    cdef double x
    memcpy(&x, &v, 8)
    return x


cdef Py_ssize_t _param(list params, object idx) except? -1:
    """NI_FORMAT parameter of a shape node (bounds-checked: the shape indexes params)."""
    return params[<Py_ssize_t>idx]


# Shape tuples come from osgp.tables.schema, but table_decode is callable with
# any tuple, so their indexing stays bounds-checked: a malformed shape raises
# IndexError inside osgp, never reads past a tuple.
@cython.boundscheck(True)
@cython.wraparound(False)
cdef int _build_group(tuple children, BuildCtx *c, object data, list params,
                      dict d) except -1:
    cdef tuple ch
    for ch in children:
        if <int>ch[0] == S_IF:
            c.i += 1
            if c.s[c.i - 1]:
                _build_group(<tuple>ch[2], c, data, params, d)
            continue
        v = _build_node(ch, c, data, params)
        name = ch[1]
        if name is not None:
            d[name] = v
    return 0


@cython.boundscheck(True)
@cython.wraparound(False)
cdef object _build_node(tuple node, BuildCtx *c, object data, list params):
    cdef int code = node[0]
    cdef Py_ssize_t n, k, off, ln, b
    cdef int64_t v
    cdef tuple sub, elem_t, t
    cdef dict d
    cdef list items
    cdef int kind
    cdef const uint8_t *p
    if code == S_INT:   # node[2]: UINT64, whose int64 slot holds the bits
        c.i += 1
        if node[2]:
            return PyLong_FromUnsignedLongLong(<uint64_t>c.s[c.i - 1])
        return PyLong_FromLongLong(c.s[c.i - 1])
    if code == S_BITS:
        d = {}
        for sub in <tuple>node[2]:
            v = c.s[c.i]
            c.i += 1
            if sub[0] is not None:
                d[sub[0]] = (v != 0) if sub[1] else PyLong_FromUnsignedLongLong(<uint64_t>v)
        return PyDictProxy_New(d)
    if code == S_BYTES:
        off = c.s[c.i]
        ln = c.s[c.i + 1]
        c.i += 2
        kind = node[2]
        p = c.dp + off
        if kind == 1:
            return PyUnicode_DecodeLatin1(<const char *>p, ln, NULL)
        if kind == 2:
            return PyBytes_FromStringAndSize(<const char *>p, ln).hex().upper()
        if kind == 3:
            t = PyTuple_New_bools(p, ln)
            return t
        return PyBytes_FromStringAndSize(<const char *>p, ln)
    if code == S_NI:
        v = c.s[c.i]
        c.i += 1
        k = _param(params, node[2])
        if k == 0 or k == 1:
            return _bits_to_double(v)
        if k == 2 or k == 3 or k == 4 or k == 13:
            return ni_value(k, v, data)
        return PyLong_FromLongLong(v)
    if code == S_TIME:
        # TimeDate is a NamedTuple (a tuple subclass without extra storage):
        # allocated at its final size and filled, no temporary tuple
        tdo = _tuple_subtype_alloc(TimeDate, 6)
        for k in range(6):
            _tuple_set(tdo, k, PyLong_FromLongLong(c.s[c.i + k]))
        c.i += 6
        return tdo
    if code == S_FLOAT:
        c.i += 1
        return _bits_to_double(c.s[c.i - 1])
    if code == S_ARRAY:
        n = c.s[c.i]
        c.i += 1
        # elements go straight into a tuple of the final size (no list)
        t = PyTuple_New(n)
        elem_t = <tuple>node[2]
        if node[3]:
            kind = elem_t[0]
            if kind == S_INT and not elem_t[2]:
                for k in range(n):
                    _tuple_set(t, k, PyLong_FromLongLong(c.s[c.i + k]))
                c.i += n
            elif kind == S_NI and _param(params, elem_t[2]) not in (
                    0, 1, 2, 3, 4, 13):
                # integer NI formats: the slot is the value
                for k in range(n):
                    _tuple_set(t, k, PyLong_FromLongLong(c.s[c.i + k]))
                c.i += n
            else:
                for k in range(n):
                    _tuple_set(t, k, _build_node(elem_t, c, data, params))
        else:
            for k in range(n):
                d = {}
                _build_group(elem_t, c, data, params, d)
                _tuple_set(t, k, PyDictProxy_New(d))
        return t
    if code == S_RECORD:
        d = {}
        _build_group(<tuple>node[2], c, data, params, d)
        return PyDictProxy_New(d)
    return None


cdef tuple PyTuple_New_bools(const uint8_t *p, Py_ssize_t ln):
    cdef list out = [None] * (8 * ln)
    cdef Py_ssize_t k
    for k in range(8 * ln):
        out[k] = ((p[k >> 3] >> (k & 7)) & 1) != 0
    return tuple(out)


def table_decode(program, tuple shape, params, data, Py_ssize_t nregs):
    """Run a table program and build the read-only nested mapping described by
    ``shape`` (osgp.tables.schema shape codes).  Errors as table_run."""
    cdef InBuf p, dd
    cdef int64_t *slots = NULL
    cdef size_t nslots = 0, consumed = 0
    cdef Py_ssize_t np_ = len(params)
    cdef BuildCtx c
    cdef dict out
    if nregs < np_:
        raise ConfigurationError(f"{np_} parameters for {nregs} registers")
    plist = [int(x) for x in params]
    if not isinstance(data, bytes):
        data = bytes(data)
    in_acquire(program, &p, "program")
    try:
        in_acquire(data, &dd, "data")
        try:
            _run_growing(&p, &dd, plist, nregs, &slots, &nslots, &consumed)
            c.s = slots
            c.i = 0
            c.n = nslots
            c.dp = dd.ptr
            out = {}
            _build_group(shape, &c, data, plist, out)
            return PyDictProxy_New(out)
        finally:
            PyMem_Free(slots)
            in_release(&dd)
    finally:
        in_release(&p)


# ---- columnar decode (osgp.tables.columns) ----------------------------------------------------

def table_columns(cells, data, offsets, Py_ssize_t size, cols):
    """Decode ``len(offsets)`` images of a fixed-layout table (image i =
    ``data[offsets[i]:offsets[i] + size]``, offsets an int64 buffer) into the
    writable column buffers ``cols`` as the cells say (uint32 words, 8 per
    cell: see osgp_table_columns in csrc/osgp.h).  The GIL is released for
    the loop.  Errors carry ``.image`` (and ``.pc``, the cell)."""
    cdef InBuf cb, d, ob
    cdef Py_buffer *views = NULL
    cdef uint8_t **ptrs = NULL
    cdef const uint32_t *e
    cdef Py_ssize_t ncols, held = 0, k
    cdef size_t n, ncells, c, failed = 0
    cdef osgp_table_fault f
    cdef osgp_status st
    if size < 0:
        raise ConfigurationError("size must be >= 0")
    cols = tuple(cols)
    ncols = len(cols)
    in_acquire(cells, &cb, "cells")
    try:
        if cb.len % (4 * OSGP_COL_WORDS):
            raise ConfigurationError("cells must be uint32 words, 8 per cell")
        ncells = <size_t>cb.len // (4 * OSGP_COL_WORDS)
        in_acquire(offsets, &ob, "offsets")
        try:
            if ob.len % 8:
                raise ConfigurationError("offsets must be a buffer of int64")
            n = <size_t>ob.len // 8
            views = <Py_buffer *>PyMem_Malloc((ncols + 1) * sizeof(Py_buffer))
            ptrs = <uint8_t **>PyMem_Malloc((ncols + 1) * sizeof(uint8_t *))
            if views == NULL or ptrs == NULL:
                raise MemoryError()
            try:
                for k in range(ncols):
                    _out(cols[k], &views[k], 0, f"column {k}")
                    held += 1
                    ptrs[k] = <uint8_t *>views[k].buf
                e = <const uint32_t *>cb.ptr
                for c in range(ncells):
                    # every cell's rows fit its column buffer (C checks the rest)
                    k = e[OSGP_COL_WORDS * c + 4]
                    if k < ncols and n and <size_t>views[k].len < n * e[OSGP_COL_WORDS * c + 6]:
                        raise ConfigurationError(
                            f"column {k} needs {n * e[OSGP_COL_WORDS * c + 6]} bytes, "
                            f"got {views[k].len}")
                in_acquire(data, &d, "data")
                try:
                    with nogil:
                        st = osgp_table_columns(d.ptr, d.len, <const int64_t *>ob.ptr, n,
                                                <size_t>size, e, ncells, ptrs, <size_t>ncols,
                                                &failed, &f)
                finally:
                    in_release(&d)
            finally:
                for k in range(held):
                    PyBuffer_Release(&views[k])
        finally:
            PyMem_Free(views)
            PyMem_Free(ptrs)
            in_release(&ob)
    finally:
        in_release(&cb)
    if st == OSGP_ERR_TRUNCATED:
        raise TruncatedError(f"image {failed}: truncated", layer="table", offset=f.offset,
                             needed=f.needed, remaining=f.remaining, pc=f.pc, image=failed)
    elif st == OSGP_ERR_MALFORMED:
        raise MalformedError(f"image {failed}: impossible value", layer="table",
                             offset=f.offset, pc=f.pc, image=failed)
    elif st != OSGP_OK:
        raise ConfigurationError(f"corrupt column cell {f.pc}", pc=f.pc, image=failed)
    return None
