# distutils: sources = csrc/osgp_cpu.c csrc/osgp_oma.c csrc/osgp_oma_batch.c csrc/osgp_rc4.c csrc/osgp_crc.c
# cython: freethreading_compatible = False
"""Native legacy OSGP security kernels: OMA digest (Annex E / MEP App. A),
EN 14908 authentication, RC4, and the two link CRCs.

Twin: osgp._reference.legacy (same names, same errors).  Public entry points
are re-exported by osgp.crypto.
"""

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize,
                            PyBytes_GET_SIZE)
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.ref cimport Py_INCREF
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uint8_t, uint16_t
from libc.string cimport memcpy

from osgp._native.buffers cimport InBuf, as_items, in_acquire, in_release, out_acquire
from osgp._native.cpu cimport features_in_use, limit_features
from osgp._native.osgp_c cimport *
from osgp._native.status cimport status_class

from osgp.errors import ArgumentTypeError, AuthenticationError, ConfigurationError

DIGEST_SIZE = 8

# Above this many bytes a single call releases the GIL.
cdef Py_ssize_t _NOGIL_THRESHOLD = 1 << 16


cdef inline int _check_oma_key(Py_ssize_t n) except -1:
    if n != 6 and n != 12 and n != 16:
        raise ConfigurationError(f"OMA digest key must be 6, 12 or 16 bytes, got {n}")
    return 0


def oma_digest(key, data):
    """8-byte OMA digest of ``data`` under a 6-, 12- or 16-byte key."""
    cdef InBuf k, d
    cdef uint8_t *outp
    in_acquire(key, &k, "key")
    try:
        _check_oma_key(k.len)
        in_acquire(data, &d, "data")
        try:
            out = PyBytes_FromStringAndSize(NULL, 8)
            outp = <uint8_t *>PyBytes_AS_STRING(out)
            if d.len < _NOGIL_THRESHOLD:
                osgp_oma_digest(k.ptr, k.len, d.ptr, d.len, outp)
            else:
                with nogil:
                    osgp_oma_digest(k.ptr, k.len, d.ptr, d.len, outp)
            return out
        finally:
            in_release(&d)
    finally:
        in_release(&k)


def compare_digest(a, b):
    """Constant-time equality of two byte strings (time depends on length only)."""
    cdef InBuf x, y
    in_acquire(a, &x, "a")
    try:
        in_acquire(b, &y, "b")
        try:
            if x.len != y.len:
                return False
            return osgp_ct_compare(x.ptr, y.ptr, x.len) == 0
        finally:
            in_release(&y)
    finally:
        in_release(&x)


def oma_verify(key, data, tag):
    """Raise AuthenticationError unless ``tag`` is the OMA digest of ``data``."""
    if not compare_digest(oma_digest(key, data), tag):
        raise AuthenticationError("OMA digest mismatch")


cdef class OmaDigest:
    """Streaming OMA digest: ``update()`` any number of times, ``digest()`` at
    any point (the object stays usable, so a request digest can be read and
    the stream then extended with the response, MEP guide p.251)."""

    cdef osgp_oma_ctx ctx

    def __cinit__(self, key, data=None):
        cdef InBuf k
        in_acquire(key, &k, "key")
        try:
            _check_oma_key(k.len)
            osgp_oma_init(&self.ctx, k.ptr, k.len)
        finally:
            in_release(&k)
        if data is not None:
            self.update(data)

    def __dealloc__(self):
        osgp_wipe(&self.ctx, sizeof(self.ctx))

    @property
    def key_size(self):
        return self.ctx.key_len

    @property
    def block_size(self):
        return 48 if self.ctx.key_len == 6 else 12 * self.ctx.key_len

    digest_size = 8

    def update(self, data):
        cdef InBuf d
        in_acquire(data, &d, "data")
        try:
            osgp_oma_update(&self.ctx, d.ptr, d.len)
        finally:
            in_release(&d)

    def digest(self):
        out = PyBytes_FromStringAndSize(NULL, 8)
        osgp_oma_final(&self.ctx, <uint8_t *>PyBytes_AS_STRING(out))
        return out

    def hexdigest(self):
        return self.digest().hex()

    def copy(self):
        cdef OmaDigest other = OmaDigest.__new__(OmaDigest, b"\0" * self.ctx.key_len)
        memcpy(&other.ctx, &self.ctx, sizeof(self.ctx))
        return other


cdef int _is_buffer(object obj):
    return isinstance(obj, (bytes, bytearray, memoryview)) or hasattr(obj, "__buffer__") or \
        type(obj).__name__ == "ndarray"


def oma_digest_many(keys, messages):
    """OMA digests of many messages in one call, without the GIL, SIMD across
    messages where the CPU has it.  ``keys`` is one key, or one per message."""
    cdef Py_ssize_t n, i, nkeys
    cdef int per_message
    cdef const uint8_t **mp = NULL
    cdef const uint8_t **kp = NULL
    cdef size_t *lens = NULL
    cdef InBuf *mb = NULL
    cdef InBuf *kb = NULL
    cdef Py_ssize_t key_len = -1, acquired_m = 0, acquired_k = 0, this_len
    cdef uint8_t *outp = NULL
    cdef osgp_status st
    cdef object item
    # tuples hold the items whose bytes are read in place while the GIL is off
    # (another thread could change a caller's list meanwhile)
    msgs = as_items(messages, "messages")
    n = len(msgs)
    per_message = not _is_buffer(keys)
    if per_message:
        keys = as_items(keys, "keys")
        nkeys = len(keys)
        if nkeys != n:
            raise ConfigurationError(f"got {nkeys} keys for {n} messages")
    else:
        nkeys = 1
    mp = <const uint8_t **>PyMem_Malloc((n + 1) * sizeof(uint8_t *))
    lens = <size_t *>PyMem_Malloc((n + 1) * sizeof(size_t))
    mb = <InBuf *>PyMem_Malloc((n + 1) * sizeof(InBuf))
    kp = <const uint8_t **>PyMem_Malloc((nkeys + 1) * sizeof(uint8_t *))
    kb = <InBuf *>PyMem_Malloc((nkeys + 1) * sizeof(InBuf))
    outp = <uint8_t *>PyMem_Malloc(8 * n + 8)
    try:
        if mp == NULL or lens == NULL or mb == NULL or kp == NULL or kb == NULL or outp == NULL:
            raise MemoryError()
        for i in range(nkeys):
            item = keys[i] if per_message else keys
            if PyBytes_CheckExact(item):  # read in place, as for messages below
                kp[i] = <const uint8_t *>PyBytes_AS_STRING(item)
                this_len = PyBytes_GET_SIZE(item)
            else:
                in_acquire(item, &kb[acquired_k], "key")
                kp[i] = kb[acquired_k].ptr
                this_len = kb[acquired_k].len
                acquired_k += 1
            if key_len < 0:
                _check_oma_key(this_len)
                key_len = this_len
            elif this_len != key_len:
                raise ConfigurationError(
                    f"all keys of a batch must have one size: key {i} has {this_len} bytes, "
                    f"key 0 has {key_len}")
        for i in range(n):
            item = msgs[i]
            if PyBytes_CheckExact(item):  # read in place: no buffer export, nothing to release
                mp[i] = <const uint8_t *>PyBytes_AS_STRING(item)
                lens[i] = PyBytes_GET_SIZE(item)
                continue
            in_acquire(item, &mb[acquired_m], "message")
            mp[i] = mb[acquired_m].ptr
            lens[i] = mb[acquired_m].len
            acquired_m += 1
        st = OSGP_OK
        if n:  # (no message: no key either when they are per message)
            with nogil:
                st = osgp_oma_digest_batch(kp, per_message, key_len, mp, lens, n, outp)
        if st != OSGP_OK:
            raise status_class(st)(f"oma_digest_many: kernel status {<int>st}")
        result = PyList_New(n)
        for i in range(n):
            item = PyBytes_FromStringAndSize(<char *>outp + 8 * i, 8)
            Py_INCREF(item)
            PyList_SET_ITEM(result, i, item)
        return result
    finally:
        for i in range(acquired_m):
            in_release(&mb[i])
        for i in range(acquired_k):
            in_release(&kb[i])
        PyMem_Free(mp)
        PyMem_Free(lens)
        PyMem_Free(mb)
        PyMem_Free(kp)
        PyMem_Free(kb)
        PyMem_Free(outp)


def oma_digest_packed(key, data, offsets, *, key_size=None, out=None):
    """Zero-overhead batch: message i is ``data[offsets[i]:offsets[i+1]]``
    (``offsets``: n+1 int64, e.g. a numpy array).  ``key`` is one key, or with
    ``key_size`` the n keys packed back to back.  Returns n*8 digest bytes in
    ``out`` (any writable buffer of n*8 bytes) or a new bytearray."""
    cdef Py_buffer ov, outv
    cdef InBuf d, k
    cdef Py_ssize_t n, i, klen
    cdef const int64_t *off
    cdef const uint8_t **mp = NULL
    cdef const uint8_t **kp = NULL
    cdef size_t *lens = NULL
    cdef osgp_status st
    cdef int per_message = key_size is not None
    try:
        PyObject_GetBuffer(offsets, &ov, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except (TypeError, BufferError):
        raise ArgumentTypeError("offsets must be a contiguous buffer of int64") from None
    try:
        fmt = (ov.format or b"B").decode()
        if ov.itemsize != 8 or not fmt.endswith(("q", "l", "Q", "L")) or ov.ndim != 1:
            raise ArgumentTypeError(f"offsets must be a 1-d buffer of int64, got format {fmt!r}")
        n = ov.len // 8 - 1
        if n < 0:
            raise ConfigurationError("offsets needs at least one entry (n+1 for n messages)")
        off = <const int64_t *>ov.buf
        in_acquire(data, &d, "data")
        try:
            for i in range(n):
                if off[i] < 0 or off[i + 1] < off[i] or off[i + 1] > d.len:
                    raise ConfigurationError(
                        f"offsets[{i}:{i + 2}] = {off[i]}, {off[i + 1]} do not lie in the "
                        f"{d.len}-byte data buffer in order")
            in_acquire(key, &k, "key")
            try:
                klen = k.len
                if per_message:
                    klen = key_size
                    if k.len != klen * n:
                        raise ConfigurationError(
                            f"packed keys: expected {n} x {klen} = {klen * n} bytes, got {k.len}")
                _check_oma_key(klen)
                if out is None:
                    out = bytearray(8 * n)
                out_acquire(out, &outv, 8 * n, "out")
                mp = <const uint8_t **>PyMem_Malloc((n + 1) * sizeof(uint8_t *))
                lens = <size_t *>PyMem_Malloc((n + 1) * sizeof(size_t))
                kp = <const uint8_t **>PyMem_Malloc((n + 1) * sizeof(uint8_t *))
                try:
                    if mp == NULL or lens == NULL or kp == NULL:
                        raise MemoryError()
                    with nogil:
                        for i in range(n):
                            mp[i] = d.ptr + off[i]
                            lens[i] = <size_t>(off[i + 1] - off[i])
                            kp[i] = k.ptr + (i * klen if per_message else 0)
                        st = osgp_oma_digest_batch(kp, per_message, klen, mp, lens, n,
                                                   <uint8_t *>outv.buf)
                    if st != OSGP_OK:
                        raise status_class(st)(f"oma_digest_packed: kernel status {<int>st}")
                finally:
                    PyBuffer_Release(&outv)
                    PyMem_Free(mp)
                    PyMem_Free(lens)
                    PyMem_Free(kp)
            finally:
                in_release(&k)
        finally:
            in_release(&d)
    finally:
        PyBuffer_Release(&ov)
    return out


def en14908_auth(challenge, data, key, *, oma_address=None):
    """ISO/IEC 14908-1 challenge/response value (8 bytes).

    ``key``: 6 bytes (classic) or 12 bytes (OMA: domain 0 key || domain 1 key,
    18 key iterations a pass); ``oma_address``: the optional 8-byte OmaAddress
    prefixed to the APDU in OMA mode."""
    cdef InBuf c, d, k, a
    cdef const uint8_t *ap = NULL
    in_acquire(challenge, &c, "challenge")
    try:
        if c.len != 8:
            raise ConfigurationError(f"challenge must be 8 bytes, got {c.len}")
        in_acquire(key, &k, "key")
        try:
            if k.len != 6 and k.len != 12:
                raise ConfigurationError(
                    f"EN 14908 key must be 6 bytes (classic) or 12 bytes (OMA), got {k.len}")
            a.held = False
            if oma_address is not None:
                in_acquire(oma_address, &a, "oma_address")
                ap = a.ptr
                if a.len != 8:
                    in_release(&a)
                    raise ConfigurationError(f"oma_address must be 8 bytes, got {a.len}")
                if k.len != 12:
                    in_release(&a)
                    raise ConfigurationError("oma_address needs a 12-byte (OMA) key")
            try:
                in_acquire(data, &d, "data")
                try:
                    out = PyBytes_FromStringAndSize(NULL, 8)
                    osgp_en14908_auth(c.ptr, k.ptr, k.len, ap, d.ptr, d.len,
                                      <uint8_t *>PyBytes_AS_STRING(out))
                    return out
                finally:
                    in_release(&d)
            finally:
                in_release(&a)
        finally:
            in_release(&k)
    finally:
        in_release(&c)


cdef inline int _check_rc4_key(Py_ssize_t n) except -1:
    if n < 1 or n > 256:
        raise ConfigurationError(f"RC4 key must be 1 to 256 bytes, got {n}")
    return 0


def rc4(key, data):
    """RC4 keystream XOR ``data`` (fresh key schedule, no discard)."""
    cdef InBuf k, d
    cdef osgp_rc4_ctx ctx
    in_acquire(key, &k, "key")
    try:
        _check_rc4_key(k.len)
        in_acquire(data, &d, "data")
        try:
            out = PyBytes_FromStringAndSize(NULL, d.len)
            osgp_rc4_init(&ctx, k.ptr, k.len)
            osgp_rc4_crypt(&ctx, d.ptr, d.len, <uint8_t *>PyBytes_AS_STRING(out))
            osgp_rc4_wipe(&ctx)
            return out
        finally:
            in_release(&d)
    finally:
        in_release(&k)


cdef class RC4:
    """RC4 stream whose keystream continues across ``process()`` calls (the MEP
    response is encrypted by continuing the request's keystream, MEP App. B)."""

    cdef osgp_rc4_ctx ctx

    def __cinit__(self, key):
        cdef InBuf k
        in_acquire(key, &k, "key")
        try:
            _check_rc4_key(k.len)
            osgp_rc4_init(&self.ctx, k.ptr, k.len)
        finally:
            in_release(&k)

    def __dealloc__(self):
        osgp_rc4_wipe(&self.ctx)

    def process(self, data):
        cdef InBuf d
        in_acquire(data, &d, "data")
        try:
            out = PyBytes_FromStringAndSize(NULL, d.len)
            osgp_rc4_crypt(&self.ctx, d.ptr, d.len, <uint8_t *>PyBytes_AS_STRING(out))
            return out
        finally:
            in_release(&d)


def crc16_x25(data):
    """CRC-16/X-25 of an ANSI C12.18 packet (sent LSB first)."""
    cdef InBuf d
    in_acquire(data, &d, "data")
    try:
        return osgp_crc16_x25(0xFFFF, d.ptr, d.len) ^ 0xFFFF
    finally:
        in_release(&d)


def crc16_lon(data):
    """ISO/IEC 14908-1 link-layer CRC-16 (sent MSB first)."""
    cdef InBuf d
    in_acquire(data, &d, "data")
    try:
        return osgp_crc16_lon(0xFFFF, d.ptr, d.len) ^ 0xFFFF
    finally:
        in_release(&d)


def batch_path():
    """Which code path oma_digest_many takes on this CPU now."""
    return osgp_oma_batch_path().decode()


def cpu_features():
    """CPU features the kernels may use (after OSGP_CPU and set_cpu_features)."""
    return features_in_use()


def set_cpu_features(names=None):
    """Limit the kernels to ``names`` (None: everything detected).  For tests."""
    limit_features(names)
