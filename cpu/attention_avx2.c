/*
 * attention_avx2.c — the attention inner kernels with AVX2, FMA and F16C; see attention.c for
 * the tiling and the byte floor.
 *
 * Same structure as the AVX-512 file at half the width and with half the registers: scores in
 * blocks of 4 rows x 2 keys (2 x 4, 1 x 8 for small head groups) whose 8 dot products are
 * reduced together with three rounds of hadd; P.V in blocks of 4 rows x 24 output dims (12
 * accumulators + 3 V vectors + 1 broadcast = all 16 ymm registers). exp: Cody-Waite reduction,
 * degree-7 Taylor polynomial, 2^n built in the exponent bits; inputs below -87 (where 2^n
 * would leave the normal range) return exactly 0.
 *
 * Only called when the plugin chose CPU_ISA_AVX2 or better at init (run-time CPUID check).
 */
#include <immintrin.h>
#include <math.h>

#include "attention.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693115234375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(3.19461833e-05f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* cap * tanh(x / cap) through tanh|y| = (1 - e^-2|y|) / (1 + e^-2|y|). */
static ALWAYS_INLINE __m256 softcap8(__m256 x, float cap, float inv_cap)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 y = _mm256_mul_ps(x, _mm256_set1_ps(inv_cap));
    __m256 ay = _mm256_andnot_ps(sign, y);
    __m256 e = exp8(_mm256_mul_ps(ay, _mm256_set1_ps(-2.0f)));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    t = _mm256_or_ps(t, _mm256_and_ps(sign, y));
    return _mm256_mul_ps(t, _mm256_set1_ps(cap));
}

static void load_rows_avx2(float *dst, const void *const *src, int n, int d, trit_dtype dt,
                           float mul)
{
    const __m256 vm = _mm256_set1_ps(mul);
    for (int r = 0; r < n; r++) {
        float *o = dst + (size_t)r * d;
        if (dt == TRIT_DTYPE_F16) {
            const uint16_t *h = src[r];
            for (int i = 0; i < d; i += 8)
                _mm256_storeu_ps(
                    o + i,
                    _mm256_mul_ps(vm, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)))));
        } else {
            const float *f = src[r];
            for (int i = 0; i < d; i += 8)
                _mm256_storeu_ps(o + i, _mm256_mul_ps(vm, _mm256_loadu_ps(f + i)));
        }
    }
}

/* Lane i of the result is the sum of v[i]. */
static ALWAYS_INLINE __m256 reduce8(const __m256 *v)
{
    __m256 a = _mm256_hadd_ps(v[0], v[1]), b = _mm256_hadd_ps(v[2], v[3]);
    __m256 c = _mm256_hadd_ps(v[4], v[5]), e = _mm256_hadd_ps(v[6], v[7]);
    __m256 lo = _mm256_hadd_ps(a, b), hi = _mm256_hadd_ps(c, e);
    return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20),
                         _mm256_permute2f128_ps(lo, hi, 0x31));
}

/* Key/value row chunk x..x+7 as f32, widened in registers when the cache is f16. */
static ALWAYS_INLINE __m256 load8(const void *row, int x, const int F16)
{
    if (F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + x)));
    return _mm256_loadu_ps((const float *)row + x);
}

static ALWAYS_INLINE void score_block(const float *q, const void *const *k, int d, float *s,
                                      int lds, const int MR, const int NR, const int F16)
{
    __m256 acc[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        acc[i] = _mm256_setzero_ps();
    for (int x = 0; x < d; x += 8) {
        __m256 qv[4];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
            qv[r] = _mm256_loadu_ps(q + (size_t)r * d + x);
#pragma GCC unroll 8
        for (int c = 0; c < NR; c++) {
            __m256 kv = load8(k[c], x, F16);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++)
                acc[r * NR + c] = _mm256_fmadd_ps(qv[r], kv, acc[r * NR + c]);
        }
    }
    __m256 z = reduce8(acc);
    if (NR == 8) {
        _mm256_storeu_ps(s, z);
    } else if (NR == 4) {
        _mm_storeu_ps(s, _mm256_castps256_ps128(z));
        _mm_storeu_ps(s + lds, _mm256_extractf128_ps(z, 1));
    } else {
        float t[8];
        _mm256_storeu_ps(t, z);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            s[(size_t)r * lds] = t[2 * r];
            s[(size_t)r * lds + 1] = t[2 * r + 1];
        }
    }
}

static ALWAYS_INLINE void scores_t(const float *q, int rows, const void *const *k, int n_keys,
                                   int d, float *s, int lds, const int F16)
{
    int r = 0;
    for (; r + 4 <= rows; r += 4)
        for (int c = 0; c < n_keys; c += 2)
            score_block(q + (size_t)r * d, k + c, d, s + (size_t)r * lds + c, lds, 4, 2, F16);
    for (; r + 2 <= rows; r += 2)
        for (int c = 0; c < n_keys; c += 4)
            score_block(q + (size_t)r * d, k + c, d, s + (size_t)r * lds + c, lds, 2, 4, F16);
    for (; r < rows; r++)
        for (int c = 0; c < n_keys; c += 8)
            score_block(q + (size_t)r * d, k + c, d, s + (size_t)r * lds + c, lds, 1, 8, F16);
}

static void scores_avx2(const float *q, int rows, const void *const *k, trit_dtype kdt, int n_keys,
                        int d, float *s, int lds)
{
    if (kdt == TRIT_DTYPE_F16)
        scores_t(q, rows, k, n_keys, d, s, lds, 1);
    else
        scores_t(q, rows, k, n_keys, d, s, lds, 0);
}

static float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static float hsum8(__m256 v)
{
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static float softmax_row_avx2(float *s, int n, const attn_row *row, float *m_io, float *l_io)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lo = _mm256_set1_epi32(row->lo - 1), hi = _mm256_set1_epi32(row->hi);
    __m256 vmax = ninf;
    for (int i = 0; i < n; i += 8) {
        __m256 x = _mm256_loadu_ps(s + i);
        __m256i idx = _mm256_add_epi32(iota, _mm256_set1_epi32(i));
        if (row->softcap > 0)
            x = softcap8(x, row->softcap, row->inv_softcap);
        if (row->has_alibi)
            x = _mm256_fmadd_ps(_mm256_set1_ps(row->slope),
                                _mm256_add_ps(_mm256_set1_ps(row->bias0), _mm256_cvtepi32_ps(idx)),
                                x);
        /* valid: lo - 1 < idx < hi */
        __m256i valid = _mm256_and_si256(_mm256_cmpgt_epi32(idx, lo), _mm256_cmpgt_epi32(hi, idx));
        x = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(valid));
        _mm256_storeu_ps(s + i, x);
        vmax = _mm256_max_ps(vmax, x);
    }
    float mx = hmax8(vmax);
    float m_old = *m_io, m_new = m_old > mx ? m_old : mx;
    if (m_new == -INFINITY) {
        for (int i = 0; i < n; i += 8)
            _mm256_storeu_ps(s + i, _mm256_setzero_ps());
        return 1.0f;
    }
    float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
    const __m256 vm = _mm256_set1_ps(m_new);
    __m256 sum = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        /* Masked entries are -inf: exp8 maps them to exactly 0. */
        __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
        _mm256_storeu_ps(s + i, p);
        sum = _mm256_add_ps(sum, p);
    }
    *l_io = *l_io * alpha + hsum8(sum);
    *m_io = m_new;
    return alpha;
}

static ALWAYS_INLINE void acc_block(float *o, const float *alpha, const float *p, int ldp,
                                    const void *const *v, int x, int n_keys, int d, const int MR,
                                    const int NV, const int F16)
{
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++) {
        __m256 a = _mm256_set1_ps(alpha[r]);
#pragma GCC unroll 3
        for (int u = 0; u < NV; u++)
            acc[r][u] = _mm256_mul_ps(a, _mm256_loadu_ps(o + (size_t)r * d + x + 8 * u));
    }
    for (int c = 0; c < n_keys; c++) {
        __m256 vv[3];
#pragma GCC unroll 3
        for (int u = 0; u < NV; u++)
            vv[u] = load8(v[c], x + 8 * u, F16);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            __m256 w = _mm256_broadcast_ss(p + (size_t)r * ldp + c);
#pragma GCC unroll 3
            for (int u = 0; u < NV; u++)
                acc[r][u] = _mm256_fmadd_ps(w, vv[u], acc[r][u]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 3
        for (int u = 0; u < NV; u++)
            _mm256_storeu_ps(o + (size_t)r * d + x + 8 * u, acc[r][u]);
}

#define ACC_CASE(mr, nv)                                                                           \
    case (mr)*4 + (nv):                                                                            \
        acc_block(o + (size_t)r * d, alpha + r, p + (size_t)r * ldp, ldp, v, x, n_keys, d, mr, nv, \
                  F16);                                                                            \
        break

static ALWAYS_INLINE void accumulate_t(float *o, const float *alpha, int rows, const float *p,
                                       int ldp, const void *const *v, int n_keys, int d,
                                       const int F16)
{
    for (int r = 0; r < rows; r += 4) {
        int mr = rows - r < 4 ? rows - r : 4;
        for (int x = 0; x < d; x += 24) {
            int nv = (d - x) / 8 < 3 ? (d - x) / 8 : 3;
            switch (mr * 4 + nv) {
                ACC_CASE(1, 1);
                ACC_CASE(1, 2);
                ACC_CASE(1, 3);
                ACC_CASE(2, 1);
                ACC_CASE(2, 2);
                ACC_CASE(2, 3);
                ACC_CASE(3, 1);
                ACC_CASE(3, 2);
                ACC_CASE(3, 3);
                ACC_CASE(4, 1);
                ACC_CASE(4, 2);
                ACC_CASE(4, 3);
            default: break;
            }
        }
    }
}

static void accumulate_avx2(float *o, const float *alpha, int rows, const float *p, int ldp,
                            const void *const *v, trit_dtype vdt, int n_keys, int d)
{
    if (vdt == TRIT_DTYPE_F16)
        accumulate_t(o, alpha, rows, p, ldp, v, n_keys, d, 1);
    else
        accumulate_t(o, alpha, rows, p, ldp, v, n_keys, d, 0);
}

static void store_row_avx2(void *dst, const float *src, int d, trit_dtype dt, float mul)
{
    const __m256 vm = _mm256_set1_ps(mul);
    if (dt == TRIT_DTYPE_F16) {
        uint16_t *h = dst;
        for (int i = 0; i < d; i += 8)
            _mm_storeu_si128((__m128i *)(h + i),
                             _mm256_cvtps_ph(_mm256_mul_ps(vm, _mm256_loadu_ps(src + i)),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    } else {
        float *f = dst;
        for (int i = 0; i < d; i += 8)
            _mm256_storeu_ps(f + i, _mm256_mul_ps(vm, _mm256_loadu_ps(src + i)));
    }
}

const attn_kernels attn_kernels_avx2 = {
    load_rows_avx2, scores_avx2, softmax_row_avx2, accumulate_avx2, store_row_avx2,
};
