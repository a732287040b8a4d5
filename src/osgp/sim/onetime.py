"""One-time reads of the simulated meter: EP24 queues a request in ET19;
at its time the meter captures its registers into the ET31 log.

ET31 is the public layout ([MEP p.104-105]); ET19's entries and EP24's
parameters are not public and are **INFERRED** (osgp.tables.control,
docs/operations-more.md).  Integers LSB first.

==========  =====================================================  ================
procedure   parameters (after proc id and PSN)                     response data
==========  =====================================================  ================
EP24        REQUEST_ID:UINT16 (not 0), READ_TIME:UINT32 (meter UTC   STATE:UINT8
            epoch s; 0 or a time passed: now); a request id
            already in ET19 is not queued again (result 0)
==========  =====================================================  ================

Result 3 when every ET19 entry is still waiting.  ET19 STATE: 0 free,
1 waiting, 2 captured (LOG_SEQ_NBR then names the ET31 entry); a captured
entry is reused, oldest first, when a new request needs room.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Tuple

from osgp import tables
from osgp.sim import layouts as L
from osgp.sim import meter as M
from osgp.sim.model import civil
from osgp.tables import TimeDate

__all__ = ["OneTime", "FREE", "WAITING", "CAPTURED"]

ET = 2048
FREE, WAITING, CAPTURED = 0, 1, 2
_ZERO = TimeDate(2000, 0, 0, 0, 0, 0)

L.PARAMETER_SIZES[L.EP24] = (6,)


class OneTime:
    """ET19 queue and ET31 log of one meter."""

    def __init__(self, m: M.SimMeter) -> None:
        self.m = m
        # ET19: [request id, state, read time (meter epoch), ET31 sequence number, order]
        self.queue: List[List[Any]] = [[0, FREE, 0.0, 0, 0] for _ in range(L.ONE_TIME_QUEUE)]
        self.order = 0
        n = M._SELF_READS  # ET31 has BT21.NBR_SELF_READS entries ([MEP p.104])
        self.log: List[Optional[Tuple[int, float, bytes]]] = [None] * n
        self.last, self.valid, self.unread, self.seq = 0, 0, 0, -1

    def due(self) -> Optional[float]:
        m = self.m
        at = [m.clock.virtual(e[2]) for e in self.queue if e[1] == WAITING]
        return max(m.now, min(at)) if at else None

    def fire(self) -> None:
        mt = self.m.clock.meter(self.m.now)
        for e in sorted((e for e in self.queue if e[1] == WAITING), key=lambda e: e[2]):
            if e[2] <= mt + 1e-3:
                self._capture(e)

    def _capture(self, e: List[Any]) -> None:
        m = self.m
        if self.valid:
            self.last = (self.last + 1) % len(self.log)
        self.valid = min(self.valid + 1, len(self.log))
        self.unread = min(self.unread + 1, len(self.log))
        self.seq = (self.seq + 1) & 0xFFFF
        self.log[self.last] = (self.seq, m.clock.meter(m.now), m._bt23())
        e[1], e[3] = CAPTURED, self.seq
        m._log_event("one-time read", struct.pack("<HH", e[0], self.seq), mfg=True)
        m._changed()

    def written(self, table: int) -> None:
        pass

    def mfg_status(self) -> Dict[int, bool]:
        return {}

    def ep24(self, p: bytes) -> Tuple[int, bytes]:
        m = self.m
        rid, at = struct.unpack("<HI", p)
        if rid == 0 or at and not M._CLOCK_MIN <= at < M._CLOCK_MAX:
            return 2, b""
        for e in self.queue:
            if e[0] == rid and e[1] != FREE:
                return 0, bytes([e[1]])  # a retry: the request is there already
        room = [e for e in self.queue if e[1] != WAITING]
        if not room:
            return 3, b""
        e = min(room, key=lambda e: (e[1] != FREE, e[4]))  # a free entry, else the oldest
        now = m.clock.meter(m.now)
        self.order += 1
        e[:] = [rid, WAITING, max(float(at), now) if at else now, 0, self.order]
        if e[2] <= now:
            self._capture(e)
        m._changed()
        m._schedule()
        return 0, bytes([e[1]])

    def render_et19(self) -> bytes:
        ctx = {"ET11.METER_ONE_TIME_READ_QUEUE_SIZE": L.ONE_TIME_QUEUE}
        entries = [
            {
                "REQUEST_ID": e[0],
                "STATE": e[1],
                "READ_TIME": M.time_date(e[2]) if e[1] != FREE else _ZERO,
                "LOG_SEQ_NBR": e[3],
            }
            for e in self.queue
        ]
        return tables.encode(ET + 19, {"ENTRIES": entries}, ctx)

    def render_et31(self) -> bytes:
        m = self.m
        ctx23 = m._ctx(23)
        entries: List[Dict[str, Any]] = []
        for rec in self.log:
            if rec is None:
                entries.append({"END_DATE_TIME": _ZERO})
            else:
                _, at, regs = rec
                d = civil(at)
                entries.append(
                    {
                        "END_DATE_TIME": TimeDate(d.year, d.month, d.day, d.hour, d.minute, 0),
                        "REGISTER_DATA": tables.decode(23, regs, ctx23),
                    }
                )
        return tables.encode(
            ET + 31,
            {
                "LIST_STATUS": {"LIST_TYPE": True, "OVERFLOW_FLAG": self.valid == len(self.log)},
                "NBR_VALID_ENTRIES": self.valid,
                "LAST_ENTRY_ELEMENT": self.last,
                "LAST_ENTRY_SEQ_NUMBER": max(self.seq, 0),
                "NBR_UNREAD_ENTRIES": self.unread,
                "ONE_TIME_READS": entries,
            },
            m._ctx(ET + 31),
        )


def _ot(m: M.SimMeter) -> OneTime:
    return m.ext["onetime"]


M._EXTENSIONS["onetime"] = OneTime
M._HANDLERS[L.EP24] = lambda m, p: _ot(m).ep24(p)
M._RENDER.update(
    {
        ET + 19: (lambda m: _ot(m).render_et19(), M.SimMeter._key_state),
        ET + 31: (lambda m: _ot(m).render_et31(), M.SimMeter._key_state),
    }
)
