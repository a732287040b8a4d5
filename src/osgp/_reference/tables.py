"""Pure-Python twin of osgp._native.tables: the table-program interpreter and
the load-profile block decoder (csrc/osgp_table.c, csrc/osgp_lp.c).

Same names, signatures and errors.  Field conventions: docs/protocol.md §3.4 and §7
(LSB first; TM_FORMAT / NI_FORMAT widths of docs/protocol.md §7.1); block layout
[OPT p.35-39].
"""

from __future__ import annotations

import struct
from typing import Any, Optional, Sequence

from osgp._reference._buffers import as_bytes
from osgp._reference._values import (
    TimeDate,
    civil_from_days,
    days_from_civil,
    ni_value,
    ni_width,
    time_width,
)
from osgp.errors import ArgumentTypeError, ConfigurationError, MalformedError, TruncatedError

GEOMETRY_FIELDS = (
    "block_size",
    "nint",
    "nch",
    "time_off",
    "tm_format",
    "simple_off",
    "int0_off",
    "int_size",
    "ext_off",
    "ch0_off",
    "fmt_code",
    "ni_format",
    "interval_s",
    "descending",
)
NONE = 0xFFFFFFFF

OP_INT, OP_BITS, OP_BYTES, OP_NI, OP_TIME, OP_FLOAT, OP_ARRAY, OP_END, OP_IF, OP_SKIP = range(1, 11)

_MAX_DEPTH = 16
_I64_MAX = (1 << 63) - 1
_U64 = (1 << 64) - 1
_ZERO_SIZE_LIMIT = 65536
_ZERO_SIZE_BUDGET = 1 << 20  # zero-size array iterations a whole run allows (osgp_table.c)


def _bcd2(b: int) -> int:
    if (b >> 4) > 9 or (b & 15) > 9:
        return -1
    return (b >> 4) * 10 + (b & 15)


def time_decode(p: bytes, kind: int, tm_format: int) -> Optional[list[int]]:
    """Y M D h m s of a time field (None: malformed BCD)."""
    out = [0] * 6
    if tm_format == 0:
        return out
    if kind == 2:  # TIME = h m s
        for i in range(3):
            v = _bcd2(p[i]) if tm_format == 1 else p[i]
            if v < 0:
                return None
            out[3 + i] = v
        return out
    if tm_format in (1, 2):
        n = 6 if kind == 0 else 5
        for i in range(n):
            v = _bcd2(p[i]) if tm_format == 1 else p[i]
            if v < 0:
                return None
            out[i] = v
        out[0] += 2000  # YY since 2000 (docs/protocol.md §3.4)
        return out
    if tm_format == 3:  # UINT32 minutes since 1970 (+ UINT8 seconds for LTIME)
        secs = int.from_bytes(p[0:4], "little") * 60 + (p[4] if kind == 0 else 0)
    else:  # UINT32 seconds since 1970
        secs = int.from_bytes(p[0:4], "little")
    days, rem = divmod(secs, 86400)
    y, m, d = civil_from_days(days)
    return [y, m, d, rem // 3600, (rem // 60) % 60, rem % 60]


def _double_bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def ni_decode(p: bytes, fmt: int) -> tuple[int, int]:
    """(kind, value): kind 0 integer, 1 double bits, 2 text, -1 malformed."""
    w = ni_width(fmt)
    if fmt == 0:
        return 1, int.from_bytes(p[:8], "little", signed=True)
    if fmt == 1:
        return 1, _double_bits(struct.unpack("<f", p[:4])[0])
    if fmt in (2, 3, 13):
        return 2, 0
    if fmt in (5, 6, 12):  # FIXED_BCD, first byte most significant (INFERRED)
        v = 0
        for b in p[:w]:
            d = _bcd2(b)
            if d < 0:
                return -1, 0
            v = v * 100 + d
        return 0, v
    return 0, int.from_bytes(p[:w], "little", signed=True)


class _Fault(Exception):
    def __init__(self, kind: str, offset: int, pc: int, needed: int = 0, remaining: int = 0):
        self.kind, self.offset, self.pc, self.needed, self.remaining = (
            kind,
            offset,
            pc,
            needed,
            remaining,
        )


def _error(f: _Fault, layer: str, what: str, meter: Optional[int] = None) -> Exception:
    if f.kind == "truncated":
        return TruncatedError(
            layer=layer, offset=f.offset, needed=f.needed, remaining=f.remaining, pc=f.pc,
            meter=meter,
        )
    if f.kind == "malformed":
        return MalformedError(
            f"{what}: impossible value", layer=layer, offset=f.offset, pc=f.pc, meter=meter
        )
    if f.kind == "program":
        return ConfigurationError(f"corrupt table program at word {f.pc}", pc=f.pc, meter=meter)
    return ConfigurationError(f"{what}: inconsistent arguments", pc=f.pc, meter=meter)


def _sext(u: int, bits: int) -> int:
    return u - (1 << bits) if u >> (bits - 1) else u


def _run(prog: Sequence[int], data: bytes, regs: list[int]) -> tuple[list[int], int]:
    plen, n = len(prog), len(data)
    nregs = len(regs)
    pos = pc = 0
    slots: list[int] = []
    stack: list[list[int]] = []
    zero_left = _ZERO_SIZE_BUDGET

    def fail(kind: str, at: int, needed: int = 0) -> _Fault:
        return _Fault(kind, pos, at, needed, n - pos)

    def need(k: int) -> None:
        if pc + k > plen:
            raise fail("program", pc)

    def ok_reg(r: int) -> bool:
        return r == NONE or r < nregs

    limit = 1 << 40  # |v| above this is no count (osgp_table.c EXPR_LIMIT)
    result_limit = 1 << 62  # nor a product above this (EXPR_RESULT_LIMIT)

    def expr(at: int) -> int:
        reg, shift, mask, mul, add, div, reg2 = prog[at : at + 7]
        if not ok_reg(reg) or not ok_reg(reg2) or shift > 63:
            raise fail("program", pc)
        v = 0
        if reg != NONE:
            v = regs[reg] >> shift
            if mask:
                v &= mask
        if not -limit <= v <= limit:
            raise fail("malformed", pc)
        v = v * _sext(mul, 32) + _sext(add, 32)
        if not -result_limit <= v <= result_limit:
            raise fail("malformed", pc)
        if div > 1:
            q = abs(v) // div  # C division truncates toward zero
            v = q if v >= 0 else -q
        if reg2 != NONE:
            m = regs[reg2]
            if not (-limit <= m <= limit and -limit <= v <= limit):
                raise fail("malformed", pc)
            v *= m
            if not -result_limit <= v <= result_limit:
                raise fail("malformed", pc)
        return v

    while pc < plen:
        w0 = prog[pc]
        op = w0 & 0xFF
        if op == OP_INT:
            need(2)
            sgn, width, store = (w0 >> 8) & 1, (w0 >> 16) & 0xFF, prog[pc + 1]
            if not 1 <= width <= 8 or not ok_reg(store):
                raise fail("program", pc)
            if width > n - pos:
                raise fail("truncated", pc, width)
            v = int.from_bytes(data[pos : pos + width], "little", signed=bool(sgn))
            pos += width
            if store != NONE:  # registers saturate unsigned values above INT64_MAX
                regs[store] = min(v, _I64_MAX)
            slots.append(_sext(v, 64) if v > _I64_MAX else v)  # slots are int64 (C)
            pc += 2
        elif op == OP_BITS:
            need(2)
            width, nsub = (w0 >> 16) & 0xFF, prog[pc + 1]
            need(2 + 2 * nsub)
            if not 1 <= width <= 8:
                raise fail("program", pc)
            if width > n - pos:
                raise fail("truncated", pc, width)
            u = int.from_bytes(data[pos : pos + width], "little")
            pos += width
            for i in range(nsub):
                d, store = prog[pc + 2 + 2 * i], prog[pc + 3 + 2 * i]
                lo, hi = d & 0xFF, (d >> 8) & 0xFF
                if hi < lo or hi >= 8 * width or not ok_reg(store):
                    raise fail("program", pc)
                v = (u >> lo) & ((1 << (hi - lo + 1)) - 1)
                if store != NONE:
                    regs[store] = min(v, _I64_MAX)
                slots.append(_sext(v, 64) if v > _I64_MAX else v)
            pc += 2 + 2 * nsub
        elif op in (OP_BYTES, OP_SKIP):
            need(8)
            k = expr(pc + 1)
            if k < 0:
                raise fail("malformed", pc)
            if k > n - pos:
                raise fail("truncated", pc, k if k <= n else n + 1)
            if op == OP_BYTES:
                slots.append(pos)
                slots.append(k)
            pos += k
            pc += 8
        elif op == OP_NI:
            need(2)
            r = prog[pc + 1]
            if r == NONE or not ok_reg(r):
                raise fail("program", pc)
            fmt = regs[r]
            w = ni_width(fmt) if 0 <= fmt <= 13 else -1
            if w < 0:
                raise fail("malformed", pc)
            if w > n - pos:
                raise fail("truncated", pc, w)
            kind, v = ni_decode(data[pos : pos + w], fmt)
            if kind < 0:
                raise fail("malformed", pc)
            if kind == 2:
                v = pos
            pos += w
            slots.append(v)
            pc += 2
        elif op == OP_TIME:
            need(2)
            kind, r = (w0 >> 8) & 0xFF, prog[pc + 1]
            if r == NONE or not ok_reg(r) or kind > 2:
                raise fail("program", pc)
            fmt = regs[r]
            w = time_width(kind, fmt) if 0 <= fmt <= 4 else -1
            if w < 0:
                raise fail("malformed", pc)
            if w > n - pos:
                raise fail("truncated", pc, w)
            t = time_decode(data[pos : pos + w], kind, fmt)
            if t is None:
                raise fail("malformed", pc)
            pos += w
            slots.extend(t)
            pc += 2
        elif op == OP_FLOAT:
            need(1)
            width = (w0 >> 16) & 0xFF
            if width not in (4, 8):
                raise fail("program", pc)
            if width > n - pos:
                raise fail("truncated", pc, width)
            slots.append(ni_decode(data[pos : pos + width], 0 if width == 8 else 1)[1])
            pos += width
            pc += 1
        elif op == OP_ARRAY:
            need(10)
            body, minsz = prog[pc + 8], prog[pc + 9]
            if (
                pc + 10 + body >= plen
                or (prog[pc + 10 + body] & 0xFF) != OP_END
                or len(stack) >= _MAX_DEPTH
            ):
                raise fail("program", pc)
            cnt = expr(pc + 1)
            if cnt < 0:
                raise fail("malformed", pc)
            if minsz == 0 and (cnt > _ZERO_SIZE_LIMIT or cnt > zero_left):
                raise fail("malformed", pc)
            if minsz == 0:
                zero_left -= cnt
            if minsz and cnt > (n - pos) // minsz:
                raise fail("truncated", pc, min(cnt * minsz, (1 << 63) - 1))
            slots.append(cnt)
            if cnt == 0:
                pc += 10 + body + 1
            else:
                stack.append([pc + 10, cnt])
                pc += 10
        elif op == OP_END:
            if not stack:
                raise fail("program", pc)
            top = stack[-1]
            top[1] -= 1
            if top[1] > 0:
                pc = top[0]
            else:
                stack.pop()
                pc += 1
        elif op == OP_IF:
            need(10)
            mode = (w0 >> 8) & 0xFF
            if pc + 10 + prog[pc + 9] > plen:
                raise fail("program", pc)
            v = expr(pc + 1)
            cmp = _sext(prog[pc + 8], 32)
            take = v != 0 if mode == 0 else (v == cmp if mode == 1 else v != cmp)
            slots.append(int(take))
            pc += 10
            if not take:
                pc += prog[pc - 1]
        else:
            raise fail("program", pc)
    if stack:
        raise fail("program", pc)
    return slots, pos


def table_run(program: Any, params: Sequence[int], data: Any, nregs: int) -> tuple[list[int], int]:
    """Run a compiled table program (uint32 LE words) over ``data``; see the native docstring."""
    if nregs < len(params):
        raise ConfigurationError(f"{len(params)} parameters for {nregs} registers")
    p = as_bytes(program, "program")
    if len(p) % 4:
        raise ConfigurationError("program length must be a multiple of 4")
    d = as_bytes(data, "data")
    prog = memoryview(p).cast("I").tolist() if p else []
    regs = [int(x) for x in params] + [0] * (nregs - len(params))
    try:
        return _run(prog, d, regs)
    except _Fault as f:
        raise _error(f, "table", "table field") from None


# ---- load profile -------------------------------------------------------------------------


def _lp_width(code: int, ni: int) -> int:
    if code in (1, 8):
        return 1
    if code in (2, 16):
        return 2
    if code in (4, 32):
        return 4
    if code in (64, 128):
        return ni_width(ni)
    return -1


def _check(g: tuple[int, ...]) -> None:
    (
        block_size,
        nint,
        nch,
        time_off,
        tm_format,
        simple_off,
        int0_off,
        int_size,
        ext_off,
        ch0_off,
        fmt_code,
        ni_format,
        _interval_s,
        _desc,
    ) = g
    w = _lp_width(fmt_code, ni_format)
    tw = time_width(1, tm_format)
    bad = (
        w < 0
        or nint == 0
        or block_size == 0
        or (fmt_code >= 64 and ni_format in (2, 3, 13))
        or tw <= 0
        or time_off + tw > block_size
        or (simple_off != NONE and simple_off + (nint + 7) // 8 > block_size)
        or int0_off + nint * int_size > block_size
        or ch0_off + nch * w > int_size
        or (ext_off != NONE and ext_off + nch // 2 + 1 > int_size)
    )
    if bad:
        raise ConfigurationError(f"load-profile geometry does not fit in a block: {g}")


def _geometry(geometry: Any) -> tuple[int, ...]:
    t = tuple(int(x) for x in geometry)
    if len(t) != 14:
        raise ConfigurationError(f"geometry needs 14 fields {GEOMETRY_FIELDS}, got {len(t)}")
    u32 = [x & 0xFFFFFFFF for x in t]
    u32[12] = _sext(u32[12], 32)
    g = tuple(u32)
    _check(g)
    return g


def _u32(obj: Any, what: str) -> list[int]:
    b = as_bytes(obj, what)
    if len(b) % 4:
        raise ConfigurationError(f"{what} must be a buffer of uint32")
    return memoryview(b).cast("I").tolist() if b else []


_I32_FORMATS = ("i", "<i", "=i", "@i", "l", "<l", "=l", "@l")
_I32_CODES = (1, 2, 8, 16, 32)


def _value_width(values: Any, fmt_code: int) -> int:
    """8 (int64 values) or 4 when ``values`` is an int32 buffer, allowed only for
    INT_FMT_CDE 1, 2, 8, 16, 32 (every value fits in 32 bits)."""
    try:
        mv = memoryview(values)
    except TypeError:
        return 8  # reported by _outs
    if mv.itemsize != 4 or mv.format not in _I32_FORMATS:
        return 8
    if fmt_code not in _I32_CODES:
        raise ConfigurationError(
            f"int32 values need INT_FMT_CDE 1, 2, 8, 16 or 32, not {fmt_code}; use int64"
        )
    return 4


def _outs(
    rows: int,
    nch: int,
    values: Any,
    status: Any,
    flags: Any,
    times: Any,
    valid: Any,
    vw: int = 8,
) -> tuple[memoryview, ...]:
    return tuple(
        _writable(obj, what, need)
        for obj, need, what in (
            (values, rows * nch * vw, "values"),
            (status, rows * nch, "status"),
            (flags, rows, "flags"),
            (times, rows * 8, "times"),
            (valid, rows, "valid"),
        )
    )


def _decode_blocks(
    d: bytes,
    g: tuple[int, ...],
    blocks: list[int],
    lasts: Optional[list[int]],
    row_base: int,
    outs: tuple[memoryview, ...],
    vw: int = 8,
) -> None:
    (
        block_size,
        nint,
        nch,
        time_off,
        tm_format,
        simple_off,
        int0_off,
        int_size,
        ext_off,
        ch0_off,
        fmt_code,
        ni_format,
        step,
        desc,
    ) = g
    mv_v, mv_s, mv_f, mv_t, mv_ok = outs
    w = _lp_width(fmt_code, ni_format)
    signed = fmt_code in (8, 16, 32)
    for b, blk_idx in enumerate(blocks):
        off = blk_idx * block_size
        last = lasts[b] if lasts is not None else nint - 1
        if off > len(d) or block_size > len(d) - off:
            raise _Fault("truncated", off, b, block_size, 0 if off > len(d) else len(d) - off)
        if last >= nint:
            raise _Fault("malformed", off, b)
        blk = d[off : off + block_size]
        t = time_decode(blk[time_off:], 1, tm_format)
        if t is None or (
            tm_format <= 2
            and not (1 <= t[1] <= 12 and 1 <= t[2] <= 31 and t[3] <= 24 and t[4] <= 59)
        ):
            raise _Fault("malformed", off + time_off, b)
        end = days_from_civil(t[0], t[1], t[2]) * 86400 + t[3] * 3600 + t[4] * 60 + t[5]
        for j in range(nint):
            row = row_base + b * nint + j
            s = last - j if (desc and j <= last) else j
            ip = int0_off + s * int_size
            ok = j <= last
            if ok and simple_off != NONE:
                ok = bool((blk[simple_off + (s >> 3)] >> (s & 7)) & 1)
            mv_ok[row] = int(ok)
            struct.pack_into("<q", mv_t, 8 * row, end - (last - j) * step)
            st = [0] * nch
            fl = 0
            if ext_off != NONE:
                e = blk[ip + ext_off : ip + ext_off + nch // 2 + 1]
                fl = e[0] >> 4
                for c in range(nch):
                    if c == 0:
                        st[c] = e[0] & 15
                    else:
                        byte = e[(c + 1) >> 1]
                        st[c] = byte >> 4 if c & 1 else byte & 15
            mv_f[row] = fl
            mv_s[row * nch : row * nch + nch] = bytes(st)
            dp = ip + ch0_off
            for c in range(nch):
                raw = blk[dp + w * c : dp + w * c + w]
                if fmt_code >= 64:
                    kind, v = ni_decode(raw, ni_format)
                    if kind not in (0, 1) and ok:
                        raise _Fault("malformed", off + dp, b)
                else:
                    v = int.from_bytes(raw, "little", signed=signed)
                if vw == 4:
                    struct.pack_into("<i", mv_v, 4 * (row * nch + c), v)
                else:
                    struct.pack_into("<q", mv_v, 8 * (row * nch + c), v)


def lp_decode(
    geometry: Any,
    data: Any,
    blocks: Any,
    lasts: Any,
    values: Any,
    status: Any,
    flags: Any,
    times: Any,
    valid: Any,
    counts: Any = None,
) -> int:
    """Decode load-profile blocks into dense rows (or, with ``counts``, the
    valid rows only); see the native docstring.  Returns the number of rows."""
    g = _geometry(geometry)
    bl = _u32(blocks, "blocks")
    ll = None
    if lasts is not None:
        ll = _u32(lasts, "lasts")
        if len(ll) != len(bl):
            raise ConfigurationError("lasts must have one uint32 per block")
    d = as_bytes(data, "data")
    nint, nch = g[1], g[2]
    rows = len(bl) * nint
    vw = _value_width(values, g[10])
    if vw == 4 and counts is not None:
        raise ConfigurationError("counts needs int64 values")
    if counts is None:
        outs = _outs(rows, nch, values, status, flags, times, valid, vw)
        try:
            _decode_blocks(d, g, bl, ll, 0, outs, vw)
        except _Fault as f:
            raise _error(f, "load profile", f"block {f.pc}") from None
        return rows
    outs = _outs(rows, nch, values, status, flags, times, bytearray(rows), vw)
    _writable(valid, "valid", nint if bl else 0)  # scratch of nint bytes (native)
    cv = _writable(counts, "counts", 4 * len(bl))
    try:
        return _decode_rows(d, g, bl, ll, 0, outs, cv, 0)
    except _Fault as f:
        raise _error(f, "load profile", f"block {f.pc}") from None


def _decode_rows(
    d: bytes,
    g: tuple[int, ...],
    bl: list[int],
    ll: Optional[list[int]],
    k: int,
    outs: tuple[memoryview, ...],
    cv: memoryview,
    c0: int,
) -> int:
    """Valid rows of blocks ``bl`` from row ``k`` on (osgp_lp_decode_rows), the
    count of block b at ``counts[c0 + b]``; returns the next free row."""
    nint, nch = g[1], g[2]
    mv_v, mv_s, mv_f, mv_t, mv_ok = outs
    for b, blk in enumerate(bl):  # decode each block at row k, then squeeze it
        try:
            _decode_blocks(d, g, [blk], None if ll is None else [ll[b]], k, outs)
        except _Fault as f:
            f.pc = b
            raise
        k0 = k
        for j in range(k0, k0 + nint):  # keep valid rows, chronological
            if not mv_ok[j]:
                continue
            if k != j:
                mv_v[8 * nch * k : 8 * nch * (k + 1)] = mv_v[8 * nch * j : 8 * nch * (j + 1)]
                mv_s[nch * k : nch * (k + 1)] = mv_s[nch * j : nch * (j + 1)]
                mv_f[k] = mv_f[j]
                mv_t[8 * k : 8 * k + 8] = mv_t[8 * j : 8 * j + 8]
            k += 1
        struct.pack_into("<I", cv, 4 * (c0 + b), k - k0)
    return k


def _writable(obj: Any, what: str, need: int) -> memoryview:
    try:
        mv = memoryview(obj)
    except TypeError:
        raise ArgumentTypeError(f"{what} must be a writable contiguous buffer") from None
    if mv.readonly or not mv.c_contiguous:
        raise ArgumentTypeError(f"{what} must be a writable contiguous buffer")
    mv = mv.cast("B") if mv.nbytes else memoryview(bytearray())
    if mv.nbytes < need:
        raise ConfigurationError(f"{what} needs at least {need} bytes, got {mv.nbytes}")
    return mv


def lp_decode_batch(
    geometry: Any,
    datas: Sequence[Any],
    blocks_list: Sequence[Any],
    lasts_list: Any,
    values: Any,
    status: Any,
    flags: Any,
    times: Any,
    valid: Any,
) -> list[int]:
    """Many meters with one geometry; see the native docstring."""
    g = _geometry(geometry)
    n = len(datas)
    if len(blocks_list) != n or (lasts_list is not None and len(lasts_list) != n):
        raise ConfigurationError("one blocks (and lasts) buffer per meter")
    ds, bls, lls, offs = [], [], [], []
    rows = 0
    for i in range(n):
        ds.append(as_bytes(datas[i], "data"))
        bl = _u32(blocks_list[i], "blocks")
        bls.append(bl)
        offs.append(rows)
        rows += len(bl) * g[1]
        if lasts_list is not None:
            ll = _u32(lasts_list[i], "lasts")
            if len(ll) != len(bl):
                raise ConfigurationError("lasts must have one uint32 per block")
            lls.append(ll)
    offs.append(rows)
    if _value_width(values, g[10]) != 8:
        raise ConfigurationError("lp_decode_batch needs int64 values")
    outs = _outs(rows, g[2], values, status, flags, times, valid)
    for i in range(n):
        try:
            _decode_blocks(
                ds[i], g, bls[i], lls[i] if lasts_list is not None else None, offs[i], outs
            )
        except _Fault as f:
            raise _error(f, "load profile", f"meter {i} block {f.pc}", i) from None
    return offs


def lp_decode_images(
    geometry: Any,
    datas: Sequence[Any],
    blocks: Any,
    starts: Any,
    lasts: Any,
    values: Any,
    status: Any,
    flags: Any,
    times: Any,
    valid: Any,
    counts: Any = None,
) -> int:
    """N images of one geometry, meter i's blocks ``starts[i]:starts[i+1]``;
    see the native docstring.  Returns the rows written."""
    g = _geometry(geometry)
    nint, nch = g[1], g[2]
    n = len(datas)
    bl = _u32(blocks, "blocks")
    sb = as_bytes(starts, "starts")
    if len(sb) != 8 * (n + 1):
        raise ConfigurationError("starts must hold n + 1 int64 offsets")
    sp = memoryview(sb).cast("q").tolist()
    if sp[0] != 0 or sp[n] != len(bl):
        raise ConfigurationError("starts must run from 0 to the number of blocks")
    if any(sp[i + 1] < sp[i] for i in range(n)):
        raise ConfigurationError("starts must not decrease")
    ll = None
    if lasts is not None:
        ll = _u32(lasts, "lasts")
        if len(ll) != len(bl):
            raise ConfigurationError("lasts must have one uint32 per block")
    vw = _value_width(values, g[10])
    if vw == 4 and counts is not None:
        raise ConfigurationError("counts needs int64 values")
    ds = [as_bytes(d, "data") for d in datas]
    rows = len(bl) * nint
    if counts is None:
        outs = _outs(rows, nch, values, status, flags, times, valid, vw)
    else:
        outs = _outs(rows, nch, values, status, flags, times, bytearray(rows), vw)
        _writable(valid, "valid", nint if bl else 0)
        cv = _writable(counts, "counts", 4 * len(bl))
    k = 0
    for i in range(n):
        s, e = sp[i], sp[i + 1]
        part = None if ll is None else ll[s:e]
        try:
            if counts is None:
                _decode_blocks(ds[i], g, bl[s:e], part, s * nint, outs, vw)
            else:
                k = _decode_rows(ds[i], g, bl[s:e], part, k, outs, cv, s)
        except _Fault as f:
            raise _error(f, "load profile", f"meter {i} block {f.pc}", i) from None
    return rows if counts is None else k


# ---- slots -> nested mapping (osgp.tables.schema shape codes) -------------------------------

S_INT, S_BITS, S_BYTES, S_NI, S_TIME, S_FLOAT, S_ARRAY, S_RECORD, S_IF, S_FILL = range(10)


def _build_group(
    children: tuple, s: list[int], i: int, data: bytes, params: list[int], d: dict
) -> int:
    for ch in children:
        if ch[0] == S_IF:
            flag = s[i]
            i += 1
            if flag:
                i = _build_group(ch[2], s, i, data, params, d)
            continue
        v, i = _build_node(ch, s, i, data, params)
        if ch[1] is not None:
            d[ch[1]] = v
    return i


def _build_node(node: tuple, s: list[int], i: int, data: bytes, params: list[int]) -> tuple:
    from types import MappingProxyType

    code = node[0]
    if code == S_INT:  # node[2]: UINT64, whose int64 slot holds the bits
        return (s[i] & _U64 if node[2] else s[i]), i + 1
    if code == S_BITS:
        d = {}
        for n, is_bool in node[2]:
            if n is not None:
                d[n] = bool(s[i]) if is_bool else s[i] & _U64
            i += 1
        return MappingProxyType(d), i
    if code == S_BYTES:
        raw = data[s[i] : s[i] + s[i + 1]]
        kind = node[2]
        if kind == 1:
            return raw.decode("latin-1"), i + 2  # ISO 8859-1 (BT00 CHAR_FORMAT 2)
        if kind == 2:
            return raw.hex().upper(), i + 2
        if kind == 3:
            return tuple(bool((b >> k) & 1) for b in raw for k in range(8)), i + 2
        return raw, i + 2
    if code == S_NI:
        return ni_value(params[node[2]], s[i], data), i + 1
    if code == S_TIME:
        return TimeDate(*s[i : i + 6]), i + 6
    if code == S_FLOAT:
        return struct.unpack("<d", struct.pack("<q", s[i]))[0], i + 1
    if code == S_ARRAY:
        n = s[i]
        i += 1
        items = []
        elem, scalar = node[2], node[3]
        for _ in range(n):
            if scalar:
                v, i = _build_node(elem, s, i, data, params)
            else:
                dd: dict = {}
                i = _build_group(elem, s, i, data, params, dd)
                v = MappingProxyType(dd)
            items.append(v)
        return tuple(items), i
    if code == S_RECORD:
        dd = {}
        i = _build_group(node[2], s, i, data, params, dd)
        return MappingProxyType(dd), i
    return None, i  # S_FILL


def table_decode(program: Any, shape: tuple, params: Sequence[int], data: Any, nregs: int) -> Any:
    """Run a table program and build the read-only nested mapping described by
    ``shape`` (osgp.tables.schema shape codes).  Errors as table_run."""
    from types import MappingProxyType

    d = as_bytes(data, "data")
    slots, _used = table_run(program, params, d, nregs)
    out: dict = {}
    _build_group(shape, slots, 0, d, [int(p) for p in params], out)
    return MappingProxyType(out)


# ---- dispatch knobs, signature parity with the native module ----

_stream_min = 24 << 20


def _lp_stream_min(nbytes: Optional[int] = None) -> int:
    """Internal knob (native: streaming-store threshold of lp_decode).  The twin
    has no streaming path: it only records the value."""
    global _stream_min
    old = _stream_min
    if nbytes is not None:
        _stream_min = -1 if nbytes < 0 else int(nbytes)
    return old


def cpu_features() -> frozenset[str]:
    return frozenset()


def set_cpu_features(names: Optional[Sequence[str]] = None) -> None:
    """No-op in the twin (kept for signature parity)."""


# ---- columnar decode (osgp.tables.columns), vectorised with numpy over the images -------------

_COPY, _INT, _BITS, _NI4, _BCD, _TIME = range(1, 7)
_COL_WORDS = 8
_NAT = -(1 << 63)
_YEAR_10000 = 253402300800  # 10000-01-01T00:00:00Z: past datetime's range
_DIM = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _cell_ok(e: Sequence[int], size: int, ncols: int) -> bool:
    """osgp_table.c col_cell_ok."""
    kind, _off, w, arg, col, out, stride, osz = e
    if col >= ncols or e[1] + w > size or out + osz > stride:
        return False
    lo, hi = arg & 0xFF, (arg >> 8) & 0xFF
    if kind == _COPY:
        return osz == w
    if kind == _INT:
        return 1 <= w <= 8 and 1 <= osz <= 8 and arg <= 1
    if kind == _BITS:
        return 1 <= w <= 8 and 1 <= osz <= 8 and lo <= hi < 8 * w
    if kind == _NI4:
        return w == 4 and osz == 8
    if kind == _BCD:
        return arg in (5, 6, 12) and w == ni_width(arg) and osz == 8
    if kind == _TIME:
        return lo <= 2 and hi <= 4 and w == time_width(lo, hi) and osz == 8
    return False


def _np_days_from_civil(y: Any, m: Any, d: Any) -> Any:
    import numpy as np

    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _np_le(b: Any) -> Any:
    """Unsigned LSB-first value of each row of a (n, w) uint8 array."""
    import numpy as np

    u = np.zeros(b.shape[0], np.uint64)
    for k in range(b.shape[1]):
        u |= b[:, k].astype(np.uint64) << np.uint64(8 * k)
    return u


def _np_bcd(b: Any) -> tuple[Any, Any]:
    """(values of two-digit BCD bytes, bad mask per byte)."""
    hi, lo = b >> 4, b & 15
    return (hi * 10 + lo).astype("int64"), (hi > 9) | (lo > 9)


def _np_time(b: Any, kind: int, fmt: int) -> tuple[Any, Any]:
    """(int64 seconds or NaT, malformed mask) of time fields (osgp_table.c col_time)."""
    import numpy as np

    n = b.shape[0]
    bad = np.zeros(n, bool)
    if fmt == 0:
        return np.full(n, 0 if kind == 2 else _NAT, np.int64), bad
    if kind == 2 or fmt in (1, 2):
        if fmt == 1:
            v, badb = _np_bcd(b)
            bad = badb.any(axis=1)
        else:
            v = b.astype(np.int64)
        if kind == 2:
            return v[:, 0] * 3600 + v[:, 1] * 60 + v[:, 2], bad
        y, m, d, h, mi = 2000 + v[:, 0], v[:, 1], v[:, 2], v[:, 3], v[:, 4]
        s = v[:, 5] if kind == 0 else np.zeros(n, np.int64)
        ok = (m >= 1) & (m <= 12) & (d >= 1) & (h <= 23) & (mi <= 59) & (s <= 59)
        mc = np.clip(m, 1, 12)
        dim = np.asarray(_DIM, np.int64)[mc - 1]
        leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
        dim = dim + ((mc == 2) & leap)
        ok &= d <= dim
        secs = _np_days_from_civil(y, mc, d) * 86400 + h * 3600 + mi * 60 + s
        return np.where(ok, secs, _NAT), bad
    u = _np_le(b[:, :4]).astype(np.int64)
    secs = u * 60 + (b[:, 4].astype(np.int64) if kind == 0 else 0) if fmt == 3 else u
    return np.where(secs < _YEAR_10000, secs, _NAT), bad


def table_columns(cells: Any, data: Any, offsets: Any, size: int, cols: Sequence[Any]) -> None:
    """Decode ``len(offsets)`` images of a fixed-layout table into columns; see
    the native docstring (the twin works column by column over all images and
    reports the error the image-by-image native loop meets first)."""
    import numpy as np

    if size < 0:
        raise ConfigurationError("size must be >= 0")
    cols = tuple(cols)
    cb = as_bytes(cells, "cells")
    if len(cb) % (4 * _COL_WORDS):
        raise ConfigurationError("cells must be uint32 words, 8 per cell")
    words = memoryview(cb).cast("I").tolist() if cb else []
    ob = as_bytes(offsets, "offsets")
    if len(ob) % 8:
        raise ConfigurationError("offsets must be a buffer of int64")
    offs = np.frombuffer(ob, np.int64)
    n = len(offs)
    outs = [np.frombuffer(_writable(c, f"column {k}", 0), np.uint8) for k, c in enumerate(cols)]
    cl = [words[i : i + _COL_WORDS] for i in range(0, len(words), _COL_WORDS)]
    for e in cl:
        if e[4] < len(cols) and n and len(outs[e[4]]) < n * e[6]:
            raise ConfigurationError(f"column {e[4]} needs {n * e[6]} bytes, got {len(outs[e[4]])}")
    d = np.frombuffer(as_bytes(data, "data"), np.uint8)
    for c, e in enumerate(cl):
        if not _cell_ok(e, size, len(cols)):
            raise ConfigurationError(f"corrupt column cell {c}", pc=c, image=0)
    short = (offs < 0) | (offs > len(d)) | (size > len(d) - np.clip(offs, 0, None))
    t = int(np.argmax(short)) if short.any() else n
    offs = offs[:t]
    first_bad = (t, 0)  # (image, cell) of the first malformed value, image-major
    for c, (kind, off, w, arg, col, out, stride, osz) in enumerate(cl):
        b = d[offs[:, None] + (off + np.arange(w))] if w else np.zeros((t, 0), np.uint8)
        bad = None
        if kind == _COPY:
            val = b
        elif kind in (_INT, _BITS):
            u = _np_le(b)
            if kind == _INT and arg and w < 8:  # sign extension from bit 8w-1
                neg = (u >> np.uint64(8 * w - 1)) & np.uint64(1) == 1
                u = np.where(neg, u | (np.uint64(0xFFFFFFFFFFFFFFFF) << np.uint64(8 * w)), u)
            elif kind == _BITS:
                lo, hi = arg & 0xFF, (arg >> 8) & 0xFF
                u = u >> np.uint64(lo)
                if hi - lo < 63:
                    u &= np.uint64((1 << (hi - lo + 1)) - 1)
            val = u.astype("<u8").view(np.uint8).reshape(t, 8)[:, :osz]
        elif kind == _NI4:
            x = b.copy().view("<i4").reshape(t).astype(np.float64) / 10000.0
            val = x.view(np.uint8).reshape(t, 8)
        elif kind == _BCD:
            v, badb = _np_bcd(b)
            bad = badb.any(axis=1)
            r = np.zeros(t, np.int64)
            for k in range(w):  # first byte most significant (INFERRED, osgp_ni_decode)
                r = r * 100 + v[:, k]
            val = r.view(np.uint8).reshape(t, 8)
        else:
            secs, bad = _np_time(b, arg & 0xFF, (arg >> 8) & 0xFF)
            val = secs.astype(np.int64).view(np.uint8).reshape(t, 8)
        if bad is not None and bad.any():
            i = int(np.argmax(bad))
            first_bad = min(first_bad, (i, c))
        if t:
            outs[col][: t * stride].reshape(t, stride)[:, out : out + osz] = val
    i, c = first_bad
    if i < t:
        raise MalformedError(
            f"image {i}: impossible value",
            layer="table",
            offset=int(offs[i]) + cl[c][1],
            pc=c,
            image=i,
        )
    if t < n:
        o = int(np.frombuffer(ob, np.int64)[t])
        left = 0 if o < 0 or o > len(d) else len(d) - o
        raise TruncatedError(
            f"image {t}: truncated",
            layer="table",
            offset=max(o, 0),
            needed=size,
            remaining=left,
            pc=0,
            image=t,
        )
