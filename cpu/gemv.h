/*
 * gemv.h — internals of the CPU ternary GEMV shared by gemv.c (portable C, dispatch, upload) and
 * the ISA files gemv_avx2.c / gemv_avx512.c.
 *
 * Resident layout (built once at upload, never changed):
 *   Rows are interleaved in tiles of GEMV_R = 4 rows; K is cut into chunks of GEMV_KC = 256
 *   weights (the scale block, padded with zero weights). A chunk of one row is 64 bytes (one
 *   cache line): byte b, bits [2j, 2j+1] hold the code (w + 1) of weight k = 256 c + 64 j + b. So
 *   masking a 64-byte load with 0x03 << 2j yields 64 weights whose activations are one contiguous
 *   64-byte run of x, with no shuffles. The matrix is stored tile after tile, chunk after chunk,
 *   row after row inside the chunk, and the kernels read a tile's four rows together: each
 *   thread reads one contiguous stream, 256 bytes per chunk step. That is what the hardware
 *   prefetcher wants: measured on this Zen 4, such a stream runs at 100% of the plain read
 *   bandwidth with no software prefetch, while two 2-row tiles read side by side (two streams)
 *   reached 40% (70% with software prefetch), and software prefetch on the single stream only
 *   got in its way (75-85%).
 *
 * Both numeric paths run on the same integer kernels ("pseudo-columns" of int8 activations):
 *   INT8:  one pseudo-column per token: q = the documented absmax quantization of x'.
 *   FLOAT: four per token: x' is written as a 30-bit fixed-point integer relative to max|x'|
 *          (X = rint(x' * 2^30 / a)), split into four signed base-256 digits. The integer dot
 *          products are exact, so the only error is that fixed-point rounding: |err| <= a * 2^-31
 *          per element, below the f32 rounding of any element within 2^7 of the largest and far
 *          below the error bound of an f32 accumulation over K. Results are bit-identical across
 *          ISAs. See gemv.c for the measured accuracy and speed trade-off.
 *   Kernels return sum_k code * q - sum_k q (= sum_k w q, since code = w + 1) per (row, pseudo-
 *   column), exact mod 2^32, or with block scales sum_b scale_b * acc_b in f32.
 */
#ifndef TRIT_CPU_GEMV_H
#define TRIT_CPU_GEMV_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu.h"

enum {
    GEMV_R = 4,            /* rows per tile */
    GEMV_KC = 256,         /* weights per chunk = TRIT_SCALE_BLOCK_K */
    GEMV_CHUNK_BYTES = 64, /* one row of one chunk */
    GEMV_TILE_BYTES = GEMV_R * GEMV_CHUNK_BYTES,
    GEMV_FLOAT_PLANES = 4, /* base-256 digits of the FLOAT path's fixed-point x' */
    GEMV_BLOCK_ROWS = 64,  /* rows a task computes before running the epilogue on them */
    GEMV_MAX_PCOLS = TRIT_GEMV_MAX_N * GEMV_FLOAT_PLANES,
    /* Chunks accumulated before the AVX-512 kernel folds its per-bit-field accumulators: the
     * field-3 lanes grow by at most 4 * 128 * 128 per chunk, so 8192 chunks stay below 2^31. */
    GEMV_FOLD_CHUNKS = 8192,
};

/* A ternary matrix resident on the CPU. */
typedef struct cpu_ternary {
    int64_t rows, cols;
    int64_t tiles;  /* ceil(rows / GEMV_R) */
    int64_t chunks; /* ceil(cols / GEMV_KC) */
    /* Scale kind as stored: block scales that are constant along a row are stored per row, and
     * per-row scales that are all equal per tensor (the arithmetic is the same, and faster). */
    trit_scale_kind scale_kind;
    float tensor_scale;
    const uint8_t *codes; /* tiles * chunks * GEMV_TILE_BYTES */
    const float *scales;  /* ROW: [tiles * R]; BLOCK: [tiles][chunks][R]; padding rows 0 */
    void *mem;            /* one allocation holding codes and scales */
    uint64_t mem_bytes;
} cpu_ternary;

/* One GEMV call, resolved: what the prologue, kernels and epilogue read. */
typedef struct gemv_call {
    const cpu_ternary *w[2]; /* gate (or the only matrix), up */
    int mats;
    int64_t m, k, n, chunks, kp; /* kp = chunks * GEMV_KC */
    trit_gemv_path path;
    int npc;   /* pseudo-columns per token: 1 (INT8) or GEMV_FLOAT_PLANES */
    int pcols; /* n * npc */
    const void *x;
    trit_dtype x_dtype;
    int64_t x_stride; /* elements between tokens */
    void *y;
    trit_dtype y_dtype;
    int64_t y_stride;
    const void *res; /* residual (y's dtype) or NULL */
    int64_t res_stride;
    const float *bias;
    const float *rms_w;
    float rms_eps;
    trit_activation act;
    int32_t *acc; /* INT8 accumulators or NULL */
    int64_t acc_stride;
    /* Scratch written by the prologue. */
    int8_t *q;     /* [pcols][kp], zero padded */
    int32_t *qsum; /* [pcols][chunks] sums of q per chunk */
    int32_t *qtot; /* [pcols] sums of q (mod 2^32) */
    float *xs;     /* [n][kp] x' */
    float *colf;   /* INT8: a / 127 per token (0: a = 0, NaN: x' not finite) */
    double *unit;  /* FLOAT: a / 2^30 per token (same conventions) */
} gemv_call;

/* What one kernel call computes: rows of tiles [tile0, tile0 + ntiles) of `w` for pseudo-columns
 * [0, pcols), written to out[p * ld + (tile - tile0) * GEMV_R + r] (int32 for tensor/row scales,
 * float with the block scales applied for block scales). */
typedef struct gemv_kargs {
    const cpu_ternary *w;
    int64_t tile0, ntiles;
    int pcols;
    const int8_t *q;
    int64_t q_stride; /* bytes between pseudo-columns */
    const int32_t *qsum;
    const int32_t *qtot;
    void *out;
    int64_t ld;
} gemv_kargs;

/* Entry points of each ISA file. */
void gemv_prep_portable(const gemv_call *c, int64_t token);
void gemv_rows_portable(const gemv_call *c, int64_t tile_begin, int64_t tile_end);
void gemv_prep_avx2(const gemv_call *c, int64_t token);
void gemv_rows_avx2(const gemv_call *c, int64_t tile_begin, int64_t tile_end);
void gemv_rows_avx512(const gemv_call *c, int64_t tile_begin, int64_t tile_end);

#endif /* TRIT_CPU_GEMV_H */

/* ----------------------------------------------------------------------------------------------
 * Shared plain-C pieces, compiled into each ISA file with that file's flags (so the compiler
 * vectorizes them for it). The includer defines GEMV_IMPL and two helpers first:
 *   static void gemv_f16_load(float *dst, const uint16_t *src, int64_t n);
 *   static void gemv_f16_store(uint16_t *dst, const float *src, int64_t n);
 * and, for the rows entry point, `static void gemv_kernel(const gemv_kargs *a)`.
 * -------------------------------------------------------------------------------------------- */
#ifdef GEMV_IMPL
#ifndef TRIT_CPU_GEMV_IMPL_DONE
#define TRIT_CPU_GEMV_IMPL_DONE

/* Round to nearest, ties to even, for |v| < 2^22 (the default rounding mode does the work). */
static inline float gemv_rne_f(float v)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    return (v + magic) - magic;
}

static inline double gemv_rne_d(double v)
{
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    return (v + magic) - magic;
}

/* Largest |v| over n floats, as bits (monotonic for non-negative floats; NaN sorts above inf). */
static inline uint32_t gemv_absmax_bits(const float *v, int64_t n)
{
    uint32_t m[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            uint32_t b;
            memcpy(&b, &v[i + l], 4);
            b &= 0x7fffffffu;
            m[l] = b > m[l] ? b : m[l];
        }
    for (; i < n; i++) {
        uint32_t b;
        memcpy(&b, &v[i], 4);
        b &= 0x7fffffffu;
        m[0] = b > m[0] ? b : m[0];
    }
    uint32_t r = 0;
    for (int l = 0; l < 16; l++)
        r = m[l] > r ? m[l] : r;
    return r;
}

/* The prologue for one token: x' (RMSNorm in f64, so x' is the correctly rounded f32 of the
 * exact formula except in vanishingly rare double-rounding cases), then its pseudo-columns. */
static inline void gemv_prep_impl(const gemv_call *c, int64_t t)
{
    const int64_t k = c->k, kp = c->kp;
    float *xs = c->xs + t * kp;
    if (c->x_dtype == TRIT_DTYPE_F16)
        gemv_f16_load(xs, (const uint16_t *)c->x + t * c->x_stride, k);
    else
        memcpy(xs, (const float *)c->x + t * c->x_stride, (size_t)k * sizeof(float));
    for (int64_t i = k; i < kp; i++)
        xs[i] = 0.0f;

    if (c->rms_w) {
        /* Eight partial sums in a fixed order: vectorizes, and every ISA gets the same x'. */
        double part[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= kp; i += 8)
            for (int l = 0; l < 8; l++)
                part[l] += (double)xs[i + l] * (double)xs[i + l];
        double ss = 0;
        for (int l = 0; l < 8; l++)
            ss += part[l];
        const double inv = 1.0 / sqrt(ss / (double)k + (double)c->rms_eps);
        const float *g = c->rms_w;
        for (i = 0; i < k; i++)
            xs[i] = (float)((double)xs[i] * inv * (double)g[i]);
    }

    const uint32_t abits = gemv_absmax_bits(xs, k);
    float a;
    memcpy(&a, &abits, 4);
    const int finite = abits < 0x7f800000u;
    const int npc = c->npc, chunks = (int)c->chunks;
    int8_t *q0 = c->q + (int64_t)t * npc * kp;
    int32_t *qs0 = c->qsum + (int64_t)t * npc * chunks;

    if (!finite || a == 0.0f) {
        memset(q0, 0, (size_t)(npc * kp));
        memset(qs0, 0, (size_t)npc * (size_t)chunks * sizeof(int32_t));
        for (int p = 0; p < npc; p++)
            c->qtot[t * npc + p] = 0;
        if (c->path == TRIT_GEMV_INT8)
            c->colf[t] = finite ? 0.0f : NAN;
        else
            c->unit[t] = finite ? 0.0 : NAN;
        return;
    }

    if (c->path == TRIT_GEMV_INT8) {
        /* trit.h: s = 127 / a in f32; q = clamp(rint(x' * s), -127, 127), ties to even. */
        const float s = 127.0f / a;
        for (int64_t i = 0; i < kp; i++) {
            float r = gemv_rne_f(xs[i] * s);
            r = r > 127.0f ? 127.0f : r;
            r = r < -127.0f ? -127.0f : r;
            q0[i] = (int8_t)(int32_t)r;
        }
        c->colf[t] = a / 127.0f;
    } else {
        /* |X| <= 2^30, so four balanced base-256 digits (each in [-128, 127]) hold it. */
        const double mul = 1073741824.0 / (double)a;
        const int64_t st = kp;
        for (int64_t i = 0; i < kp; i++) {
            int32_t v = (int32_t)gemv_rne_d((double)xs[i] * mul);
            for (int p = 0; p < GEMV_FLOAT_PLANES; p++) {
                int32_t d = ((v + 128) & 255) - 128;
                q0[p * st + i] = (int8_t)d;
                v = (v - d) / 256;
            }
        }
        c->unit[t] = (double)a / 1073741824.0;
    }
    for (int p = 0; p < npc; p++) {
        const int8_t *qp = q0 + (int64_t)p * kp;
        uint32_t tot = 0;
        for (int ch = 0; ch < chunks; ch++) {
            int32_t s = 0;
            for (int i = 0; i < GEMV_KC; i++)
                s += qp[ch * GEMV_KC + i];
            qs0[p * chunks + ch] = s;
            tot += (uint32_t)s;
        }
        c->qtot[t * npc + p] = (int32_t)tot;
    }
}

/* e^v for the activations: Cody-Waite reduction and a degree-6 polynomial (~1 ulp), branch
 * free so it vectorizes. Inputs are clamped to the range where the result is a normal float. */
static inline float gemv_expf(float v)
{
    v = v > 88.3762626647949f ? 88.3762626647949f : v;
    v = v < -87.3365447505531f ? -87.3365447505531f : v;
    const float n = gemv_rne_f(v * 1.44269504088896341f);
    float r = v - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t e = ((int32_t)n + 127) << 23;
    float two_n;
    memcpy(&two_n, &e, 4);
    return p * two_n;
}

static inline float gemv_act(trit_activation act, float v)
{
    switch (act) {
    case TRIT_ACT_RELU2: return v > 0.0f ? v * v : 0.0f;
    case TRIT_ACT_SILU: return v / (1.0f + gemv_expf(-v));
    case TRIT_ACT_GELU: {
        /* 0.5 (1 + tanh(u)) = 1 / (1 + e^-2u), u = sqrt(2/pi) (v + 0.044715 v^3). */
        const float u2 = 1.5957691216057308f * (v + 0.044715f * v * v * v);
        return v / (1.0f + gemv_expf(-u2));
    }
    case TRIT_ACT_NONE: break;
    }
    return v;
}

/* Turns kernel outputs for rows [row0, row0 + nrows) of matrix `mi` into t (scaled, before the
 * epilogue) for token `t`; writes INT8 accumulators when asked. */
static inline void gemv_finish(const gemv_call *c, int mi, const void *kout, int64_t ld,
                               int64_t row0, int64_t nrows, int64_t tok, float *out)
{
    const cpu_ternary *w = c->w[mi];
    const int npc = c->npc;
    if (w->scale_kind == TRIT_SCALE_BLOCK) {
        const float *f = (const float *)kout + (int64_t)tok * npc * ld;
        if (c->path == TRIT_GEMV_INT8) {
            const float cf = c->colf[tok];
            for (int64_t i = 0; i < nrows; i++)
                out[i] = f[i] * cf;
        } else {
            const double u = c->unit[tok];
            for (int64_t i = 0; i < nrows; i++)
                out[i] =
                    (float)(((double)f[i] + (double)f[ld + i] * 256.0 +
                             (double)f[2 * ld + i] * 65536.0 + (double)f[3 * ld + i] * 16777216.0) *
                            u);
        }
        return;
    }
    const int32_t *a = (const int32_t *)kout + (int64_t)tok * npc * ld;
    const float *rs = w->scale_kind == TRIT_SCALE_ROW ? w->scales + row0 : NULL;
    const float ts = w->tensor_scale;
    if (c->path == TRIT_GEMV_INT8) {
        const float cf = c->colf[tok];
        if (rs)
            for (int64_t i = 0; i < nrows; i++)
                out[i] = (float)a[i] * cf * rs[i];
        else
            for (int64_t i = 0; i < nrows; i++)
                out[i] = (float)a[i] * cf * ts;
        if (c->acc && mi == 0)
            memcpy(c->acc + tok * c->acc_stride + row0, a, (size_t)nrows * sizeof(int32_t));
    } else {
        const double u = c->unit[tok];
        for (int64_t i = 0; i < nrows; i++) {
            /* Exact: each plane's sum is below 2^31 in magnitude for K < 2^24. */
            int64_t s = (int64_t)a[i] + (int64_t)a[ld + i] * 256 + (int64_t)a[2 * ld + i] * 65536 +
                        (int64_t)a[3 * ld + i] * 16777216;
            out[i] = (float)((double)s * u * (double)(rs ? rs[i] : ts));
        }
    }
}

/* Kernels, then the epilogue, for tiles [tb, te). */
static inline void gemv_rows_impl(const gemv_call *c, int64_t tb, int64_t te)
{
    enum { TB = GEMV_BLOCK_ROWS / GEMV_R };
    /* Kernel outputs for two matrices, then t of the gate and of up for one token. */
    union {
        int32_t i[GEMV_MAX_PCOLS * GEMV_BLOCK_ROWS];
        float f[GEMV_MAX_PCOLS * GEMV_BLOCK_ROWS];
    } kout[2];
    float tg[GEMV_BLOCK_ROWS], tu[GEMV_BLOCK_ROWS], rbuf[GEMV_BLOCK_ROWS];
    uint16_t hbuf[GEMV_BLOCK_ROWS];

    for (int64_t t0 = tb; t0 < te; t0 += TB) {
        const int64_t nt = te - t0 < TB ? te - t0 : TB;
        const int64_t row0 = t0 * GEMV_R;
        const int64_t nrows = row0 + nt * GEMV_R <= c->m ? nt * GEMV_R : c->m - row0;
        for (int mi = 0; mi < c->mats; mi++) {
            gemv_kargs ka = {
                .w = c->w[mi],
                .tile0 = t0,
                .ntiles = nt,
                .pcols = c->pcols,
                .q = c->q,
                .q_stride = c->kp,
                .qsum = c->qsum,
                .qtot = c->qtot,
                .out = kout[mi].i,
                .ld = GEMV_BLOCK_ROWS,
            };
            gemv_kernel(&ka);
        }
        for (int64_t tok = 0; tok < c->n; tok++) {
            gemv_finish(c, 0, kout[0].i, GEMV_BLOCK_ROWS, row0, nrows, tok, tg);
            if (c->mats == 2)
                gemv_finish(c, 1, kout[1].i, GEMV_BLOCK_ROWS, row0, nrows, tok, tu);
            if (c->bias)
                for (int64_t i = 0; i < nrows; i++)
                    tg[i] += c->bias[row0 + i];
            switch (c->act) {
            case TRIT_ACT_NONE: break;
            case TRIT_ACT_RELU2:
                for (int64_t i = 0; i < nrows; i++)
                    tg[i] = gemv_act(TRIT_ACT_RELU2, tg[i]);
                break;
            case TRIT_ACT_SILU:
                for (int64_t i = 0; i < nrows; i++)
                    tg[i] = gemv_act(TRIT_ACT_SILU, tg[i]);
                break;
            case TRIT_ACT_GELU:
                for (int64_t i = 0; i < nrows; i++)
                    tg[i] = gemv_act(TRIT_ACT_GELU, tg[i]);
                break;
            }
            if (c->mats == 2)
                for (int64_t i = 0; i < nrows; i++)
                    tg[i] *= tu[i];
            if (c->y_dtype == TRIT_DTYPE_F32) {
                float *y = (float *)c->y + tok * c->y_stride + row0;
                if (c->res) {
                    const float *r = (const float *)c->res + tok * c->res_stride + row0;
                    for (int64_t i = 0; i < nrows; i++)
                        y[i] = tg[i] + r[i];
                } else {
                    memcpy(y, tg, (size_t)nrows * sizeof(float));
                }
            } else {
                uint16_t *y = (uint16_t *)c->y + tok * c->y_stride + row0;
                if (c->res) {
                    gemv_f16_load(rbuf, (const uint16_t *)c->res + tok * c->res_stride + row0,
                                  nrows);
                    for (int64_t i = 0; i < nrows; i++)
                        tg[i] += rbuf[i];
                }
                gemv_f16_store(hbuf, tg, nrows);
                memcpy(y, hbuf, (size_t)nrows * sizeof(uint16_t));
            }
        }
    }
}

#endif /* TRIT_CPU_GEMV_IMPL_DONE */
#endif /* GEMV_IMPL */
