"""Columnar decode: many images of one fixed-layout table straight into numpy
columns (:func:`osgp.tables.decode_columns`), no Python object per record.

A layout *qualifies* when, once the context tables are known (BT00 formats,
BT21 counts, ...), every image has the same byte layout: no count, length or
IF condition refers to a field of the image itself, no ``@DATA_LEN`` (rest of
the table) length, and no FLOAT_CHAR (text) NI format.  Anything else raises
:class:`~osgp.errors.ConfigurationError`.

Columns, one per named scalar (``np.ndarray`` with the images along axis 0):

* names are dotted paths: ``TOT_DATA_BLOCK.SUMMATIONS``, a bit field
  ``REG_FUNC1_FLAGS.CUM_DEMAND_FLAG``; fields of an IF whose condition holds
  appear under their enclosing record, the others not at all;
* a fixed-size array adds one axis per level: ``SUMMATIONS`` of 19 values is
  (N, 19), ``TIER_DATA_BLOCK.DEMANDS.DEMAND`` is (N, tiers, demands, occur);
* integers keep their width (UINT8 -> uint8, INT24 -> int32, UINT64 ->
  uint64), BOOL bit fields are bool, UINT(x..y) the smallest unsigned type;
  FLOAT32/FLOAT64 and NI_FORMAT 0/1 are float32/float64, NI_FORMAT 4 float64
  (4 implied decimals), FIXED_BCD int64, the other integer NI formats their
  width (INT32 -> int32);
* LTIME_DATE / STIME_DATE are ``datetime64[s]`` (UTC), NaT where the stored
  fields are no calendar time (zero dates, month 13, ...: where
  :meth:`TimeDate.to_datetime` gives None); TIME is ``timedelta64[s]`` after
  midnight;
* BYTES are uint8 (N, ..., length), SET bool (N, ..., 8 x length), CHAR a
  numpy ``U`` string (ISO 8859-1; numpy drops trailing NULs), BCD its upper
  case hex digits as a ``U`` string.

The layout compiles to *cells* (one per scalar, adjacent same-width copies
merged) run by the native kernel without the GIL (``table_columns``,
csrc/osgp_table.c) or its numpy twin.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from osgp._reference import tables as _ref
from osgp.errors import (
    ArgumentTypeError,
    ConfigurationError,
    DecodeError,
    MalformedError,
    TruncatedError,
)
from osgp.tables.schema import (
    TM_FORMAT_REF,
    ArrayNode,
    BitsNode,
    BytesNode,
    FillNode,
    FloatNode,
    GroupNode,
    IfNode,
    IntNode,
    NiNode,
    Node,
    Program,
    TimeNode,
)

COPY, INT, BITS, NI4, BCD, TIME = range(1, 7)  # cell kinds (osgp.h OSGP_COL_*)
WORDS = 8

_INT_DTYPES = {1: "1", 2: "2", 3: "4", 4: "4", 5: "8", 6: "8", 7: "8", 8: "8"}
_HEX = np.frombuffer(b"0123456789ABCDEF", np.uint8)


class _Col:
    def __init__(self, name: str, dtype: np.dtype, dims: tuple, post: str) -> None:
        self.name, self.dtype, self.dims, self.post = name, dtype, dims, post
        self.stride = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize


class Plan:
    """The cells and columns of one layout under one set of context values."""

    def __init__(self, prog: Program, values: dict) -> None:
        self.table = prog.name
        self.vals = values
        self.cols: dict[str, _Col] = {}
        self.index: dict[str, int] = {}
        self.cells: list[list[int]] = []
        self.size = self._group(prog.root.children, 0, "", (), (), True)
        self.words = np.array(_merge(self.cells), dtype=np.uint32).reshape(-1)

    def _lookup(self, ref: str) -> int:
        return int(self.vals[ref])

    def _count(self, node: Node, expr: Any, what: str) -> int:
        n = int(expr.evaluate(self._lookup))
        if n < 0:
            raise ConfigurationError(f"{self.table}.{node.path}: the context gives {what} {n}")
        return n

    def _col(self, name: str, dtype: Any, dims: tuple, post: str = "") -> tuple[int, _Col]:
        dt = np.dtype(dtype)
        col = self.cols.get(name)
        if col is None:
            col = self.cols[name] = _Col(name, dt, dims, post)
            self.index[name] = len(self.index)
        elif col.dtype != dt or col.dims != dims:
            raise ConfigurationError(f"{self.table}: field {name} appears twice with other shapes")
        return self.index[name], col

    def _cell(
        self,
        emit: bool,
        kind: int,
        pos: int,
        w: int,
        arg: int,
        name: str,
        dtype: Any,
        dims: tuple,
        idx: tuple,
        post: str = "",
        tail: Optional[int] = None,
    ) -> None:
        """One scalar (or, with ``tail``, a run of ``tail`` bytes) of column ``name``."""
        raw = tail is not None
        k, col = self._col(name, dtype, dims + ((tail,) if raw else ()), post)
        if not emit:
            return
        at = idx + ((0,) if raw else ())
        flat = int(np.ravel_multi_index(at, col.dims)) if col.dims else 0
        osz = w if raw else col.dtype.itemsize
        self.cells.append([kind, pos, w, arg, k, flat * col.dtype.itemsize, col.stride, osz])

    def _group(
        self, children: list, pos: int, prefix: str, dims: tuple, idx: tuple, emit: bool
    ) -> int:
        for ch in children:
            name = f"{prefix}{ch.name}" if ch.name else None
            pos = self._node(ch, pos, name, prefix, dims, idx, emit)
        return pos

    def _node(
        self,
        node: Node,
        pos: int,
        name: Optional[str],
        prefix: str,
        dims: tuple,
        idx: tuple,
        emit: bool,
    ) -> int:
        if isinstance(node, IntNode):
            if name:
                dt = ("<i" if node.signed else "<u") + _INT_DTYPES[node.width]
                same = np.dtype(dt).itemsize == node.width
                kind, arg = (COPY, 0) if same else (INT, int(node.signed))
                self._cell(emit, kind, pos, node.width, arg, name, dt, dims, idx)
            return pos + node.width
        if isinstance(node, BitsNode):
            for sub, lo, hi, is_bool in node.subs:
                if sub is None or not name:
                    continue
                n = hi - lo + 1
                dt = "?" if is_bool else "<u" + _INT_DTYPES[(n + 7) // 8]
                arg = lo | (hi << 8)
                self._cell(emit, BITS, pos, node.width, arg, f"{name}.{sub}", dt, dims, idx)
            return pos + node.width
        if isinstance(node, FloatNode):
            if name:
                self._cell(emit, COPY, pos, node.width, 0, name, f"<f{node.width}", dims, idx)
            return pos + node.width
        if isinstance(node, NiNode):
            fmt = self._lookup(node.ref)
            w = _ref.ni_width(fmt)
            if w < 0:
                raise ConfigurationError(f"{self.table}.{node.path}: unknown NI_FORMAT {fmt}")
            if fmt in (2, 3, 13):
                raise ConfigurationError(
                    f"{self.table}.{node.path}: NI_FORMAT {fmt} (FLOAT_CHAR text) has no "
                    "columnar form; use tables.decode"
                )
            if name:
                if fmt in (0, 1, 8, 11):  # FLOAT64, FLOAT32, INT32, INT64: the bytes as stored
                    dt = {0: "<f8", 1: "<f4", 8: "<i4", 11: "<i8"}[fmt]
                    self._cell(emit, COPY, pos, w, 0, name, dt, dims, idx)
                elif fmt == 4:
                    self._cell(emit, NI4, pos, w, 0, name, "=f8", dims, idx)
                elif fmt in (5, 6, 12):
                    self._cell(emit, BCD, pos, w, fmt, name, "=i8", dims, idx)
                else:  # INT24, INT40, INT48 (docs/protocol.md §7.1)
                    self._cell(emit, INT, pos, w, 1, name, "<i" + _INT_DTYPES[w], dims, idx)
            return pos + w
        if isinstance(node, TimeNode):
            fmt = self._lookup(TM_FORMAT_REF)
            w = _ref.time_width(node.kind, fmt)
            if w < 0:
                raise ConfigurationError(f"{self.table}.{node.path}: unknown TM_FORMAT {fmt}")
            if name:
                post = "timedelta" if node.kind == 2 else "datetime"
                self._cell(emit, TIME, pos, w, node.kind | (fmt << 8), name, "=i8", dims, idx, post)
            return pos + w
        if isinstance(node, BytesNode):
            if node.length.ref == "@DATA_LEN":
                raise ConfigurationError(
                    f"{self.table}.{node.path}: the length is the rest of the table"
                )
            n = self._count(node, node.length, "length")
            if name:
                post = node.kind
                self._cell(emit and n > 0, COPY, pos, n, 0, name, "u1", dims, idx, post, tail=n)
            return pos + n
        if isinstance(node, FillNode):
            return pos + self._count(node, node.length, "length")
        if isinstance(node, IfNode):
            e, mode, cmp = node.cond
            v = e.evaluate(self._lookup)
            if v != 0 if mode == 0 else (v == cmp if mode == 1 else v != cmp):
                return self._group(node.body.children, pos, prefix, dims, idx, emit)
            return pos
        if isinstance(node, ArrayNode):
            count = self._count(node, node.count, "count")
            inner, start = dims + (count,), pos
            for k in range(max(count, 1)):  # count 0: the columns, shape (N, ..., 0)
                on = emit and count > 0
                at = idx + ((k,) if count else ())
                if node.scalar:
                    pos = self._node(node.elem, pos, name, prefix, inner, at, on)
                else:
                    assert isinstance(node.elem, GroupNode)
                    pre = f"{name}." if name else prefix
                    pos = self._group(node.elem.children, pos, pre, inner, at, on)
            return pos if count else start
        if isinstance(node, GroupNode):
            return self._group(node.children, pos, f"{name}." if name else prefix, dims, idx, emit)
        raise ConfigurationError(f"{self.table}: no columnar form for {type(node).__name__}")

    def field_of(self, cell: int) -> str:
        """Column name of a (merged) cell."""
        k = int(self.words[WORDS * cell + 4]) if WORDS * cell + 4 < len(self.words) else -1
        return list(self.cols)[k] if 0 <= k < len(self.cols) else "?"

    def empty(self, n: int) -> list[np.ndarray]:
        return [np.empty((n,) + c.dims, c.dtype) for c in self.cols.values()]

    def finish(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for col, a in zip(self.cols.values(), arrays):
            out[col.name] = _post(col.post, a)
        return out


def _merge(cells: list[list[int]]) -> list[list[int]]:
    """Adjacent copies into the same column row (e.g. an INT32 array) become one."""
    out: list[list[int]] = []
    for c in cells:
        p = out[-1] if out else None
        if (
            p is not None
            and c[0] == COPY == p[0]
            and c[4] == p[4]
            and p[1] + p[2] == c[1]
            and p[5] + p[7] == c[5]
        ):
            p[2] += c[2]
            p[7] += c[7]
        else:
            out.append(list(c))
    return out


def _post(post: str, a: np.ndarray) -> np.ndarray:
    if post == "datetime":
        return a.view("datetime64[s]")
    if post == "timedelta":
        return a.view("timedelta64[s]")
    if post == "SET":
        return np.unpackbits(a, axis=-1, bitorder="little").astype(bool)
    if post == "CHAR":  # ISO 8859-1: each byte is its code point
        return _as_str(a.astype("<u4"))
    if post == "BCD":
        digits = np.stack((a >> 4, a & 15), axis=-1).reshape(a.shape[:-1] + (2 * a.shape[-1],))
        return _as_str(_HEX[digits].astype("<u4"))
    return a


def _as_str(codes: np.ndarray) -> np.ndarray:
    n = codes.shape[-1]
    if n == 0:
        return np.zeros(codes.shape[:-1], "<U1")
    return np.ascontiguousarray(codes).view(f"<U{n}").reshape(codes.shape[:-1])


def images_buffer(images: Any, offsets: Any) -> tuple[Any, np.ndarray]:
    """(buffer, int64 offsets) from a sequence of images, a 2-D uint8 array
    (one image per row) or one buffer with ``offsets``."""
    if offsets is not None:
        offs = np.ascontiguousarray(offsets, dtype=np.int64)
        if offs.ndim != 1:
            raise ConfigurationError("offsets must be one-dimensional")
        return images, offs
    if isinstance(images, np.ndarray) and images.ndim == 2:
        a = np.ascontiguousarray(images)
        if a.dtype != np.uint8:
            raise ConfigurationError("a 2-D array of images must be uint8")
        return a, np.arange(a.shape[0], dtype=np.int64) * a.shape[1]
    if isinstance(images, (bytes, bytearray, memoryview)):
        raise ConfigurationError("one buffer of images needs offsets=")
    try:
        buf = b"".join(images)  # one copy, no object per image
        lens = np.fromiter(
            (len(x) if type(x) is bytes else memoryview(x).nbytes for x in images),
            np.int64,
            len(images),
        )
    except TypeError:
        raise ArgumentTypeError("images must be bytes-like objects") from None
    offs = np.zeros(len(lens), np.int64)
    np.cumsum(lens[:-1], out=offs[1:])
    return buf, offs


_PLANS: dict = {}
_PLANS_SIZE = 256


def plan_for(prog: Program, values: dict) -> Plan:
    """The plan of ``prog`` under ``values``, built once per layout and values
    (a batch decodes many small groups of images of one layout)."""
    key = (prog, tuple(values.items()))
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= _PLANS_SIZE:
            _PLANS.clear()
        plan = _PLANS[key] = Plan(prog, values)
    return plan


def decode(
    prog: Program, images: Any, values: dict, kernel: Any, offsets: Any = None
) -> dict[str, np.ndarray]:
    plan = plan_for(prog, values)
    buf, offs = images_buffer(images, offsets)
    arrays = plan.empty(len(offs))
    try:
        kernel.table_columns(plan.words, buf, offs, plan.size, arrays)
    except DecodeError as exc:
        raise _rewrap(exc, plan, offs) from None
    return plan.finish(arrays)


def _rewrap(exc: DecodeError, plan: Plan, offs: np.ndarray) -> DecodeError:
    img = exc.image or 0
    base = int(offs[img]) if len(offs) else 0
    layer = f"table {plan.table}"
    if isinstance(exc, TruncatedError):
        new: DecodeError = TruncatedError(
            f"image {img}: truncated, the layout needs {plan.size} byte(s), {exc.remaining} left",
            layer=layer,
            offset=0,
            needed=plan.size,
            remaining=exc.remaining,
            table=plan.table,
            image=img,
        )
    else:
        c = plan.field_of(exc.pc or 0)
        new = MalformedError(
            f"image {img}: field {c}: impossible value",
            layer=layer,
            offset=(exc.offset or 0) - base,
            table=plan.table,
            image=img,
        )
    return new


def to_arrow(cols: dict[str, np.ndarray]) -> Any:
    """A ``pyarrow.Table`` of decoded columns (needs pyarrow)."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - optional dependency
        raise ConfigurationError("decode_arrow needs pyarrow (pip install osgp[arrow])") from None
    out = {}
    for name, a in cols.items():
        flat = a.reshape(-1)
        if a.dtype.kind == "M":
            arr = pa.array(flat.view("int64"), pa.timestamp("s", tz="UTC"), mask=np.isnat(flat))
        elif a.dtype.kind == "m":
            arr = pa.array(flat.view("int64"), pa.duration("s"))
        else:
            arr = pa.array(flat)
        for k in reversed(a.shape[1:]):
            arr = pa.FixedSizeListArray.from_arrays(arr, k)
        out[name] = arr
    return pa.table(out)
