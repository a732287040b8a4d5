/*
 * fuzz_ccm_open.c - libFuzzer harness of osgp_ccm_open (AES-128-CCM, NIST
 * SP 800-38C; OSGP_AE/OSGP_AD of CLC/TS 50586 Annex F), the decryption of
 * what an OSGP-AES-128-PSK peer sends, with osgp_ccm_seal and the batch
 * forms as oracles, on the CPU's AES path and on the portable one.
 *
 * Input: selector byte (bits 0-2: nonce length 6 + v, bits 3-5: tag length
 * 2 + 2v, bit 6: "seal first": the data is plaintext, sealed and then
 * opened, bit 7: the form compared with the CPU's AES path on this input,
 * 0 the portable path, 1 osgp_ccm_open_batch), key (16 bytes), AAD length byte (255: two more bytes LE), the
 * AAD, the nonce, then the data (ciphertext || tag when opening).  Checks:
 * documented statuses only, a rejected message leaves zeros, every path and
 * the batch form agree, and seal then open gives the plaintext back.
 */
#include "fuzz_common.h"

typedef struct {
    osgp_aes128_key key;
    const uint8_t *nonce, *aad;
    size_t nonce_len, aad_len, tag_len;
    int batch; /* selector bit 7 */
} ccm_args;

static osgp_status open_on(const ccm_args *a, unsigned mask, const uint8_t *in, size_t len,
                           uint8_t *out)
{
    osgp_cpu_set_mask(mask);
    return osgp_ccm_open(&a->key, a->nonce, a->nonce_len, a->aad, a->aad_len, in, len,
                         a->tag_len, out);
}

static osgp_status seal_on(const ccm_args *a, unsigned mask, const uint8_t *in, size_t len,
                           uint8_t *out)
{
    osgp_cpu_set_mask(mask);
    return osgp_ccm_seal(&a->key, a->nonce, a->nonce_len, a->aad, a->aad_len, in, len,
                         a->tag_len, out);
}

/* open on the CPU's path and on the portable one or in a batch of two;
 * returns the common status */
static osgp_status open_all(const ccm_args *a, const uint8_t *in, size_t len, uint8_t *out)
{
    size_t plen = len >= a->tag_len ? len - a->tag_len : 0, cap = plen ? plen : 1;
    uint8_t *out2 = (uint8_t *)malloc(cap), *b0 = (uint8_t *)malloc(cap),
            *b1 = (uint8_t *)malloc(cap);
    osgp_status st, st2;
    CHECK(out2 && b0 && b1);
    st = open_on(a, ~0u, in, len, out);
    CHECK(st == OSGP_OK || st == OSGP_ERR_AUTH || st == OSGP_ERR_NONCE_LENGTH ||
          st == OSGP_ERR_TAG_LENGTH || st == OSGP_ERR_DATA_LENGTH);
    if (st == OSGP_ERR_AUTH) {
        size_t i;
        for (i = 0; i < plen; i++)
            CHECK(out[i] == 0);
    }
    if (!a->batch) {
        st2 = open_on(a, 0u, in, len, out2);
        CHECK(st2 == st);
        if (st == OSGP_OK || st == OSGP_ERR_AUTH)
            CHECK(memcmp(out, out2, plen) == 0);
    } else if (st == OSGP_OK || st == OSGP_ERR_AUTH) {
        const osgp_aes128_key *keys[2] = {&a->key, &a->key};
        const uint8_t *nonces[2] = {a->nonce, a->nonce}, *aads[2] = {a->aad, a->aad};
        const uint8_t *ins[2] = {in, in};
        size_t aad_lens[2] = {a->aad_len, a->aad_len}, lens[2] = {len, len};
        uint8_t *outs[2] = {b0, b1}, ok[2] = {7, 7};
        osgp_cpu_set_mask(~0u);
        CHECK(osgp_ccm_open_batch(keys, nonces, a->nonce_len, aads, aad_lens, ins, lens, 2,
                                  a->tag_len, outs, ok) == OSGP_OK);
        CHECK(ok[0] == (st == OSGP_OK) && ok[1] == ok[0]);
        if (len >= a->tag_len)
            CHECK(memcmp(b0, out, plen) == 0 && memcmp(b1, out, plen) == 0);
    }
    free(out2);
    free(b0);
    free(b1);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in = {data, size};
    unsigned sel = take_u8(&in);
    ccm_args a;
    size_t k = 16, len;
    const uint8_t *p;
    uint8_t *key, *nonce, *aad, *msg, *out;

    a.nonce_len = 6 + (sel & 7);
    a.tag_len = 2 + 2 * ((sel >> 3) & 7);
    a.batch = (sel >> 7) & 1;
    p = take_bytes(&in, &k);
    key = (uint8_t *)calloc(16, 1);
    CHECK(key != NULL);
    memcpy(key, p, k);
    CHECK(osgp_aes128_expand(&a.key, key, 16) == OSGP_OK);
    a.aad_len = take_u8(&in);
    if (a.aad_len == 255)
        a.aad_len = take_u16(&in);
    p = take_bytes(&in, &a.aad_len);
    aad = fz_dup(p, a.aad_len);
    k = a.nonce_len;
    p = take_bytes(&in, &k);
    nonce = (uint8_t *)calloc(a.nonce_len, 1);
    CHECK(nonce != NULL);
    memcpy(nonce, p, k);
    a.nonce = fz_dup(nonce, a.nonce_len);
    a.aad = a.aad_len ? aad : NULL;
    len = in.n;
    msg = fz_dup(in.p, len);
    out = (uint8_t *)malloc(len + a.tag_len + 1);
    CHECK(out != NULL);

    if (sel & 0x40) {
        uint8_t *ct = (uint8_t *)malloc(len + a.tag_len + 1);
        uint8_t *ct2 = (uint8_t *)malloc(len + a.tag_len + 1);
        osgp_status st;
        CHECK(ct && ct2);
        st = seal_on(&a, ~0u, msg, len, ct);
        if (!a.batch)
            CHECK(seal_on(&a, 0u, msg, len, ct2) == st);
        if (st == OSGP_OK) {
            uint8_t *exact = fz_dup(ct, len + a.tag_len);
            CHECK(a.batch || memcmp(ct, ct2, len + a.tag_len) == 0);
            CHECK(open_all(&a, exact, len + a.tag_len, out) == OSGP_OK);
            CHECK(memcmp(out, msg, len) == 0);
            exact[(len + a.tag_len) / 2] ^= 1; /* any flipped bit fails */
            CHECK(open_all(&a, exact, len + a.tag_len, out) == OSGP_ERR_AUTH);
            free(exact);
        } else {
            CHECK(st == OSGP_ERR_NONCE_LENGTH || st == OSGP_ERR_TAG_LENGTH);
        }
        free(ct);
        free(ct2);
    } else {
        open_all(&a, msg, len, out);
    }
    osgp_cpu_set_mask(~0u);
    free(out);
    free(msg);
    free((void *)a.nonce);
    free(nonce);
    free(aad);
    free(key);
    return 0;
}
