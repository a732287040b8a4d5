"""Optical port: ANSI C12.18 PSEM as used by OSGP meters (Optical Port
Programmer's Guide v1.1 p.8-14; docs/protocol.md §3.3).

Packet (C12.18 layer 2)::

    EE <identity:1 = 00> <ctrl:1> <seq-nbr:1> <length:2 BE> <data> <crc:2, LSB first>

ctrl bit 5 = toggle (alternates per new packet; a repeat carries the same
value and is acknowledged but dropped), bit 6 = first packet of a
multi-packet message, bit 7 = multi-packet; seq-nbr counts the packets still
to come (0 on the last).  CRC-16/X-25 over EE..data.  Every packet is answered
by ACK (06) or NAK (15); the sender retries on NAK or on the caller's timeout
event, up to ``PROFILE.retries`` times.

Services (application layer, data = APDU): identify 20, terminate 21,
negotiate 60-6B, logon 50, security 51, logoff 52, wait 70, read 30/3F, write
40/4F (reads and writes carry the C12.18 data checksum: osgp.services.messages
with OPTICAL_SERVICES).  :class:`PsemDeviceState` is the device side of the
C12.18 service sequence (base, ID and session states).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from typing import Any, Iterable, List, Optional, Tuple

from osgp import crypto
from osgp.codes import device_error
from osgp.errors import (
    ChecksumError,
    ConfigurationError,
    DecodeError,
    MalformedError,
    ResponseTimeout,
)
from osgp.link._cursor import Cursor, as_bytes

__all__ = [
    "OpticalProfile",
    "PROFILE",
    "STP",
    "ACK",
    "NAK",
    "Packet",
    "encode_packet",
    "decode_packet",
    "PacketLayer",
    "Identify",
    "Negotiate",
    "Logon",
    "Security",
    "Logoff",
    "Terminate",
    "Wait",
    "IdentifyResponse",
    "NegotiateResponse",
    "decode_session_request",
    "BAUD_CODES",
    "PsemDeviceState",
]

LAYER = "optical"
STP = 0xEE  # start of packet
ACK = 0x06
NAK = 0x15
CTRL_TOGGLE = 0x20
CTRL_FIRST = 0x40
CTRL_MULTI = 0x80
HEADER = 6  # EE ident ctrl seq len:2
IDENTIFY = b"\x20"  # identify service request APDU
BAUD_CODES = {
    0: None,
    1: 300,
    2: 600,
    3: 1200,
    4: 2400,
    5: 4800,
    6: 9600,
    7: 14400,
    8: 19200,
    9: 28800,
    10: 57600,
}


@dataclass(frozen=True)
class OpticalProfile:
    """C12.18 parameters (CONFIRMED: docs/protocol.md §3.3, Optical guide p.13-14).
    ``packet_size`` / ``max_packets``: defaults before negotiation are 64 bytes
    and 1 packet (C12.18); the NES negotiation asks for 64 x 2 at 9600 Bd.
    ``retries``: packet retries; timeouts are the caller's events."""

    name: str = "optical"
    status: str = "CONFIRMED (ANSI C12.18; OSGP Alliance Optical guide)"
    identity: int = 0x00
    packet_size: int = 64
    max_packets: int = 1
    retries: int = 3
    response_timeout_ms: int = 2000
    channel_traffic_timeout_ms: int = 6000
    inter_char_timeout_ms: int = 500

    @property
    def max_apdu(self) -> int:
        return (self.packet_size - HEADER - 2) * self.max_packets


PROFILE = OpticalProfile()
NEGOTIATED = replace(PROFILE, max_packets=2)


@dataclass(frozen=True)
class Packet:
    data: bytes
    ctrl: int = 0
    seq: int = 0
    identity: int = 0

    @property
    def toggle(self) -> bool:
        return bool(self.ctrl & CTRL_TOGGLE)


def encode_packet(p: Packet) -> bytes:
    if len(p.data) > 0xFFFF:
        raise ConfigurationError("packet data longer than 65535 bytes")
    body = bytes([STP, p.identity, p.ctrl, p.seq]) + len(p.data).to_bytes(2, "big") + p.data
    return body + crypto.crc16_x25(body).to_bytes(2, "little")  # CRC LSB first


def decode_packet(data: Any, *, base: int = 0) -> Packet:
    """One whole packet; raises MalformedError / TruncatedError / ChecksumError."""
    c = Cursor(data, LAYER, base=base)
    if c.u8() != STP:
        raise c.malformed("packet does not start with 0xEE", 1)
    ident, ctrl, seq, n = c.u8(), c.u8(), c.u8(), c.be(2)
    if ctrl & 0x1F:
        raise c.malformed(f"reserved ctrl bits set (0x{ctrl:02X})", 4)
    payload = c.take(n)
    crc = c.le(2)
    c.done()
    want = crypto.crc16_x25(c.buf[: HEADER + n])
    if crc != want:
        raise ChecksumError(
            f"CRC 0x{crc:04X} != 0x{want:04X}", layer=LAYER, offset=base + HEADER + n
        )
    return Packet(payload, ctrl, seq, ident)


class PacketLayer:
    """Sans-IO C12.18 layer 2 for one side of the link.

    ``send(apdu)`` returns the bytes to transmit (the first packet); then feed
    received bytes to ``receive`` and timer expiries to ``timeout``.  Both
    return ``(transmit, apdus)``: bytes to write to the port (ACK/NAK, next
    packet, retry) and complete incoming APDUs.  ``done`` is True when the
    last sent APDU was fully acknowledged.
    """

    def __init__(self, profile: OpticalProfile = PROFILE) -> None:
        self.profile = profile
        self._toggle = 0
        self._rx_toggle: Optional[int] = None
        self._out: List[bytes] = []
        self._tries = 0
        self._buf = bytearray()
        self._parts: List[bytes] = []
        self._last_identify = False
        self.done = True
        # longest packet accepted (a device: its receive buffer); a header that
        # declares more is line noise, so a bad length cannot stall the stream
        self.rx_limit = HEADER + 0xFFFF + 2
        self.duplicates = 0  # repeated packets: acknowledged and dropped
        self.rejected = 0  # packets NAKed (CRC or framing) or longer than rx_limit
        self.abandoned = 0  # outgoing APDUs given up after ``retries`` NAKs

    def apply(self, packet_size: int, max_packets: int) -> None:
        """Use a negotiated packet size and count from the next ``send`` on."""
        p = self.profile
        if (p.packet_size, p.max_packets) != (packet_size, max_packets):
            self.profile = replace(p, packet_size=packet_size, max_packets=max_packets)

    def reset_receiver(self) -> None:
        """A new session: forget the last toggle and any partial message."""
        self._rx_toggle = None
        self._parts = []
        self._last_identify = False

    def restart(self) -> None:
        """Channel traffic timeout: forget a partial packet, the last toggle,
        a partial message and a packet still waiting for its ACK."""
        self.reset_receiver()
        self._buf.clear()
        if not self.done:
            self._abandon()

    def drop_partial(self) -> bool:
        """Inter-character timeout: forget the bytes of a packet not yet
        complete (True when there were some)."""
        had = bool(self._buf)
        self._buf.clear()
        return had

    def send(self, apdu: bytes) -> bytes:
        room = self.profile.packet_size - HEADER - 2
        chunks = [apdu[i : i + room] for i in range(0, len(apdu), room)] or [b""]
        if len(chunks) > self.profile.max_packets:
            raise ConfigurationError(
                f"APDU of {len(apdu)} bytes needs {len(chunks)} packets, "
                f"{self.profile.max_packets} negotiated"
            )
        multi = len(chunks) > 1
        self._out = []
        for i, ch in enumerate(chunks):
            self._toggle ^= CTRL_TOGGLE
            ctrl = self._toggle
            if multi:
                ctrl |= CTRL_MULTI | (CTRL_FIRST if i == 0 else 0)
            self._out.append(
                encode_packet(Packet(ch, ctrl, len(chunks) - 1 - i, self.profile.identity))
            )
        self._tries = 0
        self.done = False
        return self._out[0]

    def timeout(self) -> bytes:
        """Response timeout: retransmit the current packet (or raise)."""
        if self.done:
            return b""
        if self._tries >= self.profile.retries:
            self._abandon()
            raise ResponseTimeout(
                f"C12.18 packet not acknowledged after {self.profile.retries} retries"
            )
        return self._retry()

    def _retry(self) -> bytes:
        self._tries += 1
        return self._out[0]

    def _abandon(self) -> None:
        self.done = True
        self._out = []
        self.abandoned += 1

    def receive(self, data: Any) -> Tuple[bytes, List[bytes]]:
        self._buf += as_bytes(data)
        tx = bytearray()
        apdus: List[bytes] = []
        buf = self._buf
        while buf:
            b0 = buf[0]
            if b0 in (ACK, NAK):
                del buf[:1]
                if self.done:
                    continue
                if b0 == NAK:
                    if self._tries < self.profile.retries:
                        tx += self._retry()
                    else:
                        self._abandon()  # counted; never raised at the peer's bytes
                else:
                    self._out.pop(0)
                    self._tries = 0
                    if self._out:
                        tx += self._out[0]
                    else:
                        self.done = True
                continue
            if b0 != STP:
                del buf[:1]  # line noise between packets
                continue
            if len(buf) < HEADER:
                break
            total = HEADER + ((buf[4] << 8) | buf[5]) + 2
            if total > self.rx_limit:
                del buf[:1]
                self.rejected += 1
                continue
            if len(buf) < total:
                break
            raw = bytes(buf[:total])
            del buf[:total]
            try:
                p = decode_packet(raw)
            except (ChecksumError, MalformedError):
                tx.append(NAK)
                self.rejected += 1
                continue
            tx.append(ACK)
            t = p.ctrl & CTRL_TOGGLE
            # An identify after any other request starts a new session (a client
            # that restarted without terminate); its toggle says nothing then.
            restart = p.data == IDENTIFY and not p.ctrl & CTRL_MULTI and not self._last_identify
            if t == self._rx_toggle and not restart:
                self.duplicates += 1
                continue  # duplicate of the previous packet: acknowledged, dropped
            self._rx_toggle = t
            if p.ctrl & CTRL_MULTI and p.ctrl & CTRL_FIRST:
                self._parts = []
            self._parts.append(p.data)
            if p.seq == 0:
                apdu = b"".join(self._parts)
                self._last_identify = apdu == IDENTIFY
                apdus.append(apdu)
                self._parts = []
        return bytes(tx), apdus


# -- session services (C12.18 clause 5.3; docs/protocol.md §3.3) -------------------


@dataclass(frozen=True)
class Identify:
    def encode(self, profile: Any = None) -> bytes:
        return b"\x20"


@dataclass(frozen=True)
class Terminate:
    def encode(self, profile: Any = None) -> bytes:
        return b"\x21"


@dataclass(frozen=True)
class Logoff:
    def encode(self, profile: Any = None) -> bytes:
        return b"\x52"


@dataclass(frozen=True)
class Negotiate:
    """0x61: packet size, number of packets, one baud-rate code (docs/protocol.md §3.3:
    NES uses ``61 00 40 02 06``, 64-byte packets, 2 packets, 9600 Bd)."""

    packet_size: int = 64
    max_packets: int = 2
    baud: int = 6
    alternatives: Tuple[int, ...] = ()  # further baud codes: 0x61 + n codes

    @property
    def bauds(self) -> Tuple[int, ...]:
        """The baud codes offered (none: request 0x60)."""
        return ((self.baud,) if self.baud else ()) + tuple(self.alternatives)

    def encode(self, profile: Any = None) -> bytes:
        b = self.bauds
        if len(b) > 11:
            raise ConfigurationError("a negotiate request offers at most 11 baud rates")
        size = self.packet_size.to_bytes(2, "big")
        return bytes([0x60 + len(b)]) + size + bytes([self.max_packets, *b])


@dataclass(frozen=True)
class Wait:
    """0x70: keep the session open ``seconds`` (1 byte) without traffic."""

    seconds: int = 1

    def encode(self, profile: Any = None) -> bytes:
        return bytes([0x70, self.seconds])


@dataclass(frozen=True)
class Logon:
    """0x50: user id (2 bytes BE) and user name (10 bytes, space padded)."""

    user_id: int = 0
    user: str = ""

    def encode(self, profile: Any = None) -> bytes:
        name = self.user.encode("latin-1")[:10].ljust(10, b" ")
        return b"\x50" + self.user_id.to_bytes(2, "big") + name


@dataclass(frozen=True)
class Security:
    """0x51: password (20 bytes, zero padded)."""

    password: bytes = b""

    def encode(self, profile: Any = None) -> bytes:
        pw = as_bytes(self.password)
        if len(pw) > 20:
            raise ConfigurationError("C12.18 password is at most 20 bytes")
        return b"\x51" + pw.ljust(20, b"\x00")


@dataclass(frozen=True)
class IdentifyResponse:
    std: int = 0
    version: int = 1
    revision: int = 0
    features: bytes = b""

    def encode(self) -> bytes:
        return bytes([0, self.std, self.version, self.revision]) + self.features + b"\x00"

    @classmethod
    def decode(cls, apdu: bytes) -> IdentifyResponse:
        c = Cursor(apdu, "optical.ident")
        code = c.u8()
        if code != 0:
            raise device_error(code)
        std, ver, rev = c.u8(), c.u8(), c.u8()
        feats = c.rest()
        if not feats or feats[-1] != 0:
            raise MalformedError(
                "feature list not terminated by 00", layer="optical.ident", offset=len(apdu)
            )
        return cls(std, ver, rev, feats[:-1])


@dataclass(frozen=True)
class NegotiateResponse:
    packet_size: int = 64
    max_packets: int = 2
    baud: int = 6

    def encode(self) -> bytes:
        return b"\x00" + self.packet_size.to_bytes(2, "big") + bytes([self.max_packets, self.baud])

    @classmethod
    def decode(cls, apdu: bytes) -> NegotiateResponse:
        c = Cursor(apdu, "optical.negotiate")
        code = c.u8()
        if code != 0:
            raise device_error(code)
        r = cls(c.be(2), c.u8(), c.u8())
        c.done()
        return r


def decode_session_request(apdu: bytes) -> Any:
    """Parse a session-service request (identify .. wait); None for any other code."""
    c = Cursor(apdu, "optical.service")
    code = c.u8()
    if code == 0x20:
        r: Any = Identify()
    elif code == 0x21:
        r = Terminate()
    elif code == 0x52:
        r = Logoff()
    elif 0x60 <= code <= 0x6B:
        size, n = c.be(2), c.u8()
        bauds = c.rest()
        if len(bauds) != code - 0x60:
            raise c.malformed(f"negotiate 0x{code:02X} needs {code - 0x60} baud code(s)")
        r = Negotiate(size, n, bauds[0] if bauds else 0, tuple(bauds[1:]))
    elif code == 0x50:
        uid = c.be(2)
        r = Logon(uid, c.take(10).decode("latin-1").rstrip(" "))
    elif code == 0x51:
        r = Security(c.take(20).rstrip(b"\x00"))
    elif code == 0x70:
        r = Wait(c.u8())
    else:
        return None
    c.done()
    return r


# -- device side of the C12.18 service sequence ---------------------------------------
# Response codes (ANSI C12.18-2006 PSEM response codes, the 0x00-0x0A set that
# C12.21 shares; osgp.codes names the same numbers for every link).
OK, ERR, SNS, ISC, ONP, ISSS = 0x00, 0x01, 0x02, 0x03, 0x04, 0x0A
BASE, ID_STATE, SESSION = "base", "id", "session"
NO_ACCESS, READ_ACCESS, FULL_ACCESS = 0, 1, 2
PASSWORD = 20  # security service password field, zero padded


def _pad(password: bytes) -> bytes:
    pw = as_bytes(password)
    if len(pw) > PASSWORD:
        raise ConfigurationError("C12.18 password is at most 20 bytes")
    return pw.ljust(PASSWORD, b"\x00")


class PsemDeviceState:
    """The C12.18 service sequence as a device runs it (ANSI C12.18-2006 PSEM
    service sequence states)::

        base --identify--> ID --logon--> session --logoff--> ID
        any state --terminate--> base      (identify restarts from any state)

    Negotiate is served in the ID state, security in the session state, wait
    in both; reads (0x30-0x3F) and writes (0x40-0x4F) only in the session state
    and only with the clearance a security request gave: ``passwords`` give
    full access, ``read_passwords`` reads only (the MK and RK keys of the
    Optical guide p.13-14).  Anything else out of sequence is answered isss
    (0x0A), a read or write without clearance isc (0x03), a wrong password err
    (0x01), an unknown service sns (0x02), a malformed one err.

    Negotiate grants the smaller of asked and supported (``max_packet_size``
    bytes per packet including the 6-byte header and 2-byte CRC,
    ``max_packets``) and the first offered baud code in ``bauds`` (else the
    current one).  Until then, and again after terminate, the C12.18 default
    ``default`` (64 bytes x 1 packet) applies.  ``send`` frames a response on
    the packet layer under the grant in force, then applies what the service
    changed; a response larger than the grant is replaced by onp (0x04, the
    C12.18 code for a valid request that cannot be carried out; C12.18 has
    no response-too-large code).  ``baud`` (a BAUD_CODES key) and
    ``wait_seconds`` are for the transport and the timers.
    """

    def __init__(
        self,
        *,
        max_packet_size: int = 64,
        max_packets: int = 2,
        passwords: Iterable[bytes] = (b"",),
        read_passwords: Iterable[bytes] = (),
        bauds: Iterable[int] = tuple(range(1, 11)),
        default: OpticalProfile = PROFILE,
    ) -> None:
        if not HEADER + 3 <= max_packet_size <= 0xFFFF or not 1 <= max_packets <= 0xFF:
            raise ConfigurationError("packet size must be 9..65535 and packet count 1..255")
        self.max_packet_size, self.max_packets = max_packet_size, max_packets
        self._keys = [(_pad(p), FULL_ACCESS) for p in passwords]
        self._keys += [(_pad(p), READ_ACCESS) for p in read_passwords]
        self.bauds = frozenset(bauds)
        self.default = (default.packet_size, default.max_packets)
        self.state = BASE
        self.access = NO_ACCESS
        self.grant = self.default
        self.baud = 6  # 9600 Bd until negotiated (C12.18 default)
        self.user: Optional[Tuple[int, str]] = None
        self.wait_seconds = 0
        self._next: Optional[Tuple[int, int]] = None  # grant to apply after the response
        self._fresh = False  # forget the receiver's toggle after the response

    @property
    def max_apdu(self) -> int:
        size, n = self.grant
        return (size - HEADER - 2) * n

    def serve(self, apdu: bytes, ident: IdentifyResponse) -> Optional[Tuple[Any, bytes]]:
        """(decoded request or None, response APDU) for a session service or a
        refused table service; None when a table service may run now."""
        if not apdu:
            return None, bytes([ERR])
        code = apdu[0]
        if 0x30 <= code <= 0x4F:
            need = FULL_ACCESS if code >= 0x40 else READ_ACCESS
            if self.state != SESSION:
                return None, bytes([ISSS])
            return None if self.access >= need else (None, bytes([ISC]))
        try:
            req = decode_session_request(apdu)
        except DecodeError:
            return None, bytes([ERR])
        if req is None:
            return None, bytes([SNS])
        return req, self._service(req, ident)

    def _service(self, req: Any, ident: IdentifyResponse) -> bytes:
        st = self.state
        if isinstance(req, Identify):
            if st != BASE:  # a restart: back to the defaults after this response
                self._next = self.default
            self.state, self.access = ID_STATE, NO_ACCESS
            return ident.encode()
        if isinstance(req, Terminate):
            self.state, self.access, self.user = BASE, NO_ACCESS, None
            self._next, self._fresh = self.default, True
            return bytes([OK])
        if isinstance(req, Wait) and st != BASE:
            self.wait_seconds = req.seconds
            return bytes([OK])
        if isinstance(req, Negotiate) and st == ID_STATE:
            return self._negotiate(req)
        if isinstance(req, Logon) and st == ID_STATE:
            self.state, self.user = SESSION, (req.user_id, req.user)
            return bytes([OK])
        if isinstance(req, Security) and st == SESSION:
            pw = _pad(req.password)
            self.access = NO_ACCESS
            for key, level in self._keys:
                if hmac.compare_digest(pw, key):
                    self.access = max(self.access, level)
            return bytes([OK if self.access else ERR])
        if isinstance(req, Logoff) and st == SESSION:
            self.state, self.access, self.user = ID_STATE, NO_ACCESS, None
            return bytes([OK])
        return bytes([ISSS])

    def _negotiate(self, req: Negotiate) -> bytes:
        if req.packet_size < HEADER + 3 or req.max_packets == 0:
            return bytes([ERR])  # no room for a single data byte
        grant = (min(req.packet_size, self.max_packet_size), min(req.max_packets, self.max_packets))
        self.baud = next((b for b in req.bauds if b in self.bauds), self.baud)
        self._next = grant
        return NegotiateResponse(grant[0], grant[1], self.baud).encode()

    def timeout(self) -> bool:
        """Channel traffic timeout: the session ends as after terminate, with
        no response (True when one was open)."""
        was_open = self.state != BASE
        self.state, self.access, self.user = BASE, NO_ACCESS, None
        self.grant, self._next, self._fresh = self.default, None, False
        return was_open

    def fit(self, apdu: bytes) -> bytes:
        """``apdu``, or onp when it needs more than the granted packets."""
        return apdu if len(apdu) <= self.max_apdu else bytes([ONP])

    def send(self, layer: PacketLayer, apdu: bytes) -> bytes:
        """First packet of ``apdu`` (refused with onp if it does not fit) under
        the grant in force; then the new grant, and after terminate a fresh
        receiver, take effect for what follows."""
        layer.apply(*self.grant)
        out = layer.send(self.fit(apdu))
        if self._next is not None:
            self.grant, self._next = self._next, None
            layer.apply(*self.grant)
        if self._fresh:
            layer.reset_receiver()
            self._fresh = False
        return out
