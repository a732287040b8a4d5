"""Control-output and one-time-read operations on the simulated feeder:
prepay credit, maximum levels, the disconnect lock, control relays and
one-time reads.  Every effect is checked on the simulated meters (their
tables, log and contactor); the load the meters consume is recomputed from
the load-model formula (tests/test_sim_meter.py), not taken from them."""

from __future__ import annotations

import struct

import pytest

from osgp import tables
from osgp.concentrator import Store
from osgp.concentrator.operations import Operations
from osgp.concentrator.ops_control import credit_transaction
from osgp.errors import ProtocolError
from osgp.sim import layouts as L
from tests.test_concentrator import Feeder
from tests.test_operations import events, invocations, run
from tests.test_sim_meter import energy, slot_power

ET = 2048
PREPAY_ON = {"PREPAY_CONTROL": {"PREPAY_ENABLED": True, "DISCONNECT_ON_EXHAUSTED": True}}


def table(m, tid, now):
    """A table as the meter shows it at ``now``, decoded with its own dimensions."""
    m.advance(now)
    ctx = {"BT00": m.image(0), "BT21": m.image(21), "ET11": m.image(ET + 11)}
    return tables.decode(tid, m.image(tid), ctx)


def true_utc(m, meter_epoch):
    """True UTC at which the meter clock showed ``meter_epoch`` (never set: drift only)."""
    return m.start + m.clock.virtual(meter_epoch)


def ok(f, ops, job):
    states = run(f, ops, job)
    assert set(states.values()) == {"confirmed"}, ops.report(job)
    return ops.report(job)


def ran_at(m, pid):
    """True UTC of each run of procedure ``pid`` in the meter's log."""
    ran = L.EVENTS["procedure invoked"]
    return [
        true_utc(m, t)
        for t, code, mfg, arg in m.history()
        if not mfg and code == ran and struct.unpack_from("<H", arg)[0] == pid
    ]


def test_prepay_credit_is_added_once_consumed_and_exhausted(tmp_path):
    f = Feeder(tmp_path, n=2, base_loss=0.0)
    ops = Operations(f.eng)
    m = f.meters[1]
    # prepay off: EP21 refused with "conflicts with the current setup"
    refused = ops.submit("prepay-credit", {"credit_wh": 100}, [2])
    assert run(f, ops, refused) == {2: "failed"} and ops.report(refused)[2].code == 3
    # prepay on with no credit: exhausted at once (the contactor stays: no disconnect yet)
    ok(
        f,
        ops,
        ops.submit("control-settings", {"set": {"PREPAY_CONTROL": {"PREPAY_ENABLED": True}}}, None),
    )
    (t_on,) = ran_at(m, L.EP42)
    assert len(events(m, "credit exhausted", mfg=True)) == 1 and m.closed
    job = ops.submit("prepay-credit", {"credit_wh": 2000}, None)
    rep = ok(f, ops, job)
    et46 = table(m, ET + 46, f.net.now)
    assert et46["PREPAY_LAST_TRANSACTION"] == credit_transaction(job, 1)
    used = float(energy(m.seed, t_on, m.start + f.net.now)) / 3600
    assert et46["PREPAY_BALANCE"] == pytest.approx(2000 - used, abs=2)
    assert not et46["PREPAY_STATUS"]["CREDIT_EXHAUSTED"]
    assert '"action": "EP21"' in rep[1].detail
    ok(f, ops, ops.submit("control-settings", {"set": PREPAY_ON}, None))
    assert table(m, ET + 5, f.net.now)["PREPAY_CONTROL"]["DISCONNECT_ON_EXHAUSTED"]
    # the refused target is tried again (now with its own transaction id); no other is redone
    assert ops.resume() == [refused]
    assert run(f, ops, refused) == {2: "confirmed"}
    assert len(events(m, "credit added", mfg=True)) == 1 and invocations(m, L.EP21) == 1
    txs = [struct.unpack_from("<I", e[3])[0] for e in events(f.meters[2], "credit added", mfg=True)]
    assert txs == [credit_transaction(job, 2), credit_transaction(refused, 2)]
    # the meter burns the credit with its load and opens the contactor at zero
    f.net.run(until=f.net.now + 86400)
    m.advance(f.net.now)
    gone = events(m, "credit exhausted", mfg=True)
    assert len(gone) == 2
    used_wh = float(energy(m.seed, t_on, true_utc(m, gone[1][0]))) / 3600
    assert used_wh == pytest.approx(2000, abs=3)  # log times are whole meter seconds
    assert not m.closed and events(m, "contactor opened", mfg=True)
    et46 = table(m, ET + 46, f.net.now)
    assert (
        et46["PREPAY_STATUS"]["CREDIT_EXHAUSTED"]
        and et46["PREPAY_STATUS"]["DISCONNECTED_BY_PREPAY"]
    )
    assert -1 <= et46["PREPAY_BALANCE"] <= 0
    # more credit lifts the exhaustion; the contactor waits for a reconnect
    ok(f, ops, ops.submit("prepay-credit", {"credit_wh": 1000}, [1]))
    assert not table(m, ET + 46, f.net.now)["PREPAY_STATUS"]["CREDIT_EXHAUSTED"]
    assert not m.closed
    ok(f, ops, ops.reconnect([1]))
    assert m.closed


def test_a_killed_credit_job_resumes_and_adds_each_credit_once(tmp_path):
    f = Feeder(tmp_path, n=5)
    ops = Operations(f.eng)
    ok(f, ops, ops.submit("control-settings", {"set": PREPAY_ON}, None))
    job = ops.submit("prepay-credit", {"credit_wh": 5000}, None)
    f.net.run(until=f.net.now + 6.0)
    states = {o.state for o in ops.report(job).values()}
    assert states - {"confirmed"}, "killed too late: nothing left to resume"
    f.store.close()
    f.store = Store(f.url, vault=f.vault)
    f.start()
    ops = Operations(f.eng)
    assert ops.resume() == [job]
    ok(f, ops, job)
    for d, m in f.meters.items():
        assert len(events(m, "credit added", mfg=True)) == 1, d
        et46 = table(m, ET + 46, f.net.now)
        assert et46["PREPAY_LAST_TRANSACTION"] == credit_transaction(job, d)
        assert 4900 < et46["PREPAY_BALANCE"] <= 5000


def test_the_meter_refuses_a_credit_transaction_twice():
    from tests.test_sim_meter import Reader, make

    meter, port, c = make("mep")
    r = Reader(c, port)
    image = tables.encode(
        ET + 5, {"PREPAY_CONTROL": {"PREPAY_ENABLED": True}, "PREPAY_TIER_RATES": [1000] * 4}
    )
    r.call(10.0, 42, image)
    first, _ = r.call(11.0, 21, struct.pack("<Ii", 77, 250))
    again, _ = r.call(12.0, 21, struct.pack("<Ii", 77, 250))
    other, _ = r.call(13.0, 21, struct.pack("<Ii", 78, 250))
    b = [struct.unpack("<i", x)[0] for x in (first, again, other)]
    assert b[0] == 249 or b[0] == 250
    assert b[1] <= b[0] and b[2] > b[1] + 240
    with pytest.raises(Exception) as exc:
        r.call(14.0, 21, struct.pack("<Ii", 0, 250))
    assert getattr(exc.value, "result", None) == 2


def first_slot_over(seed, t, limit):
    """True UTC start of the first 900 s slot from ``t`` whose power is over ``limit``."""
    k = int(t // 900)
    while slot_power(seed, k)[0] <= limit:
        k += 1
    return max(t, k * 900.0), slot_power(seed, k)[0]


def test_maximum_power_levels_switch_and_trip_the_contactor(tmp_path):
    f = Feeder(tmp_path, n=2, base_loss=0.0)
    ops = Operations(f.eng)
    m = f.meters[1]
    peak = max(slot_power(m.seed, k)[0] for k in range(96 * 2))
    limit = peak * 6 // 10
    settings = {
        "PRIMARY_MAX_LEVEL": limit,
        "SECONDARY_MAX_LEVEL": 100_000,
        "LEVEL_CONTROL": {"ENABLE_MAX_LEVEL_THRESHOLDS": True},
    }
    ok(f, ops, ops.submit("power-level", {"level": 1}, [1]))
    ok(f, ops, ops.submit("control-settings", {"set": settings}, [1]))
    assert table(m, ET + 30, f.net.now)["ACTIVE_THRESHOLD"] == 100_000
    f.net.run(until=f.net.now + 86400)
    m.advance(f.net.now)
    assert m.closed and not events(m, "max level exceeded", mfg=True)
    rep = ok(f, ops, ops.submit("power-level", {"level": 0}, [1]))
    t_switch = f.net.utc(f.net.now)
    assert f'"threshold": {limit}' in rep[1].detail
    f.net.run(until=f.net.now + 2 * 86400)
    m.advance(f.net.now)
    (trip,) = events(m, "max level exceeded", mfg=True)
    want_t, want_p = first_slot_over(m.seed, t_switch - 5, limit)
    assert true_utc(m, trip[0]) == pytest.approx(want_t, abs=6)
    assert struct.unpack_from("<I", trip[3])[0] == want_p
    assert not m.closed
    et30 = table(m, ET + 30, f.net.now)
    assert et30["EXCEEDED_COUNT"] == 1 and et30["ACTIVE_LEVEL"] == 0
    assert table(m, ET + 46, f.net.now)["MAX_LEVEL_DISCONNECT_OPEN_TIME"].epoch() == int(trip[0])
    assert f.meters[2].closed  # its levels were never enabled


def test_a_disconnect_lock_holds_the_contactor_open_for_its_time(tmp_path):
    f = Feeder(tmp_path, n=2, base_loss=0.0)
    ops = Operations(f.eng)
    start = int(f.net.utc(f.net.now)) + 600
    rep = ok(f, ops, ops.submit("disconnect-lock", {"start": start, "duration_s": 3600}, [1]))
    m = f.meters[1]
    assert '"lock_state": 1' in rep[1].detail and m.closed
    f.net.run(until=f.net.now + 900)
    m.advance(f.net.now)
    assert not m.closed and events(m, "disconnect locked", mfg=True)
    assert table(m, ET + 30, f.net.now)["LOCK_STATE"] == 2
    job = ops.reconnect([1])
    assert run(f, ops, job) == {1: "failed"} and ops.report(job)[1].code == 3
    # the same lock again is a no-op on the meter
    ok(f, ops, ops.submit("disconnect-lock", {"start": start, "duration_s": 3600}, [1]))
    assert len(events(m, "disconnect locked", mfg=True)) == 1
    f.net.run(until=f.net.now + 3600)
    m.advance(f.net.now)
    assert events(m, "disconnect unlocked", mfg=True)
    assert table(m, ET + 30, f.net.now)["LOCK_STATE"] == 0
    ok(f, ops, ops.reconnect([1]))
    assert m.closed
    # an open-ended lock, then cancelled
    ok(f, ops, ops.submit("disconnect-lock", {"start": 0, "duration_s": 0}, [2]))
    assert not f.meters[2].closed
    ok(f, ops, ops.submit("disconnect-unlock", {}, [2]))
    assert table(f.meters[2], ET + 30, f.net.now)["LOCK_STATE"] == 0
    with pytest.raises(ProtocolError):
        ops.submit("disconnect-lock", {"start": -1, "duration_s": 0}, [2])


def relay_open(m, now, relay):
    return table(m, 3, now)["ED_MFG_STATUS"][2 + relay]  # bits 3 and 4 (osgp.sim.control)


def test_relays_by_command_and_by_their_daily_calendar(tmp_path):
    f = Feeder(tmp_path, n=3, base_loss=0.0)
    ops = Operations(f.eng)
    ok(f, ops, ops.submit("relay-open", {"relay": 1}, [1, 2]))
    now = f.net.now
    assert [relay_open(m, now, 1) for m in f.meters.values()] == [True, True, False]
    assert not relay_open(f.meters[1], now, 2)
    rep = ok(f, ops, ops.submit("relay-open", {"relay": 1}, [1]))
    assert '"action": "none"' in rep[1].detail and invocations(f.meters[1], L.EP02) == 1
    ok(f, ops, ops.submit("relay-close", {"relay": 1}, None))
    assert not any(relay_open(m, f.net.now, 1) for m in f.meters.values())
    # relay 2 of meter 3: open from 02:00 to 03:30 every day (meter clock, UTC)
    sw = [[2, 0, 0], [3, 30, 1]]
    rep = ok(f, ops, ops.submit("relay-calendar", {"relay": 2, "switches": sw}, [3]))
    assert '"action": "ET61+EP42"' in rep[3].detail
    m = f.meters[3]
    et61 = table(m, ET + 61, f.net.now)["RELAY_CONTROL"]
    got = [(s["HOUR"], s["MINUTE"], s["STATE"]) for s in et61[1]["SWITCHES"][:2]]
    assert got == [(2, 0, 0), (3, 30, 1)]
    assert all(s["HOUR"] == 31 for s in et61[0]["SWITCHES"])
    assert table(m, ET + 5, f.net.now)["RELAY_MODES"] == (0, 1)
    f.net.run(until=2 * 86400)
    m.advance(f.net.now)
    opened = events(m, "control relay opened", mfg=True)
    closed = events(m, "control relay closed", mfg=True)
    assert [int(e[0]) % 86400 for e in opened] == [7200, 7200]
    assert [int(e[0]) % 86400 for e in closed] == [12600, 12600]
    assert all(e[3][0] == 2 for e in opened + closed)
    assert not relay_open(m, f.net.now, 2)
    with pytest.raises(ProtocolError):
        ops.submit("relay-calendar", {"relay": 2, "switches": [[24, 0, 1]]}, [3])


def test_one_time_reads_now_and_later(tmp_path):
    f = Feeder(tmp_path, n=2, base_loss=0.0)
    ops = Operations(f.eng)
    job = ops.submit("one-time-read", {"at": 0}, None)
    rep = ok(f, ops, job)
    m = f.meters[1]
    et31 = table(m, ET + 31, f.net.now)
    assert et31["NBR_VALID_ENTRIES"] == 1
    rec = et31["ONE_TIME_READS"][et31["LAST_ENTRY_ELEMENT"]]
    got = rec["REGISTER_DATA"]["TOT_DATA_BLOCK"]["SUMMATIONS"][0]
    assert f'"active_wh": {got}' in rep[1].detail and '"state": "captured"' in rep[1].detail
    (read,) = events(m, "one-time read", mfg=True)
    assert int(read[0]) // 60 * 60 == rec["END_DATE_TIME"].epoch()  # STIME_DATE: minutes
    t = true_utc(m, read[0])
    assert got == pytest.approx(float(energy(m.seed, m.start, t)) / 3600, abs=2)
    # a read at a set time waits in ET19, then lands in ET31 at that time
    at = int(f.net.utc(f.net.now)) + 7200
    job2 = ops.submit("one-time-read", {"at": at}, [2])
    assert '"state": "waiting"' in ok(f, ops, job2)[2].detail
    m2 = f.meters[2]
    q = table(m2, ET + 19, f.net.now)["ENTRIES"]
    assert [e["STATE"] for e in q if e["REQUEST_ID"]] == [2, 1]
    f.net.run(until=f.net.now + 7300)
    m2.advance(f.net.now)
    reads = events(m2, "one-time read", mfg=True)
    assert len(reads) == 2 and abs(int(reads[1][0]) - at) <= 2
    et31 = table(m2, ET + 31, f.net.now)
    rec = et31["ONE_TIME_READS"][et31["LAST_ENTRY_ELEMENT"]]
    wh = float(energy(m2.seed, m2.start, true_utc(m2, at))) / 3600
    assert rec["REGISTER_DATA"]["TOT_DATA_BLOCK"]["SUMMATIONS"][0] == pytest.approx(wh, abs=1)
    assert [e["STATE"] for e in table(m2, ET + 19, f.net.now)["ENTRIES"] if e["REQUEST_ID"]] == [
        2,
        2,
    ]
    assert invocations(m2, L.EP24) == 2


def test_the_meter_queues_a_one_time_request_once():
    from tests.test_sim_meter import Reader, make

    meter, port, c = make("mep")
    r = Reader(c, port)
    at = int(meter.meter_time(10.0)) + 3600
    for now in (10.0, 11.0):  # the same request twice: one entry
        assert r.call(now, 24, struct.pack("<HI", 9, at))[0] == b"\x01"
    for rid in (10, 11, 12):
        r.call(12.0, 24, struct.pack("<HI", rid, at))
    with pytest.raises(Exception) as exc:  # four waiting requests fill ET19
        r.call(13.0, 24, struct.pack("<HI", 13, at))
    assert getattr(exc.value, "result", None) == 3
    meter.advance(3700.0)
    assert len(events(meter, "one-time read", mfg=True)) == 4


def test_the_command_line_runs_control_operations(tmp_path, monkeypatch, capsys):
    from osgp.sim.serve import CnipMeterServer
    from tests.ops_cli import OpsCli

    osgp = OpsCli(tmp_path, monkeypatch)
    url = osgp.url
    common = ("--response-ms", "200")
    with CnipMeterServer(2, seed=7, speed=1.0) as server:
        ids = osgp.commission(server)
        chan = ("--store", url, "--channel", f"s1={server.url}")
        assert osgp("op", "relay-open", "2", *chan, "--device", str(ids[1]), *common) == 0
        assert (
            osgp(
                "op",
                "control-settings",
                *chan,
                "--set",
                'PREPAY_CONTROL={"PREPAY_ENABLED": true}',
                *common,
            )
            == 0
        )
        assert osgp("op", "prepay-credit", "1500", *chan, *common) == 0
        with server.lock:
            assert [m.ext["control"].relays for m in server.meters] == [
                [True, True],
                [True, False],
            ]
            assert all(len(events(m, "credit added", mfg=True)) == 1 for m in server.meters)
            assert all(1400 < m.ext["control"].balance() <= 1500 for m in server.meters)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 2 + 2 and all(": confirmed" in line for line in out)
    assert sum('"tx": ' in line for line in out) == 2
