"""The simulated meter's time-of-use side: BT50 dimensions, the BT54
calendar, the BT55 local clock (BT53 time zone and daylight saving) and
pending-table images built from several partial writes.

Layouts are ANSI C12.19's as the OSGP guides give them: BT50 [MEP p.221-223],
BT53 [MEP p.225], BT54 [MEP p.225-229], BT55 [MEP p.229-231], pending tables
and the PED [OPT p.8-11].  Where the guides are silent the choice is the
simulator's and marked INFERRED:

* dimensions (BT50): the "earlier firmware" format [MEP p.223, p.228]: 4
  seasons, 2 special schedules per season, no non-recurring dates, the 23
  recurring dates the guide lists; 40 tier switches (4 day schedules of 10)
  where the guide's meter has 200 (20 of 10), to keep PLC writes short
  (INFERRED: the count is the meter's own choice);
* day schedule ``k`` is tier switches ``10 k .. 10 k + 9`` (the guide's note on
  the Schedule field, [MEP p.228]); within it slot 0 starts at midnight and a
  later slot counts only while its time is after the previous one's, so
  unused slots may stay zero (INFERRED);
* RDATE ([docs/protocol.md §3.4]): the simulator acts on MONTH 1..12 with
  OFFSET 0, i.e. day DAY of MONTH every year; other forms never match
  (INFERRED: C12.19 gives them meanings the guides do not spell out);
* a season starts at the latest season date on or before the local date; DST
  is on after the latest "DST on" date (ACTION 1) and off after a "DST off"
  (ACTION 2), switching at BT53 DST_TIME_EFF of local standard time;
* a pending table keeps one image: each write (full or partial) to it puts
  its data at its offset over the active table and sets the PED of the whole
  image (INFERRED: [OPT p.8] says the pending table mirrors its table; the
  guides do not say how partial writes with differing PEDs combine); a read
  of a pending table returns its PED (six zero bytes: empty, [OPT p.10])
  followed by that image, the count including the PED [OPT p.9].
"""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from osgp import tables
from osgp.services.codes import ResponseCode
from osgp.services.messages import PED, PENDING, FullRead, Response
from osgp.tables import TimeDate

if TYPE_CHECKING:  # pragma: no cover
    from osgp.sim.meter import SimMeter

__all__ = [
    "BT50_VALUES",
    "SWITCHES_PER_SCHEDULE",
    "bt50_image",
    "factory_bt54",
    "clock_state",
    "local_time",
    "merge_pending",
    "read_pending",
    "Compiled",
]

SWITCHES_PER_SCHEDULE = 10  # [MEP p.228]: schedule 0 for the first 10 switches, 1 the next 10
#: The simulator's BT50 (see the module docstring; flags as [MEP p.221-223]).
BT50_VALUES: Dict[str, Any] = {
    "TIME_FUNC_FLAG1": {},
    "TIME_FUNC_FLAG2": {"SORT_TIER_SWITCHES_FLAG": True, "CAP_TM_ZN_OFFSET_FLAG": True},
    "CALENDAR_FUNC": {"NBR_SEASONS": 4, "NBR_SPECIAL_SCHED": 2},
    "NBR_NON_RECURR_DATES": 0,
    "NBR_RECURR_DATES": 23,
    "NBR_TIER_SWITCHES": 4 * SWITCHES_PER_SCHEDULE,
}
# CALENDAR_ACTION ACTION values [MEP p.227]
DST_ON, DST_OFF, SEASON_0, SPECIAL_0 = 1, 2, 3, 19
_DAY = 86400
_UTC = _dt.timezone.utc


def _rdate(month: int, day: int) -> int:
    """RDATE for day ``day`` of ``month`` (MONTH bits 0..3, OFFSET 4..7 = 0,
    DAY 11..15; docs/protocol.md §3.4)."""
    return month | (day << 11)


@lru_cache(maxsize=1)
def bt50_image() -> bytes:
    """The BT50 image, CALENDAR_TBL_SIZE being the encoded BT54's size."""
    probe = tables.encode(50, {**BT50_VALUES, "CALENDAR_TBL_SIZE": 0})
    size = len(tables.encode(54, {}, {"BT50": probe}))
    return tables.encode(50, {**BT50_VALUES, "CALENDAR_TBL_SIZE": size})


def bt50(meter: SimMeter) -> bytes:
    return bt50_image()


@lru_cache(maxsize=1)
def factory_bt54() -> bytes:
    """The calendar a meter leaves the factory with: the load model's two
    rates (:meth:`osgp.sim.model.LoadModel.tier`: tier 0 07:00 to 23:00,
    tier 1 otherwise), one season from 1 January, every day alike."""
    n = BT50_VALUES
    switches = [(0, 0, 1), (7, 0, 0), (23, 0, 1)]
    switches += [(0, 0, 0)] * (n["NBR_TIER_SWITCHES"] - len(switches))  # unused slots
    # unused recurring dates: RDATE 0 (no month) with ACTION 0 (no action) [MEP p.227]
    dates = [(_rdate(1, 1), SEASON_0)] + [(0, 0)] * (n["NBR_RECURR_DATES"] - 1)
    values = {
        "RECURR_DATES": [{"RECURR_DATE": r, "CALENDAR_ACTION": {"ACTION": a}} for r, a in dates],
        "TIER_SWITCHES": [
            {
                "TIER_SWITCH": {"NEW_TIER": t, "SWITCH_HOUR": h, "SWITCH_MIN": mi},
                "DAY_SCH_NUM": i // SWITCHES_PER_SCHEDULE,
            }
            for i, (h, mi, t) in enumerate(switches)
        ],
        "SEASON_SCHEDULES": [{"DAY_SCHEDULES": [0, 0, 0], "SPECIAL_SCHEDULES": [0, 0]}]
        * n["CALENDAR_FUNC"]["NBR_SEASONS"],
        "CALENDAR_ID": 1,
    }
    return tables.encode(54, values, {"BT50": bt50_image()})


class Compiled:
    """A decoded BT54 ready to answer "which tier, which season, DST?"."""

    __slots__ = ("calendar_id", "seasons", "specials", "dst", "schedules", "weeks")

    def __init__(self, image: bytes, bt50: bytes) -> None:
        d = tables.decode(54, image, {"BT50": bt50})
        self.calendar_id = int(d["CALENDAR_ID"])
        self.seasons: List[Tuple[int, int, int]] = []  # (month, day, season)
        self.specials: Dict[Tuple[int, int], int] = {}  # (month, day) -> special schedule
        self.dst: List[Tuple[int, int, bool]] = []  # (month, day, on)
        for r in d["RECURR_DATES"]:
            w = int(r["RECURR_DATE"])
            month, offset, day = w & 0xF, (w >> 4) & 0xF, w >> 11
            if not 1 <= month <= 12 or offset or not 1 <= day <= 31:
                continue  # a form the simulator does not act on (module docstring)
            a = int(r["CALENDAR_ACTION"]["ACTION"])
            if a in (DST_ON, DST_OFF):
                self.dst.append((month, day, a == DST_ON))
            elif SEASON_0 <= a < SEASON_0 + 12:
                self.seasons.append((month, day, a - SEASON_0))
            elif a in (SPECIAL_0, SPECIAL_0 + 1):
                self.specials[(month, day)] = a - SPECIAL_0
        sw = d["TIER_SWITCHES"]
        self.schedules: List[List[Tuple[int, int]]] = []  # per day schedule: (minute of day, tier)
        for k in range(0, len(sw), SWITCHES_PER_SCHEDULE):
            out: List[Tuple[int, int]] = []
            for i, s in enumerate(sw[k : k + SWITCHES_PER_SCHEDULE]):
                ts = s["TIER_SWITCH"]
                at = int(ts["SWITCH_HOUR"]) * 60 + int(ts["SWITCH_MIN"])
                if i == 0 or at > out[-1][0]:
                    out.append((0 if i == 0 else at, int(ts["NEW_TIER"])))
            self.schedules.append(out)
        self.weeks = [
            (list(s["DAY_SCHEDULES"]), list(s["SPECIAL_SCHEDULES"])) for s in d["SEASON_SCHEDULES"]
        ]

    @staticmethod
    def _latest(dates: List[Tuple[int, int, Any]], day: _dt.date) -> Optional[Any]:
        """The value of the latest yearly date on or before ``day``."""
        best: Optional[Tuple[_dt.date, Any]] = None
        for month, dom, value in dates:
            for year in (day.year, day.year - 1):
                try:
                    at = _dt.date(year, month, dom)
                except ValueError:
                    continue
                if at <= day and (best is None or at > best[0]):
                    best = (at, value)
                    break
        return None if best is None else best[1]

    def dst_on(self, standard: float, switch_s: int) -> bool:
        """DST in effect at local standard time ``standard`` (epoch-like
        seconds), a DST date taking effect ``switch_s`` into its day."""
        day = _dt.datetime.fromtimestamp(standard - switch_s, _UTC).date()
        return bool(self._latest(self.dst, day))

    def state(self, local: float) -> Tuple[int, int, Optional[int]]:
        """(tier, season, special schedule or None) at local time ``local``."""
        t = _dt.datetime.fromtimestamp(local, _UTC)
        season = self._latest(self.seasons, t.date()) or 0
        season = min(season, len(self.weeks) - 1)
        days, special_of = self.weeks[season]
        special = self.specials.get((t.month, t.day))
        if special is not None:
            k = special_of[special]
        else:  # [Saturday, Sunday, Weekday] [MEP p.228]
            k = days[{5: 0, 6: 1}.get(t.weekday(), 2)]
        switches = self.schedules[k] if k < len(self.schedules) else [(0, 0)]
        minute = t.hour * 60 + t.minute
        tier = switches[0][1]
        for at, new in switches:
            if at <= minute:
                tier = new
        return tier, season, special


@lru_cache(maxsize=64)
def _compiled(image: bytes, bt50: bytes) -> Compiled:
    return Compiled(image, bt50)


def calendar(meter: SimMeter) -> Compiled:
    return _compiled(bytes(dict.__getitem__(meter.tables, 54)), bt50_image())


def local_time(meter: SimMeter) -> Tuple[float, bool]:
    """(local epoch-like seconds, DST in effect) of the meter now: its UTC
    clock plus the BT53 time-zone offset, plus the DST adjustment while DST
    is on [MEP p.225]."""
    d = tables.decode(53, bytes(dict.__getitem__(meter.tables, 53)))
    eff = d["DST_TIME_EFF"]
    switch_s = eff.hour * 3600 + eff.minute * 60 + eff.second
    standard = meter.meter_time() + int(d["TIME_ZONE_OFFSET"]) * 60
    on = calendar(meter).dst_on(standard, switch_s)
    return standard + (int(d["DST_TIME_AMT"]) * 60 if on else 0), on


def clock_state(meter: SimMeter) -> bytes:
    """BT55: the local clock, its qualifier and the TOU status [MEP p.229-231]."""
    local, dst = local_time(meter)
    tier, season, special = calendar(meter).state(local)
    c = _dt.datetime.fromtimestamp(int(local // 1), _UTC)
    return tables.encode(
        55,
        {
            "CLOCK_CALENDAR": TimeDate(c.year, c.month, c.day, c.hour, c.minute, c.second),
            "TIME_DATE_QUAL": {
                "DAY_OF_WEEK": (c.weekday() + 1) % 7,  # 0 = Sunday [MEP p.224]
                "DST_FLAG": dst,
                "TM_ZN_APPLIED_FLAG": True,
                "DST_APPLIED_FLAG": dst,
            },
            "STATUS": {
                "CURR_TIER": tier,
                "SPECIAL_SCHD_ACTIVE": 0 if special is None else special + 1,
                "SEASON": season,
            },
        },
    )


def merge_pending(
    old: Optional[Tuple[PED, int, bytes, Any]], ped: PED, off: int, data: bytes, active: bytes
) -> Tuple[PED, int, bytes]:
    """One pending image from the one stored and a new write (module
    docstring): the span covering both, the gap filled from the active table."""
    if old is None:
        return ped, off, bytes(data)
    _, off0, data0, _ = old
    lo, hi = min(off0, off), max(off0 + len(data0), off + len(data))
    span = bytearray(active[lo:hi].ljust(hi - lo, b"\0"))
    span[off0 - lo : off0 - lo + len(data0)] = data0
    span[off - lo : off - lo + len(data)] = data
    return ped, lo, bytes(span)


def read_pending(meter: SimMeter, req: Any) -> Response:
    """A read of pending table ``req.table``: PED then the image it would
    activate (module docstring)."""
    t = req.table - PENDING
    if t >= PENDING or not dict.__contains__(meter.tables, t):
        return Response(ResponseCode.IAR)
    img = bytearray(dict.__getitem__(meter.tables, t))
    ped = bytes(6)
    entry = meter._pending.get(t)
    if entry is not None:
        p, off, data, _ = entry
        ped = p.encode()
        end = off + len(data)
        img[off:end] = data[: max(0, len(img) - off)]
    if isinstance(req, FullRead):
        return Response(0, ped + bytes(img))
    n = max(0, req.count - 6)  # the count includes the PED [OPT p.9]
    chunk = bytes(img[req.offset : req.offset + n])
    return Response(0, ped + chunk + bytes(n - len(chunk)))
