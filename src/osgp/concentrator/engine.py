"""The concentrator core: meters, their routes and sessions, and jobs run as
tasks over the sans-IO sessions.

A *task* is a generator that yields :class:`~osgp.session.Operation` handles
of one meter's :class:`~osgp.session.ClientSession` and receives each one's
result (or has its error thrown in).  The engine resumes a task when the
session reports the operation :class:`~osgp.session.Completed` or
:class:`~osgp.session.Failed`, so the same task code runs on the simulated
network's virtual clock, on an asyncio loop, and synchronously over one
serial port (:func:`run_task`).

Nothing here reads a clock: a :class:`Runtime` gives ``time()`` (monotonic
seconds), ``utc(now)`` and ``call_at``; channels (one router and arbiter per
medium) move the frames.  Everything the engine must not lose is in the
:class:`~osgp.concentrator.store.Store`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, Iterable, List, Optional, Protocol, Tuple

from osgp.concentrator import suites
from osgp.errors import DATA_DEFECTS, OSGPError, ProtocolError, ResponseTimeout, data_defect
from osgp.link import lon
from osgp.link.carrier import PlcCarrier, ProxyFailed
from osgp.session import ClientSession
from osgp.session.events import Completed, Failed, Operation

log = logging.getLogger("osgp.concentrator")

__all__ = [
    "Runtime",
    "Channel",
    "Meter",
    "Concentrator",
    "StatusPolicy",
    "Task",
    "Write",
    "run_task",
    "NORMAL",
    "TEMPORARY_FAULT",
    "PERMANENT_FAULT",
]

TaskGen = Generator[Any, Any, Any]  # yields Operation or Write handles

# meter status (issue model: temporary fault after failed retries, permanent
# after a time in temporary fault, back to normal on the next success)
NORMAL, TEMPORARY_FAULT, PERMANENT_FAULT = "normal", "temporary_fault", "permanent_fault"
KEY_PURPOSE = suites.LEGACY_PURPOSE  # the 12-byte OMA key of the legacy PLC suite
_STREAMS = ("dims", "session", "lp")  # the cursors a meter is loaded with


class Runtime(Protocol):
    """Time and timers of whatever drives the concentrator."""

    def time(self) -> float: ...

    def utc(self, now: float) -> float: ...

    def call_at(self, t: float, fn: Callable[[float], None]) -> None: ...


class Channel(Protocol):
    """One shared medium: the router and arbiter its sessions live on."""

    name: str
    concentrator: lon.SubnetNode
    on_events: Optional[Callable[[List[Any]], None]]  # set by the engine

    def attach(self, session: Any) -> None: ...

    def detach(self, session: Any) -> None: ...


@dataclass(frozen=True)
class StatusPolicy:
    """When a meter changes status: ``attempts`` task attempts in a round
    (each over the next route), ``retry_s`` between them, ``permanent_s`` in
    temporary fault before the fault is called permanent; ``idle_retry_s``:
    how soon a retry may go instead when its channel has nothing else
    waiting (the wait then costs channel time for nothing)."""

    attempts: int = 4
    retry_s: float = 120.0
    permanent_s: float = 3 * 86400.0
    idle_retry_s: float = 10.0


@dataclass
class Meter:
    """What the engine keeps in memory about one meter (the store has the rest)."""

    device_id: int
    neuron: bytes
    channel: Channel
    address: lon.SubnetNode
    key: bytes
    routes: List[Any]  # store Route rows, best first
    status: str = NORMAL
    fault_since: Optional[float] = None
    route_index: int = 0
    session: Optional[ClientSession] = None
    dims: Dict[int, bytes] = field(default_factory=dict)  # dimension tables by id
    cache: Dict[str, Any] = field(default_factory=dict)  # what tasks derive from dims
    cursors: Dict[str, Any] = field(default_factory=dict)  # as last committed, by stream
    busy: bool = False
    attempts: int = 0
    purpose: str = KEY_PURPOSE  # of the key: which suite (osgp.concentrator.suites)

    @property
    def route(self) -> Any:
        return self.routes[self.route_index] if self.routes else None

    @property
    def path(self) -> List[lon.SubnetNode]:
        r = self.route
        return [lon.SubnetNode(s, n) for s, n in (r.path if r is not None else [])]


class Task:
    """A running job step sequence of one meter."""

    __slots__ = ("meter", "gen", "name", "job_id", "done", "result", "error", "ops")

    def __init__(self, meter: Meter, gen: TaskGen, name: str, job_id: Optional[int]) -> None:
        self.meter, self.gen, self.name, self.job_id = meter, gen, name, job_id
        self.done = False
        self.result: Any = None
        self.error: Optional[OSGPError] = None
        self.ops = 0


TaskFactory = Callable[["Concentrator", Meter], TaskGen]


class Write:
    """A store write a task yields and waits for, like an operation
    (:meth:`Concentrator.write`); ``result`` / ``error`` once ``done``."""

    __slots__ = ("fn", "args", "kwargs", "done", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: Dict[str, Any]) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.done = False
        self.result: Any = None
        self.error: Optional[OSGPError] = None

    def run(self) -> None:
        try:
            self.result, self.error = self.fn(*self.args, **self.kwargs), None
        except OSGPError as exc:
            self.result, self.error = None, exc


class Concentrator:
    """Meters on channels, and the tasks that act on them.

    ``store``: :class:`~osgp.concentrator.store.Store` (keys need a vault);
    ``runtime``: time and timers; ``policy``: the status rules.
    ``write_batch_s``: when not None, the store writes tasks :meth:`write`
    within that many seconds of each other share one transaction (the
    tasks resume after its commit); None: each is its own, at once."""

    def __init__(
        self,
        store: Any,
        runtime: Runtime,
        *,
        policy: StatusPolicy = StatusPolicy(),
        write_batch_s: Optional[float] = None,
    ) -> None:
        self.store, self.runtime, self.policy = store, runtime, policy
        self.write_batch_s = write_batch_s
        self._writes: List[Write] = []
        self.meters: Dict[int, Meter] = {}
        self._waiting: Dict[Any, Task] = {}  # Operation or Write -> its task
        self.stats: Counter = Counter()
        self.on_task_done: List[Callable[[Task], None]] = []

    # -- meters ----------------------------------------------------------------------------
    def add_channel(self, channel: Channel) -> Channel:
        """Take the events of ``channel``'s sessions as they happen."""
        channel.on_events = self.on_events
        return channel

    def add_meter(self, device_id: int, channel: Channel) -> Meter:
        """Load a commissioned meter from the store and open its session."""
        st = self.store
        cursors = {n: st.cursor(device_id, n) for n in _STREAMS}
        purpose, key = KEY_PURPOSE, st.key(device_id, KEY_PURPOSE)
        if key is None:  # an AES meter
            purpose, key = suites.AES_PURPOSE, st.key(device_id, suites.AES_PURPOSE)
        return self._add(st.device(device_id), purpose, key, st.routes(device_id), cursors, channel)

    def add_meters(self, channel: Channel) -> List[Meter]:
        """Load every commissioned meter of the channel's segment (the
        segment is the channel's ``name``) in one read of the store, and open
        their sessions."""
        recs = self.store.meter_records(channel.name, suites.PURPOSES, _STREAMS)
        return [
            self._add(r.device, r.purpose or KEY_PURPOSE, r.key, r.routes, r.cursors, channel)
            for r in recs
            if r.device.subnet is not None and r.device.node is not None
        ]

    def _add(
        self,
        dev: Any,
        purpose: str,
        key: Optional[bytes],
        routes: List[Any],
        cursors: Dict,
        channel: Channel,
    ) -> Meter:
        if dev.subnet is None or dev.node is None:
            raise ProtocolError(f"meter {dev.serial or dev.neuron_id.hex()} is not commissioned")
        if key is None:
            raise ProtocolError(
                f"meter {dev.serial or dev.neuron_id.hex()} has no {' or '.join(suites.PURPOSES)}"
            )
        m = Meter(
            dev.id,
            dev.neuron_id,
            channel,
            lon.SubnetNode(dev.subnet, dev.node),
            key,
            routes,
            status=dev.status if dev.status in (TEMPORARY_FAULT, PERMANENT_FAULT) else NORMAL,
            purpose=purpose,
        )
        if m.status != NORMAL and dev.status_since is not None:  # UTC in the store
            now = self.runtime.time()
            m.fault_since = now - (self.runtime.utc(now) - dev.status_since)
        if "lp" in cursors:  # None: the store has none yet (no need to ask again)
            m.cursors["lp"] = cursors["lp"]
        saved = cursors.get("dims")
        if saved:
            m.dims = {int(k): bytes.fromhex(v) for k, v in saved.items()}
        self.meters[dev.id] = m
        self._open(m, suites.open_state(self.store.vault, dev.id, cursors.get("session")))
        return m

    def _open(self, m: Meter, state: Optional[Dict[str, Any]] = None) -> None:
        """(Re)build the meter's session on its current route, keeping the
        sequence state of the session it replaces."""
        old = m.session
        if old is not None:
            state = old.state()
            m.channel.detach(old)
        carrier = PlcCarrier(
            m.address,
            src=(m.channel.concentrator.subnet, m.channel.concentrator.node),
            path=m.path,
            crc=getattr(m.channel, "crc", True),  # CN/IP carries LPDUs without the CRC
        )
        m.session = ClientSession(
            carrier,
            suites.client_suite(m.purpose, m.key, m.neuron),
            state=state,
            profile=getattr(m.channel, "link_profile", None),  # a channel's own link timers
        )
        m.channel.attach(m.session)

    def move(self, m: Meter, channel: Channel, address: lon.SubnetNode, routes: List[Any]) -> None:
        """The meter is now ``address`` on ``channel`` with ``routes`` (a
        re-evaluation found it there): its session moves, sequence state kept."""
        old = m.session
        state = old.state() if old is not None else None
        if old is not None:
            m.channel.detach(old)
            m.session = None
        self.stats["meters moved" if channel is not m.channel else "route changes"] += 1
        m.channel, m.address, m.routes, m.route_index = channel, address, routes, 0
        self._open(m, state)

    def reroute(self, m: Meter) -> bool:
        """Move to the next alternate route (False: none left)."""
        if len(m.routes) < 2:
            return False
        m.route_index = (m.route_index + 1) % len(m.routes)
        self.stats["route changes"] += 1
        self._open(m)
        return True

    # -- tasks -------------------------------------------------------------------------------
    def start(self, m: Meter, gen: TaskGen, name: str, *, job_id: Optional[int] = None) -> Task:
        task = Task(m, gen, name, job_id)
        m.busy = True
        self._advance(task, None, None)
        return task

    def on_events(self, events: Iterable[Any]) -> None:
        """Feed what the sessions reported (``Completed`` / ``Failed``)."""
        stats = self.stats
        for ev in events:
            t = type(ev)
            if t is Completed or t is Failed:
                stats["exchanges"] += ev.op.exchanges
                stats["retries"] += ev.op.retries
            if t is Completed:
                task = self._waiting.pop(ev.op, None)
                if task is not None:
                    self._advance(task, ev.result, None)
            elif t is Failed:
                task = self._waiting.pop(ev.op, None)
                if task is not None:
                    self._advance(task, None, ev.error)

    def _advance(self, task: Task, value: Any, error: Optional[OSGPError]) -> None:
        try:
            op = task.gen.send(value) if error is None else task.gen.throw(error)
        except StopIteration as stop:
            self._finish(task, stop.value, None)
        except OSGPError as exc:
            self._finish(task, None, exc)
        except DATA_DEFECTS as exc:  # a task's own defect on what a meter sent
            # fails this task alone, so the engine goes on serving the others
            self.stats["task errors"] += 1
            log.exception("task %s of meter %d raised", task.name, task.meter.device_id)
            self._finish(task, None, data_defect(task.name, exc))
        else:
            task.ops += 1
            if op.done:  # failed at once (a bad argument): resume with its outcome
                self._advance(task, op.result, op.error)
            else:
                self._waiting[op] = task

    # -- store writes --------------------------------------------------------------------------
    def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Write:
        """``fn(*args, **kwargs)`` (a store call) as a handle a task yields:
        the task resumes with its result only after it is committed, so a
        reading is in the store before the meter is told it was read."""
        w = Write(fn, args, kwargs)
        if self.write_batch_s is None:
            w.run()
            w.done = True
            return w
        if not self._writes:
            self.runtime.call_at(self.runtime.time() + self.write_batch_s, self.flush)
        self._writes.append(w)
        return w

    def write_soon(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A store write nothing waits for (a route's outcome, a job's state):
        at once, or with the next batch of :meth:`write` (a failure there is
        logged and counted in ``stats["write errors"]``)."""
        if self.write_batch_s is None:
            fn(*args, **kwargs)
            return
        if not self._writes:
            self.runtime.call_at(self.runtime.time() + self.write_batch_s, self.flush)
        self._writes.append(Write(fn, args, kwargs))

    def flush(self, _now: float = 0.0) -> None:
        """Commit the waiting writes in one transaction, then resume their tasks."""
        writes, self._writes = self._writes, []
        if not writes:
            return
        try:
            with self.store.batch():
                for w in writes:
                    w.run()
                    if w.error is not None:
                        raise w.error  # roll the others back with it
        except OSGPError:
            for w in writes:  # each alone, so one bad write fails only its task
                w.run()
        self.stats["write batches"] += 1
        for w in writes:
            w.done = True
            task = self._waiting.pop(w, None)
            if task is not None:
                self._advance(task, w.result, w.error)
            elif w.error is not None:
                self.stats["write errors"] += 1
                log.warning("store write %s failed: %s", getattr(w.fn, "__name__", w.fn), w.error)

    def _finish(self, task: Task, result: Any, error: Optional[OSGPError]) -> None:
        task.done, task.result, task.error = True, result, error
        task.meter.busy = False
        self.stats["tasks ok" if error is None else "tasks failed"] += 1
        for cb in self.on_task_done:
            cb(task)

    # -- outcomes and status -------------------------------------------------------------------
    def succeeded(self, m: Meter) -> None:
        now = self.runtime.time()
        m.attempts = 0
        r = m.route
        if r is not None:
            self.write_soon(self.store.route_outcome, r.id, True)
        if m.status != NORMAL:
            self.store.set_status(m.device_id, NORMAL, self.runtime.utc(now), "read again")
            m.status, m.fault_since = NORMAL, None

    def failed(self, m: Meter, error: OSGPError) -> bool:
        """Count a failed attempt; True when another attempt should follow
        (on the next route when the failure was the route's)."""
        now = self.runtime.time()
        m.attempts += 1
        r = m.route
        route_fault = isinstance(error, (ResponseTimeout, ProxyFailed))
        if r is not None and route_fault:
            self.write_soon(self.store.route_outcome, r.id, False)
            self.reroute(m)
        if m.attempts < self.policy.attempts:
            return True
        m.attempts = 0
        if m.status == NORMAL:
            m.status, m.fault_since = TEMPORARY_FAULT, now
            self.store.set_status(m.device_id, TEMPORARY_FAULT, self.runtime.utc(now), str(error))
        elif (
            m.status == TEMPORARY_FAULT
            and m.fault_since is not None
            and now - m.fault_since >= self.policy.permanent_s
        ):
            m.status = PERMANENT_FAULT
            self.store.set_status(m.device_id, PERMANENT_FAULT, self.runtime.utc(now), str(error))
        return False

    def save_session(self, m: Meter) -> Tuple[str, Dict[str, Any]]:
        """The cursor entry that keeps the session's sequence state."""
        assert m.session is not None
        return ("session", suites.seal_state(self.store.vault, m.device_id, m.session.state()))


def run_task(session: Any, gen: TaskGen, drive: Callable[[Any, Operation], Any]) -> Any:
    """Run a task synchronously: ``drive(session, op)`` runs one operation to
    its end (e.g. :func:`osgp.transport.run_until_complete`) and returns or
    raises its outcome."""
    value: Any = None
    error: Optional[OSGPError] = None
    while True:
        try:
            op = gen.send(value) if error is None else gen.throw(error)
        except StopIteration as stop:
            return stop.value
        except DATA_DEFECTS as exc:  # as Concentrator._advance: an error of the hierarchy
            raise data_defect("task", exc) from exc
        value, error = None, None
        try:
            value = drive(session, op)
        except OSGPError as exc:
            error = exc
