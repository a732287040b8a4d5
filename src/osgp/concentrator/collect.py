"""Collection tasks: what a scheduled read of one meter does, step by step.

Each task is a generator for :class:`~osgp.concentrator.engine.Concentrator`
(or :func:`~osgp.concentrator.engine.run_task` over one port).  The rule that
nothing is lost or stored twice:

* readings are committed to the store, with the cursor that says how far
  they go, in one transaction, and only then is the meter told they were read
  (BP05 UPDATE_LAST_READ_ENTRY, ANSI C12.19; list numbers as the simulator's
  layouts);
* the store ignores a reading it already has (unique keys), so a task that
  dies between the commit and BP05 re-reads the same blocks and stores
  nothing new;
* only complete load-profile blocks are acknowledged; the open block is read
  again next time from the first interval the cursor has not seen.

Load-profile layout: BT61..BT64 (Optical guide p.31-36): block i of BT64
starts at ``i x block size``; a block is its header (BLK_END_TIME,
END_READINGS, SIMPLE_INT_STATUS: ``int0_off`` bytes) followed by
``NBR_BLK_INTS`` intervals of ``int_size`` bytes.
"""

from __future__ import annotations

import functools
import struct
from typing import Any, Dict, Generator, List, Optional, Tuple

import numpy as np

from osgp import loadprofile, tables
from osgp.errors import OSGPError, ProtocolError
from osgp.session.events import Operation, Priority
from osgp.tables.events import event_name

__all__ = [
    "collect",
    "read_dims",
    "register_values",
    "DIM_TABLES",
    "LIST_HISTORY",
    "LIST_LP_SET1",
    "LIST_SELF_READS",
    "SOURCES",
    "SOURCE_UNITS",
    "present_values",
]

BP05 = 5  # UPDATE_LAST_READ_ENTRY (ANSI C12.19 standard procedure 5)
# BP05 list numbers (the simulator's INFERRED layout, osgp.sim.layouts)
LIST_HISTORY, LIST_SELF_READS, LIST_LP_SET1 = 1, 2, 3
_LOG_HEADER = 11  # BT74 header bytes (Optical guide p.51)
_SELF_READ_HEADER = 6  # BT26 header bytes 0..5 (Optical guide p.27-28)
# dimension tables read once per meter: BT00 general configuration, BT21
# register dimensions, BT61/BT62 load-profile dimensions and selections,
# BT71 log dimensions (ANSI C12.19; Optical guide p.31-34)
DIM_TABLES = (0, 21, 61, 62, 71)
PRESENT_DIMS = (27,)  # BT27 present register selection, for a read of BT28 (MEP p.212-213)
# units of the summation sources in the order BT22 selects them; a meter's
# own BT12/BT16 would say, the simulator's order is active Wh then reactive
# varh (osgp.sim.meter.LoadProfileConfig)
SOURCE_UNITS = ("Wh", "varh")

# measurement sources by the ID BT22 and BT27 select them with (MEP guide
# p.203-204): name and unit; IDs from 29 are tier registers, not present values
SOURCES = (
    ("fwd_active_wh", "Wh"), ("rev_active_wh", "Wh"),
    ("import_reactive_varh", "varh"), ("export_reactive_varh", "varh"),
    ("power_off", "s"), ("outages", "count"), ("fwd_plus_rev_wh", "Wh"), ("fwd_minus_rev_wh", "Wh"),
    ("fwd_active_w", "W"), ("rev_active_w", "W"),
    ("import_reactive_var", "var"), ("export_reactive_var", "var"),
    ("current_l1", "mA"), ("current_l2", "mA"), ("current_l3", "mA"),  # units: MEP p.215
    ("voltage_l1", "mV"), ("voltage_l2", "mV"), ("voltage_l3", "mV"),
    ("power_factor_l1", "1/1000"), ("frequency", "mHz"), ("apparent_va", "VA"),
    ("power_factor_l2", "1/1000"), ("power_factor_l3", "1/1000"),
    ("sin_phase_l1", "1/1000"), ("sin_phase_l2", "1/1000"), ("sin_phase_l3", "1/1000"),
    ("pulse_input0", "count"), ("pulse_input1", "count"), ("error_counter", "count"),
)  # fmt: skip
_DEMAND_UNITS = {"Wh": "W", "varh": "var"}  # a demand is the mean power of its energy source

TaskGen = Generator[Operation, Any, Any]
_LP_TRIES = 3  # load-profile reads against a BT63 that keeps changing


def read_dims(
    session: Any, dims: Dict[int, bytes], priority: int, extra: Tuple[int, ...] = ()
) -> TaskGen:
    """Read the dimension tables (and the ``extra`` ones) the meter has not
    given yet (a generator)."""
    for t in DIM_TABLES + extra:
        if t not in dims:
            dims[t] = yield session.read(t, priority=priority)
    return dims


@functools.lru_cache(maxsize=256)
def _dim(tid: int, image: bytes, bt00: bytes) -> Any:
    """Dimension table ``tid`` decoded once per model (the meters of a model
    give the same bytes); BT00 is decoded with no context."""
    return tables.decode(tid, image, None if tid == 0 else {"BT00": _dim(0, bt00, bt00)})


def _dims_ctx(dims: Dict[int, bytes], *tids: int) -> Dict[str, Any]:
    """A decoding context of BT00 and the dimension tables ``tids``, decoded."""
    bt00 = dims[0]
    ctx = {"BT00": _dim(0, bt00, bt00)}
    for t in tids:
        ctx[f"BT{t:02d}"] = _dim(t, dims[t], bt00)
    return ctx


def register_values(bt23: Any, dims: Dict[int, bytes]) -> Dict[str, Tuple]:
    """BT23 as ``name -> (value, unit)``: summations total and per tier, the
    demand maxima (ANSI C12.19 BT23; Optical guide p.28-30)."""
    return _register_data_values(tables.decode(23, bt23, _dims_ctx(dims, 21)))


def present_values(bt28: Any, dims: Dict[int, bytes]) -> Dict[str, Tuple]:
    """BT28 as ``name -> (value, unit)``, named by the sources BT27 selects
    (:data:`SOURCES`): ``present.<source>`` for each present value and
    ``present.demand.<source>`` for the demand of the interval running now
    (MEP guide p.212-218)."""
    sel = _present_select(dims[0], dims[21], dims[27])
    d = tables.decode(28, bt28, _dims_ctx(dims, 21))
    out: Dict[str, Tuple[float, str]] = {}
    for src, dm in zip(sel["PRESENT_DEMAND_SELECT"], d["PRESENT_DEMANDS"]):
        name, unit = _source(src)
        out[f"present.demand.{name}"] = (float(dm["DEMAND_VALUE"]), _DEMAND_UNITS.get(unit, unit))
    for src, v in zip(sel["PRESENT_VALUE_SELECT"], d["PRESENT_VALUES"]):
        name, unit = _source(src)
        out[f"present.{name}"] = (float(v), unit)
    return out


@functools.lru_cache(maxsize=64)
def _present_select(bt00: bytes, bt21: bytes, bt27: bytes) -> Any:
    """BT27 decoded (it is sized by BT21), once per model."""
    return tables.decode(27, bt27, _dims_ctx({0: bt00, 21: bt21}, 21))


def _source(src: int) -> Tuple[str, str]:
    return SOURCES[src] if src < len(SOURCES) else (f"source{src}", "")


def _register_data_values(d: Any, prefix: str = "") -> Dict[str, Tuple[float, str]]:
    """A decoded register data record (BT23, or a BT26 self read's snapshot
    of it) as ``prefix + name -> (value, unit)``."""
    out: Dict[str, Tuple[float, str]] = {}
    if "NBR_DEMAND_RESETS" in d:  # present when BT21 sets DEMAND_RESET_CTR_FLAG
        out[prefix + "demand_resets"] = (float(d["NBR_DEMAND_RESETS"]), "count")
    blocks = [("total", d["TOT_DATA_BLOCK"])] + [
        (f"tier{i + 1}", b) for i, b in enumerate(d["TIER_DATA_BLOCK"])
    ]
    for name, b in blocks:
        for i, v in enumerate(b["SUMMATIONS"]):
            unit = SOURCE_UNITS[i] if i < len(SOURCE_UNITS) else ""
            out[f"{prefix}{name}.summation{i}"] = (float(v), unit)
        for i, dm in enumerate(b["DEMANDS"]):
            for j, v in enumerate(dm["DEMAND"]):
                out[f"{prefix}{name}.demand{i}.{j}"] = (float(v), "W")
    return out


@functools.lru_cache(maxsize=64)
def _lp_geometry(bt00: bytes, bt61: bytes, bt62: bytes) -> Tuple[Any, int]:
    """(block geometry, blocks in the ring) of load-profile set 1, once per model."""
    ctx = {"BT00": bt00, "BT61": bt61}
    t00 = tables.decode(0, bt00)
    t61 = tables.decode(61, bt61, ctx)
    t62 = tables.decode(62, bt62, ctx)
    if not t61["LP_DATA_SETS"]:
        raise ProtocolError("BT61 describes no load-profile set 1 (BT00 does not list it)")
    g = loadprofile.geometry(t61, t62, tm_format=t00["FORMAT_CONTROL_2"]["TM_FORMAT"])
    return g, t61["LP_DATA_SETS"][0]["NBR_BLKS_SET"]


def _check_dims(dims: Dict[int, bytes], load_profile: bool) -> int:
    """Decode the meter's dimension tables (BT27 too once read, and for a
    load-profile read the geometry of set 1): a model the collector cannot
    work with fails the task here, with the tables forgotten so that the
    next read asks for them again.  Returns the channels of load-profile
    set 1 (0: none)."""
    try:
        sets = _dims_ctx(dims, 21, 61, 71)["BT61"]["LP_DATA_SETS"]
        if 27 in dims:
            _present_select(dims[0], dims[21], dims[27])
        if load_profile:
            _lp_geometry(dims[0], dims[61], dims[62])
    except OSGPError:
        dims.clear()
        raise
    return int(sets[0]["NBR_CHNS_SET"]) if sets else 0


class _LpPlan:
    """Which bytes of BT64 to fetch: per unread block its header and the
    intervals the cursor has not seen."""

    def __init__(self, dims: Dict[int, bytes], bt63: bytes, cursor: Optional[Dict]) -> None:
        self.g, nblks = _lp_geometry(dims[0], dims[61], dims[62])
        self.bt63 = tables.decode(63, bt63, _dims_ctx(dims, 61))  # decoded once
        st = self.bt63["LP_STATUS_SETS"][0]
        self.status = st
        self.blocks, self.seqs = loadprofile.block_order(nblks, st, unread_only=True)
        self.nvi = st["NBR_VALID_INT"]
        seen_seq = cursor.get("open_seq") if cursor else None
        self.seen = int(cursor.get("open_k", 0)) if cursor and seen_seq is not None else 0
        self.seen_seq = seen_seq
        self.size = nblks * self.g.block_size

    def complete(self, i: int) -> bool:
        """Block i of the unread list is complete (all but the newest are)."""
        return i < len(self.blocks) - 1 or self.nvi >= self.g.nint

    def recorded(self, i: int) -> int:
        return self.g.nint if i < len(self.blocks) - 1 else self.nvi

    def first_unseen(self, i: int) -> int:
        return self.seen if self.seqs[i] == self.seen_seq else 0

    def reads(self) -> List[Tuple[int, int, int]]:
        """(block position, offset, count) of the header and of the unseen
        intervals of each unread block (the header even when every interval
        was seen: the block is decoded with the others)."""
        g, out = self.g, []
        for i, b in enumerate(self.blocks):
            n, k = self.recorded(i), self.first_unseen(i)
            if n == 0:
                continue  # an empty open block: the decoder skips it
            base = b * g.block_size
            out.append((i, base, g.int0_off))  # every block's header: the decoder needs it
            if k < n:
                out.append((i, base + g.int0_off + k * g.int_size, (n - k) * g.int_size))
        return out


def _coalesce(ranges: Any) -> List[Tuple[int, int]]:
    """(offset, count) ranges in offset order with adjacent ones merged: one
    partial read each, which the session splits at the link's read limit,
    instead of a request (and its frames) per piece."""
    out: List[Tuple[int, int]] = []
    for off, count in sorted(ranges):
        if out and out[-1][0] + out[-1][1] == off:
            out[-1] = (out[-1][0], out[-1][1] + count)
        else:
            out.append((off, count))
    return out


def _interval_rows(plan: _LpPlan, dims: Dict[int, bytes], image: bytes) -> Any:
    """The new intervals as store columns (ts_utc, channel, value, raw, status)."""
    lp = loadprofile.decode(dims[61], dims[62], plan.bt63, image, bt00=dims[0], unread_only=True)
    if not len(lp):
        return None
    keep = np.ones(len(lp), bool)
    assert lp._block_rows is not None
    _, counts = lp._block_rows  # rows per decoded block, oldest first
    start = 0
    g = plan.g
    for i, cnt in enumerate(counts.tolist()):
        k = plan.first_unseen(i) if i < len(plan.blocks) else 0
        if k:
            base = plan.blocks[i] * g.block_size
            bits = np.unpackbits(
                np.frombuffer(image, np.uint8, (g.nint + 7) // 8, base + g.simple_off),
                bitorder="little",
            )[:k]
            keep[start : start + int(bits.sum())] = False  # seen on an earlier read
        start += cnt
    ts = lp.timestamps.astype("int64")[keep]
    nch = lp.channels
    flags = lp.flags[keep].astype(np.int64)
    return {
        "ts_utc": np.repeat(ts, nch),
        "channel": np.tile(np.arange(nch, dtype=np.int64), len(ts)),
        "value": lp.scaled[keep].reshape(-1),
        "raw": lp.values[keep].astype(np.int64).reshape(-1),
        # common flags in bits 0-3, the channel's status code in bits 4-7
        "status": ((lp.status[keep].astype(np.int64) << 4) | flags[:, None]).reshape(-1),
    }


def _stored(eng: Any, fn: Any, *args: Any, **kwargs: Any) -> TaskGen:
    """A store write, through the engine's :meth:`~osgp.concentrator.engine.
    Concentrator.write` when it has one (the task resumes after the commit)."""
    write = getattr(eng, "write", None)
    if write is None:
        return fn(*args, **kwargs)
    return (yield write(fn, *args, **kwargs))


def collect(
    eng: Any,
    m: Any,
    *,
    registers: bool = True,
    load_profile: bool = True,
    events: bool = False,
    self_reads: bool = False,
    present: bool = False,
    priority: int = Priority.SCHEDULED,
) -> TaskGen:
    """One scheduled read of meter ``m``; returns the counts newly stored
    (present values and the values of self reads count among the registers)."""
    store, dev = eng.store, m.device_id
    stored = {"intervals": 0, "registers": 0, "events": 0}
    had = len(m.dims)
    yield from read_dims(m.session, m.dims, priority, PRESENT_DIMS if present else ())
    nch = _check_dims(m.dims, load_profile)
    if len(m.dims) != had:
        yield from _stored(
            eng,
            store.update_meta,
            dev,
            {"channel_units": list(SOURCE_UNITS[:nch])},
            cursor=("dims", {str(k): v.hex() for k, v in m.dims.items()}),
        )
    if registers or present:
        values: Dict[str, Tuple] = {}
        if registers:
            values.update(register_values((yield m.session.read(23, priority=priority)), m.dims))
        if present:
            values.update(present_values((yield m.session.read(28, priority=priority)), m.dims))
        at = eng.runtime.utc(eng.runtime.time())
        stored["registers"] = yield from _stored(
            eng, store.commit_registers, dev, at, values, cursor=eng.save_session(m)
        )
    if load_profile:
        stored["intervals"] = yield from _collect_lp(eng, m, priority)
    if events:
        stored["events"] = yield from _collect_events(eng, m, priority)
    if self_reads:
        stored["registers"] += yield from _collect_self_reads(eng, m, priority)
    return stored


def _collect_lp(eng: Any, m: Any, priority: int) -> TaskGen:
    store, dev = eng.store, m.device_id
    bt63 = yield m.session.read(63, priority=priority)
    for _ in range(_LP_TRIES):
        saved = m.cursors["lp"] if "lp" in m.cursors else store.cursor(dev, "lp")
        plan = _LpPlan(m.dims, bt63, saved)
        image = bytearray(plan.size)
        for off, count in _coalesce((off, count) for _, off, count in plan.reads()):
            image[off : off + count] = yield m.session.read(64, off, count, priority=priority)
        # an interval that closed while the blocks were read moves the open
        # block's BLK_END_TIME away from the BT63 the reads were planned on
        again = yield m.session.read(63, priority=priority)
        if again == bt63:
            break
        bt63 = again
    else:
        raise ProtocolError(f"BT63 changed during each of {_LP_TRIES} load-profile reads")
    new = 0
    done = sum(plan.complete(i) for i in range(len(plan.blocks)))
    if plan.blocks:
        last = len(plan.blocks) - 1
        cursor = {
            "open_seq": None if plan.complete(last) else plan.seqs[last],
            "open_k": 0 if plan.complete(last) else plan.recorded(last),
            "acked_seq": plan.seqs[done - 1] if done else None,
        }
        cols = _interval_rows(plan, m.dims, bytes(image))
        new = yield from _stored(
            eng,
            store.commit_intervals,
            dev,
            cols if cols is not None else [],
            cursor=("lp", cursor),
        )
        m.cursors["lp"] = cursor  # committed: what the next read starts from
    if done:
        yield m.session.call(BP05, struct.pack("<BH", LIST_LP_SET1, done), priority=priority)
    return new


@functools.lru_cache(maxsize=64)
def _list_geometry(
    tid: int, dim: int, count: str, bt00: bytes, image: bytes
) -> Tuple[int, int, Dict[str, Any]]:
    """(size, entries, the context its header alone decodes in) of list
    table ``tid`` (BT74, BT26) whose entries dimension table ``dim`` (BT71,
    BT21) counts in field ``count``: meters of one model share them, so this
    is worked out once per model.  The header's context is a dimension
    table of no entries, under which the list table is its header."""
    key = f"BT{dim:02d}"
    ctx = _dims_ctx({0: bt00, dim: image}, dim)
    t = ctx[key]
    empty = tables.encode(dim, {**t, count: 0}, ctx)
    head_ctx = {"BT00": ctx["BT00"], key: tables.decode(dim, empty, ctx)}
    return len(tables.encode(tid, {}, ctx)), t[count], head_ctx


def _read_list(
    m: Any, tid: int, head: bytes, size: int, n_all: int, slots: List[int], priority: int
) -> TaskGen:
    """List table ``tid`` of ``size`` bytes: the header already read
    (``head``) and the entries at ring elements ``slots`` (the rest left zero)."""
    image = bytearray(size)
    image[: len(head)] = head
    entry = (size - len(head)) // max(n_all, 1)
    for off, count in _coalesce((len(head) + slot * entry, entry) for slot in slots):
        image[off : off + count] = yield m.session.read(tid, off, count, priority=priority)
    return bytes(image)


def _collect_events(eng: Any, m: Any, priority: int) -> TaskGen:
    """The unread entries of the history log (BT74, Optical guide p.51-53),
    then BP05 on them.  BT74 is its 11-byte header (HIST_FLAGS,
    NBR_VALID_ENTRIES, LAST_ENTRY_ELEMENT, LAST_ENTRY_SEQ_NBR,
    NBR_UNREAD_ENTRIES) and a ring of BT71.NBR_HISTORY_ENTRIES entries."""
    store, dev = eng.store, m.device_id
    size, n_all, head_ctx = _list_geometry(74, 71, "NBR_HISTORY_ENTRIES", m.dims[0], m.dims[71])
    head_image = yield m.session.read(74, 0, _LOG_HEADER, priority=priority)
    head = tables.decode(74, head_image, head_ctx)
    loadprofile.check_log_header(head, n_all)  # before any entry is read
    unread = min(head["NBR_UNREAD_ENTRIES"], head["NBR_VALID_ENTRIES"])
    slots = loadprofile.list_slots(head, n_all, head["HIST_FLAGS"]["ORDER"], unread)
    image = yield from _read_list(m, 74, head_image, size, n_all, slots, priority)
    ctx = _dims_ctx(m.dims, 71)
    log = loadprofile.decode_event_log(ctx["BT71"], tables.decode(74, image, ctx))
    rows = [
        (
            int(e["time"].astype("int64")) if not np.isnat(e["time"]) else 0,
            int(e["seq"]),
            int(e["code"]) | (0x800 if e["mfg"] else 0),
            event_name(int(e["code"]), bool(e["mfg"])),
            bytes(e["argument"]),
        )
        for e in (log[len(log) - unread :] if unread else log[:0])
    ]
    new = yield from _stored(eng, store.commit_events, dev, rows, cursor=eng.save_session(m))
    if unread:
        yield m.session.call(BP05, struct.pack("<BH", LIST_HISTORY, unread), priority=priority)
    return new


def _collect_self_reads(eng: Any, m: Any, priority: int) -> TaskGen:
    """The unread self reads of BT26 (Optical guide p.27-29), each stored as
    register values named ``self_read.*`` at the moment the meter took it,
    then BP05 on them.  BT26 is its 6-byte list header and a ring of
    BT21.NBR_SELF_READS entries, each a snapshot of BT23 with its time."""
    size, n_all, head_ctx = _list_geometry(26, 21, "NBR_SELF_READS", m.dims[0], m.dims[21])
    if not n_all:
        return 0  # the meter keeps no self reads
    head_image = yield m.session.read(26, 0, _SELF_READ_HEADER, priority=priority)
    head = tables.decode(26, head_image, head_ctx)
    loadprofile.check_list_header("BT26", head, n_all, dims="BT21", valid_at=1, last_at=2)
    unread = min(head["NBR_UNREAD_ENTRIES"], head["NBR_VALID_ENTRIES"])
    if not unread:
        return 0
    slots = loadprofile.list_slots(head, n_all, head["LIST_STATUS"]["ORDER"], unread)
    image = yield from _read_list(m, 26, head_image, size, n_all, slots, priority)
    entries = tables.decode(26, image, _dims_ctx(m.dims, 21))["SELF_READS"]
    snapshots = []
    for slot in slots:
        e = entries[slot]
        t = e.get("END_DATE_TIME")  # present when BT21 sets DATE_TIME_FIELD_FLAG
        at = t.to_datetime() if t is not None else None
        if at is None:
            raise ProtocolError(
                f"BT26: the self read at element {slot} has no valid time, so it cannot be "
                "stored once (BT21 DATE_TIME_FIELD_FLAG, END_DATE_TIME)"
            )
        values = _register_data_values(e["SELF_READ_REGISTER_DATA"], "self_read.")
        if "SELF_READ_SEQ_NBR" in e:
            values["self_read.seq"] = (float(e["SELF_READ_SEQ_NBR"]), "count")
        snapshots.append((at.timestamp(), values))
    new = yield from _stored(
        eng, eng.store.commit_snapshots, m.device_id, snapshots, cursor=eng.save_session(m)
    )
    yield m.session.call(BP05, struct.pack("<BH", LIST_SELF_READS, unread), priority=priority)
    return new
