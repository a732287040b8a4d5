/*
 * osgp_table.c - bounds-checked interpreter for compiled C12.19/OSGP table
 * layouts (osgp.tables).  The program is an array of 32-bit words produced by
 * osgp/tables/schema.py (see the opcode list in osgp.h); running it over a
 * table image writes one int64 "slot" per decoded scalar, which the Python
 * layer turns into a nested mapping.
 *
 * Data conventions (docs/protocol.md §3.4, [OPT p.5-7], [MEP p.38-41]): multi-byte
 * fields are LSB first; BOOL(x)/UINT(x..y) are bit ranges of the field at the
 * given offset with bit 0 = LSB; TM_FORMAT / NI_FORMAT from BT00 (docs/protocol.md §7.1) select the
 * width of times and non-integer values at run time.
 *
 * Every read is checked against the remaining length; a failure returns
 * OSGP_ERR_TRUNCATED or OSGP_ERR_MALFORMED with the offset and the program
 * counter of the failing instruction in *fault.
 */
#include "osgp.h"

#include <string.h>

#define NONE 0xFFFFFFFFu

typedef struct {
    const uint32_t *prog;
    size_t plen;
    const uint8_t *in;
    size_t len;
    size_t pos;
    int64_t *regs;
    size_t nregs;
    int64_t *slots;
    size_t cap;
    size_t n;
    int64_t zero_left; /* iterations of zero-size arrays still allowed in this run */
    osgp_table_fault *fault;
} run_t;

static osgp_status fail(run_t *r, osgp_status st, size_t pc, size_t needed)
{
    r->fault->offset = r->pos;
    r->fault->pc = (uint32_t)pc;
    r->fault->needed = needed;
    r->fault->remaining = r->len - r->pos;
    return st;
}

static uint64_t rd_le(const uint8_t *p, unsigned w)
{
    uint64_t v = 0;
    unsigned i;
    for (i = 0; i < w; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int64_t sext(uint64_t v, unsigned bits)
{
    if (bits >= 64)
        return (int64_t)v;
    if (v & ((uint64_t)1 << (bits - 1)))
        v |= ~(uint64_t)0 << bits;
    return (int64_t)v;
}

/* ---- civil calendar <-> days since 1970-01-01 (proleptic Gregorian) ---- */

int64_t osgp_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void osgp_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era, doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Width in bytes of LTIME_DATE (kind 0), STIME_DATE (1), TIME (2) for a
 * TM_FORMAT (docs/protocol.md §7.1: LTIME 0/6/6/5/4, STIME 0/5/5/4/4).  TIME is
 * 3 bytes (h, m, s; BCD for TM_FORMAT 1) [OPT p.6]; for TM_FORMAT 3/4 the
 * 3-byte form is INFERRED.  -1 for an unknown format. */
int osgp_time_width(unsigned kind, unsigned tm_format)
{
    static const signed char w[3][5] = {{0, 6, 6, 5, 4}, {0, 5, 5, 4, 4}, {0, 3, 3, 3, 3}};
    if (kind > 2 || tm_format > 4)
        return -1;
    return w[kind][tm_format];
}

static int bcd2(uint8_t b, unsigned *out)
{
    if ((b >> 4) > 9 || (b & 15) > 9)
        return -1;
    *out = (b >> 4) * 10u + (b & 15u);
    return 0;
}

/* Decode a time field into Y M D h m s (out[6]).  0 ok, -1 malformed. */
int osgp_time_decode(const uint8_t *p, unsigned kind, unsigned tm_format, int64_t out[6])
{
    unsigned v[6] = {0, 0, 0, 0, 0, 0}, i, n;
    memset(out, 0, 6 * sizeof(int64_t));
    if (tm_format == 0)
        return 0;
    if (kind == 2) {                    /* TIME: h m s */
        for (i = 0; i < 3; i++) {
            if (tm_format == 1) {
                if (bcd2(p[i], &v[3 + i]))
                    return -1;
            } else {
                v[3 + i] = p[i];
            }
        }
        for (i = 3; i < 6; i++)
            out[i] = v[i];
        return 0;
    }
    if (tm_format == 1 || tm_format == 2) {   /* discrete YY MM DD hh mm [ss] */
        n = kind == 0 ? 6 : 5;
        for (i = 0; i < n; i++) {
            if (tm_format == 1) {
                if (bcd2(p[i], &v[i]))
                    return -1;
            } else {
                v[i] = p[i];
            }
        }
        out[0] = 2000 + (int64_t)v[0];  /* YY since 2000 (docs/protocol.md §3.4) */
        for (i = 1; i < 6; i++)
            out[i] = v[i];
        return 0;
    }
    {
        int64_t secs, days, rem, y;
        unsigned mo, d;
        if (tm_format == 3) {           /* UINT32 minutes since 1970 (+ UINT8 s) */
            secs = (int64_t)rd_le(p, 4) * 60;
            if (kind == 0)
                secs += p[4];
        } else {                        /* UINT32 seconds since 1970 */
            secs = (int64_t)rd_le(p, 4);
        }
        days = secs / 86400;
        rem = secs % 86400;
        osgp_civil_from_days(days, &y, &mo, &d);
        out[0] = y;
        out[1] = mo;
        out[2] = d;
        out[3] = rem / 3600;
        out[4] = (rem / 60) % 60;
        out[5] = rem % 60;
        return 0;
    }
}

/* NI_FORMAT widths (docs/protocol.md §7.1); -1 unknown. */
int osgp_ni_width(unsigned f)
{
    static const signed char w[14] = {8, 4, 12, 6, 4, 6, 4, 3, 4, 5, 6, 8, 8, 21};
    return f < 14 ? w[f] : -1;
}

/* Integer-valued NI formats -> *out.  Returns 0 int, 1 double bits, 2 text
 * (caller keeps the offset), -1 malformed BCD. */
int osgp_ni_decode(const uint8_t *p, unsigned f, int64_t *out)
{
    unsigned i, w = (unsigned)osgp_ni_width(f);
    switch (f) {
    case 0: {
        uint64_t b = rd_le(p, 8);
        memcpy(out, &b, 8);
        return 1;
    }
    case 1: {
        float x;
        double dx;
        uint32_t b = (uint32_t)rd_le(p, 4);
        memcpy(&x, &b, 4);
        dx = (double)x;
        memcpy(out, &dx, 8);
        return 1;
    }
    case 2: case 3: case 13:
        return 2;
    case 5: case 6: case 12: {          /* FIXED_BCD: digits, first byte most significant (INFERRED) */
        int64_t v = 0;
        unsigned d;
        for (i = 0; i < w; i++) {
            if (bcd2(p[i], &d))
                return -1;
            v = v * 100 + d;
        }
        *out = v;
        return 0;
    }
    default:                            /* 4, 7..11: two's complement LSB first */
        *out = sext(rd_le(p, w), 8 * w);
        return 0;
    }
}

static osgp_status emit(run_t *r, int64_t v, size_t pc)
{
    if (r->n >= r->cap)
        return fail(r, OSGP_ERR_CAPACITY, pc, 0);
    r->slots[r->n++] = v;
    return OSGP_OK;
}

static int reg_ok(const run_t *r, uint32_t reg)
{
    return reg == NONE || reg < r->nregs;
}

/* EXPR = reg, shift, mask, mul, add, div, reg2 (osgp.h).  Returns 0, -1 for a
 * corrupt program, -2 when a value is too large to be a count: an operand
 * |v| > 2^40, or a product (v * mul + add, or the final v * regs[reg2])
 * beyond 2^62.  The products are bounded before they are formed (two 2^40
 * operands or 2^40 x 2^31 would overflow int64). */
#define EXPR_LIMIT ((int64_t)1 << 40)
#define EXPR_RESULT_LIMIT ((int64_t)1 << 62)

static int64_t abs64(int64_t v) { return v < 0 ? -v : v; } /* |v| <= 2^62 here */

static int expr_eval(const run_t *r, const uint32_t *e, int64_t *out)
{
    int64_t v = 0;
    if (!reg_ok(r, e[0]) || !reg_ok(r, e[6]) || e[1] > 63)
        return -1;
    if (e[0] != NONE) {
        v = r->regs[e[0]] >> e[1];
        if (e[2])
            v &= (int64_t)e[2];
    }
    if (v > EXPR_LIMIT || v < -EXPR_LIMIT)
        return -2;
    {
        int64_t mul = (int32_t)e[3];
        /* |v * mul| > 2^62 + 2^31 puts v * mul + add beyond 2^62 for any int32 add */
        if (mul && abs64(v) > (EXPR_RESULT_LIMIT + ((int64_t)1 << 31)) / abs64(mul))
            return -2;
        v = v * mul + (int64_t)(int32_t)e[4];
        if (v > EXPR_RESULT_LIMIT || v < -EXPR_RESULT_LIMIT)
            return -2;
    }
    if (e[5] > 1)
        v /= (int64_t)e[5];
    if (e[6] != NONE) {
        int64_t m = r->regs[e[6]];
        if (m > EXPR_LIMIT || m < -EXPR_LIMIT || v > EXPR_LIMIT || v < -EXPR_LIMIT)
            return -2;
        if (m && abs64(v) > EXPR_RESULT_LIMIT / abs64(m))
            return -2;
        v *= m;
    }
    *out = v;
    return 0;
}

#define MAX_DEPTH 16
#define ZERO_SIZE_LIMIT 65536
/* Zero-size arrays consume no input, so nesting them multiplies counts the
 * input cannot bound (65,536^2 empty records from an empty image): the whole
 * run allows this many of their iterations. */
#define ZERO_SIZE_BUDGET (1 << 20)

osgp_status osgp_table_run(const uint32_t *prog, size_t plen, const uint8_t *in, size_t len,
                           int64_t *regs, size_t nregs, int64_t *slots, size_t cap,
                           size_t *nslots, size_t *consumed, osgp_table_fault *fault)
{
    run_t r;
    size_t pc = 0, depth = 0;
    size_t loop_pc[MAX_DEPTH];
    int64_t loop_left[MAX_DEPTH];
    osgp_status st;

    r.prog = prog; r.plen = plen; r.in = in; r.len = len; r.pos = 0;
    r.regs = regs; r.nregs = nregs; r.slots = slots; r.cap = cap; r.n = 0; r.fault = fault;
    r.zero_left = ZERO_SIZE_BUDGET;
    memset(fault, 0, sizeof(*fault));

#define NEED(k) do { if (pc + (k) > plen) return fail(&r, OSGP_ERR_PROGRAM, pc, 0); } while (0)
#define HAVE(k, at) do { if ((size_t)(k) > r.len - r.pos) return fail(&r, OSGP_ERR_TRUNCATED, (at), (size_t)(k)); } while (0)
#define EMIT(v, at) do { if ((st = emit(&r, (v), (at))) != OSGP_OK) return st; } while (0)

    while (pc < plen) {
        uint32_t w0 = prog[pc];
        unsigned op = w0 & 0xFF;
        switch (op) {
        case OSGP_TOP_INT: {
            unsigned sgn = (w0 >> 8) & 1, width = (w0 >> 16) & 0xFF;
            uint64_t u;
            int64_t v;
            NEED(2);
            if (width < 1 || width > 8 || !reg_ok(&r, prog[pc + 1]))
                return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
            HAVE(width, pc);
            u = rd_le(in + r.pos, width);
            v = sgn ? sext(u, 8 * width) : (int64_t)u;   /* UINT64: the slot holds the bits */
            r.pos += width;
            if (prog[pc + 1] != NONE)   /* registers saturate unsigned values above INT64_MAX */
                regs[prog[pc + 1]] = (!sgn && u > (uint64_t)INT64_MAX) ? INT64_MAX : v;
            EMIT(v, pc);
            pc += 2;
            break;
        }
        case OSGP_TOP_BITS: {
            unsigned width = (w0 >> 16) & 0xFF, i, nsub;
            uint64_t u;
            NEED(2);
            nsub = prog[pc + 1];
            NEED(2 + 2 * (size_t)nsub);
            if (width < 1 || width > 8)
                return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
            HAVE(width, pc);
            u = rd_le(in + r.pos, width);
            r.pos += width;
            for (i = 0; i < nsub; i++) {
                uint32_t d = prog[pc + 2 + 2 * i], store = prog[pc + 3 + 2 * i];
                unsigned lo = d & 0xFF, hi = (d >> 8) & 0xFF;
                uint64_t v;
                if (hi < lo || hi >= 8 * width || !reg_ok(&r, store))
                    return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
                v = u >> lo;
                if (hi - lo < 63)
                    v &= ((uint64_t)1 << (hi - lo + 1)) - 1;
                if (store != NONE)
                    regs[store] = v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
                EMIT((int64_t)v, pc);
            }
            pc += 2 + 2 * (size_t)nsub;
            break;
        }
        case OSGP_TOP_BYTES:
        case OSGP_TOP_SKIP: {
            int64_t n;
            int ev;
            NEED(8);
            ev = expr_eval(&r, prog + pc + 1, &n);
            if (ev)
                return fail(&r, ev == -2 ? OSGP_ERR_MALFORMED : OSGP_ERR_PROGRAM, pc, 0);
            if (n < 0)
                return fail(&r, OSGP_ERR_MALFORMED, pc, 0);
            HAVE((uint64_t)n > r.len ? r.len + 1 : (size_t)n, pc);
            if (op == OSGP_TOP_BYTES) {
                EMIT((int64_t)r.pos, pc);
                EMIT(n, pc);
            }
            r.pos += (size_t)n;
            pc += 8;
            break;
        }
        case OSGP_TOP_NI: {
            int64_t fmt, v;
            int w, k;
            NEED(2);
            if (prog[pc + 1] == NONE || !reg_ok(&r, prog[pc + 1]))
                return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
            fmt = regs[prog[pc + 1]];
            if (fmt == 8) {             /* INT32, the NES NI format: inline, as below */
                HAVE(4, pc);
                v = (int32_t)(uint32_t)rd_le(in + r.pos, 4);
                r.pos += 4;
                EMIT(v, pc);
                pc += 2;
                break;
            }
            w = (fmt < 0 || fmt > 13) ? -1 : osgp_ni_width((unsigned)fmt);
            if (w < 0)
                return fail(&r, OSGP_ERR_MALFORMED, pc, 0);
            HAVE(w, pc);
            k = osgp_ni_decode(in + r.pos, (unsigned)fmt, &v);
            if (k < 0)
                return fail(&r, OSGP_ERR_MALFORMED, pc, 0);
            if (k == 2)
                v = (int64_t)r.pos;
            r.pos += (size_t)w;
            EMIT(v, pc);
            pc += 2;
            break;
        }
        case OSGP_TOP_TIME: {
            unsigned kind = (w0 >> 8) & 0xFF, i;
            int64_t fmt, t[6];
            int w;
            NEED(2);
            if (prog[pc + 1] == NONE || !reg_ok(&r, prog[pc + 1]) || kind > 2)
                return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
            fmt = regs[prog[pc + 1]];
            w = (fmt < 0 || fmt > 4) ? -1 : osgp_time_width(kind, (unsigned)fmt);
            if (w < 0)
                return fail(&r, OSGP_ERR_MALFORMED, pc, 0);
            HAVE(w, pc);
            if (osgp_time_decode(in + r.pos, kind, (unsigned)fmt, t))
                return fail(&r, OSGP_ERR_MALFORMED, pc, 0);
            r.pos += (size_t)w;
            for (i = 0; i < 6; i++)
                EMIT(t[i], pc);
            pc += 2;
            break;
        }
        case OSGP_TOP_FLOAT: {
            unsigned width = (w0 >> 16) & 0xFF;
            int64_t v;
            NEED(1);
            if (width != 4 && width != 8)
                return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
            HAVE(width, pc);
            osgp_ni_decode(in + r.pos, width == 8 ? 0 : 1, &v);
            r.pos += width;
            EMIT(v, pc);
            pc += 1;
            break;
        }
        case OSGP_TOP_ARRAY: {
            int64_t n = 0;
            uint32_t body, minsz;
            int ev;
            NEED(10);
            body = prog[pc + 8];
            minsz = prog[pc + 9];
            if (pc + 10 + (size_t)body >= plen || (prog[pc + 10 + body] & 0xFF) != OSGP_TOP_END ||
                depth >= MAX_DEPTH)
                return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
            ev = expr_eval(&r, prog + pc + 1, &n);
            if (ev)
                return fail(&r, ev == -2 ? OSGP_ERR_MALFORMED : OSGP_ERR_PROGRAM, pc, 0);
            if (n < 0)
                return fail(&r, OSGP_ERR_MALFORMED, pc, 0);
            if (minsz == 0 && (n > ZERO_SIZE_LIMIT || n > r.zero_left))
                return fail(&r, OSGP_ERR_MALFORMED, pc, 0);
            if (minsz == 0)
                r.zero_left -= n;
            if (minsz && (uint64_t)n > (r.len - r.pos) / minsz)
                return fail(&r, OSGP_ERR_TRUNCATED, pc,
                            (uint64_t)n > (SIZE_MAX / 2) / minsz ? SIZE_MAX / 2 : (size_t)n * minsz);
            EMIT(n, pc);
            if (n == 0) {
                pc += 10 + (size_t)body + 1;
            } else {
                loop_pc[depth] = pc + 10;
                loop_left[depth] = n;
                depth++;
                pc += 10;
            }
            break;
        }
        case OSGP_TOP_END:
            if (depth == 0)
                return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
            if (--loop_left[depth - 1] > 0) {
                pc = loop_pc[depth - 1];
            } else {
                depth--;
                pc += 1;
            }
            break;
        case OSGP_TOP_IF: {
            int64_t v = 0, cmp;
            unsigned mode = (w0 >> 8) & 0xFF;
            int take, ev;
            NEED(10);
            if (pc + 10 + (size_t)prog[pc + 9] > plen)
                return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
            ev = expr_eval(&r, prog + pc + 1, &v);
            if (ev)
                return fail(&r, ev == -2 ? OSGP_ERR_MALFORMED : OSGP_ERR_PROGRAM, pc, 0);
            cmp = (int64_t)(int32_t)prog[pc + 8];
            take = mode == 0 ? v != 0 : mode == 1 ? v == cmp : v != cmp;
            EMIT(take, pc);
            pc += 10;
            if (!take)
                pc += prog[pc - 1];
            break;
        }
        default:
            return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
        }
    }
    if (depth)
        return fail(&r, OSGP_ERR_PROGRAM, pc, 0);
    *nslots = r.n;
    *consumed = r.pos;
    return OSGP_OK;
#undef NEED
#undef HAVE
#undef EMIT
}

/* ---- columnar decode of fixed-layout tables (osgp.tables.decode_columns) ----
 * The Python planner resolves a layout whose every offset is fixed (no count,
 * length or condition read from the image) into cells; image i's cell c reads
 * its bytes at offsets[i] + cell.off and writes one value at
 * cols[cell.col] + i * cell.stride + cell.out.  Field conventions as above
 * (LSB first, docs/protocol.md §3.4; TM_FORMAT and NI_FORMAT of docs/protocol.md §7.1). */

#define NAT INT64_MIN   /* numpy's NaT */

static int days_in_month(int64_t y, unsigned m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dim[m - 1];
}

/* Seconds since 1970 of a date kind (0 LTIME_DATE, 1 STIME_DATE), NaT where the
 * fields are no valid calendar time (zero dates, years past 9999); TIME (kind
 * 2) -> seconds after midnight.  -1: malformed BCD. */
static int col_time(const uint8_t *p, unsigned kind, unsigned fmt, int64_t *out)
{
    int64_t t[6];
    if (fmt == 2 && kind != 2) {        /* binary YY MM DD hh mm [ss], the NES format */
        t[0] = 2000 + (int64_t)p[0];
        t[1] = p[1];
        t[2] = p[2];
        t[3] = p[3];
        t[4] = p[4];
        t[5] = kind == 0 ? p[5] : 0;
    } else if (osgp_time_decode(p, kind, fmt, t)) {
        return -1;
    }
    if (kind == 2) {
        *out = t[3] * 3600 + t[4] * 60 + t[5];
        return 0;
    }
    if (fmt == 0 || t[0] < 1 || t[0] > 9999 || t[1] < 1 || t[1] > 12 || t[2] < 1 ||
        t[2] > days_in_month(t[0], (unsigned)t[1]) || t[3] > 23 || t[4] > 59 || t[5] > 59) {
        *out = NAT;
        return 0;
    }
    *out = osgp_days_from_civil(t[0], (unsigned)t[1], (unsigned)t[2]) * 86400 + t[3] * 3600 +
           t[4] * 60 + t[5];
    return 0;
}

static void put_le(uint8_t *q, uint64_t v, unsigned n)
{
    unsigned k;
    for (k = 0; k < n; k++)
        q[k] = (uint8_t)(v >> (8 * k));
}

/* A cell's words are consistent: known kind, column, read inside the image,
 * write inside the column's row, widths that match the kind. */
static int col_cell_ok(const uint32_t *e, size_t size, size_t ncols)
{
    unsigned w = e[2], osz = e[7];
    if (e[4] >= ncols || (uint64_t)e[1] + w > size || (uint64_t)e[5] + osz > e[6])
        return 0;
    switch (e[0]) {
    case OSGP_COL_COPY:
        return osz == w;
    case OSGP_COL_INT:
        return w >= 1 && w <= 8 && osz >= 1 && osz <= 8 && e[3] <= 1;
    case OSGP_COL_BITS:
        return w >= 1 && w <= 8 && osz >= 1 && osz <= 8 && (e[3] & 0xFF) <= ((e[3] >> 8) & 0xFF) &&
               ((e[3] >> 8) & 0xFF) < 8 * w;
    case OSGP_COL_NI4:
        return w == 4 && osz == 8;
    case OSGP_COL_BCD:
        return (e[3] == 5 || e[3] == 6 || e[3] == 12) && w == (unsigned)osgp_ni_width(e[3]) &&
               osz == 8;
    case OSGP_COL_TIME:
        return (e[3] & 0xFF) <= 2 && ((e[3] >> 8) & 0xFF) <= 4 &&
               w == (unsigned)osgp_time_width(e[3] & 0xFF, (e[3] >> 8) & 0xFF) && osz == 8;
    default:
        return 0;
    }
}

osgp_status osgp_table_columns(const uint8_t *in, size_t len, const int64_t *offsets, size_t n,
                               size_t size, const uint32_t *cells, size_t ncells,
                               uint8_t *const *cols, size_t ncols, size_t *failed,
                               osgp_table_fault *fault)
{
    size_t i, c;
    memset(fault, 0, sizeof(*fault));
    *failed = 0;
    for (c = 0; c < ncells; c++) {
        if (!col_cell_ok(cells + OSGP_COL_WORDS * c, size, ncols)) {
            fault->pc = (uint32_t)c;
            return OSGP_ERR_PROGRAM;
        }
    }
    for (i = 0; i < n; i++) {
        const uint8_t *img;
        if (offsets[i] < 0 || (uint64_t)offsets[i] > len || size > len - (size_t)offsets[i]) {
            *failed = i;
            fault->offset = offsets[i] < 0 ? 0 : (size_t)offsets[i];
            fault->needed = size;
            fault->remaining = offsets[i] < 0 || (uint64_t)offsets[i] > len
                                   ? 0 : len - (size_t)offsets[i];
            return OSGP_ERR_TRUNCATED;
        }
        img = in + offsets[i];
        for (c = 0; c < ncells; c++) {
            const uint32_t *e = cells + OSGP_COL_WORDS * c;
            const uint8_t *p = img + e[1];
            uint8_t *q = cols[e[4]] + i * (size_t)e[6] + e[5];
            unsigned w = e[2];
            switch (e[0]) {
            case OSGP_COL_COPY:         /* LE value of the host's width, raw bytes */
                if (w == 4)             /* constant sizes: one load and store */
                    memcpy(q, p, 4);
                else if (w == 1)
                    *q = *p;
                else if (w == 8)
                    memcpy(q, p, 8);
                else if (w == 2)
                    memcpy(q, p, 2);
                else
                    memcpy(q, p, w);
                break;
            case OSGP_COL_INT: {
                uint64_t u = rd_le(p, w);
                put_le(q, e[3] ? (uint64_t)sext(u, 8 * w) : u, e[7]);
                break;
            }
            case OSGP_COL_BITS: {       /* bits lo..hi, bit 0 = LSB ([OPT p.6]) */
                unsigned lo = e[3] & 0xFF, hi = (e[3] >> 8) & 0xFF;
                uint64_t v = rd_le(p, w) >> lo;
                if (hi - lo < 63)
                    v &= ((uint64_t)1 << (hi - lo + 1)) - 1;
                put_le(q, v, e[7]);
                break;
            }
            case OSGP_COL_NI4: {        /* NI_FORMAT 4: INT32 with 4 implied decimals */
                double x = (double)(int32_t)(uint32_t)rd_le(p, 4) / 10000.0;
                memcpy(q, &x, 8);
                break;
            }
            case OSGP_COL_BCD: {        /* FIXED_BCD NI formats */
                int64_t v;
                if (osgp_ni_decode(p, e[3], &v) < 0)
                    goto malformed;
                memcpy(q, &v, 8);
                break;
            }
            default: {                  /* OSGP_COL_TIME */
                int64_t v;
                if (col_time(p, e[3] & 0xFF, (e[3] >> 8) & 0xFF, &v))
                    goto malformed;
                memcpy(q, &v, 8);
                break;
            }
            }
            continue;
        malformed:
            *failed = i;
            fault->pc = (uint32_t)c;
            fault->offset = (size_t)offsets[i] + e[1];
            return OSGP_ERR_MALFORMED;
        }
    }
    return OSGP_OK;
}
