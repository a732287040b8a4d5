"""Firmware download: the EP08 / EP09 / EP10 parameters, the ET17 code bank
table and the image check, shared by the concentrator and the simulator.

The procedure names and numbers are CLC/TS 50586 Annex D (EP08 erase, EP09
write packet, EP10 switch code bank); ET17 is "Code Bank Info" (Annex B.17)
and its verification bitmap's size is ET11 offset 36 ([OPT p.41], default
1,250 bytes).  The MEP switchover request carries "Image Length" and "Image
MAC" [MEP p.246].  Every byte layout below is **INFERRED** (the public guides
do not give them); all integers LSB first like every OSGP table field
(docs/protocol.md §3.4)::

    EP08 params   IMAGE_LENGTH:UINT32  PACKET_SIZE:UINT8  VERSION:UINT16
                  CHECK_TYPE:UINT8 (0 CRC-32, 1 AES-CMAC)  CHECK:16 bytes
                  (CRC-32 in the first 4, LSB first, then zeros)
    EP08 answer   HELD:UINT16 packets already held of this same image
                  (0 after an erase; the same image again erases nothing)
    EP09 params   PACKET:UINT16  DATA (PACKET_SIZE bytes, the last packet
                  what is left of the image)
    EP10 params   AT:UINT32 meter-clock UTC epoch second of the switch
                  (0: at once)
    ET17          STATE:UINT8  ACTIVE_VERSION:UINT16  NEW_VERSION:UINT16
                  IMAGE_LENGTH:UINT32  PACKET_SIZE:UINT8  PACKETS:UINT16
                  HELD:UINT16  SWITCH_AT:UINT32  BITMAP[ET11.36 bytes]
                  (bit i % 8 of byte i // 8: packet i held)

VERSION is the NES firmware word x.yy.zz (4, 7 and 5 bits, [OPT p.19]).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import List, Optional

from osgp.errors import ConfigurationError, TruncatedError
from osgp.security.aes_psk import firmware_image_mac

__all__ = [
    "EP08",
    "EP09",
    "EP10",
    "ET17",
    "CHECK_CRC32",
    "CHECK_CMAC",
    "BITMAP_SIZE",
    "PACKET_SIZE",
    "ET17_HEADER",
    "IDLE",
    "RECEIVING",
    "COMPLETE",
    "SCHEDULED",
    "REJECTED",
    "Download",
    "CodeBank",
    "image_check",
    "version_word",
    "version_text",
    "missing",
]

EP08, EP09, EP10 = 8, 9, 10  # called with mfg=True (2048 + n on the wire)
ET17 = 2048 + 17
CHECK_CRC32, CHECK_CMAC = 0, 1
BITMAP_SIZE = 1250  # ET11 offset 36 default ([OPT p.41])
#: Data bytes per EP09 packet: a PLC write carries 75 data bytes (osgp.services.messages
#: PLC_SERVICES), of which BT07 takes 3 (proc id, PSN) and EP09 2 (packet number).
PACKET_SIZE = 64
IDLE, RECEIVING, COMPLETE, SCHEDULED, REJECTED = 0, 1, 2, 3, 4

_EP08 = struct.Struct("<IBHB16s")
_ET17 = struct.Struct("<BHHIBHHI")
ET17_HEADER = _ET17.size


def version_word(major: int, minor: int, patch: int) -> int:
    """The NES firmware word: major 4 bits, minor 7 bits, patch 5 bits ([OPT p.19])."""
    if not (0 <= major < 16 and 0 <= minor < 128 and 0 <= patch < 32):
        raise ConfigurationError(f"firmware version {major}.{minor}.{patch} out of range")
    return (major << 12) | (minor << 5) | patch


def version_text(word: int) -> str:
    return f"{word >> 12}.{(word >> 5) & 0x7F:02d}.{word & 0x1F:02d}"


def image_check(image: bytes, check_type: int, key: Optional[bytes] = None) -> bytes:
    """The 16-byte CHECK of an image: CRC-32 (ISO-HDLC, zlib's) LSB first
    then zeros, or the AES-CMAC image MAC of osgp.security.aes_psk."""
    if check_type == CHECK_CRC32:
        return struct.pack("<I", zlib.crc32(image)) + bytes(12)
    if check_type == CHECK_CMAC:
        if key is None:
            raise ConfigurationError("an AES-CMAC image check needs the image key")
        return firmware_image_mac(key, image)
    raise ConfigurationError(f"unknown image check type {check_type}")


@dataclass(frozen=True)
class Download:
    """What EP08 announces: one image, cut in ``packet_size`` packets."""

    length: int
    packet_size: int
    version: int
    check_type: int
    check: bytes

    @property
    def packets(self) -> int:
        return -(-self.length // self.packet_size)

    def encode(self) -> bytes:
        return _EP08.pack(self.length, self.packet_size, self.version, self.check_type, self.check)

    @classmethod
    def decode(cls, params: bytes) -> Download:
        if len(params) != _EP08.size:
            raise TruncatedError(
                layer="service.ep08", offset=0, needed=_EP08.size, remaining=len(params)
            )
        return cls(*_EP08.unpack(params))

    @classmethod
    def of(
        cls,
        image: bytes,
        version: int,
        *,
        packet_size: int = PACKET_SIZE,
        check_type: int = CHECK_CRC32,
        key: Optional[bytes] = None,
    ) -> Download:
        if not 0 < packet_size <= PACKET_SIZE + 6:
            raise ConfigurationError(f"packet size {packet_size}: 1..{PACKET_SIZE + 6}")
        if not image:
            raise ConfigurationError("an empty firmware image")
        check = image_check(image, check_type, key)
        return cls(len(image), packet_size, version, check_type, check)

    def packet(self, image: bytes, i: int) -> bytes:
        """EP09 parameters of packet ``i``."""
        s = self.packet_size
        return struct.pack("<H", i) + image[i * s : (i + 1) * s]


@dataclass(frozen=True)
class CodeBank:
    """ET17 decoded (header and bitmap)."""

    state: int
    active_version: int
    new_version: int
    length: int
    packet_size: int
    packets: int
    held: int
    switch_at: int
    bitmap: bytes

    def encode(self, bitmap_size: int = BITMAP_SIZE) -> bytes:
        head = _ET17.pack(
            self.state,
            self.active_version,
            self.new_version,
            self.length,
            self.packet_size,
            self.packets,
            self.held,
            self.switch_at,
        )
        return head + self.bitmap[:bitmap_size].ljust(bitmap_size, b"\0")

    @classmethod
    def decode(cls, data: bytes) -> CodeBank:
        if len(data) < ET17_HEADER:
            raise TruncatedError(
                layer="table.et17", offset=0, needed=ET17_HEADER, remaining=len(data)
            )
        state, active, new, length, size, packets, held, at = _ET17.unpack_from(data)
        bitmap = bytes(data[ET17_HEADER:])
        return cls(state, active, new, length, size, packets, held, at, bitmap)

    def missing(self) -> List[int]:
        return missing(self.bitmap, self.packets)


def missing(bitmap: bytes, packets: int) -> List[int]:
    """Packet numbers whose bit is clear (bits past the bitmap count as clear)."""
    out = []
    for i in range(packets):
        byte = i >> 3
        if byte >= len(bitmap) or not (bitmap[byte] >> (i & 7)) & 1:
            out.append(i)
    return out
