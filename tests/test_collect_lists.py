"""Collection of self reads (BT26, Optical guide p.27-29) and present
values (BT28, MEP guide p.213-218).  Each unread self read is stored once
as ``self_read.*`` register values at the time the meter took it, then
acknowledged by BP05; a list header that does not fit its ring is refused
before any entry is read.  Present values are stored as ``present.*`` with
the unit of their number in the MEP guide's list.

The collection task runs over the stand-in session of
``test_collect_hostile_tables`` (reads answered from a simulated meter's
table images); what it stores is compared with BT26 and BT28 as the table
decoder reads them, the decoder being checked on its own against published
vectors."""

from __future__ import annotations

import struct

import pytest

from osgp import tables
from osgp.concentrator import KeyVault, Store
from osgp.concentrator.collect import BP05, LIST_SELF_READS
from osgp.errors import MalformedError, OSGPError, ProtocolError
from tests.test_collect_hostile_tables import HONEST, _ctx, _honest, _run, _thaw

OLDER = _honest(days=3.3)  # three self reads, none acknowledged


@pytest.fixture
def store():
    s = Store("sqlite://", vault=KeyVault(bytes(32)))
    yield s
    s.close()


def _bt26(images):
    """BT26 decoded, as plain (editable) data."""
    return _thaw(tables.decode(26, images[26], _ctx(images, 21)))


def _time(td):
    """Epoch seconds of a decoded STIME_DATE made plain data by _thaw."""
    return tables.decode(52, bytes(7))["CLOCK_CALENDAR"]._make(td).to_datetime().timestamp()


def _unread(bt26):
    """The unread entries, oldest first, as the guide orders an ascending
    list: LAST_ENTRY_ELEMENT is the newest, element N older than N+1."""
    n = len(bt26["SELF_READS"])
    k = min(bt26["NBR_UNREAD_ENTRIES"], bt26["NBR_VALID_ENTRIES"])
    last = bt26["LAST_ENTRY_ELEMENT"]
    step = 1 if bt26["LIST_STATUS"]["ORDER"] else -1
    return [bt26["SELF_READS"][(last + step * b) % n] for b in range(k - 1, -1, -1)]


def _stored_self_reads(store):
    """{read_at epoch s: total.summation0} of the stored self reads."""
    out = {}
    for r in store.registers().to_pylist():
        if r["name"] == "self_read.total.summation0":
            out[r["read_at"].timestamp()] = r["value"]
    return out


def _want(bt26):
    return {
        _time(e["END_DATE_TIME"]): float(
            e["SELF_READ_REGISTER_DATA"]["TOT_DATA_BLOCK"]["SUMMATIONS"][0]
        )
        for e in _unread(bt26)
    }


def _acks(session):
    return [d for p, d in session.calls if p == BP05 and d[0] == LIST_SELF_READS]


def test_unread_self_reads_are_stored_at_their_time_then_acknowledged(store):
    bt26 = _bt26(OLDER)
    assert bt26["NBR_UNREAD_ENTRIES"] == 3  # the simulated meter takes one each midnight
    outcome, stored, session, _ = _run(store, dict(OLDER))
    assert outcome == "ok", stored
    assert _stored_self_reads(store) == _want(bt26)
    assert _acks(session) == [struct.pack("<BH", LIST_SELF_READS, bt26["NBR_UNREAD_ENTRIES"])]
    names = {r["name"] for r in store.registers().to_pylist()}
    assert "self_read.seq" in names and "self_read.tier1.summation0" in names


def test_a_task_stopped_before_bp05_stores_nothing_twice(store):
    images = dict(HONEST)
    outcome, _, _, _ = _run(store, images, fail_call=(BP05, LIST_SELF_READS))
    assert outcome == "failed"  # committed, the meter not told
    rows = store.registers().num_rows
    outcome, stored, session, _ = _run(store, images)  # the next read takes them again
    assert outcome == "ok"
    assert stored["registers"] == 0 and store.registers().num_rows == rows
    assert len(_acks(session)) == 1
    assert _stored_self_reads(store) == _want(_bt26(images))


def test_descending_self_reads_are_taken_in_their_order(store):
    bt26 = _bt26(OLDER)
    n = len(bt26["SELF_READS"])
    newest_first = _unread(bt26)[::-1]
    flipped = _bt26(OLDER)
    flipped["LIST_STATUS"]["ORDER"] = True  # element N+1 older than N
    last = 1
    flipped["LAST_ENTRY_ELEMENT"] = last
    blank = {**newest_first[0], "END_DATE_TIME": tables.decode(52, bytes(7))["CLOCK_CALENDAR"]}
    flipped["SELF_READS"] = [blank] * n
    for back, e in enumerate(newest_first):
        flipped["SELF_READS"][(last + back) % n] = e
    images = {**OLDER, 26: tables.encode(26, flipped, _ctx(OLDER, 21))}
    outcome, stored, _, _ = _run(store, images)
    assert outcome == "ok", stored
    assert _stored_self_reads(store) == _want(bt26)


@pytest.mark.parametrize("field, offset", [("NBR_VALID_ENTRIES", 1), ("LAST_ENTRY_ELEMENT", 2)])
def test_a_self_read_header_beyond_its_ring_is_refused(store, field, offset):
    bt26 = _bt26(HONEST)
    bt26[field] = len(bt26["SELF_READS"]) + (field == "NBR_VALID_ENTRIES")
    images = {**HONEST, 26: tables.encode(26, bt26, _ctx(HONEST, 21))}
    outcome, error, session, _ = _run(store, images)
    assert outcome == "failed"
    assert isinstance(error, MalformedError)
    assert (error.table, error.field, error.offset) == ("BT26", field, offset)
    assert session.entry_reads[26] == 0 and not _acks(session)


def test_more_unread_than_valid_self_reads_reads_the_valid_ones(store):
    bt26 = _bt26(HONEST)
    bt26["NBR_UNREAD_ENTRIES"] = 255
    images = {**HONEST, 26: tables.encode(26, bt26, _ctx(HONEST, 21))}
    outcome, stored, session, _ = _run(store, images)
    assert outcome == "ok", stored
    assert len(_stored_self_reads(store)) == bt26["NBR_VALID_ENTRIES"]
    assert _acks(session) == [struct.pack("<BH", LIST_SELF_READS, bt26["NBR_VALID_ENTRIES"])]


def test_a_self_read_without_a_valid_time_is_not_acknowledged(store):
    bt26 = _bt26(HONEST)
    n, last = len(bt26["SELF_READS"]), bt26["LAST_ENTRY_ELEMENT"]
    bt26["SELF_READS"][last % n]["END_DATE_TIME"] = tables.decode(52, bytes(7))["CLOCK_CALENDAR"]
    images = {**HONEST, 26: tables.encode(26, bt26, _ctx(HONEST, 21))}
    outcome, error, session, _ = _run(store, images)
    assert outcome == "failed"
    assert isinstance(error, ProtocolError) and "BT26" in str(error)
    assert not _acks(session) and not _stored_self_reads(store)
    assert store.intervals().num_rows > 0  # what came before it is stored


def test_a_meter_that_keeps_no_self_reads_is_not_asked(store):
    ctx = _ctx(HONEST, 21)
    bt21 = _thaw(ctx["BT21"])
    bt21["NBR_SELF_READS"] = 0
    images = dict(HONEST)
    images[21] = tables.encode(21, bt21, {"BT00": ctx["BT00"]})
    images[26] = HONEST[26][:6]  # its header alone
    asked = []
    outcome, stored, session, _ = _run(store, images, on_read=asked.append)
    assert outcome == "ok", stored
    assert 26 not in asked and not _acks(session)


def _present(store, images):
    outcome, stored, _, _ = _run(store, images, present=True)
    assert outcome == "ok", stored
    return {
        r["name"]: (r["value"], r["unit"])
        for r in store.registers().to_pylist()
        if r["name"].startswith("present.")
    }


# source IDs of BT22/BT27 (MEP guide p.203-204) and the units of BT28 (p.215)
GUIDE = {8: ("fwd_active_w", "W"), 9: ("rev_active_w", "W"), 10: ("import_reactive_var", "var"),
         11: ("export_reactive_var", "var"), 12: ("current_l1", "mA"), 15: ("voltage_l1", "mV"),
         18: ("power_factor_l1", "1/1000"), 19: ("frequency", "mHz")}  # fmt: skip


@pytest.mark.parametrize("select", [None, [19, 15, 12, 18]])
def test_present_values_are_named_by_the_sources_bt27_selects(store, select):
    images = dict(HONEST)
    ctx = _ctx(images, 21)
    if select is not None:  # another selection: the values are named by it, not by position
        images[27] = tables.encode(27, {"PRESENT_VALUE_SELECT": select}, ctx)
    bt27 = tables.decode(27, images[27], ctx)
    bt28 = tables.decode(28, images[28], ctx)
    assert len(bt27["PRESENT_VALUE_SELECT"]) == len(bt28["PRESENT_VALUES"]) == 4
    got = _present(store, images)
    want = {
        f"present.{GUIDE[src][0]}": (float(v), GUIDE[src][1])
        for src, v in zip(bt27["PRESENT_VALUE_SELECT"], bt28["PRESENT_VALUES"])
    }
    (src,) = bt27["PRESENT_DEMAND_SELECT"]
    assert src == 0  # forward active Wh: its demand is in W
    want["present.demand.fwd_active_wh"] = (float(bt28["PRESENT_DEMANDS"][0]["DEMAND_VALUE"]), "W")
    assert got == want


def test_present_values_are_read_only_when_asked(store):
    asked = []
    outcome, _, _, _ = _run(store, dict(HONEST), present=False, on_read=asked.append)
    assert outcome == "ok" and not {27, 28} & set(asked)
    assert not [r for r in store.registers().to_pylist() if r["name"].startswith("present.")]


def test_a_present_selection_that_does_not_decode_is_asked_again(store):
    images = dict(HONEST)
    images[27] = HONEST[27][:-1]  # one source short of what BT21 counts
    outcome, error, _, m = _run(store, images, present=True)
    assert outcome == "failed" and isinstance(error, OSGPError)
    assert m.dims == {}  # forgotten: the next task reads the dimension tables again
