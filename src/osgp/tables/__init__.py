"""OSGP / ANSI C12.19 tables: declarative layouts, decode and encode.

    >>> from osgp import tables
    >>> bt52 = tables.decode("BT52", bytes.fromhex("0402100f3b3700"))
    >>> bt52["CLOCK_CALENDAR"]
    TimeDate(year=2004, month=2, day=16, hour=15, minute=59, second=55)

``decode(table_id, data, context=None)`` returns a read-only mapping (nested
read-only mappings for records, tuples for arrays); ``encode(table_id,
values, context=None)`` is its inverse.  ``context`` carries the tables a
layout depends on, as raw bytes or decoded mappings keyed by name or number
(``{"BT00": bt00_bytes, "BT21": bt21_bytes}``), or single values keyed by
their reference (``{"BT00.FORMAT_CONTROL_2.TM_FORMAT": 3}``).

Table numbers: BTnn = nn, ETnn = 2048 + nn, pending images + 4096
(docs/protocol.md §1, [OPT p.8]).  A pending image is the 6-byte Pending Event
Description followed by the table (docs/protocol.md §3.4, [OPT p.9-10]).

Layouts compile once to a program run by the native interpreter
(csrc/osgp_table.c) or its pure-Python twin (``OSGP_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional, Union

from osgp import _backend
from osgp.errors import (
    ArgumentTypeError,
    ConfigurationError,
    DecodeError,
    MalformedError,
    TruncatedError,
)
from osgp.tables import builtin as _builtin
from osgp.tables import columns as _columns
from osgp.tables import control as _control
from osgp.tables.schema import (
    NI_FORMAT_REFS,
    TM_FORMAT_REF,
    Program,
    TimeDate,
    compile_schema,
    table_name,
    table_number,
)

_kernel, _kernel_native = _backend.load("tables")

__all__ = [
    "decode",
    "decode_columns",
    "decode_arrow",
    "encode",
    "register",
    "TableSet",
    "DEFAULT_SET",
    "register_file",
    "schema",
    "program",
    "catalogue",
    "catalogue_entry",
    "TableProfile",
    "TimeDate",
    "table_name",
    "table_number",
    "compile_schema",
    "Program",
    "DEFAULT_PROFILE",
    "split_transaction_records",
]

TableId = Union[int, str]


@dataclass(frozen=True)
class TableProfile:
    """Values used when the context lacks a table.  **INFERRED** defaults:
    the NES/OSGP device values of the OSGP Alliance guides (docs/protocol.md §7.1:
    TM_FORMAT 2 = UINT8 discrete dates, NI formats 8 = INT32, ID_FORM 0 =
    CHAR), one load-profile data set, and a 38-byte ET21 record (the fields
    every firmware has, [OPT p.38]).  Pass BT00 (and BT61 / ET21) in the
    context to use the device's own values instead.

    Fixed interpretations, also INFERRED (not configurable): TIME is 3 bytes
    (h, m, s) for TM_FORMAT 3 and 4 too; FIXED_BCD NI values are read most
    significant byte first; ET27/ET28 (PLC transaction tables) share the ET52/
    ET53 layout (docs/protocol.md §4.2); ET54 offset 19 is one byte (the guide's row is
    inconsistent).  Layout sizes that grew with firmware (ET23, ET54, ET04)
    follow the OSGP Alliance guides' 3.x tables; bytes after a layout are
    ignored on decode.
    """

    tm_format: int = 2
    ni_format1: int = 8
    ni_format2: int = 8
    id_form: int = 0
    lp_sets: int = 1
    et21_record_size: int = 38


DEFAULT_PROFILE = TableProfile()

_FORMAT_DEFAULTS = {
    TM_FORMAT_REF: "tm_format",
    NI_FORMAT_REFS["NI_FMAT1"]: "ni_format1",
    NI_FORMAT_REFS["NI_FMAT2"]: "ni_format2",
    "BT00.FORMAT_CONTROL_2.ID_FORM": "id_form",
}

# Pending Event Description (docs/protocol.md §3.4, [OPT p.9-10]): byte 0 bits 0..3 event
# code (0 absolute STIME_DATE, 1 relative, 2 opaque), bit 4 self read, bit 5 demand
# reset; bytes 1..5 event storage.
_PED = {
    "name": "PENDING_EVENT",
    "type": "RECORD",
    "fields": [
        {
            "name": "EVENT_CONTROL",
            "type": "UINT8",
            "bits": [
                {"name": "EVENT_CODE", "bits": [0, 3]},
                {"name": "SELF_READ_FLAG", "bit": 4},
                {"name": "DEMAND_RESET_FLAG", "bit": 5},
                {"name": "FILLER", "bits": [6, 7]},
            ],
        },
        {
            "type": "IF",
            "when": {"ref": "PENDING_EVENT.EVENT_CONTROL.EVENT_CODE", "eq": 0},
            "then": [
                # STIME_DATE is 5 bytes for TM_FORMAT 1/2, 4 for 3/4: (tm + 1) / 2 is 1 resp. 2
                {
                    "type": "IF",
                    "when": {"ref": TM_FORMAT_REF, "add": 1, "div": 2, "eq": 1},
                    "then": [{"name": "ACTIVATION_TIME", "type": "STIME_DATE"}],
                },
                {
                    "type": "IF",
                    "when": {"ref": TM_FORMAT_REF, "add": 1, "div": 2, "eq": 2},
                    "then": [
                        {"name": "ACTIVATION_TIME", "type": "STIME_DATE"},
                        {"type": "FILL", "length": 1},
                    ],
                },
                {
                    "type": "IF",
                    "when": {"ref": TM_FORMAT_REF, "eq": 0},
                    "then": [{"name": "EVENT_STORAGE", "type": "BYTES", "length": 5}],
                },
            ],
        },
        {
            "type": "IF",
            "when": {"ref": "PENDING_EVENT.EVENT_CONTROL.EVENT_CODE", "eq": 1},
            "then": [
                {"name": "WEEKS", "type": "UINT8"},
                {"name": "DAYS", "type": "UINT8"},
                {"name": "HOURS", "type": "UINT8"},
                {"name": "MINUTES", "type": "UINT8"},
                {"name": "SECONDS", "type": "UINT8"},
            ],
        },
        {
            "type": "IF",
            "when": {"ref": "PENDING_EVENT.EVENT_CONTROL.EVENT_CODE", "div": 2},
            "then": [{"name": "EVENT_STORAGE", "type": "BYTES", "length": 5}],
        },
    ],
}


class TableSet:
    """The table layouts of one device dialect.

    A set holds its own layouts and falls back to its ``base`` for the rest,
    so a firmware whose BT23 differs is ``DEFAULT_SET.derive([bt23_v4])``
    without touching any other device.  ``profile`` gives the values used when
    a decode context lacks a table (:class:`TableProfile`).  The module-level
    functions (:func:`decode`, :func:`register`, ...) use :data:`DEFAULT_SET`.
    """

    def __init__(
        self,
        schemas: Any = (),
        *,
        base: Optional[TableSet] = None,
        profile: Optional[TableProfile] = None,
        name: str = "",
    ) -> None:
        self.base = base
        inherited = base.profile if base is not None else DEFAULT_PROFILE
        self.profile: TableProfile = profile if profile is not None else inherited
        self.name: str = name or (f"{base.name}+" if base is not None else "tables")
        self._schemas: dict[int, Mapping] = {}
        self._programs: dict[int, Program] = {}
        for s in schemas:
            self.register(s, replace=True)

    def __repr__(self) -> str:
        return f"<TableSet {self.name}: {len(self._schemas)} own layouts>"

    def derive(
        self, schemas: Any = (), *, profile: Optional[TableProfile] = None, name: str = ""
    ) -> TableSet:
        """A new set with ``schemas`` overriding this one's layouts."""
        return TableSet(schemas, base=self, profile=profile, name=name)

    def register(self, schema: Mapping, *, replace: bool = False) -> Program:
        """Add a layout (see osgp.tables.schema); returns its compiled program.
        Replacing a layout this set already has needs ``replace=True``."""
        prog = compile_schema(schema)
        tid = prog.table_id
        old = self._schemas.get(tid)
        if old is not None and not replace and old is not schema:
            raise ConfigurationError(
                f"{prog.name} is already in {self.name}; pass replace=True to override"
            )
        self._schemas[tid] = schema
        self._programs[tid] = prog
        self._programs.pop(tid + PENDING_OFFSET, None)
        return prog

    def register_file(self, path: Any, *, replace: bool = False) -> list[Program]:
        """Register the layouts in a JSON file (one schema or a list of schemas)."""
        with open(path, encoding="utf-8") as fh:
            try:
                doc = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}: not JSON: {exc}") from None
        schemas = (
            doc
            if isinstance(doc, list)
            else doc.get("tables", [doc])
            if isinstance(doc, dict) and "fields" not in doc
            else [doc]
        )
        return [self.register(s, replace=replace) for s in schemas]

    def _owner(self, tid: int) -> Optional[TableSet]:
        s: Optional[TableSet] = self
        while s is not None:
            if tid in s._schemas:
                return s
            s = s.base
        return None

    def __contains__(self, table_id: object) -> bool:
        try:
            tid = table_number(table_id)
        except (ConfigurationError, TypeError, ValueError):
            return False
        return self._owner(tid) is not None or (
            tid >= PENDING_OFFSET and self._owner(tid - PENDING_OFFSET) is not None
        )

    def ids(self) -> list[int]:
        """Every table number with a layout in this set or its bases."""
        out: set[int] = set()
        s: Optional[TableSet] = self
        while s is not None:
            out |= set(s._schemas)
            s = s.base
        return sorted(out)

    def schema(self, table_id: TableId) -> Mapping:
        tid = table_number(table_id)
        owner = self._owner(tid)
        if owner is None:
            raise ConfigurationError(
                f"no layout for {table_name(tid)} ({tid}) in {self.name}; "
                "register one with register()"
            )
        return owner._schemas[tid]

    def program(self, table_id: TableId) -> Program:
        """The compiled program of a table (pending images are built on demand)."""
        tid = table_number(table_id)
        owner = self._owner(tid)
        if owner is not None:
            return owner._programs[tid]
        if tid >= PENDING_OFFSET:
            base_owner = self._owner(tid - PENDING_OFFSET)
            if base_owner is not None:
                prog = base_owner._programs.get(tid)
                if prog is None:
                    base = base_owner._schemas[tid - PENDING_OFFSET]
                    prog = base_owner._programs[tid] = compile_schema(
                        {
                            "id": tid,
                            "name": table_name(tid),
                            "title": f"{base.get('title', '')} (pending)",
                            "fields": [_PED] + list(base["fields"]),
                        }
                    )
                return prog
        self.schema(tid)  # raises
        raise AssertionError  # pragma: no cover

    def decode(
        self, table_id: TableId, data: Any, context: Optional[Mapping] = None
    ) -> Mapping[str, Any]:
        """:func:`decode` with this set's layouts and profile."""
        return _decode(self.program(table_id), data, _Context(context, self.profile, self))

    def decode_columns(
        self,
        table_id: TableId,
        images: Any,
        context: Optional[Mapping] = None,
        *,
        offsets: Any = None,
    ) -> dict[str, Any]:
        """:func:`decode_columns` with this set's layouts and profile."""
        prog = self.program(table_id)
        values = _fixed_params(prog, _Context(context, self.profile, self))
        return _columns.decode(prog, images, values, _kernel, offsets)

    def decode_arrow(
        self,
        table_id: TableId,
        images: Any,
        context: Optional[Mapping] = None,
        *,
        offsets: Any = None,
    ) -> Any:
        """:func:`decode_arrow` with this set's layouts and profile."""
        return _columns.to_arrow(self.decode_columns(table_id, images, context, offsets=offsets))

    def encode(
        self, table_id: TableId, values: Mapping[str, Any], context: Optional[Mapping] = None
    ) -> bytes:
        """:func:`encode` with this set's layouts and profile."""
        return _encode(self.program(table_id), values, _Context(context, self.profile, self))


PENDING_OFFSET = 4096  # pending image of a table (Optical guide p.8)

#: The built-in layouts of the public tables (filled at import, below).
DEFAULT_SET = TableSet(name="builtin")


def register(schema: Mapping, *, replace: bool = False) -> Program:
    """Add a layout to :data:`DEFAULT_SET`; built-in layouts need ``replace=True``.
    Prefer ``DEFAULT_SET.derive(...)`` for one device's dialect."""
    return DEFAULT_SET.register(schema, replace=replace)


def register_file(path: Any, *, replace: bool = False) -> list[Program]:
    """Register the layouts in a JSON file in :data:`DEFAULT_SET`."""
    return DEFAULT_SET.register_file(path, replace=replace)


def schema(table_id: TableId) -> Mapping:
    return DEFAULT_SET.schema(table_id)


def program(table_id: TableId) -> Program:
    """The compiled program of a table in :data:`DEFAULT_SET`."""
    return DEFAULT_SET.program(table_id)


# ---- context ------------------------------------------------------------------------------

_PATH_RE = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class _Context:
    def __init__(self, context: Optional[Mapping], profile: TableProfile, tables: TableSet) -> None:
        self.tables = tables
        self.raw: dict[Any, Any] = {}
        if context:
            if not isinstance(context, Mapping):
                raise ConfigurationError("context must be a mapping of tables")
            for k, v in context.items():
                if isinstance(k, str) and ("." in k or k.startswith("@")):
                    self.raw[k] = v
                else:
                    self.raw[table_number(k)] = v
        self.profile = profile
        self.decoded: dict[int, Mapping] = {}
        self.busy: set[int] = set()

    def table(self, tid: int) -> Optional[Mapping]:
        if tid in self.decoded:
            return self.decoded[tid]
        v = self.raw.get(tid)
        if v is None:
            return None
        if not isinstance(v, (bytes, bytearray, memoryview)) and isinstance(v, Mapping):
            m = v
        else:
            if tid in self.busy:
                raise ConfigurationError(f"{table_name(tid)} depends on itself")
            self.busy.add(tid)
            try:
                m = _decode(self.tables.program(tid), v, self)
            finally:
                self.busy.discard(tid)
        self.decoded[tid] = m
        return m

    def value(self, ref: str, data_len: int, spec: Optional[tuple] = None) -> int:
        if ref in self.raw:
            return int(self.raw[ref])
        if ref.startswith("@"):
            return self.derived(ref, data_len)
        if spec is None:
            head, _, path = ref.partition(".")
            spec = (
                ref,
                table_number(head),
                tuple(int(i) if i else n for n, i in _PATH_RE.findall(path)),
            )
        tid = spec[1]
        m = self.table(tid)
        if m is None:
            attr = _FORMAT_DEFAULTS.get(ref)
            if attr is not None:
                return int(getattr(self.profile, attr))
            head = ref.partition(".")[0]
            raise ConfigurationError(f"this layout needs {head} ({ref}); pass it in the context")
        v: Any = m
        try:
            for key in spec[2]:  # field names and array indices
                v = v[key]
        except (KeyError, IndexError):
            # an element or optional field the given table does not have (e.g. data
            # set 2 of a one-set BT61): it counts as 0, so layouts sized by it are empty
            return 0
        except TypeError:
            raise ConfigurationError(f"{ref} does not name a value of its table") from None
        return int(v)

    def derived(self, ref: str, data_len: int) -> int:
        if ref == "@DATA_LEN":
            return data_len
        if ref == "@ET21_PAD":
            pad = self.profile.et21_record_size - 38
            if pad < 0:
                raise ConfigurationError("TableProfile.et21_record_size must be >= 38")
            return pad
        if ref == "@LP_SETS":
            bt00 = self.table(0)
            if bt00 is not None:
                used = bt00["STD_TBLS_USED"]
                return sum(1 for t in range(64, 68) if t < len(used) and used[t])
            return self.profile.lp_sets
        raise ConfigurationError(f"unknown derived parameter {ref}")

    def params(self, prog: Program, data_len: int) -> list[int]:
        # Fast path for a field of an already decoded table (the common case);
        # everything else, including every error, goes through value().
        out = []
        raw, decoded = self.raw, self.decoded
        for sp in prog.param_specs:
            ref = sp[0]
            if ref in raw or ref[:1] == "@":
                out.append(self.value(ref, data_len, sp))
                continue
            tid = sp[1]
            if tid is None:  # not a table field: value() resolves or raises
                out.append(self.value(ref, data_len, sp))
                continue
            m = decoded.get(tid)
            if m is None:
                m = self.table(tid)  # decoded once per context
                if m is None:  # absent table: the profile default, else value()'s error
                    attr = _FORMAT_DEFAULTS.get(ref)
                    if attr is not None:
                        out.append(int(getattr(self.profile, attr)))
                    else:
                        out.append(self.value(ref, data_len, sp))
                    continue
            v: Any = m
            try:
                for key in sp[2]:
                    v = v[key]
                out.append(int(v))
            except (KeyError, IndexError, TypeError, ValueError):
                out.append(self.value(ref, data_len, sp))
        return out


def _rewrap(exc: DecodeError, prog: Program) -> DecodeError:
    pc = exc.pc
    field = prog.field_at(pc) if pc is not None else "?"
    layer = f"table {prog.name}"
    if isinstance(exc, TruncatedError):
        return TruncatedError(
            f"field {field}: truncated, need {exc.needed} byte(s), {exc.remaining} left",
            layer=layer,
            offset=exc.offset,
            needed=exc.needed,
            remaining=exc.remaining,
            table=prog.name,
            field=field,
            pc=pc,
        )
    msg = "impossible value" if isinstance(exc, MalformedError) else exc.reason
    return type(exc)(
        f"field {field}: {msg}", layer=layer, offset=exc.offset, table=prog.name, field=field, pc=pc
    )


def _decode(prog: Program, data: Any, ctx: _Context) -> Mapping[str, Any]:
    try:
        buf = data if isinstance(data, bytes) else bytes(memoryview(data).cast("B"))
    except TypeError:
        raise ArgumentTypeError(f"data must be bytes-like, not {type(data).__name__}") from None
    params = ctx.params(prog, len(buf)) if prog.params else []
    try:
        return _kernel.table_decode(prog.code, prog.shape, params, buf, prog.nregs)
    except DecodeError as exc:
        if exc.pc is None:  # raised while building (FLOAT_CHAR text)
            raise MalformedError(
                f"{exc.reason}", layer=f"table {prog.name}", offset=exc.offset
            ) from None
        raise _rewrap(exc, prog) from None


def decode(
    table_id: TableId,
    data: Any,
    context: Optional[Mapping] = None,
    *,
    profile: TableProfile = DEFAULT_PROFILE,
) -> Mapping[str, Any]:
    """Decode a table image into a read-only mapping of field names to values.

    Raises :class:`~osgp.errors.TruncatedError` / :class:`~osgp.errors.MalformedError`
    (``layer`` = ``"table BTnn"``, the failing ``field`` and ``offset``) on bad
    data and :class:`~osgp.errors.ConfigurationError` when the context lacks a
    table the layout depends on.  Bytes after the layout's end are ignored
    (newer firmware appends fields)."""
    return _decode(DEFAULT_SET.program(table_id), data, _Context(context, profile, DEFAULT_SET))


def _fixed_params(prog: Program, ctx: _Context) -> dict[str, int]:
    """Context values of a layout that qualifies for columnar decoding (see
    osgp.tables.columns), else ConfigurationError."""
    if prog.nregs > len(prog.params):
        raise ConfigurationError(
            f"{prog.name} has counts, lengths or conditions read from its own fields; "
            "only fixed layouts decode to columns (use tables.decode)"
        )
    if "@DATA_LEN" in prog.params:
        raise ConfigurationError(
            f"{prog.name} ends in a field sized by the table length; "
            "only fixed layouts decode to columns (use tables.decode)"
        )
    return dict(zip(prog.params, ctx.params(prog, 0)))


def decode_columns(
    table_id: TableId,
    images: Any,
    context: Optional[Mapping] = None,
    *,
    offsets: Any = None,
    profile: TableProfile = DEFAULT_PROFILE,
) -> dict[str, Any]:
    """Decode many images of one fixed-layout table into columns: a dict of
    dotted field names to numpy arrays with one row per image (layouts that
    qualify, names, dtypes and shapes: :mod:`osgp.tables.columns`).

    ``images`` is a sequence of bytes-like images, a 2-D uint8 array (one
    image per row) or, with ``offsets`` (one start offset per image), one
    buffer holding them all.  Every image shares ``context``; bytes after the
    layout are ignored.  The loop runs natively without the GIL.  A short
    image raises :class:`~osgp.errors.TruncatedError` and a bad BCD digit
    :class:`~osgp.errors.MalformedError`, both with ``.image`` (its index) and
    the offset inside that image."""
    return (
        DEFAULT_SET.decode_columns(table_id, images, context, offsets=offsets)
        if (profile is DEFAULT_PROFILE)
        else TableSet(base=DEFAULT_SET, profile=profile).decode_columns(
            table_id, images, context, offsets=offsets
        )
    )


def decode_arrow(
    table_id: TableId,
    images: Any,
    context: Optional[Mapping] = None,
    *,
    offsets: Any = None,
    profile: TableProfile = DEFAULT_PROFILE,
) -> Any:
    """:func:`decode_columns` as a ``pyarrow.Table`` (needs pyarrow): arrays of
    fixed size become fixed-size lists, datetime64 UTC timestamps (NaT: null)."""
    return _columns.to_arrow(
        decode_columns(table_id, images, context, offsets=offsets, profile=profile)
    )


def encode(
    table_id: TableId,
    values: Mapping[str, Any],
    context: Optional[Mapping] = None,
    *,
    profile: TableProfile = DEFAULT_PROFILE,
) -> bytes:
    """Encode a mapping (as returned by :func:`decode`) into the table image."""
    return _encode(DEFAULT_SET.program(table_id), values, _Context(context, profile, DEFAULT_SET))


def _encode(prog: Program, values: Mapping[str, Any], ctx: _Context) -> bytes:
    params = {r: ctx.value(r, 0) for r in prog.params if r != "@DATA_LEN"}
    if not isinstance(values, Mapping):  # noqa: SIM102
        raise ConfigurationError("values must be a mapping of field names")
    return prog.encode(values, params)


def split_transaction_records(records: bytes) -> list[bytes]:
    """Split the RECORDS of a transaction table (ET27/28, ET52/53) into messages:
    each record is ``{len UINT16 LE, message[len]}`` (docs/protocol.md §4.2)."""
    out, pos = [], 0
    while pos < len(records):
        if len(records) - pos < 2:
            raise TruncatedError(
                layer="transaction records", offset=pos, needed=2, remaining=len(records) - pos
            )
        n = int.from_bytes(records[pos : pos + 2], "little")
        if n > len(records) - pos - 2:
            raise TruncatedError(
                layer="transaction records",
                offset=pos + 2,
                needed=n,
                remaining=len(records) - pos - 2,
            )
        out.append(bytes(records[pos + 2 : pos + 2 + n]))
        pos += 2 + n
    return out


def firmware_version(bt01: Mapping[str, Any]) -> tuple[int, int, int]:
    """NES firmware version x.yy.zz of a decoded BT01: offsets 14-15 form a
    big-endian word, bits 15..12 major, 11..5 minor, 4..0 build ([OPT p.19])."""
    w = (bt01["FW_VERSION_NUMBER"] << 8) | bt01["FW_REVISION_NUMBER"]
    return w >> 12, (w >> 5) & 0x7F, w & 0x1F


# ---- catalogue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueEntry:
    kind: str  # "table" or "procedure"
    id: int
    name: str  # BTnn / ETnn / BPnn / EPnn
    title: str
    clause: str  # clause of CLC/TS 50586:2019 (Annex A-D)
    page: int
    pending_of: Optional[int] = None

    @property
    def built_in(self) -> bool:
        """Whether osgp has a layout for this table (procedures: never)."""
        return self.kind == "table" and (
            self.id in DEFAULT_SET
            or (self.pending_of is not None and self.pending_of in DEFAULT_SET)
        )


def _load_catalogue() -> tuple[CatalogueEntry, ...]:
    text = resources.files("osgp.tables").joinpath("catalogue.json").read_text("utf-8")
    doc = json.loads(text)
    out = []
    for kind, key in (("table", "tables"), ("procedure", "procedures")):
        for e in doc[key]:
            out.append(
                CatalogueEntry(
                    kind,
                    e["id"],
                    e["name"],
                    e["title"],
                    e["clause"],
                    e["page"],
                    e.get("pending_of"),
                )
            )
    return tuple(out)


_CATALOGUE: Optional[tuple[CatalogueEntry, ...]] = None


def catalogue(kind: Optional[str] = None) -> tuple[CatalogueEntry, ...]:
    """Every table and procedure of CLC/TS 50586 by number and name (from the
    standard's contents); ``kind`` = "table" or "procedure" filters."""
    global _CATALOGUE
    if _CATALOGUE is None:
        _CATALOGUE = _load_catalogue()
    return tuple(e for e in _CATALOGUE if kind is None or e.kind == kind)


def catalogue_entry(ident: TableId, kind: str = "table") -> CatalogueEntry:
    if isinstance(ident, str) and re.fullmatch(r"(?i)[BE]P\d+", ident.strip()):
        kind = "procedure"
        n = int(ident.strip()[2:])
        num = n if ident.strip().upper().startswith("BP") else 2048 + n
    else:
        num = table_number(ident)
    for e in catalogue(kind):
        if e.id == num:
            return e
    raise ConfigurationError(f"{ident!r} is not in the CLC/TS 50586 contents")


for _s in _builtin.BUILTIN:
    DEFAULT_SET.register(_s)
for _s in _control.SCHEMAS:  # control outputs and one-time reads (osgp.tables.control)
    DEFAULT_SET.register(_s)
