/*
 * fuzz_mep_request.c - libFuzzer harness of osgp_mep_request_check (MEP
 * request frame <len:2 BE> <code..args> <seq:4 BE> <digest:8>, MEP guide
 * p.9-11, digest App. A) and of its batch form osgp_mep_request_check_batch
 * (SIMD digests across frames).
 *
 * Input: selector byte (bits 0-2 key length, bit 3 key bytes from the input
 * instead of the default MAK, bit 4 "fix up": rewrite each frame's length
 * prefix and digest so that it must verify, bits 5-7 max_message), then
 * frames, each as a length byte (255: two more bytes LE) and the bytes.
 * Checks: single-frame results are consistent with the frame, a fixed-up
 * frame verifies, and the batch gives the single-frame status, code and seq
 * (on the SIMD digest path for an input of even length, on the scalar one
 * for an odd length).
 */
#include "fuzz_common.h"

#define MAX_FRAMES 160

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    unsigned sel = take_u8(&in);
    size_t key_len = fz_key_len(sel), max_message = fz_max_message(sel, &in), n = 0, i, total = 0;
    int fixup = (sel >> 4) & 1, key_ok = key_len == 6 || key_len == 12 || key_len == 16;
    uint8_t key[16];
    uint8_t *frames[MAX_FRAMES], *buf;
    size_t lens[MAX_FRAMES];
    int64_t offs[MAX_FRAMES + 1];
    uint8_t bstatus[MAX_FRAMES], bcode[MAX_FRAMES], *kp;
    uint32_t bseq[MAX_FRAMES];
    int bst, pass;

    fz_take_key(&in, sel, key);
    kp = fz_dup(key, key_len);
    while (in.n && n < MAX_FRAMES) {
        size_t len = take_u8(&in);
        const uint8_t *p;
        if (len == 255)
            len = take_u16(&in);
        p = take_bytes(&in, &len);
        frames[n] = fz_dup(p, len);
        lens[n] = len;
        if (fixup && len >= 2) {
            uint8_t *f = frames[n];
            size_t body = len - 2;
            f[0] = (uint8_t)(body >> 8);
            f[1] = (uint8_t)body;
            if (body >= 13 && key_ok)
                CHECK(osgp_oma_digest(kp, key_len, f + 2, body - 8, f + len - 8) == OSGP_OK);
        }
        total += len;
        n++;
    }
    buf = (uint8_t *)malloc(total ? total : 1);
    CHECK(buf != NULL);
    offs[0] = 0;
    for (i = 0; i < n; i++) {
        uint32_t seq = 0xDEADBEEF;
        uint8_t code = 0xA5;
        size_t err_off = (size_t)-1, len = lens[i];
        const uint8_t *f = frames[i];
        int st = osgp_mep_request_check(kp, key_len, f, len, max_message, &seq, &code, &err_off);
        int framed = len >= 2 && len - 2 == (size_t)((f[0] << 8) | f[1]) &&
                     len - 2 <= max_message && len - 2 >= 13;
        CHECK(st == OSGP_OK || st == OSGP_ERR_AUTH || st == OSGP_ERR_KEY_LENGTH ||
              st == OSGP_ERR_TRUNCATED || st == OSGP_ERR_MALFORMED);
        CHECK((st == OSGP_ERR_TRUNCATED || st == OSGP_ERR_MALFORMED) == !framed);
        if (framed) {
            CHECK(st == (key_ok ? (fixup ? OSGP_OK : st) : OSGP_ERR_KEY_LENGTH));
            CHECK(code == f[2]);
            CHECK(seq == (((uint32_t)f[len - 12] << 24) | ((uint32_t)f[len - 11] << 16) |
                          ((uint32_t)f[len - 10] << 8) | f[len - 9]));
            if (st == OSGP_ERR_AUTH)
                CHECK(err_off == len - 8);
        } else {
            CHECK(err_off <= len);
        }
        memcpy(buf + offs[i], f, len);
        offs[i + 1] = offs[i] + (int64_t)len;
        bstatus[i] = (uint8_t)st; /* expected, compared below */
        bcode[i] = code;
        bseq[i] = seq;
    }
    /* batch on the SIMD digest path the CPU has, or on the scalar one */
    for (pass = (int)(size & 1); pass < 2; pass += 2) {
        uint8_t st2[MAX_FRAMES], code2[MAX_FRAMES];
        uint32_t seq2[MAX_FRAMES];
        osgp_cpu_set_mask(pass ? 0u : ~0u);
        bst = osgp_mep_request_check_batch(kp, key_len, buf, offs, n, max_message, st2, code2,
                                           seq2);
        CHECK(bst == (key_ok ? OSGP_OK : OSGP_ERR_KEY_LENGTH));
        for (i = 0; key_ok && i < n; i++) {
            CHECK(st2[i] == bstatus[i]);
            if (bstatus[i] == OSGP_OK || bstatus[i] == OSGP_ERR_AUTH) {
                CHECK(code2[i] == bcode[i] && seq2[i] == bseq[i]);
            } else {
                CHECK(seq2[i] == 0);
                CHECK(code2[i] == (lens[i] > 2 ? frames[i][2] : 0));
            }
        }
    }
    for (i = 0; i < n; i++)
        free(frames[i]);
    free(buf);
    free(kp);
    return 0;
}
