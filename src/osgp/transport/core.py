"""The sans-IO core shared by the sync and asyncio transports.

Nothing here touches a socket, a port or a clock.  :func:`parse_url` maps a
URL to an :class:`Endpoint`; :class:`TransportCore` holds one channel's state
(new / open / closed), frames what is sent and deframes what arrives through
its framing (:class:`StreamFraming` passes bytes through,
:class:`CnipFraming` adds and checks the CN/IP header), counts what it drops
and writes the hex SEND/RECV dumps at DEBUG on logger ``osgp.transport``.

Transports move bytes that the security suite has already sealed; they never
see a key, so no key can reach these dumps.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from typing import Any, Dict, Optional, Protocol, Tuple
from urllib.parse import parse_qs, urlsplit

from osgp.errors import ConfigurationError, DecodeError
from osgp.link import lon
from osgp.transport.errors import TransportClosed

__all__ = [
    "CNIP_PORT",
    "CNIP_PRIORITY_PORT",
    "DEFAULT_TIMEOUT",
    "Endpoint",
    "parse_url",
    "check_timeout",
    "Framing",
    "StreamFraming",
    "MessageFraming",
    "CnipFraming",
    "TransportCore",
    "Channel",
    "endpoint_for",
]

log = logging.getLogger("osgp.transport")

# ISO/IEC 14908-4 (EIA-852) CN/IP: UDP port 1628, 1629 for priority traffic
# (docs/protocol.md §6.2, Wireshark packet-cnip.c).
CNIP_PORT = 1628
CNIP_PRIORITY_PORT = 1629
DEFAULT_TIMEOUT = 5.0  # seconds: connect, write and (unless given) receive bound
MAX_DATAGRAM = 0xFFFF  # the CN/IP length field is 16 bits


def check_timeout(value: float, what: str = "timeout", *, positive: bool = False) -> float:
    """A bounded timeout: finite and not negative (0 polls), or above 0 when
    ``positive`` (a connect or write bound)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{what} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"{what} must be finite and {bound} seconds, not {value!r}")
    return v


# -- URLs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """What a URL names.  ``kind``: ``serial`` (a device path or any pyserial
    URL, passed to ``serial.serial_for_url`` unchanged), ``tcp``, ``udp``
    (CN/IP) or ``mem``."""

    url: str
    kind: str
    host: str = ""
    port: int = 0
    name: str = ""
    local: Optional[Tuple[str, int]] = None
    session: int = 0


def _host_port(url: str, text: str, default: Optional[int]) -> Tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    host = host.strip("[]")  # [v6]:port
    if not host:
        raise ConfigurationError(f"{url}: no host")
    if not port:
        if default is None:
            raise ConfigurationError(f"{url}: no port")
        return host, default
    if not port.isdigit() or not 0 <= int(port) <= 0xFFFF:
        raise ConfigurationError(f"{url}: port {port!r} is not 0..65535")
    return host, int(port)


def parse_url(url: str) -> Endpoint:
    """``tcp://host:port``, ``udp://host[:port][?local=host:port&session=N]``
    (CN/IP, port 1628 by default), ``mem://name``; anything else (``/dev/ttyUSB0``,
    ``COM3``, ``socket://``, ``rfc2217://``, ``loop://``, ``spy://``,
    ``osgpsim://`` ...) is a serial port for pyserial."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"a transport URL must be a non-empty string, not {url!r}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("tcp", "udp", "mem"):
        return Endpoint(url, "serial")
    parts = urlsplit(url)
    if scheme == "mem":
        name = parts.netloc + parts.path
        if not name:
            raise ConfigurationError(f"{url}: no channel name")
        return Endpoint(url, "mem", name=name)
    if parts.path not in ("", "/"):
        raise ConfigurationError(f"{url}: unexpected path {parts.path!r}")
    host, port = _host_port(url, parts.netloc, CNIP_PORT if scheme == "udp" else None)
    query = parse_qs(parts.query, keep_blank_values=True)
    if scheme == "tcp":
        if query:
            raise ConfigurationError(f"{url}: unknown option(s) {sorted(query)}")
        return Endpoint(url, "tcp", host, port)
    local = None
    session = 0
    for key, values in query.items():
        if key == "local":
            local = _host_port(url, values[-1], 0)
        elif key == "session" and values[-1].isdigit() and int(values[-1]) <= 0xFFFFFFFF:
            session = int(values[-1])
        else:
            raise ConfigurationError(f"{url}: bad option {key}={values[-1]!r}")
    return Endpoint(url, "udp", host, port, local=local, session=session)


# -- framings -------------------------------------------------------------------------
class Framing(Protocol):
    """How payloads map to wire bytes: ``datagram`` True when every receive
    yields exactly one sent payload."""

    datagram: bool
    dropped: int

    def wrap(self, payload: bytes) -> bytes: ...

    def unwrap(self, wire: bytes) -> Optional[bytes]: ...


class StreamFraming:
    """Bytes pass through; the session's carrier finds the frames (MEP length
    prefix, C12.18 packets)."""

    datagram = False
    dropped = 0

    def wrap(self, payload: bytes) -> bytes:
        return payload

    def unwrap(self, wire: bytes) -> Optional[bytes]:
        return wire


class MessageFraming(StreamFraming):
    """Bytes pass through and each send arrives as one receive (in memory)."""

    datagram = True


# CN/IP common header (ISO/IEC 14908-4; osgp.link.lon.decode_cnip): length,
# version, packet type, extension words, flags, vendor, session, sequence,
# timestamp; big-endian
_CNIP = struct.Struct(">HBBBBHIII")
_CNIP_FRONT = struct.Struct(">HBBBB")
_DATA_V1 = (1, lon.CNIP_DATA, 0, 0)


class CnipFraming:
    """One CN/IP data packet per datagram (ISO/IEC 14908-4; docs/protocol.md §6.2):
    the 20-byte common header (osgp.link.lon.encode_cnip) then the LonTalk
    LPDU.  Outgoing packets are numbered from 0 in this transport's session;
    incoming ones must be version 1, type data (0x01), protocol LonTalk
    (flags b4..0 = 0); anything else is dropped and counted."""

    datagram = True

    def __init__(self, session: int = 0, vendor: int = 0) -> None:
        self.session = session
        self.vendor = vendor
        self.sequence = 0
        self.dropped = 0
        self._last: Optional[bytes] = None  # the last packet taken

    @property
    def last_header(self) -> Optional[lon.CnipHeader]:
        """The common header of the last packet taken (None before one)."""
        return None if self._last is None else lon.decode_cnip(self._last)[0]

    def wrap(self, payload: bytes) -> bytes:
        seq = self.sequence
        self.sequence = (seq + 1) & 0xFFFFFFFF  # 32-bit sequence field
        total = lon.CNIP_HEADER + len(payload)
        if total > 0xFFFF:  # the encoder's error
            h = lon.CnipHeader(session=self.session, sequence=seq, vendor=self.vendor)
            return lon.encode_cnip(h, payload)
        # the header lon.encode_cnip builds for a data packet with no
        # extension, flags or timestamp, packed at once
        head = _CNIP.pack(total, 1, lon.CNIP_DATA, 0, 0, self.vendor, self.session, seq, 0)
        return head + payload

    def unwrap(self, wire: bytes) -> Optional[bytes]:
        if len(wire) >= lon.CNIP_HEADER:
            # the common case checked at once: whole packet, version 1, data,
            # no extension, LonTalk; anything else goes through the decoder
            total, version, ptype, ext, flags = _CNIP_FRONT.unpack_from(wire)
            if total == len(wire) and (version, ptype, ext, flags & 0x1F) == _DATA_V1:
                self._last = wire
                return wire[lon.CNIP_HEADER :]
        try:
            h, payload = lon.decode_cnip(wire)
        except DecodeError as exc:
            return self._drop(f"undecodable CN/IP packet: {exc}")
        if h.version != 1 or h.packet_type != lon.CNIP_DATA or h.flags & 0x1F:
            return self._drop(
                f"CN/IP packet version {h.version}, type 0x{h.packet_type:02X}, "
                f"protocol {h.flags & 0x1F} is not LonTalk data"
            )
        self._last = bytes(wire)
        return bytes(payload)

    def _drop(self, why: str) -> Optional[bytes]:
        self.dropped += 1
        log.debug("DROP %s", why)
        return None


# -- the channel state ------------------------------------------------------------------
class TransportCore:
    """State, framing and hex dumps of one channel (no I/O)."""

    def __init__(self, url: str, framing: Optional[Framing] = None) -> None:
        self.url = url
        self.framing: Framing = framing if framing is not None else StreamFraming()
        self.state = "new"
        self.bytes_sent = 0
        self.bytes_received = 0

    @property
    def datagram(self) -> bool:
        return self.framing.datagram

    def opened(self) -> None:
        if self.state == "closed":
            raise TransportClosed(self.url, "closed; open a new transport")
        if self.state == "new":
            self.state = "open"
            log.debug("OPEN %s", self.url)

    def closing(self) -> bool:
        """Mark closed; True only the first time (close is idempotent)."""
        if self.state == "closed":
            return False
        was_open = self.state == "open"
        self.state = "closed"
        if was_open:
            log.debug("CLOSE %s", self.url)
        return was_open

    def check_open(self) -> None:
        if self.state != "open":
            raise TransportClosed(self.url, "not open" if self.state == "new" else "closed")

    def outgoing(self, data: bytes) -> bytes:
        """The wire bytes for ``data`` (which is logged as SEND)."""
        if self.state != "open":
            self.check_open()
        data = bytes(data)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("SEND %s %d %s", self.url, len(data), data.hex())
        self.bytes_sent += len(data)
        return self.framing.wrap(data)

    def incoming(self, wire: bytes) -> Optional[bytes]:
        """The payload of received ``wire`` bytes (logged as RECV), or None
        when the framing drops them."""
        payload = self.framing.unwrap(bytes(wire))
        if payload is None:
            return None
        if log.isEnabledFor(logging.DEBUG):
            log.debug("RECV %s %d %s", self.url, len(payload), payload.hex())
        self.bytes_received += len(payload)
        return payload


class Channel:
    """What every transport, sync or asyncio, tells about itself."""

    core: TransportCore

    @property
    def url(self) -> str:
        return self.core.url

    @property
    def datagram(self) -> bool:
        """True when every receive returns exactly one sent payload."""
        return self.core.datagram

    @property
    def is_open(self) -> bool:
        return self.core.state == "open"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, {self.core.state})"


def endpoint_for(url: str, options: Dict[str, Any]) -> Endpoint:
    """:func:`parse_url`, refusing pyserial options on other kinds."""
    ep = parse_url(url)
    if options and ep.kind != "serial":
        raise ConfigurationError(f"{url}: options {sorted(options)} apply to serial ports only")
    return ep
