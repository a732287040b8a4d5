"""The one exception hierarchy of osgp (docs/conventions.md §8).

Every error osgp raises is an :class:`OSGPError`.  Malformed bytes raise a
:class:`DecodeError` subclass naming the layer and the byte offset; a failed tag
or digest raises :class:`AuthenticationError` (never a plain ``ValueError``);
a device's negative response raises :class:`DeviceError` with its code; a
non-buffer where a kernel wants bytes raises :class:`ArgumentTypeError` (also a
``TypeError``).

Every field an error carries is a keyword argument of its constructor and a
typed attribute (None when it does not apply); nothing is set on an error after
it is created.
"""

from __future__ import annotations

import struct
from typing import Optional, Tuple, Type

__all__ = [
    "OSGPError",
    "ConfigurationError",
    "ArgumentTypeError",
    "DecodeError",
    "TruncatedError",
    "ChecksumError",
    "MalformedError",
    "AuthenticationError",
    "SequenceError",
    "ProtocolError",
    "DeviceError",
    "TransportError",
    "ResponseTimeout",
    "StoreError",
    "DATA_DEFECTS",
    "data_defect",
]

# What code computing on a peer's odd values raises where a check is missing
# (a count of 0 as a divisor, a field the layout left out, an index past a
# list): the concentrator's engines fail the one task or procedure that met
# it with a ProtocolError instead of stopping (docs/concentrator.md).  Other
# exceptions (a store outage, a kill) still propagate.
DATA_DEFECTS: Tuple[Type[Exception], ...] = (
    ArithmeticError,
    LookupError,
    ValueError,
    TypeError,
    struct.error,
)


class OSGPError(Exception):
    """Root of every error raised by osgp."""


class ConfigurationError(OSGPError, ValueError):
    """A caller-supplied setting is unusable (wrong key size, bad nonce length, ...).

    From the table kernels: ``pc``, the word of the table program found corrupt
    (or the block ordinal of a load-profile decode), and ``meter``, the index of
    the meter in a batch decode, and ``image``, the index of the image in a
    columnar decode; None elsewhere.
    """

    pc: Optional[int]
    meter: Optional[int]
    image: Optional[int]

    def __init__(
        self,
        message: str = "",
        *,
        pc: Optional[int] = None,
        meter: Optional[int] = None,
        image: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.pc = pc
        self.meter = meter
        self.image = image


class ArgumentTypeError(OSGPError, TypeError):
    """An argument has the wrong type: a kernel wanted a contiguous bytes-like
    object (or a writable one, or an int64 offsets buffer) and got something else."""


class DecodeError(OSGPError, ValueError):
    """Bytes that do not parse.

    ``layer`` names the codec (``"mep"``, ``"lon.npdu"``, ``"table BT61"`` ...),
    ``offset`` is the byte offset of the problem inside the buffer that layer
    was given.  Table and load-profile decodes also give ``table`` (``"BT61"``)
    and ``field`` (the field's path, ``"LP_FLAGS"``, ``"DIVISOR_SET1[2]"``);
    the table kernels give ``pc`` (the program word, or the load-profile block
    ordinal, at which they stopped) and, in a batch decode, ``meter`` (the
    index of the failing meter) or, in a columnar decode, ``image`` (the index
    of the failing image).
    """

    layer: str
    offset: Optional[int]
    table: Optional[str]
    field: Optional[str]
    pc: Optional[int]
    meter: Optional[int]
    image: Optional[int]

    def __init__(
        self,
        message: str,
        *,
        layer: str = "",
        offset: Optional[int] = None,
        table: Optional[str] = None,
        field: Optional[str] = None,
        pc: Optional[int] = None,
        meter: Optional[int] = None,
        image: Optional[int] = None,
    ) -> None:
        self.image = image
        self.layer = layer
        self.offset = offset
        self.table = table
        self.field = field
        self.pc = pc
        self.meter = meter
        where = ""
        if layer:
            where = f"[{layer}"
            where += f" @ offset {offset}] " if offset is not None else "] "
        elif offset is not None:
            where = f"[offset {offset}] "
        super().__init__(where + message)
        self.reason = message


class TruncatedError(DecodeError):
    """The buffer ended before a field did: ``needed`` bytes at ``offset``, ``remaining`` left."""

    needed: Optional[int]
    remaining: Optional[int]

    def __init__(
        self,
        message: str = "",
        *,
        layer: str = "",
        offset: Optional[int] = None,
        needed: Optional[int] = None,
        remaining: Optional[int] = None,
        table: Optional[str] = None,
        field: Optional[str] = None,
        pc: Optional[int] = None,
        meter: Optional[int] = None,
        image: Optional[int] = None,
    ) -> None:
        self.needed = needed
        self.remaining = remaining
        if not message:
            message = f"truncated: need {needed} byte(s), {remaining} left"
        super().__init__(
            message,
            layer=layer,
            offset=offset,
            table=table,
            field=field,
            pc=pc,
            meter=meter,
            image=image,
        )


class ChecksumError(DecodeError):
    """A frame check sequence (CRC, data checksum) does not match."""


class MalformedError(DecodeError):
    """A field holds a value the format does not allow."""

    @classmethod
    def in_table(cls, table: str, field: str, offset: int, message: str) -> MalformedError:
        """The error of field ``field`` of ``table`` (``"BT74"``) at byte ``offset``."""
        return cls(
            f"field {field}: {message}",
            layer=f"table {table}",
            offset=offset,
            table=table,
            field=field,
        )


class AuthenticationError(OSGPError):
    """A digest, MIC or AEAD tag did not verify.  Deliberately not a ValueError."""


class SequenceError(OSGPError):
    """A sequence number was reused or lies outside the accepted window.

    ``current`` is the receiver's sequence number, the value a MEP server
    returns after response code 0x0C (MEP guide p.11, p.15: "0C 77635B90",
    then the client succeeds with 77635B91); ``expected`` = current + 1 is
    the first value it will accept.  ``context`` is the exchange context a
    device needs to seal its 0x0C answer (the request's sequence-number bytes
    on an OSGP-AES-128-PSK link), None where the link needs none.
    """

    received: int
    current: int
    context: Optional[bytes]

    def __init__(
        self,
        message: str,
        *,
        received: int,
        current: Optional[int] = None,
        expected: Optional[int] = None,
        context: Optional[bytes] = None,
    ) -> None:
        if (current is None) == (expected is None):
            raise TypeError("SequenceError needs exactly one of current= or expected=")
        super().__init__(message)
        self.received = received
        self.current = current if current is not None else ((expected or 0) - 1) & 0xFFFFFFFF
        self.context = context

    @property
    def expected(self) -> int:
        return (self.current + 1) & 0xFFFFFFFF


class ProtocolError(OSGPError):
    """The peer did something the protocol state does not allow."""


class DeviceError(ProtocolError):
    """A device answered with a non-zero response code (C12.18 / OSGP clause 9)."""

    code: int
    name: str

    def __init__(self, code: int, name: str, message: str = "") -> None:
        self.code = code
        self.name = name
        super().__init__(message or f"device response 0x{code:02X} ({name})")


class TransportError(OSGPError):
    """The link below the protocol failed (port closed, socket error)."""


class ResponseTimeout(TransportError):
    """No (complete) response arrived in time."""


class StoreError(OSGPError):
    """The concentrator's store failed (layer ``store``): ``url`` is the
    database URL with its password masked, ``operation`` the store call."""

    layer = "store"
    url: str
    operation: str

    def __init__(self, message: str, *, url: str = "", operation: str = "") -> None:
        self.url = url
        self.operation = operation
        super().__init__(f"[store {url}] {operation}: {message}" if operation else message)


def data_defect(what: str, exc: BaseException) -> ProtocolError:
    """The ProtocolError that stands for one of :data:`DATA_DEFECTS` raised
    by ``what`` (a task, a procedure), with the original as its cause."""
    err = ProtocolError(f"{what}: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err
