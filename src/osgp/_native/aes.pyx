# distutils: sources = csrc/osgp_cpu.c csrc/osgp_aes.c csrc/osgp_ccm.c csrc/osgp_ccm_batch.c csrc/osgp_cmac.c
# cython: freethreading_compatible = False
"""Native AES-128 kernels of the OSGP-AES-128-PSK suite (CLC/TS 50586 Annex F):
AES-CMAC (OSGP_MAC, NIST SP 800-38B / RFC 4493), AES-CCM (OSGP_AE / OSGP_AD,
NIST SP 800-38C / RFC 3610) and the counter-mode CMAC KDF (GKDF, RFC 5433 s.4).

AES-NI or the ARMv8 crypto extensions are chosen at run time, with a
constant-time portable fallback (``OSGP_CPU=portable`` or
``set_cpu_features(())`` forces it).  Twin: osgp._reference.aes (same names,
same errors), pure Python with its own AES-128.  Public names are
re-exported by osgp.crypto.
"""

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memset

from osgp._native.buffers cimport InBuf, as_items, in_acquire, in_release, out_acquire

# Raw-pointer forms for the per-message loops of the list forms: borrowed list
# items and new bytes handed straight to the result list, with no reference
# count traffic per message.
cdef extern from "Python.h":
    ctypedef struct PyObject
    PyObject *_list_item "PyList_GET_ITEM"(object lst, Py_ssize_t i)
    PyObject *_tuple_item "PyTuple_GET_ITEM"(object tup, Py_ssize_t i)
    PyObject *_seq_item "PySequence_Fast_GET_ITEM"(object seq, Py_ssize_t i)  # list or tuple
    bint _bytes_exact "PyBytes_CheckExact"(PyObject *o)
    char *_bytes_str "PyBytes_AS_STRING"(PyObject *o)
    Py_ssize_t _bytes_len "PyBytes_GET_SIZE"(PyObject *o)
    PyObject *_bytes_new "PyBytes_FromStringAndSize"(const char *s, Py_ssize_t n)
    void _list_set "PyList_SET_ITEM"(object lst, Py_ssize_t i, PyObject *o)
from osgp._native.cpu cimport features_in_use, limit_features
from osgp._native.osgp_c cimport *
from osgp._native.status cimport status_class

from osgp.errors import ArgumentTypeError, AuthenticationError, ConfigurationError

BLOCK_SIZE = 16
KEY_SIZE = 16

# Above this many bytes a single call releases the GIL.
cdef Py_ssize_t _NOGIL_THRESHOLD = 1 << 16


cdef int _raise(osgp_status st, Py_ssize_t n=0, Py_ssize_t tag_len=0) except -1:
    """Turn a status into the exception the twin raises too (class: status_class)."""
    if st == OSGP_OK:
        return 0
    if st == OSGP_ERR_KEY_LENGTH:
        msg = f"AES-128 key must be 16 bytes, got {n}"
    elif st == OSGP_ERR_NONCE_LENGTH:
        msg = f"CCM nonce must be 7 to 13 bytes, got {n}"
    elif st == OSGP_ERR_TAG_LENGTH:
        msg = f"CCM tag length must be 4, 6, 8, 10, 12, 14 or 16, got {n}"
    elif st == OSGP_ERR_DATA_LENGTH:
        msg = (f"payload of {n} bytes is too long for a {15 - tag_len}-byte "
               "CCM length field (use a shorter nonce)")
    elif st == OSGP_ERR_AUTH:
        msg = "CCM tag mismatch"
    elif st == OSGP_ERR_NOMEM:
        raise MemoryError()
    else:
        msg = "inconsistent arguments"
    raise status_class(st)(msg)


cdef inline int _in(object obj, InBuf *b, str what) except -1:
    """in_acquire with the bytes case inline (the hot single-call path)."""
    if PyBytes_CheckExact(obj):
        b.ptr = <const uint8_t *>PyBytes_AS_STRING(obj)
        b.len = PyBytes_GET_SIZE(obj)
        b.held = False
        return 0
    return in_acquire(obj, b, what)


cdef inline int _check_ccm(Py_ssize_t nonce_len, Py_ssize_t tag_len, Py_ssize_t plen) except -1:
    if nonce_len < 7 or nonce_len > 13:
        _raise(OSGP_ERR_NONCE_LENGTH, nonce_len)
    if tag_len < 4 or tag_len > 16 or tag_len & 1:
        _raise(OSGP_ERR_TAG_LENGTH, tag_len)
    if plen >= 0 and osgp_ccm_check(nonce_len, tag_len, plen) == OSGP_ERR_DATA_LENGTH:
        _raise(OSGP_ERR_DATA_LENGTH, plen, nonce_len)
    return 0


cdef inline unsigned long long _ccm_max_len(Py_ssize_t nonce_len):
    """Longest payload a q = 15 - nonce_len byte length field holds (SP 800-38C A.1)."""
    cdef Py_ssize_t q = 15 - nonce_len
    if q >= 8:
        return ~(<unsigned long long>0)
    return (<unsigned long long>1 << (8 * q)) - 1


cdef inline int _check_cmac_tag(Py_ssize_t tag_len) except -1:
    if tag_len < 1 or tag_len > 16:
        raise ConfigurationError(f"CMAC tag length must be 1 to 16, got {tag_len}")
    return 0


cdef class AesKey:
    """An AES-128 key expanded once (round keys and CMAC subkeys), with the
    module's operations as methods.  The expanded key is wiped when the object
    is freed; it is never exposed."""

    cdef osgp_aes128_key k

    def __cinit__(self, key):
        cdef InBuf kb
        in_acquire(key, &kb, "key")
        try:
            _raise(osgp_aes128_expand(&self.k, kb.ptr, kb.len), kb.len)
            osgp_cmac_subkeys(&self.k)
        finally:
            in_release(&kb)

    def __dealloc__(self):
        osgp_aes128_wipe(&self.k)

    def __repr__(self):
        return "<AesKey AES-128>"

    def __reduce__(self):
        raise TypeError("AesKey cannot be pickled (it holds key material)")

    key_size = 16

    def encrypt_block(self, block):
        return _encrypt_block(&self.k, block)

    def aes_cmac(self, data, Py_ssize_t tag_len=16):
        return _cmac(&self.k, data, tag_len)

    def ccm_seal(self, nonce, plaintext, aad=b"", Py_ssize_t tag_len=8, *, out=None):
        if (out is None and PyBytes_CheckExact(nonce) and PyBytes_CheckExact(plaintext)
                and PyBytes_CheckExact(aad)):
            return _seal_bytes(&self.k, <bytes>nonce, <bytes>plaintext, <bytes>aad, tag_len)
        return _seal(&self.k, nonce, plaintext, aad, tag_len, out)

    def ccm_open(self, nonce, data, aad=b"", Py_ssize_t tag_len=8, *, out=None):
        if (out is None and PyBytes_CheckExact(nonce) and PyBytes_CheckExact(data)
                and PyBytes_CheckExact(aad)):
            return _open_bytes(&self.k, <bytes>nonce, <bytes>data, <bytes>aad, tag_len)
        return _open(&self.k, nonce, data, aad, tag_len, out)

    def ccm_seal_many(self, nonces, plaintexts, aads=None, Py_ssize_t tag_len=8):
        return ccm_seal_many(self, nonces, plaintexts, aads, tag_len)

    def ccm_open_many(self, nonces, datas, aads=None, Py_ssize_t tag_len=8):
        return ccm_open_many(self, nonces, datas, aads, tag_len)

    def cmac_many(self, messages, Py_ssize_t tag_len=16):
        return cmac_many(self, messages, tag_len)

    def cmac_kdf(self, data, Py_ssize_t length):
        return _kdf(&self.k, data, length)


cdef inline const osgp_aes128_key *_key(object key, osgp_aes128_key *tmp,
                                        bint subkeys) except NULL:
    """The expanded key of an AesKey, or ``key`` (16 bytes) expanded into tmp
    (with the CMAC subkeys when ``subkeys``)."""
    cdef InBuf kb
    cdef osgp_status st
    if isinstance(key, AesKey):
        return &(<AesKey>key).k
    in_acquire(key, &kb, "key")
    st = osgp_aes128_expand(tmp, kb.ptr, kb.len)
    in_release(&kb)
    if st != OSGP_OK:
        _raise(st, kb.len)
    if subkeys:
        osgp_cmac_subkeys(tmp)
    return tmp


cdef object _encrypt_block(const osgp_aes128_key *kp, block):
    cdef InBuf b
    in_acquire(block, &b, "block")
    try:
        if b.len != 16:
            raise ConfigurationError(f"block must be 16 bytes, got {b.len}")
        out = PyBytes_FromStringAndSize(NULL, 16)
        osgp_aes128_encrypt_blocks(kp, b.ptr, 1, <uint8_t *>PyBytes_AS_STRING(out))
        return out
    finally:
        in_release(&b)


cdef object _cmac(const osgp_aes128_key *kp, data, Py_ssize_t tag_len):
    cdef InBuf d
    cdef uint8_t *op
    _check_cmac_tag(tag_len)
    if PyBytes_CheckExact(data) and PyBytes_GET_SIZE(data) < _NOGIL_THRESHOLD:
        # common call: read in place, nothing to release
        out = PyBytes_FromStringAndSize(NULL, tag_len)
        osgp_cmac(kp, <const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                  <uint8_t *>PyBytes_AS_STRING(out), tag_len)
        return out
    in_acquire(data, &d, "data")
    try:
        out = PyBytes_FromStringAndSize(NULL, tag_len)
        op = <uint8_t *>PyBytes_AS_STRING(out)
        if d.len < _NOGIL_THRESHOLD:
            osgp_cmac(kp, d.ptr, d.len, op, tag_len)
        else:
            with nogil:
                osgp_cmac(kp, d.ptr, d.len, op, tag_len)
        return out
    finally:
        in_release(&d)


cdef object _kdf(const osgp_aes128_key *kp, data, Py_ssize_t length):
    cdef InBuf d
    if length < 0 or length > 0xFFFF * 16:
        raise ConfigurationError(f"KDF output length must be 0 to {0xFFFF * 16}, got {length}")
    in_acquire(data, &d, "data")
    try:
        out = PyBytes_FromStringAndSize(NULL, length)
        osgp_cmac_kdf(kp, d.ptr, d.len, <uint8_t *>PyBytes_AS_STRING(out), length)
        return out
    finally:
        in_release(&d)


cdef object _seal_bytes(const osgp_aes128_key *kp, bytes nonce, bytes plaintext, bytes aad,
                        Py_ssize_t tag_len):
    """_seal for the common call (all bytes, no ``out``): read in place, no
    buffer exports, no cleanup, the result allocated once at its final size.
    The kernel checks the lengths; _check_ccm only runs to word an error."""
    cdef Py_ssize_t nl = PyBytes_GET_SIZE(nonce), pl = PyBytes_GET_SIZE(plaintext)
    cdef Py_ssize_t al = PyBytes_GET_SIZE(aad)
    cdef const uint8_t *np = <const uint8_t *>PyBytes_AS_STRING(nonce)
    cdef const uint8_t *pp = <const uint8_t *>PyBytes_AS_STRING(plaintext)
    cdef const uint8_t *ap = <const uint8_t *>PyBytes_AS_STRING(aad)
    cdef uint8_t *op
    cdef osgp_status st
    if tag_len < 4 or tag_len > 16:  # before it sizes the result
        _check_ccm(nl, tag_len, pl)
    res = PyBytes_FromStringAndSize(NULL, pl + tag_len)
    op = <uint8_t *>PyBytes_AS_STRING(res)
    if pl + al < _NOGIL_THRESHOLD:
        st = osgp_ccm_seal(kp, np, nl, ap, al, pp, pl, tag_len, op)
    else:
        with nogil:
            st = osgp_ccm_seal(kp, np, nl, ap, al, pp, pl, tag_len, op)
    if st != OSGP_OK:
        _check_ccm(nl, tag_len, pl)
        _raise(st, pl, nl)
    return res


cdef object _open_bytes(const osgp_aes128_key *kp, bytes nonce, bytes data, bytes aad,
                        Py_ssize_t tag_len):
    """_open for the common call (all bytes, no ``out``), as _seal_bytes."""
    cdef Py_ssize_t nl = PyBytes_GET_SIZE(nonce), dl = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t al = PyBytes_GET_SIZE(aad), plen
    cdef const uint8_t *np = <const uint8_t *>PyBytes_AS_STRING(nonce)
    cdef const uint8_t *dp = <const uint8_t *>PyBytes_AS_STRING(data)
    cdef const uint8_t *ap = <const uint8_t *>PyBytes_AS_STRING(aad)
    cdef uint8_t *op
    cdef osgp_status st
    if tag_len < 4 or tag_len > 16 or dl < tag_len:  # before it sizes the result
        _check_ccm(nl, tag_len, -1)
        raise AuthenticationError(
            f"CCM data of {dl} bytes is shorter than the {tag_len}-byte tag")
    plen = dl - tag_len
    res = PyBytes_FromStringAndSize(NULL, plen)
    op = <uint8_t *>PyBytes_AS_STRING(res)
    if dl + al < _NOGIL_THRESHOLD:
        st = osgp_ccm_open(kp, np, nl, ap, al, dp, dl, tag_len, op)
    else:
        with nogil:
            st = osgp_ccm_open(kp, np, nl, ap, al, dp, dl, tag_len, op)
    if st != OSGP_OK:
        if st != OSGP_ERR_AUTH:
            _check_ccm(nl, tag_len, plen)
        _raise(st, plen, nl)
    return res


cdef object _seal(const osgp_aes128_key *kp, nonce, plaintext, aad, Py_ssize_t tag_len, out):
    cdef InBuf n, p, a
    if (out is None and PyBytes_CheckExact(nonce) and PyBytes_CheckExact(plaintext)
            and PyBytes_CheckExact(aad)):
        return _seal_bytes(kp, <bytes>nonce, <bytes>plaintext, <bytes>aad, tag_len)
    cdef Py_buffer ov
    cdef uint8_t *op
    cdef osgp_status st
    _in(nonce, &n, "nonce")
    try:
        _in(plaintext, &p, "plaintext")
        try:
            _in(aad, &a, "aad")
            try:
                _check_ccm(n.len, tag_len, p.len)
                if out is None:
                    res = PyBytes_FromStringAndSize(NULL, p.len + tag_len)
                    op = <uint8_t *>PyBytes_AS_STRING(res)
                else:
                    out_acquire(out, &ov, p.len + tag_len, "out")
                    op = <uint8_t *>ov.buf
                    res = out
                try:
                    if p.len + a.len < _NOGIL_THRESHOLD:
                        st = osgp_ccm_seal(kp, n.ptr, n.len, a.ptr, a.len, p.ptr, p.len,
                                           tag_len, op)
                    else:
                        with nogil:
                            st = osgp_ccm_seal(kp, n.ptr, n.len, a.ptr, a.len, p.ptr, p.len,
                                               tag_len, op)
                finally:
                    if out is not None:
                        PyBuffer_Release(&ov)
                if st != OSGP_OK:
                    _raise(st, p.len, n.len)
                return res
            finally:
                in_release(&a)
        finally:
            in_release(&p)
    finally:
        in_release(&n)


cdef object _open(const osgp_aes128_key *kp, nonce, data, aad, Py_ssize_t tag_len, out):
    cdef InBuf n, d, a
    if (out is None and PyBytes_CheckExact(nonce) and PyBytes_CheckExact(data)
            and PyBytes_CheckExact(aad)):
        return _open_bytes(kp, <bytes>nonce, <bytes>data, <bytes>aad, tag_len)
    cdef Py_buffer ov
    cdef uint8_t *op
    cdef Py_ssize_t plen
    cdef osgp_status st
    _in(nonce, &n, "nonce")
    try:
        _in(data, &d, "data")
        try:
            _in(aad, &a, "aad")
            try:
                _check_ccm(n.len, tag_len, -1)
                if d.len < tag_len:
                    raise AuthenticationError(
                        f"CCM data of {d.len} bytes is shorter than the {tag_len}-byte tag")
                plen = d.len - tag_len
                _check_ccm(n.len, tag_len, plen)
                if out is None:
                    res = PyBytes_FromStringAndSize(NULL, plen)
                    op = <uint8_t *>PyBytes_AS_STRING(res)
                else:
                    out_acquire(out, &ov, plen, "out")
                    op = <uint8_t *>ov.buf
                    res = out
                try:
                    if d.len + a.len < _NOGIL_THRESHOLD:
                        st = osgp_ccm_open(kp, n.ptr, n.len, a.ptr, a.len, d.ptr, d.len,
                                           tag_len, op)
                    else:
                        with nogil:
                            st = osgp_ccm_open(kp, n.ptr, n.len, a.ptr, a.len, d.ptr, d.len,
                                               tag_len, op)
                finally:
                    if out is not None:
                        PyBuffer_Release(&ov)
                if st != OSGP_OK:
                    _raise(st, plen, n.len)
                return res
            finally:
                in_release(&a)
        finally:
            in_release(&d)
    finally:
        in_release(&n)


def encrypt_block(key, block):
    """AES-128 encryption of one 16-byte block (FIPS-197)."""
    cdef osgp_aes128_key tmp
    cdef const osgp_aes128_key *kp = _key(key, &tmp, False)
    try:
        return _encrypt_block(kp, block)
    finally:
        if kp == &tmp:
            osgp_aes128_wipe(&tmp)


def aes_cmac(key, data, Py_ssize_t tag_len=16):
    """AES-CMAC (SP 800-38B, RFC 4493) of ``data``, truncated to ``tag_len``
    (1..16) bytes."""
    cdef osgp_aes128_key tmp
    cdef const osgp_aes128_key *kp = _key(key, &tmp, True)
    try:
        return _cmac(kp, data, tag_len)
    finally:
        if kp == &tmp:
            osgp_aes128_wipe(&tmp)


def cmac_kdf(key, data, Py_ssize_t length):
    """GKDF-length(key, data) of RFC 5433 s.4: CMAC(key, i (2 bytes BE) || data)
    for i = 1, 2, ... concatenated and truncated to ``length`` bytes."""
    cdef osgp_aes128_key tmp
    cdef const osgp_aes128_key *kp = _key(key, &tmp, True)
    try:
        return _kdf(kp, data, length)
    finally:
        if kp == &tmp:
            osgp_aes128_wipe(&tmp)


def ccm_seal(key, nonce, plaintext, aad=b"", Py_ssize_t tag_len=8, *, out=None):
    """AES-CCM encryption (SP 800-38C): ciphertext || tag.  Nonce 7..13 bytes,
    tag 4..16 bytes (even), AAD of any length.  With ``out`` (a writable buffer
    of exactly len(plaintext) + tag_len bytes) the result is written there and
    ``out`` is returned."""
    cdef osgp_aes128_key tmp
    cdef const osgp_aes128_key *kp = _key(key, &tmp, False)
    try:
        return _seal(kp, nonce, plaintext, aad, tag_len, out)
    finally:
        if kp == &tmp:
            osgp_aes128_wipe(&tmp)


def ccm_open(key, nonce, data, aad=b"", Py_ssize_t tag_len=8, *, out=None):
    """AES-CCM decryption and verification of ciphertext || tag; raises
    AuthenticationError on a bad tag (or data shorter than the tag).  With
    ``out`` (exactly len(data) - tag_len bytes) the plaintext is written there
    (and zeroed again when the tag is bad)."""
    cdef osgp_aes128_key tmp
    cdef const osgp_aes128_key *kp = _key(key, &tmp, False)
    try:
        return _open(kp, nonce, data, aad, tag_len, out)
    finally:
        if kp == &tmp:
            osgp_aes128_wipe(&tmp)


# ---- batch forms ---------------------------------------------------------------

cdef bint _is_single_key(object keys):
    if isinstance(keys, AesKey):
        return True
    try:
        memoryview(keys)
    except TypeError:
        return False
    return True


cdef Py_ssize_t _plain(object seq):
    """The total size of a list or tuple of exact bytes, else -1 (checking it
    runs no Python code)."""
    cdef Py_ssize_t i, total = 0
    cdef PyObject *o
    if type(seq) is not list and type(seq) is not tuple:
        return -1
    for i in range(len(seq)):
        o = _seq_item(seq, i)
        if not _bytes_exact(o):
            return -1
        total += _bytes_len(o)
    return total


cdef bint _plain_keys(object keys):
    """One AesKey or bytes key, or a list or tuple of them."""
    cdef Py_ssize_t i
    cdef PyObject *o
    if type(keys) is AesKey or type(keys) is bytes:
        return True
    if type(keys) is not list and type(keys) is not tuple:
        return False
    for i in range(len(keys)):
        o = _seq_item(keys, i)
        if type(<object>o) is not AesKey and not _bytes_exact(o):
            return False
    return True


cdef class _Batch:
    """Buffers and pointer arrays of one batch call, released in __dealloc__."""
    cdef Py_ssize_t n
    cdef InBuf *bufs            # acquired buffers (4n + 4 at most)
    cdef Py_ssize_t nbufs, cap
    cdef osgp_aes128_key *own    # keys expanded here (wiped on release)
    cdef Py_ssize_t nown
    cdef const osgp_aes128_key **kp
    cdef const uint8_t **np
    cdef const uint8_t **ap
    cdef size_t *alen
    cdef const uint8_t **ip
    cdef size_t *ilen
    cdef uint8_t **op
    cdef object keep             # keeps AesKey objects alive
    cdef bint subkeys            # expand CMAC subkeys too
    cdef bint no_aad             # aads(None): no AAD for any message
    cdef size_t total            # payload and AAD bytes (release_gil)

    def __cinit__(self, Py_ssize_t n):
        self.n = n
        self.cap = 4 * n + 4  # keys, nonces, AADs, messages
        # bufs and own are allocated on first use (acquire / key): exact bytes
        # arguments and AesKey objects need neither, and for large n they are
        # hundreds of KB.
        self.kp = <const osgp_aes128_key **>PyMem_Malloc((n + 1) * sizeof(void *))
        self.np = <const uint8_t **>PyMem_Malloc((n + 1) * sizeof(void *))
        self.ap = <const uint8_t **>PyMem_Malloc((n + 1) * sizeof(void *))
        self.alen = <size_t *>PyMem_Malloc((n + 1) * sizeof(size_t))
        self.ip = <const uint8_t **>PyMem_Malloc((n + 1) * sizeof(void *))
        self.ilen = <size_t *>PyMem_Malloc((n + 1) * sizeof(size_t))
        self.op = <uint8_t **>PyMem_Malloc((n + 1) * sizeof(void *))
        if (self.kp == NULL or self.np == NULL or
                self.ap == NULL or self.alen == NULL or self.ip == NULL or self.ilen == NULL or
                self.op == NULL):
            raise MemoryError()
        self.keep = []

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.nbufs):
            in_release(&self.bufs[i])
        if self.own != NULL:
            for i in range(self.nown):
                osgp_aes128_wipe(&self.own[i])
        PyMem_Free(self.bufs)
        PyMem_Free(self.own)
        PyMem_Free(<void *>self.kp)
        PyMem_Free(<void *>self.np)
        PyMem_Free(<void *>self.ap)
        PyMem_Free(self.alen)
        PyMem_Free(<void *>self.ip)
        PyMem_Free(self.ilen)
        PyMem_Free(self.op)

    cdef InBuf *acquire(self, object obj, str what) except NULL:
        cdef InBuf *b
        if self.nbufs >= self.cap:
            raise ConfigurationError("internal: batch buffer table full")
        if self.bufs == NULL:
            self.bufs = <InBuf *>PyMem_Malloc(self.cap * sizeof(InBuf))
            if self.bufs == NULL:
                raise MemoryError()
        b = &self.bufs[self.nbufs]
        in_acquire(obj, b, what)
        self.nbufs += 1
        return b

    cdef tuple prepare(self, object keys, object nonces, object msgs, object aads):
        """The arguments as the batch reads them.  Common case: lists or tuples of
        exact bytes (keys: AesKey or bytes, one or a sequence; aads: None, one
        bytes or a sequence) under 64 KiB, when the GIL stays: their items are
        read in place, and no Python code runs from this check to the kernel,
        so nothing can change a list under the borrowed pointers.  Anything
        else (a batch that releases the GIL, iterators, buffer objects) is
        first copied into tuples, which hold their items whatever another
        thread or Python code run afterwards does to the caller's lists."""
        cdef Py_ssize_t pm = _plain(msgs), pa = 0
        if pm >= 0 and type(aads) is bytes:  # one AAD for every message
            pa = len(msgs) * len(<bytes>aads)
        elif aads is not None:
            pa = _plain(aads)
        if (pm >= 0 and pa >= 0 and _plain(nonces) >= 0 and _plain_keys(keys) and
                pm + pa < _NOGIL_THRESHOLD):
            return keys, nonces, msgs, aads
        nonces, msgs = as_items(nonces, "nonces"), as_items(msgs, "messages")
        if not _is_single_key(keys):
            keys = as_items(keys, "keys")
        if aads is not None and not isinstance(aads, (bytes, bytearray, memoryview)):
            try:
                memoryview(aads)
            except TypeError:
                aads = as_items(aads, "aads")
        self.keep.append((keys, nonces, msgs, aads))
        return keys, nonces, msgs, aads

    cdef Py_ssize_t ccm_inputs(self, keys, nonces, msgs, aads, Py_ssize_t tag_len) except -1:
        """Keys, nonces, AADs and messages of a CCM batch; returns the nonce length."""
        cdef Py_ssize_t nl
        keys, nonces, msgs, aads = self.prepare(keys, nonces, msgs, aads)
        self.keys(keys)
        nl = self.nonces(nonces)
        self.aads(aads)
        self.inputs(msgs)
        _check_ccm(nl, tag_len, -1)
        return nl

    cdef bint release_gil(self) noexcept:
        """Whether the kernel runs without the GIL: for batches of
        _NOGIL_THRESHOLD (64 KiB) of payload and AAD or more (prepare read them
        from tuple copies).  Smaller ones take tens of microseconds, less than
        handing the GIL over costs."""
        return self.total >= <size_t>_NOGIL_THRESHOLD

    cdef int own_ready(self) except -1:
        """Allocate the table of keys expanded here (n + 1 entries) once."""
        if self.own == NULL:
            self.own = <osgp_aes128_key *>PyMem_Malloc((self.n + 1) * sizeof(osgp_aes128_key))
            if self.own == NULL:
                raise MemoryError()
        return 0

    cdef const osgp_aes128_key *key(self, object key) except NULL:
        cdef InBuf *b
        cdef osgp_aes128_key *k
        if isinstance(key, AesKey):
            self.keep.append(key)
            return &(<AesKey>key).k
        b = self.acquire(key, "key")
        self.own_ready()
        k = &self.own[self.nown]
        _raise(osgp_aes128_expand(k, b.ptr, b.len), b.len)
        self.nown += 1
        if self.subkeys:
            osgp_cmac_subkeys(k)
        return k

    cdef int keys(self, object keys) except -1:
        cdef Py_ssize_t i
        cdef const osgp_aes128_key *one
        cdef tuple ktup
        cdef PyObject *o
        if _is_single_key(keys):
            one = self.key(keys)
            for i in range(self.n):
                self.kp[i] = one
        else:
            # One tuple copy keeps every key object alive until the call ends
            # (a list could be changed by another thread while the GIL is off).
            ktup = as_items(keys, "keys")
            if len(ktup) != self.n:
                raise ConfigurationError(f"got {len(ktup)} keys for {self.n} messages")
            self.keep.append(ktup)
            for i in range(self.n):
                o = _tuple_item(ktup, i)  # borrowed: the tuple holds it
                if type(<object>o) is AesKey:  # the common case: no per-key bookkeeping
                    self.kp[i] = &(<AesKey>o).k
                else:
                    self.kp[i] = self.key(<object>o)
        return 0

    cdef int aads(self, object aads) except -1:
        """None: no AAD; one buffer: shared; else one per message."""
        cdef Py_ssize_t i
        cdef InBuf *b
        if aads is None:
            self.no_aad = True  # the callers pass NULL tables (C: no AAD at all)
            return 0
        if type(aads) is list or type(aads) is tuple:
            shared = False  # checked first: no exception is raised (and allocated) here
        else:
            try:
                memoryview(aads)
                shared = True
            except TypeError:
                shared = False
        if shared:
            b = self.acquire(aads, "aad")
            for i in range(self.n):
                self.ap[i] = b.ptr
                self.alen[i] = b.len
            self.total += <size_t>self.n * b.len
            return 0
        if len(aads) != self.n:
            raise ConfigurationError(f"got {len(aads)} AADs for {self.n} messages")
        for i in range(self.n):
            b = self.acquire(<object>_seq_item(aads, i), "aad")
            self.ap[i] = b.ptr
            self.alen[i] = b.len
            self.total += b.len
        return 0

    cdef Py_ssize_t nonces(self, object nonces_in) except -1:
        cdef Py_ssize_t i, nl = -1
        cdef InBuf *b
        nonces = nonces_in  # a list or tuple (prepare)
        if len(nonces) != self.n:
            raise ConfigurationError(f"got {len(nonces)} nonces for {self.n} messages")
        cdef PyObject *o
        cdef Py_ssize_t ln
        for i in range(self.n):
            o = _seq_item(nonces, i)  # borrowed (prepare)
            if _bytes_exact(o):  # read in place: no InBuf, no export
                self.np[i] = <const uint8_t *>_bytes_str(o)
                ln = _bytes_len(o)
            else:
                b = self.acquire(<object>o, "nonce")
                self.np[i] = b.ptr
                ln = b.len
            if nl < 0:
                nl = ln
            elif ln != nl:
                raise ConfigurationError(
                    f"all nonces of a batch must have one length: nonce {i} has {ln} bytes, "
                    f"nonce 0 has {nl}")
        return nl if nl >= 0 else 13

    cdef int inputs(self, object msgs) except -1:
        """The messages: a list or tuple of n (prepare)."""
        cdef Py_ssize_t i
        cdef InBuf *b
        cdef PyObject *o
        for i in range(self.n):
            o = _seq_item(msgs, i)  # borrowed (prepare)
            if _bytes_exact(o):  # read in place: no InBuf, no export
                self.ip[i] = <const uint8_t *>_bytes_str(o)
                self.ilen[i] = _bytes_len(o)
            else:
                b = self.acquire(<object>o, "message")
                self.ip[i] = b.ptr
                self.ilen[i] = b.len
            self.total += self.ilen[i]
        return 0


def ccm_seal_many(keys, nonces, plaintexts, aads=None, Py_ssize_t tag_len=8):
    """CCM-seal many messages in one call, the CBC-MACs of 8 (16 with VAES)
    messages in lock step, without the GIL from 64 KiB of payload and AAD.  ``keys``: one key (bytes or AesKey) or one per
    message; ``aads``: None, one AAD for all, or one per message.  Returns a
    list of ciphertext || tag."""
    msgs = plaintexts if type(plaintexts) in (list, tuple) else as_items(plaintexts, "plaintexts")
    cdef Py_ssize_t n = len(msgs), i, nl
    cdef _Batch B = _Batch(n)
    cdef osgp_status st
    # the one GC-tracked allocation comes first: a collection (which can run
    # Python code) never falls between taking the input pointers and the kernel
    cdef list outs = PyList_New(n)
    nl = B.ccm_inputs(keys, nonces, msgs, aads, tag_len)
    cdef unsigned long long maxlen = _ccm_max_len(nl)
    cdef PyObject *o
    for i in range(n):
        if <unsigned long long>B.ilen[i] > maxlen:
            _check_ccm(nl, tag_len, B.ilen[i])
        o = _bytes_new(NULL, B.ilen[i] + tag_len)
        if o == NULL:
            raise MemoryError()
        B.op[i] = <uint8_t *>_bytes_str(o)
        _list_set(outs, i, o)  # the list takes the new reference
    cdef const uint8_t **ap = NULL if B.no_aad else B.ap
    cdef size_t *alen = NULL if B.no_aad else B.alen
    if B.release_gil():
        with nogil:
            st = osgp_ccm_seal_batch(B.kp, B.np, nl, ap, alen, B.ip, B.ilen, n, tag_len, B.op)
    else:
        st = osgp_ccm_seal_batch(B.kp, B.np, nl, ap, alen, B.ip, B.ilen, n, tag_len, B.op)
    if st != OSGP_OK:
        _raise(st)
    return outs


def ccm_open_many(keys, nonces, datas, aads=None, Py_ssize_t tag_len=8):
    """CCM-open many messages in one call (lock-step CBC-MACs, without the
    GIL from 64 KiB).
    Returns ``(plaintexts, ok)``: ``ok`` is a bytes of n flags, ``ok[i]`` 1 when
    message i verified and 0 when it did not (bad tag, or shorter than the
    tag); ``plaintexts[i]`` is its plaintext, or None where ``ok[i]`` is 0.
    A message that does not verify never raises and never spoils the batch
    (the single call ``ccm_open`` raises AuthenticationError instead)."""
    msgs = datas if type(datas) in (list, tuple) else as_items(datas, "datas")
    cdef Py_ssize_t n = len(msgs), i, nl, plen
    cdef _Batch B = _Batch(n)
    cdef osgp_status st
    cdef uint8_t *ok
    cdef list outs = PyList_New(n)  # first: as in ccm_seal_many
    nl = B.ccm_inputs(keys, nonces, msgs, aads, tag_len)
    okb = PyBytes_FromStringAndSize(NULL, n)
    ok = <uint8_t *>PyBytes_AS_STRING(okb)
    cdef PyObject *o
    for i in range(n):
        plen = <Py_ssize_t>B.ilen[i] - tag_len
        o = _bytes_new(NULL, plen if plen > 0 else 0)
        if o == NULL:
            raise MemoryError()
        B.op[i] = <uint8_t *>_bytes_str(o)
        _list_set(outs, i, o)  # the list takes the new reference
    cdef const uint8_t **ap = NULL if B.no_aad else B.ap
    cdef size_t *alen = NULL if B.no_aad else B.alen
    if B.release_gil():
        with nogil:
            st = osgp_ccm_open_batch(B.kp, B.np, nl, ap, alen, B.ip, B.ilen, n, tag_len, B.op, ok)
    else:
        st = osgp_ccm_open_batch(B.kp, B.np, nl, ap, alen, B.ip, B.ilen, n, tag_len, B.op, ok)
    if st != OSGP_OK:
        _raise(st)
    for i in range(n):
        if not ok[i]:
            outs[i] = None
    return outs, okb


def cmac_many(keys, messages, Py_ssize_t tag_len=16):
    """AES-CMAC of many messages in one call (8 chains in lock step, without
    the GIL from 64 KiB).
    ``keys``: one key or one per message."""
    msgs = messages if type(messages) in (list, tuple) else as_items(messages, "messages")
    cdef Py_ssize_t n = len(msgs), i
    cdef _Batch B = _Batch(n)
    cdef uint8_t *op
    _check_cmac_tag(tag_len)
    B.subkeys = True
    keys, _, msgs, _ = B.prepare(keys, (), msgs, None)
    B.keys(keys)
    B.inputs(msgs)
    buf = PyBytes_FromStringAndSize(NULL, n * tag_len)
    op = <uint8_t *>PyBytes_AS_STRING(buf)
    if B.release_gil():
        with nogil:
            osgp_cmac_batch(B.kp, B.ip, B.ilen, n, tag_len, op)
    else:
        osgp_cmac_batch(B.kp, B.ip, B.ilen, n, tag_len, op)
    cdef list outs = PyList_New(n)
    for i in range(n):
        o = PyBytes_FromStringAndSize(<char *>op + i * tag_len, tag_len)
        Py_INCREF(o)
        PyList_SET_ITEM(outs, i, o)
    return outs


# ---- packed-buffer forms ---------------------------------------------------------

cdef class _Offsets:
    cdef Py_buffer view
    cdef bint held
    cdef const int64_t *off
    cdef Py_ssize_t n

    def __cinit__(self, offsets, Py_ssize_t data_len, str what):
        cdef Py_ssize_t i
        try:
            PyObject_GetBuffer(offsets, &self.view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        except (TypeError, BufferError):
            raise ArgumentTypeError(f"{what} must be a contiguous buffer of int64") from None
        self.held = True
        fmt = (self.view.format or b"B").decode()
        if self.view.itemsize != 8 or not fmt.endswith(("q", "l", "Q", "L")) or self.view.ndim != 1:
            raise ArgumentTypeError(f"{what} must be a 1-d buffer of int64, got format {fmt!r}")
        self.n = self.view.len // 8 - 1
        if self.n < 0:
            raise ConfigurationError(f"{what} needs at least one entry (n+1 for n messages)")
        self.off = <const int64_t *>self.view.buf
        for i in range(self.n):
            if self.off[i] < 0 or self.off[i + 1] < self.off[i] or self.off[i + 1] > data_len:
                raise ConfigurationError(
                    f"{what}[{i}:{i + 2}] = {self.off[i]}, {self.off[i + 1]} do not lie in the "
                    f"{data_len}-byte data buffer in order")

    def __dealloc__(self):
        if self.held:
            PyBuffer_Release(&self.view)


cdef int _packed_common(_Batch B, key, Py_ssize_t n, key_size, nonces, Py_ssize_t *nl,
                        aad, aad_offsets) except -1:
    cdef InBuf *kb
    cdef InBuf *nb
    cdef InBuf *ab
    cdef Py_ssize_t i
    cdef _Offsets ao
    cdef const osgp_aes128_key *one
    if key_size is None:
        one = B.key(key)
        for i in range(n):
            B.kp[i] = one
    else:
        if isinstance(key, AesKey):
            raise ConfigurationError("key_size needs the n keys packed in one buffer")
        kb = B.acquire(key, "key")
        if key_size != 16 or kb.len != 16 * n:
            raise ConfigurationError(
                f"packed keys: expected {n} x 16 = {16 * n} bytes, got {kb.len} "
                f"(key_size={key_size})")
        B.own_ready()
        for i in range(n):
            _raise(osgp_aes128_expand(&B.own[i], kb.ptr + 16 * i, 16), 16)
            B.nown += 1
            if B.subkeys:
                osgp_cmac_subkeys(&B.own[i])
            B.kp[i] = &B.own[i]
    nb = B.acquire(nonces, "nonces")
    if n == 0:
        nl[0] = 13
    elif nb.len % n:
        raise ConfigurationError(f"{nb.len} nonce bytes do not split into {n} nonces")
    else:
        nl[0] = nb.len // n
    for i in range(n):
        B.np[i] = nb.ptr + i * nl[0]
    if aad is None:
        for i in range(n):
            B.ap[i] = NULL
            B.alen[i] = 0
    else:
        ab = B.acquire(aad, "aad")
        if aad_offsets is None:
            for i in range(n):
                B.ap[i] = ab.ptr
                B.alen[i] = ab.len
        else:
            ao = _Offsets(aad_offsets, ab.len, "aad_offsets")
            if ao.n != n:
                raise ConfigurationError(f"aad_offsets describe {ao.n} AADs for {n} messages")
            for i in range(n):
                B.ap[i] = ab.ptr + ao.off[i]
                B.alen[i] = <size_t>(ao.off[i + 1] - ao.off[i])
    return 0


cdef inline int _check_no_overlap(const uint8_t *a, Py_ssize_t alen, const uint8_t *b,
                                  Py_ssize_t blen) except -1:
    """Packed outputs move messages by a tag a message: ``out`` must not share
    memory with ``data`` (the twin refuses the same underlying object)."""
    if alen and blen and a < b + blen and b < a + alen:
        raise ConfigurationError("out must not overlap data in the packed forms")
    return 0


def ccm_seal_packed(key, nonces, data, offsets, *, aad=None, aad_offsets=None,
                    Py_ssize_t tag_len=8, key_size=None, out=None):
    """Zero-copy batch seal: message i is ``data[offsets[i]:offsets[i+1]]``
    (offsets: n+1 int64), its nonce ``nonces[i*L:(i+1)*L]`` (L = len(nonces)/n).
    ``key``: one key, or with ``key_size=16`` n keys packed back to back.
    ``aad``: None, one AAD for all, or packed with ``aad_offsets``.  Sealed
    message i lands at ``offsets[i] + i*tag_len`` in ``out`` (len(data) +
    n*tag_len bytes; a new bytearray when None), which is returned."""
    cdef InBuf *db
    cdef _Offsets mo
    cdef Py_ssize_t n, i, nl
    cdef Py_buffer ov
    cdef _Batch B
    cdef osgp_status st
    cdef uint8_t *o
    # data first (its length bounds the offsets)
    tmp = _Batch(0)
    db = tmp.acquire(data, "data")
    mo = _Offsets(offsets, db.len, "offsets")
    n = mo.n
    B = _Batch(n)
    _packed_common(B, key, n, key_size, nonces, &nl, aad, aad_offsets)
    _check_ccm(nl, tag_len, -1)
    cdef unsigned long long maxlen = _ccm_max_len(nl)
    for i in range(n):
        if <unsigned long long>(mo.off[i + 1] - mo.off[i]) > maxlen:
            _check_ccm(nl, tag_len, mo.off[i + 1] - mo.off[i])
    if out is None:
        out = bytearray(db.len + n * tag_len)
    out_acquire(out, &ov, db.len + n * tag_len, "out")
    o = <uint8_t *>ov.buf
    try:
        _check_no_overlap(o, ov.len, db.ptr, db.len)
        for i in range(n):
            B.ip[i] = db.ptr + mo.off[i]
            B.ilen[i] = <size_t>(mo.off[i + 1] - mo.off[i])
            B.op[i] = o + mo.off[i] + i * tag_len
        with nogil:
            st = osgp_ccm_seal_batch(B.kp, B.np, nl, B.ap, B.alen, B.ip, B.ilen, n, tag_len,
                                     B.op)
    finally:
        PyBuffer_Release(&ov)
    if st != OSGP_OK:
        _raise(st)
    return out


def ccm_open_packed(key, nonces, data, offsets, *, aad=None, aad_offsets=None,
                    Py_ssize_t tag_len=8, key_size=None, out=None):
    """Zero-copy batch open of sealed messages ``data[offsets[i]:offsets[i+1]]``
    (each ciphertext || tag).  Plaintext i lands at ``offsets[i] - i*tag_len``
    in ``out`` (len(data) - n*tag_len bytes).  Returns ``(out, ok)``: ``ok`` is a
    bytes of n flags, ``ok[i]`` 1 when message i verified and 0 when it did not
    (its plaintext is zeroed; a message shorter than the tag just fails).  A
    message that does not verify never raises (``ccm_open`` does)."""
    cdef InBuf *db
    cdef _Offsets mo
    cdef Py_ssize_t n, i, nl, total, pos
    cdef Py_buffer ov
    cdef _Batch B
    cdef osgp_status st
    cdef uint8_t *o
    cdef uint8_t *okp
    tmp = _Batch(0)
    db = tmp.acquire(data, "data")
    mo = _Offsets(offsets, db.len, "offsets")
    n = mo.n
    B = _Batch(n)
    _packed_common(B, key, n, key_size, nonces, &nl, aad, aad_offsets)
    _check_ccm(nl, tag_len, -1)
    # Output: each message contributes max(0, len - tag_len) bytes, in order.
    total = 0
    for i in range(n):
        if mo.off[i + 1] - mo.off[i] > tag_len:
            total += mo.off[i + 1] - mo.off[i] - tag_len
    if out is None:
        out = bytearray(total)
    out_acquire(out, &ov, total, "out")
    o = <uint8_t *>ov.buf
    okb = PyBytes_FromStringAndSize(NULL, n)
    okp = <uint8_t *>PyBytes_AS_STRING(okb)
    try:
        _check_no_overlap(o, ov.len, db.ptr, db.len)
        pos = 0
        for i in range(n):
            B.ip[i] = db.ptr + mo.off[i]
            B.ilen[i] = <size_t>(mo.off[i + 1] - mo.off[i])
            B.op[i] = o + pos
            if <Py_ssize_t>B.ilen[i] > tag_len:
                pos += B.ilen[i] - tag_len
        with nogil:
            st = osgp_ccm_open_batch(B.kp, B.np, nl, B.ap, B.alen, B.ip, B.ilen, n, tag_len,
                                     B.op, okp)
    finally:
        PyBuffer_Release(&ov)
    if st != OSGP_OK:
        _raise(st)
    return out, okb


def cmac_packed(key, data, offsets, *, Py_ssize_t tag_len=16, key_size=None, out=None):
    """Zero-copy batch CMAC of ``data[offsets[i]:offsets[i+1]]``; tags packed
    in ``out`` (n*tag_len bytes; a new bytearray when None), which is returned."""
    cdef InBuf *db
    cdef _Offsets mo
    cdef Py_ssize_t n, i, nl
    cdef Py_buffer ov
    cdef _Batch B
    _check_cmac_tag(tag_len)
    tmp = _Batch(0)
    db = tmp.acquire(data, "data")
    mo = _Offsets(offsets, db.len, "offsets")
    n = mo.n
    B = _Batch(n)
    B.subkeys = True
    _packed_common(B, key, n, key_size, b"", &nl, None, None)
    if out is None:
        out = bytearray(n * tag_len)
    out_acquire(out, &ov, n * tag_len, "out")
    try:
        for i in range(n):
            B.ip[i] = db.ptr + mo.off[i]
            B.ilen[i] = <size_t>(mo.off[i + 1] - mo.off[i])
        with nogil:
            osgp_cmac_batch(B.kp, B.ip, B.ilen, n, tag_len, <uint8_t *>ov.buf)
    finally:
        PyBuffer_Release(&ov)
    return out


def aes_path():
    """Which AES path runs now: "aesni", "armce" or "portable"."""
    return osgp_aes_path().decode()


def cpu_features():
    """CPU features the kernels may use (after OSGP_CPU and set_cpu_features)."""
    return features_in_use()


def set_cpu_features(names=None):
    """Limit this module's kernels to ``names`` (None: everything detected;
    ``()``: the portable path).  For tests."""
    limit_features(names)
