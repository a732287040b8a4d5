"""The one exception hierarchy of osgp (conventions 8).

Every error osgp raises is an :class:`OSGPError`.  Malformed bytes raise a
:class:`DecodeError` subclass naming the layer and the byte offset; a failed tag
or digest raises :class:`AuthenticationError` (never a plain ``ValueError``);
a device's negative response raises :class:`DeviceError` with its code.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "OSGPError",
    "ConfigurationError",
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
]


class OSGPError(Exception):
    """Root of every error raised by osgp."""


class ConfigurationError(OSGPError, ValueError):
    """A caller-supplied setting is unusable (wrong key size, bad nonce length, ...)."""


class DecodeError(OSGPError, ValueError):
    """Bytes that do not parse.

    ``layer`` names the codec (``"mep"``, ``"lon.npdu"``, ``"table BT61"`` ...),
    ``offset`` is the byte offset of the problem inside the buffer that layer
    was given.
    """

    def __init__(self, message: str, *, layer: str = "", offset: Optional[int] = None) -> None:
        self.layer = layer
        self.offset = offset
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

    def __init__(
        self,
        message: str = "",
        *,
        layer: str = "",
        offset: Optional[int] = None,
        needed: Optional[int] = None,
        remaining: Optional[int] = None,
    ) -> None:
        self.needed = needed
        self.remaining = remaining
        if not message:
            message = f"truncated: need {needed} byte(s), {remaining} left"
        super().__init__(message, layer=layer, offset=offset)


class ChecksumError(DecodeError):
    """A frame check sequence (CRC, data checksum) does not match."""


class MalformedError(DecodeError):
    """A field holds a value the format does not allow."""


class AuthenticationError(OSGPError):
    """A digest, MIC or AEAD tag did not verify.  Deliberately not a ValueError."""


class SequenceError(OSGPError):
    """A sequence number was reused or lies outside the accepted window.

    ``current`` is the receiver's sequence number, the value a MEP server
    returns after response code 0x0C (MEP guide p.11, p.15: "0C 77635B90",
    then the client succeeds with 77635B91); ``expected`` = current + 1 is
    the first value it will accept.
    """

    def __init__(
        self,
        message: str,
        *,
        received: int,
        current: Optional[int] = None,
        expected: Optional[int] = None,
    ) -> None:
        if (current is None) == (expected is None):
            raise TypeError("SequenceError needs exactly one of current= or expected=")
        super().__init__(message)
        self.received = received
        self.current = current if current is not None else ((expected or 0) - 1) & 0xFFFFFFFF

    @property
    def expected(self) -> int:
        return (self.current + 1) & 0xFFFFFFFF


class ProtocolError(OSGPError):
    """The peer did something the protocol state does not allow."""


class DeviceError(ProtocolError):
    """A device answered with a non-zero response code (C12.18 / OSGP clause 9)."""

    def __init__(self, code: int, name: str, message: str = "") -> None:
        self.code = code
        self.name = name
        super().__init__(message or f"device response 0x{code:02X} ({name})")


class TransportError(OSGPError):
    """The link below the protocol failed (port closed, socket error)."""


class ResponseTimeout(TransportError):
    """No (complete) response arrived in time."""
