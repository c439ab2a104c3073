/*
 * gemv_avx512.c — AVX-512 VNNI ternary GEMV kernel (called only when the CPU has AVX512-VNNI).
 *
 * Tiling: per 256-weight chunk each row is one 64-byte load. Masking it with 0x03 << 2j keeps
 * field j as code * 4^j (0, 4^j or 2 * 4^j: at most 128, still a u8), which VPDPBUSD multiplies
 * with the 64 int8 activations of that field. Each field accumulates in its own register and the
 * 4^j is shifted out exactly at the end (every lane of field j is a multiple of 4^j): one AND per
 * 64 weights instead of a shift and an AND. Register blocking, 16 accumulators either way:
 * one pseudo-column (INT8, N = 1): the tile's 4 rows share each activation load;
 * more pseudo-columns: 2 rows x 2 pseudo-columns share each extracted field and activation.
 * The thread that owns a tile owns its outputs; a tile's codes stay in L1 across pseudo-columns.
 *
 * Floor: 4 VPDPBUSD per 256 weights per row and pseudo-column; Zen 4 issues one 512-bit VPDPBUSD
 * per cycle, so a core does at most 64 weights per cycle (~225 per ns at 3.56 GHz): a hot
 * 2560 x 2560 INT8 GEMV is >= 29 us of one core, 14.6 us of two. Measured: ~5.1 cycles per
 * 256-weight chunk row at N = 1 (the ANDs and loads share the vector ports with VPDPBUSD),
 * 22-24 us on two cores; FLOAT (4 digit planes, the 2 x 2 kernel) 77 us.
 * Cold, the codes stream at 2 bits per weight: a core needs ~15 GB/s to feed ~60 weights/ns, far
 * below what it computes, so the sweep is memory bound. A tile read in one pass (N = 1 INT8) is
 * one 256-byte-per-step stream left to the hardware prefetcher (see gemv.h: software prefetch
 * only hurt it); when several passes run over a tile, they prefetch the next tile between them.
 */
#include <immintrin.h>

#include "cpu.h"
#include "gemv.h"

static void gemv_f16_load(float *dst, const uint16_t *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}

static void gemv_f16_store(uint16_t *dst, const float *src, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(
            dst + i, m,
            _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT));
    }
}

/* A load the compiler keeps in a register: without the barrier GCC folds it into every use as a
 * memory operand, and the extra loads (not the arithmetic) then bound the loop. */
static inline __m512i ld(const void *p)
{
    __m512i v = _mm512_load_si512(p);
    __asm__("" : "+v"(v));
    return v;
}

/* field j of a row as code * 4^j */
#define FIELD(v, j) _mm512_and_si512((v), _mm512_set1_epi8((char)(3 << (2 * (j)))))

/* Exact sum of code * q from four field accumulators. */
static inline __m512i fold(__m512i a0, __m512i a1, __m512i a2, __m512i a3)
{
    return _mm512_add_epi32(_mm512_add_epi32(a0, _mm512_srai_epi32(a1, 2)),
                            _mm512_add_epi32(_mm512_srai_epi32(a2, 4), _mm512_srai_epi32(a3, 6)));
}

/* acc += dot4(u8 f, s8 q). Written as asm because GCC 12 copies the accumulator in and out of
 * the intrinsic's register on every iteration (two extra moves per VPDPBUSD). */
static inline __m512i dpbusd(__m512i acc, __m512i f, __m512i q)
{
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(f), "v"(q));
    return acc;
}
#define DPB(acc, f, q) acc = dpbusd(acc, f, q)

/* The four lane sums of a, b, c, d as one vector [sum a, sum b, sum c, sum d]: one shared
 * reduction tree instead of four (a per-row reduction costs as much as two chunks of work). */
static inline __m128i reduce4(__m512i a, __m512i b, __m512i c, __m512i d)
{
    const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    const __m512i u =
        _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
    const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(u), _mm512_extracti64x4_epi64(u, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* Chunks [c0, c1) of the four rows of a tile x one pseudo-column, added to t[4]. The rows share
 * each activation load; 16 accumulators, pinned to registers because otherwise GCC shuffles
 * some of them through others on every iteration. */
__attribute__((noinline)) static void run_4row(const uint8_t *wt, int64_t c0, int64_t c1,
                                               const int8_t *q, __m512i *t)
{
    const __m512i z = _mm512_setzero_si512();
    register __m512i a0 __asm__("zmm16") = z, a1 __asm__("zmm17") = z, a2 __asm__("zmm18") = z,
                        a3 __asm__("zmm19") = z;
    register __m512i b0 __asm__("zmm20") = z, b1 __asm__("zmm21") = z, b2 __asm__("zmm22") = z,
                        b3 __asm__("zmm23") = z;
    register __m512i c0r __asm__("zmm24") = z, c1r __asm__("zmm25") = z, c2r __asm__("zmm26") = z,
                         c3r __asm__("zmm27") = z;
    register __m512i d0 __asm__("zmm28") = z, d1 __asm__("zmm29") = z, d2 __asm__("zmm30") = z,
                        d3 __asm__("zmm31") = z;
    for (int64_t ch = c0; ch < c1; ch++) {
        const uint8_t *wc = wt + ch * GEMV_TILE_BYTES;
        const int8_t *qc = q + ch * GEMV_KC;
        const __m512i v0 = ld(wc), v1 = ld(wc + 64), v2 = ld(wc + 128), v3 = ld(wc + 192);
        __m512i qj = ld(qc);
        DPB(a0, FIELD(v0, 0), qj);
        DPB(b0, FIELD(v1, 0), qj);
        DPB(c0r, FIELD(v2, 0), qj);
        DPB(d0, FIELD(v3, 0), qj);
        qj = ld(qc + 64);
        DPB(a1, FIELD(v0, 1), qj);
        DPB(b1, FIELD(v1, 1), qj);
        DPB(c1r, FIELD(v2, 1), qj);
        DPB(d1, FIELD(v3, 1), qj);
        qj = ld(qc + 128);
        DPB(a2, FIELD(v0, 2), qj);
        DPB(b2, FIELD(v1, 2), qj);
        DPB(c2r, FIELD(v2, 2), qj);
        DPB(d2, FIELD(v3, 2), qj);
        qj = ld(qc + 192);
        DPB(a3, FIELD(v0, 3), qj);
        DPB(b3, FIELD(v1, 3), qj);
        DPB(c3r, FIELD(v2, 3), qj);
        DPB(d3, FIELD(v3, 3), qj);
    }
    t[0] = _mm512_add_epi32(t[0], fold(a0, a1, a2, a3));
    t[1] = _mm512_add_epi32(t[1], fold(b0, b1, b2, b3));
    t[2] = _mm512_add_epi32(t[2], fold(c0r, c1r, c2r, c3r));
    t[3] = _mm512_add_epi32(t[3], fold(d0, d1, d2, d3));
}

/* One tile x one pseudo-column, tensor/row scales: out[r] = sum_k w q for its four rows. */
static void tile_1col(const uint8_t *wt, int64_t chunks, const int8_t *q, int32_t qtot,
                      int32_t *out)
{
    __m512i t[4];
    for (int i = 0; i < 4; i++)
        t[i] = _mm512_setzero_si512();
    for (int64_t g = 0; g < chunks; g += GEMV_FOLD_CHUNKS)
        run_4row(wt, g, chunks - g < GEMV_FOLD_CHUNKS ? chunks : g + GEMV_FOLD_CHUNKS, q, t);
    _mm_storeu_si128((__m128i *)out,
                     _mm_sub_epi32(reduce4(t[0], t[1], t[2], t[3]), _mm_set1_epi32(qtot)));
}

/* Chunks [c0, c1) of two rows (at wt, wt + 64 in every chunk) x two pseudo-columns (16
 * accumulators), added to t[4] = {row 0 col a, row 1 col a, row 0 col b, row 1 col b}.
 * Several passes run over one tile (L1 resident after the first), and only the first would
 * touch memory; so each pass also requests pf_n of the next tile's lines per chunk (at pf), the
 * passes between them covering all of it, which keeps memory busy while they compute. */
__attribute__((noinline)) static void run_2col(const uint8_t *wt, int64_t c0, int64_t c1,
                                               const int8_t *qa, const int8_t *qb,
                                               const uint8_t *pf, int pf_n, __m512i *t)
{
    const __m512i z = _mm512_setzero_si512();
    /* x<row><col><field> */
    __m512i x000 = z, x001 = z, x002 = z, x003 = z, x010 = z, x011 = z, x012 = z, x013 = z;
    __m512i x100 = z, x101 = z, x102 = z, x103 = z, x110 = z, x111 = z, x112 = z, x113 = z;
    for (int64_t ch = c0; ch < c1; ch++) {
        const uint8_t *wc = wt + ch * GEMV_TILE_BYTES;
        const int8_t *ca = qa + ch * GEMV_KC, *cb = qb + ch * GEMV_KC;
        for (int l = 0; l < pf_n; l++)
            _mm_prefetch((const char *)pf + ch * GEMV_TILE_BYTES + 64 * l, _MM_HINT_T0);
        const __m512i v0 = ld(wc), v1 = ld(wc + 64);
#define STEP(j)                                                                                    \
    do {                                                                                           \
        const __m512i f0 = FIELD(v0, j), f1 = FIELD(v1, j);                                        \
        const __m512i qja = ld(ca + 64 * (j)), qjb = ld(cb + 64 * (j));                            \
        DPB(x00##j, f0, qja);                                                                      \
        DPB(x10##j, f1, qja);                                                                      \
        DPB(x01##j, f0, qjb);                                                                      \
        DPB(x11##j, f1, qjb);                                                                      \
    } while (0)
        STEP(0);
        STEP(1);
        STEP(2);
        STEP(3);
#undef STEP
    }
    t[0] = _mm512_add_epi32(t[0], fold(x000, x001, x002, x003));
    t[1] = _mm512_add_epi32(t[1], fold(x100, x101, x102, x103));
    t[2] = _mm512_add_epi32(t[2], fold(x010, x011, x012, x013));
    t[3] = _mm512_add_epi32(t[3], fold(x110, x111, x112, x113));
}

/* Two rows x two pseudo-columns, tensor/row scales: out_a[0..1], out_b[0..1]. */
static void tile_2col(const uint8_t *wt, int64_t chunks, const int8_t *qa, const int8_t *qb,
                      const uint8_t *pf, int pf_n, int32_t qtot_a, int32_t qtot_b, int32_t *out_a,
                      int32_t *out_b)
{
    __m512i t[4];
    for (int i = 0; i < 4; i++)
        t[i] = _mm512_setzero_si512();
    for (int64_t g = 0; g < chunks; g += GEMV_FOLD_CHUNKS)
        run_2col(wt, g, chunks - g < GEMV_FOLD_CHUNKS ? chunks : g + GEMV_FOLD_CHUNKS, qa, qb, pf,
                 pf_n, t);
    int32_t r[4];
    _mm_storeu_si128((__m128i *)r, _mm_sub_epi32(reduce4(t[0], t[1], t[2], t[3]),
                                                 _mm_setr_epi32(qtot_a, qtot_a, qtot_b, qtot_b)));
    out_a[0] = r[0];
    out_a[1] = r[1];
    out_b[0] = r[2];
    out_b[1] = r[3];
}

/* Two rows (at wt, wt + 64) x one pseudo-column with block scales (sc[ch * R], sc[ch * R + 1]):
 * each chunk is folded, corrected by its q sum, converted and scaled, so every block is exact
 * and rescaled once as trit.h asks. */
static void tile_block(const uint8_t *wt, int64_t chunks, const int8_t *q, const int32_t *qs,
                       const float *sc, const uint8_t *pf, int pf_n, float *out0, float *out1)
{
    const __m512i z = _mm512_setzero_si512();
    __m512 f0 = _mm512_setzero_ps(), f1 = _mm512_setzero_ps();
    for (int64_t ch = 0; ch < chunks; ch++) {
        const uint8_t *wc = wt + ch * GEMV_TILE_BYTES;
        const int8_t *qc = q + ch * GEMV_KC;
        for (int l = 0; l < pf_n; l++) /* as in run_2col */
            _mm_prefetch((const char *)pf + ch * GEMV_TILE_BYTES + 64 * l, _MM_HINT_T0);
        const __m512i v0 = ld(wc), v1 = ld(wc + 64);
        const __m512i q0 = ld(qc), q1 = ld(qc + 64), q2 = ld(qc + 128), q3 = ld(qc + 192);
        __m512i s0 = fold(
            _mm512_dpbusd_epi32(z, FIELD(v0, 0), q0), _mm512_dpbusd_epi32(z, FIELD(v0, 1), q1),
            _mm512_dpbusd_epi32(z, FIELD(v0, 2), q2), _mm512_dpbusd_epi32(z, FIELD(v0, 3), q3));
        __m512i s1 = fold(
            _mm512_dpbusd_epi32(z, FIELD(v1, 0), q0), _mm512_dpbusd_epi32(z, FIELD(v1, 1), q1),
            _mm512_dpbusd_epi32(z, FIELD(v1, 2), q2), _mm512_dpbusd_epi32(z, FIELD(v1, 3), q3));
        const __m512i corr = _mm512_maskz_set1_epi32(1, qs[ch]);
        s0 = _mm512_sub_epi32(s0, corr);
        s1 = _mm512_sub_epi32(s1, corr);
        f0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_set1_ps(sc[ch * GEMV_R]), f0);
        f1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_set1_ps(sc[ch * GEMV_R + 1]), f1);
    }
    *out0 = _mm512_reduce_add_ps(f0);
    *out1 = _mm512_reduce_add_ps(f1);
}

/* Which of the next tile's four lines pass i of n prefetches: [first, first + count). */
static inline void pass_lines(int i, int n, int *first, int *count)
{
    const int b = n <= GEMV_R ? GEMV_R * i / n : (i < GEMV_R ? i : GEMV_R);
    const int e = n <= GEMV_R ? GEMV_R * (i + 1) / n : (i < GEMV_R ? i + 1 : GEMV_R);
    *first = b;
    *count = e - b;
}

static void gemv_kernel(const gemv_kargs *a)
{
    const cpu_ternary *w = a->w;
    const int64_t chunks = w->chunks;
    for (int64_t t = 0; t < a->ntiles; t++) {
        const int64_t tile = a->tile0 + t;
        const uint8_t *wt = w->codes + tile * chunks * GEMV_TILE_BYTES;
        const uint8_t *next = wt + chunks * GEMV_TILE_BYTES; /* prefetches never fault */
        int pass = 0, first, count;
        if (w->scale_kind == TRIT_SCALE_BLOCK) {
            const float *sc = w->scales + tile * chunks * GEMV_R;
            const int passes = a->pcols * GEMV_R / 2;
            for (int p = 0; p < a->pcols; p++)
                for (int r = 0; r < GEMV_R; r += 2, pass++) {
                    float *out = (float *)a->out + p * a->ld + t * GEMV_R + r;
                    pass_lines(pass, passes, &first, &count);
                    tile_block(wt + r * GEMV_CHUNK_BYTES, chunks, a->q + p * a->q_stride,
                               a->qsum + p * chunks, sc + r, next + 64 * first, count, &out[0],
                               &out[1]);
                }
            continue;
        }
        int32_t *out = (int32_t *)a->out + t * GEMV_R;
        /* Pairs of pseudo-columns on pairs of rows; the tile's codes are in L1 after the first
         * pass. A last odd pseudo-column takes all four rows in one pass (and, alone, as for
         * INT8 N = 1, is one contiguous stream the hardware prefetcher follows unaided). */
        const int passes = a->pcols / 2 * (GEMV_R / 2);
        int p = 0;
        for (; p + 2 <= a->pcols; p += 2)
            for (int r = 0; r < GEMV_R; r += 2, pass++) {
                pass_lines(pass, passes, &first, &count);
                tile_2col(wt + r * GEMV_CHUNK_BYTES, chunks, a->q + p * a->q_stride,
                          a->q + (p + 1) * a->q_stride, next + 64 * first, count, a->qtot[p],
                          a->qtot[p + 1], out + p * a->ld + r, out + (p + 1) * a->ld + r);
            }
        if (p < a->pcols)
            tile_1col(wt, chunks, a->q + p * a->q_stride, a->qtot[p], out + p * a->ld);
    }
}

#define GEMV_IMPL
#include "gemv.h"

void gemv_rows_avx512(const gemv_call *c, int64_t tile_begin, int64_t tile_end)
{
    gemv_rows_impl(c, tile_begin, tile_end);
}
