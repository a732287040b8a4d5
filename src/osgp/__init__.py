"""osgp: the Open Smart Grid Protocol (ETSI TS 104 001 / CLC/TS 50586) for the host side.

Hot paths are C under Cython, one compiled module per kernel family, each
with a pure-Python twin (``OSGP_NO_EXTENSIONS=1`` forces the twins):

``osgp.backends``
    read-only mapping {family: ``"native"`` | ``"reference"``} for the families
    ``legacy`` (OMA digest, RC4, CRCs), ``aes`` (AES-128, CCM, CMAC),
    ``frames`` (MEP and LonTalk frame parsers) and ``tables`` (table programs,
    load profile); a family whose compiled module does not load uses its twin.
``osgp.native``
    True only when every family is native.

Both are computed on first access (loading all four kernel modules).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from osgp import _backend
from osgp.errors import (
    ArgumentTypeError,
    AuthenticationError,
    ChecksumError,
    ConfigurationError,
    DecodeError,
    DeviceError,
    MalformedError,
    OSGPError,
    ProtocolError,
    ResponseTimeout,
    SequenceError,
    StoreError,
    TransportError,
    TruncatedError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    #: {family: "native" | "reference"} for every kernel family.
    backends: Mapping[str, str]
    #: True when every kernel family uses its compiled module.
    native: bool


def __getattr__(name: str) -> Any:
    if name in ("backends", "native"):
        b = MappingProxyType(_backend.backends())
        globals().update(backends=b, native=all(v == "native" for v in b.values()))
        return globals()[name]
    raise AttributeError(f"module 'osgp' has no attribute {name!r}")


__all__ = [
    "__version__",
    "native",
    "backends",
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
]
