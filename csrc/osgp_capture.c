/*
 * osgp_capture.c - capture files: a pcapng / classic pcap block walker and
 * the CN/IP-in-UDP payload extraction of its packets.
 *
 * pcapng: IETF draft-ietf-opsawg-pcapng (section 3: block layout and byte
 * order; 4.1 SHB, 4.2 IDB, 4.3 EPB, 4.4 SPB, 4.5 NRB, 4.6 ISB; appendix A
 * obsolete Packet Block).  Classic pcap: IETF draft-ietf-opsawg-pcap
 * (section 4 file header, 5 packet record).  CN/IP: ISO/IEC 14908-4 /
 * EIA-852 common header (20 bytes + extension), UDP ports 1628/1629.
 *
 * Nothing here trusts a length: every read is checked against the block
 * it lies in, the block against the buffer.
 */
#include <string.h>

#include "osgp.h"

#define SHB 0x0A0D0D0Au
#define IDB 0x00000001u
#define PB_OBSOLETE 0x00000002u
#define SPB 0x00000003u
#define NRB 0x00000004u
#define ISB 0x00000005u
#define EPB 0x00000006u
#define SYSTEMD_JOURNAL 0x00000009u
#define DSB 0x0000000Au
#define CUSTOM 0x00000BADu
#define CUSTOM_NOCOPY 0x40000BADu
#define BOM 0x1A2B3C4Du

#define OPT_ENDOFOPT 0
#define OPT_IF_TSRESOL 9   /* draft 4.2: 1 byte, b7 = power of two */
#define OPT_IF_TSOFFSET 14 /* draft 4.2: 8 bytes, seconds */

#define PCAP_MAGIC_US 0xA1B2C3D4u /* draft-ietf-opsawg-pcap section 4 */
#define PCAP_MAGIC_NS 0xA1B23C4Du
#define PCAP_MAX_RECORD 0x40000u  /* 262144: libpcap's largest snapshot length */

static uint32_t rd32(const uint8_t *p, int big)
{
    return big ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
               : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

static uint16_t rd16(const uint8_t *p, int big)
{
    return big ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint64_t rd64(const uint8_t *p, int big)
{
    uint64_t a = rd32(p, big), b = rd32(p + 4, big);
    return big ? (a << 32 | b) : (b << 32 | a);
}

/* Ticks of an interface's resolution to nanoseconds, modulo 2^64 (draft
 * 4.2 if_tsresol: b7 clear = 10^-r s, set = 2^-r s); r was checked. */
static uint64_t ticks_ns(uint64_t t, uint8_t resol)
{
    static const uint64_t p10[] = {1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u,
                                   10000000u, 100000000u, 1000000000u, 10000000000u};
    unsigned r = resol & 0x7Fu;
    if (!(resol & 0x80u)) {
        if (r <= 9)
            return t * p10[9 - r];
        return t / p10[r - 9]; /* r <= 19 (resol_ok) */
    }
    {
        uint64_t q = r ? t >> r : t, rem = r ? t & ((UINT64_C(1) << r) - 1) : 0;
        unsigned e = r;
        if (e > 32) {
            rem >>= e - 32;
            e = 32;
        }
        return q * 1000000000u + ((rem * 1000000000u) >> e);
    }
}

static int resol_ok(uint8_t resol)
{
    return (resol & 0x80u) ? (resol & 0x7Fu) <= 63 : resol <= 19;
}

typedef struct {
    const uint8_t *buf;
    size_t len;
    int strict;
    int64_t *ts, *off;
    uint32_t *caplen, *iface;
    size_t cap;
    osgp_capture_info *info;
    size_t *err_off;
} walk;

/* A fault at `at`: strict walks stop with `st`; the others count it and go
 * on (or stop, when `fatal`: nothing after it can be framed). */
#define FAULT(w, st, what, at, counter, fatal)                                                 \
    do {                                                                                       \
        if ((w)->info->err_what == OSGP_CAPTURE_FINE) {                                        \
            (w)->info->err_what = (what);                                                      \
            *(w)->err_off = (at);                                                              \
        }                                                                                      \
        if ((w)->strict)                                                                       \
            return (st);                                                                       \
        (w)->info->counter++;                                                                  \
        if (fatal)                                                                             \
            return OSGP_OK;                                                                    \
    } while (0)

static osgp_status emit(walk *w, int64_t ts, size_t off, uint32_t caplen, uint32_t iface)
{
    size_t i = (size_t)w->info->packets;
    if (i >= w->cap)
        return OSGP_ERR_CAPACITY;
    w->ts[i] = ts;
    w->off[i] = (int64_t)off;
    w->caplen[i] = caplen;
    w->iface[i] = iface;
    w->info->packets++;
    return OSGP_OK;
}

/* The options of an IDB body (after its 8 fixed bytes): if_tsresol and
 * if_tsoffset; returns 0, or the offset of the option that does not fit. */
static size_t idb_options(const uint8_t *p, size_t n, size_t base, int big, uint8_t *resol,
                          int64_t *tsoffset, uint32_t *what)
{
    size_t i = 0;
    while (i + 4 <= n) {
        uint16_t code = rd16(p + i, big), olen = rd16(p + i + 2, big);
        size_t padded = ((size_t)olen + 3u) & ~(size_t)3u;
        if (code == OPT_ENDOFOPT)
            return 0;
        if (padded > n - i - 4) {
            *what = OSGP_CAPTURE_BAD_OPTION;
            return base + i;
        }
        if (code == OPT_IF_TSRESOL && olen >= 1) {
            if (!resol_ok(p[i + 4])) {
                *what = OSGP_CAPTURE_BAD_RESOLUTION;
                return base + i + 4;
            }
            *resol = p[i + 4];
        } else if (code == OPT_IF_TSOFFSET && olen >= 8) {
            *tsoffset = (int64_t)rd64(p + i + 4, big);
        }
        i += 4 + padded;
    }
    return 0;
}

static osgp_status walk_pcapng(walk *w)
{
    const uint8_t *b = w->buf;
    size_t pos = 0, n = w->len;
    osgp_capture_info *info = w->info;
    uint32_t first_if = 0; /* global index of the current section's interface 0 */
    int big = 0;
    osgp_status st;

    info->format = OSGP_CAPTURE_PCAPNG;
    while (pos < n) {
        uint32_t type, total;
        size_t body, blen;
        if (n - pos < 12)
            FAULT(w, OSGP_ERR_TRUNCATED, OSGP_CAPTURE_TRUNCATED, pos, truncated, 1);
        type = rd32(b + pos, 0); /* SHB's type reads the same in both orders */
        if (type == SHB) {
            uint32_t bom = rd32(b + pos + 8, 0);
            if (bom != BOM && bom != 0x4D3C2B1Au)
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_MAGIC, pos + 8, bad, 1);
            big = bom != BOM;
        } else {
            type = rd32(b + pos, big);
        }
        total = rd32(b + pos + 4, big);
        if (total < 12 || total % 4)
            FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_LENGTH, pos + 4, bad, 1);
        if (total > n - pos)
            FAULT(w, OSGP_ERR_TRUNCATED, OSGP_CAPTURE_TRUNCATED, pos, truncated, 1);
        body = pos + 8;
        blen = total - 12;
        if (rd32(b + pos + total - 4, big) != total) {
            FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_LENGTH, pos + total - 4, bad, 0);
            pos += total;
            continue;
        }
        switch (type) {
        case SHB:
            if (blen < 16) {
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_LENGTH, pos + 4, bad, 0);
            } else if (rd16(b + body + 4, big) != 1) { /* major version 1 (draft 4.1) */
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_VERSION, body + 4, bad, 1);
            }
            info->sections++;
            first_if = info->interfaces;
            break;
        case IDB: {
            uint8_t resol = 6; /* default: microseconds (draft 4.2) */
            int64_t tsoffset = 0;
            uint32_t what = OSGP_CAPTURE_FINE;
            size_t at;
            if (blen < 8) {
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_LENGTH, pos + 4, bad, 0);
                break;
            }
            at = idb_options(b + body + 8, blen - 8, body + 8, big, &resol, &tsoffset, &what);
            if (at)
                FAULT(w, OSGP_ERR_MALFORMED, what, at, bad, 0);
            if (info->interfaces >= OSGP_CAPTURE_MAX_IFACES) {
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_TOO_MANY_IFACES, pos, bad, 0);
                break;
            }
            info->linktype[info->interfaces] = rd16(b + body, big);
            info->snaplen[info->interfaces] = rd32(b + body + 4, big);
            info->tsresol[info->interfaces] = resol;
            info->tsoffset[info->interfaces] = tsoffset;
            info->interfaces++;
            break;
        }
        case EPB:
        case PB_OBSOLETE: {
            /* EPB: iface:4 ts_hi:4 ts_lo:4 caplen:4 origlen:4 data (draft 4.3);
             * PB: iface:2 drops:2, then the same (appendix A) */
            uint32_t local, caplen, g;
            uint64_t ticks;
            if (blen < 20) {
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_LENGTH, pos + 4, bad, 0);
                break;
            }
            local = type == EPB ? rd32(b + body, big) : rd16(b + body, big);
            caplen = rd32(b + body + 12, big);
            if (caplen > blen - 20) {
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_PACKET_OVERRUN, body + 12, bad, 0);
                break;
            }
            if (local >= info->interfaces - first_if) {
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_NO_INTERFACE, body, bad, 0);
                break;
            }
            g = first_if + local;
            ticks = (uint64_t)rd32(b + body + 4, big) << 32 | rd32(b + body + 8, big);
            st = emit(w,
                      (int64_t)(ticks_ns(ticks, info->tsresol[g]) +
                                (uint64_t)info->tsoffset[g] * 1000000000u),
                      body + 20, caplen, g);
            if (st != OSGP_OK)
                return st;
            break;
        }
        case SPB: {
            /* origlen:4 data; captured = min(origlen, snaplen, room) (draft 4.4) */
            uint32_t caplen, snap;
            if (blen < 4) {
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_LENGTH, pos + 4, bad, 0);
                break;
            }
            if (info->interfaces == first_if) {
                FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_NO_INTERFACE, pos, bad, 0);
                break;
            }
            caplen = rd32(b + body, big);
            if (caplen > blen - 4)
                caplen = (uint32_t)(blen - 4);
            snap = info->snaplen[first_if];
            if (snap && caplen > snap)
                caplen = snap;
            st = emit(w, OSGP_CAPTURE_NO_TIME, body + 4, caplen, first_if);
            if (st != OSGP_OK)
                return st;
            break;
        }
        case NRB:
        case ISB:
        case SYSTEMD_JOURNAL:
        case DSB:
        case CUSTOM:
        case CUSTOM_NOCOPY:
            info->skipped++;
            break;
        default:
            info->unknown++;
        }
        pos += total;
    }
    return OSGP_OK;
}

static osgp_status walk_pcap(walk *w, int big, int nano)
{
    const uint8_t *b = w->buf;
    size_t pos = 24, n = w->len;
    osgp_capture_info *info = w->info;
    osgp_status st;

    info->format = OSGP_CAPTURE_PCAP;
    if (n < 24)
        FAULT(w, OSGP_ERR_TRUNCATED, OSGP_CAPTURE_TRUNCATED, 0, truncated, 1);
    if (rd16(b + 4, big) != 2) /* major version 2 (section 4) */
        FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_VERSION, 4, bad, 1);
    info->sections = 1;
    info->interfaces = 1;
    info->linktype[0] = (uint16_t)rd32(b + 20, big); /* LinkType: low 16 bits */
    info->snaplen[0] = rd32(b + 16, big);
    info->tsresol[0] = nano ? 9 : 6;
    while (pos < n) {
        uint32_t sec, frac, incl;
        if (n - pos < 16)
            FAULT(w, OSGP_ERR_TRUNCATED, OSGP_CAPTURE_TRUNCATED, pos, truncated, 1);
        sec = rd32(b + pos, big);
        frac = rd32(b + pos + 4, big);
        incl = rd32(b + pos + 8, big);
        if (incl > PCAP_MAX_RECORD)
            FAULT(w, OSGP_ERR_MALFORMED, OSGP_CAPTURE_BAD_LENGTH, pos + 8, bad, 1);
        if (incl > n - pos - 16)
            FAULT(w, OSGP_ERR_TRUNCATED, OSGP_CAPTURE_TRUNCATED, pos, truncated, 1);
        st = emit(w, (int64_t)sec * 1000000000 + (int64_t)frac * (nano ? 1 : 1000), pos + 16,
                  incl, 0);
        if (st != OSGP_OK)
            return st;
        pos += 16 + (size_t)incl;
    }
    return OSGP_OK;
}

osgp_status osgp_capture_walk(const uint8_t *buf, size_t len, int strict, int64_t *ts,
                              int64_t *off, uint32_t *caplen, uint32_t *iface, size_t cap,
                              osgp_capture_info *info, size_t *err_off)
{
    walk w = {buf, len, strict, ts, off, caplen, iface, cap, info, err_off};
    uint32_t m;
    memset(info, 0, sizeof(*info));
    *err_off = 0;
    if (len == 0)
        return OSGP_OK;
    if (len < 4) {
        info->err_what = OSGP_CAPTURE_NOT_CAPTURE;
        return OSGP_ERR_MALFORMED;
    }
    m = rd32(buf, 0);
    if (m == SHB)
        return walk_pcapng(&w);
    if (m == PCAP_MAGIC_US || m == PCAP_MAGIC_NS)
        return walk_pcap(&w, 0, m == PCAP_MAGIC_NS);
    m = rd32(buf, 1);
    if (m == PCAP_MAGIC_US || m == PCAP_MAGIC_NS)
        return walk_pcap(&w, 1, m == PCAP_MAGIC_NS);
    info->err_what = OSGP_CAPTURE_NOT_CAPTURE;
    return OSGP_ERR_MALFORMED;
}

/* ---- CN/IP in UDP ------------------------------------------------------ */

#define LINKTYPE_ETHERNET 1  /* tcpdump.org link-layer header types */
#define LINKTYPE_RAW 101
#define LINKTYPE_LINUX_SLL 113
#define LINKTYPE_IPV4 228
#define CNIP_HEADER 20 /* ISO/IEC 14908-4 common header */
#define CNIP_DATA 0x01

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* One packet: where its LPDU lies (start, end inside p), or a status. */
static uint8_t cnip_one(const uint8_t *p, size_t n, uint16_t linktype, size_t *s, size_t *e)
{
    size_t ip = 0, ihl, iplen, u, ulen, c, clen;
    uint16_t ethertype;
    int tags = 0;
    switch (linktype) {
    case LINKTYPE_ETHERNET: /* dst:6 src:6 type:2, 802.1Q / 802.1ad tags of 4 */
        ip = 14;
        if (n < ip)
            return OSGP_ERR_TRUNCATED;
        ethertype = be16(p + 12);
        while ((ethertype == 0x8100 || ethertype == 0x88A8) && tags < 2) {
            ip += 4;
            if (n < ip)
                return OSGP_ERR_TRUNCATED;
            ethertype = be16(p + ip - 2);
            tags++;
        }
        if (ethertype != 0x0800)
            return OSGP_CNIP_OTHER;
        break;
    case LINKTYPE_LINUX_SLL: /* 16-byte cooked header, protocol at 14 */
        ip = 16;
        if (n < ip)
            return OSGP_ERR_TRUNCATED;
        if (be16(p + 14) != 0x0800)
            return OSGP_CNIP_OTHER;
        break;
    case LINKTYPE_RAW:
    case LINKTYPE_IPV4:
        break;
    default:
        return OSGP_CNIP_OTHER;
    }
    /* IPv4 (RFC 791): version/IHL, total length at 2, flags/fragment at 6, protocol at 9 */
    if (n - ip < 20)
        return n - ip >= 1 && (p[ip] >> 4) != 4 ? OSGP_CNIP_OTHER : OSGP_ERR_TRUNCATED;
    if ((p[ip] >> 4) != 4 || p[ip + 9] != 17)
        return OSGP_CNIP_OTHER;
    ihl = (size_t)(p[ip] & 0x0F) * 4;
    iplen = be16(p + ip + 2);
    if (ihl < 20 || iplen < ihl)
        return OSGP_ERR_MALFORMED;
    if (iplen > n - ip)
        return OSGP_ERR_TRUNCATED;
    if (be16(p + ip + 6) & 0x3FFF) /* MF set or a fragment offset */
        return OSGP_CNIP_FRAGMENT;
    /* UDP (RFC 768): ports, length */
    u = ip + ihl;
    if (iplen - ihl < 8)
        return OSGP_ERR_TRUNCATED;
    if (be16(p + u) != 1628 && be16(p + u) != 1629 && be16(p + u + 2) != 1628 &&
        be16(p + u + 2) != 1629)
        return OSGP_CNIP_OTHER;
    ulen = be16(p + u + 4);
    if (ulen < 8 || ulen > iplen - ihl)
        return OSGP_ERR_MALFORMED;
    /* CN/IP common header: length:2 version:1 type:1 ext words:1 flags:1 ... */
    c = u + 8;
    clen = ulen - 8;
    if (clen < CNIP_HEADER)
        return OSGP_ERR_TRUNCATED;
    if (be16(p + c) != clen || (size_t)CNIP_HEADER + 4u * p[c + 4] > clen)
        return OSGP_ERR_MALFORMED;
    if (p[c + 3] != CNIP_DATA || (p[c + 5] & 0x1F) != 0) /* data packet, LonTalk */
        return OSGP_CNIP_OTHER;
    *s = c + CNIP_HEADER + 4u * p[c + 4];
    *e = c + clen;
    return *s < *e ? OSGP_OK : OSGP_ERR_TRUNCATED;
}

osgp_status osgp_cnip_extract(const uint8_t *buf, size_t len, const int64_t *off,
                              const uint32_t *caplen, const uint32_t *iface, size_t n,
                              const uint16_t *linktype, size_t n_if, uint8_t *out,
                              int64_t *out_off, uint8_t *status)
{
    size_t i, w = 0;
    out_off[0] = 0;
    for (i = 0; i < n; i++) {
        size_t s = 0, e = 0;
        uint8_t st;
        if (off[i] < 0 || (uint64_t)off[i] > len || caplen[i] > len - (size_t)off[i] ||
            iface[i] >= n_if)
            return OSGP_ERR_ARGUMENT;
        st = cnip_one(buf + off[i], caplen[i], linktype[iface[i]], &s, &e);
        status[i] = st;
        if (st == OSGP_OK) {
            memcpy(out + w, buf + off[i] + s, e - s);
            w += e - s;
        }
        out_off[i + 1] = (int64_t)w;
    }
    return OSGP_OK;
}

/* ---- byte ranges of one buffer (batch pipeline) ---------------------------------------- */

static int range_ok(size_t len, int64_t start, int64_t n)
{
    return start >= 0 && n >= 0 && (uint64_t)start <= len && (uint64_t)n <= len - (size_t)start;
}

osgp_status osgp_ranges_gather(const uint8_t *src, size_t len, const int64_t *start,
                               const int64_t *rlen, size_t n, uint8_t *out, int64_t *out_off)
{
    size_t i, w = 0;
    for (i = 0; i < n; i++)
        if (!range_ok(len, start[i], rlen[i]))
            return OSGP_ERR_ARGUMENT;
    out_off[0] = 0;
    for (i = 0; i < n; i++) {
        memcpy(out + w, src + start[i], (size_t)rlen[i]);
        w += (size_t)rlen[i];
        out_off[i + 1] = (int64_t)w;
    }
    return OSGP_OK;
}

osgp_status osgp_ranges_equal(const uint8_t *src, size_t len, const int64_t *a,
                              const int64_t *b, const int64_t *rlen, size_t n, uint8_t *eq)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!range_ok(len, a[i], rlen[i]) || !range_ok(len, b[i], rlen[i]))
            return OSGP_ERR_ARGUMENT;
    for (i = 0; i < n; i++)
        eq[i] = memcmp(src + a[i], src + b[i], (size_t)rlen[i]) == 0;
    return OSGP_OK;
}
