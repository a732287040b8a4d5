"""The table schema language, its compiler and the shared encoder.

A *schema* describes one table layout as JSON-compatible data (so users can
ship layouts in a data file, see :func:`osgp.tables.register_file`)::

    {"id": 61, "name": "BT61", "title": "Actual Load Profile", "fields": [
        {"name": "LP_MEMORY_LEN", "type": "UINT32"},
        {"name": "LP_FLAGS", "type": "UINT16", "bits": [
            {"name": "LP_SET1_INHIBIT_OVF_FLAG", "bit": 0},
            {"name": "FILLER", "bits": [12, 15]}]},
        {"name": "LP_DATA_SETS", "type": "ARRAY", "count": "@LP_SETS", "of": [...]}]}

Field types (docs/protocol.md §3.4, §7.1): UINT8..UINT64 / INT8..INT64 (LSB first),
FLOAT32, FLOAT64, NI_FMAT1, NI_FMAT2 (width from BT00 NI_FORMAT1/2),
LTIME_DATE, STIME_DATE, TIME (width from BT00 TM_FORMAT), CHAR, BCD, BYTES,
SET (``"length"``: a count), FILL (skipped bytes), RECORD (``"fields"``),
ARRAY (``"count"``, ``"of"``: a field list, or one unnamed field for an array
of scalars) and IF (``"when"``, ``"then"``).  An integer field with
``"bits"`` holds BOOL(x) (``"bit"``) and UINT(x..y) (``"bits": [x, y]``)
sub-fields (bit 0 = LSB, [OPT p.6]).

A count or condition refers to another value with a *reference*:
``"BT00.FORMAT_CONTROL_3.NI_FORMAT1"`` (a field of another table, supplied in
the decode context), ``"LOCAL_FIELD"`` or ``"RECORD.SUBFIELD"`` (an earlier
field of this table) or ``"@NAME"`` (a derived parameter computed in Python,
e.g. ``@LP_SETS``).  Counts are ``int | ref | {"ref", "shift", "mask", "mul",
"add", "div", "times"}``: ``((ref >> shift) & mask) * mul + add) / div * times``.
Conditions are ``ref`` (non-zero) or ``{..., "eq": v}`` / ``{..., "ne": v}``.

A schema compiles once (:func:`compile_schema`) to a :class:`Program`: a
compact array of 32-bit words run by the native interpreter
(csrc/osgp_table.c, opcodes in csrc/osgp.h) or its twin, plus the node tree
used to build the decoded mapping and to encode values back to bytes.
"""

from __future__ import annotations

import math
import re
import struct
from array import array
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable, NamedTuple, Optional, Sequence

from osgp._reference._values import TimeDate, ni_width, time_width
from osgp.errors import ConfigurationError

NONE = 0xFFFFFFFF
OP_INT, OP_BITS, OP_BYTES, OP_NI, OP_TIME, OP_FLOAT, OP_ARRAY, OP_END, OP_IF, OP_SKIP = range(1, 11)

INT_TYPES = {f"UINT{8 * w}": (w, False) for w in range(1, 9)}
INT_TYPES.update({f"INT{8 * w}": (w, True) for w in range(1, 9)})
# Shape codes: how the decoded slots become the nested mapping (the kernels'
# table_decode(); a shape node is (code, name, ...)).
S_INT, S_BITS, S_BYTES, S_NI, S_TIME, S_FLOAT, S_ARRAY, S_RECORD, S_IF, S_FILL = range(10)
TIME_KINDS = {"LTIME_DATE": 0, "STIME_DATE": 1, "TIME": 2}
BYTE_KINDS = {"BYTES": 0, "CHAR": 1, "BCD": 2, "SET": 3}

# Context references every format-dependent type uses (docs/protocol.md §7.1).
TM_FORMAT_REF = "BT00.FORMAT_CONTROL_2.TM_FORMAT"
NI_FORMAT_REFS = {
    "NI_FMAT1": "BT00.FORMAT_CONTROL_3.NI_FORMAT1",
    "NI_FMAT2": "BT00.FORMAT_CONTROL_3.NI_FORMAT2",
}
_CTX_RE = re.compile(r"^(BT|ET)\d+(\.|$)")


# ---- expressions ----------------------------------------------------------------------------


class Expr(NamedTuple):
    ref: Optional[str]
    shift: int = 0
    mask: int = 0
    mul: int = 1
    add: int = 0
    div: int = 1
    times: Optional[str] = None

    def evaluate(self, lookup: Callable[[str], int]) -> int:
        v = 0
        if self.ref is not None:
            v = lookup(self.ref) >> self.shift
            if self.mask:
                v &= self.mask
        v = v * self.mul + self.add
        if self.div > 1:
            q = abs(v) // self.div
            v = q if v >= 0 else -q
        if self.times is not None:
            v *= lookup(self.times)
        return v

    def refs(self) -> list[str]:
        return [r for r in (self.ref, self.times) if r is not None]

    def constant_floor(self) -> int:
        """The value when it depends on no field (divisor included), else 0; never below 0."""
        if self.refs():
            return 0
        return max(self.evaluate(lambda _ref: 0), 0)


def parse_count(spec: Any) -> Expr:
    if isinstance(spec, bool):
        raise ConfigurationError(f"bad count {spec!r}")
    if isinstance(spec, int):
        return Expr(None, mul=0, add=spec)
    if isinstance(spec, str):
        return Expr(spec)
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"ref", "shift", "mask", "mul", "add", "div", "times", "eq", "ne"}
        if unknown:
            raise ConfigurationError(f"unknown count keys {sorted(unknown)}")
        return Expr(
            spec.get("ref"),
            int(spec.get("shift", 0)),
            int(spec.get("mask", 0)),
            int(spec.get("mul", 1)),
            int(spec.get("add", 0)),
            int(spec.get("div", 1)),
            spec.get("times"),
        )
    raise ConfigurationError(f"bad count {spec!r}")


def parse_cond(spec: Any) -> tuple[Expr, int, int]:
    """(expr, mode, cmp): mode 0 non-zero, 1 equal, 2 not equal."""
    e = parse_count(spec)
    if isinstance(spec, Mapping) and "eq" in spec:
        return e, 1, int(spec["eq"])
    if isinstance(spec, Mapping) and "ne" in spec:
        return e, 2, int(spec["ne"])
    return e, 0, 0


# ---- nodes ----------------------------------------------------------------------------------


class Node:
    name: Optional[str]
    path: str

    def min_size(self) -> int:
        raise NotImplementedError

    def emit(self, c: _Compiler) -> None:
        raise NotImplementedError

    def shape(self, c: _Compiler) -> tuple:
        raise NotImplementedError

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        raise NotImplementedError

    def default(self, env: _Env) -> Any:
        raise NotImplementedError


class IntNode(Node):
    def __init__(self, name: Optional[str], path: str, width: int, signed: bool) -> None:
        self.name, self.path, self.width, self.signed = name, path, width, signed
        self.store = NONE

    def min_size(self) -> int:
        return self.width

    def emit(self, c: _Compiler) -> None:
        c.mark(self.path)
        c.words += [OP_INT | (int(self.signed) << 8) | (self.width << 16), self.store]

    def shape(self, c: _Compiler) -> tuple:
        return (S_INT, self.name, int(self.width == 8 and not self.signed))

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        v = _as_int(v, self.path)
        try:
            out += v.to_bytes(self.width, "little", signed=self.signed)
        except OverflowError:
            raise ConfigurationError(
                f"{self.path}: {v} does not fit in {'INT' if self.signed else 'UINT'}"
                f"{8 * self.width}"
            ) from None
        env.set(self.path, v)

    def default(self, env: _Env) -> Any:
        return 0


class BitsNode(Node):
    def __init__(
        self,
        name: Optional[str],
        path: str,
        width: int,
        subs: list[tuple[Optional[str], int, int, bool]],
    ) -> None:
        self.name, self.path, self.width, self.subs = name, path, width, subs
        self.stores = [NONE] * len(subs)
        self.names = [s[0] for s in subs]

    def min_size(self) -> int:
        return self.width

    def emit(self, c: _Compiler) -> None:
        c.mark(self.path)
        c.words += [OP_BITS | (self.width << 16), len(self.subs)]
        for (_n, lo, hi, _b), st in zip(self.subs, self.stores):
            c.words += [lo | (hi << 8), st]

    def shape(self, c: _Compiler) -> tuple:
        return (S_BITS, self.name, tuple((n, b) for n, _lo, _hi, b in self.subs))

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        v = v if v is not None else {}
        if not isinstance(v, Mapping):
            raise ConfigurationError(f"{self.path}: expected a mapping of bit fields")
        u = 0
        for n, lo, hi, _b in self.subs:
            x = _as_int(v.get(n, 0), f"{self.path}.{n}") if n is not None else 0
            if x < 0 or x >> (hi - lo + 1):
                raise ConfigurationError(f"{self.path}.{n}: {x} does not fit in bits {lo}..{hi}")
            u |= x << lo
            if n is not None:
                env.set(f"{self.path}.{n}", x)
        out += u.to_bytes(self.width, "little")

    def default(self, env: _Env) -> Any:
        return MappingProxyType(
            {n: (False if b else 0) for n, _l, _h, b in self.subs if n is not None}
        )


class BytesNode(Node):
    def __init__(self, name: Optional[str], path: str, kind: str, length: Expr) -> None:
        self.name, self.path, self.kind, self.length = name, path, kind, length

    def min_size(self) -> int:
        return self.length.constant_floor()

    def emit(self, c: _Compiler) -> None:
        c.mark(self.path)
        c.words += [OP_BYTES | (BYTE_KINDS[self.kind] << 8)] + c.expr(self.length)

    def shape(self, c: _Compiler) -> tuple:
        return (S_BYTES, self.name, BYTE_KINDS[self.kind])

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        if self.length.ref == "@DATA_LEN":  # rest of the table: any length
            n = len(bytes(v)) if self.kind == "BYTES" else len(v)
        else:
            n = self.length.evaluate(env.lookup)
            if n < 0:
                raise ConfigurationError(f"{self.path}: the layout gives length {n}")
        if self.kind == "CHAR":
            if not isinstance(v, str):
                raise ConfigurationError(f"{self.path}: expected str")
            try:
                b = v.encode("latin-1")
            except UnicodeEncodeError:
                raise ConfigurationError(f"{self.path}: not ISO 8859-1 text") from None
            if len(b) > n:
                raise ConfigurationError(f"{self.path}: {len(b)} characters, field holds {n}")
            b = b.ljust(n, b" ")
        elif self.kind == "BCD":
            try:
                b = bytes.fromhex(str(v).rjust(2 * n, "0"))
            except ValueError:
                raise ConfigurationError(f"{self.path}: not a BCD digit string") from None
        elif self.kind == "SET":
            bits = list(v)
            if len(bits) > 8 * n:
                raise ConfigurationError(f"{self.path}: {len(bits)} flags, SET holds {8 * n}")
            ba = bytearray(n)
            for k, flag in enumerate(bits):
                if flag:
                    ba[k >> 3] |= 1 << (k & 7)
            b = bytes(ba)
        else:
            b = bytes(v)
        if len(b) != n:
            raise ConfigurationError(f"{self.path}: {len(b)} bytes, field holds {n}")
        out += b

    def default(self, env: _Env) -> Any:
        n = 0 if self.length.ref == "@DATA_LEN" else max(self.length.evaluate(env.lookup), 0)
        return {"CHAR": " " * n, "BCD": "0" * (2 * n), "SET": (False,) * (8 * n)}.get(
            self.kind, bytes(n)
        )


class FillNode(Node):
    def __init__(self, path: str, length: Expr) -> None:
        self.name, self.path, self.length = None, path, length

    def min_size(self) -> int:
        return self.length.constant_floor()

    def emit(self, c: _Compiler) -> None:
        c.mark(self.path)
        c.words += [OP_SKIP] + c.expr(self.length)

    def shape(self, c: _Compiler) -> tuple:
        return (S_FILL, None)

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        n = self.length.evaluate(env.lookup)
        if n < 0:
            raise ConfigurationError(f"{self.path}: the layout gives length {n}")
        out += bytes(n)

    def default(self, env: _Env) -> Any:
        return None


class NiNode(Node):
    def __init__(self, name: Optional[str], path: str, which: str) -> None:
        self.name, self.path, self.ref = name, path, NI_FORMAT_REFS[which]

    def min_size(self) -> int:
        return 3

    def emit(self, c: _Compiler) -> None:
        c.mark(self.path)
        c.words += [OP_NI, c.reg(self.ref)]

    def shape(self, c: _Compiler) -> tuple:
        return (S_NI, self.name, c.regs[self.ref])

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        out += ni_encode(env.lookup(self.ref), v, self.path)

    def default(self, env: _Env) -> Any:
        return 0.0 if env.lookup(self.ref) in (0, 1, 2, 3, 4, 13) else 0


class TimeNode(Node):
    def __init__(self, name: Optional[str], path: str, kind: str) -> None:
        self.name, self.path, self.kind = name, path, TIME_KINDS[kind]

    def min_size(self) -> int:
        return 0

    def emit(self, c: _Compiler) -> None:
        c.mark(self.path)
        c.words += [OP_TIME | (self.kind << 8), c.reg(TM_FORMAT_REF)]

    def shape(self, c: _Compiler) -> tuple:
        return (S_TIME, self.name)

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        out += time_encode(env.lookup(TM_FORMAT_REF), self.kind, v, self.path)

    def default(self, env: _Env) -> Any:
        fmt = env.lookup(TM_FORMAT_REF)
        if fmt in (3, 4) and self.kind != 2:
            return TimeDate(1970, 1, 1, 0, 0, 0)
        if fmt == 0 or self.kind == 2:
            return TimeDate(0, 0, 0, 0, 0, 0)
        return TimeDate(2000, 1, 1, 0, 0, 0)


class FloatNode(Node):
    def __init__(self, name: Optional[str], path: str, width: int) -> None:
        self.name, self.path, self.width = name, path, width

    def min_size(self) -> int:
        return self.width

    def emit(self, c: _Compiler) -> None:
        c.mark(self.path)
        c.words += [OP_FLOAT | (self.width << 16)]

    def shape(self, c: _Compiler) -> tuple:
        return (S_FLOAT, self.name)

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        out += struct.pack("<d" if self.width == 8 else "<f", float(v))

    def default(self, env: _Env) -> Any:
        return 0.0


class GroupNode(Node):
    """A RECORD (named) or the top-level field list."""

    def __init__(self, name: Optional[str], path: str, children: list[Node]) -> None:
        self.name, self.path, self.children = name, path, children

    def min_size(self) -> int:
        return sum(ch.min_size() for ch in self.children)

    def emit(self, c: _Compiler) -> None:
        for ch in self.children:
            ch.emit(c)

    def shapes(self, c: _Compiler) -> tuple:
        return tuple(ch.shape(c) for ch in self.children)

    def shape(self, c: _Compiler) -> tuple:
        return (S_RECORD, self.name, self.shapes(c))

    def encode_from(self, v: Mapping, out: bytearray, env: _Env) -> None:
        for ch in self.children:
            if isinstance(ch, IfNode):
                ch.encode_from(v, out, env)
            elif isinstance(ch, FillNode):
                ch.encode(None, out, env)
            else:
                x = v.get(ch.name) if ch.name is not None else None
                if x is None:
                    x = ch.default(env)
                ch.encode(x, out, env)

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        if v is None:
            v = {}
        if not isinstance(v, Mapping):
            raise ConfigurationError(f"{self.path}: expected a mapping")
        self.encode_from(v, out, env)

    def default(self, env: _Env) -> Any:
        return {}


class IfNode(Node):
    def __init__(self, path: str, cond: tuple[Expr, int, int], body: GroupNode) -> None:
        self.name, self.path, self.cond, self.body = None, path, cond, body

    def min_size(self) -> int:
        return 0

    def emit(self, c: _Compiler) -> None:
        c.mark(self.path)
        e, mode, cmp = self.cond
        head = [OP_IF | (mode << 8)] + c.expr(e) + [cmp & 0xFFFFFFFF]
        start = len(c.words)
        c.words += head + [0]
        self.body.emit(c)
        c.words[start + len(head)] = len(c.words) - start - len(head) - 1

    def taken(self, env: _Env) -> bool:
        e, mode, cmp = self.cond
        v = e.evaluate(env.lookup)
        return v != 0 if mode == 0 else (v == cmp if mode == 1 else v != cmp)

    def shape(self, c: _Compiler) -> tuple:
        return (S_IF, None, self.body.shapes(c))

    def encode_from(self, v: Mapping, out: bytearray, env: _Env) -> None:
        if self.taken(env):
            self.body.encode_from(v, out, env)


class ArrayNode(Node):
    def __init__(
        self, name: Optional[str], path: str, count: Expr, elem: Node, scalar: bool
    ) -> None:
        self.name, self.path, self.count, self.elem, self.scalar = name, path, count, elem, scalar

    def min_size(self) -> int:
        return 0

    def emit(self, c: _Compiler) -> None:
        c.mark(self.path)
        start = len(c.words)
        c.words += [OP_ARRAY] + c.expr(self.count) + [0, self.elem.min_size()]
        self.elem.emit(c)
        c.words[start + 8] = len(c.words) - start - 10
        c.words.append(OP_END)

    def shape(self, c: _Compiler) -> tuple:
        if self.scalar:
            return (S_ARRAY, self.name, self.elem.shape(c), True)
        assert isinstance(self.elem, GroupNode)
        return (S_ARRAY, self.name, self.elem.shapes(c), False)

    def encode(self, v: Any, out: bytearray, env: _Env) -> None:
        n = self.count.evaluate(env.lookup)
        items = list(v) if v is not None else []
        if len(items) != n:
            raise ConfigurationError(f"{self.path}: {len(items)} elements, the layout needs {n}")
        for x in items:
            if x is None:
                x = self.elem.default(env)
            self.elem.encode(x, out, env)

    def default(self, env: _Env) -> Any:
        n = self.count.evaluate(env.lookup)
        return tuple(self.elem.default(env) for _ in range(max(n, 0)))


# ---- value helpers --------------------------------------------------------------------------


def _as_int(v: Any, path: str) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    raise ConfigurationError(f"{path}: expected an integer, got {type(v).__name__}")


def ni_encode(fmt: int, v: Any, path: str = "NI") -> bytes:
    w = ni_width(fmt) if isinstance(fmt, int) else -1
    if w < 0:
        raise ConfigurationError(f"{path}: unknown NI_FORMAT {fmt}")
    if fmt == 0:
        return struct.pack("<d", float(v))
    if fmt == 1:
        return struct.pack("<f", float(v))
    if fmt in (2, 3, 13):
        x = float(v)
        for prec in range(w, 0, -1):
            s = f"{x:.{prec}G}"
            if len(s) <= w:
                return s.rjust(w).encode("ascii")
        raise ConfigurationError(f"{path}: {x} does not fit in {w} characters")
    if fmt == 4:
        v = int(round(float(v) * 10000))
        return v.to_bytes(4, "little", signed=True)
    if fmt in (5, 6, 12):
        v = _as_int(v, path)
        s = str(v)
        if v < 0 or len(s) > 2 * w:
            raise ConfigurationError(f"{path}: {v} does not fit in FIXED_BCD{2 * w}")
        return bytes.fromhex(s.rjust(2 * w, "0"))
    v = _as_int(v, path)
    try:
        return v.to_bytes(w, "little", signed=True)
    except OverflowError:
        raise ConfigurationError(f"{path}: {v} does not fit in INT{8 * w}") from None


def _bcd(x: int, path: str) -> int:
    if not 0 <= x <= 99:
        raise ConfigurationError(f"{path}: {x} is not a two-digit BCD value")
    return ((x // 10) << 4) | (x % 10)


def time_encode(fmt: int, kind: int, v: Any, path: str = "TIME") -> bytes:
    """Bytes of a time field for a TM_FORMAT (docs/protocol.md §7.1)."""
    if not isinstance(v, TimeDate):
        v = TimeDate.from_datetime(v) if hasattr(v, "year") else TimeDate(*v)
    w = time_width(kind, fmt) if isinstance(fmt, int) else -1
    if w < 0:
        raise ConfigurationError(f"{path}: unknown TM_FORMAT {fmt}")
    if fmt == 0:
        return b""
    if kind == 2 or fmt in (1, 2):
        parts = (
            [v.hour, v.minute, v.second]
            if kind == 2
            else [v.year - 2000, v.month, v.day, v.hour, v.minute, v.second][:w]
        )
        if fmt == 1:
            return bytes(_bcd(x, path) for x in parts)
        if any(not 0 <= x <= 255 for x in parts):
            raise ConfigurationError(f"{path}: {tuple(v)} does not fit TM_FORMAT 2")
        return bytes(parts)
    secs = v.epoch()
    if fmt == 3:
        minutes, s = divmod(secs, 60)
        if kind == 1 and s:
            raise ConfigurationError(f"{path}: STIME_DATE (TM_FORMAT 3) has no seconds")
        if not 0 <= minutes <= 0xFFFFFFFF:
            raise ConfigurationError(f"{path}: {tuple(v)} out of range for TM_FORMAT 3")
        return minutes.to_bytes(4, "little") + (bytes([s]) if kind == 0 else b"")
    if not 0 <= secs <= 0xFFFFFFFF:
        raise ConfigurationError(f"{path}: {tuple(v)} out of range for TM_FORMAT 4")
    return secs.to_bytes(4, "little")


# ---- compiler -------------------------------------------------------------------------------


class _Env:
    """Values visible to counts and conditions while encoding."""

    def __init__(self, params: Mapping[str, int]) -> None:
        self.vals: dict[str, int] = dict(params)

    def set(self, path: str, v: int) -> None:
        self.vals[path] = v

    def lookup(self, ref: str) -> int:
        try:
            return self.vals[ref]
        except KeyError:
            raise ConfigurationError(f"value of {ref} is needed but not known") from None


class _Compiler:
    def __init__(self) -> None:
        self.words: list[int] = []
        self.params: list[str] = []
        self.locals: dict[str, Node] = {}
        self.regs: dict[str, int] = {}
        self.pcs: list[tuple[int, str]] = []

    def mark(self, path: str) -> None:
        self.pcs.append((len(self.words), path))

    def reg(self, ref: str) -> int:
        return self.regs[ref]

    def expr(self, e: Expr) -> list[int]:
        return [
            self.regs[e.ref] if e.ref is not None else NONE,
            e.shift,
            e.mask,
            e.mul & 0xFFFFFFFF,
            e.add & 0xFFFFFFFF,
            max(e.div, 1),
            self.regs[e.times] if e.times is not None else NONE,
        ]


def _clean(path: str) -> str:
    return re.sub(r"\[\d*\]", "", path)


class _Parser:
    def __init__(self, table: str) -> None:
        self.table = table
        self.refs: list[str] = []
        self.named: dict[str, Node] = {}

    def note(self, e: Expr) -> Expr:
        self.refs.extend(e.refs())
        return e

    def fields(self, specs: Sequence[Mapping], prefix: str) -> list[Node]:
        return [self.field(f, prefix) for f in specs]

    def field(self, f: Mapping, prefix: str) -> Node:
        if not isinstance(f, Mapping):
            raise ConfigurationError(f"{self.table}: a field must be a mapping, got {f!r}")
        t = str(f.get("type", ""))
        name = f.get("name")
        path = f"{prefix}{name}" if name else f"{prefix}<{t.lower()}>"
        node: Node
        if t in INT_TYPES and "bits" in f:
            w, _s = INT_TYPES[t]
            subs = []
            for b in f["bits"]:
                if "bit" in b:
                    lo = hi = int(b["bit"])
                    is_bool = True
                else:
                    lo, hi = (int(x) for x in b["bits"])
                    is_bool = False
                if not 0 <= lo <= hi < 8 * w:
                    raise ConfigurationError(f"{self.table}.{path}: bits {lo}..{hi} outside {t}")
                subs.append((b.get("name"), lo, hi, is_bool))
            node = BitsNode(name, path, w, subs)
            for n, *_r in subs:
                if n is not None:
                    self.named[_clean(f"{path}.{n}")] = node
        elif t in INT_TYPES:
            w, s = INT_TYPES[t]
            node = IntNode(name, path, w, s)
        elif t in ("FLOAT32", "FLOAT64"):
            node = FloatNode(name, path, 4 if t == "FLOAT32" else 8)
        elif t in NI_FORMAT_REFS:
            node = NiNode(name, path, t)
            self.refs.append(NI_FORMAT_REFS[t])
        elif t in TIME_KINDS:
            node = TimeNode(name, path, t)
            self.refs.append(TM_FORMAT_REF)
        elif t in BYTE_KINDS:
            node = BytesNode(name, path, t, self.note(parse_count(f["length"])))
        elif t == "FILL":
            node = FillNode(path, self.note(parse_count(f["length"])))
        elif t == "RECORD":
            node = GroupNode(name, path, self.fields(f["fields"], path + "."))
        elif t == "IF":
            cond = parse_cond(f["when"])
            self.note(cond[0])
            node = IfNode(
                path, cond, GroupNode(None, prefix.rstrip("."), self.fields(f["then"], prefix))
            )
        elif t == "ARRAY":
            count = self.note(parse_count(f["count"]))
            of = f["of"]
            if isinstance(of, Mapping):
                elem = self.field(of, path + "[].")
                node = ArrayNode(name, path, count, elem, True)
            else:
                node = ArrayNode(
                    name,
                    path,
                    count,
                    GroupNode(None, path + "[]", self.fields(of, path + "[].")),
                    False,
                )
        else:
            raise ConfigurationError(f"{self.table}: field {path!r} has unknown type {t!r}")
        if name and not isinstance(node, (GroupNode,)):
            self.named[_clean(path)] = node
        return node


class Program:
    """A compiled table layout: program words, parameters, node tree."""

    def __init__(self, schema: Mapping) -> None:
        self.schema = schema
        self.table_id = int(schema["id"])
        self.name = str(schema.get("name") or table_name(self.table_id))
        self.title = str(schema.get("title", ""))
        p = _Parser(self.name)
        self.root = GroupNode(None, "", p.fields(schema["fields"], ""))
        c = _Compiler()
        params: list[str] = []
        local_refs: list[str] = []
        for r in p.refs:
            if r.startswith("@") or _CTX_RE.match(r):
                if r not in params:
                    params.append(r)
            elif r not in local_refs:
                if r not in p.named:
                    raise ConfigurationError(f"{self.name}: reference {r!r} names no field")
                local_refs.append(r)
        for k, r in enumerate(params):
            c.regs[r] = k
        for k, r in enumerate(local_refs):
            c.regs[r] = len(params) + k
            node = p.named[r]
            if isinstance(node, IntNode):
                node.store = c.regs[r]
            elif isinstance(node, BitsNode):
                sub = r.rsplit(".", 1)[1]
                node.stores[node.names.index(sub)] = c.regs[r]
            else:
                raise ConfigurationError(f"{self.name}: {r} is not an integer field")
        self.root.emit(c)
        self.shape = self.root.shapes(c)
        self.params = params
        # parsed references: (ref, table number or None, ((name, index), ...))
        self.param_specs: list[tuple[str, Optional[int], tuple]] = []
        for r in params:
            if r.startswith("@"):
                self.param_specs.append((r, None, ()))
            else:
                head, _, path = r.partition(".")
                toks = tuple(
                    int(i) if i else n for n, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
                )
                self.param_specs.append((r, table_number(head), toks))
        self.nregs = len(params) + len(local_refs)
        self.words = array("I", c.words)
        self.code = (
            self.words.tobytes()
            if self.words.itemsize == 4
            else b"".join(w.to_bytes(4, "little") for w in c.words)
        )
        self._pcs = c.pcs

    def field_at(self, pc: int) -> str:
        best = "?"
        for at, path in self._pcs:
            if at <= pc:
                best = path
            else:
                break
        return best

    def encode(self, values: Mapping[str, Any], params: Mapping[str, int]) -> bytes:
        out = bytearray()
        self.root.encode(values, out, _Env(params))
        return bytes(out)

    def __repr__(self) -> str:
        return f"<Program {self.name} ({len(self.words)} words, params {self.params})>"


def compile_schema(schema: Mapping) -> Program:
    """Compile a schema (see the module docstring) once into a :class:`Program`."""
    return Program(schema)


def table_name(table_id: int) -> str:
    """BTnn / ETnn name of a table number (ETnn = 2048 + nn, pending + 4096;
    docs/protocol.md §1)."""
    base = table_id & 0x0FFF if table_id >= 4096 else table_id
    pending = " pending" if table_id >= 4096 else ""
    if base >= 2048:
        return f"ET{base - 2048:02d}{pending}"
    return f"BT{base:02d}{pending}"


_NUMBERS: dict = {}


def table_number(name: Any) -> int:
    """Table number of ``"BT61"``, ``"ET21"``, ``2069`` or ``"4150"``."""
    if type(name) is int:
        return name
    try:
        return _NUMBERS[name]
    except (KeyError, TypeError):
        pass
    n = _table_number(name)
    if isinstance(name, str) and len(_NUMBERS) < 4096:
        _NUMBERS[name] = n
    return n


def _table_number(name: Any) -> int:
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    s = str(name).strip().upper()
    m = re.fullmatch(r"(BT|ET|MT)(\d+)", s)
    if m:
        n = int(m.group(2))
        return n if m.group(1) == "BT" else 2048 + n
    if s.isdigit():
        return int(s)
    raise ConfigurationError(f"not a table name or number: {name!r}")


_ = math  # reserved for future NI helpers
