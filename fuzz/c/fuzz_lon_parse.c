/*
 * fuzz_lon_parse.c - libFuzzer harness of osgp_lon_parse (ISO/IEC 14908-1
 * LPDU/NPDU header, reference 6.1) and osgp_lon_parse_batch.
 *
 * Input: mode byte (bit 0 lpdu, bit 1 with_crc), then the frame.  Checks:
 * the status is one of the documented ones, err_off and the PDU bounds lie
 * inside the frame, and the batch form gives the same status and header.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    unsigned mode = take_u8(&in);
    int lpdu = mode & 1, with_crc = (mode >> 1) & 1;
    size_t len = in.n, err_off = (size_t)-1;
    uint8_t *frame = fz_dup(in.p, len), bst = 0xFF;
    osgp_lon_header h, hb;
    int64_t offs[2] = {0, (int64_t)len};
    int st = osgp_lon_parse(frame, len, lpdu, with_crc, &h, &err_off);

    CHECK(st == OSGP_OK || st == OSGP_ERR_TRUNCATED || st == OSGP_ERR_MALFORMED ||
          st == OSGP_ERR_CHECKSUM);
    if (st == OSGP_OK) {
        CHECK(h.pdu_offset < h.pdu_end);   /* at least the PDU header byte */
        CHECK(h.pdu_end <= len);
        CHECK(!with_crc || h.pdu_end == len - 2);
        CHECK(h.domain_len == 0 || h.domain_len == 1 || h.domain_len == 3 || h.domain_len == 6);
        CHECK(h.pdu_fmt < 4 && h.addr_fmt < 4);
    } else {
        CHECK(err_off <= len);
        if (st == OSGP_ERR_CHECKSUM)
            CHECK(with_crc && err_off == len - 2);
    }
    CHECK(osgp_lon_parse_batch(frame, offs, 1, lpdu, with_crc, &hb, &bst) == OSGP_OK);
    CHECK(bst == (uint8_t)st);
    if (st == OSGP_OK)
        CHECK(memcmp(&h, &hb, sizeof(h)) == 0);
    free(frame);
    return 0;
}
