"""A TOU calendar change on a discovered and commissioned simulated fleet
(osgp.sim.fleet), for tests/test_tariffs_fleet.py and benches/bench_tou.py."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List

from osgp import tables
from osgp.concentrator import KeyVault, Store
from osgp.concentrator.engine import Concentrator, StatusPolicy
from osgp.concentrator.operations import Operations
from osgp.concentrator.tariffs import Calendar, Tariffs
from osgp.demo import discover_and_commission, load_fleet
from osgp.sim.fleet import FleetSpec, build_fleet

CAL = Calendar(77, [[(0, 0, 2), (6, 0, 3), (22, 0, 2)]])
LEAD_S = 2 * 3600  # the moment is this far after the job starts


@dataclass
class TouRun:
    jobs: Dict[str, int] = field(default_factory=dict)  # kind -> job id
    states: Dict[str, Dict[str, int]] = field(default_factory=dict)  # kind -> state -> count
    at: float = 0.0
    written_s: float = 0.0  # virtual seconds until every meter was written and armed
    cpu_s: float = 0.0
    offsets: List[float] = field(default_factory=list)  # true UTC of activation - the moment
    cut: List[int] = field(default_factory=list)  # device ids powered off mid-write
    frames: int = 0  # frames on the media from the first write to the last verification


def run_tou(
    meters: int, segments: int, db: str, *, cut: int = 0, seed: int = 4, manual: bool = False
) -> tuple:
    """Build, commission, then change the calendar of every meter (by the
    PED's time, or by unicast BP13 at the moment with ``manual``); ``cut``
    meters lose power while their calendar is being written.  Returns
    (run, store, {device id: SimMeter})."""
    fleet = build_fleet(FleetSpec(meters=meters, segments=segments, seed=seed, base_loss=0.01))
    net = fleet.network
    store = Store(f"sqlite:///{db}", vault=KeyVault(bytes(32)))
    discover_and_commission(fleet, store, seed)
    eng = Concentrator(store, net, policy=StatusPolicy(attempts=6, retry_s=60))
    sims = load_fleet(eng, fleet, store)
    ops = Operations(eng)
    tar = Tariffs(ops)
    run = TouRun()
    t0, cpu0 = net.now, time.process_time()
    run.at = (int(net.utc(t0)) + LEAD_S) // 60 * 60
    frames0 = sum(s.stats["frames"] for s in fleet.segments)
    run.jobs["tou"] = job = tar.change(CAL, run.at, manual=manual)
    victims = [d for d in sorted(sims)[::7]][:cut]
    while victims and len(run.cut) < len(victims):  # power off each once its writes began
        net.run(until=net.now + 1.0)
        for d in victims:
            if d not in run.cut and 54 in sims[d]._pending:
                sims[d].power_fail(net.now)
                run.cut.append(d)
    while not ops.idle:
        net.run(until=net.now + 10.0)
    run.written_s = net.now - t0
    net.run(until=run.at - net.utc(0) + 60)
    while not ops.idle:  # the verification (or the rollback) to its end
        net.run(until=net.now + 60.0)
    run.cpu_s = time.process_time() - cpu0
    run.frames = sum(s.stats["frames"] for s in fleet.segments) - frames0
    for k, j in ((store.job(j).kind, j) for j in [job, *tar.chain.values()]):
        run.jobs[k] = j
        counts: Dict[str, int] = {}
        for o in store.outcomes(j):
            counts[o.state] = counts.get(o.state, 0) + 1
        run.states[k] = counts
    for m in sims.values():
        m.advance(net.now)  # a meter runs its own events when it is next touched
        if m._last_activation:  # true UTC when the meter's clock showed the activation
            run.offsets.append(fleet.spec.start + m.clock.virtual(m._last_activation) - run.at)
    return run, store, sims


def calendar_id(m) -> int:
    return tables.decode(54, m.image(54), {"BT50": m.image(50)})["CALENDAR_ID"]
