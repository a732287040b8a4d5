# The whole C surface of csrc/osgp.h, every function nogil (conventions 3).
from libc.stdint cimport uint8_t, uint16_t


cdef extern from "osgp.h" nogil:
    ctypedef enum osgp_status:
        OSGP_OK
        OSGP_ERR_KEY_LENGTH
        OSGP_ERR_ARGUMENT
        OSGP_ERR_AUTH
        OSGP_ERR_NOMEM
        OSGP_ERR_NONCE_LENGTH
        OSGP_ERR_TAG_LENGTH
        OSGP_ERR_DATA_LENGTH

    # CPU features / dispatch
    unsigned OSGP_CPU_SSE2, OSGP_CPU_SSSE3, OSGP_CPU_SSE41, OSGP_CPU_AVX2
    unsigned OSGP_CPU_AESNI, OSGP_CPU_PCLMUL, OSGP_CPU_NEON, OSGP_CPU_ARM_AES
    unsigned osgp_cpu_detect()
    unsigned osgp_cpu_features()
    void osgp_cpu_set_mask(unsigned mask)
    int osgp_ct_compare(const uint8_t *a, const uint8_t *b, size_t len)
    void osgp_wipe(void *p, size_t len)

    # Legacy security
    ctypedef struct osgp_oma_ctx:
        uint8_t d[8]
        uint16_t pos
        uint8_t fed
        uint8_t key_len
        uint8_t key[16]
    osgp_status osgp_oma_init(osgp_oma_ctx *ctx, const uint8_t *key, size_t key_len)
    void osgp_oma_update(osgp_oma_ctx *ctx, const uint8_t *data, size_t len)
    void osgp_oma_final(const osgp_oma_ctx *ctx, uint8_t *out)
    osgp_status osgp_oma_digest(const uint8_t *key, size_t key_len,
                                const uint8_t *data, size_t len, uint8_t *out)
    osgp_status osgp_oma_digest_batch(const uint8_t *const *keys, int per_message_keys,
                                      size_t key_len, const uint8_t *const *msgs,
                                      const size_t *lens, size_t n, uint8_t *out)
    const char *osgp_oma_batch_path()
    osgp_status osgp_en14908_auth(const uint8_t *challenge, const uint8_t *key, size_t key_len,
                                  const uint8_t *oma_address, const uint8_t *data, size_t len,
                                  uint8_t *out)

    ctypedef struct osgp_rc4_ctx:
        uint8_t x
        uint8_t y
        uint8_t s[256]
    osgp_status osgp_rc4_init(osgp_rc4_ctx *ctx, const uint8_t *key, size_t key_len)
    void osgp_rc4_crypt(osgp_rc4_ctx *ctx, const uint8_t *data, size_t len, uint8_t *out)
    void osgp_rc4_wipe(osgp_rc4_ctx *ctx)

    uint16_t osgp_crc16_x25(uint16_t crc, const uint8_t *data, size_t len)
    uint16_t osgp_crc16_lon(uint16_t crc, const uint8_t *data, size_t len)


# ---- BEGIN wire (issue #4): frame kernels (csrc/osgp_frame.c) ----
from libc.stdint cimport int64_t, uint32_t

cdef extern from "osgp.h" nogil:
    int OSGP_FRAME_TRUNCATED
    int OSGP_FRAME_MALFORMED
    int OSGP_FRAME_CHECKSUM
    int osgp_mep_request_check(const uint8_t *key, size_t key_len, const uint8_t *frame, size_t len,
                               size_t max_message, uint32_t *seq, uint8_t *code, size_t *err_off)
    int osgp_mep_response_check(const uint8_t *key, size_t key_len, const uint8_t *req,
                                size_t req_len, const uint8_t *resp, size_t resp_len,
                                size_t max_message, size_t *err_off)
    int osgp_mep_request_check_batch(const uint8_t *key, size_t key_len, const uint8_t *buf,
                                     const int64_t *offsets, size_t n, size_t max_message,
                                     uint8_t *status, uint8_t *code, uint32_t *seq)
    int osgp_mep_split(const uint8_t *buf, size_t len, size_t max_message, int64_t *starts,
                       uint16_t *lengths, size_t cap, size_t *count, size_t *consumed,
                       size_t *err_off)
    ctypedef struct osgp_lon_header:
        uint8_t lpdu_hdr
        uint8_t pdu_fmt
        uint8_t addr_fmt
        uint8_t domain_len
        uint8_t src_subnet
        uint8_t src_node
        uint8_t selfield
        uint8_t dest_subnet
        uint8_t dest_node
        uint8_t group
        uint8_t member
        uint8_t pdu_hdr
        uint8_t nid[6]
        uint8_t domain[6]
        uint16_t pdu_offset
        uint16_t pdu_end
    int osgp_lon_parse(const uint8_t *data, size_t len, int lpdu, int with_crc,
                       osgp_lon_header *out, size_t *err_off)
    int osgp_lon_parse_batch(const uint8_t *buf, const int64_t *offsets, size_t n, int lpdu,
                             int with_crc, osgp_lon_header *out, uint8_t *status)
# ---- END wire (issue #4) ----
