/*
 * osgp_oma.c - the OMA digest (CLC/TS 50586 Annex E; OSGP Alliance MEP guide
 * Appendix A "Digest()", p.250-253) and the ISO/IEC 14908-1 authentication
 * function it derives from (EN 14908-1 challenge/response; izot/lon-stack-dx
 * lcs_tsa.c Encrypt()).
 *
 * One step of both, for state byte v (7, 6, ..., 0), message byte m and key
 * bit k (key bytes LSB first):
 *     n = ~(d[v] + v)
 *     d[v] = d[(v+1) mod 8] + m + (k ? rotl8(n, 1) : -rotr8(n, 1))   (mod 256)
 * d[(v+1) mod 8] is always the byte the previous step wrote.
 * A block is 8 * iterations bytes; iterations = key length for a 6-byte key,
 * 1.5 x key length otherwise (12 -> 18, 16 -> 24; MEP App. A
 * DIGEBT_KEY_ITERATIONS).  The last block is zero padded; an empty message is
 * one block of zeros (App. A: bEnd with apduSize 0 runs the key once).
 */
#include <string.h>

#include "osgp.h"

static unsigned oma_iterations(size_t key_len)
{
    switch (key_len) {
    case 6: return 6;
    case 12: return 18;
    case 16: return 24;
    default: return 0;
    }
}

/* Keeps the compiler from re-associating (m + r) + prev into (prev + r) + m,
 * which would put two adds per step on the critical path (about 1.6x slower
 * measured with GCC 12). */
#if defined(__GNUC__) || defined(__clang__)
#define OMA_OPAQUE(x) __asm__("" : "+r"(x))
#else
#define OMA_OPAQUE(x) ((void)0)
#endif

#define ROTL1(n) ((uint8_t)(((n) << 1) | ((n) >> 7)))
#define ROTR1(n) ((uint8_t)(((n) >> 1) | ((n) << 7)))

/* Eight 0x00/0xFF masks, byte t = bit t of key byte kb (LSB first), computed
 * without branches or tables indexed by key bits (constant time):
 * broadcast kb, keep bit t in byte t, turn each non-zero byte into 0xFF
 * (b + 0x7F sets bit 7 iff b != 0 and never carries, since b <= 0x80). */
static inline uint64_t oma_bit_masks(unsigned kb)
{
    uint64_t x = ((uint64_t)kb * 0x0101010101010101ULL) & 0x8040201008040201ULL;
    return (((x + 0x7F7F7F7F7F7F7F7FULL) & 0x8080808080808080ULL) >> 7) * 0xFF;
}

/* One step on state byte V (compile-time constant) with key-bit mask MASK
 * (0xFF: rotl branch, 0x00: -rotr branch), selected arithmetically so no
 * branch depends on the key.  PREV is added last so only one add sits on the
 * dependency chain from one step to the next. */
#define OMA_STEP(V, PREV, M, MASK)                                                  \
    do {                                                                            \
        uint8_t n_ = (uint8_t)~(uint8_t)(d##V + (V));                               \
        uint8_t up_ = ROTL1(n_), down_ = (uint8_t)(0u - ROTR1(n_));                 \
        uint8_t t_ = (uint8_t)((M) + (down_ ^ ((up_ ^ down_) & (uint8_t)(MASK))));  \
        OMA_OPAQUE(t_);                                                             \
        d##V = (uint8_t)(t_ + (PREV));                                              \
    } while (0)

/* g groups of 8 bytes (one key byte each), starting at key-byte index i0 of
 * the block; the caller guarantees the groups do not cross a block end. */
static void oma_groups(uint8_t d[8], const uint8_t *key, unsigned key_len, unsigned i0,
                       const uint8_t *m, size_t g)
{
    uint8_t d0 = d[0], d1 = d[1], d2 = d[2], d3 = d[3];
    uint8_t d4 = d[4], d5 = d[5], d6 = d[6], d7 = d[7];
    unsigned ki = i0 % key_len;
    while (g--) {
        uint64_t km = oma_bit_masks(key[ki]);
        if (++ki == key_len) ki = 0;
        OMA_STEP(7, d0, m[0], km);
        OMA_STEP(6, d7, m[1], km >> 8);
        OMA_STEP(5, d6, m[2], km >> 16);
        OMA_STEP(4, d5, m[3], km >> 24);
        OMA_STEP(3, d4, m[4], km >> 32);
        OMA_STEP(2, d3, m[5], km >> 40);
        OMA_STEP(1, d2, m[6], km >> 48);
        OMA_STEP(0, d1, m[7], km >> 56);
        m += 8;
    }
    d[0] = d0; d[1] = d1; d[2] = d2; d[3] = d3;
    d[4] = d4; d[5] = d5; d[6] = d6; d[7] = d7;
}

/* One step at block position pos (any alignment), branch-free like OMA_STEP. */
static void oma_byte(uint8_t d[8], const uint8_t *key, unsigned key_len, unsigned pos, uint8_t m)
{
    unsigned t = pos & 7, v = 7 - t;
    uint8_t mask = (uint8_t)(0u - ((key[(pos >> 3) % key_len] >> t) & 1u));
    uint8_t n = (uint8_t)~(uint8_t)(d[v] + v);
    uint8_t up = ROTL1(n), down = (uint8_t)(0u - ROTR1(n));
    d[v] = (uint8_t)((uint8_t)(m + (uint8_t)(down ^ ((up ^ down) & mask))) + d[(v + 1) & 7]);
}

osgp_status osgp_oma_init(osgp_oma_ctx *ctx, const uint8_t *key, size_t key_len)
{
    if (oma_iterations(key_len) == 0) return OSGP_ERR_KEY_LENGTH;
    memset(ctx, 0, sizeof(*ctx));
    memcpy(ctx->key, key, key_len);
    ctx->key_len = (uint8_t)key_len;
    return OSGP_OK;
}

static void oma_absorb(uint8_t d[8], uint16_t *pos_io, const uint8_t *key, unsigned key_len,
                       const uint8_t *in, size_t len)
{
    unsigned block = 8 * oma_iterations(key_len);
    unsigned pos = *pos_io;
    while (len) {
        if ((pos & 7) == 0 && len >= 8) {
            size_t g = len >> 3, room = (block - pos) >> 3;
            if (g > room) g = room;
            oma_groups(d, key, key_len, pos >> 3, in, g);
            in += 8 * g;
            len -= 8 * g;
            pos += (unsigned)(8 * g);
        } else {
            oma_byte(d, key, key_len, pos, *in++);
            len--;
            pos++;
        }
        if (pos == block) pos = 0;
    }
    *pos_io = (uint16_t)pos;
}

void osgp_oma_update(osgp_oma_ctx *ctx, const uint8_t *in, size_t len)
{
    if (len == 0) return;
    ctx->fed = 1;
    oma_absorb(ctx->d, &ctx->pos, ctx->key, ctx->key_len, in, len);
}

static const uint8_t zeros[OSGP_OMA_MAX_BLOCK];

void osgp_oma_final(const osgp_oma_ctx *ctx, uint8_t out[8])
{
    uint8_t d[8];
    uint16_t pos = ctx->pos;
    unsigned block = 8 * oma_iterations(ctx->key_len);
    memcpy(d, ctx->d, 8);
    /* Zero padding to the block end; an empty message is one zero block. */
    if (pos != 0 || !ctx->fed) oma_absorb(d, &pos, ctx->key, ctx->key_len, zeros, block - pos);
    memcpy(out, d, 8);
}

osgp_status osgp_oma_digest(const uint8_t *key, size_t key_len, const uint8_t *in, size_t len,
                            uint8_t out[8])
{
    unsigned iters = oma_iterations(key_len);
    if (iters == 0) return OSGP_ERR_KEY_LENGTH;
    unsigned block = 8 * iters;
    uint8_t d[8] = {0};
    size_t whole = len / block * block;
    size_t i;
    for (i = 0; i < whole; i += block) oma_groups(d, key, (unsigned)key_len, 0, in + i, iters);
    if (len - whole || len == 0) {
        uint8_t last[OSGP_OMA_MAX_BLOCK] = {0};
        memcpy(last, in + whole, len - whole);
        oma_groups(d, key, (unsigned)key_len, 0, last, iters);
    }
    memcpy(out, d, 8);
    return OSGP_OK;
}

osgp_status osgp_en14908_auth(const uint8_t challenge[8], const uint8_t *key, size_t key_len,
                              const uint8_t *oma_address, const uint8_t *in, size_t len,
                              uint8_t out[8])
{
    /* 6-byte key: one pass = 6 key bytes (classic); 12-byte key: OMA mode, key
     * bytes 0..11 then 0..5 (lcs_tsa.c Encrypt, keyIterations). */
    unsigned iters;
    if (key_len == 6) iters = 6;
    else if (key_len == 12) iters = 18;
    else return OSGP_ERR_KEY_LENGTH;
    if (oma_address != NULL && key_len != 12) return OSGP_ERR_ARGUMENT;
    uint8_t d[8];
    memcpy(d, challenge, 8);
    size_t total = len + (oma_address ? 8 : 0);
    size_t remaining = total;
    /* Bytes are consumed from the end of (oma_address || data) to its start;
     * past the start the message byte is 0.  do-while: an empty message still
     * makes one pass (needed by the PLC RC4 key derivation, docs/protocol.md §2.4). */
    do {
        unsigned i;
        for (i = 0; i < iters; i++) {
            unsigned kb = key[i % key_len];
            int j;
            for (j = 7; j >= 0; j--) {
                uint8_t m = 0;
                if (remaining > 0) {
                    remaining--;
                    m = remaining >= total - len ? in[remaining - (total - len)]
                                                 : oma_address[remaining];
                }
                uint8_t mask = (uint8_t)(0u - ((kb >> (7 - j)) & 1u));
                uint8_t n = (uint8_t)~(uint8_t)(d[j] + j);
                uint8_t up = ROTL1(n), down = (uint8_t)(0u - ROTR1(n));
                d[j] = (uint8_t)(d[(j + 1) & 7] + m + (uint8_t)(down ^ ((up ^ down) & mask)));
            }
        }
    } while (remaining > 0);
    memcpy(out, d, 8);
    return OSGP_OK;
}
