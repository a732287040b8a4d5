"""Tariff (TOU) calendar changes through pending tables, and the meter's
time offset (BT53) in clock synchronisation.

A calendar change is a chain of :class:`~osgp.concentrator.operations.Operations`
jobs, each with a per-meter outcome on the store:

``tou``
    writes the BT54 calendar [MEP p.225-229], sized by the meter's BT50
    [MEP p.221-223], into its pending image BT4150 [OPT p.8] in partial
    writes of at most the link's ``max_write`` bytes, each led by a PED
    [OPT p.10] with event code 2 (no automatic activation), then reads the
    pending image back and compares it.  Nothing is armed yet, so a meter cut
    off half-way never activates a half-written calendar.
``tou-arm``
    when every meter of ``tou`` is confirmed: one more write of the first
    byte with the PED that activates at the set moment (event code 0, STIME_DATE
    UTC; self-read and demand-reset flags), checked in BT04 [OPT p.10-11].  Every
    meter then copies the calendar into BT54 at that minute by its own clock.
``tou-activate``
    the other path, for ``manual=True``: BP13 (activate the pending BT54) per
    meter at the moment.  A secured group broadcast of BP13 goes in
    :attr:`Tariffs.broadcast` (called with the job id; it returns True when it
    sent the activation; :func:`broadcast_activation` makes one); then
    ``tou-verify`` reads every meter back, and a meter it finds still pending
    gets ``tou-activate`` by unicast, verified once more.
``tou-rollback``
    when any meter of ``tou`` or ``tou-arm`` is not confirmed, or too little
    time is left to arm the group (:class:`Tariffs`): BP15 (clear the pending
    BT54) on every meter of the job whose BT04 still shows one; a meter that
    already runs the new calendar is reported failed.
``tou-verify``
    after the moment: BT04 has nothing pending for BT54, BT54 reads back as the
    calendar, ET23 names it the active calendar [MEP p.229], and BT55 gives the
    tier and season the meter runs on.

A pending image built from several writes, each setting the PED, is the
simulator's reconstruction (``osgp.sim.tariff``, INFERRED): the guides
describe single writes only.  BP13 / BP15 take the table id as UINT16
(``osgp.sim.layouts``, INFERRED; [OPT p.12] describes clearing by a
matching PED instead).

Clock synchronisation with ``offset`` in its parameters (``clock_params``)
reads BT53 (DST switch time TIME, DST adjustment UINT8 minutes, time-zone
offset INT16 minutes [MEP p.225]) first; a meter whose values differ from the
fleet's is written (``fix_offset``) or reported failed with the difference,
after its clock has been synchronised either way; BT55 minus BT52 must then
be the zone offset plus, while BT55 says DST, the DST adjustment.
"""

from __future__ import annotations

import datetime as _dt
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from osgp import tables
from osgp.concentrator.engine import Meter
from osgp.concentrator.operations import TASKS, Kind, NotConfirmed, Operations, TaskGen
from osgp.errors import ConfigurationError, DeviceError, MalformedError
from osgp.services.messages import PED, PENDING
from osgp.services.procedures import ProcedureError
from osgp.tables import TimeDate

__all__ = ["Calendar", "Tariffs", "KINDS", "broadcast_activation", "clock_params", "tou_params"]

KINDS = ("tou", "tou-arm", "tou-activate", "tou-rollback", "tou-verify")
BT54, BT4150 = 54, PENDING + 54  # calendar and its pending image [OPT p.8]
ET23 = 2048 + 23  # miscellaneous information [MEP p.98-99]
_ET23_ACTIVE_ID = 95  # ACTIVE_CALENDAR_ID offset ("ET23.95", [MEP p.229])
BP13, BP15 = 13, 15  # activate / clear one pending table (ANSI C12.19)
_PED_LEN = 6  # [OPT p.10]
_MANUAL = PED(2)  # no automatic activation [OPT p.10]
GUARD_S = 120.0  # no meter is armed later than this before the moment
#: Exchanges of an arming (BT04, the write, BT04) against those of writing a
#: calendar (BT50, BT00, 4 writes, 3 reads on the simulator's PLC): its time estimate
ARM_SHARE = 0.4
VERIFY_S = 30.0  # tou-verify starts this long after the moment
STILL_PENDING = "BT54 is still pending after the moment"  # a tou-verify failure


@dataclass(frozen=True)
class Calendar:
    """A TOU calendar in the terms of BT54 [MEP p.225-229].

    ``day_schedules``: per day schedule, its ``(hour, minute, tier)``
    switches, the first at 00:00; ``seasons``: ``(month, day, (saturday,
    sunday, weekday))`` start dates with the day schedule of each day type;
    ``dst``: ``((month, day), (month, day))`` DST on and off dates or None."""

    calendar_id: int
    day_schedules: Sequence[Sequence[Tuple[int, int, int]]]
    seasons: Sequence[Tuple[int, int, Tuple[int, int, int]]] = ((1, 1, (0, 0, 0)),)
    dst: Optional[Tuple[Tuple[int, int], Tuple[int, int]]] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "calendar_id": self.calendar_id,
            "day_schedules": [[list(s) for s in d] for d in self.day_schedules],
            "seasons": [[m, d, list(w)] for m, d, w in self.seasons],
            "dst": None if self.dst is None else [list(x) for x in self.dst],
        }

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> Calendar:
        try:
            return cls(
                int(d["calendar_id"]),
                [[(int(h), int(mi), int(t)) for h, mi, t in s] for s in d["day_schedules"]],
                [(int(m), int(dd), (int(w[0]), int(w[1]), int(w[2]))) for m, dd, w in d["seasons"]],
                None if d.get("dst") is None else (tuple(d["dst"][0]), tuple(d["dst"][1])),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigurationError(f"tariffs: calendar description: {exc!r}") from None

    def image(self, bt50: bytes) -> bytes:
        """The BT54 image for a meter with dimensions ``bt50``; unused
        slots zero (RDATE 0 with ACTION 0: no action [MEP p.227])."""
        dims = tables.decode(50, bt50)
        per = 10  # switches per day schedule [MEP p.228]
        n_sw, n_rd = int(dims["NBR_TIER_SWITCHES"]), int(dims["NBR_RECURR_DATES"])
        n_seasons = int(dims["CALENDAR_FUNC"]["NBR_SEASONS"])
        n_special = int(dims["CALENDAR_FUNC"]["NBR_SPECIAL_SCHED"])
        separate = bool(dims["TIME_FUNC_FLAG2"]["SEPARATE_WEEKDAYS_FLAG"])
        if n_sw % per:  # NBR_TIER_SWITCHES, UINT16 at offset 5 [MEP p.220-222]
            raise MalformedError.in_table(
                "BT50", "NBR_TIER_SWITCHES", 5, f"{n_sw} tier switches, not day schedules of {per}"
            )
        if len(self.day_schedules) * per > n_sw or len(self.seasons) > n_seasons:
            raise ConfigurationError(
                f"tariffs: {len(self.day_schedules)} day schedules and {len(self.seasons)} seasons"
                f" do not fit BT50 ({n_sw} tier switches, {n_seasons} seasons)"
            )
        switches: List[Dict[str, Any]] = []
        for k in range(n_sw // per):
            day = list(self.day_schedules[k]) if k < len(self.day_schedules) else [(0, 0, 0)]
            times = [h * 60 + mi for h, mi, _ in day]
            if len(day) > per or times[0] != 0 or times != sorted(set(times)) or times[-1] >= 1440:
                raise ConfigurationError(
                    f"tariffs: day schedule {k}: 1..{per} switches in time order from 00:00"
                )
            day += [(0, 0, 0)] * (per - len(day))
            switches += [
                {"TIER_SWITCH": {"NEW_TIER": t, "SWITCH_HOUR": h, "SWITCH_MIN": mi},
                 "DAY_SCH_NUM": k}
                for h, mi, t in day
            ]  # fmt: skip
        # RDATE: MONTH bits 0..3, OFFSET 4..7 (0), DAY 11..15 (docs/protocol.md §3.4); ACTION
        # 1 DST on, 2 DST off, 3 + n season n [MEP p.227]
        days = [(m, d, 3 + i) for i, (m, d, _) in enumerate(self.seasons)]
        if self.dst is not None:
            days += [(*self.dst[0], 1), (*self.dst[1], 2)]
        for m, d, _ in days:
            if not (1 <= m <= 12 and 1 <= d <= 31):
                raise ConfigurationError(f"tariffs: no date {m}/{d} (month 1..12, day 1..31)")
        dates = [(m | (d << 11), a) for m, d, a in days]
        if len(dates) > n_rd:
            raise ConfigurationError(f"tariffs: {len(dates)} recurring dates, BT50 has {n_rd}")
        dates += [(0, 0)] * (n_rd - len(dates))
        weeks = []
        for i in range(n_seasons):
            sat, sun, wk = self.seasons[i][2] if i < len(self.seasons) else (0, 0, 0)
            # Sunday .. Saturday with separate week days, else [Saturday, Sunday, Weekday]
            week = [sun, wk, wk, wk, wk, wk, sat] if separate else [sat, sun, wk]
            weeks.append({"DAY_SCHEDULES": week, "SPECIAL_SCHEDULES": [0] * n_special})
        values = {
            "NON_RECURR_DATES": [{"NON_RECURR_DATE": {}, "CALENDAR_ACTION": {}}]
            * int(dims["NBR_NON_RECURR_DATES"]),
            "RECURR_DATES": [
                {"RECURR_DATE": r, "CALENDAR_ACTION": {"ACTION": a}} for r, a in dates
            ],
            "TIER_SWITCHES": switches,
            "SEASON_SCHEDULES": weeks,
            "CALENDAR_ID": self.calendar_id,
        }
        return tables.encode(54, values, {"BT50": bt50})


def tou_params(
    calendar: Calendar,
    at: float,
    *,
    self_read: bool = False,
    demand_reset: bool = False,
    manual: bool = False,
) -> Dict[str, Any]:
    """The ``tou`` job parameters; ``at``: UTC epoch second of the
    activation, a whole minute (STIME_DATE has no seconds [OPT p.10])."""
    if at % 60 or not 946_684_800 <= at < 4_102_444_800:
        raise ConfigurationError("tariffs: the activation moment is a whole UTC minute, 2000..2099")
    return {
        "calendar": calendar.to_json(),
        "at": int(at),
        "self_read": self_read,
        "demand_reset": demand_reset,
        "manual": manual,
    }


def clock_params(tz_min: int, dst_min: int = 60, dst_time: Tuple[int, int, int] = (2, 0, 0),
                 *, fix_offset: bool = False) -> Dict[str, Any]:  # fmt: skip
    """``clock-sync`` parameters with the fleet's BT53 [MEP p.225]: time-zone
    offset and DST adjustment in minutes, DST switch time of day."""
    if not -12 * 60 <= tz_min <= 14 * 60 or not 0 <= dst_min <= 255:
        raise ConfigurationError("tariffs: time zone -12..+14 h [MEP p.225], DST 0..255 min")
    h, mi, sec = dst_time
    return {"offset": {"tz_min": tz_min, "dst_min": dst_min, "dst_time": [h, mi, sec]},
            "fix_offset": fix_offset}  # fmt: skip


def _armed(p: Dict[str, Any]) -> PED:
    """The PED activating at ``p["at"]``: STIME_DATE YY MM DD HH MM, UTC [OPT p.10]."""
    t = _dt.datetime.fromtimestamp(p["at"], _dt.timezone.utc)
    return PED(
        0,
        bytes([t.year - 2000, t.month, t.day, t.hour, t.minute]),
        self_read=bool(p["self_read"]),
        demand_reset=bool(p["demand_reset"]),
    )


# -- tasks ------------------------------------------------------------------------------------
def _dim(ops: Operations, m: Meter, table: int) -> TaskGen:
    """A dimension table (BT00 sizes BT04, BT50 sizes BT54), read once."""
    if table not in m.dims:
        m.dims[table] = yield from ops._read(m, table)
    return m.dims[table]


def _image(ops: Operations, m: Meter, run: Any) -> TaskGen:
    bt50 = yield from _dim(ops, m, 50)
    return Calendar.from_json(run.params["calendar"]).image(bt50)


def _pending_54(ops: Operations, m: Meter) -> TaskGen:
    """The PED of BT54's entry in BT04, or None [OPT p.10-11]."""
    yield from _dim(ops, m, 0)
    bt04 = yield from ops._read(m, 4)
    d = tables.decode(4, bt04, {"BT00": m.dims[0]})
    for e in d["PENDING_ENTRIES"]:
        tbl = e["TABLE"]
        if tbl["TBL_PROC_NBR"] == BT54 and not tbl["MFG_FLAG"] and tbl["STILL_PENDING"]:
            return bytes(e["EVENT"])
    return None


def _read_pending(ops: Operations, m: Meter, size: int) -> TaskGen:
    """The pending BT54 as (PED, image): partial reads whose count includes
    the PED while the offset does not [OPT p.9]."""
    assert m.session is not None
    n = m.session.services.max_read - _PED_LEN
    out, peds = bytearray(), set()
    for off in range(0, size, n):
        want = min(n, size - off)
        got = yield m.session.read(BT4150, off, want + _PED_LEN, priority=ops.priority)
        peds.add(bytes(got[:_PED_LEN]))
        out += got[_PED_LEN : _PED_LEN + want]
    if len(peds) != 1:
        raise NotConfirmed("pending BT54 changed while it was read")
    return peds.pop(), bytes(out)


def _tou(ops: Operations, m: Meter, run: Any) -> TaskGen:
    image = yield from _image(ops, m, run)
    yield from _dim(ops, m, 0)  # for BT04 when the calendar is armed
    assert m.session is not None
    ops._sent(m, run, {"calendar_id": run.params["calendar"]["calendar_id"]})
    n = m.session.services.max_write - _PED_LEN
    ped = _MANUAL.encode()
    for off in range(0, len(image), n):
        yield m.session.write(BT4150, ped + image[off : off + n], off, priority=ops.priority)
    got_ped, got = yield from _read_pending(ops, m, len(image))
    if got != image or got_ped != ped:
        raise NotConfirmed("the pending BT54 read back differs from the calendar written")
    return json.dumps({"bytes": len(image), "writes": -(-len(image) // n), "action": "BT4150"})


def _arm(ops: Operations, m: Meter, run: Any) -> TaskGen:
    p = run.params
    ped = _armed(p).encode()
    if (yield from _pending_54(ops, m)) == ped:
        return json.dumps({"ped": ped.hex(), "action": "none"})
    if ops._utc() > p["at"] - p.get("guard_s", GUARD_S):
        raise NotConfirmed("too close to the moment to arm the calendar")
    image = yield from _image(ops, m, run)
    ops._sent(m, run, {"ped": ped.hex()})
    assert m.session is not None
    yield m.session.write(BT4150, ped + image[:1], 0, priority=ops.priority)
    if (yield from _pending_54(ops, m)) != ped:
        raise NotConfirmed("BT04 does not show the calendar armed")
    return json.dumps({"ped": ped.hex(), "action": "BT4150 PED"})


def _pending_call(ops: Operations, m: Meter, run: Any, number: int) -> TaskGen:
    """BP13 / BP15 on BT54 when BT04 shows it pending."""
    before = yield from _pending_54(ops, m)
    if before is None:
        return json.dumps({"action": "none"})
    ops._sent(m, run, {"ped": before.hex()})
    refused: Optional[Exception] = None
    try:
        yield from ops._call(m, number, struct.pack("<H", BT54), mfg=False)
    except (ProcedureError, DeviceError) as exc:
        # a call repeated after its answer was lost is refused (its PSN, MEP p.52) or finds
        # nothing pending: BT04 says whether the first one did it
        refused = exc
    if (yield from _pending_54(ops, m)) is not None:
        if refused is not None:
            raise refused
        raise NotConfirmed(f"BT54 still pending after BP{number}")
    return json.dumps({"action": f"BP{number}"})


def _calendar_id(ops: Operations, m: Meter) -> TaskGen:
    """BT54 CALENDAR_ID, its last four bytes [MEP p.229]."""
    bt50 = yield from _dim(ops, m, 50)
    size = int(tables.decode(50, bt50)["CALENDAR_TBL_SIZE"])
    if size < 4:  # CALENDAR_TBL_SIZE, UINT16 at offset 7 [MEP p.221-223]
        raise MalformedError.in_table(
            "BT50", "CALENDAR_TBL_SIZE", 7, f"a BT54 of {size} bytes holds no CALENDAR_ID"
        )
    assert m.session is not None
    tail = yield m.session.read(BT54, size - 4, 4, priority=ops.priority)
    return int.from_bytes(tail, "little")


def _rollback(ops: Operations, m: Meter, run: Any) -> TaskGen:
    done = yield from _pending_call(ops, m, run, BP15)
    if '"none"' in done and (yield from _calendar_id(ops, m)) == _cal_id(run):
        raise NotConfirmed("the meter activated the calendar before the rollback reached it")
    return done


def _cal_id(run: Any) -> int:
    return int(run.params["calendar"]["calendar_id"])


def _activate(ops: Operations, m: Meter, run: Any) -> TaskGen:
    return (yield from _pending_call(ops, m, run, BP13))


def _verify(ops: Operations, m: Meter, run: Any) -> TaskGen:
    if (yield from _pending_54(ops, m)) is not None:
        raise NotConfirmed(STILL_PENDING)
    image = yield from _image(ops, m, run)
    assert m.session is not None
    active = yield m.session.read(BT54, 0, len(image), priority=ops.priority)
    if bytes(active) != image:
        got = tables.decode(54, active, {"BT50": m.dims[50]})["CALENDAR_ID"]
        raise NotConfirmed(f"BT54 holds calendar {got}, not the one written")
    # the calendar the meter runs on: ET23 ACTIVE_CALENDAR_ID, UINT32 at offset 95 [MEP p.229]
    raw = yield m.session.read(ET23, _ET23_ACTIVE_ID, 4, priority=ops.priority)
    active_id = int.from_bytes(raw, "little")
    if active_id != _cal_id(run):
        raise NotConfirmed(f"ET23 says calendar {active_id} is active, not {_cal_id(run)}")
    bt55 = tables.decode(55, (yield from ops._read(m, 55)))
    local = bt55["CLOCK_CALENDAR"].to_datetime()
    if local is None:  # CLOCK_CALENDAR, LTIME_DATE at offset 0 [MEP p.230-231]
        raise MalformedError.in_table(
            "BT55", "CLOCK_CALENDAR", 0, f"{tuple(bt55['CLOCK_CALENDAR'])} is no calendar time"
        )
    return json.dumps(
        {
            "calendar_id": run.params["calendar"]["calendar_id"],
            "tier": bt55["STATUS"]["CURR_TIER"],
            "season": bt55["STATUS"]["SEASON"],
            "local": local.isoformat()[:19],
        }
    )


def _clock_sync(ops: Operations, m: Meter, run: Any) -> TaskGen:
    want = run.params.get("offset")
    if want is None:
        return (yield from ops._clock(m, run))
    assert m.session is not None
    h, mi, sec = want["dst_time"]
    values = {
        "DST_TIME_EFF": TimeDate(0, 0, 0, h, mi, sec),
        "DST_TIME_AMT": want["dst_min"],
        "TIME_ZONE_OFFSET": want["tz_min"],
    }
    have = tables.decode(53, (yield from ops._read(m, 53)))
    differs = sorted(k for k, v in values.items() if have[k] != v)
    action = None
    if differs and run.params.get("fix_offset"):
        ops._sent(m, run, {"bt53": [str(have[k]) for k in sorted(values)]})
        yield m.session.write(53, tables.encode(53, values), priority=ops.priority)
        again = tables.decode(53, (yield from ops._read(m, 53)))
        if any(again[k] != v for k, v in values.items()):
            raise NotConfirmed("BT53 reads back other than written")
        action = "BT53"
    detail = json.loads((yield from ops._clock(m, run)))
    # BT55 (local) minus BT52 (UTC): the zone offset, plus the DST adjustment while BT55 says
    # DST [MEP p.224-231]; both whole seconds read one exchange apart
    t0 = ops._utc()
    utc = tables.decode(52, (yield from ops._read(m, 52)))["CLOCK_CALENDAR"].epoch()
    bt55 = tables.decode(55, (yield from ops._read(m, 55)))
    span = ops._utc() - t0
    dst = bool(bt55["TIME_DATE_QUAL"]["DST_FLAG"])
    now = tables.decode(53, (yield from ops._read(m, 53))) if action is None else values
    expect = (now["TIME_ZONE_OFFSET"] + (now["DST_TIME_AMT"] if dst else 0)) * 60
    shift = bt55["CLOCK_CALENDAR"].epoch() - utc
    if abs(shift - expect) > span + 1:
        raise NotConfirmed(f"BT55 is {shift} s from BT52, BT53 says {expect} s")
    detail.update({"offset_differs": differs, "offset_action": action, "local_shift_s": shift})
    if differs and action is None:
        raise NotConfirmed(f"BT53 {', '.join(differs)} differ from the fleet's: {detail}")
    return json.dumps(detail)


# -- the job chain ----------------------------------------------------------------------------
@dataclass
class Tariffs:
    """Runs calendar changes as job chains on ``ops`` (module docstring).

    ``guard_s``: no meter is armed later than this before the moment; the
    group is armed only while the time left is ``guard_s`` plus twice the
    arming's estimate, ``arm_share`` of the time the writes took (an arming
    and a rollback then both fit), else rolled back; ``verify_s``: how long after the moment
    ``tou-verify`` starts; ``auto``: chain the jobs (arm or roll back, then
    verify); ``broadcast``: the hook for a group activation (``job_id`` ->
    True when it sent it; :func:`broadcast_activation`), tried before
    ``tou-activate`` by unicast, which then goes only to the meters the
    verification after it finds still pending."""

    ops: Operations
    guard_s: float = GUARD_S
    verify_s: float = VERIFY_S
    auto: bool = True
    broadcast: Optional[Callable[[int], bool]] = None
    arm_share: float = ARM_SHARE
    chain: Dict[int, int] = field(default_factory=dict)  # job id -> the job it started

    def __post_init__(self) -> None:
        self.ops.on_job_done.append(self._job_done)

    def change(
        self,
        calendar: Calendar,
        at: float,
        devices: Optional[Iterable[int]] = None,
        **flags: bool,
    ) -> int:
        """Write ``calendar`` to activate at UTC ``at`` (``tou_params``)."""
        params = tou_params(calendar, at, **flags)
        if at - self.ops._utc() < 2 * self.guard_s:
            raise ConfigurationError(f"tariffs: the moment must be {2 * self.guard_s:.0f} s ahead")
        params["guard_s"] = self.guard_s
        return self.ops.submit("tou", params, devices)

    def _next(
        self, job_id: int, kind: str, devices: Optional[List[int]] = None, **extra: Any
    ) -> int:
        job = self.ops.store.job(job_id)
        params = {**job.params, **extra, "of": job_id}
        if devices is None:
            devices = [o.device_id for o in self.ops.store.outcomes(job_id)]
        new = self.ops.submit(kind, params, devices)
        self.chain[job_id] = new
        return new

    def arm(self, job_id: int) -> int:
        return self._next(job_id, "tou-arm")

    def rollback(self, job_id: int) -> int:
        return self._next(job_id, "tou-rollback")

    def verify(self, job_id: int) -> int:
        return self._next(job_id, "tou-verify")

    def activate(self, job_id: int) -> Optional[int]:
        """BP13 at the moment: by :attr:`broadcast` when it sends it (then
        None, and ``tou-verify`` follows ``verify_s`` later), else as a
        ``tou-activate`` job."""
        if self.broadcast is not None and self.broadcast(job_id):
            self.ops.store.audit(self.ops._utc(), "tariffs", "BP13 broadcast", str(job_id))
            at = float(self.ops.store.job(job_id).params["at"])
            self._at(at + self.verify_s, lambda: self._next(job_id, "tou-verify", broadcast=True))
            return None
        return self._next(job_id, "tou-activate")

    def _fallback(self, job_id: int) -> None:
        """Unicast ``tou-activate`` for the meters the verification after a
        broadcast found still pending."""
        missed = [
            o.device_id for o in self.ops.store.outcomes(job_id)
            if o.state == "failed" and o.detail == STILL_PENDING
        ]  # fmt: skip
        if missed:
            self._next(job_id, "tou-activate", missed, broadcast=False)

    def resume(self) -> List[int]:
        """Take the next step of every finished ``tou``, ``tou-arm`` or
        ``tou-activate`` job, and of every ``tou-verify`` after a broadcast
        with no target left to work on (its failures are what the fallback
        takes), that no job follows yet (a process that stopped between two
        steps); run :meth:`Operations.resume` for the open ones."""
        jobs = self.ops.store.jobs()
        followed = {j.params.get("of") for j in jobs}
        taken = []
        for j in jobs:
            if j.id in followed:
                continue
            busy = any(n for st, n in j.counts.items() if st in ("pending", "sent"))
            after_broadcast = j.kind == "tou-verify" and j.params.get("broadcast") and not busy
            if (j.kind in KINDS[:3] and not j.open) or after_broadcast:
                self._job_done(j.id)
                taken.append(j.id)
        return taken

    def _at(self, utc: float, fn: Callable[[], Any]) -> None:
        rt = self.ops.eng.runtime
        rt.call_at(rt.time() + max(0.0, utc - self.ops._utc()), lambda _now: fn())

    def _job_done(self, job_id: int) -> None:
        job = self.ops.store.job(job_id)
        if self.auto and job.kind == "tou-verify" and job.params.get("broadcast"):
            self._fallback(job_id)
        if not self.auto or job.kind not in ("tou", "tou-arm", "tou-activate"):
            return
        ok = all(o.state == "confirmed" for o in self.ops.store.outcomes(job_id))
        at = float(job.params["at"])
        if not ok and job.kind != "tou-activate":
            self.rollback(job_id)
        elif job.kind == "tou" and job.params.get("manual"):
            self._at(at, lambda: self.activate(job_id))
        elif job.kind == "tou":
            took = self.ops._utc() - job.created_at
            if at - self.ops._utc() < self.guard_s + 2 * self.arm_share * took:
                self.ops.store.audit(self.ops._utc(), "tariffs", "too late to arm", str(job_id))
                self.rollback(job_id)
            else:
                self.arm(job_id)
        else:
            self._at(at + self.verify_s, lambda: self.verify(job_id))


def broadcast_activation(
    broadcasters: Any, group: int, *, repeats: int = 2
) -> Callable[[int], bool]:
    """A :attr:`Tariffs.broadcast` hook: BP13 on BT54 (its table id as
    UINT16, the simulator's layout, INFERRED) by secured group broadcast to
    ``group`` through each of ``broadcasters`` (one
    :class:`~osgp.concentrator.broadcast.Broadcaster` a channel, or a
    sequence of them), ``repeats`` identical copies more (unacknowledged-repeated)."""
    every = list(broadcasters) if isinstance(broadcasters, (list, tuple)) else [broadcasters]
    params = struct.pack("<H", BT54)

    def send(job_id: int) -> bool:
        for b in every:
            b.procedure(group, BP13, params, mfg=False, repeats=repeats)
        return True

    return send


HELP = {
    "tou": "write a TOU calendar into the pending BT54 (BT4150), unarmed",
    "tou-arm": "arm the pending calendar of a tou job to activate at its moment (PED)",
    "tou-activate": "activate the pending calendar of a tou job now (BP13)",
    "tou-rollback": "clear the pending calendar of a tou job (BP15)",
    "tou-verify": "check BT54 and BT55 after a tou job's moment",
}

TASKS.update(
    {
        "clock-sync": Kind(_clock_sync),  # its help line is the built-in kind's
        **{
            k: Kind(t, help=HELP[k])
            for k, t in zip(KINDS, (_tou, _arm, _activate, _rollback, _verify))
        },
    }
)


def add_cli_arguments(kind: str, p: Any) -> None:
    """The ``osgp op`` arguments of the kinds defined here."""
    if kind == "tou":
        p.add_argument("--calendar", required=True, help="calendar JSON file (Calendar.to_json)")
        p.add_argument("--at", required=True, help="activation moment, UTC ISO 8601 minute")
        p.add_argument("--manual", action="store_true", help="activate by BP13, not the PED")
        p.add_argument("--self-read", action="store_true", help="self read before activation")
        p.add_argument("--demand-reset", action="store_true", help="demand reset before it")
    elif kind in KINDS:
        p.add_argument("of", type=int, help="the tou job id")
    elif kind == "clock-sync":
        p.add_argument("--tz-min", type=int, help="the fleet's time-zone offset, minutes (BT53)")
        p.add_argument("--dst-min", type=int, default=60, help="DST adjustment, minutes (BT53)")
        p.add_argument("--dst-time", default="02:00:00", help="DST switch time of day (BT53)")
        p.add_argument("--fix-offset", action="store_true", help="write BT53 where it differs")


def cli_params(args: Any, store: Any) -> Optional[Dict[str, Any]]:
    """The job parameters from ``add_cli_arguments``' arguments (None: not
    ours); a job that follows a ``tou`` job targets its meters."""
    kind = args.op_kind
    if kind == "tou":
        with open(args.calendar, encoding="utf-8") as fh:
            cal = Calendar.from_json(json.load(fh))
        at = _dt.datetime.fromisoformat(args.at).replace(tzinfo=_dt.timezone.utc).timestamp()
        params = tou_params(cal, at, self_read=args.self_read,
                            demand_reset=args.demand_reset, manual=args.manual)  # fmt: skip
        params["guard_s"] = GUARD_S
        return params
    if kind in KINDS:  # the tou job's targets unless --device says otherwise
        args.device = args.device or [o.device_id for o in store.outcomes(args.of)]
        return {**store.job(args.of).params, "of": args.of}
    if kind == "clock-sync" and args.tz_min is not None:
        h, mi, sec = (int(x) for x in args.dst_time.split(":"))
        return clock_params(args.tz_min, args.dst_min, (h, mi, sec), fix_offset=args.fix_offset)
    return None
