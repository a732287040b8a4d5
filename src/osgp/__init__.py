"""osgp: the Open Smart Grid Protocol (ETSI TS 104 001 / CLC/TS 50586) for the host side.

Hot paths are C under Cython (``osgp.native`` tells whether they are in use;
``OSGP_NO_EXTENSIONS=1`` forces the pure-Python twins).
"""

from __future__ import annotations

from osgp import _backend
from osgp.errors import (
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
    TransportError,
    TruncatedError,
)

__version__ = "0.1.0"

#: True when the compiled kernels are in use (False: pure-Python twins).
native: bool = _backend.load("legacy")[1]

__all__ = [
    "__version__",
    "native",
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
