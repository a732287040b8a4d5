"""Collection rounds: every meter of a set read once, each failure retried
over its alternate routes, outcomes and metrics kept in the store.

How many exchanges are on the air at a time is the channels' business
(their arbiters allow one outstanding exchange per half-duplex segment
unless the medium allows more), not a constant here.  A round keeps twice
that many meters of a channel in collection at once and starts the next as
one ends: a meter's exchanges then follow each other closely (a collection
spread over the whole round would see its load profile move under it), and
the channel still always has a request ready.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple

from osgp.concentrator.collect import collect
from osgp.concentrator.engine import PERMANENT_FAULT, Concentrator, Meter, Task
from osgp.errors import ConfigurationError, OSGPError
from osgp.session.events import Priority

__all__ = ["Round", "Collector", "periodic"]


@dataclass
class Round:
    """One collection round's outcome."""

    name: str
    started: float
    meters: int
    ok: int = 0
    failed: int = 0
    retries: int = 0
    stored: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    finished: Optional[float] = None
    cpu_s: float = 0.0
    job_id: Optional[int] = None
    # per channel: seconds from the round's start to its last meter's end
    spans: Dict[str, float] = field(default_factory=dict)
    missed: List[int] = field(default_factory=list)  # device ids not read
    # per channel: reads_ok, reads_failed, retries (the store's daily metrics)
    by_channel: Dict[str, Counter] = field(default_factory=dict)
    # per channel: (the channel, its airtime at the start) where it counts airtime
    air0: Dict[str, tuple] = field(default_factory=dict)
    # what to call once the round is done (a catch-up waiting for it)
    when_done: List[Callable[[], None]] = field(default_factory=list, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.ok + self.failed == self.meters

    @property
    def success_rate(self) -> float:
        return self.ok / self.meters if self.meters else 1.0


# what a meter in permanent fault is not asked for: a round only probes it (its registers)
_PROBE = dict(load_profile=False, events=False, self_reads=False, present=False)


class Collector:
    """Runs collection rounds on a :class:`Concentrator`.

    ``registers`` / ``load_profile`` / ``events`` / ``self_reads`` /
    ``present``: what a round reads (:func:`~osgp.concentrator.collect.collect`);
    ``on_round_done``: called with the :class:`Round` when its last meter
    ends."""

    def __init__(
        self,
        eng: Concentrator,
        *,
        registers: bool = True,
        load_profile: bool = True,
        events: bool = True,
        self_reads: bool = True,
        present: bool = False,
        priority: int = Priority.SCHEDULED,
        on_round_done: Optional[Callable[[Round], None]] = None,
    ) -> None:
        self.eng = eng
        self.what = dict(
            registers=registers,
            load_profile=load_profile,
            events=events,
            self_reads=self_reads,
            present=present,
        )
        self.priority = priority
        self.on_round_done = on_round_done
        self.rounds: List[Round] = []
        self._active: Dict[int, Round] = {}  # device id -> its round
        self._waiting: Dict[str, Deque[Tuple[Meter, Round]]] = {}  # per channel
        self._running: Counter = Counter()  # collections in progress per channel
        # per channel: device id -> (earliest, meter, round) of a retry not yet due
        self._deferred: Dict[str, Dict[int, Tuple[float, Meter, Round]]] = {}
        self._on: Dict[int, str] = {}  # device id -> the channel its collection counts on
        self._pending_catch_ups = 0  # asked for, waiting for their round or their time
        eng.on_task_done.append(self._task_done)

    def start_round(self, name: str, meters: Optional[Iterable[Meter]] = None) -> Round:
        eng = self.eng
        now = eng.runtime.time()
        todo = [
            m
            for m in (meters if meters is not None else eng.meters.values())
            if not m.busy and m.device_id not in self._active
        ]
        r = Round(name, now, len(todo))
        r.job_id = eng.store.create_job(
            "collect",
            dict(self.what, round=name),
            [m.device_id for m in todo],
            at=eng.runtime.utc(now),
        )
        self.rounds.append(r)
        for m in todo:
            air = getattr(m.channel, "airtime_s", None)
            if air is not None and m.channel.name not in r.air0:
                r.air0[m.channel.name] = (m.channel, air)
        t0 = time.process_time()
        for m in todo:
            self._active[m.device_id] = r
            self._enqueue(m, r)
        r.cpu_s += time.process_time() - t0
        if not todo:
            self._close(r)
        return r

    def catch_up(
        self,
        r: Round,
        name: str = "catch-up",
        *,
        not_before: Optional[float] = None,
        every_s: Optional[float] = None,
        until: Optional[float] = None,
    ) -> None:
        """A round of the meters ``r`` missed, started once ``r`` is done and
        not before ``not_before``: a meter ``r`` is still retrying counts as
        missed only when its last attempt has failed.

        A missed meter busy with another task when the catch-up starts is
        not in it and counts among its misses.

        With ``every_s``, each catch-up's own misses get another catch-up,
        started once it is done and at least ``every_s`` after it started,
        until none is missed or the next would start at or after ``until``
        (a run-time in seconds; no limit when None)."""
        if every_s is not None and every_s <= 0:
            raise ConfigurationError("catch_up: every_s must be positive")
        if not r.done:
            self._pending_catch_ups += 1
            r.when_done.append(partial(self._catch_up_due, r, name, not_before, every_s, until))
            return
        rt = self.eng.runtime
        now = rt.time()
        start = now if not_before is None else max(now, not_before)
        if until is not None and start >= until:
            return
        if start > now:
            self._pending_catch_ups += 1
            rt.call_at(start, lambda _at: self._catch_up_due(r, name, None, every_s, until))
            return
        missed = [self.eng.meters[d] for d in r.missed if d in self.eng.meters]
        if not missed:
            return
        c = self.start_round(name, missed)
        # a meter busy with another task is not in the catch-up: still missed
        c.missed += [m.device_id for m in missed if self._active.get(m.device_id) is not c]
        if every_s is not None:
            self.catch_up(c, name, not_before=c.started + every_s, every_s=every_s, until=until)

    def _catch_up_due(
        self,
        r: Round,
        name: str,
        not_before: Optional[float],
        every_s: Optional[float],
        until: Optional[float],
    ) -> None:
        self._pending_catch_ups -= 1
        self.catch_up(r, name, not_before=not_before, every_s=every_s, until=until)

    @property
    def idle(self) -> bool:
        """Whether every round is done and no catch-up waits to start."""
        return self._pending_catch_ups == 0 and all(r.done for r in self.rounds)

    def _enqueue(self, m: Meter, r: Round) -> None:
        self._waiting.setdefault(m.channel.name, deque()).append((m, r))
        self._pump(m.channel)

    def _pump(self, channel: Any) -> None:
        """Start waiting collections while the channel has room for them."""
        name, queue = channel.name, self._waiting.get(channel.name)
        arbiter = getattr(channel, "arbiter", None)
        room = 2 * (arbiter.max_outstanding if arbiter is not None else 1)
        while queue and self._running[name] < room:
            m, r = queue.popleft()
            if m.busy:
                continue
            self._running[name] += 1
            self._launch(m, r)
        deferred = self._deferred.get(name)
        if deferred and not queue and self._running[name] < room:
            # nothing else waits: a retry need not wait its whole retry_s
            now = self.eng.runtime.time()
            for dev, (earliest, m, r) in sorted(deferred.items(), key=lambda kv: kv[1][0]):
                if earliest > now or self._running[name] >= room:
                    break
                del deferred[dev]
                if not m.busy:
                    self._running[name] += 1
                    self._launch(m, r)

    def _pump_at(self, channel: Any, now: float) -> None:
        self._pump(channel)

    def _launch(self, m: Meter, r: Round) -> None:
        self._on[m.device_id] = m.channel.name  # counted there even if the meter moves
        what = self.what
        if m.status == PERMANENT_FAULT:
            what = dict(what, **_PROBE)
        self.eng.start(
            m,
            collect(self.eng, m, priority=self.priority, **what),
            "collect",
            job_id=r.job_id,
        )

    def _task_done(self, task: Task) -> None:
        if task.name != "collect":
            return
        m = task.meter
        self._running[self._on.pop(m.device_id, m.channel.name)] -= 1
        r = self._active.get(m.device_id)
        if r is None:
            self._pump(m.channel)
            return
        t0 = time.process_time()
        eng, store, at = self.eng, self.eng.store, self.eng.runtime.utc(self.eng.runtime.time())
        counts = r.by_channel.setdefault(m.channel.name, Counter())
        if task.error is None:
            counts["reads_ok"] += 1
            eng.succeeded(m)
            r.ok += 1
            r.stored.update(task.result)
            eng.write_soon(store.set_outcome, r.job_id, m.device_id, "confirmed", at=at)
            del self._active[m.device_id]
        else:
            err: OSGPError = task.error
            r.errors[type(err).__name__] += 1
            routes = eng.stats["route changes"]
            again = eng.failed(m, err)
            counts["route_changes"] += eng.stats["route changes"] - routes
            if again:
                r.retries += 1
                counts["retries"] += 1
                eng.write_soon(
                    store.set_outcome, r.job_id, m.device_id, "sent", at=at, detail=str(err)
                )
                now = eng.runtime.time()
                soon = now + min(eng.policy.idle_retry_s, eng.policy.retry_s)
                entry = (soon, m, r)
                self._deferred.setdefault(m.channel.name, {})[m.device_id] = entry
                eng.runtime.call_at(now + eng.policy.retry_s, partial(self._retry, entry))
                eng.runtime.call_at(soon, partial(self._pump_at, m.channel))
            else:
                r.failed += 1
                counts["reads_failed"] += 1
                r.missed.append(m.device_id)
                code = getattr(err, "code", None)
                eng.write_soon(
                    store.set_outcome,
                    r.job_id,
                    m.device_id,
                    "failed",
                    at=at,
                    code=code,
                    detail=str(err),
                )
                del self._active[m.device_id]
        if m.device_id not in self._active:
            name = m.channel.name
            r.spans[name] = max(r.spans.get(name, 0.0), eng.runtime.time() - r.started)
        self._pump(m.channel)
        r.cpu_s += time.process_time() - t0
        if r.done:
            self._close(r)

    def _retry(self, entry: Tuple[float, Meter, Round], now: float) -> None:
        _, m, r = entry
        deferred = self._deferred.get(m.channel.name, {})
        if deferred.get(m.device_id) is not entry:
            return  # it went earlier, on an idle channel
        del deferred[m.device_id]
        t0 = time.process_time()
        self._enqueue(m, r)
        r.cpu_s += time.process_time() - t0

    def _close(self, r: Round) -> None:
        rt = self.eng.runtime
        r.finished = rt.time()
        day = time.strftime("%Y-%m-%d", time.gmtime(rt.utc(r.started)))
        for channel, counts in r.by_channel.items():
            if channel in r.air0:  # channel occupancy: its airtime during the round
                ch, air = r.air0[channel]
                counts["airtime_s"] = ch.airtime_s - air
            self.eng.store.record_metrics(
                day, channel, collection_s=r.spans.get(channel, 0.0), **counts
            )
        if self.on_round_done is not None:
            self.on_round_done(r)
        then, r.when_done = r.when_done, []
        for f in then:
            f()


def periodic(
    runtime: Any, interval_s: float, fn: Callable[[float], Any], *, first: Optional[float] = None
) -> Callable[[], None]:
    """Call ``fn(now)`` every ``interval_s`` seconds of ``runtime`` from
    ``first`` (default: one interval from now), e.g. a
    :class:`~osgp.concentrator.reevaluation.Reevaluator`'s ``start``;
    returns a function that stops it."""
    if interval_s <= 0:
        raise ConfigurationError("periodic: the interval must be positive")
    stopped = [False]

    def tick(now: float) -> None:
        if stopped[0]:
            return
        fn(now)
        runtime.call_at(now + interval_s, tick)

    runtime.call_at(runtime.time() + interval_s if first is None else first, tick)
    return lambda: stopped.__setitem__(0, True)
