"""The simulated meter's code banks: EP08 erase, EP09 write packet, EP10
switch, ET17 code bank info (layouts in osgp.services.firmware, INFERRED).

The meter runs from its active bank; a download goes to the inactive one.
EP08 prepares it for an image (length, packet size, version, CRC-32 or
AES-CMAC check): the same image again keeps the packets already held, another
one erases the bank.  EP09 stores one packet.  EP10 schedules the switch for
a meter-clock moment, refused (result 3) unless every packet is held and the
image verifies; at that moment the image is checked again and the meter
switches banks, logs "code bank changed" (argument: old and new version
words) and shows the new version in BT01.  An image that does not verify is
never switched to ("firmware rejected" logged, ET17 STATE 4).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Optional, Tuple

from osgp.crypto import compare_digest
from osgp.errors import ConfigurationError, DecodeError
from osgp.services import firmware as F

if TYPE_CHECKING:  # pragma: no cover
    from osgp.sim.meter import SimMeter

__all__ = ["CodeBanks", "FACTORY_VERSION"]

FACTORY_VERSION = F.version_word(4, 60, 5)  # what a simulated meter ships with


class CodeBanks:
    """``version``: the running firmware word; ``key``: the image key for
    AES-CMAC checks (None: such images never verify)."""

    def __init__(
        self,
        meter: SimMeter,
        *,
        version: int = FACTORY_VERSION,
        key: Optional[bytes] = None,
        bitmap_size: int = F.BITMAP_SIZE,
    ) -> None:
        self.meter, self.version, self.key = meter, version, key
        self.bitmap_size = bitmap_size
        self.download: Optional[F.Download] = None
        self.data = bytearray()
        self.bitmap = bytearray()
        self.held = 0
        self.state = F.IDLE
        self.switch_at: Optional[float] = None  # meter clock

    # -- procedures
    def ep08(self, p: bytes) -> Tuple[int, bytes]:
        try:
            d = F.Download.decode(p)
        except DecodeError:
            return 2, b""
        if d.length == 0 or d.packet_size == 0 or d.packets > 8 * self.bitmap_size:
            return 2, b""
        if d.check_type not in (F.CHECK_CRC32, F.CHECK_CMAC):
            return 2, b""
        if d != self.download or self.state == F.REJECTED:  # erase the inactive bank
            self.download = d
            self.data = bytearray(d.length)
            self.bitmap = bytearray(self.bitmap_size)
            self.held = 0
            self.state = F.RECEIVING
            self.switch_at = None
        self.meter._changed()
        return 0, struct.pack("<H", self.held)

    def ep09(self, p: bytes) -> Tuple[int, bytes]:
        d = self.download
        if d is None or self.state not in (F.RECEIVING, F.COMPLETE):
            return 3, b""
        (i,) = struct.unpack_from("<H", p)
        s = d.packet_size
        want = min(s, d.length - i * s) if i < d.packets else -1
        if len(p) - 2 != want:
            return 2, b""
        self.data[i * s : i * s + want] = p[2:]
        bit = 1 << (i & 7)
        if not self.bitmap[i >> 3] & bit:
            self.bitmap[i >> 3] |= bit
            self.held += 1
            if self.held == d.packets:
                self.state = F.COMPLETE
        self.meter._changed()
        return 0, b""

    def ep10(self, p: bytes) -> Tuple[int, bytes]:
        (at,) = struct.unpack("<I", p)
        if self.state not in (F.COMPLETE, F.SCHEDULED) or not self.verifies():
            self._reject()
            return 3, b""
        m = self.meter
        self.state = F.SCHEDULED
        self.switch_at = float(at) if at else m.clock.meter(m.now)
        m._changed()
        m._schedule()
        return 0, b""

    # -- the switch
    def verifies(self) -> bool:
        d = self.download
        if d is None or self.held != d.packets:
            return False
        try:
            want = F.image_check(bytes(self.data), d.check_type, self.key)
        except ConfigurationError:
            return False
        return compare_digest(want, d.check)

    def due(self) -> Optional[float]:
        """Meter-clock time of the scheduled switch (the meter's event list)."""
        return self.switch_at if self.state == F.SCHEDULED else None

    def fire(self) -> None:
        """The switch moment: verify once more, then change banks."""
        m = self.meter
        self.switch_at = None
        d = self.download
        if d is None or not self.verifies():
            self._reject()
            return
        old, self.version = self.version, d.version
        self.download, self.data, self.bitmap, self.held = None, bytearray(), bytearray(), 0
        self.state = F.IDLE
        m._gen += 1  # BT01 shows the new version
        m._log_event("code bank changed", struct.pack("<HH", old, d.version), mfg=True)

    def _reject(self) -> None:
        d = self.download
        if self.state != F.REJECTED and d is not None:
            self.meter._log_event("firmware rejected", struct.pack("<H", d.version), mfg=True)
        self.state = F.REJECTED if self.download is not None else self.state
        self.switch_at = None
        self.meter._changed()

    # -- ET17
    def et17(self) -> bytes:
        d = self.download
        return F.CodeBank(
            self.state,
            self.version,
            d.version if d else 0,
            d.length if d else 0,
            d.packet_size if d else 0,
            d.packets if d else 0,
            self.held,
            int(self.switch_at or 0),
            bytes(self.bitmap),
        ).encode(self.bitmap_size)
