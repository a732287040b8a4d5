"""OSGP application messages: full and partial table read and write.

Byte layouts (docs/protocol.md §3.1; MEP guide p.12, Table 2.6/2.7; C12.18):

    full read      30 <table:2 BE>
    partial read   3F <table:2 BE> <offset:3 BE> <count:2 BE>
    full write     40 <table:2 BE> <count:2 BE> <data> [<cksum>]
    partial write  4F <table:2 BE> <offset:3 BE> <count:2 BE> <data> [<cksum>]
    response       <code> [<count:2 BE> <data> [<cksum>]]   (data only for a successful read)

The C12.18 data checksum (one byte, two's complement of the byte sum of the
data) is present on the optical port and absent on MEP/OSGP (docs/protocol.md §3.1);
it is a :class:`ServiceProfile` setting, as are the per-link size limits.

Table ids: BTnn = nn, ETnn = 2048 + nn, pending image = + 4096 (docs/protocol.md §1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

from osgp.errors import ChecksumError, ConfigurationError, SequenceError
from osgp.link._cursor import Cursor, as_bytes
from osgp.link.lon import _record
from osgp.services.codes import OK, ResponseCode, code_name, device_error

__all__ = [
    "ServiceProfile",
    "MEP_SERVICES",
    "PLC_SERVICES",
    "OPTICAL_SERVICES",
    "FULL_READ",
    "PARTIAL_READ",
    "FULL_WRITE",
    "PARTIAL_WRITE",
    "FullRead",
    "PartialRead",
    "FullWrite",
    "PartialWrite",
    "Request",
    "Response",
    "PED",
    "ET",
    "PENDING",
    "pending_write",
    "data_checksum",
    "decode_request",
    "decode_response",
    "check_response",
    "response_data",
]

FULL_READ = 0x30
PARTIAL_READ = 0x3F
FULL_WRITE = 0x40
PARTIAL_WRITE = 0x4F
ET = 2048  # ETnn = 2048 + nn (Optical guide p.8)
PENDING = 4096  # pending image of a table (Optical guide p.8)
_LAYER = "service"
_PARTIAL_READ = struct.Struct(">BHBHH")


@dataclass(frozen=True)
class ServiceProfile:
    """Per-link service choices: ``max_read`` / ``max_write``: data bytes per
    partial read response / partial write request; ``checksum``: C12.18 data
    checksum present; ``status`` says where the numbers come from."""

    name: str
    max_read: int
    max_write: int
    checksum: bool
    status: str


#: MEP: 476-byte message cap excluding the length (p.8): a read response is
#: 1 + 2 + n + 8 bytes (n <= 465), a write request 1+2+3+2 + n + 4 + 8 (n <= 456,
#: the ET52 limit the guide states on p.43).
MEP_SERVICES = ServiceProfile("MEP", 465, 456, False, "CONFIRMED (MEP guide p.8, p.43)")
#: PLC: 84 / 75 data bytes (OSGP training material, docs/protocol.md §3.1).
PLC_SERVICES = ServiceProfile(
    "PLC", 84, 75, False, "INFERRED (training-material limits, docs/protocol.md §3.1)"
)
#: Optical: negotiated 64-byte packets x 2 (docs/protocol.md §3.3): 2 x (64 - 8) = 112
#: APDU bytes; a read response is 1 + 2 + n + 1, a write 1+2+3+2 + n + 1.
OPTICAL_SERVICES = ServiceProfile(
    "optical", 108, 103, True, "CONFIRMED layout (C12.18); limits from the negotiated packet size"
)


def data_checksum(data: bytes) -> int:
    """C12.18 data checksum: two's complement of the 8-bit sum of the data."""
    return (-sum(data)) & 0xFF


# Requests and responses are NamedTuples with a frozen dataclass's equality
# (the osgp.link.lon records): cheap to build, once per exchange.


def _check_table(table: int) -> None:
    if not 0 <= table <= 0xFFFF:
        raise ConfigurationError(f"table id must fit in 16 bits, got {table}")


@_record
class FullRead(NamedTuple):
    table: int

    @property
    def code(self) -> int:
        return FULL_READ

    def encode(self, profile: ServiceProfile = MEP_SERVICES) -> bytes:
        _check_table(self.table)
        return bytes([FULL_READ]) + self.table.to_bytes(2, "big")


@_record
class PartialRead(NamedTuple):
    table: int
    offset: int
    count: int  # type: ignore[assignment]  # the field hides tuple.count

    @property
    def code(self) -> int:
        return PARTIAL_READ

    def encode(self, profile: ServiceProfile = MEP_SERVICES) -> bytes:
        table, offset, count = self.table, self.offset, self.count
        if not (0 <= table <= 0xFFFF and 0 <= offset < 1 << 24 and 0 <= count <= 0xFFFF):
            _check_table(table)
            raise ConfigurationError("offset must fit in 24 bits and count in 16")
        # code | table:2 | offset:3 (as 1 + 2 bytes) | count:2, all big-endian
        return _PARTIAL_READ.pack(PARTIAL_READ, table, offset >> 16, offset & 0xFFFF, count)


@_record
class FullWrite(NamedTuple):
    table: int
    data: bytes

    @property
    def code(self) -> int:
        return FULL_WRITE

    def encode(self, profile: ServiceProfile = MEP_SERVICES) -> bytes:
        _check_table(self.table)
        d = as_bytes(self.data)
        if len(d) > 0xFFFF:
            raise ConfigurationError("write data longer than 65535 bytes")
        out = bytes([FULL_WRITE]) + self.table.to_bytes(2, "big") + len(d).to_bytes(2, "big") + d
        return out + bytes([data_checksum(d)]) if profile.checksum else out


@_record
class PartialWrite(NamedTuple):
    table: int
    offset: int
    data: bytes

    @property
    def code(self) -> int:
        return PARTIAL_WRITE

    def encode(self, profile: ServiceProfile = MEP_SERVICES) -> bytes:
        _check_table(self.table)
        d = as_bytes(self.data)
        if not 0 <= self.offset < 1 << 24 or len(d) > 0xFFFF:
            raise ConfigurationError("offset must fit in 24 bits and count in 16")
        out = (
            bytes([PARTIAL_WRITE])
            + self.table.to_bytes(2, "big")
            + self.offset.to_bytes(3, "big")
            + len(d).to_bytes(2, "big")
            + d
        )
        return out + bytes([data_checksum(d)]) if profile.checksum else out


Request = Union[FullRead, PartialRead, FullWrite, PartialWrite]


@_record
class Response(NamedTuple):
    """A response: ``code`` (0 = ok), ``data`` for a successful read, ``seq``
    for 0x0C (the device's current sequence number, MEP p.15)."""

    code: int = OK
    data: Optional[bytes] = None
    seq: Optional[int] = None

    def encode(self, profile: ServiceProfile = MEP_SERVICES) -> bytes:
        if not 0 <= self.code <= 0xFF:
            raise ConfigurationError("response code must fit in one byte")
        if self.code == ResponseCode.SEQ:
            return bytes([self.code]) + (self.seq or 0).to_bytes(4, "big")
        if self.data is None or self.code != OK:
            return bytes([self.code])
        d = as_bytes(self.data)
        out = bytes([OK]) + len(d).to_bytes(2, "big") + d
        return out + bytes([data_checksum(d)]) if profile.checksum else out

    @property
    def name(self) -> str:
        return code_name(self.code)


def _data(c: Cursor, count: int, profile: ServiceProfile) -> bytes:
    start = c.offset
    d = c.take(count)
    if profile.checksum:
        ck = c.u8()
        if ck != data_checksum(d):
            raise ChecksumError(
                f"data checksum 0x{ck:02X} != 0x{data_checksum(d):02X}",
                layer=c.layer,
                offset=start + count,
            )
    return d


def decode_request(
    apdu: bytes, profile: ServiceProfile = MEP_SERVICES, *, base: int = 0
) -> Request:
    """Parse a bare request (code + arguments, no sequence number or digest)."""
    c = Cursor(apdu, _LAYER, base=base)
    code = c.u8()
    table = c.be(2)
    if code == FULL_READ:
        req: Request = FullRead(table)
    elif code == PARTIAL_READ:
        req = PartialRead(table, c.be(3), c.be(2))
    elif code == FULL_WRITE:
        req = FullWrite(table, _data(c, c.be(2), profile))
    elif code == PARTIAL_WRITE:
        off = c.be(3)
        req = PartialWrite(table, off, _data(c, c.be(2), profile))
    else:
        raise c.malformed(f"unknown request code 0x{code:02X}", 3)
    c.done()
    return req


def _is_read(request: Optional[object]) -> bool:
    return isinstance(request, (FullRead, PartialRead))


def decode_response(
    apdu: bytes,
    request: Optional[object] = None,
    profile: ServiceProfile = MEP_SERVICES,
    *,
    base: int = 0,
) -> Response:
    """Parse a bare response.  ``request`` tells whether a successful response
    carries ``<count><data>`` (reads) or nothing (writes); without it the
    presence of bytes after the code decides."""
    if (
        type(apdu) is bytes
        and not profile.checksum
        and apdu[:1] == b"\x00"
        and (type(request) is PartialRead or type(request) is FullRead)
        and len(apdu) == 3 + int.from_bytes(apdu[1:3], "big")
    ):
        # fast path of the common case, a successful read without a checksum:
        # code 0 | count:2 BE | data, nothing after (the checks below, inlined)
        return Response(OK, apdu[3:])
    c = Cursor(apdu, _LAYER, base=base)
    code = c.u8()
    if code == ResponseCode.SEQ:
        r = Response(code, seq=c.be(4))
    elif code == OK and (_is_read(request) or (request is None and c.remaining)):
        r = Response(OK, _data(c, c.be(2), profile))
    else:
        r = Response(code)
    c.done()
    return r


def response_data(
    apdu: bytes, request: Optional[object] = None, profile: ServiceProfile = MEP_SERVICES
) -> Optional[bytes]:
    """``check_response(decode_response(apdu, request, profile))``: the data of
    a successful response (None for a write), DeviceError / SequenceError
    otherwise; a successful read without a checksum skips the Response object."""
    if (
        type(apdu) is bytes
        and not profile.checksum
        and apdu[:1] == b"\x00"
        and (type(request) is PartialRead or type(request) is FullRead)
        and len(apdu) == 3 + int.from_bytes(apdu[1:3], "big")
    ):
        return apdu[3:]
    return check_response(decode_response(apdu, request, profile))


def check_response(r: Response) -> Optional[bytes]:
    """Data of a successful response; raise DeviceError / SequenceError otherwise."""
    if r.code == OK:
        return r.data
    if r.code == ResponseCode.SEQ:
        seq = r.seq or 0
        raise SequenceError(
            f"device rejected the sequence number; its current value is 0x{seq:08X}",
            received=-1,
            current=seq,
        )
    raise device_error(r.code)


@dataclass(frozen=True)
class PED:
    """Pending Event Description (6 bytes; Optical guide p.9-10, docs/protocol.md §3.4):
    byte 0 b0..3 event code (0 absolute STIME_DATE UTC, 1 relative
    weeks/days/hours/minutes/seconds, 2 opaque), b4 self-read, b5 demand
    reset; bytes 1..5 event storage."""

    event_code: int
    storage: bytes = b"\x00" * 5
    self_read: bool = False
    demand_reset: bool = False

    def encode(self) -> bytes:
        if not 0 <= self.event_code <= 15 or len(self.storage) != 5:
            raise ConfigurationError("PED: event code 0..15 and 5 storage bytes")
        b0 = self.event_code | (0x10 if self.self_read else 0) | (0x20 if self.demand_reset else 0)
        return bytes([b0]) + bytes(self.storage)

    @classmethod
    def decode(cls, data: bytes, *, base: int = 0) -> PED:
        c = Cursor(data, "service.ped", base=base)
        b0 = c.u8()
        if b0 & 0xC0:
            raise c.malformed("PED byte 0 bits 6..7 must be zero", 1)
        return cls(b0 & 0x0F, c.take(5), bool(b0 & 0x10), bool(b0 & 0x20))

    def describe(self) -> str:
        kinds = {0: "absolute time", 1: "relative time", 2: "no automatic activation"}
        parts = [kinds.get(self.event_code, f"event code {self.event_code}")]
        if self.event_code == 0:
            y, mo, d, h, mi = self.storage
            parts.append(f"at 20{y:02d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d} UTC")
        elif self.event_code == 1:
            w, d, h, mi, s = self.storage
            parts.append(f"after {w}w {d}d {h}h {mi}m {s}s")
        if self.self_read:
            parts.append("self-read first")
        if self.demand_reset:
            parts.append("demand reset first")
        return ", ".join(parts)


def pending_write(table: int, offset: int, data: bytes, ped: PED) -> PartialWrite:
    """A pending-table write: id + 4096, the PED precedes the data and counts in
    <count>, the offset is not shifted by the PED (Optical guide p.9-10)."""
    if table >= PENDING:
        raise ConfigurationError("give the table id without the pending offset")
    return PartialWrite(table + PENDING, offset, ped.encode() + as_bytes(data))
