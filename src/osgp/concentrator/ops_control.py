"""More fleet operations: control outputs and one-time reads, as store jobs
of :class:`~osgp.concentrator.operations.Operations` (same outcomes, resume
and read-back rules; docs/operations-more.md), registered in its
:data:`~osgp.concentrator.operations.TASKS`.

==================  =========================================  ===============================
kind                parameters                                 confirmed by reading back
==================  =========================================  ===============================
control-settings    ``set``: ET05 fields to change              ET05 equal to the image sent
prepay-credit       ``credit_wh``                               ET46 PREPAY_LAST_TRANSACTION
power-level         ``level`` (0 primary, 1 secondary)          ET30 ACTIVE_LEVEL
disconnect-lock     ``start`` (UTC s, 0: now), ``duration_s``   ET30 LOCK_STATE / LOCK_START
disconnect-unlock   --                                         ET30 LOCK_STATE 0
relay-open/close    ``relay`` (1, 2)                            BT03 manufacturer bit 3 / 4
relay-calendar      ``relay``, ``switches`` [[h, m, closed]]    ET61 records, ET05 RELAY_MODES
one-time-read       ``at`` (UTC s, 0: now)                      ET19 entry, the ET31 record
==================  =========================================  ===============================

Retries are recognisable by the meter: EP21 carries a credit transaction id
``job id << 16 | device id`` (the same for every attempt and after a
restart) that the meter adds at most once; EP24 carries the request id
``job id % 65535 + 1`` that the meter queues at most once.  Every other
call sets a state, so sending it again changes nothing; each task reads the
state first and calls nothing when the meter already shows it.

Procedure and table layouts: osgp.sim.control, osgp.sim.onetime and
osgp.tables.control (INFERRED where they say so).
"""

from __future__ import annotations

import json
import struct
from typing import Any, Dict, Generator, Optional, Tuple

from osgp import loadprofile, tables
from osgp.concentrator.collect import read_dims
from osgp.concentrator.operations import TASKS, Kind, NotConfirmed
from osgp.errors import MalformedError, ProtocolError
from osgp.session.events import Operation

__all__ = ["HELP", "credit_transaction", "one_time_request", "add_arguments", "params_of"]

TaskGen = Generator[Operation, Any, Any]

ET = 2048
EP02, EP21, EP22, EP24, EP36, EP42 = 2, 21, 22, 24, 36, 42  # called with mfg=True
_STATUS_BIT = {1: 3, 2: 4}  # BT03 ED_MFG_STATUS bit of an open control relay (osgp.sim.control)
_WAITING, _CAPTURED = 1, 2  # ET19 STATE
_UNUSED = 0xF800  # ET61 record with hour 31 (osgp.tables.control)
_LIST_HEADER = 6  # ET31 list header bytes ([MEP p.104])
_MAX_RECORD = 0xFFFF  # bytes one read answers: its <count> is UINT16 (osgp.services.messages)
_ET05_FIELDS = {f["name"] for f in tables.schema(ET + 5)["fields"] if "name" in f}


def credit_transaction(job_id: int, device_id: int) -> int:
    """The EP21 transaction id of a job's credit for one meter."""
    return ((job_id & 0xFFFF) << 16) | (device_id & 0xFFFF)


def one_time_request(job_id: int) -> int:
    """The EP24 request id of a job (1..65535)."""
    return job_id % 0xFFFF + 1


# -- checks (at submit time) -------------------------------------------------------------------
def _int(params: Dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = params.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ProtocolError(f"operations: {name} must be an integer {lo}..{hi}, not {v!r}")
    return v


def _check_settings(params: Dict[str, Any]) -> None:
    s = params.get("set")
    if not isinstance(s, dict) or not s or set(s) - _ET05_FIELDS:
        raise ProtocolError(f"operations: set must map ET05 fields ({sorted(_ET05_FIELDS)})")
    try:
        tables.encode(ET + 5, _merge({}, s))
    except Exception as exc:  # any encoding complaint is a bad parameter
        raise ProtocolError(f"operations: ET05 values {s!r}: {exc}") from exc


def _check_credit(params: Dict[str, Any]) -> None:
    _int(params, "credit_wh", 1, 2**31 - 1)


def _check_level(params: Dict[str, Any]) -> None:
    _int(params, "level", 0, 1)


def _check_lock(params: Dict[str, Any]) -> None:
    _int(params, "start", 0, 2**32 - 1)
    _int(params, "duration_s", 0, 2**32 - 1)


def _check_relay(params: Dict[str, Any]) -> None:
    _int(params, "relay", 1, 2)


def _check_calendar(params: Dict[str, Any]) -> None:
    _check_relay(params)
    sw = params.get("switches")
    if not isinstance(sw, list):
        raise ProtocolError("operations: switches must be a list of [hour, minute, closed]")
    for s in sw:
        if not (isinstance(s, list) and len(s) == 3):
            raise ProtocolError(f"operations: switch {s!r} is not [hour, minute, closed]")
        _int({"hour": s[0]}, "hour", 0, 23)
        _int({"minute": s[1]}, "minute", 0, 59)
        _int({"closed": int(s[2])}, "closed", 0, 1)


def _check_at(params: Dict[str, Any]) -> None:
    _int(params, "at", 0, 2**32 - 1)


# -- helpers -----------------------------------------------------------------------------------
def _merge(cur: Any, changes: Dict[str, Any]) -> Dict[str, Any]:
    """ET05 values: ``cur`` (decoded) with ``changes``; bit groups merge field by field."""
    out = {k: (dict(v) if hasattr(v, "keys") else v) for k, v in dict(cur).items()}
    for k, v in changes.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) else v
    return out


def _read(
    ops: Any, m: Any, table: int, offset: Optional[int] = None, count: Optional[int] = None
) -> TaskGen:
    return (yield m.session.read(table, offset, count, priority=ops.priority))


def _et11(ops: Any, m: Any) -> TaskGen:
    """ET11 (kept with the meter's cached values: it is a dimension table)."""
    if "et11" not in m.cache:
        m.cache["et11"] = yield from _read(ops, m, ET + 11)
    return m.cache["et11"]


def _epoch(td: Any) -> int:
    return 0 if td.year == 2000 and td.month == 0 else int(td.epoch())


def _done(**detail: Any) -> str:
    return json.dumps(detail)


# -- the tasks ---------------------------------------------------------------------------------
def _settings(ops: Any, m: Any, run: Any) -> TaskGen:
    cur = bytes((yield from _read(ops, m, ET + 5)))
    image = tables.encode(ET + 5, _merge(tables.decode(ET + 5, cur), run.params["set"]))
    if image == cur:
        return _done(action="none")
    ops._sent(m, run, {"et05": cur.hex()})
    yield from ops._call(m, EP42, image)
    if bytes((yield from _read(ops, m, ET + 5))) != image:
        raise NotConfirmed("ET05 does not show the settings after EP42")
    return _done(action="EP42", et05=image.hex())


def _credit(ops: Any, m: Any, run: Any) -> TaskGen:
    tx = credit_transaction(run.job_id, m.device_id)
    before = tables.decode(ET + 46, (yield from _read(ops, m, ET + 46)))
    if before["PREPAY_LAST_TRANSACTION"] == tx:  # added by an attempt before a restart
        return _done(tx=tx, balance=before["PREPAY_BALANCE"], action="none")
    ops._sent(m, run, {"tx": tx, "balance": before["PREPAY_BALANCE"]})
    data = yield from ops._call(m, EP21, struct.pack("<Ii", tx, run.params["credit_wh"]))
    after = tables.decode(ET + 46, (yield from _read(ops, m, ET + 46)))
    if after["PREPAY_LAST_TRANSACTION"] != tx:
        raise NotConfirmed(f"ET46 last credit transaction is not {tx:#x} after EP21")
    answered = struct.unpack("<i", data)[0] if len(data) == 4 else None
    return _done(
        tx=tx,
        balance_before=before["PREPAY_BALANCE"],
        answered=answered,
        balance=after["PREPAY_BALANCE"],
        action="EP21",
    )


def _level(ops: Any, m: Any, run: Any) -> TaskGen:
    level = run.params["level"]
    et30 = tables.decode(ET + 30, (yield from _read(ops, m, ET + 30)))
    if et30["ACTIVE_LEVEL"] == level:
        return _done(level=level, threshold=et30["ACTIVE_THRESHOLD"], action="none")
    ops._sent(m, run, {"level": et30["ACTIVE_LEVEL"]})
    yield from ops._call(m, EP22, bytes([level]))
    et30 = tables.decode(ET + 30, (yield from _read(ops, m, ET + 30)))
    if et30["ACTIVE_LEVEL"] != level:
        raise NotConfirmed(f"ET30 active level {et30['ACTIVE_LEVEL']} after EP22")
    return _done(level=level, threshold=et30["ACTIVE_THRESHOLD"], action="EP22")


def _lock_matches(et30: Any, start: int, end: int) -> bool:
    return bool(
        et30["LOCK_STATE"]
        and _epoch(et30["LOCK_START"]) == start
        and _epoch(et30["LOCK_END"]) == end
    )


def _lock(ops: Any, m: Any, run: Any) -> TaskGen:
    dur = run.params["duration_s"]
    # "now" is fixed at the first attempt: a retry sends the same schedule (EP36 changes nothing)
    start = run.params["start"] or (run.before or {}).get("start") or int(ops._utc())
    end = start + dur if dur else 0
    et30 = tables.decode(ET + 30, (yield from _read(ops, m, ET + 30)))
    action = "none"
    if not _lock_matches(et30, start, end):
        ops._sent(m, run, {"lock_state": et30["LOCK_STATE"], "start": start})
        yield from ops._call(m, EP36, struct.pack("<BII", 1, start, dur))
        et30 = tables.decode(ET + 30, (yield from _read(ops, m, ET + 30)))
        if not _lock_matches(et30, start, end):
            raise NotConfirmed("ET30 does not show the disconnect lock after EP36")
        action = "EP36"
    is_open = yield from ops._open(m)
    if et30["LOCK_STATE"] == 2 and not is_open:
        raise NotConfirmed("the disconnect is locked but BT03 shows the contactor closed")
    return _done(lock_state=et30["LOCK_STATE"], start=start, open=is_open, action=action)


def _unlock(ops: Any, m: Any, run: Any) -> TaskGen:
    et30 = tables.decode(ET + 30, (yield from _read(ops, m, ET + 30)))
    if et30["LOCK_STATE"] == 0:
        return _done(action="none")
    ops._sent(m, run, {"lock_state": et30["LOCK_STATE"]})
    yield from ops._call(m, EP36, b"\x00")
    et30 = tables.decode(ET + 30, (yield from _read(ops, m, ET + 30)))
    if et30["LOCK_STATE"] != 0:
        raise NotConfirmed(f"ET30 lock state {et30['LOCK_STATE']} after EP36 cancel")
    return _done(action="EP36")


def _relay(ops: Any, m: Any, run: Any, close: bool) -> TaskGen:
    relay = run.params["relay"]
    call = (EP02, bytes([relay, close]))
    what = f"control relay {relay}"
    return (yield from ops._switch(m, run, _STATUS_BIT[relay], close, call, what, relay=relay))


def _calendar(ops: Any, m: Any, run: Any) -> TaskGen:
    r = run.params["relay"] - 1
    ctx = {"ET11": (yield from _et11(ops, m))}
    n = tables.decode(ET + 11, ctx["ET11"])["TIME_BASED_RELAY_SWITCHES"]
    switches = sorted((h, mi, int(c)) for h, mi, c in run.params["switches"])
    if len(switches) > n:
        raise NotConfirmed(f"{len(switches)} switches; ET11 allows {n} per relay")
    cur61 = bytes((yield from _read(ops, m, ET + 61)))
    words = list(struct.unpack_from(f"<{2 * n}H", cur61.ljust(4 * n, b"\0")))
    words[r * n : r * n + n] = [(h << 11) | (mi << 5) | c for h, mi, c in switches] + [_UNUSED] * (
        n - len(switches)
    )
    new61 = struct.pack(f"<{2 * n}H", *words)
    cur05 = bytes((yield from _read(ops, m, ET + 5)))
    want = _merge(tables.decode(ET + 5, cur05), {})
    modes = list(want["RELAY_MODES"])
    modes[r] = 1
    want["RELAY_MODES"] = modes
    new05 = tables.encode(ET + 5, want)
    if cur61 == new61 and cur05 == new05:
        return _done(relay=r + 1, switches=len(switches), action="none")
    ops._sent(m, run, {"et61": cur61.hex(), "et05": cur05.hex()})
    actions = []
    if cur61 != new61:
        yield m.session.write(ET + 61, new61, priority=ops.priority)
        if bytes((yield from _read(ops, m, ET + 61))) != new61:
            raise NotConfirmed("ET61 does not read back as written")
        actions.append("ET61")
    if cur05 != new05:
        yield from ops._call(m, EP42, new05)
        if bytes((yield from _read(ops, m, ET + 5))) != new05:
            raise NotConfirmed("ET05 relay mode not set after EP42")
        actions.append("EP42")
    return _done(relay=r + 1, switches=len(switches), action="+".join(actions))


def _stime(b: bytes) -> int:
    """STIME_DATE with TM_FORMAT 2: YY MM DD hh mm (docs/protocol.md §3.4)."""
    return int(tables.TimeDate(2000 + b[0], b[1], b[2], b[3], b[4], 0).epoch())


def _one_time(ops: Any, m: Any, run: Any) -> TaskGen:
    rid = one_time_request(run.job_id)
    ctx = {"ET11": (yield from _et11(ops, m))}

    def entry(img: bytes) -> Any:
        for e in tables.decode(ET + 19, img, ctx)["ENTRIES"]:
            if e["REQUEST_ID"] == rid and e["STATE"]:
                return e
        return None

    e = entry((yield from _read(ops, m, ET + 19)))
    action = "none"
    if e is None:
        ops._sent(m, run, {"rid": rid})
        yield from ops._call(m, EP24, struct.pack("<HI", rid, run.params["at"]))
        e = entry((yield from _read(ops, m, ET + 19)))
        if e is None:
            raise NotConfirmed(f"ET19 has no request {rid} after EP24")
        action = "EP24"
    if e["STATE"] == _WAITING:
        return _done(rid=rid, state="waiting", at=_epoch(e["READ_TIME"]), action=action)
    if e["STATE"] != _CAPTURED:
        raise NotConfirmed(f"ET19 request {rid} in state {e['STATE']}")
    yield from read_dims(m.session, m.dims, ops.priority)
    dctx = {"BT00": m.dims[0], "BT21": m.dims[21]}
    bt21 = tables.decode(21, m.dims[21], dctx)
    slots = bt21["NBR_SELF_READS"]
    size = _record_size(bt21, dctx)
    head = bytes((yield from _read(ops, m, ET + 31, 0, _LIST_HEADER)))
    # list header: LIST_STATUS, NBR_VALID_ENTRIES, LAST_ENTRY_ELEMENT, LAST_ENTRY_SEQ_NUMBER
    # UINT16, NBR_UNREAD_ENTRIES ([MEP p.104])
    valid, last = head[1], head[2]
    header = {"NBR_VALID_ENTRIES": valid, "LAST_ENTRY_ELEMENT": last}
    loadprofile.check_list_header("ET31", header, slots, dims="BT21", valid_at=1, last_at=2)
    last_seq = int.from_bytes(head[3:5], "little")
    back = (last_seq - e["LOG_SEQ_NBR"]) & 0xFFFF
    if back >= valid:
        raise NotConfirmed(f"ET31 no longer holds one-time read {e['LOG_SEQ_NBR']}")
    # LIST_STATUS bit 0, ORDER: clear, the entries ascend from the oldest to
    # LAST_ENTRY_ELEMENT; set, they descend ([OPT p.28], as BT26)
    i = (last + back if head[0] & 1 else last - back) % slots
    rec = bytes((yield from _read(ops, m, ET + 31, _LIST_HEADER + i * size, size)))
    skip = 2 if bt21["NBR_DEMANDS"] else 0  # BIDN ([MEP p.104])
    regs = tables.decode(23, rec[skip + 6 :], dctx)
    sums = regs["TOT_DATA_BLOCK"]["SUMMATIONS"]  # none with BT21 NBR_SUMMATIONS 0
    return _done(
        rid=rid,
        state="captured",
        seq=e["LOG_SEQ_NBR"],
        time=_stime(rec[skip : skip + 5]),
        active_wh=sums[0] if sums else None,
        action=action,
    )


def _record_size(bt21: Any, dctx: Dict[str, Any]) -> int:
    """Bytes of one ET31 record: BIDN, STIME_DATE, SEASON and BT23's register data
    ([MEP p.104-105]).  A record larger than one read answers is refused, on a
    bound that needs no encoding first: each value of the 1 + NBR_TIERS register
    data blocks takes a byte at least (ANSI C12.19 BT23 DATA_BLK_RCD)."""
    values = (1 + bt21["NBR_TIERS"]) * (
        bt21["NBR_SUMMATIONS"] + (bt21["NBR_DEMANDS"] + bt21["NBR_COIN_VALUES"]) * bt21["NBR_OCCUR"]
    )
    what = f"{values} register values"
    if values <= _MAX_RECORD:
        one = {**dctx, "BT21.NBR_SELF_READS": 1}
        size = len(tables.encode(ET + 31, {}, one)) - _LIST_HEADER
        if size <= _MAX_RECORD:
            return size
        what = f"{size} bytes"
    raise MalformedError.in_table(
        "ET31",
        "ONE_TIME_READS",
        _LIST_HEADER,
        f"records of {what} under BT21, more than the {_MAX_RECORD} bytes one read answers",
    )


# -- osgp op -----------------------------------------------------------------------------------
def _switch(spec: str) -> list:
    """``HH:MM=open|closed`` -> [hour, minute, closed]."""
    at, sep, state = spec.partition("=")
    hour, colon, minute = at.partition(":")
    if not (sep and colon and hour.isdigit() and minute.isdigit()) or state not in CLOSED:
        raise ValueError(f"switch {spec!r}: HH:MM=open or HH:MM=closed")
    return [int(hour), int(minute), CLOSED[state]]


def _setting(spec: str) -> Tuple[str, Any]:
    """``FIELD=JSON`` (ET05 field name, value as JSON)."""
    name, sep, value = spec.partition("=")
    if not sep:
        raise ValueError(f"setting {spec!r}: FIELD=JSON")
    return name, json.loads(value)


CLOSED = {"open": 0, "closed": 1}


def _repeatable(p: Any, flag: str, dest: str, parse: Any, metavar: str, **kw: Any) -> None:
    """An option given once per value, each parsed by ``parse``."""
    p.add_argument(flag, dest=dest, type=parse, action="append", metavar=metavar, **kw)


def add_arguments(kind: str, p: Any) -> None:
    """The command-line arguments of ``osgp op KIND``."""
    if kind == "control-settings":
        what = "an ET05 field and its value (repeatable)"
        _repeatable(p, "--set", "settings", _setting, "FIELD=JSON", required=True, help=what)
    elif kind == "prepay-credit":
        p.add_argument("credit_wh", type=int, help="credit to add, Wh")
    elif kind == "power-level":
        p.add_argument("level", type=int, choices=(0, 1), help="0 primary, 1 secondary")
    elif kind == "disconnect-lock":
        p.add_argument("--start", type=int, default=0, help="UTC epoch seconds (default now)")
        p.add_argument("--duration", type=int, default=0, help="seconds (default until unlock)")
    elif kind.startswith("relay-"):
        p.add_argument("relay", type=int, choices=(1, 2), help="control relay")
        if kind == "relay-calendar":
            when = "HH:MM=open|closed"
            _repeatable(p, "--switch", "switches", _switch, when, default=[], help="a daily switch")
    elif kind == "one-time-read":
        p.add_argument("--at", type=int, default=0, help="UTC epoch seconds (default now)")


def params_of(kind: str, args: Any) -> Dict[str, Any]:
    """The job parameters of ``osgp op KIND`` from its parsed arguments."""
    if kind == "control-settings":
        return {"set": dict(args.settings)}
    if kind == "prepay-credit":
        return {"credit_wh": args.credit_wh}
    if kind == "power-level":
        return {"level": args.level}
    if kind == "disconnect-lock":
        return {"start": args.start, "duration_s": args.duration}
    if kind == "relay-calendar":
        return {"relay": args.relay, "switches": args.switches}
    if kind.startswith("relay-"):
        return {"relay": args.relay}
    if kind == "one-time-read":
        return {"at": args.at}
    return {}


HELP = {
    "control-settings": "change control output settings (ET05 by EP42)",
    "prepay-credit": "add prepay credit (EP21, once per job and meter)",
    "power-level": "switch the maximum power or current level (EP22)",
    "disconnect-lock": "lock the contactor open from a time, for a while (EP36)",
    "disconnect-unlock": "cancel the disconnect lock (EP36)",
    "relay-open": "open a control relay (EP02)",
    "relay-close": "close a control relay (EP02)",
    "relay-calendar": "set a relay's daily switches (ET61) and calendar mode (EP42)",
    "one-time-read": "post a one-time read (EP24; ET19 queue, ET31 log)",
}

TASKS.update(
    {
        k: Kind(task, check, HELP[k])
        for k, (task, check) in {
            "control-settings": (_settings, _check_settings),
            "prepay-credit": (_credit, _check_credit),
            "power-level": (_level, _check_level),
            "disconnect-lock": (_lock, _check_lock),
            "disconnect-unlock": (_unlock, None),
            "relay-open": (lambda o, m, r: _relay(o, m, r, False), _check_relay),
            "relay-close": (lambda o, m, r: _relay(o, m, r, True), _check_relay),
            "relay-calendar": (_calendar, _check_calendar),
            "one-time-read": (_one_time, _check_at),
        }.items()
    }
)
