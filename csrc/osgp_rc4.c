/*
 * osgp_rc4.c - RC4 (KSA + PRGA, no keystream discard), as used by the legacy
 * OSGP and MEP encryption (MEP guide Appendix B, p.256-257: RC4_set_key() and
 * RC4() of the public-domain implementation).
 */
#include <string.h>

#include "osgp.h"

osgp_status osgp_rc4_init(osgp_rc4_ctx *ctx, const uint8_t *key, size_t key_len)
{
    unsigned i, j = 0;
    if (key_len < 1 || key_len > 256) return OSGP_ERR_KEY_LENGTH;
    for (i = 0; i < 256; i++) ctx->s[i] = (uint8_t)i;
    size_t k = 0;
    for (i = 0; i < 256; i++) {
        uint8_t t = ctx->s[i];
        j = (j + t + key[k]) & 0xFF;
        if (++k == key_len) k = 0;
        ctx->s[i] = ctx->s[j];
        ctx->s[j] = t;
    }
    ctx->x = 0;
    ctx->y = 0;
    return OSGP_OK;
}

void osgp_rc4_crypt(osgp_rc4_ctx *ctx, const uint8_t *in, size_t len, uint8_t *out)
{
    uint8_t x = ctx->x, y = ctx->y;
    uint8_t *s = ctx->s;
    size_t i;
    for (i = 0; i < len; i++) {
        uint8_t a, b;
        x = (uint8_t)(x + 1);
        a = s[x];
        y = (uint8_t)(y + a);
        b = s[y];
        s[x] = b;
        s[y] = a;
        out[i] = (uint8_t)(in[i] ^ s[(uint8_t)(a + b)]);
    }
    ctx->x = x;
    ctx->y = y;
}

void osgp_rc4_wipe(osgp_rc4_ctx *ctx) { osgp_wipe(ctx, sizeof(*ctx)); }
