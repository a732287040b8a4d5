/*
 * osgp_crc.c - the two frame check sequences of the OSGP links.
 *
 * CRC-16/X-25 (ANSI C12.18 packets, optical port): reflected polynomial
 * 0x8408 (0x1021 reversed), init 0xFFFF, final XOR 0xFFFF, sent LSB first
 * (C12.18; check value of "123456789" = 0x906E).
 * LonTalk link CRC (ISO/IEC 14908-1): polynomial 0x1021 MSB first, init
 * 0xFFFF, complemented, sent MSB first (lon-stack-ex LtCUtil.c; check value
 * 0xD64E, = CRC-16/GENIBUS).
 * Both are table driven, slicing-by-one: frames are short.
 */
#include "osgp.h"

static uint16_t x25_table[256];
static uint16_t lon_table[256];
static int tables_ready = 0;

static void make_tables(void)
{
    unsigned i, b;
    for (i = 0; i < 256; i++) {
        uint16_t r = (uint16_t)i, m = (uint16_t)(i << 8);
        for (b = 0; b < 8; b++) {
            r = (uint16_t)((r & 1) ? (r >> 1) ^ 0x8408 : r >> 1);
            m = (uint16_t)((m & 0x8000) ? (m << 1) ^ 0x1021 : m << 1);
        }
        x25_table[i] = r;
        lon_table[i] = m;
    }
    tables_ready = 1; /* benign race: every thread writes the same values */
}

uint16_t osgp_crc16_x25(uint16_t crc, const uint8_t *in, size_t len)
{
    if (!tables_ready) make_tables();
    while (len--) crc = (uint16_t)((crc >> 8) ^ x25_table[(crc ^ *in++) & 0xFF]);
    return crc;
}

uint16_t osgp_crc16_lon(uint16_t crc, const uint8_t *in, size_t len)
{
    if (!tables_ready) make_tables();
    while (len--) crc = (uint16_t)((crc << 8) ^ lon_table[((crc >> 8) ^ *in++) & 0xFF]);
    return crc;
}
