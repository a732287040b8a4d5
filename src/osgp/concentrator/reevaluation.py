"""Periodic re-evaluation of the topology: discovery run again over the
configured meters, and the concentrator's meters re-routed to what it finds.

A re-evaluation runs a :class:`~osgp.concentrator.discovery.Discovery` with
``configured=True`` on every channel that takes engines (the simulated
segments do; ``attach_engine``) and compares the new topologies with the
previous ones (:func:`~osgp.concentrator.discovery.reevaluate`):

* ``moved``: the meter answers on another segment (another transformer).
  It is commissioned there again (an address from that segment's plan, its
  own key, FCM reconstruction as :mod:`osgp.concentrator.commissioning`),
  the store gets its new segment, address and routes, and the concentrator
  moves its session to the new channel with the session's sequence state,
  so its cursors, and with them what the next collection reads and
  acknowledges, carry on unchanged;
* ``path``: the same segment, another repeater chain: the store's routes
  and the meter's session follow, the routes it had kept as alternates
  (a new chain no shorter than a primary that has only succeeded is put
  after it: a lateral change is no improvement);
* ``lost``: heard on no segment: recorded in the audit log, nothing changes
  (the collection's status machine deals with a meter that stays silent).

A meter busy with a task is re-routed when the task ends; the
re-evaluation is finished when every re-route is applied.  Schedule it
with :func:`osgp.concentrator.schedule.periodic`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Optional

from osgp.concentrator.commissioning import Commissioning
from osgp.concentrator.discovery import AddressPlan, Discovery, Reroute, Topology, reevaluate
from osgp.concentrator.engine import Concentrator, Meter
from osgp.link import lon

__all__ = ["Reevaluation", "Reevaluator"]

_POLL_S = 10.0  # how often a running discovery or commissioning is looked at
_MAX_ROUTES = 4  # a meter's routes kept: the primary and its alternates


@dataclass
class Reevaluation:
    """One re-evaluation's outcome: the changes found and what was applied."""

    started: float
    changes: List[Reroute] = field(default_factory=list)
    moved: List[bytes] = field(default_factory=list)  # re-homed on their new segment
    rerouted: List[bytes] = field(default_factory=list)  # a new path on the same segment
    # a new path found no shorter than a primary that never failed: kept first, the new after
    kept: List[bytes] = field(default_factory=list)
    failed: List[bytes] = field(default_factory=list)  # moved, but not commissioned there
    # segment -> why its discovery failed (its meters are compared next time)
    errors: Dict[str, str] = field(default_factory=dict)
    finished: Optional[float] = None


class Reevaluator:
    """Runs re-evaluations for ``eng``.

    ``channels``: segment name -> channel (with ``attach_engine``);
    ``plans``: segment name -> the :class:`AddressPlan` its meters were
    commissioned from (so a proxy keeps its address); ``topologies``: the
    discovery the store's routes come from; ``seq``: the first sequence
    number of the commissioning requests (above every one used before: a
    meter refuses a replayed commissioning); ``on_done``: called with each
    :class:`Reevaluation` once applied."""

    def __init__(
        self,
        eng: Concentrator,
        channels: Dict[str, Any],
        plans: Dict[str, AddressPlan],
        topologies: Iterable[Topology],
        *,
        seq: int = 1_000_000,
        on_done: Optional[Callable[[Reevaluation], None]] = None,
    ) -> None:
        self.eng, self.channels, self.plans = eng, channels, plans
        self.topologies = {t.segment: t for t in topologies}
        self.seq = seq
        self.on_done = on_done
        self.history: List[Reevaluation] = []
        self._engines: Dict[str, Any] = {}
        self._current: Optional[Reevaluation] = None
        self._pending = 0  # commissioning engines still running

    @property
    def running(self) -> bool:
        return self._current is not None

    def start(self, now: Optional[float] = None) -> bool:
        """Start a re-evaluation (False: the previous one is still running)."""
        if self._current is not None:
            return False
        rt = self.eng.runtime
        self._current = Reevaluation(rt.time())
        for name, ch in self.channels.items():
            e = Discovery(
                name,
                ch.concentrator,
                self.plans[name],
                configured=True,
                expected=len(self.topologies.get(name, Topology(name, ch.concentrator)).meters),
            )
            ch.attach_engine(e)
            self._engines[name] = e
        rt.call_at(rt.time() + _POLL_S, self._discovered)
        return True

    def _discovered(self, now: float) -> None:
        rt = self.eng.runtime
        if not all(e.done for e in self._engines.values()):
            rt.call_at(now + _POLL_S, self._discovered)
            return
        new: Dict[str, Topology] = {}
        r = self._current
        assert r is not None
        at = rt.utc(now)
        store = self.eng.store
        for name, e in self._engines.items():
            self.channels[name].detach_engine(e)
            if e.error is not None:
                r.errors[name] = str(e.error)
                store.audit(at, "reevaluation", "discovery failed", f"{name}: {e.error}", None)
            elif e.topology is not None:
                new[name] = e.topology
        self._engines = {}
        # a segment whose discovery failed is left out on both sides: its
        # meters are not lost, only not looked at this time
        old = [t for name, t in self.topologies.items() if name not in r.errors]
        r.changes = reevaluate(old, new.values())
        by_nid = {m.neuron: m for m in self.eng.meters.values()}
        moves: Dict[str, List[bytes]] = {}
        for c in r.changes:
            m = by_nid.get(c.nid)
            dev = store.device_by_neuron(c.nid)
            detail = f"{c.old_segment} -> {c.new_segment}: {len(c.new_path or [])} repeaters"
            store.audit(at, "reevaluation", c.reason, detail, dev.id if dev else None)
            if c.reason == "moved" and m is not None and c.new_segment in self.channels:
                moves.setdefault(c.new_segment, []).append(c.nid)
            elif c.reason == "path" and m is not None and c.new_segment in new:
                self._when_idle(m, partial(self._reroute, m, new[c.new_segment]))
        for name, t in new.items():  # the baseline of the next re-evaluation
            self.topologies[name] = t
        for seg, nids in moves.items():
            self._commission(seg, nids)
        self._finish()

    def _commission(self, segment: str, nids: List[bytes]) -> None:
        """Commission the moved meters on ``segment`` under their own keys."""
        keys = {m.neuron: m.key for m in self.eng.meters.values() if m.neuron in nids}
        c = Commissioning(
            self.topologies[segment],
            self.plans[segment],
            keys,
            keys,  # already keyed: the first try under the meter's key applies
            meters=nids,
            seq=self.seq,
        )
        self.seq += 2 * len(nids) * c.passes
        ch = self.channels[segment]
        ch.attach_engine(c)
        self._pending += 1
        rt = self.eng.runtime

        def check(now: float) -> None:
            if not c.done:
                rt.call_at(now + _POLL_S, check)
                return
            ch.detach_engine(c)
            r = self._current
            assert r is not None
            by_nid = {m.neuron: m for m in self.eng.meters.values()}
            for nid in nids:
                out = c.results.get(nid)
                if out is None or not out.ok or out.address is None:
                    r.failed.append(nid)
                    continue
                m, a = by_nid[nid], out.address
                self._when_idle(m, partial(self._rehome, m, segment, a))
            self._pending -= 1
            self._finish()

        rt.call_at(rt.time() + _POLL_S, check)

    def _when_idle(self, m: Meter, fn: Callable[[], None]) -> None:
        """Run ``fn`` now, or once the meter's task has ended."""
        if not m.busy:
            fn()
            return
        self._pending += 1
        rt = self.eng.runtime
        rt.call_at(rt.time() + _POLL_S, partial(self._idle_check, m, fn))

    def _idle_check(self, m: Meter, fn: Callable[[], None], now: float) -> None:
        self._pending -= 1
        self._when_idle(m, fn)
        self._finish()

    def _routes(self, m: Meter, t: Topology) -> List[Any]:
        """The meter's routes in ``t`` as the store keeps them (best first)."""
        route = t.route(m.neuron)
        paths = [route.path] + list(route.alternates)
        return [
            ([(t.proxies[n].subnet, t.proxies[n].node) for n in path], 1.0 / (1 + i))
            for i, path in enumerate(paths)
            if all(n in t.proxies for n in path)
        ]

    def _rehome(self, m: Meter, segment: str, address: lon.SubnetNode) -> None:
        store, t = self.eng.store, self.topologies[segment]
        store.upsert_device(m.neuron, segment=segment, subnet=address.subnet, node=address.node)
        store.put_routes(m.device_id, self._routes(m, t))
        self.eng.move(m, self.channels[segment], address, store.routes(m.device_id))
        assert self._current is not None
        self._current.moved.append(m.neuron)

    def _reroute(self, m: Meter, t: Topology) -> None:
        """The paths ``t`` found first, then the meter's routes before (each
        a path that carried its exchanges) as alternates, for failover to
        fall back on.  A new primary no shorter than a primary that has
        succeeded and never failed is no improvement: that one stays first."""
        store = self.eng.store
        new = [path for path, _ in self._routes(m, t)]
        before = store.routes(m.device_id)
        old = [[tuple(h) for h in r.path] for r in before]
        keep = bool(
            before
            and new
            and before[0].successes > 0
            and before[0].failures == 0
            and len(new[0]) >= len(old[0])
        )
        paths: List[List[Any]] = []
        for path in ([old[0]] if keep else []) + new + old:
            if path not in paths:
                paths.append(path)
        del paths[_MAX_ROUTES:]
        store.put_routes(m.device_id, [(path, 1.0 / (1 + i)) for i, path in enumerate(paths)])
        routes = store.routes(m.device_id)
        assert self._current is not None
        if keep and m.route_index == 0:  # the same primary: the session stays as it is
            m.routes = routes
            self._current.kept.append(m.neuron)
            return
        self.eng.move(m, m.channel, m.address, routes)
        (self._current.kept if keep else self._current.rerouted).append(m.neuron)

    def _finish(self) -> None:
        """Close the re-evaluation once nothing it started is left."""
        r = self._current
        if r is None or self._pending:
            return
        r.finished = self.eng.runtime.time()
        self.history.append(r)
        self._current = None
        if self.on_done is not None:
            self.on_done(r)
