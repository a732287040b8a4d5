"""Transactions: the request/response tables ET52/ET53 (MEP) and ET27/ET28
(power line; same layout, INFERRED from the OSGP training material and MEP
text, docs/protocol.md §4.2).

    0   size:UINT16 LE     total bytes incl. this field
    2   type:UINT8         0 requests, 1 responses, 2 partial responses,
                           3 group-broadcast request, 4 group-broadcast denied
    3   txn:UINT16 LE
    [type 3] groupCount:UINT8, groupIds:UINT16 LE [groupCount]
    records { len:UINT16 LE, message[len] } ...
    size-2  txn:UINT16 LE  (repeated; must equal the first)

Messages are bare requests/responses (no sequence number, no digest).
Duplicates (same txn and the same CRC over the data) are not re-executed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from osgp import crypto
from osgp.errors import ConfigurationError
from osgp.link._cursor import Cursor, as_bytes
from osgp.services.messages import ET

__all__ = [
    "REQUESTS",
    "RESPONSES",
    "PARTIAL_RESPONSES",
    "GROUP_REQUEST",
    "GROUP_DENIED",
    "ET27",
    "ET28",
    "ET52",
    "ET53",
    "TransactionTables",
    "PLC_TABLES",
    "MEP_TABLES",
    "Transaction",
    "group_matches",
    "DuplicateFilter",
]

REQUESTS, RESPONSES, PARTIAL_RESPONSES, GROUP_REQUEST, GROUP_DENIED = 0, 1, 2, 3, 4
ET27, ET28, ET52, ET53 = ET + 27, ET + 28, ET + 52, ET + 53


@dataclass(frozen=True)
class TransactionTables:
    request_table: int
    response_table: int
    request_size: int
    response_size: int
    status: str


MEP_TABLES = TransactionTables(ET52, ET53, 896, 1785, "CONFIRMED (MEP guide p.43-50)")
PLC_TABLES = TransactionTables(ET27, ET28, 769, 1785, "INFERRED (docs/protocol.md §4.2)")


@dataclass(frozen=True)
class Transaction:
    txn: int
    records: Tuple[bytes, ...]
    type: int = REQUESTS
    groups: Tuple[int, ...] = ()

    def encode(self) -> bytes:
        if not 0 <= self.txn <= 0xFFFF or not 0 <= self.type <= 4:
            raise ConfigurationError("transaction number is 16-bit, type 0..4")
        body = bytearray([self.type]) + self.txn.to_bytes(2, "little")
        if self.type == GROUP_REQUEST:
            if not 1 <= len(self.groups) <= 255 or any(g == 0 for g in self.groups):
                raise ConfigurationError("1..255 group ids, 0x0000 invalid")
            body.append(len(self.groups))
            for g in self.groups:
                body += g.to_bytes(2, "little")
        for r in self.records:
            r = as_bytes(r)
            body += len(r).to_bytes(2, "little") + r
        body += self.txn.to_bytes(2, "little")
        size = len(body) + 2
        if size > 0xFFFF:
            raise ConfigurationError("transaction larger than 65535 bytes")
        return size.to_bytes(2, "little") + bytes(body)

    @classmethod
    def decode(cls, data: bytes, *, layer: str = "service.transaction") -> Transaction:
        c = Cursor(data, layer)
        size = c.le(2)
        if size < 7:
            raise c.malformed(f"transaction size {size} below the 7-byte minimum", 2)
        c.need(size - 2)
        c.end = size
        typ, txn = c.u8(), c.le(2)
        if typ > 4:
            raise c.malformed(f"transaction type {typ} undefined", 3)
        groups: List[int] = []
        if typ == GROUP_REQUEST:
            groups = [c.le(2) for _ in range(c.u8())]
        c.end = size - 2
        recs = []
        while c.remaining:
            recs.append(c.take(c.le(2)))
        c.end = size
        tail = c.le(2)
        if tail != txn:
            raise c.malformed(f"trailing transaction number {tail} != {txn}", 2)
        return cls(txn, tuple(recs), typ, tuple(groups))

    @staticmethod
    def header_size() -> int:
        return 5  # size, type, txn: what a client reads first (MEP p.47)


def group_matches(group_ids: Sequence[int], device_groups: Sequence[int]) -> bool:
    """Group broadcast addressing (MEP p.130-132): 0xYYFF = every subgroup of
    YY; 0xFFYY and 0xFFFF = everyone."""
    for g in group_ids:
        if g >> 8 == 0xFF:
            return True
        for d in device_groups:
            if g == d or ((g & 0xFF) == 0xFF and g >> 8 == d >> 8):
                return True
    return False


class DuplicateFilter:
    """Device side: remembers (txn, CRC over the data) of the last executed
    transaction so a repeat is not executed again (MEP p.43-44)."""

    def __init__(self) -> None:
        self._last: Optional[Tuple[int, int]] = None

    def is_duplicate(self, image: bytes) -> bool:
        t = Transaction.decode(image)
        key = (t.txn, crypto.crc16_x25(image))
        if key == self._last:
            return True
        self._last = key
        return False
