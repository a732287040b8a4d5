/*
 * osgp_ccm_internal.h - helpers shared by osgp_ccm.c (single calls) and
 * osgp_ccm_batch.c (batch kernels).  Not part of the C surface (osgp.h): the
 * generic CCM lane (SP 800-38C A.2 formatting of one message) and the
 * keystream queue.  The short names below are macros for osgp_ccm_-prefixed
 * external symbols.
 */
#ifndef OSGP_CCM_INTERNAL_H
#define OSGP_CCM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "osgp.h"

#define LANES 8

#define lane_init osgp_ccm_lane_init
#define lane_block osgp_ccm_lane_block
#define lanes_mac osgp_ccm_lanes_mac
#define ksq_flush osgp_ccm_ksq_flush
#define ksq_push osgp_ccm_ksq_push
#define ksq_payload osgp_ccm_ksq_payload

typedef struct {
    const osgp_aes128_key *key;
    uint8_t b0[16];
    uint8_t ctr0[16];
    uint8_t hdr[10];
    size_t hdr_len;
    const uint8_t *aad;
    size_t aad_len;
    const uint8_t *msg; /* plaintext */
    size_t len;
    size_t n_aad, nblocks;
    uint8_t x[16]; /* CBC-MAC value */
} ccm_lane;

/* Keystream queue: counter blocks of any lanes, encrypted 8 at a time, each
 * XORed into its own destination. */
typedef struct {
    uint8_t blk[LANES * 16];
    const osgp_aes128_key *k[LANES];
    const uint8_t *src[LANES];
    uint8_t *dst[LANES];
    size_t n[LANES];
    size_t m;
} ks_queue;

/* B0, Ctr_0 and enc(a) of one message (SP 800-38C A.2, A.3); msg is the
 * plaintext the CBC-MAC reads (on open: the output buffer, once decrypted). */
void lane_init(ccm_lane *L, const osgp_aes128_key *k, const uint8_t *nonce, size_t nonce_len,
               const uint8_t *aad, size_t aad_len, const uint8_t *msg, size_t len,
               size_t tag_len);
/* Block t of B0 || enc(a) || A || P, zero-padded (A.2). */
void lane_block(const ccm_lane *L, size_t t, uint8_t out[16]);
/* CBC-MAC of n <= LANES lanes in lock step (into each L->x). */
void lanes_mac(ccm_lane *lanes, size_t n);
void ksq_flush(ks_queue *Q);
void ksq_push(ks_queue *Q, const ccm_lane *L, uint64_t ctr, const uint8_t *src, uint8_t *dst,
              size_t n);
/* Ctr_1 .. Ctr_m of a lane XORed over in into out (A.3). */
void ksq_payload(ks_queue *Q, const ccm_lane *L, const uint8_t *in, uint8_t *out, size_t len);

#endif
