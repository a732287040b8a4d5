"""TOU calendar changes and time offsets on the simulated feeder: every effect
checked on the simulated meters (BT04, BT54, BT55, BT53 images and the
history log), the expected tiers worked out by hand from the calendar."""

from __future__ import annotations

import struct

import pytest

from osgp import tables
from osgp.concentrator.broadcast import Broadcaster
from osgp.concentrator.engine import StatusPolicy
from osgp.concentrator.operations import Operations
from osgp.concentrator.tariffs import (
    STILL_PENDING,
    Calendar,
    Tariffs,
    broadcast_activation,
    clock_params,
)
from osgp.errors import ConfigurationError
from osgp.sim import layouts as L
from osgp.sim import tariff as T
from osgp.tables import TimeDate
from tests.test_concentrator import Feeder

START = 1_767_225_600  # 2026-01-01T00:00:00Z, a Thursday (the simulator's default start)
# tier 2 from midnight, 3 from 12:00, 4 from 18:30; weekends all tier 5
CAL = Calendar(42, [[(0, 0, 2), (12, 0, 3), (18, 30, 4)], [(0, 0, 5)]], [(1, 1, (1, 1, 0))])


def decoded(m, tid):
    ctx = {"BT00": m.image(0), "BT50": m.image(50)}
    return tables.decode(tid, m.image(tid), ctx)


def pending_54(m):
    return [
        e for e in decoded(m, 4)["PENDING_ENTRIES"]
        if e["TABLE"]["STILL_PENDING"] and e["TABLE"]["TBL_PROC_NBR"] == 54
    ]  # fmt: skip


def activations(m):
    ran = L.EVENTS["pending table activation"]
    return [
        (t, arg) for t, code, mfg, arg in m.history()
        if not mfg and code == ran and struct.unpack_from("<H", arg)[0] == 54
    ]  # fmt: skip


def states(ops, job):
    return {d: o.state for d, o in ops.report(job).items()}


def test_bt54_layout_has_the_size_the_mep_guide_gives():
    # [MEP p.223]: 12 seasons, 2 special schedules, 25 non-recurring and 23 recurring dates,
    # 200 tier switches: CALENDAR_TBL_SIZE 808
    bt50 = tables.encode(
        50,
        {
            "CALENDAR_FUNC": {"NBR_SEASONS": 12, "NBR_SPECIAL_SCHED": 2},
            "NBR_NON_RECURR_DATES": 25,
            "NBR_RECURR_DATES": 23,
            "NBR_TIER_SWITCHES": 200,
            "CALENDAR_TBL_SIZE": 808,
        },
    )
    assert len(tables.encode(54, {}, {"BT50": bt50})) == 808
    assert len(CAL.image(bt50)) == 808
    sim = tables.decode(50, T.bt50_image())
    assert sim["CALENDAR_TBL_SIZE"] == len(T.factory_bt54()) == 23 * 3 + 40 * 3 + 4 * 5 + 4


def test_calendar_that_does_not_fit_is_refused():
    with pytest.raises(ConfigurationError):
        Calendar(1, [[(0, 0, 1)]] * 5).image(T.bt50_image())  # 5 day schedules, room for 4
    with pytest.raises(ConfigurationError):
        Calendar(1, [[(1, 0, 1)]]).image(T.bt50_image())  # the first switch is not midnight
    with pytest.raises(ConfigurationError):
        Calendar(1, [[(0, 0, 1), (5, 0, 2), (4, 0, 1)]]).image(T.bt50_image())  # out of order
    with pytest.raises(ConfigurationError):
        Calendar(1, [[(0, 0, 1)]], [(13, 1, (0, 0, 0))]).image(T.bt50_image())
    with pytest.raises(ConfigurationError):
        Calendar(1, [[(0, 0, 9)]]).image(T.bt50_image())  # tier in 3 bits [MEP p.228]


def test_the_sim_meter_changes_season_on_its_date():
    from osgp.sim.meter import SimMeter

    m = SimMeter("SIMSEA1", start=START)
    two = Calendar(9, [[(0, 0, 1)], [(0, 0, 2), (8, 0, 6)]], [(1, 1, (0, 0, 0)), (1, 3, (1, 1, 1))])
    dict.__setitem__(m.tables, 54, bytearray(two.image(m.image(50))))
    m._changed()
    seen = []
    for now in (86400 + 9 * 3600, 2 * 86400 + 3600, 2 * 86400 + 9 * 3600):
        m.advance(float(now))
        st = decoded(m, 55)["STATUS"]
        seen.append((st["SEASON"], st["CURR_TIER"]))
    assert seen == [(0, 1), (1, 2), (1, 6)]  # 2 Jan 09:00, 3 Jan 01:00, 3 Jan 09:00
    assert decoded(m, 2048 + 23)["ACTIVE_CALENDAR_ID"] == 9


def test_a_group_activates_the_new_calendar_at_the_moment(tmp_path):
    f = Feeder(tmp_path, n=5, base_loss=0.0)
    ops = Operations(f.eng)
    tar = Tariffs(ops)
    at = START + 3600  # 01:00 UTC
    job = tar.change(CAL, at)
    f.net.run(until=at - START - 5)
    assert set(states(ops, job).values()) == {"confirmed"}, ops.report(job)
    armed = tar.chain[job]
    assert set(states(ops, armed).values()) == {"confirmed"}, ops.report(armed)
    for m in f.meters.values():
        (e,) = pending_54(m)  # armed: absolute time 2026-01-01 01:00 UTC [OPT p.10]
        assert bytes(e["EVENT"]) == bytes([0, 26, 1, 1, 1, 0])
        assert decoded(m, 54)["CALENDAR_ID"] == 1  # still the factory calendar
        assert decoded(m, 55)["STATUS"]["CURR_TIER"] == 1  # factory night rate
    f.net.run(until=at - START + 300)
    verify = tar.chain[armed]
    assert set(states(ops, verify).values()) == {"confirmed"}, ops.report(verify)
    for d, m in f.meters.items():
        assert not pending_54(m)
        cal = decoded(m, 54)
        assert cal["CALENDAR_ID"] == 42 == decoded(m, 2048 + 23)["ACTIVE_CALENDAR_ID"]
        sw = cal["TIER_SWITCHES"][1]["TIER_SWITCH"]
        assert (sw["SWITCH_HOUR"], sw["SWITCH_MIN"], sw["NEW_TIER"]) == (12, 0, 3)
        ((t, arg),) = activations(m)
        assert arg[2] == 0  # activation result
        assert abs(t - at) <= 1, d  # the meter clock's second of the activation
        assert decoded(m, 55)["STATUS"]["CURR_TIER"] == 2  # 01:05 Thursday
    assert '"tier": 2' in ops.report(verify)[1].detail
    # the meter follows the calendar on: 12:00 tier 3, 18:30 tier 4, Saturday tier 5
    m = f.meters[1]
    for when, tier in ((12 * 3600 + 10, 3), (18 * 3600 + 1900, 4), (2 * 86400 + 60, 5)):
        m.advance(when)
        assert decoded(m, 55)["STATUS"]["CURR_TIER"] == tier, when


def test_a_meter_that_fails_rolls_the_whole_group_back(tmp_path):
    f = Feeder(tmp_path, n=4, base_loss=0.0)
    eng = f.start(StatusPolicy(attempts=2, retry_s=30))
    f.seg.nodes[(2 << 7) | 3].position = 1e9  # meter 3 out of reach
    ops = Operations(eng)
    tar = Tariffs(ops)
    at = START + 3600
    job = tar.change(CAL, at)
    f.net.run(until=at - START - 5)
    assert states(ops, job) == {1: "confirmed", 2: "confirmed", 3: "given_up", 4: "confirmed"}
    back = tar.chain[job]
    assert ops.store.job(back).kind == "tou-rollback"
    rep = states(ops, back)
    assert rep[1] == rep[2] == rep[4] == "confirmed" and rep[3] == "given_up"
    for d in (1, 2, 4):
        assert not pending_54(f.meters[d])
        assert invocations(f.meters[d], L.BP15) == 1
    f.net.run(until=at - START + 600)
    for m in f.meters.values():
        assert decoded(m, 54)["CALENDAR_ID"] == 1 and not activations(m)
        assert decoded(m, 55)["STATUS"]["CURR_TIER"] == 1  # factory: night rate at 01:10


def invocations(m, pid):
    ran = L.EVENTS["procedure invoked"]
    return sum(
        1 for _, code, mfg, arg in m.history()
        if not mfg and code == ran and struct.unpack_from("<H", arg)[0] == pid
    )  # fmt: skip


def test_a_meter_cut_off_mid_write_never_activates_its_half_calendar(tmp_path):
    f = Feeder(tmp_path, n=3, base_loss=0.0)
    eng = f.start(StatusPolicy(attempts=2, retry_s=30))
    ops = Operations(eng)
    tar = Tariffs(ops)
    at = START + 3600
    job = tar.change(CAL, at)
    m2 = f.meters[2]
    while 54 not in m2._pending:  # the first pieces of the calendar reached meter 2
        f.net.run(until=f.net.now + 0.2)
    f.seg.nodes[(2 << 7) | 2].position = 1e9
    f.net.run(until=at - START + 600)
    assert states(ops, job)[2] == "given_up"
    assert ops.store.job(tar.chain[job]).kind == "tou-rollback"
    (e,) = pending_54(m2)  # left pending, half written, but never armed (event code 2)
    assert bytes(e["EVENT"])[0] & 0x0F == 2
    assert decoded(m2, 54)["CALENDAR_ID"] == 1 and not activations(m2)
    for d in (1, 3):
        assert not pending_54(f.meters[d]) and decoded(f.meters[d], 54)["CALENDAR_ID"] == 1


def test_manual_activation_by_bp13_at_the_moment(tmp_path):
    f = Feeder(tmp_path, n=3, base_loss=0.0)
    ops = Operations(f.eng)
    tar = Tariffs(ops)
    at = START + 1800
    job = tar.change(CAL, at, manual=True)
    f.net.run(until=at - START - 5)
    assert set(states(ops, job).values()) == {"confirmed"}
    for m in f.meters.values():
        (e,) = pending_54(m)
        assert bytes(e["EVENT"])[0] == 2 and not activations(m)
    f.net.run(until=at - START + 300)
    act = tar.chain[job]
    assert ops.store.job(act).kind == "tou-activate"
    assert set(states(ops, act).values()) == {"confirmed"}
    assert set(states(ops, tar.chain[act]).values()) == {"confirmed"}
    for m in f.meters.values():
        ((t, _),) = activations(m)
        assert at <= t < at + 120 and invocations(m, L.BP13) == 1
        assert decoded(m, 54)["CALENDAR_ID"] == 42


def test_a_broadcast_hook_that_reached_no_one_is_caught_by_the_unicast_fallback(tmp_path):
    f = Feeder(tmp_path, n=2, base_loss=0.0)
    ops = Operations(f.eng)
    sent = []
    tar = Tariffs(ops, broadcast=lambda job: sent.append(job) or True)
    job = tar.change(CAL, START + 1800, manual=True)
    f.net.run(until=1800 + 600)
    assert sent == [job]
    verify = tar.chain[job]
    assert ops.store.job(verify).kind == "tou-verify"
    assert {o.detail for o in ops.report(verify).values()} == {STILL_PENDING}
    act = tar.chain[verify]
    assert ops.store.job(act).kind == "tou-activate"
    assert set(states(ops, tar.chain[act]).values()) == {"confirmed"}
    for m in f.meters.values():
        assert invocations(m, L.BP13) == 1 and len(activations(m)) == 1


def test_a_restart_after_the_broadcast_verification_takes_the_fallback_step(tmp_path):
    f = Feeder(tmp_path, n=2, base_loss=0.0)
    ops = Operations(f.eng)
    tar = Tariffs(ops, broadcast=lambda job: True)  # sent, but reached no one
    job = tar.change(CAL, START + 1800, manual=True)
    f.net.run(until=1700)
    tar.auto = False  # the process stops following its jobs: no step after the verification
    f.net.run(until=1800 + 600)
    verify = tar.chain[job]
    assert {o.detail for o in ops.report(verify).values()} == {STILL_PENDING}
    assert verify not in tar.chain
    again = Tariffs(ops)
    assert again.resume() == [verify]
    f.net.run(until=1800 + 1200)
    act = again.chain[verify]
    assert ops.store.job(act).kind == "tou-activate"
    assert set(states(ops, again.chain[act]).values()) == {"confirmed"}
    assert all(len(activations(m)) == 1 for m in f.meters.values())


def test_tou_activation_by_secured_group_broadcast_with_unicast_fallback(tmp_path):
    n, group, key = 30, 7, bytes(range(12))
    # every meter within the concentrator's direct reach: a broadcast is not repeated
    f = Feeder(tmp_path, n=n, base_loss=0.2, reach=5000.0)
    ids = sorted(f.meters)
    outsider, non_member = ids[-1], ids[-2]  # outside the job and the group / in the job only
    for d, m in f.meters.items():
        m.broadcasts.set_key(key)
        if d != outsider and d != non_member:
            m.groups.append(group)
            m._apply_groups()
    ops = Operations(f.eng)
    b = Broadcaster(f.seg, key)
    tar = Tariffs(ops, broadcast=broadcast_activation(b, group, repeats=1))
    at = START + 3600
    job = tar.change(CAL, at, ids[:-1], manual=True)
    f.net.run(until=at - START + 3000)
    assert set(states(ops, job).values()) == {"confirmed"}, ops.report(job)
    assert b.stats == {"broadcasts": 1, "frames": 2}
    verify = tar.chain[job]
    missed = {d for d, o in ops.report(verify).items() if o.detail == STILL_PENDING}
    heard = {d for d in ids[:-1] if f.meters[d].broadcasts.stats["served"] == 1}
    assert missed == set(ids[:-1]) - heard
    assert non_member in missed and len(missed) >= 2, "the lossy medium lost no broadcast"
    act = tar.chain[verify]
    assert sorted(ops.report(act)) == sorted(missed)
    assert set(states(ops, tar.chain[act]).values()) == {"confirmed"}
    for d in ids[:-1]:
        m = f.meters[d]
        ((t, _),) = activations(m)
        assert not pending_54(m)
        assert decoded(m, 54)["CALENDAR_ID"] == 42 == decoded(m, 2048 + 23)["ACTIVE_CALENDAR_ID"]
        assert invocations(m, L.BP13) == 1
        if d in heard:  # by the broadcast, at the moment
            assert at - 2 <= t < at + 5  # the meter clock: drift of at most 50 ppm
        else:  # by the unicast fallback, after the verification
            assert t >= at + tar.verify_s
    m = f.meters[outsider]
    assert m.broadcasts.stats["not a member"] >= 1 and m.broadcasts.stats["served"] == 0
    assert not activations(m) and not pending_54(m) and invocations(m, L.BP13) == 0
    assert decoded(m, 54)["CALENDAR_ID"] == 1 == decoded(m, 2048 + 23)["ACTIVE_CALENDAR_ID"]


def test_the_sim_local_clock_follows_bt53_and_the_calendar_dst_dates(tmp_path):
    from osgp.sim.meter import SimMeter

    m = SimMeter("SIMDST1", start=START)
    cal = Calendar(5, [[(0, 0, 1)]], dst=((1, 1), (1, 2)))
    dict.__setitem__(m.tables, 54, bytearray(cal.image(m.image(50))))
    bt53 = {"DST_TIME_EFF": TimeDate(0, 0, 0, 2, 0, 0), "DST_TIME_AMT": 60, "TIME_ZONE_OFFSET": -60}
    dict.__setitem__(m.tables, 53, bytearray(tables.encode(53, bt53)))
    m._changed()

    def shift(now):
        m.advance(now)
        local = decoded(m, 55)
        utc = decoded(m, 52)["CLOCK_CALENDAR"].epoch()
        return local["CLOCK_CALENDAR"].epoch() - utc, local["TIME_DATE_QUAL"]["DST_FLAG"]

    assert shift(60.0) == (-3600, False)  # 31 December 23:01 local standard time
    assert shift(3 * 3600 - 60.0) == (-3600, False)  # 1 January 01:59, before the switch
    # 02:00 local standard time on 1 January is 03:00 UTC: DST on from then on
    assert shift(3 * 3600 + 60.0) == (0, True)
    assert shift(86400 + 3 * 3600 + 60.0) == (-3600, False)  # 2 January after 02:00: off again


def test_clock_sync_reports_or_fixes_a_meter_with_another_time_offset(tmp_path):
    f = Feeder(tmp_path, n=3, base_loss=0.0)
    odd = {"DST_TIME_EFF": TimeDate(0, 0, 0, 3, 0, 0), "DST_TIME_AMT": 30, "TIME_ZONE_OFFSET": -300}
    for d in (1, 3):
        dict.__setitem__(f.meters[d].tables, 53, bytearray(tables.encode(53, odd)))
    ops = Operations(f.eng)
    fleet = clock_params(60)  # UTC+1, DST 60 min at 02:00
    job = ops.submit("clock-sync", fleet, None)
    f.net.run(until=f.net.now + 900)
    assert states(ops, job) == {1: "failed", 2: "failed", 3: "failed"}
    assert "TIME_ZONE_OFFSET" in ops.report(job)[2].detail  # factory BT53 has zone 0
    assert "DST_TIME_AMT" in ops.report(job)[1].detail
    assert decoded(f.meters[1], 53)["TIME_ZONE_OFFSET"] == -300  # not written unasked
    job = ops.submit("clock-sync", clock_params(60, fix_offset=True), [1, 2])
    f.net.run(until=f.net.now + 900)
    assert states(ops, job) == {1: "confirmed", 2: "confirmed"}, ops.report(job)
    for d in (1, 2):
        m = f.meters[d]
        got = decoded(m, 53)
        assert (got["TIME_ZONE_OFFSET"], got["DST_TIME_AMT"]) == (60, 60)
        assert got["DST_TIME_EFF"][3:] == (2, 0, 0)
        local = decoded(m, 55)["CLOCK_CALENDAR"].epoch()
        assert local - decoded(m, 52)["CLOCK_CALENDAR"].epoch() == 3600
        written = L.EVENTS["table written"]
        assert any(c == written and struct.unpack_from("<H", a)[0] == 53
                   for _, c, mfg, a in m.history() if not mfg)  # fmt: skip
    assert decoded(f.meters[3], 53)["TIME_ZONE_OFFSET"] == -300


def test_a_moment_too_close_or_off_the_minute_is_refused(tmp_path):
    f = Feeder(tmp_path, n=1, base_loss=0.0)
    tar = Tariffs(Operations(f.eng))
    with pytest.raises(ConfigurationError):
        tar.change(CAL, START + 60)
    with pytest.raises(ConfigurationError):
        tar.change(CAL, START + 3630)


def test_the_command_line_writes_arms_and_rolls_back(tmp_path, monkeypatch, capsys):
    import argparse
    import json
    import time

    from osgp.concentrator import KeyVault, Store
    from osgp.concentrator.aio import commission
    from osgp.concentrator.cli_ops import add_ops_command
    from osgp.sim.serve import CnipMeterServer

    master = bytes(range(32))
    monkeypatch.setenv("OSGP_MASTER_KEY", master.hex())
    url = f"sqlite:///{tmp_path / 'c.db'}"
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps(CAL.to_json()))
    parser = argparse.ArgumentParser(prog="osgp")
    add_ops_command(parser.add_subparsers(dest="command"))

    def osgp(*argv):
        args = parser.parse_args(list(argv))
        return args.func(args)

    # a day ahead of the concentrator's clock (the wall clock), on the minute
    at = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() // 60 * 60 + 86400))
    with CnipMeterServer(2, seed=5, speed=1.0) as server:
        s = Store(url, vault=KeyVault(master))
        commission(s, "s1", server.fleet)
        s.close()
        common = ("--store", url, "--channel", f"s1={server.url}", "--response-ms", "200")
        assert osgp("op", "tou", "--calendar", str(cal), "--at", at, *common) == 0
        with server.lock:
            for m in server.meters:
                (e,) = pending_54(m)
                assert bytes(e["EVENT"])[0] == 0  # armed: absolute time
        assert osgp("op", "tou-rollback", "1", *common) == 0
        with server.lock:
            assert not any(pending_54(m) for m in server.meters)
            assert all(decoded(m, 54)["CALENDAR_ID"] == 1 for m in server.meters)
    out = capsys.readouterr().out.splitlines()
    assert sum(" tou device " in line for line in out) == 2
    assert sum(" tou-arm device " in line for line in out) == 2
    assert sum(" tou-rollback device " in line and '"BP15"' in line for line in out) == 2


def test_a_chain_stopped_between_two_steps_goes_on(tmp_path):
    f = Feeder(tmp_path, n=2, base_loss=0.0)
    ops = Operations(f.eng)
    at = START + 3600
    job = Tariffs(ops, auto=False).change(CAL, at)  # a process that stops after the writes
    f.net.run(until=1200)
    assert set(states(ops, job).values()) == {"confirmed"} and ops.idle
    assert all(bytes(pending_54(m)[0]["EVENT"])[0] == 2 for m in f.meters.values())
    tar = Tariffs(Operations(f.eng))
    assert tar.resume() == [job] and ops.store.job(tar.chain[job]).kind == "tou-arm"
    f.net.run(until=at - START + 300)
    assert all(decoded(m, 54)["CALENDAR_ID"] == 42 for m in f.meters.values())
    assert tar.resume() == []
