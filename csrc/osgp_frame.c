/*
 * osgp_frame.c - per-frame decoding on the throughput path: MEP frame parse
 * plus digest verification (OSGP Alliance MEP guide p.9-17, App. A), batch
 * over many frames, stream splitting, and the ISO/IEC 14908-1 LPDU/NPDU
 * header parse (docs/protocol.md §6.1; Wireshark packet-lon.c).
 *
 * No Python API; every reader checks the remaining length before a read.
 */
#include <string.h>

#include "osgp.h"

#define MEP_LEN 2 /* <len:2 BE> counts the bytes after itself (MEP p.9) */
#define MEP_MIN_REQUEST (1 + OSGP_MEP_SEQ + OSGP_MEP_DIGEST) /* code, seq, digest */
#define MEP_MIN_RESPONSE (1 + OSGP_MEP_DIGEST)                /* code, digest */

/* Length prefix check shared by requests and responses: returns the body length. */
static osgp_status mep_body(const uint8_t *frame, size_t len, size_t max_message, size_t min_body,
                            size_t *body_len, size_t *err_off)
{
    size_t n;
    if (len < MEP_LEN) {
        *err_off = 0;
        return OSGP_ERR_TRUNCATED;
    }
    n = ((size_t)frame[0] << 8) | frame[1];
    if (n > max_message) {
        *err_off = 0;
        return OSGP_ERR_MALFORMED;
    }
    if (len - MEP_LEN < n) {
        *err_off = len;
        return OSGP_ERR_TRUNCATED;
    }
    if (len - MEP_LEN > n) {
        *err_off = MEP_LEN + n; /* bytes after the frame */
        return OSGP_ERR_MALFORMED;
    }
    if (n < min_body) {
        *err_off = MEP_LEN + n;
        return OSGP_ERR_TRUNCATED;
    }
    *body_len = n;
    return OSGP_OK;
}

osgp_status osgp_mep_request_check(const uint8_t *key, size_t key_len, const uint8_t *frame,
                                   size_t len, size_t max_message, uint32_t *seq, uint8_t *code,
                                   size_t *err_off)
{
    size_t n, plain;
    uint8_t tag[OSGP_OMA_DIGEST_SIZE];
    osgp_status st = mep_body(frame, len, max_message, MEP_MIN_REQUEST, &n, err_off);
    if (st != OSGP_OK) return st;
    plain = n - OSGP_MEP_DIGEST; /* code .. seq */
    *code = frame[MEP_LEN];
    {
        const uint8_t *s = frame + MEP_LEN + plain - OSGP_MEP_SEQ; /* seq:4 BE (MEP p.9) */
        *seq = ((uint32_t)s[0] << 24) | ((uint32_t)s[1] << 16) | ((uint32_t)s[2] << 8) | s[3];
    }
    st = osgp_oma_digest(key, key_len, frame + MEP_LEN, plain, tag);
    if (st != OSGP_OK) return st;
    if (osgp_ct_compare(tag, frame + MEP_LEN + plain, OSGP_MEP_DIGEST) != 0) {
        *err_off = MEP_LEN + plain;
        return OSGP_ERR_AUTH;
    }
    return OSGP_OK;
}

osgp_status osgp_mep_response_check(const uint8_t *key, size_t key_len, const uint8_t *req,
                                    size_t req_len, const uint8_t *resp, size_t resp_len,
                                    size_t max_message, size_t *err_off)
{
    size_t rn, sn;
    osgp_oma_ctx ctx;
    uint8_t tag[OSGP_OMA_DIGEST_SIZE];
    osgp_status st = mep_body(req, req_len, max_message, MEP_MIN_REQUEST, &rn, err_off);
    if (st != OSGP_OK) return st;
    st = mep_body(resp, resp_len, max_message, MEP_MIN_RESPONSE, &sn, err_off);
    if (st != OSGP_OK) return st;
    st = osgp_oma_init(&ctx, key, key_len);
    if (st != OSGP_OK) return st;
    /* one digest stream over request(code..seq) || response(code..data) (App. A) */
    osgp_oma_update(&ctx, req + MEP_LEN, rn - OSGP_MEP_DIGEST);
    osgp_oma_update(&ctx, resp + MEP_LEN, sn - OSGP_MEP_DIGEST);
    osgp_oma_final(&ctx, tag);
    osgp_wipe(&ctx, sizeof(ctx));
    if (osgp_ct_compare(tag, resp + MEP_LEN + sn - OSGP_MEP_DIGEST, OSGP_MEP_DIGEST) != 0) {
        *err_off = MEP_LEN + sn - OSGP_MEP_DIGEST;
        return OSGP_ERR_AUTH;
    }
    return OSGP_OK;
}

#define BATCH_CHUNK 64

osgp_status osgp_mep_request_check_batch(const uint8_t *key, size_t key_len, const uint8_t *buf,
                                         const int64_t *offsets, size_t n, size_t max_message,
                                         uint8_t *status, uint8_t *code, uint32_t *seq)
{
    const uint8_t *msgs[BATCH_CHUNK];
    size_t lens[BATCH_CHUNK], idx[BATCH_CHUNK];
    uint8_t tags[BATCH_CHUNK * OSGP_OMA_DIGEST_SIZE];
    const uint8_t *keys[1];
    size_t i = 0, k;
    keys[0] = key;
    if (key_len != 6 && key_len != 12 && key_len != 16) return OSGP_ERR_KEY_LENGTH;
    while (i < n) {
        size_t m = 0;
        /* parse a chunk; well-formed frames go to the (SIMD) digest batch */
        for (; i < n && m < BATCH_CHUNK; i++) {
            const uint8_t *f = buf + offsets[i];
            size_t len = (size_t)(offsets[i + 1] - offsets[i]), body = 0, off = 0;
            osgp_status st = mep_body(f, len, max_message, MEP_MIN_REQUEST, &body, &off);
            code[i] = len > MEP_LEN ? f[MEP_LEN] : 0;
            seq[i] = 0;
            status[i] = (uint8_t)st;
            if (st != OSGP_OK) continue;
            {
                const uint8_t *s = f + MEP_LEN + body - OSGP_MEP_DIGEST - OSGP_MEP_SEQ;
                seq[i] = ((uint32_t)s[0] << 24) | ((uint32_t)s[1] << 16) | ((uint32_t)s[2] << 8) | s[3];
            }
            msgs[m] = f + MEP_LEN;
            lens[m] = body - OSGP_MEP_DIGEST;
            idx[m] = i;
            m++;
        }
        if (m == 0) continue;
        if (osgp_oma_digest_batch(keys, 0, key_len, msgs, lens, m, tags) != OSGP_OK)
            return OSGP_ERR_ARGUMENT;
        for (k = 0; k < m; k++) {
            if (osgp_ct_compare(tags + k * OSGP_OMA_DIGEST_SIZE, msgs[k] + lens[k], OSGP_MEP_DIGEST))
                status[idx[k]] = OSGP_ERR_AUTH;
        }
    }
    return OSGP_OK;
}

osgp_status osgp_mep_split(const uint8_t *buf, size_t len, size_t max_message, int64_t *starts,
                           uint16_t *lengths, size_t cap, size_t *count, size_t *consumed,
                           size_t *err_off)
{
    size_t pos = 0, c = 0;
    while (c < cap && len - pos >= MEP_LEN) {
        size_t n = ((size_t)buf[pos] << 8) | buf[pos + 1];
        if (n > max_message) {
            *count = c;
            *consumed = pos;
            *err_off = pos;
            return OSGP_ERR_MALFORMED;
        }
        if (len - pos - MEP_LEN < n) break; /* partial frame: keep for the next call */
        starts[c] = (int64_t)(pos + MEP_LEN);
        lengths[c] = (uint16_t)n;
        c++;
        pos += MEP_LEN + n;
    }
    *count = c;
    *consumed = pos;
    return OSGP_OK;
}

/* ---- ISO/IEC 14908-1 ------------------------------------------------------ */

/* domain length code (docs/protocol.md §6.1) */
static const uint8_t lon_domain_len[4] = {0, 1, 3, 6};

#define NEED(k)                                 \
    do {                                        \
        if (end - p < (ptrdiff_t)(k)) {         \
            *err_off = (size_t)(p - in);        \
            return OSGP_ERR_TRUNCATED;        \
        }                                       \
    } while (0)

osgp_status osgp_lon_parse(const uint8_t *in, size_t len, int lpdu, int with_crc,
                           osgp_lon_header *out, size_t *err_off)
{
    const uint8_t *p = in, *end = in + len;
    uint8_t b0, sn;
    memset(out, 0, sizeof(*out));
    if (with_crc) {
        uint16_t got, want;
        if (len < 2 + (lpdu ? 1u : 0u) + 3u) {
            *err_off = len;
            return OSGP_ERR_TRUNCATED;
        }
        end = in + len - 2;
        /* CRC-16 of the link layer, appended big-endian (docs/protocol.md §6.1) */
        got = (uint16_t)((end[0] << 8) | end[1]);
        want = (uint16_t)(osgp_crc16_lon(0xFFFF, in, len - 2) ^ 0xFFFF);
        if (got != want) {
            *err_off = len - 2;
            return OSGP_ERR_CHECKSUM;
        }
    }
    if (lpdu) {
        NEED(1);
        out->lpdu_hdr = *p++;
    }
    NEED(3);
    b0 = *p++;
    if (b0 >> 6) { /* protocol version: only 0 (legacy) is defined */
        *err_off = (size_t)(p - in - 1);
        return OSGP_ERR_MALFORMED;
    }
    out->pdu_fmt = (b0 >> 4) & 3;
    out->addr_fmt = (b0 >> 2) & 3;
    out->domain_len = lon_domain_len[b0 & 3];
    out->src_subnet = *p++;
    sn = *p++;
    out->selfield = sn >> 7; /* source node b7: 0 only in format 2b (packet-lon.c) */
    out->src_node = sn & 0x7F;
    switch (out->addr_fmt) {
    case 0: NEED(1); out->dest_subnet = *p++; break;
    case 1: NEED(1); out->group = *p++; break;
    case 2:
        NEED(2);
        out->dest_subnet = p[0];
        /* b7 of the destination node byte is 1 from a standard sender in 2a
         * and 2b (lon-stack-dx lcs_network.c); it is no part of the node
         * number, and older senders left it 0: masked, as packet-lon.c does */
        out->dest_node = p[1] & 0x7F;
        p += 2;
        if (!out->selfield) { /* 2b: group and member follow */
            NEED(2);
            out->group = p[0];
            out->member = p[1];
            p += 2;
        }
        break;
    default:
        NEED(7);
        out->dest_subnet = p[0];
        memcpy(out->nid, p + 1, 6);
        p += 7;
    }
    NEED(out->domain_len);
    memcpy(out->domain, p, out->domain_len);
    p += out->domain_len;
    out->pdu_offset = (uint16_t)(p - in);
    NEED(1);
    if (out->pdu_fmt != 3) {
        uint8_t h = *p, t = (h >> 4) & 7;
        out->pdu_hdr = h;
        if (out->pdu_fmt == 0 && (t == 3 || t > 5)) goto bad_type;      /* TPDU types 0,1,2,4,5 */
        if (out->pdu_fmt == 1 && (t == 1 || t == 3 || t > 5)) goto bad_type; /* SPDU 0,2,4,5 */
    }
    out->pdu_end = (uint16_t)(end - in);
    return OSGP_OK;
bad_type:
    *err_off = out->pdu_offset;
    return OSGP_ERR_MALFORMED;
}

osgp_status osgp_lon_parse_batch(const uint8_t *buf, const int64_t *offsets, size_t n, int lpdu,
                                 int with_crc, osgp_lon_header *out, uint8_t *status)
{
    size_t i, off;
    for (i = 0; i < n; i++) {
        status[i] = (uint8_t)osgp_lon_parse(buf + offsets[i], (size_t)(offsets[i + 1] - offsets[i]),
                                            lpdu, with_crc, out + i, &off);
        if (status[i] != OSGP_OK) memset(out + i, 0, sizeof(*out)); /* no partial headers */
    }
    return OSGP_OK;
}
