"""Fleet operations on the simulated feeder: every effect checked on the
simulated meters themselves (their clock, contactor, counters, groups and
history log), every outcome on the store."""

from __future__ import annotations

import json
import struct

import pytest

from osgp import tables
from osgp.concentrator import Store
from osgp.concentrator.engine import StatusPolicy
from osgp.concentrator.operations import CLOCK_THRESHOLD_S, Operations
from osgp.errors import ProtocolError
from osgp.sim import layouts as L
from tests.test_concentrator import Feeder

ET33 = 2048 + 33

RUN_S = 900.0  # virtual seconds a job is given to finish


def run(f, ops, job_id):
    f.net.run(until=f.net.now + RUN_S)
    assert ops.idle
    return {d: o.state for d, o in ops.report(job_id).items()}


def invocations(m, pid):
    """How often the meter's log says procedure ``pid`` ran."""
    ran = L.EVENTS["procedure invoked"]
    return sum(
        1
        for _, code, mfg, arg in m.history()
        if not mfg and code == ran and struct.unpack_from("<H", arg)[0] == pid
    )


def events(m, name, *, mfg=False):
    table = L.MFG_EVENTS if mfg else L.EVENTS
    return [h for h in m.history() if h[1] == table[name] and h[2] == mfg]


def test_clock_sync_steps_large_drifts_and_nudges_small_ones(tmp_path):
    f = Feeder(tmp_path, n=4, base_loss=0.0)
    now = f.net.now
    offsets = {1: 3600.0, 2: -40.0, 3: 0.0, 4: 25.0}
    for d, off in offsets.items():
        f.meters[d].clock.set(now, f.net.utc(now) + off)
    ops = Operations(f.eng)
    job = ops.clock_sync()
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed", 3: "confirmed", 4: "confirmed"}
    end = f.net.now
    for d, m in f.meters.items():
        assert abs(m.meter_time(end) - f.net.utc(end)) < CLOCK_THRESHOLD_S, d
    m1, m2, m3, m4 = (f.meters[d] for d in (1, 2, 3, 4))
    assert invocations(m1, L.BP10) == 1
    assert invocations(m2, L.EP16) == 1 and invocations(m2, L.BP10) == 0
    assert invocations(m4, L.EP16) == 1
    assert invocations(m3, L.BP10) + invocations(m3, L.EP16) == 0
    # the meter logged the step with the clock before it (HISTORY_ARGUMENT, osgp.sim.layouts)
    old = events(m1, "time changed (old time)")[0]
    new = events(m1, "time changed (new time)")[0]
    (before,) = struct.unpack_from("<I", old[3])
    (after,) = struct.unpack_from("<I", new[3])
    assert before - after == pytest.approx(3600, abs=5)
    assert not events(m3, "time changed (old time)")
    rep = ops.report(job)
    assert '"actions": []' in rep[3].detail and '"actions": ["BP10"' in rep[1].detail


def test_disconnect_then_reconnect_moves_the_contactor(tmp_path):
    f = Feeder(tmp_path, n=3, base_loss=0.0)
    ops = Operations(f.eng)
    job = ops.disconnect([1, 2])
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed"}
    assert [m.closed for m in f.meters.values()] == [False, False, True]
    assert len(events(f.meters[1], "contactor opened", mfg=True)) == 1
    # the meter's own status table says so too (BT03 manufacturer bit 0, osgp.sim)
    assert f.meters[1].image(3) != f.meters[3].image(3)
    again = ops.disconnect([1])  # already open: confirmed without a call
    assert run(f, ops, again) == {1: "confirmed"}
    assert invocations(f.meters[1], L.EP23) == 1
    job = ops.reconnect()
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed", 3: "confirmed"}
    assert all(m.closed for m in f.meters.values())
    assert invocations(f.meters[3], L.EP23) == 0
    assert len(events(f.meters[2], "contactor closed", mfg=True)) == 1


def test_demand_reset_and_self_read_count_once_each(tmp_path):
    f = Feeder(tmp_path, n=3, base_loss=0.0)
    ops = Operations(f.eng)
    job = ops.demand_reset()
    assert set(run(f, ops, job).values()) == {"confirmed"}, ops.report(job)
    assert [m.demand_resets for m in f.meters.values()] == [1, 1, 1]
    assert all(len(events(m, "demand reset")) == 1 for m in f.meters.values())
    job = ops.self_read([2, 3])
    assert run(f, ops, job) == {2: "confirmed", 3: "confirmed"}, ops.report(job)
    assert [len(events(m, "self read")) for m in f.meters.values()] == [0, 1, 1]


def test_groups_added_removed_and_an_eleventh_refused(tmp_path):
    f = Feeder(tmp_path, n=3, base_loss=0.0)
    ops = Operations(f.eng)
    full = f.meters[3]
    full.groups[:] = range(100, 100 + L.MAX_GROUPS)
    job = ops.group_add(7)
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed", 3: "failed"}
    assert f.meters[1].groups == [7] and f.meters[2].groups == [7]
    assert 7 not in full.groups
    out = ops.report(job)[3]
    assert out.code == 3  # conflicts with the current setup (C12.19 result, MEP guide p.53)
    job = ops.group_remove(7, [1])
    assert run(f, ops, job) == {1: "confirmed"}
    assert f.meters[1].groups == [] and f.meters[2].groups == [7]
    assert len(events(f.meters[1], "group removed", mfg=True)) == 1
    with pytest.raises(ProtocolError):
        ops.group_add(0)


def test_et33_lists_the_groups_and_a_member_is_left_alone(tmp_path):
    # the INFERRED ET33 layout over a hand-made image: count, then NBR_GROUP_IDS UINT16 LE
    image = bytes([2]) + struct.pack("<10H", 7, 0x0102, *([0] * 8))
    d = tables.decode(ET33, image, {"ET11.NBR_GROUP_IDS": 10})
    assert d["NBR_GROUPS"] == 2 and list(d["GROUP_IDS"][:3]) == [7, 0x0102, 0]
    f = Feeder(tmp_path, n=2, base_loss=0.0)
    f.meters[2].groups[:] = [9, 7]
    ops = Operations(f.eng)
    job = ops.group_add(7)
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed"}
    detail = {d: json.loads(o.detail) for d, o in ops.report(job).items()}
    assert detail[1] == {"group": 7, "groups": [7], "action": "EP27"}
    assert detail[2] == {"group": 7, "groups": [9, 7], "action": "none"}  # read from ET33
    assert not events(f.meters[2], "group added", mfg=True)  # EP27 never sent to it


def test_a_meter_out_of_reach_is_given_up_and_the_others_confirm(tmp_path):
    f = Feeder(tmp_path, n=4)
    eng = f.start(StatusPolicy(attempts=2, retry_s=60))
    f.seg.nodes[(2 << 7) | 3].position = 1e9
    ops = Operations(eng)
    job = ops.demand_reset()
    f.net.run(until=f.net.now + 3600)
    assert ops.idle
    rep = ops.report(job)
    assert {d: o.state for d, o in rep.items()} == {
        1: "confirmed",
        2: "confirmed",
        3: "given_up",
        4: "confirmed",
    }
    # no reset request ever went out (its counter could not be read first)
    assert rep[3].attempts == 0 and "failed" in rep[3].detail
    assert f.meters[3].demand_resets == 0 and f.meters[1].demand_resets == 1
    assert not f.store.job(job).open


@pytest.mark.parametrize("kill_at", [3.0, 8.0, 15.0])
def test_a_killed_runner_resumes_without_redoing_a_meter(tmp_path, kill_at):
    f = Feeder(tmp_path, n=6)
    ops = Operations(f.eng)
    job = ops.self_read()
    f.net.run(until=f.net.now + kill_at)
    states = {o.state for o in ops.report(job).values()}
    assert states - {"confirmed"}, "killed too late: nothing left to resume"
    # left "sent" although the meter did it: the resumed run must only confirm it
    did = {
        d
        for d, o in ops.report(job).items()
        if o.state == "sent" and events(f.meters[d], "self read")
    }
    assert did, "the kill should leave a meter that did it unconfirmed"
    f.store.close()
    f.store = Store(f.url, vault=f.vault)
    f.start()
    ops = Operations(f.eng)
    assert ops.resume() == [job]
    assert set(run(f, ops, job).values()) == {"confirmed"}, ops.report(job)
    for d, m in f.meters.items():
        assert invocations(m, L.EP12) == 1, d
        assert len(events(m, "self read")) == 1, d
    for d in did:
        assert '"action": "none"' in ops.report(job)[d].detail
    assert not f.store.job(job).open
    assert Operations(f.eng).resume() == []


def test_the_command_line_runs_a_job_and_reports_it(tmp_path, monkeypatch, capsys):
    from osgp.sim.serve import CnipMeterServer
    from tests.ops_cli import OpsCli

    osgp = OpsCli(tmp_path, monkeypatch)
    url = osgp.url
    with CnipMeterServer(3, seed=5, speed=1.0) as server:
        ids = osgp.commission(server)
        chan = f"s1={server.url}"
        assert osgp("op", "group-add", "42", "--store", url, "--channel", chan, "--device",
                    str(ids[0]), "--device", str(ids[2]), "--response-ms", "200") == 0
        with server.lock:
            assert [m.groups for m in server.meters] == [[42], [], [42]]
        assert osgp("op", "demand-reset", "--store", url, "--channel", chan) == 0
        with server.lock:
            assert [m.demand_resets for m in server.meters] == [1, 1, 1]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + 3 and all(": confirmed" in line for line in out)
    assert osgp("op", "report", "2", "--store", url) == 0
    assert capsys.readouterr().out.count("demand-reset") == 3
