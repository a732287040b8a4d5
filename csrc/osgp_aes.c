/*
 * osgp_aes.c - AES-128 encryption (FIPS-197) for the OSGP-AES-128-PSK suite
 * (CLC/TS 50586 Annex F).  Only the forward cipher: CCM and CMAC never decrypt
 * a block.
 *
 * Three paths, chosen per call from osgp_cpu_features() (osgp_cpu.c):
 *   - AES-NI (x86-64), behind __attribute__((target("aes,sse2")));
 *   - ARMv8 crypto extensions (AArch64), behind a target attribute;
 *   - portable constant-time C, always built: SubBytes is computed as the
 *     GF(2^8) inverse x^254 followed by the affine map (FIPS-197 5.1.1) with
 *     8 bytes processed in a 64-bit word, so no table is indexed by secret
 *     data and no branch depends on it.  About 1.6 us a block in a 1 KiB CCM
 *     seal on an x86-64 VM, against 0.3 us on the AES-NI path: only the fallback.
 * No -march flags anywhere (docs/conventions.md §13).  Defining OSGP_AES_NO_INTRINSICS
 * at compile time builds the portable path alone (osgp_aes.c, osgp_ccm.c,
 * osgp_cmac.c), e.g. to check a compiler without the intrinsics headers.
 */
#include <string.h>

#include "osgp.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(OSGP_AES_NO_INTRINSICS)
#define AES_HAVE_NI 1
#include <immintrin.h>
#include <wmmintrin.h>
#define AESNI_ATTR __attribute__((target("aes,sse2")))
#define AESNI_INLINE static inline __attribute__((always_inline, target("aes,sse2")))
#endif

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(OSGP_AES_NO_INTRINSICS)
#define AES_HAVE_CE 1
#include <arm_neon.h>
#if defined(__clang__)
#define ARMCE_ATTR __attribute__((target("aes")))
#else
#define ARMCE_ATTR __attribute__((target("+crypto")))
#endif
#endif

/* ---- portable constant-time path ------------------------------------------ */

#define LSB8 0x0101010101010101ULL

/* xtime (multiply by x modulo x^8+x^4+x^3+x+1, FIPS-197 4.2.1) on 8 bytes. */
static inline uint64_t xt8(uint64_t a)
{
    uint64_t hi = (a >> 7) & LSB8;
    return ((a & 0x7F7F7F7F7F7F7F7FULL) << 1) ^ (hi * 0x1B);
}

/* Byte-wise GF(2^8) product of 8 byte pairs, no data-dependent branch. */
static inline uint64_t gmul8(uint64_t a, uint64_t b)
{
    uint64_t r = 0;
    int i;
    for (i = 0; i < 8; i++) {
        r ^= a & (((b >> i) & LSB8) * 0xFF);
        a = xt8(a);
    }
    return r;
}

/* Byte-wise rotate left by k (1..7). */
static inline uint64_t rotl8x(uint64_t x, int k)
{
    uint64_t ml = LSB8 * (uint8_t)(0xFFu << k);
    uint64_t mr = LSB8 * (uint8_t)(0xFFu >> (8 - k));
    return ((x << k) & ml) | ((x >> (8 - k)) & mr);
}

/* A GF(2)-linear map on 8 bytes: byte bit i contributes col[i].  Squaring is
 * linear in GF(2^8), so x^2, x^4 and x^16 are such maps; col[i] is the power
 * of x^i modulo x^8+x^4+x^3+x+1 (FIPS-197 4.2). */
static inline uint64_t lin8(uint64_t x, const uint8_t col[8])
{
    uint64_t r = 0;
    int i;
    for (i = 0; i < 8; i++) r ^= ((x >> i) & LSB8) * col[i];
    return r;
}

static const uint8_t POW2[8] = {0x01, 0x04, 0x10, 0x40, 0x1B, 0x6C, 0xAB, 0x9A};
static const uint8_t POW4[8] = {0x01, 0x10, 0x1B, 0xAB, 0x5E, 0x97, 0xB3, 0xC5};
static const uint8_t POW16[8] = {0x01, 0x5E, 0xE4, 0xE8, 0x4D, 0x91, 0x1D, 0x6C};

/* S-box on 8 bytes: inverse (x^254, 0 -> 0) then the affine transformation
 * b ^ rotl(b,1) ^ rotl(b,2) ^ rotl(b,3) ^ rotl(b,4) ^ 0x63 (FIPS-197 5.1.1).
 * x^254 = x^240 * x^14 with x^240 = (x^12 * x^3)^16, x^12 = (x^3)^4: four
 * products and three linear powers. */
static uint64_t sbox8(uint64_t x)
{
    uint64_t x2 = lin8(x, POW2);
    uint64_t x3 = gmul8(x2, x);
    uint64_t x12 = lin8(x3, POW4);
    uint64_t x14 = gmul8(x12, x2);
    uint64_t x15 = gmul8(x12, x3);
    uint64_t x240 = lin8(x15, POW16);
    uint64_t b = gmul8(x240, x14); /* x^254 */
    return b ^ rotl8x(b, 1) ^ rotl8x(b, 2) ^ rotl8x(b, 3) ^ rotl8x(b, 4) ^ (LSB8 * 0x63);
}

static inline uint8_t xt(uint8_t a)
{
    return (uint8_t)((a << 1) ^ (0x1B & (uint8_t)(0u - (a >> 7))));
}

static void sub_bytes(uint8_t s[16])
{
    uint64_t w[2];
    memcpy(w, s, 16);
    w[0] = sbox8(w[0]);
    w[1] = sbox8(w[1]);
    memcpy(s, w, 16);
    osgp_wipe(w, sizeof(w));
}

/* State byte (row r, column c) is s[r + 4c] (FIPS-197 3.4). */
static void shift_rows(uint8_t s[16])
{
    uint8_t t[16];
    int r, c;
    for (c = 0; c < 4; c++)
        for (r = 0; r < 4; r++) t[r + 4 * c] = s[r + 4 * ((c + r) & 3)];
    memcpy(s, t, 16);
    osgp_wipe(t, sizeof(t));
}

/* FIPS-197 5.1.3, written as a ^ t ^ xtime(a_i ^ a_i+1), t = a0^a1^a2^a3. */
static void mix_columns(uint8_t s[16])
{
    int c;
    for (c = 0; c < 4; c++) {
        uint8_t *a = s + 4 * c;
        uint8_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
        uint8_t t = (uint8_t)(a0 ^ a1 ^ a2 ^ a3);
        a[0] = (uint8_t)(a0 ^ t ^ xt((uint8_t)(a0 ^ a1)));
        a[1] = (uint8_t)(a1 ^ t ^ xt((uint8_t)(a1 ^ a2)));
        a[2] = (uint8_t)(a2 ^ t ^ xt((uint8_t)(a2 ^ a3)));
        a[3] = (uint8_t)(a3 ^ t ^ xt((uint8_t)(a3 ^ a0)));
    }
}

static void add_round_key(uint8_t s[16], const uint8_t *rk)
{
    int i;
    for (i = 0; i < 16; i++) s[i] ^= rk[i];
}

static void portable_encrypt(const osgp_aes128_key *k, const uint8_t in[16], uint8_t out[16])
{
    uint8_t s[16];
    int r;
    memcpy(s, in, 16);
    add_round_key(s, k->rk);
    for (r = 1; r < OSGP_AES128_ROUNDS; r++) {
        sub_bytes(s);
        shift_rows(s);
        mix_columns(s);
        add_round_key(s, k->rk + 16 * r);
    }
    sub_bytes(s);
    shift_rows(s);
    add_round_key(s, k->rk + 16 * OSGP_AES128_ROUNDS);
    memcpy(out, s, 16);
    osgp_wipe(s, sizeof(s));
}

/* Key expansion, FIPS-197 5.2: w[i] = w[i-4] ^ SubWord(RotWord(w[i-1])) ^ Rcon
 * every 4th word.  SubWord through the constant-time S-box. */
static void portable_expand(osgp_aes128_key *k, const uint8_t key[16])
{
    uint8_t *w = k->rk;
    uint8_t rcon = 1;
    int i;
    memcpy(w, key, 16);
    for (i = 4; i < 44; i++) {
        uint8_t t[4];
        memcpy(t, w + 4 * (i - 1), 4);
        if ((i & 3) == 0) {
            uint64_t v = (uint64_t)t[1] | (uint64_t)t[2] << 8 | (uint64_t)t[3] << 16 |
                         (uint64_t)t[0] << 24;
            v = sbox8(v);
            t[0] = (uint8_t)(v ^ rcon);
            t[1] = (uint8_t)(v >> 8);
            t[2] = (uint8_t)(v >> 16);
            t[3] = (uint8_t)(v >> 24);
            rcon = xt(rcon);
        }
        w[4 * i + 0] = (uint8_t)(w[4 * (i - 4) + 0] ^ t[0]);
        w[4 * i + 1] = (uint8_t)(w[4 * (i - 4) + 1] ^ t[1]);
        w[4 * i + 2] = (uint8_t)(w[4 * (i - 4) + 2] ^ t[2]);
        w[4 * i + 3] = (uint8_t)(w[4 * (i - 4) + 3] ^ t[3]);
        osgp_wipe(t, sizeof(t));
    }
}

/* ---- AES-NI ----------------------------------------------------------------- */

#if defined(AES_HAVE_NI)
#define LDU(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define STU(p, v) _mm_storeu_si128((__m128i *)(void *)(p), v)

/* One FIPS-197 5.2 step on four words: w'[j] = w[0] ^ .. ^ w[j] ^ t with
 * t = SubWord(RotWord(w[3])) ^ Rcon.  SubWord comes from AESENCLAST (zero
 * round key) on a state whose four columns all hold w[3]: ShiftRows then
 * changes nothing.  SubWord is byte-wise, so RotWord is applied after it (a
 * 32-bit rotate; words are little-endian in the register).  This is shorter
 * on the critical path than AESKEYGENASSIST (slow on some cores), and the
 * prefix XOR (a tree of independent shifts) and Rcon run beside it. */
AESNI_INLINE __m128i ni_expand_step(__m128i k, int rcon)
{
    __m128i s = _mm_aesenclast_si128(_mm_shuffle_epi32(k, 0xFF), _mm_setzero_si128());
    __m128i t = _mm_or_si128(_mm_srli_epi32(s, 8), _mm_slli_epi32(s, 24));
    __m128i a = _mm_xor_si128(k, _mm_slli_si128(k, 4));
    __m128i b = _mm_xor_si128(_mm_slli_si128(k, 8), _mm_slli_si128(k, 12));
    b = _mm_xor_si128(b, _mm_set1_epi32(rcon));
    return _mm_xor_si128(_mm_xor_si128(a, b), t);
}

/* The same round keys as portable_expand (FIPS-197 5.2, Rcon = 01 02 04 ..
 * 80 1B 36). */
static AESNI_ATTR void ni_expand(osgp_aes128_key *k, const uint8_t key[16])
{
    static const int rcon[10] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1B, 0x36};
    __m128i t = LDU(key);
    int i;
    STU(k->rk, t);
    for (i = 1; i <= 10; i++) {
        t = ni_expand_step(t, rcon[i - 1]);
        STU(k->rk + 16 * i, t);
    }
}

AESNI_INLINE __m128i ni_enc1(const uint8_t *rk, __m128i s)
{
    int r;
    s = _mm_xor_si128(s, LDU(rk));
    for (r = 1; r < 10; r++) s = _mm_aesenc_si128(s, LDU(rk + 16 * r));
    return _mm_aesenclast_si128(s, LDU(rk + 160));
}

static AESNI_ATTR void ni_encrypt_blocks(const osgp_aes128_key *k, const uint8_t *in,
                                         size_t nblocks, uint8_t *out)
{
    __m128i rk[11];
    int r, i;
    for (r = 0; r < 11; r++) rk[r] = LDU(k->rk + 16 * r);
    while (nblocks >= 8) {
        __m128i s[8];
        for (i = 0; i < 8; i++) s[i] = _mm_xor_si128(LDU(in + 16 * i), rk[0]);
        for (r = 1; r < 10; r++)
            for (i = 0; i < 8; i++) s[i] = _mm_aesenc_si128(s[i], rk[r]);
        for (i = 0; i < 8; i++) STU(out + 16 * i, _mm_aesenclast_si128(s[i], rk[10]));
        in += 128;
        out += 128;
        nblocks -= 8;
    }
    while (nblocks--) {
        __m128i s = _mm_xor_si128(LDU(in), rk[0]);
        for (r = 1; r < 10; r++) s = _mm_aesenc_si128(s, rk[r]);
        STU(out, _mm_aesenclast_si128(s, rk[10]));
        in += 16;
        out += 16;
    }
}

/* Fixed-width lane bodies so the compiler keeps every state in a register. */
#define NI_LANES_BODY(N)                                                                 \
    do {                                                                                 \
        __m128i s[N];                                                                    \
        int r_, i_;                                                                      \
        for (i_ = 0; i_ < (N); i_++)                                                     \
            s[i_] = _mm_xor_si128(LDU(b + 16 * i_), LDU(keys[i_]->rk));                  \
        for (r_ = 1; r_ < 10; r_++)                                                      \
            for (i_ = 0; i_ < (N); i_++)                                                 \
                s[i_] = _mm_aesenc_si128(s[i_], LDU(keys[i_]->rk + 16 * r_));            \
        for (i_ = 0; i_ < (N); i_++)                                                     \
            STU(b + 16 * i_, _mm_aesenclast_si128(s[i_], LDU(keys[i_]->rk + 160)));      \
    } while (0)

static AESNI_ATTR void ni_lanes(const osgp_aes128_key *const *keys, uint8_t *b, size_t n)
{
    while (n >= 8) {
        NI_LANES_BODY(8);
        keys += 8;
        b += 128;
        n -= 8;
    }
    if (n >= 4) {
        NI_LANES_BODY(4);
        keys += 4;
        b += 64;
        n -= 4;
    }
    if (n >= 2) {
        NI_LANES_BODY(2);
        keys += 2;
        b += 32;
        n -= 2;
    }
    if (n) NI_LANES_BODY(1);
}

/* Build counter block j: ctr0 with its last q bytes = first + j big-endian. */
static inline void ctr_block(uint8_t *dst, const uint8_t ctr0[16], unsigned q, uint64_t i)
{
    unsigned j;
    memcpy(dst, ctr0, 16);
    for (j = 0; j < q && j < 8; j++) dst[15 - j] = (uint8_t)(i >> (8 * j));
}

static AESNI_ATTR void ni_ctr_xor(const osgp_aes128_key *k, const uint8_t ctr0[16], unsigned q,
                                  uint64_t first, const uint8_t *in, size_t len, uint8_t *out)
{
    __m128i rk[11];
    uint8_t cb[8 * 16];
    int r, i;
    for (r = 0; r < 11; r++) rk[r] = LDU(k->rk + 16 * r);
    while (len) {
        size_t nb = (len + 15) / 16, take;
        if (nb > 8) nb = 8;
        for (i = 0; i < (int)nb; i++) ctr_block(cb + 16 * i, ctr0, q, first + (uint64_t)i);
        if (len >= 128) {
            __m128i s[8];
            for (i = 0; i < 8; i++) s[i] = _mm_xor_si128(LDU(cb + 16 * i), rk[0]);
            for (r = 1; r < 10; r++)
                for (i = 0; i < 8; i++) s[i] = _mm_aesenc_si128(s[i], rk[r]);
            for (i = 0; i < 8; i++) s[i] = _mm_aesenclast_si128(s[i], rk[10]);
            for (i = 0; i < 8; i++)
                STU(out + 16 * i, _mm_xor_si128(s[i], LDU(in + 16 * i)));
            take = 128;
        } else {
            size_t rest = len;
            for (i = 0; i < (int)nb; i++) {
                __m128i s = _mm_xor_si128(LDU(cb + 16 * i), rk[0]);
                for (r = 1; r < 10; r++) s = _mm_aesenc_si128(s, rk[r]);
                STU(cb + 16 * i, _mm_aesenclast_si128(s, rk[10]));
            }
            for (i = 0; i < (int)rest; i++) out[i] = (uint8_t)(in[i] ^ cb[i]);
            take = rest;
        }
        in += take;
        out += take;
        len -= take;
        first += nb;
    }
    osgp_wipe(cb, sizeof(cb));
}
#endif /* AES_HAVE_NI */

#if !defined(AES_HAVE_NI)
static inline void ctr_block(uint8_t *dst, const uint8_t ctr0[16], unsigned q, uint64_t i)
{
    unsigned j;
    memcpy(dst, ctr0, 16);
    for (j = 0; j < q && j < 8; j++) dst[15 - j] = (uint8_t)(i >> (8 * j));
}
#endif

/* ---- ARMv8 crypto extensions ------------------------------------------------- */

#if defined(AES_HAVE_CE)
/* AESE = AddRoundKey + SubBytes + ShiftRows; AESMC = MixColumns. */
static ARMCE_ATTR uint8x16_t ce_enc1(const uint8_t *rk, uint8x16_t s)
{
    int r;
    for (r = 0; r < 9; r++) s = vaesmcq_u8(vaeseq_u8(s, vld1q_u8(rk + 16 * r)));
    s = vaeseq_u8(s, vld1q_u8(rk + 144));
    return veorq_u8(s, vld1q_u8(rk + 160));
}

/* SubWord via AESE with a zero round key on a state whose four columns are
 * equal (ShiftRows then leaves it unchanged). */
static ARMCE_ATTR void ce_expand(osgp_aes128_key *k, const uint8_t key[16])
{
    static const uint8_t rcon[10] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1B, 0x36};
    uint8_t *w = k->rk;
    int i;
    memcpy(w, key, 16);
    for (i = 1; i <= 10; i++) {
        uint8_t t[16];
        uint8_t rot[4];
        int j;
        const uint8_t *prev = w + 16 * (i - 1);
        rot[0] = prev[13];
        rot[1] = prev[14];
        rot[2] = prev[15];
        rot[3] = prev[12];
        for (j = 0; j < 16; j++) t[j] = rot[j & 3];
        vst1q_u8(t, vaeseq_u8(vld1q_u8(t), vdupq_n_u8(0)));
        t[0] ^= rcon[i - 1];
        for (j = 0; j < 4; j++) w[16 * i + j] = (uint8_t)(prev[j] ^ t[j]);
        for (j = 4; j < 16; j++) w[16 * i + j] = (uint8_t)(prev[j] ^ w[16 * i + j - 4]);
        osgp_wipe(t, sizeof(t));
    }
}

static ARMCE_ATTR void ce_lanes(const osgp_aes128_key *const *keys, uint8_t *b, size_t n)
{
    while (n) {
        size_t m = n > 8 ? 8 : n, i;
        uint8x16_t s[8];
        int r;
        for (i = 0; i < m; i++) s[i] = vld1q_u8(b + 16 * i);
        for (r = 0; r < 9; r++)
            for (i = 0; i < m; i++)
                s[i] = vaesmcq_u8(vaeseq_u8(s[i], vld1q_u8(keys[i]->rk + 16 * r)));
        for (i = 0; i < m; i++) {
            s[i] = vaeseq_u8(s[i], vld1q_u8(keys[i]->rk + 144));
            vst1q_u8(b + 16 * i, veorq_u8(s[i], vld1q_u8(keys[i]->rk + 160)));
        }
        keys += m;
        b += 16 * m;
        n -= m;
    }
}

static ARMCE_ATTR void ce_encrypt_blocks(const osgp_aes128_key *k, const uint8_t *in,
                                         size_t nblocks, uint8_t *out)
{
    size_t i;
    for (i = 0; i < nblocks; i++) vst1q_u8(out + 16 * i, ce_enc1(k->rk, vld1q_u8(in + 16 * i)));
}
#endif /* AES_HAVE_CE */

/* ---- dispatch ------------------------------------------------------------------ */

enum { PATH_PORTABLE = 0, PATH_NI = 1, PATH_CE = 2 };

static inline int aes_path(void)
{
    unsigned f = osgp_cpu_features();
#if defined(AES_HAVE_NI)
    if (f & OSGP_CPU_AESNI) return PATH_NI;
#endif
#if defined(AES_HAVE_CE)
    if (f & OSGP_CPU_ARM_AES) return PATH_CE;
#endif
    (void)f;
    return PATH_PORTABLE;
}

const char *osgp_aes_path(void)
{
    switch (aes_path()) {
    case PATH_NI: return "aesni";
    case PATH_CE: return "armce";
    default: return "portable";
    }
}

osgp_status osgp_aes128_expand(osgp_aes128_key *k, const uint8_t *key, size_t key_len)
{
    if (key_len != OSGP_AES128_KEY_SIZE) return OSGP_ERR_KEY_LENGTH;
    switch (aes_path()) {
#if defined(AES_HAVE_NI)
    case PATH_NI: ni_expand(k, key); break;
#endif
#if defined(AES_HAVE_CE)
    case PATH_CE: ce_expand(k, key); break;
#endif
    default: portable_expand(k, key); break;
    }
    memset(k->k1, 0, 16);
    memset(k->k2, 0, 16);
    k->has_subkeys = 0;
    return OSGP_OK;
}

static inline uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static inline void store_be64(uint8_t *p, uint64_t v)
{
    int i;
    for (i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Doubling in GF(2^128) as SP 800-38B 6.1 uses it: the 128-bit big-endian
 * string shifted left by one, XOR R = 0^120 || 10000111 when the bit shifted
 * out was 1 (mask arithmetic: constant time). */
static void dbl128(const uint8_t in[16], uint8_t out[16])
{
    uint64_t hi = load_be64(in), lo = load_be64(in + 8);
    uint64_t carry = 0u - (hi >> 63);
    store_be64(out, (hi << 1) | (lo >> 63));
    store_be64(out + 8, (lo << 1) ^ (carry & 0x87));
}

void osgp_cmac_subkeys(osgp_aes128_key *k)
{
    /* SP 800-38B 6.1: L = E(0^128); K1 = dbl(L), K2 = dbl(K1). */
    uint8_t l[16];
    if (k->has_subkeys) return;
    memset(l, 0, 16);
    osgp_aes128_encrypt_blocks(k, l, 1, l);
    dbl128(l, k->k1);
    dbl128(k->k1, k->k2);
    k->has_subkeys = 1;
    osgp_wipe(l, sizeof(l));
}

void osgp_aes128_wipe(osgp_aes128_key *k) { osgp_wipe(k, sizeof(*k)); }

void osgp_aes128_encrypt_blocks(const osgp_aes128_key *k, const uint8_t *in, size_t nblocks,
                                uint8_t *out)
{
    size_t i;
    switch (aes_path()) {
#if defined(AES_HAVE_NI)
    case PATH_NI: ni_encrypt_blocks(k, in, nblocks, out); return;
#endif
#if defined(AES_HAVE_CE)
    case PATH_CE: ce_encrypt_blocks(k, in, nblocks, out); return;
#endif
    default:
        for (i = 0; i < nblocks; i++) portable_encrypt(k, in + 16 * i, out + 16 * i);
    }
}

void osgp_aes128_encrypt_lanes(const osgp_aes128_key *const *keys, uint8_t *blocks, size_t n)
{
    size_t i;
    switch (aes_path()) {
#if defined(AES_HAVE_NI)
    case PATH_NI: ni_lanes(keys, blocks, n); return;
#endif
#if defined(AES_HAVE_CE)
    case PATH_CE: ce_lanes(keys, blocks, n); return;
#endif
    default:
        for (i = 0; i < n; i++) portable_encrypt(keys[i], blocks + 16 * i, blocks + 16 * i);
    }
}

void osgp_aes128_ctr_xor(const osgp_aes128_key *k, const uint8_t ctr0[16], unsigned q,
                         uint64_t first, const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t cb[8 * 16];
    size_t i;
#if defined(AES_HAVE_NI)
    if (aes_path() == PATH_NI) {
        ni_ctr_xor(k, ctr0, q, first, in, len, out);
        return;
    }
#endif
    while (len) {
        size_t nb = (len + 15) / 16, take;
        if (nb > 8) nb = 8;
        for (i = 0; i < nb; i++) ctr_block(cb + 16 * i, ctr0, q, first + i);
        osgp_aes128_encrypt_blocks(k, cb, nb, cb);
        take = len < 16 * nb ? len : 16 * nb;
        for (i = 0; i < take; i++) out[i] = (uint8_t)(in[i] ^ cb[i]);
        in += take;
        out += take;
        len -= take;
        first += nb;
    }
    osgp_wipe(cb, sizeof(cb));
}
