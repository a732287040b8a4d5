/*
 * osgp_lp.c - load-profile block decoder (BT64..BT67, ANSI C12.19 / [OPT p.35-39]).
 *
 * Block record ([OPT p.36], docs/protocol.md §7.7):
 *   BLK_END_TIME STIME_DATE | END_READINGS | SIMPLE_INT_STATUS SET((n+7)/8) |
 *   NBR_BLK_INTS x { EXTENDED_INT_STATUS[(nch/2)+1] | INT_DATA[nch] }
 * The caller passes the geometry (computed from BT61/BT62 or taken from ET21,
 * docs/protocol.md §7.7 "NES caution"), the block indices to decode in chronological
 * order and, per block, the index of its last recorded interval.  Output is
 * dense: nint rows per block, row valid = simple-status bit set and
 * position <= last.  Every read is bounds-checked.
 *
 * Extended status ([OPT p.36-37]): byte 0 high nibble = common flags, byte 0
 * low nibble = channel 0, byte k>=1 high nibble = channel 2k-1, low nibble =
 * channel 2k.
 */
#include "osgp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* x86-64 with GCC/Clang: SSE2/AVX2 paths behind osgp_cpu_features() and
 * target attributes (docs/conventions.md §13: no -m flags); everything else, and
 * OSGP_CPU=portable, takes the portable C. */
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(OSGP_LP_NO_INTRINSICS)
#define LP_HAVE_X86 1
#include <immintrin.h>
#endif

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

/* Little-endian INT32 load (LSB first, docs/protocol.md §3.4); compiles to one load. */
static inline int32_t ld_i32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                 ((uint32_t)p[3] << 24);
    int32_t x;
    memcpy(&x, &u, 4);
    return x;
}

/* ---- streaming stores -------------------------------------------
 * A large decode writes ~2.4x its input bytes (46 B of output per 19 B
 * interval record in the bench geometry).  Through normal stores every
 * output line is first read for ownership, so the memory traffic is
 * in + 2 x out.  From OSGP_LP_STREAM_MIN output bytes on, the AVX2 fast path
 * writes the values and times columns (40 of the 46 B) with 16-byte
 * non-temporal stores straight from the interval loop, which need 16-byte
 * aligned rows: int64 values with an even channel count or int32 values
 * with 4 or 8 channels, and a 16-byte aligned values array.  Below the
 * threshold the outputs stay in the cache, which is what a caller about to
 * read them wants.  24 MiB (about 3/4 of a 32 MiB L3) is a tuning choice,
 * not from any spec.  (Staging a whole block in L1 and streaming every column
 * from there was measured slower: decode and drain then alternate.) */
#define OSGP_LP_STREAM_MIN ((size_t)24 << 20)

static size_t lp_stream_min = OSGP_LP_STREAM_MIN;

size_t osgp_lp_set_stream_min(size_t bytes)
{
    size_t old = lp_stream_min;
    lp_stream_min = bytes;
    return old;
}

#if LP_HAVE_X86
/* SSE2 time column for streaming: interval end times t, t+step, ... (the
 * rows' times, docs/protocol.md §7.7), two per 16-byte streaming store; a
 * misaligned first row and an odd last row take normal stores. */
static __attribute__((target("sse2"))) void times_stream(int64_t *tm, size_t n, int64_t t,
                                                         int64_t step)
{
    size_t j = 0;
    __m128i v, d;
    if (n && ((uintptr_t)tm & 15)) {
        tm[0] = t;
        t += step;
        j = 1;
    }
    v = _mm_set_epi64x(t + step, t);
    d = _mm_set1_epi64x(2 * step);
    for (; j + 2 <= n; j += 2, t += 2 * step) {
        _mm_stream_si128((__m128i *)(tm + j), v);
        v = _mm_add_epi64(v, d);
    }
    if (j < n)
        tm[j] = t;
}

static __attribute__((target("sse2"))) void stream_fence(void)
{
    _mm_sfence();   /* streaming stores are weakly ordered: publish them */
}
#endif

#if LP_HAVE_X86
#define LP_AVX2_INLINE static inline __attribute__((always_inline, target("avx2")))

/* AVX2 interval loop of block_fast for nch <= 8 channels, when at least 8
 * bytes follow EXTENDED_INT_STATUS in the interval record (one 8-byte load).
 * Per interval: status bytes [OPT p.36-37] e0..e7 are split into low
 * nibbles L and high nibbles H and interleaved as L0 H0 L1 H1 ..., so lane
 * 2k = low nibble of byte k, lane 2k+1 = its high nibble.  Channel 0 = L0
 * (lane 0), flags = H0 (lane 1), odd channel c = high nibble of byte
 * (c+1)/2 (lane c+2), even channel c >= 2 = low nibble of byte c/2
 * (lane c); one pshufb puts channels 0..7 in bytes 0..7 and the flags in
 * byte 8.  INT32/UINT32 values (LSB first, docs/protocol.md §3.4) widen four at a
 * time with vpmovsxdq / vpmovzxdq.  N and VW are constants at each call. */
LP_AVX2_INLINE void ivals_avx2(const uint8_t *ip, size_t nint, const size_t N, size_t isz,
                               size_t ext_off, size_t ch0, int is_unsigned, const int VW,
                               const int NT, void *restrict vout, uint8_t *restrict sr,
                               uint8_t *restrict fl)
{
    const __m128i m4 = _mm_set1_epi8(15);
    const __m128i pick = _mm_setr_epi8(0, 3, 2, 5, 4, 7, 6, 9, 1, -1, -1, -1, -1, -1, -1, -1);
    size_t j, c;
    for (j = 0; j < nint; j++, ip += isz, sr += N) {
        const uint8_t *dp = ip + ch0;
        __m128i x = _mm_loadl_epi64((const __m128i *)(ip + ext_off));
        __m128i u = _mm_unpacklo_epi8(_mm_and_si128(x, m4),
                                      _mm_and_si128(_mm_srli_epi16(x, 4), m4));
        __m128i st = _mm_shuffle_epi8(u, pick);
        uint64_t w = (uint64_t)_mm_cvtsi128_si64(st);
        memcpy(sr, &w, N);              /* little-endian host: byte c = channel c */
        fl[j] = (uint8_t)_mm_extract_epi16(st, 4);
        if (VW == 4 && NT) {
            /* streaming: N % 4 == 0 and 16-byte aligned rows (caller) */
            for (c = 0; c < N; c += 4)
                _mm_stream_si128((__m128i *)((int32_t *)vout + j * N + c),
                                 _mm_loadu_si128((const __m128i *)(dp + 4 * c)));
            continue;
        }
        if (VW == 4) {
            memcpy((int32_t *)vout + j * N, dp, 4 * N);
            continue;
        }
        {
            int64_t *vr = (int64_t *)vout + j * N;
            for (c = 0; c + 4 <= N; c += 4) {
                __m128i v = _mm_loadu_si128((const __m128i *)(dp + 4 * c));
                __m256i y = is_unsigned ? _mm256_cvtepu32_epi64(v) : _mm256_cvtepi32_epi64(v);
                if (NT) {
                    /* streaming: N even and 16-byte aligned rows (caller) */
                    _mm_stream_si128((__m128i *)(vr + c), _mm256_castsi256_si128(y));
                    _mm_stream_si128((__m128i *)(vr + c + 2), _mm256_extracti128_si256(y, 1));
                } else {
                    _mm256_storeu_si256((__m256i *)(vr + c), y);
                }
            }
            if (NT && c + 2 <= N) {
                __m128i v = _mm_loadl_epi64((const __m128i *)(dp + 4 * c));
                _mm_stream_si128((__m128i *)(vr + c),
                                 is_unsigned ? _mm_cvtepu32_epi64(v) : _mm_cvtepi32_epi64(v));
                c += 2;
            }
            for (; c < N; c++)
                vr[c] = is_unsigned ? (int64_t)(uint32_t)ld_i32(dp + 4 * c) : ld_i32(dp + 4 * c);
        }
    }
}

/* One instance of ivals_avx2 per channel count (1..8: the caller checks) and
 * value width, and with streaming value stores (nt) for the row sizes that
 * keep 16-byte alignment: int64 with even N, int32 with N = 4, 8. */
static __attribute__((target("avx2"))) void block_ivals_avx2(
    const uint8_t *ip, size_t nint, size_t nch, size_t isz, size_t ext_off, size_t ch0,
    int is_unsigned, int vw, int nt, void *restrict vout, uint8_t *restrict sr,
    uint8_t *restrict fl)
{
#define IV(N, W, T) ivals_avx2(ip, nint, (N), isz, ext_off, ch0, is_unsigned, (W), (T), vout, sr, fl)
#define IV_N(W)                                                                                \
    switch (nch) {                                                                             \
    case 1: IV(1, W, 0); break;                                                                \
    case 2: IV(2, W, 0); break;                                                                \
    case 3: IV(3, W, 0); break;                                                                \
    case 4: IV(4, W, 0); break;                                                                \
    case 5: IV(5, W, 0); break;                                                                \
    case 6: IV(6, W, 0); break;                                                                \
    case 7: IV(7, W, 0); break;                                                                \
    default: IV(8, W, 0); break;                                                               \
    }
    if (nt && vw == 8) {
        switch (nch) {
        case 2: IV(2, 8, 1); break;
        case 4: IV(4, 8, 1); break;
        case 6: IV(6, 8, 1); break;
        default: IV(8, 8, 1); break;
        }
    } else if (nt) {
        if (nch == 4)
            IV(4, 4, 1);
        else
            IV(8, 4, 1);
    } else if (vw == 4) {
        IV_N(4)
    } else {
        IV_N(8)
    }
#undef IV_N
#undef IV
}
#endif

/* Fast path: ascending intervals, extended status present, INT32/UINT32 data.
 * Geometry fields are copied to locals so the compiler knows the output
 * stores cannot change them.  The per-row columns (valid, times) are filled
 * by their own branch-free loops, which the compiler vectorises; the
 * interval loop then has no data-dependent branch.  vw = bytes per output
 * value: 8 (int64) or 4 (int32, INT32 data only: a copy of the LE words). */
static inline void block_fast(const uint8_t *restrict blk, const size_t nint, const size_t nch,
                              size_t last, size_t simple_off, int has_simple, size_t int0,
                              size_t isz, size_t ext_off, size_t ch0, int is_unsigned,
                              const int vw, int64_t end, int64_t step, int simd, int nt,
                              void *restrict vout, uint8_t *restrict sr, uint8_t *restrict fl,
                              int64_t *restrict tm, uint8_t *restrict ok)
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
#if LP_HAVE_X86
    if (nt)
        times_stream(tm, nint, t0, step);
    else
#endif
    {
        int64_t t = t0;
        for (j = 0; j < nint; j++, t += step)
            tm[j] = t;
    }
#if LP_HAVE_X86
    if (simd && wide && nch > 0) {
        block_ivals_avx2(ip, nint, nch, isz, ext_off, ch0, is_unsigned, vw, nt, vout, sr, fl);
        return;
    }
#else
    (void)simd;
    (void)nt;
#endif
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
            /* INT32 LSB first (docs/protocol.md §3.4) on a little-endian host: a copy */
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

/* Generic interval loop (any format, order and status layout): rows row0..
 * row0+nint-1 of the outputs, validity into ok[0..nint).  *bad_at = 1 + the
 * input offset of a value that is not a number in a valid row (else 0). */
static void lp_block_generic(const uint8_t *blk, const uint8_t *in, const osgp_lp_geometry *g,
                             int w, size_t last, int64_t end, int64_t step, const int vw,
                             void *values, uint8_t *status, uint8_t *flags, int64_t *times,
                             uint8_t *ok_out, size_t row0, size_t *bad_at)
{
    size_t j, c, nint = g->nint, nch = g->nch;
    *bad_at = 0;
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
        ok_out[j] = (uint8_t)ok;
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
            *bad_at = (size_t)(dp - in) + 1;
            return;
        }
    }
}

/* Compact mode: move the valid rows of the block just decoded at row0 down
 * to row0, row0+1, ... (chronological order kept).  Returns how many. */
static size_t lp_squeeze(const uint8_t *ok, size_t nint, size_t row0, size_t nch,
                         int64_t *values, uint8_t *status, uint8_t *flags, int64_t *times)
{
    size_t j = 0, k;
    while (j < nint && ok[j])           /* leading valid rows stay where they are */
        j++;
    for (k = j; j < nint; j++) {
        size_t src = row0 + j, dst = row0 + k;
        if (!ok[j])
            continue;
        memcpy(values + dst * nch, values + src * nch, nch * sizeof(int64_t));
        memcpy(status + dst * nch, status + src * nch, nch);
        flags[dst] = flags[src];
        times[dst] = times[src];
        k++;
    }
    return k;
}

/* Shared body of osgp_lp_decode (vw 8) and osgp_lp_decode_i32 (vw 4). */
/* counts != NULL: compact mode (osgp_lp_decode_rows), valid is nint bytes of
 * scratch and each block is decoded at the next free row, then its invalid
 * rows are squeezed out (vw 8 only). */
static osgp_status lp_decode_w(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                               const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                               void *values, const int vw, uint8_t *status, uint8_t *flags,
                               int64_t *times, uint8_t *valid, uint32_t *counts, size_t *nrows,
                               osgp_table_fault *fault)
{
    size_t b, nint = g->nint, nch = g->nch, bsz = g->block_size, r = 0;
    int w = lp_width(g->fmt_code, g->ni_format);
    int fast = !g->descending && g->ext_off != NONE &&
               (g->fmt_code == 32 || (g->fmt_code == 4 && vw == 8)) && host_le();
    osgp_status st = osgp_lp_check(g);
    int nt = 0;
#if LP_HAVE_X86
    const int simd = (osgp_cpu_features() & OSGP_CPU_AVX2) != 0;
#else
    const int simd = 0;
#endif
    memset(fault, 0, sizeof(*fault));
    if (st != OSGP_OK)
        return st;
    /* streaming stores: see OSGP_LP_STREAM_MIN (the conditions of the AVX2
     * interval loop, block_fast "wide", plus 16-byte aligned value rows) */
    if (!counts && fast && simd && nch > 0 && nch <= 8 && g->ext_off + 8 <= g->int_size &&
        (nch * (size_t)vw) % 16 == 0 && (uintptr_t)values % 16 == 0 &&
        nblocks * nint * (nch * (size_t)vw + nch + 1 + 8 + 1) >= lp_stream_min)
        nt = 1;
    for (b = 0; b < nblocks; b++) {
        size_t off = (size_t)blocks[b] * bsz, bad_at;
        const uint8_t *blk;
        int64_t t[6], end, step = g->interval_s;
        size_t last = lasts ? lasts[b] : nint - 1;
        size_t row0 = counts ? r : b * nint;
        uint8_t *ok = counts ? valid : valid + row0;
        fault->pc = (uint32_t)b;
        if (off > len || bsz > len - off) {
            fault->offset = off;
            fault->needed = bsz;
            fault->remaining = off > len ? 0 : len - off;
            st = OSGP_ERR_TRUNCATED;
            break;
        }
        if (last >= nint) {
            fault->offset = off;
            st = OSGP_ERR_MALFORMED;
            break;
        }
        blk = in + off;
        if (osgp_time_decode(blk + g->time_off, 1, g->tm_format, t) ||
            (g->tm_format <= 2 && (t[1] < 1 || t[1] > 12 || t[2] < 1 || t[2] > 31 ||
                                   t[3] > 24 || t[4] > 59))) {
            fault->offset = off + g->time_off;
            st = OSGP_ERR_MALFORMED;
            break;
        }
        end = osgp_days_from_civil(t[0], (unsigned)t[1], (unsigned)t[2]) * 86400 +
              t[3] * 3600 + t[4] * 60 + t[5];
        if (fast) {
            /* constant channel counts and value widths let the compiler unroll
             * the channel loops */
#define FAST(N, W) block_fast(blk, nint, (N), last, g->simple_off, g->simple_off != NONE,      \
                              g->int0_off, g->int_size, g->ext_off, g->ch0_off,                \
                              g->fmt_code == 4, (W), end, step, simd, nt,                      \
                              (uint8_t *)values + row0 * nch * (W),                            \
                              status + row0 * nch, flags + row0, times + row0, ok)
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
        } else {
            lp_block_generic(blk, in, g, w, last, end, step, vw, values, status, flags, times,
                             ok, row0, &bad_at);
            if (bad_at) {
                fault->offset = bad_at - 1;
                return OSGP_ERR_MALFORMED;  /* generic path: never streaming */
            }
        }
        if (counts) {
            size_t k = row0 + lp_squeeze(ok, nint, row0, nch, (int64_t *)values, status, flags,
                                         times);
            counts[b] = (uint32_t)(k - row0);
            r = k;
        }
    }
#if LP_HAVE_X86
    if (nt)
        stream_fence();         /* also after a fault: earlier blocks are written */
#endif
    if (nrows)
        *nrows = counts ? r : nblocks * nint;
    return st;
}

osgp_status osgp_lp_decode(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                           const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                           int64_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                           uint8_t *valid, osgp_table_fault *fault)
{
    return lp_decode_w(in, len, g, blocks, lasts, nblocks, values, 8, status, flags, times,
                       valid, NULL, NULL, fault);
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
                       valid, NULL, NULL, fault);
}

osgp_status osgp_lp_decode_rows(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                                const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                                int64_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                                uint8_t *scratch, uint32_t *counts, size_t *nrows,
                                osgp_table_fault *fault)
{
    *nrows = 0;
    return lp_decode_w(in, len, g, blocks, lasts, nblocks, values, 8, status, flags, times,
                       scratch, counts, nrows, fault);
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
