/*
 * osgp_cmac.c - AES-128-CMAC (NIST SP 800-38B, RFC 4493) = OSGP_MAC of
 * CLC/TS 50586 Annex F, and the counter-mode CMAC KDF in the GKDF shape of
 * RFC 5433 section 4 (the KDF of EAP-GPSK, which the standard cites).
 *
 * SP 800-38B 6.2: M split into n = max(1, ceil(len/16)) blocks; a complete
 * last block is XORed with K1, an incomplete (or empty) one is padded with
 * 10* and XORed with K2; T = MSB_Tlen(C_n).  K1/K2 live in the expanded key.
 */
#include <string.h>

#include "osgp.h"

#define LANES 8

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(OSGP_AES_NO_INTRINSICS)
#define CMAC_HAVE_NI 1
#include <immintrin.h>
#include <wmmintrin.h>
#define LDU(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define STU(p, v) _mm_storeu_si128((__m128i *)(void *)(p), v)
/* The nine middle rounds unrolled (no counter and branch beside each serial
 * round, round keys kept in registers). */
#define OSGP_UNROLL9 _Pragma("GCC unroll 9")

/* One-shot CMAC on AES-NI: the chaining value stays in a register, and each
 * block is folded into the previous block's last round key
 * (aesenclast(y, rk10 ^ rk0 ^ M) = E(previous) ^ M ^ rk0), so only the AES
 * rounds are on the latency-bound chain. */
static __attribute__((target("aes,sse2"))) void ni_cmac(const osgp_aes128_key *k,
                                                         const uint8_t *in, size_t len,
                                                         uint8_t tag[16])
{
    __m128i rk[11], y, last, fold;
    uint8_t blk[16];
    size_t n = len ? (len + 15) / 16 : 1, i, rest;
    int r;
    for (r = 0; r < 11; r++) rk[r] = LDU(k->rk + 16 * r);
    fold = _mm_xor_si128(rk[10], rk[0]);
    rest = len - 16 * (n - 1);
    if (rest == 16) {
        last = _mm_xor_si128(LDU(in + 16 * (n - 1)), LDU(k->k1));
    } else {
        memset(blk, 0, 16);
        memcpy(blk, in + 16 * (n - 1), rest);
        blk[rest] = 0x80;
        last = _mm_xor_si128(LDU(blk), LDU(k->k2));
    }
    y = _mm_xor_si128(n == 1 ? last : LDU(in), rk[0]);
    OSGP_UNROLL9
    for (r = 1; r < 10; r++) y = _mm_aesenc_si128(y, rk[r]);
    for (i = 1; i < n; i++) {
        __m128i m = i + 1 < n ? LDU(in + 16 * i) : last;
        y = _mm_aesenclast_si128(y, _mm_xor_si128(fold, m));
        OSGP_UNROLL9
        for (r = 1; r < 10; r++) y = _mm_aesenc_si128(y, rk[r]);
    }
    STU(tag, _mm_aesenclast_si128(y, rk[10]));
    if (rest != 16) OSGP_WIPE_INLINE(blk, sizeof(blk)); /* blk held the last message bytes */
}

/* LANES messages of one length (>= 1 byte) in lock step on AES-NI: the
 * chains stay in registers, two halves of 4 so that 4 states and their round
 * keys fit the 16 xmm registers. */
#define CMAC_HALF_ROUNDS(X, K)                                                  \
    do {                                                                        \
        int r_, l_;                                                             \
        for (r_ = 1; r_ < 10; r_++)                                             \
            for (l_ = 0; l_ < 4; l_++)                                          \
                (X)[l_] = _mm_aesenc_si128((X)[l_], LDU((K)[l_] + 16 * r_));    \
        for (l_ = 0; l_ < 4; l_++)                                              \
            (X)[l_] = _mm_aesenclast_si128((X)[l_], LDU((K)[l_] + 160));        \
    } while (0)

static __attribute__((target("aes,sse2"))) void ni_cmac_uniform(
    const osgp_aes128_key *const *keys, const uint8_t *const *ins, size_t len, uint8_t *out,
    size_t tag_len)
{
    __m128i x[LANES];
    const uint8_t *k[LANES];
    uint8_t blk[16];
    size_t nb = (len + 15) / 16, rest = len - 16 * (nb - 1), t, l;
    for (l = 0; l < LANES; l++) {
        k[l] = keys[l]->rk;
        x[l] = _mm_setzero_si128();
    }
    for (t = 0; t < nb; t++) {
        for (l = 0; l < LANES; l++) {
            __m128i m;
            if (t + 1 < nb) {
                m = LDU(ins[l] + 16 * t);
            } else if (rest == 16) { /* complete last block: K1 */
                m = _mm_xor_si128(LDU(ins[l] + 16 * t), LDU(keys[l]->k1));
            } else { /* padded last block: K2 */
                memset(blk, 0, 16);
                memcpy(blk, ins[l] + 16 * t, rest);
                blk[rest] = 0x80;
                m = _mm_xor_si128(LDU(blk), LDU(keys[l]->k2));
            }
            x[l] = _mm_xor_si128(_mm_xor_si128(x[l], m), LDU(k[l]));
        }
        CMAC_HALF_ROUNDS(x, k);
        CMAC_HALF_ROUNDS(x + 4, k + 4);
    }
    for (l = 0; l < LANES; l++) {
        STU(blk, x[l]);
        memcpy(out + l * tag_len, blk, tag_len);
    }
    osgp_wipe(blk, sizeof(blk));
    osgp_wipe(x, sizeof(x));
}
#endif

/* ctx->key must carry its subkeys (osgp_cmac_subkeys). */
void osgp_cmac_init(osgp_cmac_ctx *ctx, const osgp_aes128_key *k)
{
    ctx->key = k;
    memset(ctx->x, 0, 16);
    ctx->used = 0;
}

static void absorb(osgp_cmac_ctx *ctx, const uint8_t *blk)
{
    int i;
    for (i = 0; i < 16; i++) ctx->x[i] ^= blk[i];
    osgp_aes128_encrypt_blocks(ctx->key, ctx->x, 1, ctx->x);
}

void osgp_cmac_update(osgp_cmac_ctx *ctx, const uint8_t *in, size_t len)
{
    size_t n;
    if (!len) return;
    /* A full pending block is only absorbed once more data arrives: it may be
     * the last block, which takes K1. */
    if (ctx->used < 16) {
        n = 16 - ctx->used;
        if (n > len) n = len;
        memcpy(ctx->buf + ctx->used, in, n);
        ctx->used += n;
        in += n;
        len -= n;
        if (!len) return;
    }
    absorb(ctx, ctx->buf);
    while (len > 16) {
        absorb(ctx, in);
        in += 16;
        len -= 16;
    }
    memcpy(ctx->buf, in, len);
    ctx->used = len;
}

osgp_status osgp_cmac_final(osgp_cmac_ctx *ctx, uint8_t *out, size_t tag_len)
{
    size_t i;
    if (tag_len < 1 || tag_len > 16) return OSGP_ERR_TAG_LENGTH;
    if (ctx->used == 16) {
        for (i = 0; i < 16; i++) ctx->buf[i] ^= ctx->key->k1[i];
    } else {
        ctx->buf[ctx->used] = 0x80;
        for (i = ctx->used + 1; i < 16; i++) ctx->buf[i] = 0;
        for (i = 0; i < 16; i++) ctx->buf[i] ^= ctx->key->k2[i];
    }
    absorb(ctx, ctx->buf);
    memcpy(out, ctx->x, tag_len);
    osgp_wipe(ctx, sizeof(*ctx));
    return OSGP_OK;
}

osgp_status osgp_cmac(const osgp_aes128_key *k, const uint8_t *in, size_t len, uint8_t *out,
                      size_t tag_len)
{
    osgp_cmac_ctx ctx;
    if (tag_len < 1 || tag_len > 16) return OSGP_ERR_TAG_LENGTH;
    if (!k->has_subkeys) { /* caller skipped osgp_cmac_subkeys: work on a copy */
        osgp_aes128_key tmp = *k;
        osgp_status st;
        osgp_cmac_subkeys(&tmp);
        st = osgp_cmac(&tmp, in, len, out, tag_len);
        osgp_aes128_wipe(&tmp);
        return st;
    }
#if defined(CMAC_HAVE_NI)
    if (osgp_cpu_features() & OSGP_CPU_AESNI) {
        uint8_t t[16];
        if (tag_len == 16) { /* the whole tag: straight to the caller */
            ni_cmac(k, in, len, out);
            return OSGP_OK;
        }
        ni_cmac(k, in, len, t);
        memcpy(out, t, tag_len);
        OSGP_WIPE_INLINE(t, sizeof(t)); /* the truncated-away tag bits */
        return OSGP_OK;
    }
#endif
    osgp_cmac_init(&ctx, k);
    osgp_cmac_update(&ctx, in, len);
    return osgp_cmac_final(&ctx, out, tag_len);
}

/* Block t of message lane i (with the K1/K2 last-block rule) XORed into x. */
static void cmac_block_xor(const osgp_aes128_key *k, const uint8_t *in, size_t len, size_t t,
                           size_t nblocks, uint8_t *x)
{
    size_t off = 16 * t, i, n;
    if (t + 1 < nblocks) {
        for (i = 0; i < 16; i++) x[i] ^= in[off + i];
        return;
    }
    n = len - off;
    if (n == 16) {
        for (i = 0; i < 16; i++) x[i] ^= (uint8_t)(in[off + i] ^ k->k1[i]);
    } else {
        for (i = 0; i < 16; i++) {
            uint8_t b = i < n ? in[off + i] : (i == n ? 0x80 : 0);
            x[i] ^= (uint8_t)(b ^ k->k2[i]);
        }
    }
}

osgp_status osgp_cmac_batch(const osgp_aes128_key *const *keys, const uint8_t *const *ins,
                            const size_t *lens, size_t n, size_t tag_len, uint8_t *out)
{
    uint8_t x[LANES * 16], buf[LANES * 16];
    const osgp_aes128_key *kp[LANES];
    size_t nb[LANES], idx[LANES];
    size_t g, i, m, a, t, maxb;
    if (tag_len < 1 || tag_len > 16) return OSGP_ERR_TAG_LENGTH;
    for (i = 0; i < n; i++)
        if (!keys[i]->has_subkeys) return OSGP_ERR_ARGUMENT; /* see osgp_cmac_subkeys */
    /* CBC chains of up to 8 messages in lock step. */
    for (g = 0; g < n; g += LANES) {
        m = n - g < LANES ? n - g : LANES;
#if defined(CMAC_HAVE_NI)
        if (m == LANES && (osgp_cpu_features() & OSGP_CPU_AESNI) && lens[g] > 0) {
            int uniform = 1;
            for (i = 1; i < m; i++) uniform &= lens[g + i] == lens[g];
            if (uniform) {
                ni_cmac_uniform(keys + g, ins + g, lens[g], out + g * tag_len, tag_len);
                continue;
            }
        }
#endif
        maxb = 0;
        for (i = 0; i < m; i++) {
            nb[i] = lens[g + i] ? (lens[g + i] + 15) / 16 : 1;
            if (nb[i] > maxb) maxb = nb[i];
        }
        memset(x, 0, sizeof(x));
        for (t = 0; t < maxb; t++) {
            a = 0;
            for (i = 0; i < m; i++) {
                if (t >= nb[i]) continue;
                memcpy(buf + 16 * a, x + 16 * i, 16);
                cmac_block_xor(keys[g + i], ins[g + i], lens[g + i], t, nb[i], buf + 16 * a);
                kp[a] = keys[g + i];
                idx[a++] = i;
            }
            osgp_aes128_encrypt_lanes(kp, buf, a);
            for (i = 0; i < a; i++) memcpy(x + 16 * idx[i], buf + 16 * i, 16);
        }
        for (i = 0; i < m; i++) memcpy(out + (g + i) * tag_len, x + 16 * i, tag_len);
    }
    osgp_wipe(x, sizeof(x));
    osgp_wipe(buf, sizeof(buf));
    return OSGP_OK;
}

osgp_status osgp_cmac_kdf(const osgp_aes128_key *k, const uint8_t *in, size_t len, uint8_t *out,
                          size_t out_len)
{
    osgp_cmac_ctx ctx;
    uint8_t blk[16], ctr[2];
    size_t i, nblocks = (out_len + 15) / 16;
    if (nblocks > 0xFFFF) return OSGP_ERR_ARGUMENT; /* counter is 16 bits (RFC 5433 4) */
    if (!k->has_subkeys) return OSGP_ERR_ARGUMENT;
    for (i = 1; i <= nblocks; i++) {
        size_t take = out_len - 16 * (i - 1);
        if (take > 16) take = 16;
        ctr[0] = (uint8_t)(i >> 8);
        ctr[1] = (uint8_t)i;
        osgp_cmac_init(&ctx, k);
        osgp_cmac_update(&ctx, ctr, 2);
        osgp_cmac_update(&ctx, in, len);
        osgp_cmac_final(&ctx, blk, 16);
        memcpy(out + 16 * (i - 1), blk, take);
    }
    osgp_wipe(blk, sizeof(blk));
    return OSGP_OK;
}
