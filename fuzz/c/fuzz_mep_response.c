/*
 * fuzz_mep_response.c - libFuzzer harness of osgp_mep_response_check (MEP
 * response digest chained over request(code..seq) || response(code..data),
 * MEP guide App. A, p.15-17).
 *
 * Input: selector byte (bits 0-2 key length, bit 3 key bytes from the input,
 * bit 4 "fix up": rewrite both length prefixes and the response digest so the
 * pair must verify, bits 5-7 max_message), request length (2 bytes LE), the
 * request, then the response (the rest).  Checks: the status matches the
 * framing of both frames, a fixed-up pair verifies, and an independent
 * re-computation with the streaming digest API agrees with the verdict.
 */
#include "fuzz_common.h"

static int framed(const uint8_t *f, size_t len, size_t max_message, size_t min_body)
{
    return len >= 2 && len - 2 == (size_t)((f[0] << 8) | f[1]) && len - 2 <= max_message &&
           len - 2 >= min_body;
}

/* Tag over request(code..seq) || response(code..data) with one-shot digest
 * of the concatenation (not the kernel's streaming path). */
static void expected_tag(const uint8_t *key, size_t key_len, const uint8_t *req, size_t req_len,
                         const uint8_t *resp, size_t resp_len, uint8_t tag[8])
{
    size_t a = req_len - 2 - 8, b = resp_len - 2 - 8;
    uint8_t *m = (uint8_t *)malloc(a + b + 1);
    CHECK(m != NULL);
    memcpy(m, req + 2, a);
    memcpy(m + a, resp + 2, b);
    CHECK(osgp_oma_digest(key, key_len, m, a + b, tag) == OSGP_OK);
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    unsigned sel = take_u8(&in);
    size_t key_len = fz_key_len(sel), max_message = fz_max_message(sel, &in);
    size_t req_len = take_u16(&in), resp_len, err_off = (size_t)-1;
    int fixup = (sel >> 4) & 1, key_ok = key_len == 6 || key_len == 12 || key_len == 16;
    int st, fr_req, fr_resp;
    uint8_t key[16], *kp, *req, *resp;
    const uint8_t *p;

    fz_take_key(&in, sel, key);
    kp = fz_dup(key, key_len);
    p = take_bytes(&in, &req_len);
    req = fz_dup(p, req_len);
    resp_len = in.n;
    resp = fz_dup(in.p, resp_len);
    if (fixup) {
        if (req_len >= 2) {
            req[0] = (uint8_t)((req_len - 2) >> 8);
            req[1] = (uint8_t)(req_len - 2);
        }
        if (resp_len >= 2) {
            resp[0] = (uint8_t)((resp_len - 2) >> 8);
            resp[1] = (uint8_t)(resp_len - 2);
        }
        if (key_ok && req_len >= 2 + 13 && resp_len >= 2 + 9)
            expected_tag(kp, key_len, req, req_len, resp, resp_len, resp + resp_len - 8);
    }
    fr_req = framed(req, req_len, max_message, 13);
    fr_resp = framed(resp, resp_len, max_message, 9);
    st = osgp_mep_response_check(kp, key_len, req, req_len, resp, resp_len, max_message, &err_off);
    if (!fr_req || !fr_resp) {
        CHECK(st == OSGP_ERR_TRUNCATED || st == OSGP_ERR_MALFORMED);
        CHECK(err_off <= (fr_req ? resp_len : req_len));
    } else if (!key_ok) {
        CHECK(st == OSGP_ERR_KEY_LENGTH);
    } else {
        uint8_t tag[8];
        expected_tag(kp, key_len, req, req_len, resp, resp_len, tag);
        CHECK(st == (memcmp(tag, resp + resp_len - 8, 8) == 0 ? OSGP_OK : OSGP_ERR_AUTH));
        CHECK(!fixup || st == OSGP_OK);
        if (st == OSGP_ERR_AUTH)
            CHECK(err_off == resp_len - 8);
    }
    free(kp);
    free(req);
    free(resp);
    return 0;
}
