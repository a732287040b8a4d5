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

/* ==== tables / load profile (osgp.tables, osgp.loadprofile) ============== */
/* Extra status values of the table kernels (kept in this section so the
 * shared enum above stays untouched). */
#define OSGP_ERR_TRUNCATED ((osgp_status)64)  /* input ended inside a field */
#define OSGP_ERR_MALFORMED ((osgp_status)65)  /* a field holds an impossible value */
#define OSGP_ERR_CAPACITY ((osgp_status)66)   /* output slot array too small: retry larger */
#define OSGP_ERR_PROGRAM ((osgp_status)67)    /* corrupt table program */

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
/* As osgp_lp_decode but keeps only the valid rows (chronological), with the
 * block ordinal of each in row_block; *nrows = rows written.  The outputs
 * must still hold nblocks*nint rows (used as scratch). */
osgp_status osgp_lp_decode_rows(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                                const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                                int64_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                                uint8_t *valid, uint32_t *row_block, size_t *nrows,
                                osgp_table_fault *fault);
/* Many meters sharing one geometry; meter i writes rows from row_offsets[i]. */
osgp_status osgp_lp_decode_batch(const uint8_t *const *ins, const size_t *lens, size_t n,
                                 const osgp_lp_geometry *g, const uint32_t *const *blocks,
                                 const uint32_t *const *lasts, const size_t *nblocks,
                                 const size_t *row_offsets, int64_t *values, uint8_t *status,
                                 uint8_t *flags, int64_t *times, uint8_t *valid,
                                 size_t *failed, osgp_table_fault *fault);
/* ---- lpperf: int32 values (appended) ----
 * As osgp_lp_decode with int32 values, for INT_FMT_CDE 1, 2, 8, 16, 32 only
 * (every value fits); OSGP_ERR_ARGUMENT for any other format. */
osgp_status osgp_lp_decode_i32(const uint8_t *in, size_t len, const osgp_lp_geometry *g,
                               const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                               int32_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                               uint8_t *valid, osgp_table_fault *fault);
/* ==== end tables / load profile ========================================== */

#ifdef __cplusplus
}
#endif
#endif /* OSGP_H */
