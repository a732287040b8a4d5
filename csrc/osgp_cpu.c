/*
 * osgp_cpu.c - runtime CPU feature detection (docs/conventions.md §13: no -march in
 * wheels; special instructions only behind this dispatch).
 */
#include <stdlib.h>
#include <string.h>

#include "osgp.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define OSGP_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
static void cpuid(int leaf, int sub, unsigned r[4])
{
    int v[4];
    __cpuidex(v, leaf, sub);
    r[0] = (unsigned)v[0]; r[1] = (unsigned)v[1]; r[2] = (unsigned)v[2]; r[3] = (unsigned)v[3];
}
static unsigned long long xgetbv0(void) { return _xgetbv(0); }
#else
#include <cpuid.h>
static void cpuid(int leaf, int sub, unsigned r[4])
{
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}
static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif
#elif defined(__aarch64__) || defined(_M_ARM64)
#define OSGP_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_AES
#define HWCAP_AES (1 << 3)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

unsigned osgp_cpu_detect(void)
{
    unsigned f = 0;
#if defined(OSGP_X86)
    unsigned r[4];
    cpuid(0, 0, r);
    unsigned max_leaf = r[0];
    if (max_leaf >= 1) {
        cpuid(1, 0, r);
        if (r[3] & (1u << 26)) f |= OSGP_CPU_SSE2;
        if (r[2] & (1u << 9)) f |= OSGP_CPU_SSSE3;
        if (r[2] & (1u << 19)) f |= OSGP_CPU_SSE41;
        if (r[2] & (1u << 25)) f |= OSGP_CPU_AESNI;
        if (r[2] & (1u << 1)) f |= OSGP_CPU_PCLMUL;
        /* AVX2 needs the OS to save YMM state: OSXSAVE and XCR0 bits 1,2. */
        int osxsave = (r[2] & (1u << 27)) != 0;
        int avx = (r[2] & (1u << 28)) != 0;
        if (osxsave && avx && (xgetbv0() & 6) == 6 && max_leaf >= 7) {
            cpuid(7, 0, r);
            if (r[1] & (1u << 5)) f |= OSGP_CPU_AVX2;
            if ((r[1] & (1u << 5)) && (r[2] & (1u << 9))) f |= OSGP_CPU_VAES; /* ECX bit 9 */
        }
    }
#elif defined(OSGP_ARM64)
    f |= OSGP_CPU_NEON; /* Advanced SIMD is mandatory on AArch64 */
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_AES) f |= OSGP_CPU_ARM_AES;
#elif defined(__APPLE__)
    f |= OSGP_CPU_ARM_AES; /* every Apple arm64 core has the crypto extensions */
#endif
#endif
    return f;
}

static const struct {
    const char *name;
    unsigned bit;
} feature_names[] = {
    {"sse2", OSGP_CPU_SSE2},   {"ssse3", OSGP_CPU_SSSE3},   {"sse41", OSGP_CPU_SSE41},
    {"avx2", OSGP_CPU_AVX2},   {"aesni", OSGP_CPU_AESNI},   {"pclmul", OSGP_CPU_PCLMUL},
    {"neon", OSGP_CPU_NEON},   {"armaes", OSGP_CPU_ARM_AES}, {"vaes", OSGP_CPU_VAES},
};

static unsigned env_mask(void)
{
    const char *s = getenv("OSGP_CPU");
    if (s == NULL || *s == '\0') return ~0u;
    if (strcmp(s, "portable") == 0) return 0;
    unsigned m = 0;
    size_t i;
    for (i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++) {
        const char *p = strstr(s, feature_names[i].name);
        size_t n = strlen(feature_names[i].name);
        if (p && (p == s || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            m |= feature_names[i].bit;
    }
    return m;
}

static int initialised = 0;
static unsigned features = 0;
static unsigned user_mask = ~0u;

unsigned osgp_cpu_features(void)
{
    if (!initialised) {
        /* Benign race: every thread computes the same value. */
        features = osgp_cpu_detect() & env_mask();
        initialised = 1;
    }
    return features & user_mask;
}

void osgp_cpu_set_mask(unsigned mask) { user_mask = mask; }

int osgp_ct_compare(const uint8_t *a, const uint8_t *b, size_t len)
{
    volatile uint8_t acc = 0;
    size_t i;
    for (i = 0; i < len; i++) acc |= (uint8_t)(a[i] ^ b[i]);
    return acc != 0;
}

/* memset through a volatile function pointer: the compiler cannot prove the
 * call dead, so the wipe survives optimisation (portable, and fast). */
static void *(*const volatile wipe_memset)(void *, int, size_t) = memset;

void osgp_wipe(void *p, size_t len)
{
    if (len) wipe_memset(p, 0, len);
}
