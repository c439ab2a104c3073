/*
 * gemv.c — fused ternary GEMV on the CPU: upload (repack), dispatch, and the portable kernel.
 *
 * Tiling: tiles of GEMV_R = 4 interleaved rows x chunks of 256 weights (64 bytes per row, see
 * gemv.h). The pool hands out ranges of tiles; the thread that owns a tile computes its rows for
 * every token and runs their epilogue, so each weight byte is read from memory once per call.
 * Before that, the calling thread (or the pool, for many tokens) runs the prologue once per token:
 * RMSNorm, then the int8 pseudo-columns every kernel reads (K bytes each, L1/L2 resident).
 *
 * Bytes moved per call: M * K / 4 of codes (+ scales, + N * K of x, + N * M of y), so the floor is
 * M * K / 4 / bandwidth. A BitNet-2B layer sweep (7 matrices, 69.5 M weights) is 17.4 MB per layer,
 * 521 MB for 30 layers: 15.8 ms at the 33 GB/s this 2-core Zen 4 reads from DRAM (2 threads).
 * Measured (INT8, N = 1, cold, 210 calls): 16.5-16.9 ms, 93-96% of that; AVX2 17.6 ms. A hot
 * 2560 x 2560 matrix (1.6 MB, L2/L3 resident) is compute bound instead: 6.6 M weights at 64
 * int8 MACs per cycle (one 512-bit VPDPBUSD per cycle per core, 3.56 GHz) is 29 us of one core,
 * 14.6 us of two, before the field extraction (one AND per 64 weights) and loads that share
 * the vector ports. Measured, two threads: 22-24 us (AVX-512 VNNI), 38 us (AVX2).
 *
 * Numeric paths: INT8 quantizes x' as trit.h specifies; FLOAT writes x' as 30-bit fixed point
 * (four int8 digit planes) and reuses the same exact integer kernels: 4x the arithmetic of INT8,
 * yet 3.6x the throughput of a masked f32 add/sub kernel on this core (measured side by side on
 * one Zen 4 core, L2-resident 1280 x 2560: masks from VPTESTMB + masked VADDPS, 14.2 weights/ns;
 * digit planes, 51.7 weights/ns), with an error bounded by max|x'| * 2^-31 per element, which is
 * below an f32 accumulation's bound; results are also bit-identical across ISAs. Measured: hot
 * 2560 x 2560 N = 1 in 77 us (AVX2 137 us); the cold sweep in 28.8 ms (compute bound).
 *
 * This file is portable C; gemv_avx2.c and gemv_avx512.c hold the SIMD kernels, picked from
 * dev->isa (AVX-512 integer kernels need VNNI; an AVX-512 CPU without it uses the AVX2 ones).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cpu.h"
#include "gemv.h"
#include "half.h"

static void gemv_f16_load(float *dst, const uint16_t *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = cpu_half_to_float(src[i]);
}

static void gemv_f16_store(uint16_t *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = cpu_float_to_half(src[i]);
}

/* sum over one 256-weight chunk of code * q (|result| <= 256 * 2 * 128). */
static int32_t chunk_dot(const uint8_t *w, const int8_t *q)
{
    int32_t s = 0;
    for (int b = 0; b < GEMV_CHUNK_BYTES; b++) {
        const int v = w[b];
        s += (v & 3) * q[b] + ((v >> 2) & 3) * q[64 + b] + ((v >> 4) & 3) * q[128 + b] +
             (v >> 6) * q[192 + b];
    }
    return s;
}

static void gemv_kernel(const gemv_kargs *a)
{
    const cpu_ternary *w = a->w;
    const int64_t chunks = w->chunks;
    for (int64_t t = 0; t < a->ntiles; t++) {
        const int64_t tile = a->tile0 + t;
        const uint8_t *wt = w->codes + tile * chunks * GEMV_TILE_BYTES;
        for (int r = 0; r < GEMV_R; r++) {
            const int64_t o = t * GEMV_R + r;
            for (int p = 0; p < a->pcols; p++) {
                const int8_t *q = a->q + p * a->q_stride;
                if (w->scale_kind == TRIT_SCALE_BLOCK) {
                    const float *sc = w->scales + tile * chunks * GEMV_R + r;
                    const int32_t *qs = a->qsum + p * chunks;
                    float f = 0.0f;
                    for (int64_t ch = 0; ch < chunks; ch++) {
                        int32_t s = chunk_dot(wt + ch * GEMV_TILE_BYTES + r * GEMV_CHUNK_BYTES,
                                              q + ch * GEMV_KC) -
                                    qs[ch];
                        f += (float)s * sc[ch * GEMV_R];
                    }
                    ((float *)a->out)[p * a->ld + o] = f;
                } else {
                    uint32_t s = 0;
                    for (int64_t ch = 0; ch < chunks; ch++)
                        s += (uint32_t)chunk_dot(wt + ch * GEMV_TILE_BYTES + r * GEMV_CHUNK_BYTES,
                                                 q + ch * GEMV_KC);
                    ((int32_t *)a->out)[p * a->ld + o] = (int32_t)(s - (uint32_t)a->qtot[p]);
                }
            }
        }
    }
}

#define GEMV_IMPL
#include "gemv.h"

void gemv_prep_portable(const gemv_call *c, int64_t token)
{
    gemv_prep_impl(c, token);
}

void gemv_rows_portable(const gemv_call *c, int64_t tile_begin, int64_t tile_end)
{
    gemv_rows_impl(c, tile_begin, tile_end);
}

/* --- support query ---------------------------------------------------------------------------- */

const char *cpu_gemv_unsupported(const cpu_device *dev, const trit_op_desc *desc)
{
    (void)dev;
    if (desc->op != TRIT_OP_GEMV && desc->op != TRIT_OP_GEMV_GATED)
        return "not a GEMV op";
    if (desc->x_dtype != TRIT_DTYPE_F32 && desc->x_dtype != TRIT_DTYPE_F16)
        return "gemv: x must be f32 or f16";
    if (desc->y_dtype != TRIT_DTYPE_F32 && desc->y_dtype != TRIT_DTYPE_F16)
        return "gemv: y must be f32 or f16";
    if (desc->path != TRIT_GEMV_FLOAT && desc->path != TRIT_GEMV_INT8)
        return "gemv: unknown numeric path";
    if (desc->n < 1 || desc->n > TRIT_GEMV_MAX_N)
        return "gemv: N must be 1..16";
    return NULL;
}

/* --- upload ----------------------------------------------------------------------------------- */

typedef struct repack_job {
    const trit_ternary_host *src;
    cpu_ternary *dst;
    uint8_t *codes;
    float *scales;
} repack_job;

/* A 4 x 4 transpose of 2-bit fields in 32 bits: field f of byte j moves to field j of byte f.
 * Byte j holds canonical codes 4 i .. 4 i + 3 of field group j (weights 64 j + 4 i + f of a
 * chunk); byte f of the result is our byte 4 i + f (fields j = 0..3). Two delta swaps. */
static uint32_t transpose_fields(uint32_t s)
{
    uint32_t t = ((s >> 12) ^ s) & 0x0000f0f0u;
    s ^= t ^ (t << 12);
    t = ((s >> 6) ^ s) & 0x00cc00ccu;
    s ^= t ^ (t << 6);
    return s;
}

static void repack_tiles(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const repack_job *j = ctx;
    const trit_ternary_host *s = j->src;
    const cpu_ternary *d = j->dst;
    const int64_t chunks = d->chunks, cols = s->cols;
    for (int64_t t = begin; t < end; t++) {
        for (int r = 0; r < GEMV_R; r++) {
            const int64_t row = t * GEMV_R + r;
            const uint8_t *src = row < s->rows ? s->codes + (uint64_t)row * s->row_bytes : NULL;
            for (int64_t ch = 0; ch < chunks; ch++) {
                uint8_t *out = j->codes + (t * chunks + ch) * GEMV_TILE_BYTES + r * 64;
                if (src && (ch + 1) * GEMV_KC <= cols) {
                    /* A full chunk: its 64 canonical bytes hold weights 256 ch + 4 i + f. */
                    const uint8_t *in = src + ch * 64;
                    for (int i = 0; i < 16; i++) {
                        const uint32_t v = (uint32_t)in[i] | (uint32_t)in[16 + i] << 8 |
                                           (uint32_t)in[32 + i] << 16 | (uint32_t)in[48 + i] << 24;
                        const uint32_t o = transpose_fields(v);
                        for (int f = 0; f < 4; f++)
                            out[4 * i + f] = (uint8_t)(o >> (8 * f));
                    }
                    continue;
                }
                for (int b = 0; b < 64; b++) {
                    unsigned v = 0;
                    for (int f = 0; f < 4; f++) {
                        const int64_t k = ch * GEMV_KC + f * 64 + b;
                        unsigned code = 1; /* padding: w = 0 */
                        if (src && k < cols)
                            code = (src[k >> 2] >> (2 * (k & 3))) & 3u;
                        v |= code << (2 * f);
                    }
                    out[b] = (uint8_t)v;
                }
            }
            if (d->scale_kind == TRIT_SCALE_ROW)
                j->scales[row] = row < s->rows ? s->scales[row] : 0.0f;
            else if (d->scale_kind == TRIT_SCALE_BLOCK)
                for (int64_t ch = 0; ch < chunks; ch++)
                    j->scales[(t * chunks + ch) * GEMV_R + r] =
                        row < s->rows ? s->scales[row * chunks + ch] : 0.0f;
        }
    }
}

static void *weights_alloc(uint64_t bytes)
{
    /* Large matrices on 2 MiB boundaries with transparent huge pages: a cold sweep otherwise
     * spends a visible share of its time in TLB misses. */
    const uint64_t huge = (uint64_t)2 << 20;
    if (bytes >= 2 * huge) {
        const uint64_t rounded = (bytes + huge - 1) & ~(huge - 1);
        if (rounded <= (uint64_t)SIZE_MAX) {
            void *p = aligned_alloc((size_t)huge, (size_t)rounded);
            if (p) {
#ifdef MADV_HUGEPAGE
                madvise(p, (size_t)rounded, MADV_HUGEPAGE);
#endif
                return p;
            }
        }
    }
    return cpu_aligned_alloc(bytes);
}

trit_status cpu_ternary_create(cpu_device *dev, const trit_ternary_host *w, void **out_ternary,
                               uint64_t *out_device_bytes)
{
    if (!w || !w->codes || w->rows < 1 || w->cols < 1 ||
        w->row_bytes < (uint64_t)(w->cols + 3) / 4) {
        cpu_set_error(dev, "ternary upload: malformed host matrix");
        return TRIT_ERROR_INTERNAL;
    }
    const int64_t rows = w->rows, cols = w->cols;
    const int64_t tiles = (rows + GEMV_R - 1) / GEMV_R;
    const int64_t chunks = (cols + GEMV_KC - 1) / GEMV_KC;
    if (tiles > INT64_MAX / GEMV_TILE_BYTES / chunks) {
        cpu_set_error(dev, "ternary upload: %lld x %lld overflows", (long long)rows,
                      (long long)cols);
        return TRIT_ERROR_OVERFLOW;
    }

    /* Store the simplest scale kind that gives the same products. */
    trit_scale_kind kind = w->scale_kind;
    const uint64_t want = kind == TRIT_SCALE_TENSOR ? 1
                          : kind == TRIT_SCALE_ROW  ? (uint64_t)rows
                                                    : (uint64_t)rows * (uint64_t)chunks;
    if (kind > TRIT_SCALE_BLOCK ||
        (w->scales ? w->scale_count != want : kind != TRIT_SCALE_TENSOR)) {
        cpu_set_error(dev, "ternary upload: %llu scales do not fit scale kind %d",
                      (unsigned long long)w->scale_count, (int)kind);
        return TRIT_ERROR_INTERNAL;
    }
    trit_ternary_host src = *w;
    float *row_scales = NULL;
    if (kind == TRIT_SCALE_BLOCK) {
        int per_row = 1;
        for (int64_t r = 0; r < rows && per_row; r++)
            for (int64_t ch = 1; ch < chunks; ch++)
                if (!(w->scales[r * chunks + ch] == w->scales[r * chunks])) {
                    per_row = 0;
                    break;
                }
        if (per_row) {
            row_scales = malloc((size_t)rows * sizeof(float));
            if (!row_scales) {
                cpu_set_error(dev, "ternary upload: out of host memory");
                return TRIT_ERROR_OUT_OF_MEMORY;
            }
            for (int64_t r = 0; r < rows; r++)
                row_scales[r] = w->scales[r * chunks];
            src.scales = row_scales;
            src.scale_count = (uint64_t)rows;
            kind = TRIT_SCALE_ROW;
        }
    }
    if (kind == TRIT_SCALE_ROW) {
        int same = 1;
        for (int64_t r = 1; r < rows && same; r++)
            same = src.scales[r] == src.scales[0];
        if (same)
            kind = TRIT_SCALE_TENSOR;
    }

    const uint64_t code_bytes = (uint64_t)tiles * (uint64_t)chunks * GEMV_TILE_BYTES;
    const uint64_t scale_vals = kind == TRIT_SCALE_TENSOR ? 0
                                : kind == TRIT_SCALE_ROW  ? (uint64_t)tiles * GEMV_R
                                                          : (uint64_t)tiles * chunks * GEMV_R;
    const uint64_t scale_off = (code_bytes + 63) & ~(uint64_t)63;
    const uint64_t total = scale_off + scale_vals * sizeof(float);

    cpu_ternary *t = calloc(1, sizeof(*t));
    void *mem = t ? weights_alloc(total) : NULL;
    if (!mem) {
        free(t);
        free(row_scales);
        cpu_set_error(dev, "ternary upload: cannot allocate %llu bytes for a %lld x %lld matrix",
                      (unsigned long long)total, (long long)rows, (long long)cols);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    t->rows = rows;
    t->cols = cols;
    t->tiles = tiles;
    t->chunks = chunks;
    t->scale_kind = kind;
    t->tensor_scale = src.scales ? src.scales[0] : 1.0f;
    t->mem = mem;
    t->mem_bytes = total;
    t->codes = mem;
    t->scales = scale_vals ? (const float *)((char *)mem + scale_off) : NULL;

    repack_job job = {&src, t, mem, scale_vals ? (float *)((char *)mem + scale_off) : NULL};
    const int64_t grain = 1 + (1 << 16) / (chunks * GEMV_TILE_BYTES);
    if (dev->pool)
        cpu_pool_run(dev->pool, tiles, grain, repack_tiles, &job);
    else
        repack_tiles(&job, 0, tiles, 0);
    free(row_scales);

    *out_ternary = t;
    if (out_device_bytes)
        *out_device_bytes = total;
    return TRIT_OK;
}

void cpu_ternary_destroy(cpu_device *dev, void *ternary)
{
    (void)dev;
    cpu_ternary *t = ternary;
    if (!t)
        return;
    free(t->mem); /* aligned_alloc and cpu_aligned_alloc both release with free */
    free(t);
}

/* --- the op ----------------------------------------------------------------------------------- */

typedef void (*gemv_prep_fn)(const gemv_call *c, int64_t token);
typedef void (*gemv_rows_fn)(const gemv_call *c, int64_t tile_begin, int64_t tile_end);

typedef struct gemv_task {
    const gemv_call *call;
    gemv_prep_fn prep;
    gemv_rows_fn rows;
} gemv_task;

static void prep_task(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const gemv_task *t = ctx;
    for (int64_t i = begin; i < end; i++)
        t->prep(t->call, i);
}

static void rows_task(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    const gemv_task *t = ctx;
    t->rows(t->call, begin, end);
}

static int64_t row_stride(const trit_plugin_tensor *t)
{
    return t->rank >= 2 ? t->strides[t->rank - 2] : 0;
}

trit_status cpu_gemv(cpu_device *dev, const trit_plugin_gemv_args *args)
{
    const cpu_ternary *w = args->w, *wu = args->w_up;
    if (!w || args->m != w->rows || args->k != w->cols || args->n < 1 ||
        args->n > TRIT_GEMV_MAX_N || (wu && (wu->rows != w->rows || wu->cols != w->cols))) {
        cpu_set_error(dev, "gemv: arguments do not match the matrix (host validation missed it)");
        return TRIT_ERROR_INTERNAL;
    }
    gemv_call c;
    memset(&c, 0, sizeof(c));
    c.w[0] = w;
    c.w[1] = wu;
    c.mats = wu ? 2 : 1;
    c.m = args->m;
    c.k = args->k;
    c.n = args->n;
    c.chunks = w->chunks;
    c.kp = w->chunks * GEMV_KC;
    c.path = args->path;
    c.npc = args->path == TRIT_GEMV_INT8 ? 1 : GEMV_FLOAT_PLANES;
    c.pcols = (int)c.n * c.npc;
    c.x = cpu_tensor_ptr(&args->x);
    c.x_dtype = args->x.dtype;
    c.x_stride = row_stride(&args->x);
    c.y = cpu_tensor_ptr(&args->y);
    c.y_dtype = args->y.dtype;
    c.y_stride = row_stride(&args->y);
    if (args->has_residual) {
        c.res = cpu_tensor_ptr(&args->residual);
        c.res_stride = row_stride(&args->residual);
    }
    c.bias = args->has_bias ? cpu_tensor_ptr(&args->bias) : NULL;
    if (args->has_rmsnorm) {
        c.rms_w = cpu_tensor_ptr(&args->rmsnorm_weight);
        c.rms_eps = args->rmsnorm_eps;
    }
    c.act = args->act;
    if (args->has_accumulators && args->path == TRIT_GEMV_INT8) {
        c.acc = cpu_tensor_ptr(&args->accumulators);
        c.acc_stride = row_stride(&args->accumulators);
    }

    /* Scratch: one allocation per call (a few KB for decode; glibc serves it from its caches). */
    const uint64_t q_bytes = (uint64_t)c.pcols * (uint64_t)c.kp;
    const uint64_t qsum_off = (q_bytes + 63) & ~(uint64_t)63;
    const uint64_t qtot_off = qsum_off + (uint64_t)c.pcols * (uint64_t)c.chunks * 4;
    const uint64_t xs_off = (qtot_off + (uint64_t)c.pcols * 4 + 63) & ~(uint64_t)63;
    const uint64_t colf_off = xs_off + (uint64_t)c.n * (uint64_t)c.kp * 4;
    const uint64_t unit_off = (colf_off + (uint64_t)c.n * 4 + 7) & ~(uint64_t)7;
    const uint64_t total = unit_off + (uint64_t)c.n * 8;
    char *scratch = cpu_aligned_alloc(total);
    if (!scratch) {
        cpu_set_error(dev, "gemv: cannot allocate %llu bytes of scratch",
                      (unsigned long long)total);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    c.q = (int8_t *)scratch;
    c.qsum = (int32_t *)(scratch + qsum_off);
    c.qtot = (int32_t *)(scratch + qtot_off);
    c.xs = (float *)(scratch + xs_off);
    c.colf = (float *)(scratch + colf_off);
    c.unit = (double *)(scratch + unit_off);

    gemv_task task = {&c, gemv_prep_portable, gemv_rows_portable};
    if (dev->isa >= CPU_ISA_AVX2) {
        task.prep = gemv_prep_avx2;
        task.rows = gemv_rows_avx2;
    }
    if (dev->isa == CPU_ISA_AVX512 && dev->has_vnni)
        task.rows = gemv_rows_avx512;

    /* Prologue: per token; worth the pool only when there is enough of it. */
    if (c.n > 1 && c.n * c.kp >= 16384 && dev->pool)
        cpu_pool_run(dev->pool, c.n, 1, prep_task, &task);
    else
        prep_task(&task, 0, c.n, 0);

    /* Rows: pieces of at least 256 (tile, chunk, pseudo-column) units, ~1 us hot and ~3 us
     * cold: small enough that the pool's four pieces per thread balance the 640-row matrices. */
    const int64_t tiles = w->tiles;
    const int64_t units = c.chunks * c.pcols * c.mats;
    const int64_t grain = 1 + 256 / units;
    if (dev->pool)
        cpu_pool_run(dev->pool, tiles, grain, rows_task, &task);
    else
        rows_task(&task, 0, tiles, 0);

    cpu_aligned_free(scratch);
    return TRIT_OK;
}
