/*
 * fuzz_capture_walk.c - libFuzzer harness of osgp_capture_walk (pcapng /
 * classic pcap block walker) and osgp_cnip_extract.
 *
 * Input: mode byte (bit 0 strict, bit 1 a small output capacity), then the
 * capture.  Checks: the status is one of the documented ones; every packet
 * lies inside the buffer and names a described interface; a strict walk
 * that succeeds finds what the lenient one finds; a fault names an offset
 * inside the buffer; the extraction's LPDUs lie inside their packets.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    unsigned mode = take_u8(&in);
    int strict = mode & 1;
    size_t len = in.n, cap = (mode & 2) ? 2 : len / 16 + 1, err_off = 0, i;
    uint8_t *buf = fz_dup(in.p, len);
    int64_t *ts = malloc(cap * sizeof(int64_t)), *off = malloc(cap * sizeof(int64_t));
    uint32_t *caplen = malloc(cap * sizeof(uint32_t)), *iface = malloc(cap * sizeof(uint32_t));
    osgp_capture_info *info = malloc(sizeof(*info)), *lenient = malloc(sizeof(*lenient));
    int st = osgp_capture_walk(buf, len, strict, ts, off, caplen, iface, cap, info, &err_off);

    CHECK(st == OSGP_OK || st == OSGP_ERR_TRUNCATED || st == OSGP_ERR_MALFORMED ||
          st == OSGP_ERR_CAPACITY);
    CHECK(info->packets <= cap);
    CHECK(st != OSGP_ERR_CAPACITY || (mode & 2));
    CHECK(info->interfaces <= OSGP_CAPTURE_MAX_IFACES);
    if (info->err_what != OSGP_CAPTURE_FINE)
        CHECK(err_off <= len);
    for (i = 0; i < info->packets; i++) {
        CHECK(off[i] >= 0 && (size_t)off[i] <= len && caplen[i] <= len - (size_t)off[i]);
        CHECK(iface[i] < info->interfaces);
    }
    if (st == OSGP_OK && info->packets) {
        uint8_t *out = malloc(len + 1), *status = malloc(info->packets);
        int64_t *bounds = malloc((info->packets + 1) * sizeof(int64_t));
        CHECK(osgp_cnip_extract(buf, len, off, caplen, iface, info->packets, info->linktype,
                                info->interfaces, out, bounds, status) == OSGP_OK);
        for (i = 0; i < info->packets; i++) {
            CHECK(bounds[i + 1] >= bounds[i]);
            CHECK(bounds[i + 1] - bounds[i] <= (int64_t)caplen[i]);
            CHECK(status[i] == OSGP_OK || status[i] == OSGP_CNIP_OTHER ||
                  status[i] == OSGP_CNIP_FRAGMENT || status[i] == OSGP_ERR_TRUNCATED ||
                  status[i] == OSGP_ERR_MALFORMED);
            CHECK(status[i] == OSGP_OK || bounds[i + 1] == bounds[i]);
        }
        free(out);
        free(status);
        free(bounds);
    }
    if (strict && st == OSGP_OK && !(mode & 2)) {
        /* nothing to forgive: the lenient walk finds the same packets */
        CHECK(osgp_capture_walk(buf, len, 0, ts, off, caplen, iface, cap, lenient, &err_off) ==
              OSGP_OK);
        CHECK(lenient->packets == info->packets && lenient->bad == 0 && lenient->truncated == 0);
    }
    free(buf);
    free(ts);
    free(off);
    free(caplen);
    free(iface);
    free(info);
    free(lenient);
    return 0;
}
