/*
 * osgp.h - the whole C surface of the osgp kernels (conventions 2).
 *
 * Plain C99, no Python API.  Every function takes (pointer, length) pairs,
 * writes into caller-allocated output and returns an osgp_status.  The Cython
 * layer (src/osgp/_native/osgp_c.pxd) is the only consumer and turns a status
 * into an exception of the osgp.errors hierarchy.
 */
#ifndef OSGP_H
#define OSGP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    OSGP_OK = 0,
    OSGP_ERR_KEY_LENGTH = 1,    /* key has a size the algorithm does not define */
    OSGP_ERR_ARGUMENT = 2,      /* inconsistent sizes or counts */
    OSGP_ERR_AUTH = 3,          /* tag or digest mismatch */
    OSGP_ERR_NOMEM = 4,
    OSGP_ERR_NONCE_LENGTH = 5,
    OSGP_ERR_TAG_LENGTH = 6,
    OSGP_ERR_DATA_LENGTH = 7    /* payload longer than the mode allows */
} osgp_status;

/* ---- CPU features and runtime dispatch (osgp_cpu.c) --------------------- */

#define OSGP_CPU_SSE2 0x01u
#define OSGP_CPU_SSSE3 0x02u
#define OSGP_CPU_SSE41 0x04u
#define OSGP_CPU_AVX2 0x08u
#define OSGP_CPU_AESNI 0x10u
#define OSGP_CPU_PCLMUL 0x20u
#define OSGP_CPU_NEON 0x40u
#define OSGP_CPU_ARM_AES 0x80u

/* What the hardware (and OS) supports. */
unsigned osgp_cpu_detect(void);
/* What kernels may use: detect() limited by OSGP_CPU in the environment
 * ("portable" = nothing, or a comma list of allowed names) and by
 * osgp_cpu_set_mask(). */
unsigned osgp_cpu_features(void);
void osgp_cpu_set_mask(unsigned mask);

/* ---- Legacy OSGP security: OMA digest, EN 14908 auth, RC4, CRCs ---------- */

#define OSGP_OMA_DIGEST_SIZE 8
#define OSGP_OMA_MAX_BLOCK 192 /* 16-byte key: 24 iterations x 8 bytes (MEP App. A) */

/* Streaming state of the Digest() family (MEP guide Appendix A, p.250-253):
 * the 8-byte running digest and the byte position inside the current block. */
typedef struct {
    uint8_t d[8];
    uint16_t pos;      /* 0 .. block size - 1 */
    uint8_t fed;       /* any byte absorbed yet (empty message = one zero block) */
    uint8_t key_len;   /* 6, 12 or 16 */
    uint8_t key[16];
} osgp_oma_ctx;

/* 6-, 12- or 16-byte keys; any other size gives OSGP_ERR_KEY_LENGTH. */
osgp_status osgp_oma_init(osgp_oma_ctx *ctx, const uint8_t *key, size_t key_len);
void osgp_oma_update(osgp_oma_ctx *ctx, const uint8_t *in, size_t len);
/* Writes the tag without changing ctx (so a context can be finalised, then
 * extended: request digest, then request||response digest). */
void osgp_oma_final(const osgp_oma_ctx *ctx, uint8_t out[8]);
osgp_status osgp_oma_digest(const uint8_t *key, size_t key_len,
                            const uint8_t *in, size_t len, uint8_t out[8]);
/* n messages; keys[0] for all when per_message_keys is 0, else keys[i].
 * Uses SIMD across messages where the CPU has it. out: n * 8 bytes. */
osgp_status osgp_oma_digest_batch(const uint8_t *const *keys, int per_message_keys,
                                  size_t key_len, const uint8_t *const *msgs,
                                  const size_t *lens, size_t n, uint8_t *out);
/* Which batch path osgp_oma_digest_batch takes now: "avx2", "sse2", "neon", "scalar". */
const char *osgp_oma_batch_path(void);

/* ISO/IEC 14908-1 challenge/response function (LonTalk authentication):
 * key 6 bytes (classic, 6 key iterations a pass) or 12 bytes (OMA, 18);
 * oma_address (8 bytes, OMA mode only) is prefixed to the data; data is
 * consumed from its last byte to its first; at least one pass is made. */
osgp_status osgp_en14908_auth(const uint8_t challenge[8], const uint8_t *key, size_t key_len,
                              const uint8_t *oma_address, const uint8_t *in, size_t len,
                              uint8_t out[8]);

typedef struct {
    uint8_t x, y;
    uint8_t s[256];
} osgp_rc4_ctx;

/* key_len 1..256 */
osgp_status osgp_rc4_init(osgp_rc4_ctx *ctx, const uint8_t *key, size_t key_len);
void osgp_rc4_crypt(osgp_rc4_ctx *ctx, const uint8_t *in, size_t len, uint8_t *out);
void osgp_rc4_wipe(osgp_rc4_ctx *ctx);

/* CRC-16/X-25 (ANSI C12.18 packets): reflected poly 0x8408, init 0xFFFF, xorout 0xFFFF. */
uint16_t osgp_crc16_x25(uint16_t crc, const uint8_t *in, size_t len);
/* CRC-16 of the ISO/IEC 14908-1 link layer: poly 0x1021 MSB first, init 0xFFFF,
 * complemented (CRC-16/GENIBUS). Pass crc = 0xFFFF and complement the result. */
uint16_t osgp_crc16_lon(uint16_t crc, const uint8_t *in, size_t len);

/* Constant-time comparison: 0 when equal. */
int osgp_ct_compare(const uint8_t *a, const uint8_t *b, size_t len);
/* Wipe that the compiler may not elide. */
void osgp_wipe(void *p, size_t len);

/* ==== AES: AES-128 block, CCM, CMAC, CMAC KDF (osgp_aes.c, osgp_ccm.c, osgp_cmac.c) ====
 * CLC/TS 50586 Annex F (OSGP-AES-128-PSK) names OSGP_MAC = AES-CMAC (NIST SP 800-38B,
 * RFC 4493) and OSGP_AE/OSGP_AD = AES-CCM (NIST SP 800-38C, RFC 3610); the KDF is
 * the counter-mode CMAC construction GKDF of RFC 5433 section 4.
 */
#define OSGP_AES_BLOCK 16
#define OSGP_AES128_KEY_SIZE 16
#define OSGP_AES128_ROUNDS 10

/* Expanded AES-128 key: the 11 round keys of FIPS-197 section 5.2 as bytes in
 * memory order (the same layout serves the AES-NI, ARMv8-CE and portable
 * paths, so a key expanded once stays valid when the dispatch changes). */
typedef struct {
    uint8_t rk[16 * (OSGP_AES128_ROUNDS + 1)];
    uint8_t k1[16]; /* CMAC subkeys (SP 800-38B 6.1), see osgp_cmac_subkeys */
    uint8_t k2[16];
    uint8_t has_subkeys;
} osgp_aes128_key;

/* Round keys only; key_len must be 16 (else OSGP_ERR_KEY_LENGTH). */
osgp_status osgp_aes128_expand(osgp_aes128_key *k, const uint8_t *key, size_t key_len);
/* Fills k1/k2 (idempotent); every CMAC function needs them: call it once
 * after osgp_aes128_expand for a key used with CMAC or the KDF. */
void osgp_cmac_subkeys(osgp_aes128_key *k);
void osgp_aes128_wipe(osgp_aes128_key *k);
/* ECB over nblocks independent 16-byte blocks (in may equal out). */
void osgp_aes128_encrypt_blocks(const osgp_aes128_key *k, const uint8_t *in, size_t nblocks,
                                uint8_t *out);
/* n <= 8 blocks, block i under keys[i], in place (the lock-step engine of the
 * batch kernels: independent blocks in flight for instruction-level parallelism). */
void osgp_aes128_encrypt_lanes(const osgp_aes128_key *const *keys, uint8_t *blocks, size_t n);
/* CTR keystream XOR: block j uses counter block ctr0 with its last q bytes
 * replaced by (first + j) big-endian (SP 800-38C A.3 counter formatting). */
void osgp_aes128_ctr_xor(const osgp_aes128_key *k, const uint8_t ctr0[16], unsigned q,
                         uint64_t first, const uint8_t *in, size_t len, uint8_t *out);
/* Which AES path runs now: "aesni", "armce" or "portable". */
const char *osgp_aes_path(void);

/* CCM (SP 800-38C): nonce 7..13 bytes, tag 4..16 even, any AAD length.
 * seal: out = ciphertext (len) || tag (tag_len).
 * open: in = ciphertext || tag (len includes the tag); out gets len - tag_len
 *       bytes; on a bad tag returns OSGP_ERR_AUTH and out is zeroed. */
osgp_status osgp_ccm_seal(const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
                          const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
                          size_t tag_len, uint8_t *out);
osgp_status osgp_ccm_open(const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
                          const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len,
                          size_t tag_len, uint8_t *out);
/* n messages; keys[i], nonces[i] (all nonce_len), aads[i]/aad_lens[i] (aads may
 * be NULL: no AAD), ins[i]/lens[i], outs[i].  CBC-MACs of up to 8 messages run
 * in lock step.  open: ok[i] = 1 when message i verified, else 0 and outs[i]
 * zeroed; a message shorter than its tag is just ok[i] = 0. */
osgp_status osgp_ccm_seal_batch(const osgp_aes128_key *const *keys,
                                const uint8_t *const *nonces, size_t nonce_len,
                                const uint8_t *const *aads, const size_t *aad_lens,
                                const uint8_t *const *ins, const size_t *lens, size_t n,
                                size_t tag_len, uint8_t *const *outs);
osgp_status osgp_ccm_open_batch(const osgp_aes128_key *const *keys,
                                const uint8_t *const *nonces, size_t nonce_len,
                                const uint8_t *const *aads, const size_t *aad_lens,
                                const uint8_t *const *ins, const size_t *lens, size_t n,
                                size_t tag_len, uint8_t *const *outs, uint8_t *ok);
/* Parameter checks shared with the wrappers. */
osgp_status osgp_ccm_check(size_t nonce_len, size_t tag_len, size_t len);

/* CMAC (SP 800-38B, RFC 4493), tag_len 1..16 (MSB-first truncation, 38B 6.2). */
typedef struct {
    const osgp_aes128_key *key;
    uint8_t x[16];    /* chaining value */
    uint8_t buf[16];  /* pending block (may be the last one) */
    size_t used;      /* bytes in buf, 0..16 */
} osgp_cmac_ctx;
void osgp_cmac_init(osgp_cmac_ctx *ctx, const osgp_aes128_key *k);
void osgp_cmac_update(osgp_cmac_ctx *ctx, const uint8_t *in, size_t len);
/* Writes tag_len bytes and wipes ctx. */
osgp_status osgp_cmac_final(osgp_cmac_ctx *ctx, uint8_t *out, size_t tag_len);
osgp_status osgp_cmac(const osgp_aes128_key *k, const uint8_t *in, size_t len, uint8_t *out,
                      size_t tag_len);
osgp_status osgp_cmac_batch(const osgp_aes128_key *const *keys, const uint8_t *const *ins,
                            const size_t *lens, size_t n, size_t tag_len, uint8_t *out);
/* RFC 5433 section 4 GKDF-X(Y, Z): block i (1-based) = CMAC(Y, i as 16-bit
 * big-endian || Z), concatenated and truncated to out_len (<= 65535 * 16). */
osgp_status osgp_cmac_kdf(const osgp_aes128_key *k, const uint8_t *in, size_t len,
                          uint8_t *out, size_t out_len);
/* ==== end AES ==== */

#ifdef __cplusplus
}
#endif
#endif /* OSGP_H */
