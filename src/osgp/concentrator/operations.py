"""Fleet operations: one action on a set of meters as one tracked job.

:class:`Operations` runs an operation (clock synchronisation, disconnect,
reconnect, demand reset, self read, group add or remove) on every target of
a :class:`~osgp.concentrator.store.Store` job.  Each target's outcome goes
``pending`` -> ``sent`` -> ``confirmed``, or ``failed`` with the device's
result code (a refusal is not retried), or ``given_up`` after the engine's
:class:`~osgp.concentrator.engine.StatusPolicy` attempts.  Every effect is
confirmed by reading it back from the meter, never taken from the
procedure's own answer alone.

What is on the store is enough to go on after a restart (:meth:`resume`):
a target already confirmed is never touched again, and a target left
``sent`` (the request may or may not have reached the meter) is first read:
its ``sent`` detail keeps the counter or state seen before the request, so
a demand reset or self read the meter already did is confirmed, not done
twice.

Procedure parameter layouts are the simulator's (``osgp.sim.layouts``,
INFERRED where it says so): BP10 SET_DATE_TIME (ANSI C12.19), EP12 self
read, EP16 clock delta, EP23 contactor, EP27 groups, EP34 demand reset.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Dict, Generator, Iterable, List, Optional

from osgp import tables
from osgp.concentrator import keyrenewal
from osgp.concentrator.collect import read_dims
from osgp.concentrator.engine import Concentrator, Meter, Task
from osgp.concentrator.firmware import FirmwareRunner, firmware_params
from osgp.concentrator.keyrenewal import KeyNotConfirmed
from osgp.errors import DeviceError, ProtocolError
from osgp.services.procedures import ProcedureError
from osgp.session.events import Operation, Priority
from osgp.tables import TimeDate

__all__ = [
    "Operations",
    "NotConfirmed",
    "Kind",
    "KINDS",
    "TASKS",
    "kinds",
    "CLOCK_THRESHOLD_S",
    "CLOCK_STEP_S",
]

TaskGen = Generator[Operation, Any, Any]

ET = 2048  # manufacturer table flag (ETnn = 2048 + nn)
BP10 = 10  # SET_DATE_TIME (ANSI C12.19 standard procedure 10)
EP12, EP16, EP23, EP27, EP34 = 12, 16, 23, 27, 34  # called with mfg=True
SET_TIME, SET_DATE = 1, 2  # BP10 SET_MASK bits b0 time, b1 date
GROUP_ADD, GROUP_REMOVE = 0, 1  # EP27 ACTION
MAX_GROUPS = 10  # ET11 NBR_GROUP_IDS (Optical guide p.41)

#: Below this drift (seconds) a clock is left alone: a PLC exchange takes
#: seconds, which is how well a drift can be measured over it.
CLOCK_THRESHOLD_S = 5.0
#: From this drift (seconds) up, BP10 sets date and time; below it EP16
#: adds the (small) difference.
CLOCK_STEP_S = 300.0

_BT26_HEADER = 6
_BUSY_S = 5.0  # a meter busy with another task is tried again this much later
_CLOCK_READS = 4  # BT52 reads for one drift estimate at most

KINDS = (
    "clock-sync",
    "disconnect",
    "reconnect",
    "demand-reset",
    "self-read",
    "group-add",
    "group-remove",
    keyrenewal.KIND,
    "firmware",  # osgp.concentrator.firmware
)


@dataclass(frozen=True)
class Kind:
    """An operation kind another module defines: ``task(operations, meter,
    run)``, the check of its parameters when a job is submitted (raises
    :class:`~osgp.errors.ProtocolError`) and its line in ``osgp op --help``."""

    task: Callable[..., Any]
    check: Optional[Callable[[Dict[str, Any]], None]] = None
    help: str = ""


#: The registry of the kinds other modules define (``osgp.concentrator.ops_control``,
#: ``osgp.concentrator.tariffs``): kind -> :class:`Kind`, taken before the kinds
#: above.  ``osgp op``, :meth:`Operations.submit` and :meth:`Operations.resume`
#: all look kinds up here.
TASKS: Dict[str, Kind] = {}


def kinds() -> tuple:
    """Every operation kind, those of :data:`KINDS` first, each once."""
    return tuple(dict.fromkeys((*KINDS, *TASKS)))


class NotConfirmed(ProtocolError):
    """The meter answered, but reading it back does not show the effect."""


@dataclass
class _Run:
    job_id: int
    kind: str
    params: Dict[str, Any]
    before: Optional[Dict[str, Any]] = None  # what the ``sent`` detail kept


def _ctx(dims: Dict[int, bytes]) -> Dict[str, bytes]:
    return {f"BT{k:02d}": v for k, v in dims.items()}


def _utc_of(bt52: bytes) -> Optional[float]:
    """BT52 CLOCK_CALENDAR as UTC epoch seconds; None when it is no date
    (month 13, a zero date: a clock never set, or garbled)."""
    t = tables.decode(52, bt52)["CLOCK_CALENDAR"].to_datetime()
    return None if t is None else t.timestamp()


def _seconds(x: float) -> Optional[float]:
    """A drift for an outcome's JSON detail: None for a clock that is no date."""
    return round(x, 3) if math.isfinite(x) else None


class Operations:
    """Operations on the meters of a :class:`Concentrator` as store jobs.

    ``clock_threshold_s`` / ``clock_step_s``: see :data:`CLOCK_THRESHOLD_S`
    and :data:`CLOCK_STEP_S`; ``priority``: of the sessions' exchanges;
    ``settle_s``: how long a resumed target left ``sent`` waits before it is
    read (a request the previous process sent may still reach the meter)."""

    def __init__(
        self,
        eng: Concentrator,
        *,
        clock_threshold_s: float = CLOCK_THRESHOLD_S,
        clock_step_s: float = CLOCK_STEP_S,
        priority: int = Priority.OPERATION,
        settle_s: float = 60.0,
    ) -> None:
        self.eng, self.store = eng, eng.store
        self.settle_s = settle_s
        self.clock_threshold_s, self.clock_step_s = clock_threshold_s, clock_step_s
        self.priority = priority
        self._runs: Dict[int, _Run] = {}  # device id -> the job it runs for
        self.on_job_done: List[Callable[[int], None]] = []  # job id: no target in work any more
        eng.on_task_done.append(self._task_done)
        self.firmware_runner = FirmwareRunner(self)

    # -- the public operations ---------------------------------------------------------------
    def clock_sync(self, devices: Optional[Iterable[int]] = None) -> int:
        return self.submit("clock-sync", {}, devices)

    def disconnect(self, devices: Optional[Iterable[int]] = None) -> int:
        return self.submit("disconnect", {}, devices)

    def reconnect(self, devices: Optional[Iterable[int]] = None) -> int:
        return self.submit("reconnect", {}, devices)

    def demand_reset(self, devices: Optional[Iterable[int]] = None) -> int:
        return self.submit("demand-reset", {}, devices)

    def self_read(self, devices: Optional[Iterable[int]] = None) -> int:
        return self.submit("self-read", {}, devices)

    def group_add(self, group: int, devices: Optional[Iterable[int]] = None) -> int:
        return self.submit("group-add", {"group": group}, devices)

    def group_remove(self, group: int, devices: Optional[Iterable[int]] = None) -> int:
        return self.submit("group-remove", {"group": group}, devices)

    def key_renewal(self, devices: Optional[Iterable[int]] = None) -> int:
        """Renew each meter's unicast key (osgp.concentrator.keyrenewal)."""
        return self.submit(keyrenewal.KIND, {}, devices)

    def firmware(
        self,
        image: bytes,
        version: int,
        group: int,
        devices: Optional[Iterable[int]] = None,
        **kw: Any,
    ) -> int:
        """Download ``image`` (firmware word ``version``) to the meters of
        broadcast ``group``; ``kw``: :func:`~osgp.concentrator.firmware.firmware_params`."""
        return self.submit("firmware", firmware_params(image, version, group, **kw), devices)

    def submit(self, kind: str, params: Dict[str, Any], devices: Optional[Iterable[int]]) -> int:
        """Create the job (every meter of the concentrator by default) and start it."""
        if kind not in KINDS and kind not in TASKS:
            raise ProtocolError(f"operations: unknown operation {kind!r} (one of {kinds()})")
        if kind.startswith("group-"):
            g = params.get("group")
            if not isinstance(g, int) or not 0 < g < 0xFFFF:
                raise ProtocolError(f"operations: group id must be 1..65534, not {g!r}")
        check = TASKS[kind].check if kind in TASKS else None
        if check is not None:
            check(params)
        ids = list(self.eng.meters) if devices is None else list(devices)
        unknown = [d for d in ids if d not in self.eng.meters]
        if unknown:
            raise ProtocolError(f"operations: devices {unknown} are not on this concentrator")
        job_id = self.store.create_job(kind, params, ids, at=self._utc())
        self._run_job(job_id)
        return job_id

    def resume(self) -> List[int]:
        """Go on with every open operation job of the store: its pending,
        failed and sent targets (the ids of the jobs taken up)."""
        taken = []
        for job in self.store.jobs(open_only=True):
            if job.kind in KINDS or job.kind in TASKS:
                self._run_job(job.id)
                taken.append(job.id)
        return taken

    def report(self, job_id: int) -> Dict[int, Any]:
        """Device id -> its :class:`~osgp.concentrator.store.Outcome`."""
        return {o.device_id: o for o in self.store.outcomes(job_id)}

    @property
    def idle(self) -> bool:
        """No target of any job is still being worked on."""
        return not self._runs and self.firmware_runner.idle

    # -- running -----------------------------------------------------------------------------
    def _utc(self) -> float:
        return self.eng.runtime.utc(self.eng.runtime.time())

    def _run_job(self, job_id: int) -> None:
        job = self.store.job(job_id)
        if job.kind == "firmware":
            return self.firmware_runner.run(job_id)
        for o in self.store.outcomes(job_id):
            if o.state not in ("pending", "failed", "sent"):
                continue
            m = self.eng.meters.get(o.device_id)
            if m is None or o.device_id in self._runs:
                continue
            before = json.loads(o.detail) if o.state == "sent" and o.detail else None
            self._runs[o.device_id] = _Run(job_id, job.kind, dict(job.params), before)
            if before is None:
                self._launch(m)
            else:
                rt = self.eng.runtime
                rt.call_at(rt.time() + self.settle_s, partial(self._launch, m))

    def _launch(self, m: Meter, now: Optional[float] = None) -> None:
        run = self._runs[m.device_id]
        if m.busy:  # a collection or another task first
            self.eng.runtime.call_at(self.eng.runtime.time() + _BUSY_S, partial(self._launch, m))
            return
        self.eng.start(m, self._task(m, run), "op:" + run.kind, job_id=run.job_id)

    def _task_done(self, task: Task) -> None:
        m = task.meter
        run = self._runs.get(m.device_id)
        if run is None or task.job_id != run.job_id or not task.name.startswith("op:"):
            return
        eng, at = self.eng, self._utc()
        self._save_session(m)
        err = task.error
        if err is None:
            eng.succeeded(m)
            self.store.set_outcome(run.job_id, m.device_id, "confirmed", at=at, detail=task.result)
        elif isinstance(err, (DeviceError, ProcedureError, NotConfirmed, KeyNotConfirmed)):
            eng.succeeded(m)  # the meter answered: the route is fine
            code = err.code if isinstance(err, DeviceError) else getattr(err, "result", None)
            self.store.set_outcome(
                run.job_id, m.device_id, "failed", at=at, code=code, detail=str(err)
            )
        elif eng.failed(m, err):
            eng.runtime.call_at(eng.runtime.time() + eng.policy.retry_s, partial(self._launch, m))
            return
        else:
            self.store.set_outcome(run.job_id, m.device_id, "given_up", at=at, detail=str(err))
        del self._runs[m.device_id]
        if all(r.job_id != run.job_id for r in self._runs.values()):
            for cb in list(self.on_job_done):
                cb(run.job_id)

    def _sent(self, m: Meter, run: _Run, before: Dict[str, Any]) -> None:
        """The request is about to go: keep what it is checked against."""
        run.before = before
        self._save_session(m)
        self.store.set_outcome(
            run.job_id, m.device_id, "sent", at=self._utc(), detail=json.dumps(before)
        )

    def _save_session(self, m: Meter) -> None:
        """Keep the session's sequence state: a session restarted from an
        older one repeats link transaction numbers the meter answers from
        its cache (a stale answer)."""
        self.store.set_cursor(m.device_id, *self.eng.save_session(m))

    # -- the tasks -----------------------------------------------------------------------------
    def _task(self, m: Meter, run: _Run) -> TaskGen:
        kind = run.kind
        if kind in TASKS:
            return (yield from TASKS[kind].task(self, m, run))
        if kind == "clock-sync":
            return (yield from self._clock(m, run))
        if kind in ("disconnect", "reconnect"):
            return (yield from self._contactor(m, run, kind == "reconnect"))
        if kind == "demand-reset":
            return (yield from self._counted(m, run, EP34, self._demand_resets, 0xFF))
        if kind == keyrenewal.KIND:
            return (yield from keyrenewal.renew(self, m, run))
        if kind == "self-read":
            return (yield from self._counted(m, run, EP12, self._self_reads, 0xFFFF))
        return (yield from self._group(m, run, kind == "group-add"))

    def _call(self, m: Meter, number: int, params: bytes = b"", *, mfg: bool = True) -> TaskGen:
        assert m.session is not None
        return (yield m.session.call(number, params, mfg=mfg, priority=self.priority))

    def _read(self, m: Meter, table: int) -> TaskGen:
        assert m.session is not None
        return (yield m.session.read(table, priority=self.priority))

    def _drift(self, m: Meter) -> TaskGen:
        """(drift, bound): the meter clock minus the concentrator's UTC and
        how far off that can be.  BT52 holds whole seconds (ANSI C12.19
        LTIME_DATE) read at some moment between the request and the answer
        (an answer repeated after a loss is the old one), so the estimate is
        the middle of both ranges; a read that took too long is done again.
        A BT52 that is no date is infinitely far off: BP10 sets it."""
        assert m.session is not None
        best = (0.0, float("inf"))
        for _ in range(_CLOCK_READS):
            t0 = self._utc()
            bt52 = yield m.session.read(52, priority=self.priority)
            t1 = self._utc()
            utc = _utc_of(bt52)
            if utc is None:
                return math.inf, 0.0
            est = (utc + 0.5 - (t0 + t1) / 2, 0.5 + (t1 - t0) / 2)
            best = min(best, est, key=lambda x: x[1])
            if best[1] <= self.clock_threshold_s / 2:
                break
        return best

    def _clock(self, m: Meter, run: _Run) -> TaskGen:
        """Up to two steps: BP10 for a large drift (it lands within the
        exchange's latency), then EP16 for what is left."""
        drift, bound = yield from self._drift(m)
        first = drift
        actions: List[str] = []
        for _ in range(2):
            if abs(drift) < self.clock_threshold_s:
                break
            if not actions:
                self._sent(m, run, {"drift_s": _seconds(drift)})
            if abs(drift) >= self.clock_step_s:
                actions.append("BP10")
                utc = datetime.fromtimestamp(round(self._utc()), timezone.utc)
                image = tables.encode(52, {"CLOCK_CALENDAR": TimeDate.from_datetime(utc)})
                # SET_MASK (time and date), then the BT52 image (ANSI C12.19 SET_DATE_TIME)
                yield from self._call(m, BP10, bytes([SET_TIME | SET_DATE]) + image, mfg=False)
            else:
                actions.append("EP16")
                yield from self._call(m, EP16, struct.pack("<i", -round(drift)))
            drift, bound = yield from self._drift(m)
        if abs(drift) >= self.clock_threshold_s:
            off = f"{drift:+.1f} s off" if math.isfinite(drift) else "no date"
            raise NotConfirmed(f"clock still {off} after {'+'.join(actions)}")
        return json.dumps(
            {"drift_s": _seconds(first), "actions": actions, "after_s": _seconds(drift)}
        )

    def _open(self, m: Meter, bit: int = 0) -> TaskGen:
        """True when BT03 ED_MFG_STATUS bit ``bit`` is set: the contactor
        (bit 0) or a control relay (bits 3, 4, osgp.sim.control) is open (the
        simulator's own choices, osgp.sim.meter; a real meter's are its maker's)."""
        yield from read_dims(m.session, m.dims, self.priority)
        bt03 = yield from self._read(m, 3)
        status = tables.decode(3, bt03, _ctx(m.dims))["ED_MFG_STATUS"]
        if bit >= len(status):  # 8 bits a byte of BT00 DIM_MFG_STATUS_USED (ANSI C12.19 BT03)
            raise NotConfirmed(
                f"BT03 ED_MFG_STATUS has {len(status)} bits, no bit {bit}"
                " (BT00 DIM_MFG_STATUS_USED)"
            )
        return bool(status[bit])

    def _switch(
        self, m: Meter, run: _Run, bit: int, close: bool, call: tuple, what: str, **detail: Any
    ) -> TaskGen:
        """Close or open the output BT03 bit ``bit`` shows by procedure
        ``call`` (number, parameters) unless it already is, confirmed by BT03
        read back; ``detail`` leads the outcome's detail."""
        want_open = not close
        if (yield from self._open(m, bit)) == want_open:
            return json.dumps({**detail, "open": want_open, "action": "none"})
        self._sent(m, run, {**detail, "open": not want_open})
        yield from self._call(m, *call)
        if (yield from self._open(m, bit)) != want_open:
            raise NotConfirmed(f"{what} not {'closed' if close else 'open'} after EP{call[0]:02d}")
        return json.dumps({**detail, "open": want_open, "action": f"EP{call[0]:02d}"})

    def _contactor(self, m: Meter, run: _Run, close: bool) -> TaskGen:
        return (yield from self._switch(m, run, 0, close, (EP23, bytes([close])), "contactor"))

    def _demand_resets(self, m: Meter) -> TaskGen:
        """BT23 NBR_DEMAND_RESETS (ANSI C12.19; present when BT21 says so)."""
        yield from read_dims(m.session, m.dims, self.priority)
        bt23 = yield from self._read(m, 23)
        d = tables.decode(23, bt23, _ctx(m.dims))
        if "NBR_DEMAND_RESETS" not in d:
            raise NotConfirmed("BT23 has no demand reset counter (BT21 DEMAND_RESET_CTR_FLAG)")
        return int(d["NBR_DEMAND_RESETS"])

    def _self_reads(self, m: Meter) -> TaskGen:
        """BT26 LAST_ENTRY_SEQ_NUMBER, or -1 with no valid entry, from the
        list header alone (bytes 0..5: status, valid entries, last element,
        last sequence number UINT16, unread entries; Optical guide p.28-29)."""
        assert m.session is not None
        head = yield m.session.read(26, 0, _BT26_HEADER, priority=self.priority)
        if len(head) < _BT26_HEADER:
            raise NotConfirmed(f"BT26 header of {len(head)} bytes, not {_BT26_HEADER}")
        return int.from_bytes(head[3:5], "little") if head[1] else -1

    def _counted(self, m: Meter, run: _Run, number: int, count: Any, mod: int) -> TaskGen:
        """A procedure each call of which moves a counter on by one: a
        target left ``sent`` whose counter moved is done already."""
        now = yield from count(m)
        if run.before is not None and now != run.before["count"]:
            return json.dumps({"count": now, "action": "none"})
        self._sent(m, run, {"count": now})
        yield from self._call(m, number)
        after = yield from count(m)
        if after != (now + 1) % (mod + 1):
            raise NotConfirmed(f"counter {now} -> {after} after procedure {number}")
        return json.dumps({"count": after, "action": f"EP{number}"})

    def _groups(self, m: Meter) -> TaskGen:
        """The meter's group ids from ET33 (osgp.tables.control, INFERRED),
        sized by ET11 NBR_GROUP_IDS."""
        ctx = {"ET11": (yield from _more._et11(self, m))}
        d = tables.decode(ET + 33, (yield from self._read(m, ET + 33)), ctx)
        return [int(g) for g in d["GROUP_IDS"][: d["NBR_GROUPS"]] if g]

    def _group(self, m: Meter, run: _Run, add: bool) -> TaskGen:
        """EP27 (osgp.sim.layouts, INFERRED) only when ET33 does not list the
        meter in the state asked for, confirmed by ET33 read back; a second
        call with the same group changes nothing, so a retry is harmless."""
        g = int(run.params["group"])
        have = yield from self._groups(m)
        if (g in have) == add:
            return json.dumps({"group": g, "groups": have, "action": "none"})
        self._sent(m, run, {"group": g, "groups": have})
        action = GROUP_ADD if add else GROUP_REMOVE
        data = yield from self._call(m, EP27, struct.pack("<BH", action, g))
        if len(data) != 1 or data[0] > MAX_GROUPS:
            raise NotConfirmed(f"EP27 answered {bytes(data).hex()}, not a group count")
        have = yield from self._groups(m)
        if (g in have) != add or len(have) != data[0]:
            raise NotConfirmed(f"after EP27 (count {data[0]}) ET33 lists groups {have}")
        return json.dumps({"group": g, "groups": have, "action": "EP27"})


from osgp.concentrator import ops_control as _more  # noqa: E402  (more operation kinds)
