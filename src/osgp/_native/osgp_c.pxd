# The whole C surface of csrc/osgp.h, every function nogil (docs/conventions.md §3).
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
        OSGP_ERR_TRUNCATED
        OSGP_ERR_MALFORMED
        OSGP_ERR_CHECKSUM
        OSGP_ERR_CAPACITY
        OSGP_ERR_PROGRAM

    # CPU features / dispatch
    unsigned OSGP_CPU_SSE2, OSGP_CPU_SSSE3, OSGP_CPU_SSE41, OSGP_CPU_AVX2
    unsigned OSGP_CPU_AESNI, OSGP_CPU_PCLMUL, OSGP_CPU_NEON, OSGP_CPU_ARM_AES, OSGP_CPU_VAES
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


# ==== tables / load profile (osgp.tables, osgp.loadprofile) ====
from libc.stdint cimport int32_t, int64_t, uint32_t

cdef extern from "osgp.h" nogil:
    ctypedef struct osgp_table_fault:
        size_t offset
        size_t needed
        size_t remaining
        uint32_t pc

    osgp_status osgp_table_run(const uint32_t *prog, size_t prog_len, const uint8_t *data,
                               size_t len, int64_t *regs, size_t nregs, int64_t *slots,
                               size_t cap, size_t *nslots, size_t *consumed,
                               osgp_table_fault *fault)
    int64_t osgp_days_from_civil(int64_t y, unsigned m, unsigned d)
    void osgp_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
    int osgp_time_width(unsigned kind, unsigned tm_format)
    int osgp_ni_width(unsigned ni_format)

    ctypedef struct osgp_lp_geometry:
        uint32_t block_size
        uint32_t nint
        uint32_t nch
        uint32_t time_off
        uint32_t tm_format
        uint32_t simple_off
        uint32_t int0_off
        uint32_t int_size
        uint32_t ext_off
        uint32_t ch0_off
        uint32_t fmt_code
        uint32_t ni_format
        int32_t interval_s
        uint32_t descending
    unsigned OSGP_COL_WORDS
    osgp_status osgp_table_columns(const uint8_t *data, size_t len, const int64_t *offsets,
                                   size_t n, size_t size, const uint32_t *cells, size_t ncells,
                                   uint8_t *const *cols, size_t ncols, size_t *failed,
                                   osgp_table_fault *fault)
    osgp_status osgp_lp_check(const osgp_lp_geometry *g)
    osgp_status osgp_lp_decode(const uint8_t *data, size_t len, const osgp_lp_geometry *g,
                               const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                               int64_t *values, uint8_t *status, uint8_t *flags, int64_t *times,
                               uint8_t *valid, osgp_table_fault *fault)
    osgp_status osgp_lp_decode_rows(const uint8_t *data, size_t len, const osgp_lp_geometry *g,
                                    const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                                    int64_t *values, uint8_t *status, uint8_t *flags,
                                    int64_t *times, uint8_t *scratch, uint32_t *counts,
                                    size_t *nrows, osgp_table_fault *fault)
    osgp_status osgp_lp_decode_batch(const uint8_t *const *ins, const size_t *lens, size_t n,
                                     const osgp_lp_geometry *g, const uint32_t *const *blocks,
                                     const uint32_t *const *lasts, const size_t *nblocks,
                                     const size_t *row_offsets, int64_t *values,
                                     uint8_t *status, uint8_t *flags, int64_t *times,
                                     uint8_t *valid, size_t *failed, osgp_table_fault *fault)
# ==== end tables / load profile ====

    # ==== AES: AES-128, CCM, CMAC, CMAC KDF (osgp_aes.c, osgp_ccm.c, osgp_cmac.c) ====
    ctypedef struct osgp_aes128_key:
        uint8_t rk[176]
        uint8_t k1[16]
        uint8_t k2[16]
        uint8_t has_subkeys
    osgp_status osgp_aes128_expand(osgp_aes128_key *k, const uint8_t *key, size_t key_len)
    void osgp_cmac_subkeys(osgp_aes128_key *k)
    void osgp_aes128_wipe(osgp_aes128_key *k)
    void osgp_aes128_encrypt_blocks(const osgp_aes128_key *k, const uint8_t *data,
                                    size_t nblocks, uint8_t *out)
    void osgp_aes128_encrypt_lanes(const osgp_aes128_key *const *keys, uint8_t *blocks, size_t n)
    void osgp_aes128_ctr_xor(const osgp_aes128_key *k, const uint8_t *ctr0, unsigned q,
                             unsigned long long first, const uint8_t *data, size_t len,
                             uint8_t *out)
    const char *osgp_aes_path()
    osgp_status osgp_ccm_check(size_t nonce_len, size_t tag_len, size_t len)
    osgp_status osgp_ccm_seal(const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
                              const uint8_t *aad, size_t aad_len, const uint8_t *data,
                              size_t len, size_t tag_len, uint8_t *out)
    osgp_status osgp_ccm_open(const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
                              const uint8_t *aad, size_t aad_len, const uint8_t *data,
                              size_t len, size_t tag_len, uint8_t *out)
    osgp_status osgp_ccm_seal_batch(const osgp_aes128_key *const *keys,
                                    const uint8_t *const *nonces, size_t nonce_len,
                                    const uint8_t *const *aads, const size_t *aad_lens,
                                    const uint8_t *const *ins, const size_t *lens, size_t n,
                                    size_t tag_len, uint8_t *const *outs)
    osgp_status osgp_ccm_open_batch(const osgp_aes128_key *const *keys,
                                    const uint8_t *const *nonces, size_t nonce_len,
                                    const uint8_t *const *aads, const size_t *aad_lens,
                                    const uint8_t *const *ins, const size_t *lens, size_t n,
                                    size_t tag_len, uint8_t *const *outs, uint8_t *ok)
    ctypedef struct osgp_cmac_ctx:
        const osgp_aes128_key *key
        uint8_t x[16]
        uint8_t buf[16]
        size_t used
    void osgp_cmac_init(osgp_cmac_ctx *ctx, const osgp_aes128_key *k)
    void osgp_cmac_update(osgp_cmac_ctx *ctx, const uint8_t *data, size_t len)
    osgp_status osgp_cmac_final(osgp_cmac_ctx *ctx, uint8_t *out, size_t tag_len)
    osgp_status osgp_cmac(const osgp_aes128_key *k, const uint8_t *data, size_t len,
                          uint8_t *out, size_t tag_len)
    osgp_status osgp_cmac_batch(const osgp_aes128_key *const *keys, const uint8_t *const *ins,
                                const size_t *lens, size_t n, size_t tag_len, uint8_t *out)
    osgp_status osgp_cmac_kdf(const osgp_aes128_key *k, const uint8_t *data, size_t len,
                              uint8_t *out, size_t out_len)
    # ==== end AES ====

# ---- frame kernels (csrc/osgp_frame.c) ----
from libc.stdint cimport int64_t, uint32_t

cdef extern from "osgp.h" nogil:
    osgp_status osgp_mep_request_check(const uint8_t *key, size_t key_len, const uint8_t *frame,
                                       size_t len, size_t max_message, uint32_t *seq,
                                       uint8_t *code, size_t *err_off)
    osgp_status osgp_mep_response_check(const uint8_t *key, size_t key_len, const uint8_t *req,
                                        size_t req_len, const uint8_t *resp, size_t resp_len,
                                        size_t max_message, size_t *err_off)
    osgp_status osgp_mep_request_check_batch(const uint8_t *key, size_t key_len,
                                             const uint8_t *buf, const int64_t *offsets,
                                             size_t n, size_t max_message, uint8_t *status,
                                             uint8_t *code, uint32_t *seq)
    osgp_status osgp_mep_split(const uint8_t *buf, size_t len, size_t max_message,
                               int64_t *starts, uint16_t *lengths, size_t cap, size_t *count,
                               size_t *consumed, size_t *err_off)
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
    osgp_status osgp_lon_parse(const uint8_t *data, size_t len, int lpdu, int with_crc,
                               osgp_lon_header *out, size_t *err_off)
    osgp_status osgp_lon_parse_batch(const uint8_t *buf, const int64_t *offsets, size_t n,
                                     int lpdu, int with_crc, osgp_lon_header *out,
                                     uint8_t *status)

# ==== int32 load-profile values ====
cdef extern from "osgp.h" nogil:
    osgp_status osgp_lp_decode_i32(const uint8_t *data, size_t len, const osgp_lp_geometry *g,
                                   const uint32_t *blocks, const uint32_t *lasts, size_t nblocks,
                                   int32_t *values, uint8_t *status, uint8_t *flags,
                                   int64_t *times, uint8_t *valid, osgp_table_fault *fault)

# ==== load-profile streaming-store threshold ====
cdef extern from "osgp.h" nogil:
    size_t osgp_lp_set_stream_min(size_t nbytes)

# ==== capture files: pcapng / pcap walker, CN/IP in UDP ====
from libc.stdint cimport uint64_t
cdef extern from "osgp.h" nogil:
    int OSGP_CAPTURE_MAX_IFACES
    int64_t OSGP_CAPTURE_NO_TIME
    ctypedef struct osgp_capture_info:
        uint64_t packets
        uint64_t skipped
        uint64_t unknown
        uint64_t bad
        uint64_t truncated
        uint32_t sections
        uint32_t interfaces
        uint32_t format
        uint32_t err_what
        uint16_t linktype[256]
        uint8_t tsresol[256]
        uint32_t snaplen[256]
        int64_t tsoffset[256]
    osgp_status osgp_capture_walk(const uint8_t *buf, size_t len, int strict, int64_t *ts,
                                  int64_t *off, uint32_t *caplen, uint32_t *iface, size_t cap,
                                  osgp_capture_info *info, size_t *err_off)
    osgp_status osgp_cnip_extract(const uint8_t *buf, size_t len, const int64_t *off,
                                  const uint32_t *caplen, const uint32_t *iface, size_t n,
                                  const uint16_t *linktype, size_t n_if, uint8_t *out,
                                  int64_t *out_off, uint8_t *status)
    osgp_status osgp_ranges_gather(const uint8_t *src, size_t len, const int64_t *start,
                                   const int64_t *rlen, size_t n, uint8_t *out,
                                   int64_t *out_off)
    osgp_status osgp_ranges_equal(const uint8_t *src, size_t len, const int64_t *a,
                                  const int64_t *b, const int64_t *rlen, size_t n, uint8_t *eq)
