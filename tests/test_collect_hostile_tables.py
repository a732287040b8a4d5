"""Collection tasks against a meter whose tables are authentic but odd.

The security suite and the link vouch only for who sent a table, not for
what it says: a meter of another model, a firmware bug or a half-written
configuration gives dimension tables and ring headers the collector has
not met.  Every collection task must then end with a result or an error of
the osgp hierarchy (the engine catches those), in a bounded number of reads,
never with a bare exception that would stop the concentrator serving the
other meters.

The tasks run here over a stand-in session that answers each read from a
dict of table images at once; the images start as a simulated meter's and
are changed by each test."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from osgp import tables
from osgp.concentrator import KeyVault, Store
from osgp.concentrator.collect import DIM_TABLES, collect
from osgp.concentrator.engine import Concentrator, run_task
from osgp.errors import MalformedError, OSGPError, ProtocolError
from osgp.link import lon
from osgp.link.carrier import PlcDeviceCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.sim import SimMeter

READ_TABLES = DIM_TABLES + (23, 26, 27, 28, 63, 64, 74)
LISTS = (26, 74)  # the list tables whose entries are read by offset
MAX_OPS = 5_000


def _honest(days=1.3):
    m = SimMeter(
        "SIM00001",
        links=[(PlcDeviceCarrier([lon.SubnetNode(2, 1)]), LegacySuite(bytes(12), PLC_ENVELOPE))],
    )
    m.advance(86400 * days)  # a day and more of intervals, some events
    return {t: bytes(m.tables[t]) for t in READ_TABLES}


HONEST = _honest()


class _Done:
    """An operation that has already ended (what the engine resumes a task with)."""

    done = True

    def __init__(self, result=None, error=None):
        self.result, self.error = result, error


class _Session:
    """Answers reads from ``images``; counts what the task asked for."""

    def __init__(self, images, fail_call=None, on_read=None):
        self.images = images
        self.fail_call, self.on_read = fail_call, on_read  # (procedure, first byte), table ->
        self.ops = 0
        self.entry_reads = dict.fromkeys(LISTS, 0)  # per list table: reads past its header
        self.calls = []

    def read(self, table, offset=None, count=None, priority=0):
        self.ops += 1
        if self.on_read is not None:
            self.on_read(table)
        image = self.images[table]
        if offset is None:
            return _Done(image)
        if table in LISTS and offset > 0:
            self.entry_reads[table] += 1
        if offset + count > len(image):  # what a meter answers: 0x05 [MEP p.11]
            return _Done(error=ProtocolError(f"BT{table}: read beyond the table"))
        return _Done(image[offset : offset + count])

    def call(self, proc, data, priority=0):
        self.ops += 1
        self.calls.append((proc, bytes(data)))
        if self.fail_call == (proc, data[0]):  # e.g. the link lost as the meter is told
            return _Done(error=ProtocolError(f"procedure {proc}: no response"))
        return _Done(b"")

    def state(self):
        return {}


@pytest.fixture(scope="module")
def store():
    s = Store("sqlite://", vault=KeyVault(bytes(32)))
    yield s
    s.close()


def _run(store, images, *, present=True, **session_kw):
    """(outcome, stored counts or the error, the session, the meter) of one
    collect task of the meter (new to the store the first time)."""
    dev = store.upsert_device(bytes(6), segment="s1", subnet=2, node=1)
    eng = SimpleNamespace(
        store=store,
        runtime=SimpleNamespace(time=lambda: 0.0, utc=lambda t: 1.8e9),
        save_session=lambda m: ("session", {}),
    )
    session = _Session(images, **session_kw)
    m = SimpleNamespace(device_id=dev, session=session, dims={}, cursors={})
    task = collect(eng, m, events=True, self_reads=True, present=present)
    value = error = None
    for _ in range(MAX_OPS):
        try:
            op = task.throw(error) if error is not None else task.send(value)
        except StopIteration as stop:
            return "ok", stop.value, session, m
        except OSGPError as exc:
            return "failed", exc, session, m
        value, error = op.result, op.error
    raise AssertionError(f"the task was still reading after {MAX_OPS} operations")


def _ctx(images, *tids):
    ctx = {"BT00": tables.decode(0, images[0])}
    for t in tids:
        ctx[f"BT{t:02d}"] = tables.decode(t, images[t], ctx)
    return ctx


def _thaw(x):
    if hasattr(x, "items"):
        return {k: _thaw(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [_thaw(v) for v in x]
    return x


def _bt74_header(images, **fields):
    """BT74 with its header fields changed (the entries as they were)."""
    ctx = _ctx(images, 71)
    log = _thaw(tables.decode(74, images[74], ctx))
    log.update(fields)
    return tables.encode(74, log, ctx)


def test_an_honest_meter_is_collected():
    # the baseline of the cases below: the same stand-in reads an unchanged meter
    fresh = Store("sqlite://", vault=KeyVault(bytes(32)))
    outcome, stored, _, _ = _run(fresh, dict(HONEST))
    assert outcome == "ok"
    assert stored["registers"] > 0 and stored["intervals"] > 0 and stored["events"] > 0
    assert any(n.startswith("self_read.") for n in fresh.registers().column("name").to_pylist())
    fresh.close()


def test_registers_of_a_meter_without_a_demand_reset_counter():
    images = dict(HONEST)
    ctx = _ctx(images, 21)
    bt23 = _thaw(tables.decode(23, images[23], ctx))
    bt21 = _thaw(ctx["BT21"])
    bt21["REG_FUNC1_FLAGS"]["DEMAND_RESET_CTR_FLAG"] = False
    images[21] = tables.encode(21, bt21, {"BT00": ctx["BT00"]})
    del bt23["NBR_DEMAND_RESETS"]  # BT23 without the field, as BT21 now says
    images[23] = tables.encode(23, bt23, _ctx(images, 21))
    bt26 = _thaw(tables.decode(26, images[26], ctx))  # and its self reads (BT23 snapshots)
    for e in bt26["SELF_READS"]:
        del e["SELF_READ_REGISTER_DATA"]["NBR_DEMAND_RESETS"]
    images[26] = tables.encode(26, bt26, _ctx(images, 21))
    store = Store("sqlite://", vault=KeyVault(bytes(32)))
    outcome, stored, _, m = _run(store, images)
    assert outcome == "ok", stored
    regs = {r["name"]: r["value"] for r in store.registers().to_pylist()}
    assert "demand_resets" not in regs and "self_read.demand_resets" not in regs
    assert regs["total.summation0"] == float(bt23["TOT_DATA_BLOCK"]["SUMMATIONS"][0])
    store.close()


def _log_refused(store, images, field):
    outcome, error, session, _ = _run(store, images)
    assert outcome == "failed"
    assert isinstance(error, MalformedError)
    assert (error.table, error.field) == ("BT74", field)
    assert session.entry_reads[74] == 0  # refused on its header, before any entry is read


def test_a_log_header_that_claims_entries_of_an_empty_ring(store):
    images = dict(HONEST)
    ctx = _ctx(images, 71)
    bt71 = _thaw(ctx["BT71"])
    bt71["NBR_HISTORY_ENTRIES"] = 0
    images[71] = tables.encode(71, bt71, {"BT00": ctx["BT00"]})
    images[74] = HONEST[74][:11]  # the header (3 valid, 3 unread entries), then an empty ring
    assert tables.decode(74, HONEST[74], _ctx(HONEST, 71))["NBR_VALID_ENTRIES"] > 0
    _log_refused(store, images, "NBR_VALID_ENTRIES")


def test_a_log_header_that_claims_more_entries_than_the_ring_holds(store):
    images = dict(HONEST)
    images[74] = _bt74_header(images, NBR_VALID_ENTRIES=65535, NBR_UNREAD_ENTRIES=65535)
    _log_refused(store, images, "NBR_VALID_ENTRIES")


def test_a_log_header_whose_last_entry_is_outside_the_ring(store):
    images = dict(HONEST)
    entries = _ctx(images, 71)["BT71"]["NBR_HISTORY_ENTRIES"]
    images[74] = _bt74_header(images, LAST_ENTRY_ELEMENT=entries)
    _log_refused(store, images, "LAST_ENTRY_ELEMENT")


def test_a_meter_without_load_profile_set_1_fails_its_task_and_is_asked_again(store):
    images = dict(HONEST)
    bt00 = _thaw(tables.decode(0, images[0]))
    for t in range(64, 68):  # no BT64..BT67: no load-profile data set (@LP_SETS 0)
        bt00["STD_TBLS_USED"][t] = False
    images[0] = tables.encode(0, bt00)
    # BT61..BT63 as the meter gives them under that BT00: no set records
    ctx = {"BT00": tables.decode(0, images[0])}
    bt61 = _thaw(tables.decode(61, HONEST[61], _ctx(HONEST)))
    images[61] = tables.encode(61, {**bt61, "LP_DATA_SETS": []}, ctx)
    ctx["BT61"] = tables.decode(61, images[61], ctx)
    images[62] = tables.encode(62, {}, ctx)
    images[63] = tables.encode(63, {"LP_STATUS_SETS": []}, ctx)
    outcome, error, _, m = _run(store, images)
    assert outcome == "failed"
    assert isinstance(error, ProtocolError) and "BT61" in str(error)
    assert m.dims == {}  # forgotten: the next task reads the dimension tables again


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.sampled_from(READ_TABLES),
    edits=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 2**16)),
)
def test_changed_table_bytes_end_the_task_in_bounded_reads(store, table, edits, cut):
    images = dict(HONEST)
    image = bytearray(images[table])
    for pos, value in edits:
        # mostly in the first bytes, where the counts, flags and ring positions are
        image[pos % min(len(image), 48)] = value
    if cut is not None:
        image = image[: cut % (len(image) + 1)]
    images[table] = bytes(image)
    outcome, result, session, _ = _run(store, images)  # raises on anything else
    assert outcome in ("ok", "failed")
    if outcome == "failed":
        assert isinstance(result, OSGPError)
    assert session.entry_reads[74] <= _max_entries(images, 71, "NBR_HISTORY_ENTRIES")
    assert session.entry_reads[26] <= _max_entries(images, 21, "NBR_SELF_READS")


def _max_entries(images, dim, field):
    try:
        return _ctx(images, dim)[f"BT{dim}"][field]
    except OSGPError:
        return 0


def test_a_task_that_raises_a_bare_exception_fails_alone(store, caplog):
    # the engine's last line: a defect of one task on one meter's data fails
    # that task (an error of the hierarchy, logged and counted), not the engine
    clock = SimpleNamespace(time=lambda: 0.0, utc=lambda t: 1.8e9)
    eng = Concentrator(store, clock)
    done = []
    eng.on_task_done.append(done.append)

    def task(first_read):
        data = yield _Done(first_read)
        return 100 // len(data)

    meters = [SimpleNamespace(device_id=i, busy=False) for i in (1, 2)]
    with caplog.at_level("ERROR", logger="osgp.concentrator"):
        eng.start(meters[0], task(b""), "divide")
        eng.start(meters[1], task(b"\x01\x02"), "divide")
    assert [t.result for t in done] == [None, 50]
    assert isinstance(done[0].error, ProtocolError) and done[1].error is None
    assert "ZeroDivisionError" in str(done[0].error)
    assert isinstance(done[0].error.__cause__, ZeroDivisionError)
    assert eng.stats["task errors"] == 1 and eng.stats["tasks ok"] == 1
    assert not meters[0].busy and "divide" in caplog.text


def test_run_task_turns_a_data_defect_into_a_protocol_error():
    # the synchronous driver (osgp collect over one port) reports it the same way
    def task():
        data = yield _Done(b"")
        return 100 // len(data)

    with pytest.raises(ProtocolError, match="ZeroDivisionError") as info:
        run_task(None, task(), lambda session, op: op.result)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
