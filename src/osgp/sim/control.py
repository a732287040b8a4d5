"""Control outputs of the simulated meter: prepay credit, maximum power or
current levels, the scheduled disconnect lock and two control relays.

Table layouts are in :mod:`osgp.tables.control` (ET05 settings, ET30 level
and lock state, ET46 prepay state, ET61 relay calendar).  The procedures'
parameter bytes are not in the public OSGP guides; every layout below is
**INFERRED** (the reasoning is in docs/operations-more.md).  Integers LSB
first.

==========  =====================================================  ================
procedure   parameters (after proc id and PSN)                     response data
==========  =====================================================  ================
EP02        RELAY:UINT8 (1, 2), STATE:UINT8 (0 open, 1 close)        STATE:UINT8
EP21        TRANSACTION_ID:UINT32 (not 0), CREDIT:INT32 Wh (> 0);    BALANCE:INT32 Wh
            a transaction id among the meter's last 16 is not
            added again (result 0, the balance as it is)
EP22        LEVEL:UINT8 (0 primary, 1 secondary ET05 level)          THRESHOLD:UINT32
EP36        ACTION:UINT8 0 cancel; 1 schedule, then START:UINT32     LOCK_STATE:UINT8
            (meter UTC epoch s, 0 = now) and DURATION:UINT32 s
            (0 = until cancelled)
EP42        the ET05 image (28 bytes): every setting at once         --
==========  =====================================================  ================

Results (C12.19, MEP guide p.53): 2 for a bad value, 3 for EP21 with prepay
off, and for EP23 close while the disconnect is locked open.

What the meter does, on its virtual clock:

* prepay: credit falls by ``energy x ET05 tier rate / 1000`` (Wh of credit per
  kWh, [MEP p.154]); at zero the meter logs "credit exhausted" and, with
  DISCONNECT_ON_EXHAUSTED, opens the contactor once the overflow credit
  (ET46 PREPAY_NEGATIVE_CREDIT with NEGATIVE_CREDIT_ENABLED) is used up;
* levels: while ENABLE_MAX_LEVEL_THRESHOLDS is set, a 900 s load slot whose
  power (W; or current in mA at 230 V when ET46 DISCONNECT_CONTROL_TYPE is 1)
  is over the active level opens the contactor and logs "max level exceeded";
* lock: from START to START + DURATION the contactor is held open and EP23
  refuses to close it;
* relays: EP02 sets a relay; a relay in calendar mode (ET05 RELAY_MODES 1)
  also switches at every used ET61 record's hour and minute, every day (meter
  clock, UTC).  BT03 manufacturer status bit 3 is "control relay 1 open"
  ([OPT p.45-47] NES layout); bit 4 is relay 2 (INFERRED).
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

from osgp import tables
from osgp.errors import DecodeError
from osgp.sim import layouts as L
from osgp.sim import meter as M
from osgp.sim.model import SLOT
from osgp.tables import TimeDate

__all__ = ["Control", "RATED_VOLTAGE", "UNUSED_SWITCH"]

ET = 2048
RATED_VOLTAGE = 230  # V: current from power when the levels are currents (ET04 RATED_VOLTAGE)
UNUSED_SWITCH = 0xF800  # ET61 record with hour 31: unused (INFERRED)
_TX_MEMORY = 16  # EP21 transaction ids a meter remembers
_HORIZON = 192  # slots (two days) looked ahead for a crossing; past it the meter looks again
_TOL_WH = 0.01  # credit rounding allowed at a crossing (float integral of a step function)
_ZERO = TimeDate(2000, 0, 0, 0, 0, 0)
_BIT_RELAY = (3, 4)  # BT03 ED_MFG_STATUS bits of relays 1 and 2

L.PARAMETER_SIZES.update({L.EP02: (2,), L.EP21: (8,), L.EP22: (1,), L.EP36: (1, 9), L.EP42: (28,)})

_DEFAULTS = {
    "PRIMARY_MAX_LEVEL": 0,
    "SECONDARY_MAX_LEVEL": 0,
    "PREPAY_TIER_RATES": [1000, 1000, 1000, 1000],  # 1 Wh of credit per Wh
    "PREPAY_CONTROL": {},
    "LEVEL_CONTROL": {},
    "RELAY_MODES": [0, 0],
}


class Control:
    """One meter's control outputs (see the module docstring)."""

    def __init__(self, m: M.SimMeter) -> None:
        self.m = m
        self.et05 = bytearray(tables.encode(ET + 5, _DEFAULTS))
        self.cfg = tables.decode(ET + 5, self.et05)
        # prepay: the balance (Wh) at the energy mark (J per register, model.py order)
        self.credit = 0.0
        self.mark: Tuple[float, ...] = m._energy()
        self.exhausted = self.prepay_open = False
        self.negative_credit = 0  # ET46 PREPAY_NEGATIVE_CREDIT, Wh
        self.control_type = 0  # ET46 DISCONNECT_CONTROL_TYPE: 0 power, 1 current
        self.txs: Deque[int] = deque(maxlen=_TX_MEMORY)
        self.last_tx = 0
        # levels
        self.level = 0
        self.exceeded = 0
        self.level_open_at = 0.0
        # lock (meter epoch seconds; end 0 = until cancelled)
        self.lock: Optional[Tuple[float, float]] = None
        self.locked = False
        # relays (True = closed) and the meter time up to which the calendar is applied
        self.relays = [True, True]
        self.checked = m.clock.meter(m.now)
        self._cal: Tuple[bytes, List[List[Tuple[int, bool]]]] = (b"", [[], []])
        dict.__setitem__(m.tables, ET + 61, bytearray(self._blank_et61()))

    # -- settings ----------------------------------------------------------------------------
    def _blank_et61(self) -> bytes:
        return struct.pack(f"<{2 * L.RELAY_SWITCHES}H", *[UNUSED_SWITCH] * (2 * L.RELAY_SWITCHES))

    def calendar(self) -> List[List[Tuple[int, bool]]]:
        """Per relay: (minute of the day, closed) of each used ET61 record."""
        img = bytes(dict.__getitem__(self.m.tables, ET + 61))
        if img != self._cal[0]:
            out: List[List[Tuple[int, bool]]] = [[], []]
            n = L.RELAY_SWITCHES
            words = struct.unpack_from(f"<{2 * n}H", img.ljust(4 * n, b"\xff"))
            for i, w in enumerate(words):
                hour, minute = w >> 11, (w >> 5) & 0x3F
                if hour < 24 and minute < 60:
                    out[i // n].append((hour * 60 + minute, bool(w & 1)))
            self._cal = (img, [sorted(r) for r in out])
        return self._cal[1]

    def rates(self) -> List[int]:
        return list(self.cfg["PREPAY_TIER_RATES"])

    def threshold(self) -> int:
        return int(self.cfg["SECONDARY_MAX_LEVEL" if self.level else "PRIMARY_MAX_LEVEL"])

    # -- prepay ------------------------------------------------------------------------------
    def balance(self) -> float:
        """Wh of credit left now (it falls only while prepay is on)."""
        if not self.cfg["PREPAY_CONTROL"]["PREPAY_ENABLED"]:
            return self.credit
        e, r = self.m._energy(), self.rates()
        # model tiers 0 and 1 (registers 2 and 3) are tariff tiers 1 and 2
        used = sum((e[2 + i] - self.mark[2 + i]) / 3600 * r[i] / 1000 for i in (0, 1))
        return self.credit - used

    def _settle(self) -> None:
        self.credit, self.mark = self.balance(), self.m._energy()

    def _prepay_target(self) -> Optional[float]:
        pc = self.cfg["PREPAY_CONTROL"]
        if not pc["PREPAY_ENABLED"]:
            return None
        if not self.exhausted:
            return 0.0
        if pc["DISCONNECT_ON_EXHAUSTED"] and not self.prepay_open:
            return -float(self.negative_credit if pc["NEGATIVE_CREDIT_ENABLED"] else 0)
        return None

    def _crossing(self, target: float) -> Optional[float]:
        """Virtual time the balance reaches ``target`` at the model's load."""
        m = self.m
        left = self.balance() - target
        if left <= _TOL_WH:
            return m.now
        rates, t = self.rates(), m.now
        for _ in range(_HORIZON):
            k = int((m.start + t) // SLOT)
            end = (k + 1) * SLOT - m.start
            burn = m.model.slot_power(k)[0] / 3600 * rates[m.model.tier(k)] / 1000  # Wh/s
            if burn > 0 and burn * (end - t) >= left:
                return t + left / burn
            left -= burn * (end - t)
            t = end
        return t  # look again then

    # -- levels ------------------------------------------------------------------------------
    def measured(self, k: Optional[int] = None) -> int:
        """W (or mA) of the load in slot ``k`` (now by default), 0 when no current flows."""
        m = self.m
        if k is None:
            if not m._flowing:
                return 0
            k = int((m.start + m.now) // SLOT)
        p = m.model.slot_power(k)[0]
        return p if self.control_type == 0 else p * 1000 // RATED_VOLTAGE

    def _levels_on(self) -> bool:
        return bool(self.cfg["LEVEL_CONTROL"]["ENABLE_MAX_LEVEL_THRESHOLDS"])

    def _over(self) -> Optional[float]:
        """Virtual start of the next slot (this one included) over the level."""
        m, limit = self.m, self.threshold()
        k0 = int((m.start + m.now) // SLOT)
        for k in range(k0, k0 + _HORIZON):
            if self.measured(k) > limit:
                return max(m.now, k * SLOT - m.start)
        return (k0 + _HORIZON) * SLOT - m.start

    # -- the meter's own events ----------------------------------------------------------------
    def due(self) -> Optional[float]:
        m = self.m
        at: List[float] = []
        if m._flowing:
            target = self._prepay_target()
            if target is not None:
                c = self._crossing(target)
                if c is not None:
                    at.append(c)
            if self._levels_on():
                o = self._over()
                if o is not None:
                    at.append(o)
        if self.lock is not None:
            start, end = self.lock
            if not self.locked:
                at.append(max(m.now, m.clock.virtual(start)))
            elif end:
                at.append(max(m.now, m.clock.virtual(end)))
        cal = self.calendar()
        modes = self.cfg["RELAY_MODES"]
        for r in (0, 1):
            if modes[r] == 1 and cal[r]:
                at.append(max(m.now, m.clock.virtual(self._next_switch(cal[r]))))
        return min(at) if at else None

    def _next_switch(self, switches: List[Tuple[int, bool]]) -> float:
        """Meter time of the first switch after ``checked``."""
        day = self.checked // 86400 * 86400
        for d in (0, 86400):
            for minute, _ in switches:
                t = day + d + minute * 60
                if t > self.checked:
                    return t
        return day + 2 * 86400 + switches[0][0] * 60

    def fire(self) -> None:
        m = self.m
        mt = m.clock.meter(m.now)
        # prepay
        target = self._prepay_target()
        if target is not None and m._flowing and self.balance() <= target + _TOL_WH:
            if not self.exhausted:
                self.exhausted = True
                m._log_event("credit exhausted", mfg=True)
                m._changed()
            elif self._prepay_target() is not None:
                self.prepay_open = True
                self._open()
        # levels
        if self._levels_on() and m._flowing:
            v = self.measured()
            if v > self.threshold():
                self.exceeded = (self.exceeded + 1) & 0xFFFF
                self.level_open_at = mt
                m._log_event("max level exceeded", struct.pack("<I", v), mfg=True)
                self._open()
        self._apply_lock(mt)
        # relays
        cal, modes = self.calendar(), self.cfg["RELAY_MODES"]
        for r in (0, 1):
            if modes[r] != 1:
                continue
            for minute, closed in cal[r]:
                day = self.checked // 86400 * 86400
                for t in (day + minute * 60, day + 86400 + minute * 60):
                    if self.checked < t <= mt + 1e-3:
                        self._relay(r, closed)
        self.checked = max(self.checked, mt + 1e-3)

    def _apply_lock(self, mt: float) -> None:
        """Lock or unlock when meter time ``mt`` reached the lock's start or end."""
        m = self.m
        if self.lock is not None:
            start, end = self.lock
            if not self.locked and mt >= start - 1e-3:
                self.locked = True
                m._log_event("disconnect locked", struct.pack("<I", int(end)), mfg=True)
                self._open()
            elif self.locked and end and mt >= end - 1e-3:
                self.lock, self.locked = None, False
                m._log_event("disconnect unlocked", mfg=True)

    def _open(self) -> None:
        m = self.m
        m._contactor = None
        if m.closed:
            m._set_flow(closed=False)
            m._log_event("contactor opened", mfg=True)

    def _relay(self, r: int, closed: bool) -> None:
        if self.relays[r] != closed:
            self.relays[r] = closed
            name = "control relay closed" if closed else "control relay opened"
            self.m._log_event(name, bytes([r + 1]), mfg=True)
            self.m._changed()

    def written(self, table: int) -> None:
        if table == ET + 61:
            self.m._changed()
            self.m._schedule()

    def mfg_status(self) -> Dict[int, bool]:
        return {b: not c for b, c in zip(_BIT_RELAY, self.relays)}

    # -- procedures ----------------------------------------------------------------------------
    def ep02(self, p: bytes) -> Tuple[int, bytes]:
        relay, state = p[0], p[1]
        if relay not in (1, 2) or state > 1:
            return 2, b""
        self._relay(relay - 1, state == 1)
        self.m._schedule()
        return 0, bytes([state])

    def ep21(self, p: bytes) -> Tuple[int, bytes]:
        tx, credit = struct.unpack("<Ii", p)
        if tx == 0 or credit <= 0:
            return 2, b""
        if not self.cfg["PREPAY_CONTROL"]["PREPAY_ENABLED"]:
            return 3, b""
        if tx not in self.txs:
            self._settle()
            self.credit += credit
            self.txs.append(tx)
            self.last_tx = tx
            if self.balance() > _TOL_WH:
                self.exhausted = self.prepay_open = False
            self.m._log_event("credit added", struct.pack("<I", tx), mfg=True)
        self.m._changed()
        self.m._schedule()
        return 0, struct.pack("<i", int(self.balance() // 1))

    def ep22(self, p: bytes) -> Tuple[int, bytes]:
        if p[0] > 1:
            return 2, b""
        self.level = p[0]
        self.m._changed()
        self.m._schedule()
        return 0, struct.pack("<I", self.threshold())

    def ep36(self, p: bytes) -> Tuple[int, bytes]:
        m = self.m
        if p[0] == 0 and len(p) == 1:
            if self.locked:
                m._log_event("disconnect unlocked", mfg=True)
            self.lock, self.locked = None, False
        elif p[0] == 1 and len(p) == 9:
            start, duration = struct.unpack_from("<II", p, 1)
            now = m.clock.meter(m.now)
            start_at = float(start) if start else now
            if start and start_at < now - 86400 or not M._CLOCK_MIN <= start_at < M._CLOCK_MAX:
                return 2, b""
            lock = (start_at, start_at + duration if duration else 0.0)
            if lock != self.lock:  # the same schedule again (a retry) changes nothing
                self.lock, self.locked = lock, False
                self._apply_lock(now)  # a lock from now holds at once
        else:
            return 2, b""
        m._changed()
        m._schedule()
        return 0, bytes([self.lock_state()])

    def ep42(self, p: bytes) -> Tuple[int, bytes]:
        try:
            cfg = tables.decode(ET + 5, p)
        except DecodeError:
            return 2, b""
        if any(r > 1_000_000 for r in cfg["PREPAY_TIER_RATES"]):  # [MEP p.154] maximum
            return 2, b""
        if any(mode > 1 for mode in cfg["RELAY_MODES"]):
            return 2, b""
        self._settle()  # credit used so far at the old rates
        self.et05[:] = p
        self.cfg = cfg
        self.checked = max(self.checked, self.m.clock.meter(self.m.now))
        self.m._changed()
        self.m._schedule()
        return 0, b""

    def lock_state(self) -> int:
        return 0 if self.lock is None else 2 if self.locked else 1

    # -- tables --------------------------------------------------------------------------------
    def render_et05(self) -> bytes:
        return bytes(self.et05)

    def render_et30(self) -> bytes:
        start, end = self.lock if self.lock is not None else (0.0, 0.0)
        return tables.encode(
            ET + 30,
            {
                "ACTIVE_LEVEL": self.level,
                "ACTIVE_THRESHOLD": self.threshold(),
                "MEASURED": self.measured(),
                "EXCEEDED_COUNT": self.exceeded,
                "LOCK_STATE": self.lock_state(),
                "LOCK_START": M.time_date(start) if start else _ZERO,
                "LOCK_END": M.time_date(end) if end else _ZERO,
            },
        )

    def render_et46(self) -> bytes:
        b = self.balance()
        return tables.encode(
            ET + 46,
            {
                "PREPAY_BALANCE": max(-(2**31), min(2**31 - 1, int(b // 1))),
                "PREPAY_LAST_TRANSACTION": self.last_tx,
                "PREPAY_STATUS": {
                    "CREDIT_EXHAUSTED": self.exhausted,
                    "DISCONNECTED_BY_PREPAY": self.prepay_open,
                },
                "DISCONNECT_CONTROL_TYPE": self.control_type,
                "PREPAY_NEGATIVE_CREDIT": self.negative_credit,
                "MAX_LEVEL_DISCONNECT_OPEN_TIME": (
                    M.time_date(self.level_open_at) if self.level_open_at else _ZERO
                ),
            },
        )


def _ctl(m: M.SimMeter) -> Control:
    return m.ext["control"]


def _ep23_locked(m: M.SimMeter, p: bytes, _plain: Any = M._HANDLERS[L.EP23]) -> Any:
    """EP23 as before, but a close is refused while the disconnect is locked open."""
    if p and p[0] == 1 and _ctl(m).locked:
        return 3, b""
    return _plain(m, p)


M._EXTENSIONS["control"] = Control
M._STORED.append(ET + 61)
M._HANDLERS.update(
    {
        L.EP02: lambda m, p: _ctl(m).ep02(p),
        L.EP21: lambda m, p: _ctl(m).ep21(p),
        L.EP22: lambda m, p: _ctl(m).ep22(p),
        L.EP23: _ep23_locked,
        L.EP36: lambda m, p: _ctl(m).ep36(p),
        L.EP42: lambda m, p: _ctl(m).ep42(p),
    }
)
M._RENDER.update(
    {
        ET + 5: (lambda m: _ctl(m).render_et05(), M.SimMeter._key_state),
        ET + 30: (lambda m: _ctl(m).render_et30(), M.SimMeter._key_second),
        ET + 46: (lambda m: _ctl(m).render_et46(), M.SimMeter._key_second),
    }
)
