/*
 * gemv_avx2.c — AVX2 + FMA + F16C ternary GEMV kernel, and the prologue for every x86 path.
 *
 * Tiling: a tile is 4 rows; each 64-byte chunk row is read as two 32-byte halves, and the four
 * 2-bit fields of every byte are shifted down and masked to codes 0..2. VPMADDUBSW multiplies
 * them with the matching 32 int8 activations (pairs sum to at most 2 * 2 * 128, so the four
 * fields add in int16 without saturating), then VPMADDWD widens to int32 once per half. One
 * pseudo-column at a time; a tile's codes (4 * K / 4 bytes) stay in L1 across pseudo-columns, so
 * memory sees each weight byte once per call. The thread owning a tile owns its outputs.
 *
 * Floor: per 128 weights, row and pseudo-column, 3 shifts + 4 ANDs + 4 VPMADDUBSW + 3 adds +
 * VPMADDWD + add = 16 ops; at 4 vector ops per cycle that is 32 weights per cycle per core
 * (half the VNNI kernel): a hot 2560 x 2560 INT8 GEMV is >= 57 us of one core, 29 us of two.
 * Measured: 66 us on one core, 38 us on two. Cold, a core needs only ~8 GB/s of codes to keep up,
 * so the sweep stays memory bound: 17.6 ms for the 521 MB BitNet-2B sweep (~90% of DRAM).
 */
#include <immintrin.h>

#include "cpu.h"
#include "gemv.h"

static void gemv_f16_load(float *dst, const uint16_t *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    if (i < n) {
        uint16_t tmp[8] = {0};
        float out[8];
        memcpy(tmp, src + i, (size_t)(n - i) * 2);
        _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp)));
        memcpy(dst + i, out, (size_t)(n - i) * 4);
    }
}

static void gemv_f16_store(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float tmp[8] = {0};
        uint16_t out[8];
        memcpy(tmp, src + i, (size_t)(n - i) * 4);
        _mm_storeu_si128((__m128i *)out,
                         _mm256_cvtps_ph(_mm256_loadu_ps(tmp), _MM_FROUND_TO_NEAREST_INT));
        memcpy(dst + i, out, (size_t)(n - i) * 2);
    }
}

static inline int32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* sum of code * q over one 32-byte half-row: 8 int32 lanes. */
static inline __m256i half_dot(__m256i v, __m256i q0, __m256i q1, __m256i q2, __m256i q3)
{
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i f0 = _mm256_and_si256(v, m3);
    const __m256i f1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
    const __m256i f2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m3);
    const __m256i f3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
    __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(f0, q0), _mm256_maddubs_epi16(f1, q1));
    s = _mm256_add_epi16(
        s, _mm256_add_epi16(_mm256_maddubs_epi16(f2, q2), _mm256_maddubs_epi16(f3, q3)));
    return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

/* The four rows of a tile, one chunk: int32 lanes per row (four rows share the activations). */
static inline void chunk_dot4(const uint8_t *w, const int8_t *q, __m256i s[4])
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int h = 0; h < 2; h++) {
        const int8_t *qh = q + 32 * h;
        const __m256i q0 = _mm256_load_si256((const __m256i *)qh);
        const __m256i q1 = _mm256_load_si256((const __m256i *)(qh + 64));
        const __m256i q2 = _mm256_load_si256((const __m256i *)(qh + 128));
        const __m256i q3 = _mm256_load_si256((const __m256i *)(qh + 192));
        const uint8_t *wh = w + 32 * h;
        a0 = _mm256_add_epi32(a0, half_dot(_mm256_load_si256((const __m256i *)wh), q0, q1, q2, q3));
        a1 = _mm256_add_epi32(
            a1, half_dot(_mm256_load_si256((const __m256i *)(wh + 64)), q0, q1, q2, q3));
        a2 = _mm256_add_epi32(
            a2, half_dot(_mm256_load_si256((const __m256i *)(wh + 128)), q0, q1, q2, q3));
        a3 = _mm256_add_epi32(
            a3, half_dot(_mm256_load_si256((const __m256i *)(wh + 192)), q0, q1, q2, q3));
    }
    s[0] = a0;
    s[1] = a1;
    s[2] = a2;
    s[3] = a3;
}

static void gemv_kernel(const gemv_kargs *a)
{
    const cpu_ternary *w = a->w;
    const int64_t chunks = w->chunks;
    for (int64_t t = 0; t < a->ntiles; t++) {
        const int64_t tile = a->tile0 + t;
        const uint8_t *wt = w->codes + tile * chunks * GEMV_TILE_BYTES;
        for (int p = 0; p < a->pcols; p++) {
            const int8_t *q = a->q + p * a->q_stride;
            __m256i s[GEMV_R];
            if (w->scale_kind == TRIT_SCALE_BLOCK) {
                const float *sc = w->scales + tile * chunks * GEMV_R;
                const int32_t *qs = a->qsum + p * chunks;
                __m256 f[GEMV_R];
                for (int r = 0; r < GEMV_R; r++)
                    f[r] = _mm256_setzero_ps();
                for (int64_t ch = 0; ch < chunks; ch++) {
                    chunk_dot4(wt + ch * GEMV_TILE_BYTES, q + ch * GEMV_KC, s);
                    const __m256i corr = _mm256_setr_epi32(qs[ch], 0, 0, 0, 0, 0, 0, 0);
                    for (int r = 0; r < GEMV_R; r++)
                        f[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(s[r], corr)),
                                               _mm256_set1_ps(sc[ch * GEMV_R + r]), f[r]);
                }
                float *out = (float *)a->out + p * a->ld + t * GEMV_R;
                for (int r = 0; r < GEMV_R; r++)
                    out[r] = hsum_ps(f[r]);
            } else {
                __m256i acc[GEMV_R];
                for (int r = 0; r < GEMV_R; r++)
                    acc[r] = _mm256_setzero_si256();
                for (int64_t ch = 0; ch < chunks; ch++) {
                    chunk_dot4(wt + ch * GEMV_TILE_BYTES, q + ch * GEMV_KC, s);
                    for (int r = 0; r < GEMV_R; r++)
                        acc[r] = _mm256_add_epi32(acc[r], s[r]);
                }
                int32_t *out = (int32_t *)a->out + p * a->ld + t * GEMV_R;
                for (int r = 0; r < GEMV_R; r++)
                    out[r] = (int32_t)((uint32_t)hsum_epi32(acc[r]) - (uint32_t)a->qtot[p]);
            }
        }
    }
}

#define GEMV_IMPL
#include "gemv.h"

void gemv_prep_avx2(const gemv_call *c, int64_t token)
{
    gemv_prep_impl(c, token);
}

void gemv_rows_avx2(const gemv_call *c, int64_t tile_begin, int64_t tile_end)
{
    gemv_rows_impl(c, tile_begin, tile_end);
}
