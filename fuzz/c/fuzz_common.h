/*
 * fuzz_common.h - shared helpers of the libFuzzer harnesses in fuzz/c/.
 *
 * A harness reads its parameters from the front of the fuzz input with the
 * take_* readers (a missing byte reads as 0, so every input is usable) and
 * treats the rest as the untrusted bytes.  CHECK aborts, which libFuzzer
 * reports as a crash with the input saved.
 */
#ifndef OSGP_FUZZ_COMMON_H
#define OSGP_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "osgp.h"

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                             \
        }                                                                        \
    } while (0)

typedef struct {
    const uint8_t *p;
    size_t n;
} fz_in;

static inline uint8_t take_u8(fz_in *in)
{
    uint8_t v = 0;
    if (in->n) {
        v = in->p[0];
        in->p++;
        in->n--;
    }
    return v;
}

static inline uint16_t take_u16(fz_in *in)
{
    uint16_t lo = take_u8(in);
    return (uint16_t)(lo | (take_u8(in) << 8));
}

static inline uint32_t take_u32(fz_in *in)
{
    uint32_t lo = take_u16(in);
    return lo | ((uint32_t)take_u16(in) << 16);
}

/* The next k bytes (fewer when the input ends), as a pointer into the input. */
static inline const uint8_t *take_bytes(fz_in *in, size_t *k)
{
    const uint8_t *p = in->p;
    if (*k > in->n)
        *k = in->n;
    in->p += *k;
    in->n -= *k;
    return p;
}

/* Heap copy of exactly len bytes, so ASan sees any read past the end
 * (libFuzzer's own buffer is exact too, but sub-ranges of it are not). */
static inline uint8_t *fz_dup(const uint8_t *p, size_t len)
{
    uint8_t *q = (uint8_t *)malloc(len ? len : 1);
    CHECK(q != NULL);
    if (len)
        memcpy(q, p, len);
    return q;
}

/* Key of the MEP harnesses: the default MAK 01 x 16 (MEP guide p.15) so the
 * published frames of the seed corpus verify, cut to 6 or 12 bytes or an
 * invalid length by the selector. */
static const uint8_t fz_mak[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

static inline size_t fz_key_len(unsigned sel)
{
    static const size_t lens[8] = {16, 16, 16, 16, 12, 6, 0, 7};
    return lens[sel & 7];
}

/* The MAK, or (selector bit 3) 16 key bytes from the input. */
static inline void fz_take_key(fz_in *in, unsigned sel, uint8_t key[16])
{
    memcpy(key, fz_mak, 16);
    if (sel & 8) {
        size_t k = 16;
        const uint8_t *p = take_bytes(in, &k);
        memcpy(key, p, k);
    }
}

/* max_message of the MEP harnesses from selector bits 5-7 (7: from the input). */
static inline size_t fz_max_message(unsigned sel, fz_in *in)
{
    static const size_t m[7] = {65535, 2048, 512, 100, 21, 13, 0};
    sel = (sel >> 5) & 7;
    return sel < 7 ? m[sel] : take_u16(in);
}

#endif
