/*
 * fuzz_mep_split.c - libFuzzer harness of osgp_mep_split (a byte stream of
 * consecutive <len:2 BE> MEP frames, MEP guide p.9).
 *
 * Input: cap byte, max_message (2 bytes LE), then the stream.  Checks: the
 * frames found tile the consumed prefix exactly, each within max_message,
 * count <= cap, and a malformed status points at a length above the limit.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    size_t cap = take_u8(&in), max_message = take_u16(&in);
    size_t len = in.n, count = (size_t)-1, consumed = (size_t)-1, err_off = (size_t)-1, i, pos;
    uint8_t *buf = fz_dup(in.p, len);
    int64_t *starts = (int64_t *)malloc((cap ? cap : 1) * sizeof(int64_t));
    uint16_t *lengths = (uint16_t *)malloc((cap ? cap : 1) * sizeof(uint16_t));
    int st;
    CHECK(starts && lengths);
    st = osgp_mep_split(buf, len, max_message, starts, lengths, cap, &count, &consumed, &err_off);
    CHECK(st == OSGP_OK || st == OSGP_ERR_MALFORMED);
    CHECK(count <= cap && consumed <= len);
    for (i = 0, pos = 0; i < count; i++) {
        CHECK(starts[i] == (int64_t)pos + 2);
        CHECK(lengths[i] == ((buf[pos] << 8) | buf[pos + 1]) && lengths[i] <= max_message);
        pos += 2 + lengths[i];
    }
    CHECK(pos == consumed);
    if (st == OSGP_ERR_MALFORMED) {
        CHECK(err_off == consumed && len - consumed >= 2);
        CHECK((size_t)((buf[err_off] << 8) | buf[err_off + 1]) > max_message);
    } else if (count < cap && len - consumed >= 2) {
        /* stopped early: only a partial frame is left */
        CHECK(len - consumed - 2 < (size_t)((buf[consumed] << 8) | buf[consumed + 1]));
    }
    free(starts);
    free(lengths);
    free(buf);
    return 0;
}
