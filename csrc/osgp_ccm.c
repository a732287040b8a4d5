/*
 * osgp_ccm.c - AES-128-CCM (NIST SP 800-38C, RFC 3610): OSGP_AE / OSGP_AD of
 * CLC/TS 50586 Annex F.
 *
 * Formatting (SP 800-38C A.2): q = 15 - n (nonce n = 7..13 bytes, so q = 2..8)
 *   B0   = flags || N || Q        flags = 64*Adata + 8*((t-2)/2) + (q-1), Q = len (q bytes BE)
 *   then enc(a) || A zero-padded to 16 (enc: 2 bytes if a < 2^16-2^8, else
 *        FF FE + 4 bytes if a < 2^32, else FF FF + 8 bytes), then P zero-padded.
 *   Ctr_i = (q-1) || N || i (q bytes BE); S0 = E(Ctr_0) masks the tag,
 *   Ctr_1.. encrypt the payload (A.3); tag = MSB_t(CBC-MAC ^ S0).
 *
 * The generic lane (lane_init, lanes_mac: CBC-MACs of up to 8 messages in
 * lock step) and the keystream queue (8 counter blocks at a time) also serve
 * the batch kernels in osgp_ccm_batch.c (osgp_ccm_internal.h).  Single calls
 * on AES-NI use a fused loop: the CBC-MAC block and the counter block of the
 * same position go through the rounds together.
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
#endif


osgp_status osgp_ccm_check(size_t nonce_len, size_t tag_len, size_t len)
{
    size_t q;
    if (nonce_len < 7 || nonce_len > 13) return OSGP_ERR_NONCE_LENGTH;
    if (tag_len < 4 || tag_len > 16 || (tag_len & 1)) return OSGP_ERR_TAG_LENGTH;
    q = 15 - nonce_len;
    /* Payload length must fit in q bytes (SP 800-38C A.1). */
    if (q < sizeof(size_t) && (uint64_t)len >> (8 * q) != 0) return OSGP_ERR_DATA_LENGTH;
    return OSGP_OK;
}

/* enc(a) (A.2.2) into hdr; returns its length (2, 6 or 10; a > 0). */
static size_t aad_header(uint64_t a, uint8_t hdr[10])
{
    size_t j;
    if (a < 0xFF00u) {
        hdr[0] = (uint8_t)(a >> 8);
        hdr[1] = (uint8_t)a;
        return 2;
    }
    hdr[0] = 0xFF;
    if (a >> 32 == 0) {
        hdr[1] = 0xFE;
        for (j = 0; j < 4; j++) hdr[2 + j] = (uint8_t)(a >> (24 - 8 * j));
        return 6;
    }
    hdr[1] = 0xFF;
    for (j = 0; j < 8; j++) hdr[2 + j] = (uint8_t)(a >> (56 - 8 * j));
    return 10;
}

void lane_init(ccm_lane *L, const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
               const uint8_t *aad, size_t aad_len, const uint8_t *msg, size_t len,
               size_t tag_len)
{
    unsigned q = (unsigned)(15 - nonce_len), j;
    L->key = k;
    /* Ctr_0 (A.3): flags = q - 1, nonce, counter field zero. */
    memset(L->ctr0, 0, 16);
    L->ctr0[0] = (uint8_t)(q - 1);
    switch (nonce_len) { /* constant sizes: inlined copies */
    case 7: memcpy(L->ctr0 + 1, nonce, 7); break;
    case 8: memcpy(L->ctr0 + 1, nonce, 8); break;
    case 9: memcpy(L->ctr0 + 1, nonce, 9); break;
    case 10: memcpy(L->ctr0 + 1, nonce, 10); break;
    case 11: memcpy(L->ctr0 + 1, nonce, 11); break;
    case 12: memcpy(L->ctr0 + 1, nonce, 12); break;
    default: memcpy(L->ctr0 + 1, nonce, 13); break; /* 13 (checked by the callers) */
    }
    /* B0 (A.2.1): flags = 64*Adata + 8*((t-2)/2) + (q-1), nonce, Q = len (q bytes BE) */
    memset(L->b0, 0, 16);
    switch (nonce_len) {
    case 7: memcpy(L->b0 + 1, nonce, 7); break;
    case 8: memcpy(L->b0 + 1, nonce, 8); break;
    case 9: memcpy(L->b0 + 1, nonce, 9); break;
    case 10: memcpy(L->b0 + 1, nonce, 10); break;
    case 11: memcpy(L->b0 + 1, nonce, 11); break;
    case 12: memcpy(L->b0 + 1, nonce, 12); break;
    default: memcpy(L->b0 + 1, nonce, 13); break;
    }
    L->b0[0] = (uint8_t)((aad_len ? 0x40 : 0) | (((tag_len - 2) / 2) << 3) | (q - 1));
    for (j = 0; j < q && j < 8; j++) L->b0[15 - j] = (uint8_t)((uint64_t)len >> (8 * j));
    L->hdr_len = aad_len ? aad_header((uint64_t)aad_len, L->hdr) : 0; /* enc(a) (A.2.2) */
    L->aad = aad;
    L->aad_len = aad_len;
    L->msg = msg;
    L->len = len;
    L->n_aad = aad_len ? (L->hdr_len + aad_len + 15) / 16 : 0;
    L->nblocks = 1 + L->n_aad + (len + 15) / 16;
    memset(L->x, 0, 16);
}

/* Block t of the formatted CBC-MAC input B0 || AAD part || payload part. */
void lane_block(const ccm_lane *L, size_t t, uint8_t out[16])
{
    size_t off, n;
    if (t == 0) {
        memcpy(out, L->b0, 16);
        return;
    }
    t--;
    if (t < L->n_aad) {
        /* bytes [16t, 16t+16) of enc(a) || A, zero beyond */
        size_t pos = 0;
        off = 16 * t;
        memset(out, 0, 16);
        if (off < L->hdr_len) {
            n = L->hdr_len - off;
            memcpy(out, L->hdr + off, n);
            pos = n;
            off = 0;
        } else {
            off -= L->hdr_len;
        }
        if (off < L->aad_len) {
            n = L->aad_len - off;
            if (n > 16 - pos) n = 16 - pos;
            memcpy(out + pos, L->aad + off, n);
        }
        return;
    }
    t -= L->n_aad;
    off = 16 * t;
    n = L->len - off;
    if (n >= 16) {
        memcpy(out, L->msg + off, 16);
    } else {
        memset(out, 0, 16);
        memcpy(out, L->msg + off, n);
    }
}

static inline void xor16(uint8_t *d, const uint8_t *a, const uint8_t *b)
{
    uint64_t u[2], v[2];
    memcpy(u, a, 16);
    memcpy(v, b, 16);
    u[0] ^= v[0];
    u[1] ^= v[1];
    memcpy(d, u, 16);
}

/* CBC-MAC of n <= LANES lanes in lock step. */
void lanes_mac(ccm_lane *lanes, size_t n)
{
    uint8_t buf[LANES * 16], blk[16];
    const osgp_aes128_key *kp[LANES];
    size_t idx[LANES], t, maxb = 0, i, m;
    for (i = 0; i < n; i++)
        if (lanes[i].nblocks > maxb) maxb = lanes[i].nblocks;
    for (t = 0; t < maxb; t++) {
        m = 0;
        for (i = 0; i < n; i++) {
            if (t >= lanes[i].nblocks) continue;
            lane_block(&lanes[i], t, blk);
            xor16(buf + 16 * m, blk, lanes[i].x);
            kp[m] = lanes[i].key;
            idx[m++] = i;
        }
        osgp_aes128_encrypt_lanes(kp, buf, m);
        for (i = 0; i < m; i++) memcpy(lanes[idx[i]].x, buf + 16 * i, 16);
    }
    osgp_wipe(buf, sizeof(buf));
    osgp_wipe(blk, sizeof(blk));
}


void ksq_flush(ks_queue *Q)
{
    size_t i, j;
    if (!Q->m) return;
    osgp_aes128_encrypt_lanes(Q->k, Q->blk, Q->m);
    for (i = 0; i < Q->m; i++) {
        if (Q->n[i] == 16) {
            xor16(Q->dst[i], Q->src[i], Q->blk + 16 * i);
        } else {
            for (j = 0; j < Q->n[i]; j++) Q->dst[i][j] = (uint8_t)(Q->src[i][j] ^ Q->blk[16 * i + j]);
        }
    }
    Q->m = 0;
}

void ksq_push(ks_queue *Q, const ccm_lane *L, uint64_t ctr, const uint8_t *src,
                     uint8_t *dst, size_t n)
{
    unsigned q = (unsigned)(L->ctr0[0] + 1), j;
    uint8_t *b = Q->blk + 16 * Q->m;
    memcpy(b, L->ctr0, 16);
    for (j = 0; j < q && j < 8; j++) b[15 - j] = (uint8_t)(ctr >> (8 * j));
    Q->k[Q->m] = L->key;
    Q->src[Q->m] = src;
    Q->dst[Q->m] = dst;
    Q->n[Q->m] = n;
    if (++Q->m == LANES) ksq_flush(Q);
}

/* Payload CTR for a lane: Ctr_1 .. Ctr_m (SP 800-38C A.3). */
void ksq_payload(ks_queue *Q, const ccm_lane *L, const uint8_t *in, uint8_t *out,
                        size_t len)
{
    size_t off;
    uint64_t i = 1;
    for (off = 0; off < len; off += 16, i++)
        ksq_push(Q, L, i, in + off, out + off, len - off < 16 ? len - off : 16);
}

#if defined(CCM_HAVE_NI)
#define LDU(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define STU(p, v) _mm_storeu_si128((__m128i *)(void *)(p), v)
/* The nine middle rounds unrolled: a rolled loop keeps a counter and a
 * branch beside every serial AES round and makes GCC copy the round keys to
 * the stack for memory operands. */
#define OSGP_UNROLL9 _Pragma("GCC unroll 9")

/* Counter block i: Ctr_0 (counter field zero) OR i as a 64-bit big-endian
 * number in bytes 8..15.  i < 2^(8q) (osgp_ccm_check), so the bytes above the
 * q-byte counter field stay zero and the nonce is untouched.  Built in a
 * register: no byte stores followed by a wide load. */
#define NI_CTR(tmpl, i) \
    _mm_or_si128((tmpl), _mm_set_epi64x((long long)__builtin_bswap64((uint64_t)(i)), 0))

/* Ctr_0 (SP 800-38C A.3) in a register: byte 0 = q - 1 = 14 - n, bytes 1..n
 * = nonce, counter field zero.  Two loads that stay inside the nonce and
 * overlap, each shifted into place (the overlapping bytes agree, so OR joins
 * them): no byte stores are read back by a wide load (a store-forwarding
 * stall at the head of the serial CBC-MAC chain). */
static CCM_NI_ATTR __m128i ni_ctr0(const uint8_t *nonce, size_t nonce_len)
{
    __m128i lo, hi;
    if (nonce_len == 7) {
        uint32_t a, b;
        memcpy(&a, nonce, 4);
        memcpy(&b, nonce + 3, 4);
        lo = _mm_slli_si128(_mm_cvtsi32_si128((int)a), 1); /* N0..N3 -> bytes 1..4 */
        hi = _mm_slli_si128(_mm_cvtsi32_si128((int)b), 4); /* N3..N6 -> bytes 4..7 */
    } else {
        uint64_t a, b;
        memcpy(&a, nonce, 8);
        memcpy(&b, nonce + nonce_len - 8, 8);
        lo = _mm_slli_si128(_mm_cvtsi64_si128((long long)a), 1); /* N0..N7 -> bytes 1..8 */
        hi = _mm_cvtsi64_si128((long long)b); /* N(n-8)..N(n-1) -> bytes n-7..n */
        switch (nonce_len) {                  /* byte shifts take constants */
        case 8: hi = _mm_slli_si128(hi, 1); break;
        case 9: hi = _mm_slli_si128(hi, 2); break;
        case 10: hi = _mm_slli_si128(hi, 3); break;
        case 11: hi = _mm_slli_si128(hi, 4); break;
        case 12: hi = _mm_slli_si128(hi, 5); break;
        default: hi = _mm_slli_si128(hi, 6); break; /* 13 (checked by the callers) */
        }
    }
    return _mm_or_si128(_mm_or_si128(lo, hi), _mm_cvtsi32_si128((int)(14 - nonce_len)));
}

/* B0 (A.2.1) from Ctr_0: the flags byte gains Adata (bit 6) and (t-2)/2
 * (bits 3..5) over q - 1, and Q = len fills the last q bytes big-endian.
 * len < 2^(8q) (osgp_ccm_check), so the 64-bit big-endian len is zero over
 * the nonce bytes it overlaps. */
static CCM_NI_ATTR __m128i ni_b0(__m128i ctr0, size_t aad_len, size_t tag_len, size_t len)
{
    long long flags = (aad_len ? 0x40 : 0) | (long long)(((tag_len - 2) / 2) << 3);
    return _mm_or_si128(ctr0, _mm_set_epi64x((long long)__builtin_bswap64((uint64_t)len), flags));
}

/* Single message on AES-NI: CBC-MAC and CTR interleaved.  decrypt = 0: in is
 * plaintext; 1: in is ciphertext (the keystream of block i+1 is computed
 * together with the MAC of block i).  Returns the 16-byte masked tag
 * T ^ S0 in a register (a computed tag never touches memory).  The public
 * blocks B0 and Ctr_0 come in registers (ni_ctr0, ni_b0); the AAD part
 * (enc(a) || A, zero-padded, A.2.2) is read here. */
static inline __attribute__((always_inline)) CCM_NI_ATTR __m128i
ni_ccm(const osgp_aes128_key *key, __m128i b0, __m128i tmpl, const uint8_t *aad,
       size_t aad_len, const uint8_t *in, size_t len, uint8_t *out, const int decrypt)
{
    /* The CBC-MAC chain is latency bound.  y holds the MAC state after rounds
     * 1..9; the next block's input is folded into the last round key:
     * aesenclast(y, rk10 ^ rk0 ^ P) = E(previous) ^ P ^ rk0, so only the
     * ten AES rounds sit on the critical path (no XOR between blocks). */
    __m128i rk[11], y, s0, ks, fold;
    uint8_t blk[16];
    size_t off;
    uint64_t i;
    int r, used_blk = (len & 15) != 0; /* blk held plaintext */
    for (r = 0; r < 11; r++) rk[r] = LDU(key->rk + 16 * r);
    fold = _mm_xor_si128(rk[10], rk[0]);
    /* B0 together with Ctr_0 (and, when opening, the keystream of block 1) */
    y = _mm_xor_si128(b0, rk[0]);
    s0 = _mm_xor_si128(tmpl, rk[0]);
    ks = _mm_xor_si128(NI_CTR(tmpl, 1), rk[0]);
    OSGP_UNROLL9
    for (r = 1; r < 10; r++) {
        y = _mm_aesenc_si128(y, rk[r]);
        s0 = _mm_aesenc_si128(s0, rk[r]);
        ks = _mm_aesenc_si128(ks, rk[r]);
    }
    s0 = _mm_aesenclast_si128(s0, rk[10]);
    ks = _mm_aesenclast_si128(ks, rk[10]);
    if (aad_len) {
        /* first block: enc(a) || A[0 .. 16 - |enc(a)|), then 16-byte slices of
         * A read in place, the last one zero-padded (A.2.2) */
        uint8_t hdr[10];
        size_t hl = aad_header((uint64_t)aad_len, hdr), n = 16 - hl;
        if (n > aad_len) n = aad_len;
        memset(blk, 0, 16);
        memcpy(blk, hdr, hl);
        memcpy(blk + hl, aad, n);
        y = _mm_aesenclast_si128(y, _mm_xor_si128(fold, LDU(blk)));
        OSGP_UNROLL9
        for (r = 1; r < 10; r++) y = _mm_aesenc_si128(y, rk[r]);
        for (off = n; off < aad_len; off += 16) {
            __m128i a;
            if (aad_len - off >= 16) {
                a = LDU(aad + off);
            } else {
                memset(blk, 0, 16);
                memcpy(blk, aad + off, aad_len - off);
                a = LDU(blk);
            }
            y = _mm_aesenclast_si128(y, _mm_xor_si128(fold, a));
            OSGP_UNROLL9
            for (r = 1; r < 10; r++) y = _mm_aesenc_si128(y, rk[r]);
        }
    }
    if (!decrypt) {
        for (off = 0, i = 1; off < len; off += 16, i++) {
            size_t n = len - off;
            __m128i p, c;
            if (n >= 16) {
                p = LDU(in + off);
            } else {
                memset(blk, 0, 16);
                memcpy(blk, in + off, n);
                p = LDU(blk);
            }
            y = _mm_aesenclast_si128(y, _mm_xor_si128(fold, p));
            c = _mm_xor_si128(NI_CTR(tmpl, i), rk[0]);
            OSGP_UNROLL9
            for (r = 1; r < 10; r++) {
                y = _mm_aesenc_si128(y, rk[r]);
                c = _mm_aesenc_si128(c, rk[r]);
            }
            c = _mm_xor_si128(_mm_aesenclast_si128(c, rk[10]), p);
            if (n >= 16) {
                STU(out + off, c);
            } else {
                STU(blk, c);
                memcpy(out + off, blk, n);
            }
        }
    } else if (len) {
        for (off = 0, i = 2; off < len; off += 16, i++) {
            size_t n = len - off;
            __m128i p, nk;
            if (n >= 16) {
                p = _mm_xor_si128(LDU(in + off), ks);
                STU(out + off, p);
            } else {
                memset(blk, 0, 16);
                memcpy(blk, in + off, n);
                STU(blk, _mm_xor_si128(LDU(blk), ks));
                memcpy(out + off, blk, n);
                memset(blk + n, 0, 16 - n);
                p = LDU(blk);
            }
            y = _mm_aesenclast_si128(y, _mm_xor_si128(fold, p));
            nk = _mm_xor_si128(NI_CTR(tmpl, i), rk[0]);
            OSGP_UNROLL9
            for (r = 1; r < 10; r++) {
                y = _mm_aesenc_si128(y, rk[r]);
                nk = _mm_aesenc_si128(nk, rk[r]);
            }
            ks = _mm_aesenclast_si128(nk, rk[10]);
        }
    }
    if (used_blk) OSGP_WIPE_INLINE(blk, sizeof(blk));
    return _mm_xor_si128(_mm_aesenclast_si128(y, rk[10]), s0);
}

/* First tag_len bytes 0xFF: a 16-byte load at tag_mask + 16 - tag_len. */
static const uint8_t tag_mask[32] = {
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

/* The single-call entries on AES-NI (the caller checked the lengths), each
 * with its own copy of ni_ccm.  Seal: writes the tag after the ciphertext.
 * Open: in + len holds the received tag; returns 1 iff it differs, compared
 * in registers without a branch on either tag. */
static CCM_NI_ATTR void ni_ccm_seal_one(const osgp_aes128_key *k, const uint8_t *nonce,
                                        size_t nonce_len, const uint8_t *aad, size_t aad_len,
                                        const uint8_t *in, size_t len, size_t tag_len,
                                        uint8_t *out)
{
    __m128i ctr0 = ni_ctr0(nonce, nonce_len), tag;
    uint8_t buf[16];
    tag = ni_ccm(k, ni_b0(ctr0, aad_len, tag_len, len), ctr0, aad, aad_len, in, len, out, 0);
    if (tag_len == 16) {
        STU(out + len, tag);
    } else if (tag_len == 8) { /* the usual OSGP tag */
        _mm_storel_epi64((__m128i *)(void *)(out + len), tag);
    } else {
        STU(buf, tag);
        memcpy(out + len, buf, tag_len);
        OSGP_WIPE_INLINE(buf, sizeof(buf)); /* the truncated-away tag bytes */
    }
}

static CCM_NI_ATTR int ni_ccm_open_one(const osgp_aes128_key *k, const uint8_t *nonce,
                                       size_t nonce_len, const uint8_t *aad, size_t aad_len,
                                       const uint8_t *in, size_t len, size_t tag_len,
                                       uint8_t *out)
{
    __m128i ctr0 = ni_ctr0(nonce, nonce_len), tag, recv, d;
    uint8_t buf[16];
    tag = ni_ccm(k, ni_b0(ctr0, aad_len, tag_len, len), ctr0, aad, aad_len, in, len, out, 1);
    if (tag_len == 16) {
        recv = LDU(in + len);
    } else if (tag_len == 8) {
        recv = _mm_loadl_epi64((const __m128i *)(const void *)(in + len));
    } else { /* the received tag is public: a plain copy */
        memset(buf, 0, 16);
        memcpy(buf, in + len, tag_len);
        recv = LDU(buf);
    }
    d = _mm_and_si128(_mm_xor_si128(tag, recv), LDU(tag_mask + 16 - tag_len));
    return _mm_movemask_epi8(_mm_cmpeq_epi8(d, _mm_setzero_si128())) != 0xFFFF;
}

#endif

/* Generic single-message path: MAC lane + keystream queue. */
static void generic_ccm(ccm_lane *L, const uint8_t *in, size_t len, uint8_t *out, int decrypt,
                        uint8_t tag[16])
{
    ks_queue Q;
    Q.m = 0;
    if (decrypt) {
        ksq_payload(&Q, L, in, out, len);
        ksq_flush(&Q);
        L->msg = out;
    }
    lanes_mac(L, 1);
    if (!decrypt) ksq_payload(&Q, L, in, out, len);
    ksq_push(&Q, L, 0, L->x, tag, 16);
    ksq_flush(&Q);
    osgp_wipe(&Q, sizeof(Q));
}

/* Constant-time tag check: the first tag_len (4..16) bytes of the computed
 * 16-byte tag against the received tag, as two 64-bit words (the received,
 * public tag is copied zero-padded; the computed one is masked in place, so
 * no copy of it is left behind).  No branch on either tag's contents. */
static int tag_differs(const uint8_t calc[16], const uint8_t *recv, size_t tag_len)
{
    uint64_t x[2], y[2] = {0, 0}, m0, m1, d;
    memcpy(x, calc, 16);
    memcpy(y, recv, tag_len);
    m0 = tag_len >= 8 ? ~(uint64_t)0 : (((uint64_t)1 << (8 * tag_len)) - 1);
    m1 = tag_len >= 16 ? ~(uint64_t)0
                       : tag_len > 8 ? (((uint64_t)1 << (8 * (tag_len - 8))) - 1) : 0;
    d = ((x[0] ^ y[0]) & m0) | ((x[1] ^ y[1]) & m1);
    return (int)((d | (0u - d)) >> 63); /* 1 iff d != 0, without a branch */
}

/* One message on the generic lane path (portable AES or no AES-NI), the
 * contract of ni_ccm_one. */
static int generic_one(const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
                       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
                       size_t tag_len, uint8_t *out, int decrypt)
{
    ccm_lane L;
    uint8_t tag[16];
    int bad = 0;
    lane_init(&L, k, nonce, nonce_len, aad, aad_len, decrypt ? out : in, len, tag_len);
    generic_ccm(&L, in, len, out, decrypt, tag);
    if (decrypt)
        bad = tag_differs(tag, in + len, tag_len);
    else
        memcpy(out + len, tag, tag_len);
    /* L holds public values (B0, Ctr_0, AAD length) and the CBC-MAC state;
     * tag, when opening, the expected tag of a possibly forged frame */
    osgp_wipe(L.x, sizeof(L.x));
    osgp_wipe(tag, sizeof(tag));
    return bad;
}

/* One message: AES-NI when present, else the generic lane path. */
static inline int one_ccm(const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
                          const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
                          size_t tag_len, uint8_t *out, int decrypt)
{
#if defined(CCM_HAVE_NI)
    if (osgp_cpu_features() & OSGP_CPU_AESNI) {
        if (!decrypt) {
            ni_ccm_seal_one(k, nonce, nonce_len, aad, aad_len, in, len, tag_len, out);
            return 0;
        }
        return ni_ccm_open_one(k, nonce, nonce_len, aad, aad_len, in, len, tag_len, out);
    }
#endif
    return generic_one(k, nonce, nonce_len, aad, aad_len, in, len, tag_len, out, decrypt);
}

osgp_status osgp_ccm_seal(const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
                          const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
                          size_t tag_len, uint8_t *out)
{
    osgp_status st = osgp_ccm_check(nonce_len, tag_len, len);
    if (st != OSGP_OK) return st;
    one_ccm(k, nonce, nonce_len, aad, aad_len, in, len, tag_len, out, 0);
    return OSGP_OK;
}

osgp_status osgp_ccm_open(const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
                          const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
                          size_t tag_len, uint8_t *out)
{
    size_t plen;
    osgp_status st;
    if (len < tag_len) { /* no room for the tag: a bad argument first, else a bad frame */
        st = osgp_ccm_check(nonce_len, tag_len, 0);
        return st != OSGP_OK ? st : OSGP_ERR_AUTH;
    }
    plen = len - tag_len;
    st = osgp_ccm_check(nonce_len, tag_len, plen);
    if (st != OSGP_OK) return st;
    if (one_ccm(k, nonce, nonce_len, aad, aad_len, in, plen, tag_len, out, 1)) {
        osgp_wipe(out, plen); /* never release unauthenticated plaintext */
        return OSGP_ERR_AUTH;
    }
    return OSGP_OK;
}
