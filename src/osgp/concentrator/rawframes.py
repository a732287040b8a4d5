"""Raw-frame keeping for batch decoding (``osgp decode store:URL``).

The store has a ``frames`` table (segment, ts_ns, direction, frame) that
nothing filled: collection kept no raw frames.  :class:`FrameKeeper` is the
minimal tap that does, without slowing collection: a channel calls it for
every frame it sends (``tx``) and receives (``rx``); it appends to a list
(no I/O per frame) and writes the rows in one ``store_frames`` batch every
``batch`` frames and on :meth:`flush`.  Frames are kept as the LonTalk LPDU
without CRC (what CN/IP carries, ISO/IEC 14908-4; a channel that carries the
CRC passes ``crc=True`` and the two CRC bytes are dropped), stamped with the
wall clock in UTC nanoseconds.
"""

from __future__ import annotations

import time
from typing import Any, List, Tuple

__all__ = ["FrameKeeper"]


class FrameKeeper:
    def __init__(self, store: Any, segment: str, *, batch: int = 4096, crc: bool = False) -> None:
        self.store, self.segment, self.batch, self.crc = store, segment, batch, crc
        self.rows: List[Tuple[int, str, bytes]] = []
        self.kept = 0

    def __call__(self, direction: str, frame: bytes) -> None:
        self.rows.append((time.time_ns(), direction, frame[:-2] if self.crc else frame))
        if len(self.rows) >= self.batch:
            self.flush()

    def flush(self) -> int:
        rows, self.rows = self.rows, []
        n = self.store.store_frames(self.segment, rows) if rows else 0
        self.kept += n
        return n
