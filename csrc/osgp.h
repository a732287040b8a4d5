/*
 * osgp.h - the whole C surface of the osgp kernels (docs/conventions.md §2).
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

/* The one status enum of every kernel.  The per-item status arrays of the
 * batch frame parsers hold these values too (osgp._native.frames exports
 * them as OK, AUTH, TRUNCATED, MALFORMED, CHECKSUM). */
typedef enum {
    OSGP_OK = 0,
    OSGP_ERR_KEY_LENGTH = 1,    /* key has a size the algorithm does not define */
    OSGP_ERR_ARGUMENT = 2,      /* inconsistent sizes or counts */
    OSGP_ERR_AUTH = 3,          /* tag or digest mismatch */
    OSGP_ERR_NOMEM = 4,
    OSGP_ERR_NONCE_LENGTH = 5,
    OSGP_ERR_TAG_LENGTH = 6,
    OSGP_ERR_DATA_LENGTH = 7,   /* payload longer than the mode allows */
    OSGP_ERR_TRUNCATED = 8,     /* input ended inside a field or frame (fault/err_off: where) */
    OSGP_ERR_MALFORMED = 9,     /* a field holds a value the format does not allow */
    OSGP_ERR_CHECKSUM = 10,     /* link CRC mismatch (err_off: the CRC's offset) */
    OSGP_ERR_CAPACITY = 11,     /* output slot array too small: retry larger */
    OSGP_ERR_PROGRAM = 12       /* corrupt table program */
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
#define OSGP_CPU_VAES 0x100u /* 256-bit AES instructions (with AVX2) */

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
/* The same for a few bytes on a hot path, inline: the empty asm that may read
 * p's memory keeps the memset alive (GCC/Clang); elsewhere osgp_wipe. */
#if defined(__GNUC__) || defined(__clang__)
#define OSGP_WIPE_INLINE(p, n)                             \
    do {                                                   \
        memset((p), 0, (n));                               \
        __asm__ __volatile__("" : : "r"(p) : "memory");    \
    } while (0)
#else
#define OSGP_WIPE_INLINE(p, n) osgp_wipe((p), (n))
#endif

/* ==== tables / load profile (osgp.tables, osgp.loadprofile) ============== */

/* Where a table or block decode stopped: byte offset into the input, bytes
 * needed there and left, and the program counter (table program) or block
 * ordinal (load profile) of the failing step. */
typedef struct {
    size_t offset;
    size_t needed;
    size_t remaining;
    uint32_t pc;
} osgp_table_fault;

/* Table program opcodes: one 32-bit word w0 (low byte = opcode) and operands.
 * EXPR = 7 words {reg, shift, mask, mul, add, div, reg2}:
 *   v = ((reg == NONE ? 0 : (regs[reg] >> shift) & (mask ? mask : ~0)) * mul + add) / div,
 *   then v *= regs[reg2] when reg2 != NONE.  NONE = 0xFFFFFFFF; mul/add are int32.
 *   INT    w0 | signed<<8 | width<<16, store          -> 1 slot
 *   BITS   w0 | width<<16, nsub, nsub x {lo|hi<<8, store} -> nsub slots
 *   BYTES  w0 | kind<<8, EXPR(length)                 -> 2 slots (offset, length)
 *   NI     w0, fmtreg                                 -> 1 slot (int, double bits or offset)
 *   TIME   w0 | kind<<8 (0 LTIME_DATE, 1 STIME_DATE, 2 TIME), fmtreg -> 6 slots Y M D h m s
 *   FLOAT  w0 | width<<16                             -> 1 slot (double bits)
 *   ARRAY  w0, EXPR(count), body words, min element bytes; body; END -> 1 + body slots
 *   IF     w0 | mode<<8 (0 v!=0, 1 v==cmp, 2 v!=cmp), EXPR, cmp, body words; body -> 1 + body
 *   SKIP   w0, EXPR(length)                           -> nothing */
enum {
    OSGP_TOP_INT = 1, OSGP_TOP_BITS = 2, OSGP_TOP_BYTES = 3, OSGP_TOP_NI = 4,
    OSGP_TOP_TIME = 5, OSGP_TOP_FLOAT = 6, OSGP_TOP_ARRAY = 7, OSGP_TOP_END = 8,
    OSGP_TOP_IF = 9, OSGP_TOP_SKIP = 10
};

/* Run a table program over in[0..len).  regs[0..nregs) holds the context
 * parameters on entry (fields with a store register are written there);
 * slots receives the decoded values (OSGP_ERR_CAPACITY when cap is too small). */
osgp_status osgp_table_run(const uint32_t *prog, size_t prog_len, const uint8_t *in, size_t len,
                           int64_t *regs, size_t nregs, int64_t *slots, size_t cap,
                           size_t *nslots, size_t *consumed, osgp_table_fault *fault);

/* Columnar decode of n images of one fixed-layout table (each image at
 * in + offsets[i], size bytes) into columns.  cells = ncells x OSGP_COL_WORDS
 * words: kind, input offset, input width, argument (INT: signed; BITS: lo |
 * hi << 8; BCD: NI format; TIME: kind | TM_FORMAT << 8), column, output byte
 * offset in the column's row, row stride in bytes, output width.  Image i
 * writes cols[col] + i * stride + offset.  On an error *failed = the image,
 * fault->pc = the cell, fault->offset = the byte offset into in. */
enum {
    OSGP_COL_COPY = 1, OSGP_COL_INT = 2, OSGP_COL_BITS = 3, OSGP_COL_NI4 = 4,
    OSGP_COL_BCD = 5, OSGP_COL_TIME = 6
};
#define OSGP_COL_WORDS 8
osgp_status osgp_table_columns(const uint8_t *in, size_t len, const int64_t *offsets, size_t n,
                               size_t size, const uint32_t *cells, size_t ncells,
                               uint8_t *const *cols, size_t ncols, size_t *failed,
                               osgp_table_fault *fault);

/* Calendar helpers (proleptic Gregorian, days since 1970-01-01). */
int64_t osgp_days_from_civil(int64_t y, unsigned m, unsigned d);
void osgp_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* Bytes of LTIME_DATE (kind 0) / STIME_DATE (1) / TIME (2) for a TM_FORMAT; -1 unknown. */
int osgp_time_width(unsigned kind, unsigned tm_format);
/* Y M D h m s of a time field; 0 ok, -1 malformed (bad BCD). */
int osgp_time_decode(const uint8_t *p, unsigned kind, unsigned tm_format, int64_t out[6]);
/* NI_FORMAT widths and values: returns 0 integer, 1 double bits, 2 text, -1 malformed. */
int osgp_ni_width(unsigned ni_format);
int osgp_ni_decode(const uint8_t *p, unsigned ni_format, int64_t *out);

/* Load-profile block geometry (all offsets in bytes; NONE = field absent). */
typedef struct {
    uint32_t block_size;   /* bytes per block (ET21.8 or computed) */
    uint32_t nint;         /* NBR_BLK_INTS */
    uint32_t nch;          /* NBR_CHNS */
    uint32_t time_off;     /* BLK_END_TIME offset in the block (0) */
    uint32_t tm_format;    /* BT00 TM_FORMAT of STIME_DATE */
    uint32_t simple_off;   /* SIMPLE_INT_STATUS offset, or NONE */
    uint32_t int0_off;     /* interval 0 offset in the block */
    uint32_t int_size;     /* bytes per interval record */
    uint32_t ext_off;      /* EXTENDED_INT_STATUS offset in the interval, or NONE */
    uint32_t ch0_off;      /* channel 0 data offset in the interval */
    uint32_t fmt_code;     /* BT62 INT_FMT_CDE: 1,2,4,8,16,32,64,128 */
    uint32_t ni_format;    /* NI_FORMAT used when fmt_code is 64 or 128 */
    int32_t interval_s;    /* interval length in seconds */
    uint32_t descending;   /* BT63 INTERVAL_ORDER = 1 */
} osgp_lp_geometry;

/* OSGP_OK or OSGP_ERR_ARGUMENT when the geometry does not fit in a block. */
osgp_status osgp_lp_check(const osgp_lp_geometry *g);
/* Decode nblocks blocks (indices into in, chronological order) into dense
 * rows: nblocks*nint rows of values[nch] (int64; double bits for float NI),
 * status[nch], flags, times (epoch seconds, interval end), valid.
 * lasts[b] = stored index of the last recorded interval (NULL: nint-1). */
osgp_status osgp_lp_decode(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                           const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                           int64_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                           uint8_t *valid, osgp_table_fault *fault);
/* As osgp_lp_decode but keeps only the valid rows (chronological) in one
 * pass: counts[b] = rows kept from block b, *nrows = rows written.  The
 * outputs must hold nblocks*nint rows (each block is decoded in place, then
 * squeezed); scratch holds nint bytes. */
osgp_status osgp_lp_decode_rows(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                                const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                                int64_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                                uint8_t *scratch, uint32_t *counts, size_t *nrows,
                                osgp_table_fault *fault);
/* Many meters sharing one geometry; meter i writes rows from row_offsets[i]. */
osgp_status osgp_lp_decode_batch(const uint8_t *const *ins, const size_t *lens, size_t n,
                                 const osgp_lp_geometry *g, const uint32_t *const *blocks,
                                 const uint32_t *const *lasts, const size_t *nblocks,
                                 const size_t *row_offsets, int64_t *values, uint8_t *status,
                                 uint8_t *flags, int64_t *times, uint8_t *valid,
                                 size_t *failed, osgp_table_fault *fault);
/* ---- int32 values ----
 * As osgp_lp_decode with int32 values, for INT_FMT_CDE 1, 2, 8, 16, 32 only
 * (every value fits); OSGP_ERR_ARGUMENT for any other format. */
osgp_status osgp_lp_decode_i32(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                               const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                               int32_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                               uint8_t *valid, osgp_table_fault *fault);
/* ==== end tables / load profile ========================================== */

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

/* ---- frame kernels (osgp_frame.c) ----------------- */
#ifndef OSGP_WIRE_H
#define OSGP_WIRE_H
#ifdef __cplusplus
extern "C" {
#endif

/* The frame parsers return OSGP_OK, OSGP_ERR_AUTH, OSGP_ERR_KEY_LENGTH or one
 * of OSGP_ERR_TRUNCATED (*err_off = where more bytes were needed),
 * OSGP_ERR_MALFORMED (*err_off = the offending field) and OSGP_ERR_CHECKSUM
 * (*err_off = the CRC's offset). */

#define OSGP_MEP_DIGEST 8
#define OSGP_MEP_SEQ 4

/* MEP request frame <len:2 BE> <code..args> <seq:4 BE> <digest:8> (MEP guide
 * p.9-11): checks the length field against len and max_message, verifies the
 * digest over code..seq (plaintext requests), writes the sequence number and
 * request code. */
osgp_status osgp_mep_request_check(const uint8_t *key, size_t key_len, const uint8_t *frame,
                                   size_t len, size_t max_message, uint32_t *seq, uint8_t *code,
                                   size_t *err_off);

/* MEP response frame: verifies the digest chained over request(code..seq) ||
 * response(code..data) (plaintext exchange; MEP App. A, p.15-17). */
osgp_status osgp_mep_response_check(const uint8_t *key, size_t key_len, const uint8_t *req,
                                    size_t req_len, const uint8_t *resp, size_t resp_len,
                                    size_t max_message, size_t *err_off);

/* Batch over n request frames packed in buf, frame i = buf[offsets[i] ..
 * offsets[i+1]): status[i] (OSGP_OK, OSGP_ERR_AUTH, _TRUNCATED, _MALFORMED), code[i], seq[i].
 * No Python objects: call without the GIL. */
osgp_status osgp_mep_request_check_batch(const uint8_t *key, size_t key_len, const uint8_t *buf,
                                         const int64_t *offsets, size_t n, size_t max_message,
                                         uint8_t *status, uint8_t *code, uint32_t *seq);

/* Split a byte stream of consecutive MEP frames: starts[i] / lengths[i] of the
 * bodies (length 0 = alert), at most cap frames; *count frames found,
 * *consumed bytes used (a trailing partial frame is left).  Returns
 * OSGP_ERR_MALFORMED (err_off) on a length above max_message. */
osgp_status osgp_mep_split(const uint8_t *buf, size_t len, size_t max_message, int64_t *starts,
                           uint16_t *lengths, size_t cap, size_t *count, size_t *consumed,
                           size_t *err_off);

/* ISO/IEC 14908-1 LPDU/NPDU header (docs/protocol.md §6.1). */
typedef struct {
    uint8_t lpdu_hdr;     /* b7 priority, b6 alt path, b5..0 backlog */
    uint8_t pdu_fmt;      /* 0 TPDU, 1 SPDU, 2 AuthPDU, 3 APDU */
    uint8_t addr_fmt;     /* 0 broadcast, 1 group, 2 subnet/node (or group ack), 3 Neuron ID */
    uint8_t domain_len;   /* 0, 1, 3, 6 */
    uint8_t src_subnet;
    uint8_t src_node;     /* b6..0 */
    uint8_t selfield;     /* b7 of the source node byte */
    uint8_t dest_subnet;  /* fmt 0, 2, 3 */
    uint8_t dest_node;    /* fmt 2 */
    uint8_t group;        /* fmt 1, 2b */
    uint8_t member;       /* fmt 2b */
    uint8_t pdu_hdr;      /* TPDU/SPDU/AuthPDU header byte (0 for APDU) */
    uint8_t nid[6];       /* fmt 3 */
    uint8_t domain[6];
    uint16_t pdu_offset;  /* offset of the enclosed PDU in the frame */
    uint16_t pdu_end;     /* end of the enclosed PDU (before the CRC) */
} osgp_lon_header;

/* Parse an LPDU (with_crc: trailing CRC-16 checked) or, with lpdu = 0, a bare
 * NPDU (CN/IP payloads start with the LPDU header byte: pass lpdu = 1,
 * with_crc = 0). */
osgp_status osgp_lon_parse(const uint8_t *in, size_t len, int lpdu, int with_crc,
                           osgp_lon_header *out, size_t *err_off);
osgp_status osgp_lon_parse_batch(const uint8_t *buf, const int64_t *offsets, size_t n, int lpdu,
                                 int with_crc, osgp_lon_header *out, uint8_t *status);

#ifdef __cplusplus
}
#endif
#endif /* OSGP_WIRE_H */
/* ---- load-profile streaming-store threshold ----------- */
#ifndef OSGP_LPSIMD_H
#define OSGP_LPSIMD_H
#ifdef __cplusplus
extern "C" {
#endif
/* Total output bytes (all five columns) of one osgp_lp_decode(_i32) call
 * from which the fast path writes its outputs with non-temporal stores.
 * 0 = always, SIZE_MAX = never; returns the previous value.  Process-wide
 * internal knob for tests and benches; default OSGP_LP_STREAM_MIN in
 * osgp_lp.c. */
size_t osgp_lp_set_stream_min(size_t bytes);
/* ---- Capture files: pcapng / pcap walker, CN/IP in UDP (osgp_capture.c) --- */

#define OSGP_CAPTURE_MAX_IFACES 256
#define OSGP_CAPTURE_NO_TIME INT64_MIN /* a Simple Packet Block carries no timestamp */
#define OSGP_CAPTURE_PCAPNG 1
#define OSGP_CAPTURE_PCAP 2

/* What went wrong first (err_what), with *err_off the byte offset. */
enum {
    OSGP_CAPTURE_FINE = 0,
    OSGP_CAPTURE_TRUNCATED = 1,       /* the buffer ends inside a block or record */
    OSGP_CAPTURE_BAD_LENGTH = 2,      /* a block length field the format does not allow */
    OSGP_CAPTURE_BAD_MAGIC = 3,       /* byte-order magic of a section header */
    OSGP_CAPTURE_BAD_VERSION = 4,     /* major version other than 1 (pcapng) / 2 (pcap) */
    OSGP_CAPTURE_BAD_OPTION = 5,      /* an option runs past its block */
    OSGP_CAPTURE_BAD_RESOLUTION = 6,  /* if_tsresol beyond 10^-19 s or 2^-63 s */
    OSGP_CAPTURE_PACKET_OVERRUN = 7,  /* captured length larger than its block */
    OSGP_CAPTURE_NO_INTERFACE = 8,    /* a packet names an interface not described */
    OSGP_CAPTURE_TOO_MANY_IFACES = 9, /* more than OSGP_CAPTURE_MAX_IFACES interfaces */
    OSGP_CAPTURE_NOT_CAPTURE = 10     /* neither a pcapng section header nor a pcap magic */
};

/* Per-item statuses of osgp_cnip_extract besides OSGP_OK, OSGP_ERR_TRUNCATED
 * and OSGP_ERR_MALFORMED. */
#define OSGP_CNIP_OTHER 1    /* not IPv4 / UDP to or from 1628/1629 / a CN/IP LonTalk data packet */
#define OSGP_CNIP_FRAGMENT 2 /* an IPv4 fragment */

typedef struct {
    uint64_t packets;   /* packet records written to the output arrays */
    uint64_t skipped;   /* defined non-packet blocks (NRB, ISB, DSB, journal, custom) */
    uint64_t unknown;   /* block types the format does not define */
    uint64_t bad;       /* strict = 0: blocks dropped for a bad field */
    uint64_t truncated; /* strict = 0: 1 when the buffer ended inside a block */
    uint32_t sections;
    uint32_t interfaces; /* entries of the arrays below, over all sections */
    uint32_t format;     /* OSGP_CAPTURE_PCAPNG, _PCAP, 0 for an empty buffer */
    uint32_t err_what;   /* first fault (OSGP_CAPTURE_*), its offset in *err_off */
    uint16_t linktype[OSGP_CAPTURE_MAX_IFACES];
    uint8_t tsresol[OSGP_CAPTURE_MAX_IFACES];
    uint32_t snaplen[OSGP_CAPTURE_MAX_IFACES];
    int64_t tsoffset[OSGP_CAPTURE_MAX_IFACES];
} osgp_capture_info;

/* Every packet of a pcapng or classic pcap buffer (either byte order):
 * timestamp in ns (UTC), offset and captured length of its data, global
 * interface index (interfaces numbered over all sections).  strict: the
 * first fault returns OSGP_ERR_TRUNCATED / _MALFORMED; else it is counted
 * and the walk goes on where it can.  More than `cap` packets:
 * OSGP_ERR_CAPACITY (cap = len / 16 + 1 always suffices). */
osgp_status osgp_capture_walk(const uint8_t *buf, size_t len, int strict, int64_t *ts,
                              int64_t *off, uint32_t *caplen, uint32_t *iface, size_t cap,
                              osgp_capture_info *info, size_t *err_off);
/* The LPDU of every CN/IP-in-UDP packet, packed into `out` (room for the sum
 * of caplen), out_off[n + 1] its boundaries, status[n] per packet. */
osgp_status osgp_cnip_extract(const uint8_t *buf, size_t len, const int64_t *off,
                              const uint32_t *caplen, const uint32_t *iface, size_t n,
                              const uint16_t *linktype, size_t n_if, uint8_t *out,
                              int64_t *out_off, uint8_t *status);

/* Byte ranges of one buffer (the batch pipeline's frames): range i is
 * src[start[i] .. start[i] + len[i]).  gather copies them back to back into
 * `out` (room for the sum of len), out_off[n + 1] their boundaries; equal
 * sets eq[i] = 1 when ranges a[i] and b[i] (both len[i] bytes) hold the same
 * bytes.  OSGP_ERR_ARGUMENT when a range lies outside src. */
osgp_status osgp_ranges_gather(const uint8_t *src, size_t len, const int64_t *start,
                               const int64_t *rlen, size_t n, uint8_t *out, int64_t *out_off);
osgp_status osgp_ranges_equal(const uint8_t *src, size_t len, const int64_t *a,
                              const int64_t *b, const int64_t *rlen, size_t n, uint8_t *eq);

#ifdef __cplusplus
}
#endif
#endif /* OSGP_LPSIMD_H */
