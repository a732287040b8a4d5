"""Pure-Python twin of osgp._native.tables: the table-program interpreter and
the load-profile block decoder (csrc/osgp_table.c, csrc/osgp_lp.c).

Same names, signatures and errors.  Field conventions: reference 3.4 and 7
(LSB first; TM_FORMAT / NI_FORMAT widths of reference 7.1); block layout
[OPT p.35-39].
"""

from __future__ import annotations

import struct
from typing import Any, Optional, Sequence

from osgp._reference._buffers import as_bytes
from osgp.errors import ConfigurationError, MalformedError, TruncatedError

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

_TIME_W = ((0, 6, 6, 5, 4), (0, 5, 5, 4, 4), (0, 3, 3, 3, 3))  # reference 7.1
_NI_W = (8, 4, 12, 6, 4, 6, 4, 3, 4, 5, 6, 8, 8, 21)  # reference 7.1
_MAX_DEPTH = 16
_I64_MAX = (1 << 63) - 1
_U64 = (1 << 64) - 1
_ZERO_SIZE_LIMIT = 65536


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def time_width(kind: int, tm_format: int) -> int:
    if kind > 2 or not 0 <= tm_format <= 4:
        return -1
    return _TIME_W[kind][tm_format]


def ni_width(fmt: int) -> int:
    return _NI_W[fmt] if 0 <= fmt < 14 else -1


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
        out[0] += 2000  # YY since 2000 (reference 3.4)
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
    w = _NI_W[fmt]
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


def _error(f: _Fault, layer: str, what: str) -> Exception:
    e: Any
    if f.kind == "truncated":
        e = TruncatedError(layer=layer, offset=f.offset, needed=f.needed, remaining=f.remaining)
    elif f.kind == "malformed":
        e = MalformedError(f"{what}: impossible value", layer=layer, offset=f.offset)
    elif f.kind == "program":
        e = ConfigurationError(f"corrupt table program at word {f.pc}")
    else:
        e = ConfigurationError(f"{what}: inconsistent arguments")
    e.pc = f.pc
    return e


def _sext(u: int, bits: int) -> int:
    return u - (1 << bits) if u >> (bits - 1) else u


def _run(prog: Sequence[int], data: bytes, regs: list[int]) -> tuple[list[int], int]:
    plen, n = len(prog), len(data)
    nregs = len(regs)
    pos = pc = 0
    slots: list[int] = []
    stack: list[list[int]] = []

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
            if minsz == 0 and cnt > _ZERO_SIZE_LIMIT:
                raise fail("malformed", pc)
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
    res = []
    for obj, need, what in (
        (values, rows * nch * vw, "values"),
        (status, rows * nch, "status"),
        (flags, rows, "flags"),
        (times, rows * 8, "times"),
        (valid, rows, "valid"),
    ):
        try:
            mv = memoryview(obj)
        except TypeError:
            raise TypeError(f"{what} must be a writable contiguous buffer") from None
        if mv.readonly or not mv.c_contiguous:
            raise TypeError(f"{what} must be a writable contiguous buffer")
        mv = mv.cast("B") if mv.nbytes else memoryview(bytearray())
        if mv.nbytes < need:
            raise ConfigurationError(f"{what} needs at least {need} bytes, got {mv.nbytes}")
        res.append(mv)
    return tuple(res)


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
    row_block: Any = None,
) -> int:
    """Decode load-profile blocks into dense rows (or, with ``row_block``, the
    valid rows only); see the native docstring.  Returns the number of rows."""
    g = _geometry(geometry)
    bl = _u32(blocks, "blocks")
    ll = None
    if lasts is not None:
        ll = _u32(lasts, "lasts")
        if len(ll) != len(bl):
            raise ConfigurationError("lasts must have one uint32 per block")
    d = as_bytes(data, "data")
    rows = len(bl) * g[1]
    vw = _value_width(values, g[10])
    if vw == 4 and row_block is not None:
        raise ConfigurationError("row_block needs int64 values")
    outs = _outs(rows, g[2], values, status, flags, times, valid, vw)
    rb = None
    if row_block is not None:
        try:
            rb = memoryview(row_block)
        except TypeError:
            raise TypeError("row_block must be a writable contiguous buffer") from None
        if rb.readonly or not rb.c_contiguous:
            raise TypeError("row_block must be a writable contiguous buffer")
        rb = rb.cast("B") if rb.nbytes else memoryview(bytearray())
        if rb.nbytes < 4 * rows:
            raise ConfigurationError(f"row_block needs at least {4 * rows} bytes, got {rb.nbytes}")
    try:
        _decode_blocks(d, g, bl, ll, 0, outs, vw)
    except _Fault as f:
        raise _error(f, "load profile", f"block {f.pc}") from None
    if rb is None:
        return rows
    mv_v, mv_s, mv_f, mv_t, mv_ok = outs
    nch, nint, k = g[2], g[1], 0
    for j in range(rows):  # keep valid rows, chronological (osgp_lp_decode_rows)
        if not mv_ok[j]:
            continue
        if k != j:
            mv_v[8 * nch * k : 8 * nch * (k + 1)] = mv_v[8 * nch * j : 8 * nch * (j + 1)]
            mv_s[nch * k : nch * (k + 1)] = mv_s[nch * j : nch * (j + 1)]
            mv_f[k] = mv_f[j]
            mv_t[8 * k : 8 * k + 8] = mv_t[8 * j : 8 * j + 8]
            mv_ok[k] = 1
        struct.pack_into("<I", rb, 4 * k, j // nint)
        k += 1
    return k


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
            e = _error(f, "load profile", f"meter {i} block {f.pc}")
            e.meter = i  # type: ignore[attr-defined]
            raise e from None
    return offs


# ---- slots -> nested mapping (osgp.tables.schema shape codes) -------------------------------

S_INT, S_BITS, S_BYTES, S_NI, S_TIME, S_FLOAT, S_ARRAY, S_RECORD, S_IF, S_FILL = range(10)
_HOOKS: list = []


def _hooks() -> tuple:
    if not _HOOKS:  # late import: osgp.tables imports this module
        from osgp.tables.schema import TimeDate, ni_value

        _HOOKS.extend((TimeDate, ni_value))
    return tuple(_HOOKS)


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
        return _hooks()[1](params[node[2]], s[i], data), i + 1
    if code == S_TIME:
        return _hooks()[0](*s[i : i + 6]), i + 6
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


# ---- lpsimd: dispatch knobs, signature parity with the native module (issue #5) ----

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
