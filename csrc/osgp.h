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

#ifdef __cplusplus
}
#endif

#endif /* OSGP_H */

/* ---- BEGIN wire (issue #4): frame kernels (osgp_frame.c) ----------------- */
#ifndef OSGP_WIRE_H
#define OSGP_WIRE_H
#ifdef __cplusplus
extern "C" {
#endif

/* Extra statuses of the frame parsers (outside the range of osgp_status so
 * they never collide with kernel statuses added elsewhere). */
#define OSGP_FRAME_TRUNCATED 32  /* *err_off = where more bytes were needed */
#define OSGP_FRAME_MALFORMED 33  /* *err_off = the offending field */
#define OSGP_FRAME_CHECKSUM 34   /* link CRC mismatch; *err_off = CRC offset */

#define OSGP_MEP_DIGEST 8
#define OSGP_MEP_SEQ 4

/* MEP request frame <len:2 BE> <code..args> <seq:4 BE> <digest:8> (MEP guide
 * p.9-11): checks the length field against len and max_message, verifies the
 * digest over code..seq (plaintext requests), writes the sequence number and
 * request code.  Returns OSGP_OK, OSGP_ERR_AUTH, OSGP_ERR_KEY_LENGTH or a
 * frame status. */
int osgp_mep_request_check(const uint8_t *key, size_t key_len, const uint8_t *frame, size_t len,
                           size_t max_message, uint32_t *seq, uint8_t *code, size_t *err_off);

/* MEP response frame: verifies the digest chained over request(code..seq) ||
 * response(code..data) (plaintext exchange; MEP App. A, p.15-17). */
int osgp_mep_response_check(const uint8_t *key, size_t key_len, const uint8_t *req, size_t req_len,
                            const uint8_t *resp, size_t resp_len, size_t max_message,
                            size_t *err_off);

/* Batch over n request frames packed in buf, frame i = buf[offsets[i] ..
 * offsets[i+1]): status[i] (0 ok, 3 auth, 32/33 frame), code[i], seq[i].
 * No Python objects: call without the GIL. */
int osgp_mep_request_check_batch(const uint8_t *key, size_t key_len, const uint8_t *buf,
                                 const int64_t *offsets, size_t n, size_t max_message,
                                 uint8_t *status, uint8_t *code, uint32_t *seq);

/* Split a byte stream of consecutive MEP frames: starts[i] / lengths[i] of the
 * bodies (length 0 = alert), at most cap frames; *count frames found,
 * *consumed bytes used (a trailing partial frame is left).  Returns
 * OSGP_FRAME_MALFORMED (err_off) on a length above max_message. */
int osgp_mep_split(const uint8_t *buf, size_t len, size_t max_message, int64_t *starts,
                   uint16_t *lengths, size_t cap, size_t *count, size_t *consumed,
                   size_t *err_off);

/* ISO/IEC 14908-1 LPDU/NPDU header (reference 6.1). */
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
int osgp_lon_parse(const uint8_t *in, size_t len, int lpdu, int with_crc, osgp_lon_header *out,
                   size_t *err_off);
int osgp_lon_parse_batch(const uint8_t *buf, const int64_t *offsets, size_t n, int lpdu,
                         int with_crc, osgp_lon_header *out, uint8_t *status);

#ifdef __cplusplus
}
#endif
#endif /* OSGP_WIRE_H */
/* ---- END wire (issue #4) -------------------------------------------------- */
