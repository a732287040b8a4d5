"""A TOU calendar change to 1,000 simulated meters (osgp.sim.fleet, 4
segments, 1 % base loss), discovered and commissioned first.

Group "tou-1000": the calendar written unarmed into every meter's pending
BT54, then activated (a) by the PED's absolute time, each meter by its own
clock (osgp.concentrator.tariffs, the candidate), against (b) unicast BP13 to
each meter at the moment (the alternative without pending-event times).
``extra_info``: the activation spread (true UTC of each meter's activation
minus the moment: min, max), meters activated, virtual seconds of the
writes, frames on the media, and the outcome counts of each job.  Timed is
the host CPU of the whole run (one round)."""

from __future__ import annotations

import pytest

from tests.tou_fleet import run_tou

METERS, SEGMENTS = 1000, 4


@pytest.mark.benchmark(group="tou-1000")
@pytest.mark.parametrize("manual", [False, True], ids=["ped-time", "unicast-bp13"])
def test_tou_change_1000_meters(benchmark, tmp_path, manual):
    run, store, sims = benchmark.pedantic(
        run_tou, args=(METERS, SEGMENTS, str(tmp_path / "tou.db")),
        kwargs={"manual": manual}, rounds=1,
    )  # fmt: skip
    assert len(run.offsets) == len(sims) == METERS
    benchmark.extra_info.update(
        {
            "activated": len(run.offsets),
            "spread_min_s": round(min(run.offsets), 3),
            "spread_max_s": round(max(run.offsets), 3),
            "virtual_s_written": run.written_s,
            "frames": run.frames,
            "tou_cpu_s": round(run.cpu_s, 1),
            "jobs": {k: run.states[k] for k in run.jobs},
            "not_confirmed": sorted(
                {o.detail[:80] for j in run.jobs.values() for o in store.outcomes(j)
                 if o.state != "confirmed"}
            )[:5],  # fmt: skip
        }
    )
    print(benchmark.extra_info)
