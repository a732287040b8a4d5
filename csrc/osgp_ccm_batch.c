/*
 * osgp_ccm_batch.c - AES-128-CCM (NIST SP 800-38C, RFC 3610) over many
 * messages: osgp_ccm_seal_batch / osgp_ccm_open_batch (OSGP_AE / OSGP_AD of
 * CLC/TS 50586 Annex F, for hosts talking to many devices).
 *
 * Formatting as in osgp_ccm.c (SP 800-38C A.2, A.3), q = 15 - n:
 *   B0    = flags || N || Q   flags = 64*Adata + 8*((t-2)/2) + (q-1), Q = len (q bytes BE)
 *   A1..  = enc(a) || A zero-padded (enc(a) = 2 bytes BE when a < 2^16 - 2^8)
 *   Ctr_i = (q-1) || N || i (q bytes BE); S0 = E(Ctr_0) masks the tag.
 *
 * Four paths:
 *   - fast16 (VAES + AVX2): the fast shape below for 16 messages at once,
 *     lane pairs in ymm registers (two blocks a vaesenc).
 *   - fast (AES-NI + SSSE3): groups of 8 messages whose payloads have the same
 *     number of 16-byte blocks and whose AADs are all empty or all 1..14 bytes
 *     (one formatted AAD block).  Keys, nonces, exact lengths and AAD lengths
 *     may differ per message.  B0 / Ctr_i / A1 are built in registers (the
 *     nonce by two overlapping loads and one byte shuffle), partial blocks by
 *     overlapping 8/4/2/1-byte loads and stores (never a byte outside the
 *     message), and all 8 CBC-MACs and 8 counter blocks of a step go through
 *     the rounds together (16 independent blocks: the AES units stay busy).
 *   - group (AES-NI): any other group, via the generic lane formatting.
 *   - portable: lock-step CBC-MAC lanes and the keystream queue of osgp_ccm.c.
 * A 32-byte seal without AAD is 6 AES blocks (3 serial CBC-MAC, 3 CTR).  On
 * the reference EPYC (measured: aesenc ~1 block a cycle, vaesenc ~2 blocks a
 * cycle with 12+ independent chains) that bounds fast at ~60 cycles and
 * fast16 at ~30 cycles a message; lock step makes the chains independent.
 */
#include <string.h>

#include "osgp.h"
#include "osgp_ccm_internal.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(OSGP_AES_NO_INTRINSICS)
#define CCM_HAVE_NI 1
#include <immintrin.h>
#include <wmmintrin.h>
#define CCM_NI_ATTR __attribute__((target("aes,sse2")))
#define LDU(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define STU(p, v) _mm_storeu_si128((__m128i *)(void *)(p), v)
/* Counter block i: Ctr_0 (counter field zero) OR i as a 64-bit big-endian
 * number in bytes 8..15 (i < 2^(8q) by osgp_ccm_check: the nonce stays intact). */
#define NI_CTR(tmpl, i) \
    _mm_or_si128((tmpl), _mm_set_epi64x((long long)__builtin_bswap64((uint64_t)(i)), 0))
#endif

#if defined(CCM_HAVE_NI)
/* ---- group path: any mix of lengths and AADs -------------------------------- */

/* A group of m <= LANES messages on AES-NI, fused lock step: at step t every
 * lane contributes its CBC-MAC block t and the counter blocks that go with it
 * (seal: Ctr_0 at t = 0 and the counter of payload block t; open: Ctr_0 at
 * t = 0 and the keystream of block t+1, which the next step decrypts before
 * MACing it).  Up to 3 blocks a lane, all in flight together. */
enum { K_MAC, K_S0, K_OUT, K_KS };

/* Fixed-width bodies (constant trip counts) so every state stays in a
 * register and the rounds of the N blocks interleave. */
#define NI_PTRS_BODY(N)                                                            \
    do {                                                                           \
        __m128i v[N];                                                              \
        int r_, i_;                                                                \
        for (i_ = 0; i_ < (N); i_++) v[i_] = _mm_xor_si128(s[i_], LDU(kp[i_]));    \
        for (r_ = 1; r_ < 10; r_++)                                                \
            for (i_ = 0; i_ < (N); i_++)                                           \
                v[i_] = _mm_aesenc_si128(v[i_], LDU(kp[i_] + 16 * r_));            \
        for (i_ = 0; i_ < (N); i_++) s[i_] = _mm_aesenclast_si128(v[i_], LDU(kp[i_] + 160)); \
    } while (0)

static CCM_NI_ATTR void ni_enc_ptrs(const uint8_t *const *kp, __m128i *s, size_t c)
{
    while (c >= 8) {
        NI_PTRS_BODY(8);
        kp += 8;
        s += 8;
        c -= 8;
    }
    if (c >= 4) {
        NI_PTRS_BODY(4);
        kp += 4;
        s += 4;
        c -= 4;
    }
    if (c >= 2) {
        NI_PTRS_BODY(2);
        kp += 2;
        s += 2;
        c -= 2;
    }
    if (c) NI_PTRS_BODY(1);
}

static CCM_NI_ATTR void ni_ccm_group(ccm_lane *L, size_t m, const uint8_t *const *ins,
                                     uint8_t *const *outs, int decrypt, uint8_t (*tags)[16])
{
    __m128i xs[LANES], s0v[LANES], ksv[LANES], pv[LANES], s[3 * LANES];
    const uint8_t *kp[3 * LANES];
    uint8_t lane_of[3 * LANES], kind[3 * LANES];
    uint8_t blk[16];
    size_t t, maxb = 0, l, i, c;
    for (l = 0; l < m; l++) {
        xs[l] = _mm_setzero_si128();
        ksv[l] = s0v[l] = pv[l] = xs[l];
        if (L[l].nblocks > maxb) maxb = L[l].nblocks;
    }
    for (t = 0; t < maxb; t++) {
        c = 0;
        for (l = 0; l < m; l++) {
            const ccm_lane *A = &L[l];
            __m128i mi;
            if (t >= A->nblocks) continue;
            if (t == 0) {
                mi = LDU(A->b0);
            } else if (t <= A->n_aad) {
                lane_block(A, t, blk);
                mi = LDU(blk);
            } else {
                size_t j = t - A->n_aad, off = 16 * (j - 1), n = A->len - off;
                __m128i v;
                if (n >= 16) {
                    v = LDU(ins[l] + off);
                } else {
                    memset(blk, 0, 16);
                    memcpy(blk, ins[l] + off, n);
                    v = LDU(blk);
                }
                if (!decrypt) {
                    mi = pv[l] = v;
                    s[c] = NI_CTR(LDU(A->ctr0), j);
                    kp[c] = A->key->rk;
                    lane_of[c] = (uint8_t)l;
                    kind[c++] = K_OUT;
                } else {
                    mi = _mm_xor_si128(v, ksv[l]);
                    if (n >= 16) {
                        STU(outs[l] + off, mi);
                    } else {
                        STU(blk, mi);
                        memcpy(outs[l] + off, blk, n);
                        memset(blk + n, 0, 16 - n); /* MAC the zero-padded plaintext */
                        mi = LDU(blk);
                    }
                }
            }
            s[c] = _mm_xor_si128(xs[l], mi);
            kp[c] = A->key->rk;
            lane_of[c] = (uint8_t)l;
            kind[c++] = K_MAC;
            if (t == 0) {
                s[c] = LDU(A->ctr0);
                kp[c] = A->key->rk;
                lane_of[c] = (uint8_t)l;
                kind[c++] = K_S0;
            }
            if (decrypt && t + 1 < A->nblocks && t + 1 > A->n_aad) {
                s[c] = NI_CTR(LDU(A->ctr0), t + 1 - A->n_aad);
                kp[c] = A->key->rk;
                lane_of[c] = (uint8_t)l;
                kind[c++] = K_KS;
            }
        }
        ni_enc_ptrs(kp, s, c);
        for (i = 0; i < c; i++) {
            l = lane_of[i];
            switch (kind[i]) {
            case K_MAC: xs[l] = s[i]; break;
            case K_S0: s0v[l] = s[i]; break;
            case K_KS: ksv[l] = s[i]; break;
            default: {
                size_t off = 16 * (t - L[l].n_aad - 1), n = L[l].len - off;
                __m128i o = _mm_xor_si128(s[i], pv[l]);
                if (n >= 16) {
                    STU(outs[l] + off, o);
                } else {
                    STU(blk, o);
                    memcpy(outs[l] + off, blk, n);
                }
            }
            }
        }
    }
    for (l = 0; l < m; l++) STU(tags[l], _mm_xor_si128(xs[l], s0v[l]));
    osgp_wipe(blk, sizeof(blk));
    osgp_wipe(xs, sizeof(xs));
    osgp_wipe(s0v, sizeof(s0v));
    osgp_wipe(ksv, sizeof(ksv));
    osgp_wipe(pv, sizeof(pv));
    osgp_wipe(s, sizeof(s));
}

/* ---- fast path ------------------------------------------------------------------ */

/* Only fast_nonce needs SSSE3 (pshufb); the helpers are plain AES-NI + SSE2
 * so that ni_batch also runs where the dispatch allows AES-NI alone. */
#define FAST_ATTR __attribute__((noinline, target("aes,sse2,ssse3")))
#define FAST_INLINE static inline __attribute__((always_inline, target("aes,sse2,ssse3")))
#define NI_INLINE static inline __attribute__((always_inline, target("aes,sse2")))
#define HALF (LANES / 2)
#if defined(__clang__)
#define FAST_UNROLL _Pragma("unroll")
#else
#define FAST_UNROLL _Pragma("GCC unroll 16")
#endif
#define FAST_MAX_AAD 14 /* 2-byte enc(a) + 14 bytes = one block (A.2.2) */

static inline uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void st64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void st16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* p[0..r) (r <= 16) into the low bytes of a vector, zero above; reads no byte
 * outside p[0..r): two overlapping loads of the widest fitting size (x86 is
 * little-endian: byte i of a loaded word is p[i]). */
NI_INLINE __m128i load_part(const uint8_t *p, size_t r)
{
    uint64_t lo, hi = 0;
    if (r >= 16) return LDU(p);
    if (r >= 8) {
        lo = ld64(p);
        if (r > 8) hi = ld64(p + r - 8) >> (8 * (16 - r)); /* p[8..r) */
    } else if (r >= 4) {
        lo = (uint64_t)ld32(p) | (uint64_t)ld32(p + r - 4) << (8 * (r - 4));
    } else if (r >= 2) {
        lo = (uint64_t)ld16(p) | (uint64_t)ld16(p + r - 2) << (8 * (r - 2));
    } else {
        lo = r ? p[0] : 0;
    }
    return _mm_set_epi64x((long long)hi, (long long)lo);
}

/* Bytes 0..r-1 of v to p[0..r) (r <= 16), overlapping stores, nothing beyond. */
NI_INLINE void store_part(uint8_t *p, __m128i v, size_t r)
{
    uint64_t lo, hi;
    if (r >= 16) {
        STU(p, v);
        return;
    }
    lo = (uint64_t)_mm_cvtsi128_si64(v);
    hi = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v));
    if (r >= 8) {
        st64(p, lo);
        if (r > 8) st64(p + r - 8, (lo >> (8 * (r - 8))) | (hi << (8 * (16 - r))));
    } else if (r >= 4) {
        st32(p, (uint32_t)lo);
        st32(p + r - 4, (uint32_t)(lo >> (8 * (r - 4))));
    } else if (r >= 2) {
        st16(p, (uint16_t)lo);
        st16(p + r - 2, (uint16_t)(lo >> (8 * (r - 2))));
    } else if (r) {
        p[0] = (uint8_t)lo;
    }
}

/* 0xFF in bytes 0..r-1: loadu(ONES_ZEROS + 16 - r), r = 0..16. */
static const uint8_t ONES_ZEROS[32] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                       0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

/* Rounds 1..10 of 4 lanes x 2 blocks (round key 0 already XORed in): 8 blocks
 * in flight hide the 4-cycle aesenc latency at 2 a cycle, and 8 states plus
 * one round key fit the 16 xmm registers. */
NI_INLINE void fast_half(__m128i *xm, __m128i *em, const uint8_t *const *k, int same)
{
    /* Local copies: the round keys are read through byte pointers that could
     * alias *xm / *em, so without them every round would go through memory. */
    __m128i x[HALF], e[HALF];
    int r, l;
    for (l = 0; l < HALF; l++) {
        x[l] = xm[l];
        e[l] = em[l];
    }
    if (same) {
        for (r = 1; r < 10; r++) {
            __m128i kr = LDU(k[0] + 16 * r);
            for (l = 0; l < HALF; l++) {
                x[l] = _mm_aesenc_si128(x[l], kr);
                e[l] = _mm_aesenc_si128(e[l], kr);
            }
        }
        {
            __m128i kr = LDU(k[0] + 160);
            for (l = 0; l < HALF; l++) {
                x[l] = _mm_aesenclast_si128(x[l], kr);
                e[l] = _mm_aesenclast_si128(e[l], kr);
            }
        }
    } else {
        for (r = 1; r < 10; r++)
            for (l = 0; l < HALF; l++) {
                x[l] = _mm_aesenc_si128(x[l], LDU(k[l] + 16 * r));
                e[l] = _mm_aesenc_si128(e[l], LDU(k[l] + 16 * r));
            }
        for (l = 0; l < HALF; l++) {
            x[l] = _mm_aesenclast_si128(x[l], LDU(k[l] + 160));
            e[l] = _mm_aesenclast_si128(e[l], LDU(k[l] + 160));
        }
    }
    for (l = 0; l < HALF; l++) {
        xm[l] = x[l];
        em[l] = e[l];
    }
}

/* VAES groups (see fast16 below): WLANES = 16 messages with one key. */
#define WLANES 16
#define WHALF (WLANES / 2)

/* Batch-wide constants of the fast path. */
typedef struct {
    __m128i nmask;   /* pshufb: loaded nonce words -> bytes 1..n of B0 / Ctr_0 */
    __m128i cflag;   /* byte 0 of Ctr_i: q - 1 (A.3) */
    __m128i bflag[2]; /* byte 0 of B0 without / with AAD (A.2.1) */
    __m128i tmask;   /* 0xFF in the tag_len first bytes */
    size_t nonce_len, tag_len;
} fast_consts;

static CCM_NI_ATTR void fast_setup(fast_consts *C, size_t nonce_len, size_t tag_len)
{
    uint8_t m[16];
    unsigned q = (unsigned)(15 - nonce_len), i, j;
    /* Loaded words: n >= 8: N[0..8) in bytes 0..7 and N[n-8..n) in 8..15;
     * n = 7: N[0..4) in bytes 0..3 and N[3..7) in 4..7.  Output byte i
     * (1..n) takes nonce byte j = i - 1; 0x80 gives a zero byte. */
    for (i = 0; i < 16; i++) {
        m[i] = 0x80;
        if (i == 0 || i > nonce_len) continue;
        j = i - 1;
        if (nonce_len >= 8)
            m[i] = (uint8_t)(j < 8 ? j : j + 16 - nonce_len);
        else
            m[i] = (uint8_t)(j < 4 ? j : j + 1);
    }
    memcpy(&C->nmask, m, 16);
    C->cflag = _mm_cvtsi32_si128((int)(q - 1));
    C->bflag[0] = _mm_cvtsi32_si128((int)((((tag_len - 2) / 2) << 3) | (q - 1)));
    C->bflag[1] = _mm_cvtsi32_si128((int)(0x40 | (((tag_len - 2) / 2) << 3) | (q - 1)));
    memcpy(&C->tmask, ONES_ZEROS + 16 - tag_len, 16);
    C->nonce_len = nonce_len;
    C->tag_len = tag_len;
}

/* Bytes 1..n of B0 / Ctr_0: N, the rest zero (A.2.1, A.3). */
FAST_INLINE __m128i fast_nonce(const fast_consts *C, const uint8_t *np)
{
    __m128i v;
    if (C->nonce_len >= 8)
        v = _mm_set_epi64x((long long)ld64(np + C->nonce_len - 8), (long long)ld64(np));
    else
        v = _mm_set_epi32(0, 0, (int)ld32(np + 3), (int)ld32(np));
    return _mm_shuffle_epi8(v, C->nmask);
}

/* Can the m <= LANES messages (payload lengths plen[], AAD lengths alen[])
 * run on the fast path?  Returns the number of AAD blocks (0 or 1) and the
 * common payload block count in *nb, or -1. */
static int fast_shape(const size_t *plen, const size_t *alen, size_t m, size_t *nb)
{
    size_t l, b = (plen[0] + 15) / 16;
    int na = alen[0] != 0;
    for (l = 0; l < m; l++)
        if ((plen[l] + 15) / 16 != b || (alen[l] != 0) != na || alen[l] > FAST_MAX_AAD) return -1;
    *nb = b;
    return na;
}

/* Lane state of one fast group (kept by the caller, wiped once at the end). */
typedef struct {
    __m128i x[WLANES];  /* CBC-MAC values (pre-whitened while in flight) */
    __m128i e[WLANES];  /* counter blocks -> keystream */
    __m128i s0[WLANES]; /* E(Ctr_0) */
    __m128i ks[WLANES]; /* open: keystream of the next payload block */
    __m128i p[WLANES];  /* seal: next plaintext block, zero-padded */
    __m128i tm[WLANES]; /* Ctr_0 */
    /* VAES round keys of per-lane-key groups: kb[i][r] = round key r of
     * lanes 2i (low) and 2i+1 (high).  Key material: in this struct so that
     * the one wipe at the end covers it. */
    __m256i kb[WHALF][11];
} fast_state;

/* One group of m <= LANES messages of the fast shape (na AAD blocks, nb
 * payload blocks each).  Step t = 0 .. na + nb puts MAC block t (B0, A1, then
 * payload block j = t - na) and counter block c = t + 1 - na (Ctr_0 instead
 * of Ctr_nb+1) of every lane through the rounds together:
 *   seal: E(Ctr_c) encrypts plaintext block c, loaded now and MACed next step;
 *   open: E(Ctr_c) is kept and decrypts block c = j + 1 next step, just before
 *         its plaintext is MACed.
 * G = LANES lanes; dummy lanes m..G-1 compute on zeros and touch no memory.  Writes the 16-byte
 * tags T ^ S0 (A.2, 38C 6.1 step 8) to tag[]. */
FAST_INLINE void fast_group(const fast_consts *C, fast_state *S, const uint8_t *const *k,
                            int same, const uint8_t *const *np, const uint8_t *const *ap,
                            const size_t *alen, int na, const uint8_t *const *in,
                            uint8_t *const *out, const size_t *plen, size_t nb, size_t m,
                            int decrypt, size_t G, __m128i *tag)
{
    size_t t, l, steps = (size_t)na + nb + 1;
#define K0(l) LDU(k[same ? 0 : (l)]) /* round key 0 of lane l */
    FAST_UNROLL
    for (l = 0; l < G; l++) {
        __m128i b0 = _mm_setzero_si128();
        S->tm[l] = b0;
        S->p[l] = b0; /* dummy lanes MAC zeros */
        if (l < m) {
            __m128i nv = fast_nonce(C, np[l]);
            S->tm[l] = _mm_or_si128(nv, C->cflag);
            b0 = _mm_or_si128(_mm_or_si128(nv, C->bflag[na]),
                              _mm_set_epi64x((long long)__builtin_bswap64((uint64_t)plen[l]), 0));
        }
        S->x[l] = _mm_xor_si128(b0, K0(l));
    }
    for (t = 0; t < steps; t++) {
        size_t c = t + 1 - (size_t)na;
        __m128i cv;
        if (c == nb + 1) c = 0;
        cv = _mm_set_epi64x((long long)__builtin_bswap64((uint64_t)c), 0);
        /* MAC input of step t: B0 (already in x), A1, or payload block t - na */
        if (t > 0 && (size_t)na == t) {
            FAST_UNROLL
            for (l = 0; l < G; l++) {
                /* A1 = a (2 bytes BE, a <= 14) || A || zeros (A.2.2) */
                __m128i mi = _mm_setzero_si128();
                if (l < m)
                    mi = _mm_or_si128(_mm_slli_si128(load_part(ap[l], alen[l]), 2),
                                      _mm_cvtsi32_si128((int)(alen[l] << 8)));
                S->x[l] = _mm_xor_si128(S->x[l], _mm_xor_si128(mi, K0(l)));
            }
        } else if (t > 0 && !decrypt) {
            FAST_UNROLL
            for (l = 0; l < G; l++) S->x[l] = _mm_xor_si128(S->x[l], _mm_xor_si128(S->p[l], K0(l)));
        } else if (t > 0) {
            size_t off = 16 * (t - (size_t)na - 1);
            FAST_UNROLL
            for (l = 0; l < G; l++) {
                __m128i mi = _mm_setzero_si128();
                if (l < m) {
                    size_t r = plen[l] - off;
                    __m128i v;
                    if (r > 16) r = 16;
                    v = _mm_xor_si128(load_part(in[l] + off, r), S->ks[l]);
                    store_part(out[l] + off, v, r);
                    mi = _mm_and_si128(v, LDU(ONES_ZEROS + 16 - r)); /* zero padding */
                }
                S->x[l] = _mm_xor_si128(S->x[l], _mm_xor_si128(mi, K0(l)));
            }
        }
        FAST_UNROLL
        for (l = 0; l < G; l++) S->e[l] = _mm_xor_si128(_mm_or_si128(S->tm[l], cv), K0(l));
        fast_half(S->x, S->e, k, same);
        fast_half(S->x + HALF, S->e + HALF, k + HALF, same);
        if (c == 0) {
            for (l = 0; l < m; l++) S->s0[l] = S->e[l];
        } else if (!decrypt) {
            size_t off = 16 * (c - 1);
            FAST_UNROLL
            for (l = 0; l < G; l++) {
                if (l < m) {
                    size_t r = plen[l] - off;
                    if (r > 16) r = 16;
                    S->p[l] = load_part(in[l] + off, r);
                    store_part(out[l] + off, _mm_xor_si128(S->p[l], S->e[l]), r);
                }
            }
        } else {
            for (l = 0; l < m; l++) S->ks[l] = S->e[l];
        }
    }
#undef K0
    for (l = 0; l < m; l++) tag[l] = _mm_xor_si128(S->x[l], S->s0[l]);
}

/* The same schedule on VAES (two blocks an instruction) for WLANES = 16
 * messages.  Measured on the reference EPYC (Zen class): 128-bit aesenc runs
 * ~1 block a cycle, vaesenc ~2 blocks a cycle but only with 12+ independent
 * ymm chains in flight, hence 16 lanes: lanes 2i and 2i+1 share ymm register
 * i, the 8 MAC and 8 counter registers stay in registers through the rounds
 * and the round keys are memory operands, built once a group (one key: 11
 * broadcasts in a local array; per-lane keys: each pair's two keys side by
 * side in S->kb).  Per-lane formatting is 128-bit; lane pairs meet through
 * 256-bit loads of adjacent fast_state entries. */
#define VAES_INLINE static inline __attribute__((always_inline, target("vaes,avx2,aes,sse2,ssse3")))
#define LD256(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define ST256(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), v)
VAES_INLINE void fast16(const fast_consts *C, fast_state *S, const uint8_t *const *k, int same,
                        const uint8_t *const *np, const uint8_t *const *ap, const size_t *alen,
                        int na, const uint8_t *const *in, uint8_t *const *out,
                        const size_t *plen, size_t nb, size_t m, int decrypt, __m128i *tag)
{
    __m256i X[WHALF], E[WHALF];
    size_t t, l, i, r, steps = (size_t)na + nb + 1;
    /* round key r of pair i, a 256-bit memory operand */
    /* One key: the 11 broadcast round keys in a local array (faster than
     * S->kb: a wiped array's address escapes and then every store to *S may
     * alias it; measured 16 vs 20 ns a message).  ni_batch clears the stack
     * these frames used (stack_burn).  Per-lane keys: pairs in S->kb. */
    __m256i kb1[11];
#define KB(i, r) (same ? kb1[r] : S->kb[i][r])
    if (same)
        for (r = 0; r < 11; r++) kb1[r] = _mm256_broadcastsi128_si256(LDU(k[0] + 16 * r));
    else
        for (i = 0; i < WHALF; i++)
            for (r = 0; r < 11; r++)
                S->kb[i][r] =
                    _mm256_set_m128i(LDU(k[2 * i + 1] + 16 * r), LDU(k[2 * i] + 16 * r));
    FAST_UNROLL
    for (l = 0; l < WLANES; l++) {
        __m128i b0 = _mm_setzero_si128();
        S->tm[l] = b0;
        S->p[l] = b0; /* dummy lanes MAC zeros */
        if (l < m) {
            __m128i nv = fast_nonce(C, np[l]);
            S->tm[l] = _mm_or_si128(nv, C->cflag);
            b0 = _mm_or_si128(_mm_or_si128(nv, C->bflag[na]),
                              _mm_set_epi64x((long long)__builtin_bswap64((uint64_t)plen[l]), 0));
        }
        S->x[l] = b0;
    }
    for (i = 0; i < WHALF; i++) X[i] = _mm256_xor_si256(LD256(&S->x[2 * i]), KB(i, 0));
    for (t = 0; t < steps; t++) {
        size_t c = t + 1 - (size_t)na;
        __m256i cv;
        if (c == nb + 1) c = 0;
        cv = _mm256_broadcastsi128_si256(
            _mm_set_epi64x((long long)__builtin_bswap64((uint64_t)c), 0));
        if (t > 0) {
            if ((size_t)na == t) {
                FAST_UNROLL
                for (l = 0; l < WLANES; l++) {
                    /* A1 = a (2 bytes BE, a <= 14) || A || zeros (A.2.2) */
                    __m128i mi = _mm_setzero_si128();
                    if (l < m)
                        mi = _mm_or_si128(_mm_slli_si128(load_part(ap[l], alen[l]), 2),
                                          _mm_cvtsi32_si128((int)(alen[l] << 8)));
                    S->p[l] = mi;
                }
            } else if (decrypt) {
                size_t off = 16 * (t - (size_t)na - 1);
                FAST_UNROLL
                for (l = 0; l < WLANES; l++) {
                    __m128i mi = _mm_setzero_si128();
                    if (l < m) {
                        size_t n = plen[l] - off;
                        __m128i v;
                        if (n > 16) n = 16;
                        v = _mm_xor_si128(load_part(in[l] + off, n), S->ks[l]);
                        store_part(out[l] + off, v, n);
                        mi = _mm_and_si128(v, LDU(ONES_ZEROS + 16 - n)); /* zero padding */
                    }
                    S->p[l] = mi;
                }
            }
            /* seal: S->p holds the plaintext block loaded last step */
            for (i = 0; i < WHALF; i++)
                X[i] = _mm256_xor_si256(X[i], _mm256_xor_si256(LD256(&S->p[2 * i]), KB(i, 0)));
        }
        for (i = 0; i < WHALF; i++)
            E[i] = _mm256_xor_si256(_mm256_or_si256(LD256(&S->tm[2 * i]), cv), KB(i, 0));
        for (r = 1; r < 10; r++)
            for (i = 0; i < WHALF; i++) {
                X[i] = _mm256_aesenc_epi128(X[i], KB(i, r));
                E[i] = _mm256_aesenc_epi128(E[i], KB(i, r));
            }
        for (i = 0; i < WHALF; i++) {
            X[i] = _mm256_aesenclast_epi128(X[i], KB(i, 10));
            E[i] = _mm256_aesenclast_epi128(E[i], KB(i, 10));
        }
        if (c == 0) {
            for (i = 0; i < WHALF; i++) ST256(&S->s0[2 * i], E[i]);
        } else if (!decrypt) {
            size_t off = 16 * (c - 1);
            for (i = 0; i < WHALF; i++) ST256(&S->e[2 * i], E[i]);
            FAST_UNROLL
            for (l = 0; l < WLANES; l++) {
                if (l < m) {
                    size_t n = plen[l] - off;
                    if (n > 16) n = 16;
                    S->p[l] = load_part(in[l] + off, n);
                    store_part(out[l] + off, _mm_xor_si128(S->p[l], S->e[l]), n);
                }
            }
        } else {
            for (i = 0; i < WHALF; i++) ST256(&S->ks[2 * i], E[i]);
        }
    }
    for (i = 0; i < WHALF; i++) ST256(&S->x[2 * i], X[i]);
    for (l = 0; l < m; l++) tag[l] = _mm_xor_si128(S->x[l], S->s0[l]);
#undef KB
}

static __attribute__((noinline, target("vaes,avx2,aes,sse2,ssse3"))) void
fast16_run(const fast_consts *C, fast_state *S, const uint8_t *const *k, int same,
           const uint8_t *const *np, const uint8_t *const *ap, const size_t *alen, int na,
           const uint8_t *const *in, uint8_t *const *out, const size_t *plen, size_t nb,
           size_t m, int decrypt, __m128i *tag)
{
#define F16(same_, dec_) fast16(C, S, k, same_, np, ap, alen, na, in, out, plen, nb, m, dec_, tag)
    switch ((decrypt ? 2 : 0) | (same ? 1 : 0)) {
    case 0: F16(0, 0); break;
    case 1: F16(1, 0); break;
    case 2: F16(0, 1); break;
    default: F16(1, 1); break;
    }
#undef F16
}

/* fast_group with constant same / decrypt flags (specialised bodies). */
#define FAST_CALL(same_, dec_) \
    fast_group(C, S, k, same_, np, ap, alen, na, in, out, plen, nb, m, dec_, LANES, tag)
static FAST_ATTR void fast_run(const fast_consts *C, fast_state *S, const uint8_t *const *k,
                               int same, const uint8_t *const *np, const uint8_t *const *ap,
                               const size_t *alen, int na, const uint8_t *const *in,
                               uint8_t *const *out, const size_t *plen, size_t nb, size_t m,
                               int decrypt, int wide, __m128i *tag)
{
    if (wide) {
        fast16_run(C, S, k, same, np, ap, alen, na, in, out, plen, nb, m, decrypt, tag);
        return;
    }
    switch ((decrypt ? 2 : 0) | (same ? 1 : 0)) {
    case 0: FAST_CALL(0, 0); break;
    case 1: FAST_CALL(1, 0); break;
    case 2: FAST_CALL(0, 1); break;
    default: FAST_CALL(1, 1); break;
    }
}
#undef FAST_CALL

/* Overwrites STACK_BURN bytes of stack below the caller's frame: the frames
 * of fast_run / fast16_run (round-key copies, register spills
 * of MAC states and keystream) lie there once they return.  The asm keeps
 * the buffer live after the wipe (no tail call, no dead-store removal). */
#define STACK_BURN 4096 /* those frames take ~1.2 KB at -O3 (objdump) */
static __attribute__((noinline)) void stack_burn(void)
{
    uint8_t buf[STACK_BURN];
    osgp_wipe(buf, sizeof(buf));
    __asm__ __volatile__("" : : "r"(buf) : "memory");
}

/* Seal (ok == NULL) or open a whole batch on AES-NI.  lens are payload
 * lengths on seal and frame lengths (payload || tag) on open. */
static CCM_NI_ATTR void ni_batch(const osgp_aes128_key *const *keys,
                               const uint8_t *const *nonces, size_t nonce_len,
                               const uint8_t *const *aads, const size_t *aad_lens,
                               const uint8_t *const *ins, const size_t *lens, size_t n,
                               size_t tag_len, uint8_t *const *outs, uint8_t *ok, int fast,
                               int wide)
{
    fast_consts C;
    fast_state S;
    ccm_lane L[LANES];
    __m128i tag[WLANES];
    const uint8_t *k[WLANES], *np[WLANES], *ap[WLANES], *ip[WLANES];
    uint8_t *op[WLANES];
    size_t plen[WLANES], alen[WLANES], gidx[WLANES], g, j, l, m, nb, sub;
    size_t gw = wide ? WLANES : LANES; /* messages gathered a round */
    int decrypt = ok != NULL, used_group = 0, used_fast = 0;
    /* Longest payload q = 15 - n bytes can count (SP 800-38C A.1); as in
     * osgp_ccm_check, without a call a message. */
    size_t maxlen = 15 - nonce_len < sizeof(size_t) ? ((size_t)1 << (8 * (15 - nonce_len))) - 1
                                                    : ~(size_t)0;
    fast_setup(&C, nonce_len, tag_len);
    for (g = 0; g < n; g += gw) {
        size_t end = n - g < gw ? n : g + gw;
        m = 0;
        for (j = g; j < end; j++) {
            size_t pl = lens[j];
            if (decrypt) {
                /* A frame shorter than its tag or too long for q fails alone. */
                if (pl < tag_len || pl - tag_len > maxlen) {
                    ok[j] = 0;
                    continue;
                }
                pl -= tag_len;
            }
            k[m] = keys[j]->rk;
            np[m] = nonces[j];
            ap[m] = aads ? aads[j] : NULL;
            alen[m] = aads ? aad_lens[j] : 0;
            ip[m] = ins[j];
            op[m] = outs[j];
            plen[m] = pl;
            gidx[m++] = j;
        }
        if (!m) continue;
        for (l = m; l < WLANES; l++) k[l] = k[0];
        /* All m (> 8) messages in one VAES group when they share a shape,
         * else sub-groups of 8: 128-bit fast path or the general kernel. */
        for (sub = 0; sub < m; sub += LANES) {
            size_t sm = m - sub, G = LANES;
            int na = -1, same = 1;
            if (wide && sub == 0 && m > LANES && fast) {
                na = fast_shape(plen, alen, m, &nb);
                if (na >= 0) {
                    sm = m;
                    G = WLANES;
                }
            }
            if (G == LANES && sm > LANES) sm = LANES;
            if (na < 0 && fast) na = fast_shape(plen + sub, alen + sub, sm, &nb);
            same = 1;
            for (l = sub + 1; l < sub + G; l++) same &= k[l] == k[sub];
            if (na >= 0) {
                used_fast = 1;
                fast_run(&C, &S, k + sub, same, np + sub, ap + sub, alen + sub, na, ip + sub,
                         op + sub, plen + sub, nb, sm, decrypt, G == WLANES, tag + sub);
            } else {
                uint8_t tb[LANES][16];
                used_group = 1;
                for (l = 0; l < sm; l++)
                    lane_init(&L[l], keys[gidx[sub + l]], np[sub + l], nonce_len, ap[sub + l],
                              alen[sub + l], decrypt ? op[sub + l] : ip[sub + l], plen[sub + l],
                              tag_len);
                ni_ccm_group(L, sm, ip + sub, op + sub, decrypt, tb);
                for (l = 0; l < sm; l++) tag[sub + l] = LDU(tb[l]);
                osgp_wipe(tb, sizeof(tb));
            }
            if (G == WLANES) break;
        }
        for (l = 0; l < m; l++) {
            if (!decrypt) {
                store_part(op[l] + plen[l], tag[l], tag_len);
            } else {
                /* Constant time: the first tag_len bytes of the computed tag
                 * against the received one, no branch on their contents. */
                __m128i d = _mm_xor_si128(_mm_and_si128(tag[l], C.tmask),
                                          load_part(ip[l] + plen[l], tag_len));
                int good = _mm_movemask_epi8(_mm_cmpeq_epi8(d, _mm_setzero_si128())) == 0xFFFF;
                ok[gidx[l]] = (uint8_t)good;
                if (!good) osgp_wipe(op[l], plen[l]); /* never release unauthenticated plaintext */
            }
        }
    }
    /* MAC states, keystream, plaintext blocks and tags must not linger on the stack. */
    osgp_wipe(tag, sizeof(tag));
    if (used_fast) osgp_wipe(&S, sizeof(S));
    if (used_group) osgp_wipe(L, sizeof(L));
    if (used_fast) stack_burn();
}
#endif /* CCM_HAVE_NI */

/* ---- portable path ---------------------------------------------------------- */

static void portable_seal(const osgp_aes128_key *const *keys, const uint8_t *const *nonces,
                          size_t nonce_len, const uint8_t *const *aads, const size_t *aad_lens,
                          const uint8_t *const *ins, const size_t *lens, size_t n,
                          size_t tag_len, uint8_t *const *outs)
{
    ccm_lane L[LANES];
    ks_queue Q;
    size_t g, i, m;
    Q.m = 0;
    for (g = 0; g < n; g += LANES) {
        m = n - g < LANES ? n - g : LANES;
        for (i = 0; i < m; i++)
            lane_init(&L[i], keys[g + i], nonces[g + i], nonce_len, aads ? aads[g + i] : NULL,
                      aads ? aad_lens[g + i] : 0, ins[g + i], lens[g + i], tag_len);
        lanes_mac(L, m);
        for (i = 0; i < m; i++) {
            ksq_push(&Q, &L[i], 0, L[i].x, outs[g + i] + lens[g + i], tag_len);
            ksq_payload(&Q, &L[i], ins[g + i], outs[g + i], lens[g + i]);
        }
        /* The queue holds pointers to L[i].x: drain it before L is reused. */
        ksq_flush(&Q);
    }
    osgp_wipe(L, sizeof(L));
    osgp_wipe(&Q, sizeof(Q));
}

static void portable_open(const osgp_aes128_key *const *keys, const uint8_t *const *nonces,
                          size_t nonce_len, const uint8_t *const *aads, const size_t *aad_lens,
                          const uint8_t *const *ins, const size_t *lens, size_t n,
                          size_t tag_len, uint8_t *const *outs, uint8_t *ok)
{
    ccm_lane L[LANES];
    uint8_t tags[LANES][16];
    size_t gidx[LANES];
    ks_queue Q;
    size_t g, i, m, j;
    Q.m = 0;
    for (g = 0; g < n; g += LANES) {
        size_t end = n - g < LANES ? n : g + LANES;
        m = 0;
        for (j = g; j < end; j++) {
            /* A frame shorter than its tag or too long for q fails alone. */
            if (lens[j] < tag_len || osgp_ccm_check(nonce_len, tag_len, lens[j] - tag_len)) {
                ok[j] = 0;
                continue;
            }
            lane_init(&L[m], keys[j], nonces[j], nonce_len, aads ? aads[j] : NULL,
                      aads ? aad_lens[j] : 0, outs[j], lens[j] - tag_len, tag_len);
            gidx[m++] = j;
        }
        for (i = 0; i < m; i++) ksq_payload(&Q, &L[i], ins[gidx[i]], outs[gidx[i]], L[i].len);
        ksq_flush(&Q);
        lanes_mac(L, m);
        for (i = 0; i < m; i++) ksq_push(&Q, &L[i], 0, L[i].x, tags[i], 16);
        ksq_flush(&Q);
        for (i = 0; i < m; i++) {
            j = gidx[i];
            ok[j] = (uint8_t)(osgp_ct_compare(tags[i], ins[j] + L[i].len, tag_len) == 0);
            if (!ok[j]) osgp_wipe(outs[j], L[i].len);
        }
    }
    osgp_wipe(L, sizeof(L));
    osgp_wipe(tags, sizeof(tags));
    osgp_wipe(&Q, sizeof(Q));
}

/* ---- public entry points (osgp.h) ------------------------------------------- */

/* The VAES rounds also need AVX2 (256-bit integer ops); osgp_cpu.c reports
 * VAES only with the OS saving ymm state. */
#define NEED_VAES (OSGP_CPU_AESNI | OSGP_CPU_AVX2 | OSGP_CPU_VAES)

osgp_status osgp_ccm_seal_batch(const osgp_aes128_key *const *keys,
                                const uint8_t *const *nonces, size_t nonce_len,
                                const uint8_t *const *aads, const size_t *aad_lens,
                                const uint8_t *const *ins, const size_t *lens, size_t n,
                                size_t tag_len, uint8_t *const *outs)
{
    size_t i, q = 15 - nonce_len;
    osgp_status st = osgp_ccm_check(nonce_len, tag_len, 0);
    if (st != OSGP_OK) return st;
    /* Every payload length must fit in q bytes (SP 800-38C A.1): one compare
     * a message against the largest length (q < 8: 2^(8q) - 1). */
    if (q < sizeof(size_t)) {
        size_t maxlen = ((size_t)1 << (8 * q)) - 1;
        for (i = 0; i < n; i++)
            if (lens[i] > maxlen) return OSGP_ERR_DATA_LENGTH;
    }
#if defined(CCM_HAVE_NI)
    {
        unsigned f = osgp_cpu_features();
        if (f & OSGP_CPU_AESNI) {
            ni_batch(keys, nonces, nonce_len, aads, aad_lens, ins, lens, n, tag_len, outs, NULL,
                     (f & OSGP_CPU_SSSE3) != 0, (f & NEED_VAES) == NEED_VAES);
            return OSGP_OK;
        }
    }
#endif
    portable_seal(keys, nonces, nonce_len, aads, aad_lens, ins, lens, n, tag_len, outs);
    return OSGP_OK;
}

osgp_status osgp_ccm_open_batch(const osgp_aes128_key *const *keys,
                                const uint8_t *const *nonces, size_t nonce_len,
                                const uint8_t *const *aads, const size_t *aad_lens,
                                const uint8_t *const *ins, const size_t *lens, size_t n,
                                size_t tag_len, uint8_t *const *outs, uint8_t *ok)
{
    osgp_status st = osgp_ccm_check(nonce_len, tag_len, 0);
    if (st != OSGP_OK) return st;
#if defined(CCM_HAVE_NI)
    {
        unsigned f = osgp_cpu_features();
        if (f & OSGP_CPU_AESNI) {
            ni_batch(keys, nonces, nonce_len, aads, aad_lens, ins, lens, n, tag_len, outs, ok,
                     (f & OSGP_CPU_SSSE3) != 0, (f & NEED_VAES) == NEED_VAES);
            return OSGP_OK;
        }
    }
#endif
    portable_open(keys, nonces, nonce_len, aads, aad_lens, ins, lens, n, tag_len, outs, ok);
    return OSGP_OK;
}
