/*
 * osgp_lp.c - load-profile block decoder (BT64..BT67, ANSI C12.19 / [OPT p.35-39]).
 *
 * Block record ([OPT p.36], reference 7.7):
 *   BLK_END_TIME STIME_DATE | END_READINGS | SIMPLE_INT_STATUS SET((n+7)/8) |
 *   NBR_BLK_INTS x { EXTENDED_INT_STATUS[(nch/2)+1] | INT_DATA[nch] }
 * The caller passes the geometry (computed from BT61/BT62 or taken from ET21,
 * reference 7.7 "NES caution"), the block indices to decode in chronological
 * order and, per block, the index of its last recorded interval.  Output is
 * dense: nint rows per block, row valid = simple-status bit set and
 * position <= last.  Every read is bounds-checked.
 *
 * Extended status ([OPT p.36-37]): byte 0 high nibble = common flags, byte 0
 * low nibble = channel 0, byte k>=1 high nibble = channel 2k-1, low nibble =
 * channel 2k.
 */
#include "osgp.h"

#include <string.h>

#define NONE 0xFFFFFFFFu

static int lp_width(uint32_t code, uint32_t ni)
{
    switch (code) {
    case 1: case 8: return 1;           /* UINT8, INT8 */
    case 2: case 16: return 2;          /* UINT16, INT16 */
    case 4: case 32: return 4;          /* UINT32, INT32 */
    case 64: case 128: return osgp_ni_width(ni);  /* NI_FMAT1 / NI_FMAT2 */
    default: return -1;
    }
}

static inline int64_t rd_val(const uint8_t *p, uint32_t code, uint32_t ni, int *bad)
{
    int64_t v = 0;
    switch (code) {
    case 1: return p[0];
    case 8: return (int8_t)p[0];
    case 2: return (int64_t)(uint16_t)(p[0] | (p[1] << 8));
    case 16: return (int16_t)(uint16_t)(p[0] | (p[1] << 8));
    case 4: return (int64_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                             ((uint32_t)p[3] << 24));
    case 32: return (int32_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                              ((uint32_t)p[3] << 24));
    default: {
        int k = osgp_ni_decode(p, ni, &v);
        if (k != 0 && k != 1)
            *bad = 1;                   /* text or malformed BCD: not a block value */
        return v;
    }
    }
}

osgp_status osgp_lp_check(const osgp_lp_geometry *g)
{
    int w = lp_width(g->fmt_code, g->ni_format), tw;
    uint64_t ext = g->ext_off == NONE ? 0 : g->nch / 2 + 1;
    if (w < 0 || g->nint == 0 || g->block_size == 0)
        return OSGP_ERR_ARGUMENT;
    if (g->fmt_code >= 64 && (g->ni_format == 2 || g->ni_format == 3 || g->ni_format == 13))
        return OSGP_ERR_ARGUMENT;       /* FLOAT_CHAR values are decoded by the caller */
    tw = osgp_time_width(1, g->tm_format);
    if (tw <= 0 || (uint64_t)g->time_off + (uint64_t)tw > g->block_size)
        return OSGP_ERR_ARGUMENT;
    if (g->simple_off != NONE && (uint64_t)g->simple_off + (g->nint + 7) / 8 > g->block_size)
        return OSGP_ERR_ARGUMENT;
    if ((uint64_t)g->int0_off + (uint64_t)g->nint * g->int_size > g->block_size)
        return OSGP_ERR_ARGUMENT;
    if ((uint64_t)g->ch0_off + (uint64_t)g->nch * (uint64_t)w > g->int_size)
        return OSGP_ERR_ARGUMENT;
    if (g->ext_off != NONE && (uint64_t)g->ext_off + ext > g->int_size)
        return OSGP_ERR_ARGUMENT;
    return OSGP_OK;
}

/* Little-endian INT32 load (LSB first, reference 3.4); compiles to one load. */
static inline int32_t ld_i32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                 ((uint32_t)p[3] << 24);
    int32_t x;
    memcpy(&x, &u, 4);
    return x;
}

/* Fast path: ascending intervals, extended status present, INT32/UINT32 data.
 * Geometry fields are copied to locals so the compiler knows the output
 * stores cannot change them.  The per-row columns (valid, times) are filled
 * by their own branch-free loops, which the compiler vectorises; the
 * interval loop then has no data-dependent branch.  vw = bytes per output
 * value: 8 (int64) or 4 (int32, INT32 data only: a copy of the LE words). */
static inline void block_fast(const uint8_t *restrict blk, const size_t nint, const size_t nch,
                              size_t last, size_t simple_off, int has_simple, size_t int0,
                              size_t isz, size_t ext_off, size_t ch0, int is_unsigned,
                              const int vw, int64_t end, int64_t step, void *restrict vout,
                              uint8_t *restrict sr, uint8_t *restrict fl, int64_t *restrict tm,
                              uint8_t *restrict ok)
{
    size_t j, c;
    const uint8_t *ip = blk + int0;
    int64_t t0 = end - (int64_t)last * step;
    const int wide = nch <= 8 && ext_off + 8 <= isz;
    if (has_simple) {
        /* SIMPLE_INT_STATUS: bit j%8 of byte j/8 ([OPT p.36]).  Eight valid
         * bytes per status byte: replicate the byte to every lane, keep bit k
         * in lane k, turn each nonzero lane into 1 (lane k = byte k, LE host) */
        const uint8_t *sp = blk + simple_off;
        for (j = 0; j + 8 <= nint; j += 8) {
            uint64_t x = (sp[j >> 3] * 0x0101010101010101ull) & 0x8040201008040201ull;
            x = ((x + 0x7F7F7F7F7F7F7F7Full) >> 7) & 0x0101010101010101ull;
            memcpy(ok + j, &x, 8);
        }
        for (; j < nint; j++)
            ok[j] = (uint8_t)((sp[j >> 3] >> (j & 7)) & 1);
    } else {
        memset(ok, 1, nint);
    }
    if (last + 1 < nint)
        memset(ok + last + 1, 0, nint - last - 1);
    {
        int64_t t = t0;
        for (j = 0; j < nint; j++, t += step)
            tm[j] = t;
    }
    for (j = 0; j < nint; j++, ip += isz, sr += nch) {
        const uint8_t *ep = ip + ext_off, *dp = ip + ch0;
        if (wide) {
            /* one 8-byte load of the status bytes (wide: they are followed by
             * at least 8 bytes of this interval record); nibble of channel c
             * at bit pos(c): 0 for c = 0, else byte (c+1)/2, high nibble when
             * c is odd (header comment) */
            uint64_t x, w = 0;
            memcpy(&x, ep, 8);
            fl[j] = (uint8_t)((x >> 4) & 15);
            for (c = 0; c < nch; c++)
                w |= ((x >> (c ? 8 * ((c + 1) >> 1) + ((c & 1) ? 4 : 0) : 0)) & 15) << (8 * c);
            memcpy(sr, &w, nch);        /* little-endian host byte order of w */
        } else if (nch <= 8) {
            /* status nibbles gathered into one word, stored once */
            uint64_t w = nch ? (uint64_t)(ep[0] & 15) : 0;
            fl[j] = ep[0] >> 4;
            for (c = 1; c < nch; c++)
                w |= (uint64_t)((ep[(c + 1) >> 1] >> ((c & 1) ? 4 : 0)) & 15) << (8 * c);
            memcpy(sr, &w, nch);
        } else {
            fl[j] = ep[0] >> 4;
            sr[0] = ep[0] & 15;
            for (c = 1; c < nch; c++)
                sr[c] = (ep[(c + 1) >> 1] >> ((c & 1) ? 4 : 0)) & 15;
        }
        if (vw == 4) {
            /* INT32 LSB first (reference 3.4) on a little-endian host: a copy */
            memcpy((int32_t *)vout + j * nch, dp, 4 * nch);
        } else {
            int64_t *vr = (int64_t *)vout + j * nch;
            if (is_unsigned)
                for (c = 0; c < nch; c++)
                    vr[c] = (int64_t)(uint32_t)ld_i32(dp + 4 * c);
            else
                for (c = 0; c < nch; c++)
                    vr[c] = ld_i32(dp + 4 * c);
        }
    }
}

static inline int host_le(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Shared body of osgp_lp_decode (vw 8) and osgp_lp_decode_i32 (vw 4). */
static osgp_status lp_decode_w(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                               const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                               void *values, const int vw, uint8_t *status, uint8_t *flags,
                               int64_t *times, uint8_t *valid, osgp_table_fault *fault)
{
    size_t b, nint = g->nint, nch = g->nch, bsz = g->block_size;
    int w = lp_width(g->fmt_code, g->ni_format);
    int fast = !g->descending && g->ext_off != NONE &&
               (g->fmt_code == 32 || (g->fmt_code == 4 && vw == 8)) && host_le();
    osgp_status st = osgp_lp_check(g);
    memset(fault, 0, sizeof(*fault));
    if (st != OSGP_OK)
        return st;
    for (b = 0; b < nblocks; b++) {
        size_t off = (size_t)blocks[b] * bsz, j, c;
        const uint8_t *blk;
        int64_t t[6], end, step = g->interval_s;
        size_t last = lasts ? lasts[b] : nint - 1;
        size_t row0 = b * nint;
        fault->pc = (uint32_t)b;
        if (off > len || bsz > len - off) {
            fault->offset = off;
            fault->needed = bsz;
            fault->remaining = off > len ? 0 : len - off;
            return OSGP_ERR_TRUNCATED;
        }
        if (last >= nint) {
            fault->offset = off;
            return OSGP_ERR_MALFORMED;
        }
        blk = in + off;
        if (osgp_time_decode(blk + g->time_off, 1, g->tm_format, t) ||
            (g->tm_format <= 2 && (t[1] < 1 || t[1] > 12 || t[2] < 1 || t[2] > 31 ||
                                   t[3] > 24 || t[4] > 59))) {
            fault->offset = off + g->time_off;
            return OSGP_ERR_MALFORMED;
        }
        end = osgp_days_from_civil(t[0], (unsigned)t[1], (unsigned)t[2]) * 86400 +
              t[3] * 3600 + t[4] * 60 + t[5];
        if (fast) {
            /* constant channel counts and value widths let the compiler unroll
             * the channel loops */
#define FAST(N, W) block_fast(blk, nint, (N), last, g->simple_off, g->simple_off != NONE,      \
                              g->int0_off, g->int_size, g->ext_off, g->ch0_off,                \
                              g->fmt_code == 4, (W), end, step,                                \
                              (uint8_t *)values + row0 * nch * (W), status + row0 * nch,       \
                              flags + row0, times + row0, valid + row0)
#define FAST_W(W)                                                                              \
            switch (nch) {                                                                     \
            case 1: FAST(1, W); break;                                                         \
            case 2: FAST(2, W); break;                                                         \
            case 3: FAST(3, W); break;                                                         \
            case 4: FAST(4, W); break;                                                         \
            case 6: FAST(6, W); break;                                                         \
            case 8: FAST(8, W); break;                                                         \
            default: FAST(nch, W); break;                                                      \
            }
            if (vw == 4) {
                FAST_W(4)
            } else {
                FAST_W(8)
            }
#undef FAST_W
#undef FAST
            continue;
        }
        for (j = 0; j < nint; j++) {
            size_t row = row0 + j;
            /* stored slot of chronological position j (descending order: slot 0
             * is the newest recorded interval, INFERRED) */
            size_t s = (g->descending && j <= last) ? last - j : j;
            const uint8_t *ip = blk + g->int0_off + s * g->int_size;
            const uint8_t *dp = ip + g->ch0_off;
            uint8_t *sr = status + row * nch;
            int ok = j <= last, bad = 0;
            if (ok && g->simple_off != NONE)
                ok = (blk[g->simple_off + (s >> 3)] >> (s & 7)) & 1;
            valid[row] = (uint8_t)ok;
            times[row] = end - ((int64_t)last - (int64_t)j) * step;
            if (g->ext_off != NONE) {
                const uint8_t *ep = ip + g->ext_off;
                flags[row] = ep[0] >> 4;
                if (nch)
                    sr[0] = ep[0] & 15;
                for (c = 1; c < nch; c++)
                    sr[c] = (c & 1) ? ep[(c + 1) >> 1] >> 4 : ep[(c + 1) >> 1] & 15;
            } else {
                flags[row] = 0;
                memset(sr, 0, nch);
            }
            for (c = 0; c < nch; c++) {
                int64_t v = rd_val(dp + (size_t)w * c, g->fmt_code, g->ni_format, &bad);
                if (vw == 4)
                    ((int32_t *)values)[row * nch + c] = (int32_t)v;
                else
                    ((int64_t *)values)[row * nch + c] = v;
            }
            if (bad && ok) {
                fault->offset = (size_t)(dp - in);
                return OSGP_ERR_MALFORMED;
            }
        }
    }
    return OSGP_OK;
}

osgp_status osgp_lp_decode(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                           const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                           int64_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                           uint8_t *valid, osgp_table_fault *fault)
{
    return lp_decode_w(in, len, g, blocks, lasts, nblocks, values, 8, status, flags, times,
                       valid, fault);
}

osgp_status osgp_lp_decode_i32(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                               const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                               int32_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                               uint8_t *valid, osgp_table_fault *fault)
{
    /* int32 values only for formats whose every value fits: UINT8, INT8,
     * UINT16, INT16, INT32 (BT62 INT_FMT_CDE 1, 8, 2, 16, 32) */
    uint32_t code = g->fmt_code;
    if (code != 1 && code != 2 && code != 8 && code != 16 && code != 32) {
        memset(fault, 0, sizeof(*fault));
        return OSGP_ERR_ARGUMENT;
    }
    return lp_decode_w(in, len, g, blocks, lasts, nblocks, values, 4, status, flags, times,
                       valid, fault);
}

osgp_status osgp_lp_decode_rows(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                                const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                                int64_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                                uint8_t *valid, uint32_t *row_block, size_t *nrows,
                                osgp_table_fault *fault)
{
    size_t b, j, r = 0, nint = g->nint, nch = g->nch;
    osgp_status st;
    *nrows = 0;
    for (b = 0; b < nblocks; b++) {
        /* decode block b densely at row r, then move its valid rows down to r.. */
        st = osgp_lp_decode(in, len, g, blocks + b, lasts ? lasts + b : NULL, 1,
                            values + r * nch, status + r * nch, flags + r, times + r,
                            valid + r, fault);
        if (st != OSGP_OK) {
            fault->pc = (uint32_t)b;
            return st;
        }
        {
            size_t k = r;
            for (j = r; j < r + nint; j++) {
                if (!valid[j])
                    continue;
                if (k != j) {
                    memmove(values + k * nch, values + j * nch, nch * sizeof(int64_t));
                    memmove(status + k * nch, status + j * nch, nch);
                    flags[k] = flags[j];
                    times[k] = times[j];
                    valid[k] = 1;
                }
                row_block[k] = (uint32_t)b;
                k++;
            }
            r = k;
        }
    }
    *nrows = r;
    return OSGP_OK;
}

osgp_status osgp_lp_decode_batch(const uint8_t *const *ins, const size_t *lens, size_t n,
                                 const osgp_lp_geometry *g, const uint32_t *const *blocks,
                                 const uint32_t *const *lasts, const size_t *nblocks,
                                 const size_t *row_offsets, int64_t *values, uint8_t *status,
                                 uint8_t *flags, int64_t *times, uint8_t *valid,
                                 size_t *failed, osgp_table_fault *fault)
{
    size_t i, nch = g->nch;
    osgp_status st;
    *failed = 0;
    for (i = 0; i < n; i++) {
        size_t r = row_offsets[i];
        st = osgp_lp_decode(ins[i], lens[i], g, blocks[i], lasts ? lasts[i] : NULL, nblocks[i],
                            values + r * nch, status + r * nch, flags + r, times + r, valid + r,
                            fault);
        if (st != OSGP_OK) {
            *failed = i;
            return st;
        }
    }
    return OSGP_OK;
}
