"""The simulated meter's control outputs and one-time reads through the
protocol: the tables decode with their layouts, BT00 lists them, bad
parameters are refused, and the overflow credit and the current levels
follow the load-model formula (tests/test_sim_meter.py)."""

from __future__ import annotations

import struct

import pytest

from osgp import tables
from osgp.services.procedures import ProcedureError
from osgp.sim.control import RATED_VOLTAGE

from .test_operations import events
from .test_sim_meter import START, Reader, energy, make, slot_power

ET = 2048
NEW = (ET + 5, ET + 19, ET + 30, ET + 31, ET + 46, ET + 61)


def settings(**values):
    base = {"PREPAY_TIER_RATES": [1000] * 4}
    base.update(values)
    return tables.encode(ET + 5, base)


def refused(r, now, number, params):
    with pytest.raises(ProcedureError) as exc:
        r.call(now, number, params)
    return exc.value.result


@pytest.mark.parametrize("link", ["mep", "plc"])
def test_the_new_tables_read_decode_and_are_listed(link):
    meter, port, c = make(link)
    r = Reader(c, port)
    now = 3600.0
    r.dims(now)
    r.ctx["ET11"] = r.read(now, ET + 11)
    et11 = tables.decode(ET + 11, r.ctx["ET11"])
    assert et11["TIME_BASED_RELAY_SWITCHES"] == 10 and et11["METER_ONE_TIME_READ_QUEUE_SIZE"] == 4
    dec = {t: tables.decode(t, img, r.ctx) for t, img in zip(NEW, r.read(now, *NEW))}
    assert dec[ET + 5]["PREPAY_TIER_RATES"] == (1000, 1000, 1000, 1000)
    assert len(dec[ET + 19]["ENTRIES"]) == 4
    assert dec[ET + 30]["MEASURED"] == slot_power(meter.seed, int((START + now) // 900))[0]
    assert len(dec[ET + 31]["ONE_TIME_READS"]) == tables.decode(21, r.ctx["BT21"])["NBR_SELF_READS"]
    assert dec[ET + 46]["PREPAY_BALANCE"] == 0
    relays = dec[ET + 61]["RELAY_CONTROL"]
    assert all(s["HOUR"] == 31 for relay in relays for s in relay["SWITCHES"])
    bt00 = tables.decode(0, r.ctx["BT00"])
    assert [p for p in (2, 21, 22, 24, 36, 42) if bt00["MFG_PROC_USED"][p]] == [
        2,
        21,
        22,
        24,
        36,
        42,
    ]
    assert all(bt00["MFG_TBLS_USED"][t - ET] for t in NEW)
    assert bt00["MFG_TBLS_WRITE"][61] and not bt00["MFG_TBLS_WRITE"][5]


def test_bad_parameters_and_conflicts_are_refused():
    meter, port, c = make("mep")
    r = Reader(c, port)
    assert refused(r, 10.0, 2, b"\x03\x00") == 2  # relay 3
    assert refused(r, 11.0, 22, b"\x02") == 2  # level 2
    assert refused(r, 12.0, 36, b"\x05") == 2
    assert refused(r, 13.0, 42, settings(PREPAY_TIER_RATES=[1_000_001] * 4)) == 2
    assert refused(r, 14.0, 42, settings()[:-1]) == 2  # 27 bytes
    assert refused(r, 15.0, 21, struct.pack("<Ii", 5, 100)) == 3  # prepay off
    assert refused(r, 16.0, 24, struct.pack("<HI", 0, 0)) == 2
    r.call(17.0, 36, struct.pack("<BII", 1, 0, 0))  # locked open now, until cancelled
    assert not meter.closed
    assert refused(r, 18.0, 23, b"\x01") == 3
    r.call(19.0, 36, b"\x00")
    r.call(20.0, 23, b"\x01")
    assert meter.closed


def test_overflow_credit_is_used_before_the_contactor_opens():
    meter, port, c = make("mep")
    r = Reader(c, port)
    meter.ext["control"].negative_credit = 150
    on = {"PREPAY_ENABLED": True, "DISCONNECT_ON_EXHAUSTED": True, "NEGATIVE_CREDIT_ENABLED": True}
    r.call(100.0, 42, settings(PREPAY_CONTROL=on))
    balance, _ = r.call(101.0, 21, struct.pack("<Ii", 1, 300))
    # prepay on at about 100 s with no credit: what was used until the credit is owed
    owed = float(energy(meter.seed, START + 100, START + 101)) / 3600
    assert struct.unpack("<i", balance)[0] == pytest.approx(300 - owed, abs=1)
    meter.advance(3 * 86400.0)
    at_once, gone = events(meter, "credit exhausted", mfg=True)
    (opened,) = events(meter, "contactor opened", mfg=True)
    t0 = START + meter.clock.virtual(at_once[0])
    at = [START + meter.clock.virtual(e[0]) for e in (gone, opened)]
    assert float(energy(meter.seed, t0, at[0])) / 3600 == pytest.approx(300, abs=2)
    assert float(energy(meter.seed, t0, at[1])) / 3600 == pytest.approx(450, abs=2)
    assert not meter.closed


def test_current_levels_compare_the_current_at_rated_voltage():
    meter, port, c = make("mep")
    r = Reader(c, port)
    ctl = meter.ext["control"]
    ctl.control_type = 1  # ET46 DISCONNECT_CONTROL_TYPE: current
    k0 = int((START + 100) // 900)
    amps = [slot_power(meter.seed, k)[0] * 1000 // RATED_VOLTAGE for k in range(k0, k0 + 96)]
    limit = sorted(amps)[-5]  # four slots of the day are over it
    on = {"ENABLE_MAX_LEVEL_THRESHOLDS": True}
    r.call(100.0, 42, settings(PRIMARY_MAX_LEVEL=limit, LEVEL_CONTROL=on))
    meter.advance(86400.0)
    (trip,) = events(meter, "max level exceeded", mfg=True)
    first = next(i for i, a in enumerate(amps) if a > limit)
    assert struct.unpack_from("<I", trip[3])[0] == amps[first]
    assert START + meter.clock.virtual(trip[0]) == pytest.approx((k0 + first) * 900, abs=1)
