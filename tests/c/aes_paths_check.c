/* Cross-check of the hardware AES path (AES-NI, or ARMv8-CE) against the
 * constant-time portable path of the same binary (osgp_cpu_set_mask switches)
 * on pseudo-random inputs, plus FIPS-197 Appendix C.1.  Not run by pytest
 * (the Python suite covers x86); used to check the ARMv8-CE path without
 * arm64 hardware:
 *   aarch64-linux-gnu-gcc -O2 -std=gnu99 -Icsrc tests/c/aes_paths_check.c \
 *       csrc/osgp_aes.c csrc/osgp_ccm.c csrc/osgp_cmac.c csrc/osgp_cpu.c -o check
 *   qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu ./check
 * Exit status 0 when every output agrees. */
#include "osgp.h"
#include <stdio.h>
#include <string.h>
static unsigned long long st = 88172645463325252ULL;
static uint8_t rnd(void){ st ^= st << 13; st ^= st >> 7; st ^= st << 17; return (uint8_t)st; }
static void fill(uint8_t *p, size_t n){ while (n--) *p++ = rnd(); }
int main(void){
  unsigned hw = osgp_cpu_detect();
  printf("detect=%x path=%s\n", hw, osgp_aes_path());
  int bad = 0;
  for (int it = 0; it < 300; it++) {
    uint8_t key[16], nonce[13], aad[40], in[300], o1[320], o2[320], t1[16], t2[16];
    size_t len = rnd() % 300, alen = rnd() % 40, nl = 7 + rnd() % 7, tl = 4 + 2 * (rnd() % 7);
    fill(key,16); fill(nonce,13); fill(aad,40); fill(in,300);
    osgp_aes128_key k1, k2;
    osgp_cpu_set_mask(~0u); osgp_aes128_expand(&k1, key, 16); osgp_cmac_subkeys(&k1);
    osgp_cpu_set_mask(0);   osgp_aes128_expand(&k2, key, 16); osgp_cmac_subkeys(&k2);
    if (memcmp(&k1, &k2, sizeof k1)) { bad++; printf("expand differs\n"); }
    osgp_cpu_set_mask(~0u); osgp_ccm_seal(&k1, nonce, nl, aad, alen, in, len, tl, o1); osgp_cmac(&k1, in, len, t1, 16);
    osgp_cpu_set_mask(0);   osgp_ccm_seal(&k1, nonce, nl, aad, alen, in, len, tl, o2); osgp_cmac(&k1, in, len, t2, 16);
    if (memcmp(o1, o2, len + tl) || memcmp(t1, t2, 16)) { bad++; printf("ccm/cmac differs at %d\n", it); }
    /* batch of 8 lanes, CE */
    const osgp_aes128_key *kp[9]; const uint8_t *np[9], *ip[9], *ap[9]; size_t lens[9], alens[9]; uint8_t *op[9]; uint8_t outs[9][320], ok[9];
    for (int i = 0; i < 9; i++) { kp[i] = &k1; np[i] = nonce; ip[i] = in; ap[i] = aad; lens[i] = len; alens[i] = alen; op[i] = outs[i]; }
    osgp_cpu_set_mask(~0u);
    osgp_ccm_seal_batch(kp, np, nl, ap, alens, ip, lens, 9, tl, op);
    for (int i = 0; i < 9; i++) if (memcmp(outs[i], o2, len + tl)) { bad++; printf("batch differs\n"); break; }
    uint8_t *po[9]; uint8_t plain[9][320]; const uint8_t *ci[9]; size_t cl[9];
    for (int i = 0; i < 9; i++) { po[i] = plain[i]; ci[i] = outs[i]; cl[i] = len + tl; }
    osgp_ccm_open_batch(kp, np, nl, ap, alens, ci, cl, 9, tl, po, ok);
    for (int i = 0; i < 9; i++) if (!ok[i] || memcmp(plain[i], in, len)) { bad++; printf("open batch differs\n"); break; }
    uint8_t tags[9 * 16]; osgp_cmac_batch(kp, ip, lens, 9, 16, tags);
    for (int i = 0; i < 9; i++) if (memcmp(tags + 16 * i, t2, 16)) { bad++; printf("cmac batch differs\n"); break; }
  }
  /* FIPS-197 C.1 on the CE path */
  osgp_cpu_set_mask(~0u);
  uint8_t key[16], pt[16] = {0x00,0x11,0x22,0x33,0x44,0x55,0x66,0x77,0x88,0x99,0xaa,0xbb,0xcc,0xdd,0xee,0xff}, ct[16];
  for (int i = 0; i < 16; i++) key[i] = (uint8_t)i;
  osgp_aes128_key k; osgp_aes128_expand(&k, key, 16); osgp_aes128_encrypt_blocks(&k, pt, 1, ct);
  static const uint8_t c1[16] = {0x69,0xc4,0xe0,0xd8,0x6a,0x7b,0x04,0x30,0xd8,0xcd,0xb7,0x80,0x70,0xb4,0xc5,0x5a};
  printf("C.1: "); for (int i = 0; i < 16; i++) printf("%02x", ct[i]); printf("\n");
  if (memcmp(ct, c1, 16)) { bad++; printf("FIPS-197 C.1 mismatch\n"); }
  printf("%s (%d mismatches)\n", bad ? "FAIL" : "OK", bad);
  return bad != 0;
}
