/*
 * osgp_oma_batch.c - OMA digest of many messages: SIMD across messages
 * (AVX2: 32 lanes, SSE2 / NEON: 16 lanes) chosen at run time, and the scalar
 * loop, always built, for every other CPU and for OSGP_CPU=portable.
 */
#include <stdlib.h>
#include <string.h>

#include "osgp.h"

#if defined(__x86_64__) || defined(_M_X64)
#define OMA_HAVE_X86 1
#include <immintrin.h>
#if defined(__GNUC__) || defined(__clang__)
#define OMA_AVX2_ATTR __attribute__((target("avx2")))
#else
#define OMA_AVX2_ATTR
#endif
#elif defined(__aarch64__) || defined(_M_ARM64)
#define OMA_HAVE_NEON 1
#include <arm_neon.h>
#endif

#if defined(_MSC_VER)
#define OMA_ALIGN(n) __declspec(align(n))
#else
#define OMA_ALIGN(n) __attribute__((aligned(n)))
#endif

#define OMA_MAX_LANES 32

struct oma_scratch {
    OMA_ALIGN(32) uint8_t data[OSGP_OMA_MAX_BLOCK * OMA_MAX_LANES]; /* [position][lane] */
    OMA_ALIGN(32) uint8_t keys[16 * OMA_MAX_LANES];                 /* [key byte][lane] */
    OMA_ALIGN(32) uint8_t rows[OSGP_OMA_MAX_BLOCK * OMA_MAX_LANES]; /* [lane][position] */
};

static unsigned iterations_for(size_t key_len)
{
    return key_len == 6 ? 6 : key_len == 12 ? 18 : key_len == 16 ? 24 : 0;
}

#if defined(OMA_HAVE_X86) || defined(OMA_HAVE_NEON)
#if defined(OMA_HAVE_X86)
typedef __m128i v16;
#define T16_LO(a, b) _mm_unpacklo_epi8(a, b)
#define T16_HI(a, b) _mm_unpackhi_epi8(a, b)
#define T16_LOAD(p) _mm_loadu_si128((const __m128i *)(p))
#define T16_STORE(p, v) _mm_storeu_si128((__m128i *)(p), v)
#else
typedef uint8x16_t v16;
#define T16_LO(a, b) vzip1q_u8(a, b)
#define T16_HI(a, b) vzip2q_u8(a, b)
#define T16_LOAD(p) vld1q_u8(p)
#define T16_STORE(p, v) vst1q_u8(p, v)
#endif
/* rows: [lanes][OSGP_OMA_MAX_BLOCK] -> cols: [block][lanes], 16x16 tiles.
 * Four rounds of interleaving row i with row i+8 (byte granularity) rotate
 * the 8-bit (row, column) index by four, which is a transpose. */
static void oma_transpose(const uint8_t *rows, uint8_t *cols, unsigned block, unsigned lanes)
{
    unsigned l0, c0;
    for (l0 = 0; l0 < lanes; l0 += 16) {
        for (c0 = 0; c0 < block; c0 += 16) {
            v16 r[16], t[16];
            unsigned i, round;
            for (i = 0; i < 16; i++) r[i] = T16_LOAD(rows + (size_t)(l0 + i) * OSGP_OMA_MAX_BLOCK + c0);
            for (round = 0; round < 4; round++) {
                for (i = 0; i < 8; i++) {
                    t[2 * i] = T16_LO(r[i], r[i + 8]);
                    t[2 * i + 1] = T16_HI(r[i], r[i + 8]);
                }
                memcpy(r, t, sizeof(r));
            }
            for (i = 0; i < 16; i++) T16_STORE(cols + (size_t)(c0 + i) * lanes + l0, r[i]);
        }
    }
}

/* K[i][lane] = byte i of lane's key, i < 16: keys[lane] when per_lane, else
 * keys[0] for every lane; lanes >= cnt get zeros.  rows is scratch. */
static void oma_key_bytes(uint8_t *rows, uint8_t *K, const uint8_t *const *keys, int per_lane,
                          unsigned cnt, unsigned lanes, unsigned key_len)
{
    unsigned lane;
    for (lane = 0; lane < lanes; lane++) {
        uint8_t *row = rows + (size_t)lane * OSGP_OMA_MAX_BLOCK;
        memset(row, 0, 16);
        if (lane < cnt) memcpy(row, keys[per_lane ? lane : 0], key_len);
    }
    oma_transpose(rows, K, 16, lanes);
}
#endif

#if defined(OMA_HAVE_X86)
/* ---- SSE2 (baseline on x86-64): 16 lanes ---- */
#define V __m128i
#define LANES 16
#define LANE_FN(name) name##_sse2
#define LANE_ATTR
#define V_LOAD(p) _mm_load_si128((const __m128i *)(p))
#define V_STORE(p, v) _mm_storeu_si128((__m128i *)(p), v)
#define V_ZERO() _mm_setzero_si128()
#define V_SET1(c) _mm_set1_epi8(c)
#define V_ADD _mm_add_epi8
#define V_SUB _mm_sub_epi8
#define V_AND _mm_and_si128
#define V_ANDNOT _mm_andnot_si128
#define V_OR _mm_or_si128
#define V_XOR _mm_xor_si128
#define V_LT0(x) _mm_cmplt_epi8(x, zero)
#define V_SRL1(x) _mm_and_si128(_mm_srli_epi16(x, 1), _mm_set1_epi8(0x7F))
#define V_SLL7(x) _mm_and_si128(_mm_slli_epi16(x, 7), _mm_set1_epi8((char)0x80))
#define V_TEST(a, b) _mm_cmpeq_epi8(_mm_and_si128(a, b), b)
#include "osgp_oma_lanes.inc"
#undef V
#undef LANES
#undef LANE_FN
#undef LANE_ATTR
#undef V_LOAD
#undef V_STORE
#undef V_ZERO
#undef V_SET1
#undef V_ADD
#undef V_SUB
#undef V_AND
#undef V_ANDNOT
#undef V_OR
#undef V_XOR
#undef V_LT0
#undef V_SRL1
#undef V_SLL7
#undef V_TEST

/* ---- AVX2 (runtime-dispatched): 32 lanes ---- */
#define V __m256i
#define LANES 32
#define LANE_FN(name) name##_avx2
#define LANE_ATTR OMA_AVX2_ATTR
#define V_LOAD(p) _mm256_load_si256((const __m256i *)(p))
#define V_STORE(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#define V_ZERO() _mm256_setzero_si256()
#define V_SET1(c) _mm256_set1_epi8(c)
#define V_ADD _mm256_add_epi8
#define V_SUB _mm256_sub_epi8
#define V_AND _mm256_and_si256
#define V_ANDNOT _mm256_andnot_si256
#define V_OR _mm256_or_si256
#define V_XOR _mm256_xor_si256
#define V_LT0(x) _mm256_cmpgt_epi8(zero, x)
#define V_SRL1(x) _mm256_and_si256(_mm256_srli_epi16(x, 1), _mm256_set1_epi8(0x7F))
#define V_SLL7(x) _mm256_and_si256(_mm256_slli_epi16(x, 7), _mm256_set1_epi8((char)0x80))
#define V_TEST(a, b) _mm256_cmpeq_epi8(_mm256_and_si256(a, b), b)
#include "osgp_oma_lanes.inc"
#undef V
#undef LANES
#undef LANE_FN
#undef LANE_ATTR
#undef V_LOAD
#undef V_STORE
#undef V_ZERO
#undef V_SET1
#undef V_ADD
#undef V_SUB
#undef V_AND
#undef V_ANDNOT
#undef V_OR
#undef V_XOR
#undef V_LT0
#undef V_SRL1
#undef V_SLL7
#undef V_TEST
#endif /* OMA_HAVE_X86 */

#if defined(OMA_HAVE_NEON)
#define V uint8x16_t
#define LANES 16
#define LANE_FN(name) name##_neon
#define LANE_ATTR
#define V_LOAD(p) vld1q_u8(p)
#define V_STORE(p, v) vst1q_u8(p, v)
#define V_ZERO() vdupq_n_u8(0)
#define V_SET1(c) vdupq_n_u8((uint8_t)(c))
#define V_ADD vaddq_u8
#define V_SUB vsubq_u8
#define V_AND vandq_u8
#define V_ANDNOT(a, b) vbicq_u8(b, a)
#define V_OR vorrq_u8
#define V_XOR veorq_u8
#define V_LT0(x) vreinterpretq_u8_s8(vshrq_n_s8(vreinterpretq_s8_u8(x), 7))
#define V_SRL1(x) vshrq_n_u8(x, 1)
#define V_SLL7(x) vshlq_n_u8(x, 7)
#define V_TEST(a, b) vtstq_u8(a, b)
#include "osgp_oma_lanes.inc"
#endif

static const char *batch_path(unsigned f)
{
#if defined(OMA_HAVE_X86)
    if (f & OSGP_CPU_AVX2) return "avx2";
    if (f & OSGP_CPU_SSE2) return "sse2";
#elif defined(OMA_HAVE_NEON)
    if (f & OSGP_CPU_NEON) return "neon";
#endif
    (void)f;
    return "scalar";
}

const char *osgp_oma_batch_path(void) { return batch_path(osgp_cpu_features()); }

osgp_status osgp_oma_digest_batch(const uint8_t *const *keys, int per_message_keys,
                                  size_t key_len, const uint8_t *const *msgs,
                                  const size_t *lens, size_t n, uint8_t *out)
{
    unsigned iters = iterations_for(key_len);
    if (iters == 0) return OSGP_ERR_KEY_LENGTH;
    if (n == 0) return OSGP_OK;
    const char *path = batch_path(osgp_cpu_features());
    /* Below a few messages the 32-lane setup costs more than it saves. */
    if (n >= 4 && strcmp(path, "scalar") != 0) {
        struct oma_scratch *w = NULL;
#if defined(_MSC_VER)
        w = (struct oma_scratch *)_aligned_malloc(sizeof(*w), 32);
#else
        if (posix_memalign((void **)&w, 32, sizeof(*w)) != 0) w = NULL;
#endif
        if (w == NULL) return OSGP_ERR_NOMEM;
#if defined(OMA_HAVE_X86)
        if (path[0] == 'a')
            oma_lanes_avx2(keys, per_message_keys, (unsigned)key_len, iters, msgs, lens, n, out, w);
        else
            oma_lanes_sse2(keys, per_message_keys, (unsigned)key_len, iters, msgs, lens, n, out, w);
#elif defined(OMA_HAVE_NEON)
        oma_lanes_neon(keys, per_message_keys, (unsigned)key_len, iters, msgs, lens, n, out, w);
#endif
        /* The scratch held key material and plaintext. */
        osgp_wipe(w, sizeof(*w));
#if defined(_MSC_VER)
        _aligned_free(w);
#else
        free(w);
#endif
        return OSGP_OK;
    }
    size_t i;
    for (i = 0; i < n; i++)
        osgp_oma_digest(keys[per_message_keys ? i : 0], key_len, msgs[i], lens[i], out + 8 * i);
    return OSGP_OK;
}
