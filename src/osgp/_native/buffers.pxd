# Fast read-only / writable access to any buffer (docs/conventions.md §5).  A bytes
# object is read in place (no buffer export); everything else goes through the
# buffer protocol directly: a typed memoryview costs ~150 ns a call, this a
# few ns.  Shared by every .pyx as inline functions.
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t


cdef struct InBuf:
    const uint8_t *ptr
    Py_ssize_t len
    bint held
    Py_buffer view


cdef inline int in_acquire(object obj, InBuf *b, str what) except -1:
    if PyBytes_CheckExact(obj):
        b.ptr = <const uint8_t *>PyBytes_AS_STRING(obj)
        b.len = PyBytes_GET_SIZE(obj)
        b.held = False
        return 0
    try:
        PyObject_GetBuffer(obj, &b.view, PyBUF_SIMPLE)
    except (TypeError, BufferError):
        from osgp.errors import ArgumentTypeError
        raise ArgumentTypeError(
            f"{what} must be a contiguous bytes-like object, not {type(obj).__name__}"
        ) from None
    b.ptr = <const uint8_t *>b.view.buf
    b.len = b.view.len
    b.held = True
    return 0


cdef inline void in_release(InBuf *b) noexcept:
    if b.held:
        PyBuffer_Release(&b.view)
        b.held = False


cdef inline int out_acquire(object obj, Py_buffer *view, Py_ssize_t need, str what) except -1:
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE | PyBUF_WRITABLE)
    except (TypeError, BufferError):
        from osgp.errors import ArgumentTypeError
        raise ArgumentTypeError(f"{what} must be a writable contiguous buffer") from None
    if view.len != need:
        PyBuffer_Release(view)
        from osgp.errors import ConfigurationError
        raise ConfigurationError(f"{what} must be exactly {need} bytes, got {view.len}")
    return 0


cdef inline tuple as_items(object obj, str what):
    """The items of a batch argument as a tuple (which keeps them alive), or
    ArgumentTypeError when it is not iterable."""
    if type(obj) is tuple:
        return <tuple>obj
    try:
        it = iter(obj)
    except TypeError:
        from osgp.errors import ArgumentTypeError
        raise ArgumentTypeError(
            f"{what} must be an iterable of bytes-like objects, not {type(obj).__name__}"
        ) from None
    return tuple(it)
