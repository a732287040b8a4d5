"""Procedures through BT07 (request) and BT08 (response) (docs/protocol.md §4.1; MEP
guide p.51-54; C12.19).

    BT07 = <proc:UINT16 LE> <PSN:UINT8> <parameters>
           proc b0..10 number, b11 manufacturer (EPnn = 2048 + nn), b12..15 response selector
    BT08 = <proc:UINT16 LE> <PSN:UINT8> <result:UINT8> <response data>

PSN: consecutive values must differ (a repeat is answered 0x04); MEP clients
use 5..9 and the first PSN after login is not 255 (MEP p.52).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from osgp.errors import ConfigurationError, ProtocolError
from osgp.link._cursor import Cursor, as_bytes

__all__ = [
    "BT07",
    "BT08",
    "SELECT_ON_COMPLETION",
    "SELECT_ON_EXCEPTION",
    "SELECT_NONE",
    "SELECT_IMMEDIATE_AND_COMPLETION",
    "RESULT_CODES",
    "RESULT_COMPLETED",
    "RESULT_ACCEPTED",
    "ProcedureCall",
    "ProcedureResult",
    "ProcedureError",
    "PsnAllocator",
]

BT07, BT08 = 7, 8
SELECT_ON_COMPLETION, SELECT_ON_EXCEPTION, SELECT_NONE, SELECT_IMMEDIATE_AND_COMPLETION = 0, 1, 2, 3
RESULT_COMPLETED, RESULT_ACCEPTED = 0, 1
RESULT_CODES = {
    0: "completed",
    1: "accepted, not fully completed",
    2: "invalid parameter",
    3: "conflicts with current setup",
    4: "timing constraint",
    5: "no authorisation",
    6: "unrecognised procedure",
}


class ProcedureError(ProtocolError):
    """A procedure ended with a result code other than 0 (or 1)."""

    def __init__(self, result: int, number: int) -> None:
        self.result = result
        self.number = number
        name = RESULT_CODES.get(result, f"procedure-specific code {result}")
        # bit 11 of the procedure number: manufacturer's (EPnn), else standard (BPnn)
        label = f"EP{number & 0x7FF:02d}" if number & 0x800 else f"BP{number:02d}"
        super().__init__(f"procedure {label} ({number}) ended with result {result} ({name})")


@dataclass(frozen=True)
class ProcedureCall:
    """``number`` 0..2047, ``mfg`` True for EPnn (so 2048 + nn on the wire)."""

    number: int
    psn: int
    params: bytes = b""
    mfg: bool = False
    selector: int = SELECT_ON_COMPLETION

    @property
    def proc_id(self) -> int:
        return self.number | (0x800 if self.mfg else 0)

    def encode(self) -> bytes:
        if not 0 <= self.number < 2048 or not 0 <= self.selector < 16 or not 0 <= self.psn < 256:
            raise ConfigurationError("procedure number 0..2047, selector 0..15, PSN 0..255")
        word = self.proc_id | (self.selector << 12)
        return word.to_bytes(2, "little") + bytes([self.psn]) + as_bytes(self.params)

    @classmethod
    def decode(cls, data: bytes) -> ProcedureCall:
        c = Cursor(data, "service.bt07")
        word, psn = c.le(2), c.u8()
        return cls(word & 0x7FF, psn, c.rest(), bool(word & 0x800), word >> 12)


@dataclass(frozen=True)
class ProcedureResult:
    proc_id: int  # b0..11 (bits 12..15 filler on read)
    psn: int
    result: int
    data: bytes = b""

    def encode(self) -> bytes:
        return self.proc_id.to_bytes(2, "little") + bytes([self.psn, self.result]) + self.data

    @classmethod
    def decode(cls, data: bytes) -> ProcedureResult:
        c = Cursor(data, "service.bt08")
        word, psn, res = c.le(2), c.u8(), c.u8()
        return cls(word & 0xFFF, psn, res, c.rest())

    def matches(self, call: ProcedureCall) -> bool:
        return self.proc_id == call.proc_id and self.psn == call.psn

    def check(self) -> bytes:
        if self.result not in (RESULT_COMPLETED,):
            raise ProcedureError(self.result, self.proc_id)
        return self.data


class PsnAllocator:
    """Procedure sequence numbers: each differs from the previous; the range
    is a setting (MEP clients: 5..9, p.52); 255 is never used first."""

    def __init__(self, low: int = 5, high: int = 9, last: Optional[int] = None) -> None:
        if not 0 <= low < high <= 255:
            raise ConfigurationError("PSN range needs two or more values in 0..255")
        self.low, self.high, self.last = low, high, last

    def next(self) -> int:
        if self.last is None or not self.low <= self.last < self.high:
            v = self.low
        else:
            v = self.last + 1
        if v == self.last:
            v = self.low + 1
        if self.last is None and v == 255:
            v = self.low
        self.last = v
        return v
