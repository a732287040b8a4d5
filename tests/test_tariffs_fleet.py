"""A TOU change on a discovered and commissioned fleet (osgp.sim.fleet),
at test scale: benches/bench_tou.py runs it on 1,000 meters.  Checked on the
simulated meters: their BT54, BT04 and the history log."""

from __future__ import annotations

import struct

from osgp import tables
from osgp.sim import layouts as L
from tests.tou_fleet import CAL, run_tou


def _state(m):
    """(calendar id, an armed BT54 left pending, BT54 activations logged)."""
    cal = tables.decode(54, m.image(54), {"BT50": m.image(50)})["CALENDAR_ID"]
    bt04 = tables.decode(4, m.image(4), {"BT00": m.image(0)})
    armed = any(
        t["TBL_PROC_NBR"] == 54 and t["STILL_PENDING"] and e["EVENT"][0] & 0xF == 0
        for e in bt04["PENDING_ENTRIES"]
        for t in [e["TABLE"]]
    )
    ran = L.EVENTS["pending table activation"]
    acts = [
        t for t, code, mfg, arg in m.history()
        if not mfg and code == ran and struct.unpack_from("<H", arg)[0] == 54
    ]  # fmt: skip
    return cal, armed, acts


def test_every_meter_switches_within_a_second_of_the_moment(tmp_path):
    run, store, sims = run_tou(30, 1, str(tmp_path / "s.db"))
    assert run.states == {k: {"confirmed": 30} for k in ("tou", "tou-arm", "tou-verify")}
    for d, m in sims.items():
        cal, armed, acts = _state(m)
        assert cal == CAL.calendar_id and not armed, d
        (t,) = acts  # logged once, at the meter clock's second of the moment
        assert t == run.at, d
    # the meters' own clocks put the true activation within a second of the moment
    assert len(run.offsets) == 30 and max(abs(x) for x in run.offsets) < 1.0


def test_meters_losing_power_mid_write_roll_the_group_back(tmp_path):
    run, store, sims = run_tou(30, 1, str(tmp_path / "s.db"), cut=2)
    assert len(run.cut) == 2
    assert run.states["tou"] == {"confirmed": 28, "given_up": 2}
    assert "tou-arm" not in run.jobs and run.states["tou-rollback"] == {
        "confirmed": 28,
        "given_up": 2,
    }
    for d in run.cut:  # powered again after the moment: still the factory calendar
        sims[d].power_restore(sims[d].now)
    for d, m in sims.items():
        cal, armed, acts = _state(m)
        assert cal == 1 and not armed and not acts, d
    assert not run.offsets
