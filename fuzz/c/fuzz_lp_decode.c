/*
 * fuzz_lp_decode.c - libFuzzer harness of osgp_lp_decode, the load-profile
 * block decoder (BT64..BT67, [OPT p.35-39], reference 7.7), with its other
 * forms as oracles: the portable path against the SIMD path (and its
 * streaming stores), osgp_lp_decode_i32, osgp_lp_decode_rows and
 * osgp_lp_decode_batch.
 *
 * Input (LE): block_size u16, nint u16, nch u8, time_off u8, tm_format u8,
 * simple_off u16 (0xFFFF = absent), int0_off u16, int_size u16, ext_off u8
 * (0xFF = absent), ch0_off u8, fmt_code u8, ni_format u8, interval_s i32,
 * flags u8 (bit 0 descending, bit 1 per-block lasts given, bits 2-3 the
 * alternate form compared with the portable reference on this input: 0 the
 * CPU's SIMD path with normal stores and the int32 form, 1 the same with
 * streaming stores, 2 osgp_lp_decode_rows, 3 osgp_lp_decode_batch), nblocks u8, the
 * block indices (u8 each), the lasts (u16 each, when given), then the
 * BT64 image (the rest).  The field widths are those of the BT61/ET21 fields
 * the geometry comes from.  Checks: the same status and fault on every path,
 * identical rows, and the valid rows of the dense result are exactly those of
 * osgp_lp_decode_rows.
 */
#include "fuzz_common.h"

#define NONE 0xFFFFFFFFu
#define MAX_CELLS ((size_t)1 << 13) /* rows x (channels + 1) per decode (throughput) */

typedef struct {
    size_t rows, nch;
    int64_t *values;
    int32_t *values32;
    uint8_t *status, *flags, *valid;
    int64_t *times;
} outs;

static void outs_alloc(outs *o, size_t rows, size_t nch)
{
    size_t r = rows ? rows : 1, c = rows * nch ? rows * nch : 1;
    o->rows = rows;
    o->nch = nch;
    o->values = (int64_t *)malloc(c * sizeof(int64_t));
    o->values32 = (int32_t *)malloc(c * sizeof(int32_t));
    o->status = (uint8_t *)malloc(c);
    o->flags = (uint8_t *)malloc(r);
    o->valid = (uint8_t *)malloc(r);
    o->times = (int64_t *)malloc(r * sizeof(int64_t));
    CHECK(o->values && o->values32 && o->status && o->flags && o->valid && o->times);
    /* poison: every output the decoder promises must be overwritten */
    memset(o->values, 0xA5, c * sizeof(int64_t));
    memset(o->status, 0xA5, c);
    memset(o->valid, 0xA5, r);
}

static void outs_free(outs *o)
{
    free(o->values);
    free(o->values32);
    free(o->status);
    free(o->flags);
    free(o->valid);
    free(o->times);
}

static int same_row(const outs *a, size_t i, const outs *b, size_t j)
{
    size_t n = a->nch;
    return memcmp(a->values + i * n, b->values + j * n, n * sizeof(int64_t)) == 0 &&
           memcmp(a->status + i * n, b->status + j * n, n) == 0 && a->flags[i] == b->flags[j] &&
           a->times[i] == b->times[j];
}

static int same_fault(const osgp_table_fault *a, const osgp_table_fault *b)
{
    return a->offset == b->offset && a->needed == b->needed && a->remaining == b->remaining &&
           a->pc == b->pc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    osgp_lp_geometry g;
    unsigned flags, form, i;
    size_t nblocks, rows, len, r, k, nrows = 0;
    uint32_t blocks[255], lasts[255], *lp = NULL;
    uint16_t v16;
    uint8_t *img;
    outs ref, alt;
    osgp_table_fault f0, f1;
    osgp_status st0, st1;

    g.block_size = take_u16(&in);
    g.nint = take_u16(&in);
    g.nch = take_u8(&in);
    g.time_off = take_u8(&in);
    g.tm_format = take_u8(&in);
    v16 = take_u16(&in);
    g.simple_off = v16 == 0xFFFF ? NONE : v16;
    g.int0_off = take_u16(&in);
    g.int_size = take_u16(&in);
    g.ext_off = take_u8(&in);
    if (g.ext_off == 0xFF)
        g.ext_off = NONE;
    g.ch0_off = take_u8(&in);
    g.fmt_code = take_u8(&in);
    g.ni_format = take_u8(&in);
    g.interval_s = (int32_t)take_u32(&in);
    flags = take_u8(&in);
    g.descending = flags & 1;
    form = (flags >> 2) & 3;
    nblocks = take_u8(&in);
    for (i = 0; i < nblocks; i++)
        blocks[i] = take_u8(&in);
    if (flags & 2) {
        for (i = 0; i < nblocks; i++)
            lasts[i] = take_u16(&in);
        lp = lasts;
    }
    if (osgp_lp_check(&g) != OSGP_OK) {
        /* every decode form refuses the geometry before touching anything */
        outs_alloc(&ref, 0, 0);
        CHECK(osgp_lp_decode(in.p, in.n, &g, blocks, lp, nblocks, ref.values, ref.status,
                             ref.flags, ref.times, ref.valid, &f0) == OSGP_ERR_ARGUMENT);
        outs_free(&ref);
        return 0;
    }
    rows = nblocks * g.nint;
    if (rows * (g.nch + 1) > MAX_CELLS)
        return 0;
    len = in.n;
    img = fz_dup(in.p, len);

    /* reference: portable C */
    outs_alloc(&ref, rows, g.nch);
    osgp_cpu_set_mask(0);
    st0 = osgp_lp_decode(img, len, &g, blocks, lp, nblocks, ref.values, ref.status, ref.flags,
                         ref.times, ref.valid, &f0);
    CHECK(st0 == OSGP_OK || st0 == OSGP_ERR_TRUNCATED || st0 == OSGP_ERR_MALFORMED);
    CHECK(st0 != OSGP_OK || f0.pc == (nblocks ? nblocks - 1 : 0));
    if (st0 != OSGP_OK)
        CHECK(f0.pc < nblocks && f0.offset <= len + (size_t)255 * g.block_size);
    for (r = 0; st0 == OSGP_OK && r < rows; r++)
        CHECK(ref.valid[r] <= 1);

    /* the CPU's path, with normal (form 0) or streaming (form 1) stores */
    for (k = form; k < 2; k += 2) {
        size_t old = osgp_lp_set_stream_min(k ? 0 : (size_t)-1);
        outs_alloc(&alt, rows, g.nch);
        osgp_cpu_set_mask(~0u);
        st1 = osgp_lp_decode(img, len, &g, blocks, lp, nblocks, alt.values, alt.status,
                             alt.flags, alt.times, alt.valid, &f1);
        osgp_lp_set_stream_min(old);
        CHECK(st1 == st0 && same_fault(&f0, &f1));
        for (r = 0; st0 == OSGP_OK && r < rows; r++)
            CHECK(alt.valid[r] == ref.valid[r] && same_row(&ref, r, &alt, r));
        /* int32 values where every value fits */
        if (g.fmt_code == 1 || g.fmt_code == 2 || g.fmt_code == 8 || g.fmt_code == 16 ||
            g.fmt_code == 32) {
            st1 = osgp_lp_decode_i32(img, len, &g, blocks, lp, nblocks, alt.values32, alt.status,
                                     alt.flags, alt.times, alt.valid, &f1);
            CHECK(st1 == st0 && same_fault(&f0, &f1));
            for (r = 0; st0 == OSGP_OK && r < rows * g.nch; r++)
                CHECK(alt.values32[r] == ref.values[r]);
        } else {
            CHECK(osgp_lp_decode_i32(img, len, &g, blocks, lp, nblocks, alt.values32,
                                     alt.status, alt.flags, alt.times, alt.valid,
                                     &f1) == OSGP_ERR_ARGUMENT);
        }
        outs_free(&alt);
    }

    /* valid rows only: the valid rows of the dense decode, in order */
    if (form == 2) {
        outs_alloc(&alt, rows, g.nch);

        /* scratch: one byte per interval; counts: rows kept per block */
        uint8_t *scratch = (uint8_t *)malloc(g.nint ? g.nint : 1);
        uint32_t *counts = (uint32_t *)calloc(nblocks ? nblocks : 1, sizeof(uint32_t));
        CHECK(scratch && counts);
        st1 = osgp_lp_decode_rows(img, len, &g, blocks, lp, nblocks, alt.values, alt.status,
                                  alt.flags, alt.times, scratch, counts, &nrows, &f1);
        CHECK(st1 == st0);
        if (st0 == OSGP_OK) {
            size_t b, sum = 0;
            for (r = 0, k = 0; r < rows; r++) {
                if (!ref.valid[r])
                    continue;
                CHECK(k < nrows && same_row(&ref, r, &alt, k));
                k++;
            }
            CHECK(k == nrows);
            for (b = 0; b < nblocks; b++) {
                size_t want = 0;
                for (r = b * g.nint; r < (b + 1) * g.nint; r++)
                    want += ref.valid[r] != 0;
                CHECK(counts[b] == want);
                sum += counts[b];
            }
            CHECK(sum == nrows);
        }
        free(scratch);
        free(counts);
        if (st0 != OSGP_OK) {
            CHECK(f1.pc == f0.pc); /* the same failing block; rows before it may be kept */
        }
        outs_free(&alt);
    }

    /* two meters with the same image in one batch call */
    if (form == 3) {
        const uint8_t *ins[2] = {img, img};
        size_t lens[2] = {len, len}, nbs[2] = {nblocks, nblocks}, offs[2] = {0, rows}, failed = 9;
        const uint32_t *bls[2] = {blocks, blocks}, *lls[2] = {lp, lp};
        outs_alloc(&alt, 2 * rows, g.nch);
        st1 = osgp_lp_decode_batch(ins, lens, 2, &g, bls, lp ? lls : NULL, nbs, offs, alt.values,
                                   alt.status, alt.flags, alt.times, alt.valid, &failed, &f1);
        CHECK(st1 == st0 && (st0 != OSGP_OK || failed == 0));
        if (st0 != OSGP_OK)
            CHECK(failed == 0 && same_fault(&f0, &f1));
        for (r = 0; st0 == OSGP_OK && r < 2 * rows; r++)
            CHECK(alt.valid[r] == ref.valid[r % rows] && same_row(&ref, r % rows, &alt, r));
        outs_free(&alt);
    }
    outs_free(&ref);
    free(img);
    return 0;
}
