/*
 * attention_avx512.c — the attention inner kernels with AVX-512 (F/DQ) and F16C; see
 * attention.c for the tiling and the byte floor.
 *
 * Scores: blocks of 4 rows x 4 keys (2 x 8 and 1 x 16 for one- and two-head groups, as in MHA
 * decode) keep 16 dot-product accumulators in registers while d streams by; the 16 horizontal
 * sums are then done together in 15 shuffle+add steps instead of 16 separate reductions. P.V:
 * blocks of 4 rows x 64 output dims (16 accumulators), so each V vector loaded from L1 feeds 4
 * FMAs. exp is a degree-7 Taylor polynomial after Cody-Waite reduction (|r| <= ln2/2, error
 * below one f32 ulp) and _mm512_scalef_ps, which underflows to 0 cleanly.
 *
 * Only called when the plugin chose CPU_ISA_AVX512 at init (run-time CPUID check).
 */
#include <immintrin.h>
#include <math.h>

#include "attention.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE __m512 exp16(__m512 x)
{
    /* Inputs are <= 0 here (scores minus their max); -104 already gives 0 after scalef. */
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693115234375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(3.19461833e-05f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* cap * tanh(x / cap) through tanh|y| = (1 - e^-2|y|) / (1 + e^-2|y|). */
static ALWAYS_INLINE __m512 softcap16(__m512 x, float cap, float inv_cap)
{
    __m512 y = _mm512_mul_ps(x, _mm512_set1_ps(inv_cap));
    __m512 ay = _mm512_abs_ps(y);
    __m512 e = exp16(_mm512_mul_ps(ay, _mm512_set1_ps(-2.0f)));
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
    /* Put y's sign back on t (t >= 0). */
    t = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(t),
        _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32((int)0x80000000u))));
    return _mm512_mul_ps(t, _mm512_set1_ps(cap));
}

static void load_rows_avx512(float *dst, const void *const *src, int n, int d, trit_dtype dt,
                             float mul)
{
    const __m512 vm = _mm512_set1_ps(mul);
    if (mul == 1.0f && dt == TRIT_DTYPE_F16) {
        for (int r = 0; r < n; r++) {
            const uint16_t *h = src[r];
            float *o = dst + (size_t)r * d;
            for (int i = 0; i < d; i += 16)
                _mm512_storeu_ps(o + i,
                                 _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
        }
        return;
    }
    for (int r = 0; r < n; r++) {
        float *o = dst + (size_t)r * d;
        if (dt == TRIT_DTYPE_F16) {
            const uint16_t *h = src[r];
            for (int i = 0; i < d; i += 16)
                _mm512_storeu_ps(o + i, _mm512_mul_ps(vm, _mm512_cvtph_ps(_mm256_loadu_si256(
                                                              (const __m256i *)(h + i)))));
        } else {
            const float *f = src[r];
            for (int i = 0; i < d; i += 16)
                _mm512_storeu_ps(o + i, _mm512_mul_ps(vm, _mm512_loadu_ps(f + i)));
        }
    }
}

/* Sums each of v[0..15]; lane L of the result holds the sum of v[L / 4 + perm(L % 4)] with
 * perm = {0, 8, 4, 12}. */
static ALWAYS_INLINE __m512 reduce16(const __m512 *v)
{
    __m512 w[8], x[4], y[2];
    for (int i = 0; i < 8; i++) /* quarters 0-1: halves of v[2i]; 2-3: of v[2i+1] */
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++) /* quarter k: four partials of v[4i + k] */
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++) /* quarter k: lanes 0, 2 of v[8i + k], 1, 3 of v[8i + 4 + k] */
        y[i] = _mm512_add_ps(_mm512_unpacklo_ps(x[2 * i], x[2 * i + 1]),
                             _mm512_unpackhi_ps(x[2 * i], x[2 * i + 1]));
    return _mm512_add_ps(_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
}

/* Accumulator holding output lane L = row * NR + key, given reduce16's lane order. */
#define ACC_INDEX(L) (((L) >> 2) + (((L)&1) ? 8 : 0) + (((L)&2) ? 4 : 0))

/* Key/value row chunk x..x+15 as f32, widened in registers when the cache is f16. */
static ALWAYS_INLINE __m512 load16(const void *row, int x, const int F16)
{
    if (F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + x)));
    return _mm512_loadu_ps((const float *)row + x);
}

static ALWAYS_INLINE void score_block(const float *q, const void *const *k, int d, float *s,
                                      int lds, const int MR, const int NR, const int F16)
{
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        acc[i] = _mm512_setzero_ps();
    for (int x = 0; x < d; x += 16) {
        __m512 qv[4];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
            qv[r] = _mm512_loadu_ps(q + (size_t)r * d + x);
#pragma GCC unroll 16
        for (int c = 0; c < NR; c++) {
            __m512 kv = load16(k[c], x, F16);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++)
                acc[ACC_INDEX(r * NR + c)] = _mm512_fmadd_ps(qv[r], kv, acc[ACC_INDEX(r * NR + c)]);
        }
    }
    __m512 z = reduce16(acc);
    /* Plain stores: masked stores to memory are slow on some cores (Zen 4). */
    if (NR == 16) {
        _mm512_storeu_ps(s, z);
    } else if (NR == 8) {
        _mm256_storeu_ps(s, _mm512_castps512_ps256(z));
        _mm256_storeu_ps(s + lds, _mm512_extractf32x8_ps(z, 1));
    } else {
        _mm_storeu_ps(s, _mm512_castps512_ps128(z));
        _mm_storeu_ps(s + lds, _mm512_extractf32x4_ps(z, 1));
        _mm_storeu_ps(s + 2 * (size_t)lds, _mm512_extractf32x4_ps(z, 2));
        _mm_storeu_ps(s + 3 * (size_t)lds, _mm512_extractf32x4_ps(z, 3));
    }
}

static ALWAYS_INLINE void scores_t(const float *q, int rows, const void *const *k, int n_keys,
                                   int d, float *s, int lds, const int F16)
{
    int r = 0;
    for (; r + 4 <= rows; r += 4)
        for (int c = 0; c < n_keys; c += 4)
            score_block(q + (size_t)r * d, k + c, d, s + (size_t)r * lds + c, lds, 4, 4, F16);
    for (; r + 2 <= rows; r += 2)
        for (int c = 0; c < n_keys; c += 8)
            score_block(q + (size_t)r * d, k + c, d, s + (size_t)r * lds + c, lds, 2, 8, F16);
    for (; r < rows; r++)
        for (int c = 0; c < n_keys; c += 16)
            score_block(q + (size_t)r * d, k + c, d, s + (size_t)r * lds + c, lds, 1, 16, F16);
}

static void scores_avx512(const float *q, int rows, const void *const *k, trit_dtype kdt,
                          int n_keys, int d, float *s, int lds)
{
    if (kdt == TRIT_DTYPE_F16)
        scores_t(q, rows, k, n_keys, d, s, lds, 1);
    else
        scores_t(q, rows, k, n_keys, d, s, lds, 0);
}

static float softmax_row_avx512(float *s, int n, const attn_row *row, float *m_io, float *l_io)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i lo = _mm512_set1_epi32(row->lo), hi = _mm512_set1_epi32(row->hi);
    __m512 vmax = ninf;
    for (int i = 0; i < n; i += 16) {
        __m512 x = _mm512_loadu_ps(s + i);
        __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(i));
        if (row->softcap > 0)
            x = softcap16(x, row->softcap, row->inv_softcap);
        if (row->has_alibi)
            x = _mm512_fmadd_ps(_mm512_set1_ps(row->slope),
                                _mm512_add_ps(_mm512_set1_ps(row->bias0), _mm512_cvtepi32_ps(idx)),
                                x);
        __mmask16 valid = _mm512_cmpge_epi32_mask(idx, lo) & _mm512_cmplt_epi32_mask(idx, hi);
        x = _mm512_mask_blend_ps(valid, ninf, x);
        _mm512_storeu_ps(s + i, x);
        vmax = _mm512_max_ps(vmax, x);
    }
    float mx = _mm512_reduce_max_ps(vmax);
    float m_old = *m_io, m_new = m_old > mx ? m_old : mx;
    if (m_new == -INFINITY) {
        for (int i = 0; i < n; i += 16)
            _mm512_storeu_ps(s + i, _mm512_setzero_ps());
        return 1.0f;
    }
    float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
    const __m512 vm = _mm512_set1_ps(m_new);
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __m512 x = _mm512_loadu_ps(s + i);
        /* Masked entries are -inf: exp16 maps them to exactly 0. */
        __m512 p = exp16(_mm512_sub_ps(x, vm));
        _mm512_storeu_ps(s + i, p);
        sum = _mm512_add_ps(sum, p);
    }
    *l_io = *l_io * alpha + _mm512_reduce_add_ps(sum);
    *m_io = m_new;
    return alpha;
}

static ALWAYS_INLINE void acc_block(float *o, const float *alpha, const float *p, int ldp,
                                    const void *const *v, int x, int n_keys, int d, const int MR,
                                    const int NV, const int F16)
{
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++) {
        __m512 a = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
        for (int u = 0; u < NV; u++)
            acc[r][u] = _mm512_mul_ps(a, _mm512_loadu_ps(o + (size_t)r * d + x + 16 * u));
    }
    for (int c = 0; c < n_keys; c++) {
        __m512 vv[4];
#pragma GCC unroll 4
        for (int u = 0; u < NV; u++)
            vv[u] = load16(v[c], x + 16 * u, F16);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            __m512 w = _mm512_set1_ps(p[(size_t)r * ldp + c]);
#pragma GCC unroll 4
            for (int u = 0; u < NV; u++)
                acc[r][u] = _mm512_fmadd_ps(w, vv[u], acc[r][u]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int u = 0; u < NV; u++)
            _mm512_storeu_ps(o + (size_t)r * d + x + 16 * u, acc[r][u]);
}

#define ACC_CASE(mr, nv)                                                                           \
    case (mr)*8 + (nv):                                                                            \
        acc_block(o + (size_t)r * d, alpha + r, p + (size_t)r * ldp, ldp, v, x, n_keys, d, mr, nv, \
                  F16);                                                                            \
        break

static ALWAYS_INLINE void accumulate_t(float *o, const float *alpha, int rows, const float *p,
                                       int ldp, const void *const *v, int n_keys, int d,
                                       const int F16)
{
    for (int r = 0; r < rows; r += 4) {
        int mr = rows - r < 4 ? rows - r : 4;
        for (int x = 0; x < d; x += 64) {
            int nv = (d - x) / 16 < 4 ? (d - x) / 16 : 4;
            switch (mr * 8 + nv) {
                ACC_CASE(1, 1);
                ACC_CASE(1, 2);
                ACC_CASE(1, 3);
                ACC_CASE(1, 4);
                ACC_CASE(2, 1);
                ACC_CASE(2, 2);
                ACC_CASE(2, 3);
                ACC_CASE(2, 4);
                ACC_CASE(3, 1);
                ACC_CASE(3, 2);
                ACC_CASE(3, 3);
                ACC_CASE(3, 4);
                ACC_CASE(4, 1);
                ACC_CASE(4, 2);
                ACC_CASE(4, 3);
                ACC_CASE(4, 4);
            default: break;
            }
        }
    }
}

static void accumulate_avx512(float *o, const float *alpha, int rows, const float *p, int ldp,
                              const void *const *v, trit_dtype vdt, int n_keys, int d)
{
    if (vdt == TRIT_DTYPE_F16)
        accumulate_t(o, alpha, rows, p, ldp, v, n_keys, d, 1);
    else
        accumulate_t(o, alpha, rows, p, ldp, v, n_keys, d, 0);
}

static void store_row_avx512(void *dst, const float *src, int d, trit_dtype dt, float mul)
{
    const __m512 vm = _mm512_set1_ps(mul);
    if (dt == TRIT_DTYPE_F16) {
        uint16_t *h = dst;
        for (int i = 0; i < d; i += 16)
            _mm256_storeu_si256((__m256i *)(h + i),
                                _mm512_cvtps_ph(_mm512_mul_ps(vm, _mm512_loadu_ps(src + i)),
                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    } else {
        float *f = dst;
        for (int i = 0; i < d; i += 16)
            _mm512_storeu_ps(f + i, _mm512_mul_ps(vm, _mm512_loadu_ps(src + i)));
    }
}

const attn_kernels attn_kernels_avx512 = {
    load_rows_avx512, scores_avx512, softmax_row_avx512, accumulate_avx512, store_row_avx512,
};
