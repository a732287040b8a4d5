"""Argument handling shared by the twins, mirroring osgp/_native/buffers.pxd."""

from __future__ import annotations

from typing import Any

from osgp.errors import ArgumentTypeError


def as_bytes(obj: Any, what: str) -> bytes:
    """Contiguous bytes-like -> bytes, or the ArgumentTypeError the native code raises."""
    if isinstance(obj, bytes):
        return obj
    try:
        mv = memoryview(obj)
    except TypeError:
        raise ArgumentTypeError(
            f"{what} must be a contiguous bytes-like object, not {type(obj).__name__}"
        ) from None
    if not mv.c_contiguous:
        raise ArgumentTypeError(
            f"{what} must be a contiguous bytes-like object, not {type(obj).__name__}"
        )
    return mv.tobytes()


def as_items(obj: Any, what: str) -> tuple:
    """The items of a batch argument, or the ArgumentTypeError the native code
    raises when it is not iterable."""
    if type(obj) is tuple:
        return obj
    try:
        it = iter(obj)
    except TypeError:
        raise ArgumentTypeError(
            f"{what} must be an iterable of bytes-like objects, not {type(obj).__name__}"
        ) from None
    return tuple(it)


def is_buffer(obj: Any) -> bool:
    try:
        memoryview(obj)
    except TypeError:
        return False
    return True


def writable_out(obj: Any, need: int, what: str) -> memoryview:
    from osgp.errors import ConfigurationError

    try:
        mv = memoryview(obj)
    except TypeError:
        raise ArgumentTypeError(f"{what} must be a writable contiguous buffer") from None
    if mv.readonly or not mv.c_contiguous:
        raise ArgumentTypeError(f"{what} must be a writable contiguous buffer")
    mv = mv.cast("B")
    if mv.nbytes != need:
        raise ConfigurationError(f"{what} must be exactly {need} bytes, got {mv.nbytes}")
    return mv
