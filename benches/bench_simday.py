"""Simulator speed: a virtual day of collection from 10,000 meters on 20 segments.

Group "sim-day": one whole virtual day (86,400 virtual seconds, noon to
noon) of ``osgp demo``'s scheduled collection (the noon and after-midnight
rounds and the catch-up: registers, load profile, history log, BP05) of
``METERS`` simulated meters on ``SEGMENTS`` power-line segments, on the
network's virtual clock in this one process.  Discovery, commissioning and
the idle run to the first noon are not timed; the day ends with every meter
brought to the next noon, so each meter's day of interval ends is in it.
The baseline is real time: ``speed`` is virtual seconds per wall second
(goal: at least 1,440, i.e. at most 60 s of wall time per virtual day);
``extra_info`` also has the simulation events per second and
the CPU per completed exchange of the whole simulation (meters, network,
concentrator and store), the same figures on CPU time (``process_time``:
what the collection costs whatever else the machine runs), the machine's
load average and how many commissioned meters the day left unread.  The
issue's scale runs for several minutes, so it runs only when asked; by
default (and in CI) a 500-meter, 2-segment day::

    OSGP_BENCH_SIMDAY=full python -m pytest benches/bench_simday.py --benchmark-only -s
"""

from __future__ import annotations

import os

import pytest

from osgp.demo import DemoConfig, run_demo

FULL = os.environ.get("OSGP_BENCH_SIMDAY") == "full"
METERS, SEGMENTS = (10_000, 20) if FULL else (500, 2)
DAY = 86400.0


@pytest.mark.benchmark(group="sim-day")
def test_sim_day(benchmark, tmp_path):
    cfg = DemoConfig(
        meters=METERS, segments=SEGMENTS, seed=1, out=tmp_path, plots=False, whole_day=True
    )
    res = benchmark.pedantic(run_demo, (cfg,), {"show": False}, rounds=1, iterations=1)
    wall, cpu, virtual = res.collect_wall_s, res.cpu_s["collect"], res.collect_virtual_s
    read_at_end = _read_by_the_end(res.rounds)
    info = {
        "meters": METERS,
        "segments": SEGMENTS,
        "commissioned": res.commissioned,
        "read_per_round": [(r.name, r.ok, r.meters) for r in res.rounds],
        "unread_at_end": res.commissioned - read_at_end,
        "wall_s_per_virtual_day": round(wall, 1),
        "cpu_s_per_virtual_day": round(cpu, 1),
        "virtual_h": round(virtual / 3600, 2),  # 24: the timed span is one virtual day
        "speed": round(virtual / wall),
        "speed_on_cpu": round(virtual / cpu),
        "events": res.collect_events,
        "events_per_s": round(res.collect_events / wall),
        "events_per_cpu_s": round(res.collect_events / cpu),
        "exchanges": res.exchanges,
        "cpu_per_exchange_us": round(cpu / max(res.exchanges, 1) * 1e6, 1),
        "setup_cpu_s": round(res.cpu_s["build fleet"] + res.cpu_s["discover and commission"], 1),
        "load_average": os.getloadavg()[0],  # the machine's load: wall figures depend on it
    }
    benchmark.extra_info.update(info)
    print("\nsim-day", info)
    # the figures above are printed first: a shortfall must not hide them
    assert virtual == DAY
    assert res.commissioned >= 0.99 * METERS
    assert read_at_end == res.commissioned, info["read_per_round"]


def _read_by_the_end(rounds):
    """Meters the after-midnight round read, plus those its catch-up read."""
    midnight = rounds[1]
    return midnight.ok + sum(r.ok for r in rounds[2:] if r.name == "catch-up")
