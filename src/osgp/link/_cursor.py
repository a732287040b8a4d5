"""Bounds-checked read cursor shared by the link and service codecs.

Every read checks the remaining length first and raises a
:class:`~osgp.errors.TruncatedError` naming the layer and the offset (with the
bytes needed and left), so malformed input never escapes as IndexError or
struct.error (docs/conventions.md §7).
"""

from __future__ import annotations

from typing import Any

from osgp.errors import ArgumentTypeError, MalformedError, TruncatedError


def as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        return bytes(memoryview(data))
    except TypeError:
        raise ArgumentTypeError(
            f"expected a bytes-like object, not {type(data).__name__}"
        ) from None


class Cursor:
    __slots__ = ("buf", "pos", "end", "layer", "base")

    def __init__(self, buf: Any, layer: str, pos: int = 0, end: int | None = None, base: int = 0):
        self.buf = as_bytes(buf)
        self.pos = pos
        self.end = len(self.buf) if end is None else end
        self.layer = layer
        self.base = base  # offset of buf[0] inside the outer frame, for error reports

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def need(self, n: int) -> None:
        if n > self.end - self.pos:
            raise TruncatedError(
                layer=self.layer, offset=self.offset, needed=n, remaining=self.end - self.pos
            )

    def u8(self) -> int:
        self.need(1)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def be(self, n: int) -> int:
        self.need(n)
        v = int.from_bytes(self.buf[self.pos : self.pos + n], "big")
        self.pos += n
        return v

    def le(self, n: int) -> int:
        self.need(n)
        v = int.from_bytes(self.buf[self.pos : self.pos + n], "little")
        self.pos += n
        return v

    def take(self, n: int) -> bytes:
        self.need(n)
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v

    def rest(self) -> bytes:
        v = self.buf[self.pos : self.end]
        self.pos = self.end
        return v

    def done(self) -> None:
        """The field list is complete: extra bytes are malformed."""
        if self.pos != self.end:
            raise MalformedError(
                f"{self.end - self.pos} unexpected trailing byte(s)",
                layer=self.layer,
                offset=self.offset,
            )

    def malformed(self, message: str, back: int = 0) -> MalformedError:
        return MalformedError(message, layer=self.layer, offset=self.offset - back)
