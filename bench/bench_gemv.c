/*
 * bench_gemv.c — fused ternary GEMV at BitNet b1.58 2B shapes (plus a 7-8B FFN matrix, and with
 * GPU cases an 8192x28672 one) against a dense baseline in the same process: OpenBLAS fp32 on the
 * CPU, cuBLAS fp16 (cublasGemmEx) on CUDA devices; and the cold sweep over every projection of a
 * 30-layer BitNet-2B-shaped model.
 *
 * Bytes a GEMV must move: the 2-bit codes (M * ceil(K/4) per matrix) + its scale + x (N*K f32) +
 * y (N*M f32). Weights dominate, so the floor is M*K/4 / bandwidth: for 6912x2560 that is 4.4 MB,
 * about 150 us at 30 GB/s; 8192x28672 is 58.7 MB, 17.5 us at an H100's 3.35 TB/s. The dense
 * baselines stream the same matrix as f32 (16x the bytes) or f16 (8x).
 *
 * Warm and cold: a single matrix of these shapes fits in a 32 MiB L3 or a 50 MB GPU L2, so the
 * plain rows (median of warm runs) measure cache-resident speed and can pass "100 %" of DRAM.
 * With GPU cases on, every shape also gets "cold" rows: successive runs rotate through enough
 * device copies of the weights (>= cfg->cold_bytes and >= 4x the L2) that each run reads its
 * matrix from DRAM; the cuBLAS baseline is rotated the same way. On the CPU the sweep (~520 MB of
 * weights) is the cold number.
 *
 * Every output is checked against a reference computed on the host in double from the same codes
 * (exact integer sums on the int8 path), so a fast wrong kernel cannot post a number.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

enum { GEMV_MAX_MATS = 2, GEMV_MAX_COPIES = 4096 };

static const float W_SCALE = 0.5f; /* per-tensor scale; a power of two keeps references exact */

typedef struct gemv_case {
    trit_stream *stream;
    trit_ternary *const *w; /* [copies][mats] */
    int mats, copies, next;
    int gated;
    trit_tensor x, y;
    trit_gemv_params params;
} gemv_case;

/* Enqueues one GEMV on the next copy of the weights. */
static trit_status gemv_enqueue(void *p)
{
    gemv_case *c = p;
    trit_ternary *const *w = c->w + (size_t)c->next * (size_t)c->mats;
    c->next = (c->next + 1) % c->copies;
    return c->gated ? trit_ternary_gemv_gated(c->stream, w[0], w[1], &c->x, &c->y, &c->params)
                    : trit_ternary_gemv(c->stream, w[0], &c->x, &c->y, &c->params);
}

/* The OpenBLAS baseline: y[N, M] = x[N, K] · W^T per matrix, then relu²(gate) ⊙ up when gated. */
typedef struct blas_case {
    int64_t m, k, n;
    int gated;
    const float *w[GEMV_MAX_MATS];
    const float *x;
    float *y[GEMV_MAX_MATS];
} blas_case;

static trit_status blas_once(void *p)
{
    const blas_case *b = p;
    for (int i = 0; i < (b->gated ? 2 : 1); i++) {
        if (b->n == 1)
            bench_blas_sgemv(b->m, b->k, b->w[i], b->x, b->y[i]);
        else
            bench_blas_sgemm(b->n, b->m, b->k, b->x, b->w[i], b->y[i]);
    }
    if (b->gated) {
        const int64_t n = b->n * b->m;
        float *g = b->y[0];
        const float *u = b->y[1];
        for (int64_t i = 0; i < n; i++) {
            float r = g[i] > 0.f ? g[i] : 0.f;
            g[i] = r * r * u[i];
        }
    }
    return TRIT_OK;
}

/* The cuBLAS baseline: one cublasGemmEx per run on the next weight copy (gate and up stacked into
 * one [2M, K] matrix, as frameworks fuse them; the activation is left out). */
typedef struct cublas_case {
    bench_cublas_gemv *g;
    int reps;
    char why[256];
} cublas_case;

static trit_status cublas_once(void *p)
{
    cublas_case *c = p;
    return bench_cublas_gemv_run(c->g, c->reps, c->why, sizeof(c->why)) ? TRIT_ERROR_BACKEND
                                                                        : TRIT_OK;
}

static trit_status upload_ternary(trit_device *device, const uint8_t *codes, int64_t rows,
                                  int64_t cols, trit_ternary **out)
{
    trit_ternary_desc desc = {
        .size = sizeof(desc),
        .rows = rows,
        .cols = cols,
        .format = TRIT_WEIGHTS_PACKED2,
        .data = codes,
        .data_bytes = (uint64_t)rows * (uint64_t)((cols + 3) / 4),
        .scale_kind = TRIT_SCALE_TENSOR,
        .scales = &W_SCALE,
    };
    return trit_ternary_upload(device, &desc, out);
}

static double gemv_bytes(int mats, int64_t m, int64_t k, int64_t n)
{
    return (double)mats * ((double)m * (double)((k + 3) / 4) + 4.0) + 4.0 * (double)(n * k) +
           4.0 * (double)(n * m);
}

/* Copies of `bytes_per_copy` whose total passes the cold target; 1 without GPU cases. */
static int cold_copies(const bench_config *cfg, const bench_device *dev, double bytes_per_copy)
{
    double target = (double)cfg->cold_bytes;
    if (4.0 * (double)dev->l2_bytes > target)
        target = 4.0 * (double)dev->l2_bytes;
    int n = (int)ceil(target / bytes_per_copy);
    /* Never more than a quarter of the device's memory. */
    double cap = dev->info.memory_bytes > 0 ? 0.25 * (double)dev->info.memory_bytes / bytes_per_copy
                                            : GEMV_MAX_COPIES;
    if (n > (int)cap)
        n = (int)cap;
    if (n > GEMV_MAX_COPIES)
        n = GEMV_MAX_COPIES;
    return n < 2 ? 2 : n;
}

typedef struct gemv_shape {
    const char *role;
    int64_t m, k;
    int gated;
} gemv_shape;

/* Everything one shape needs on the host and the device; freed by shape_free. */
typedef struct gemv_data {
    int mats;
    uint8_t *codes[GEMV_MAX_MATS];
    float *dense[GEMV_MAX_MATS]; /* OpenBLAS only */
    trit_ternary **w;            /* [copies][mats]; copy 0 is the warm one */
    int copies;
    bench_cublas_gemv *cub[2]; /* warm, cold */
    char cub_why[256];
    float *x, *y_ref[2], *y_dev, *y_tmp[GEMV_MAX_MATS], *y_cub;
    int8_t *xq;
    uint16_t *x_half;
} gemv_data;

static void shape_free(gemv_data *d)
{
    for (int i = 0; d->w && i < d->copies * d->mats; i++)
        trit_ternary_free(d->w[i]);
    free(d->w);
    for (int i = 0; i < GEMV_MAX_MATS; i++) {
        free(d->codes[i]);
        free(d->dense[i]);
        free(d->y_tmp[i]);
    }
    bench_cublas_gemv_destroy(d->cub[0]);
    bench_cublas_gemv_destroy(d->cub[1]);
    free(d->x);
    free(d->y_ref[0]);
    free(d->y_ref[1]);
    free(d->y_dev);
    free(d->y_cub);
    free(d->xq);
    free(d->x_half);
}

/* The cuBLAS side of a shape: the dense f16 matrix (stacked when gated), a warm handle with one
 * copy and, with GPU cases, a cold one. On failure d->cub_why says why. */
static void shape_cublas(const bench_config *cfg, const bench_device *dev, gemv_data *d,
                         const gemv_shape *sh)
{
    const int64_t M = sh->m * d->mats, K = sh->k, row_bytes = (K + 3) / 4;
    uint16_t *wh = malloc((size_t)(M * K) * sizeof(uint16_t));
    if (!wh) {
        snprintf(d->cub_why, sizeof(d->cub_why), "host allocation of the f16 matrix");
        return;
    }
    static const uint16_t lut[4] = {0xb800u, 0x0000u, 0x3800u, 0x7e00u}; /* -0.5, 0, 0.5, NaN */
    for (int i = 0; i < d->mats; i++)
        for (int64_t m = 0; m < sh->m; m++)
            for (int64_t k = 0; k < K; k++)
                wh[(i * sh->m + m) * K + k] =
                    lut[(d->codes[i][m * row_bytes + k / 4] >> (2 * (k % 4))) & 3];
    d->cub[0] = bench_cublas_gemv_create(dev->cublas, wh, M, K, 1, d->cub_why, sizeof(d->cub_why));
    if (d->cub[0] && dev->gpu_cases)
        d->cub[1] = bench_cublas_gemv_create(dev->cublas, wh, M, K,
                                             cold_copies(cfg, dev, (double)(M * K) * 2.0),
                                             d->cub_why, sizeof(d->cub_why));
    free(wh);
}

/* Times the cuBLAS baseline (warm = 0, cold = 1) and emits its own row, so the card's dense
 * GEMV speed is on record even where trit's op is unsupported. Returns the median in us, or 0. */
static double time_cublas(const bench_config *cfg, const bench_device *dev, gemv_data *d,
                          const gemv_shape *sh, int64_t N, int cold, const char *shape,
                          const float *ref_float)
{
    bench_cublas_gemv *g = d->cub[cold];
    if (!g)
        return 0;
    const int64_t M = sh->m * d->mats, K = sh->k;
    const char *variant = cold ? "f16 gemmex cold" : "f16 gemmex";
    cublas_case c = {.g = g, .reps = 1};
    double a = bench_now();
    trit_status st = cublas_once(&c);
    c.reps = bench_reps_for(dev, bench_now() - a);
    bench_timing t = {0};
    if (st == TRIT_OK)
        st = bench_time(cfg, cfg->min_time, cublas_once, &c, &t);
    if (st != TRIT_OK) {
        bench_row row;
        bench_row_init(&row, dev, "cublas_gemv", shape, variant);
        row.state = BENCH_ROW_FAILED;
        snprintf(row.note, sizeof(row.note), "%s", c.why);
        bench_row_emit(cfg, &row);
        return 0;
    }
    bench_row row;
    bench_row_init(&row, dev, "cublas_gemv", shape, variant);
    row.time_us = t.median_s / c.reps * 1e6;
    row.min_us = t.min_s / c.reps * 1e6;
    row.runs = t.runs;
    row.ops_per_sync = c.reps;
    row.bytes = 2.0 * (double)(M * K) + 2.0 * (double)(N * K) + 2.0 * (double)(N * M);
    row.flops = 2.0 * (double)M * (double)K * (double)N;
    /* Plain shapes only: the stacked gated matrix has no reference of its own. f16 x and y
     * round to 2^-11, so agreement within 5e-3 is expected. */
    if (!sh->gated && bench_cublas_gemv_output(g, d->y_cub) == 0) {
        row.check_err = bench_rel_error(d->y_cub, ref_float, (size_t)(N * M));
        row.check_tol = 5e-3;
        if (!(row.check_err <= row.check_tol)) {
            row.state = BENCH_ROW_MISMATCH;
            snprintf(row.note, sizeof(row.note),
                     "cuBLAS output: relative error %.3g against the reference (tolerance %g)",
                     row.check_err, row.check_tol);
        }
    }
    bench_row_finish(&row, dev);
    bench_row_emit(cfg, &row);
    return row.state == BENCH_ROW_OK ? row.time_us : 0;
}

static void run_shape(const bench_config *cfg, bench_device *dev, const gemv_shape *sh,
                      const int *ns, int n_ns, uint64_t seed)
{
    const int mats = sh->gated ? 2 : 1;
    const int64_t M = sh->m, K = sh->k;
    const char *op = sh->gated ? "gemv_gated" : "gemv";
    char base_shape[48];
    snprintf(base_shape, sizeof(base_shape), "%lldx%lld%s %s", (long long)M, (long long)K,
             sh->gated ? " x2" : "", sh->role);

    bench_rng rng = {seed};
    const uint64_t row_bytes = (uint64_t)(K + 3) / 4;
    const size_t xn = (size_t)(TRIT_GEMV_MAX_N * K), yn = (size_t)(TRIT_GEMV_MAX_N * M);
    const int blas = dev->host_baselines && bench_blas_available();
    gemv_data d = {.mats = mats};
    d.copies = dev->gpu_cases ? cold_copies(cfg, dev, (double)mats * (double)(M * row_bytes)) : 1;
    d.w = calloc((size_t)d.copies * (size_t)mats, sizeof(trit_ternary *));
    d.x = malloc(xn * sizeof(float));
    d.xq = malloc(xn);
    d.x_half = malloc(xn * sizeof(uint16_t));
    d.y_ref[0] = malloc(yn * sizeof(float));
    d.y_ref[1] = malloc(yn * sizeof(float));
    d.y_dev = malloc(yn * sizeof(float));
    d.y_cub = malloc(yn * mats * sizeof(float));
    int oom =
        !d.w || !d.x || !d.xq || !d.x_half || !d.y_ref[0] || !d.y_ref[1] || !d.y_dev || !d.y_cub;
    trit_status st = TRIT_OK;
    const char *what = "trit_ternary_upload";
    for (int i = 0; i < mats && !oom; i++) {
        d.codes[i] = malloc((size_t)(M * (int64_t)row_bytes));
        d.y_tmp[i] = malloc(yn * sizeof(float));
        if (blas)
            d.dense[i] = malloc((size_t)(M * K) * sizeof(float));
        if (!d.codes[i] || !d.y_tmp[i] || (blas && !d.dense[i])) {
            oom = 1;
            break;
        }
        bench_fill_packed2(&rng, d.codes[i], M, K);
        if (blas)
            bench_unpack_f32(d.codes[i], M, K, W_SCALE, d.dense[i]);
    }
    /* Copy 0 is the warm matrix; the others hold the same codes at other addresses. */
    int uploaded = 0;
    for (int c = 0; c < d.copies && !oom && st == TRIT_OK; c++) {
        for (int i = 0; i < mats && st == TRIT_OK; i++)
            st = upload_ternary(dev->device, d.codes[i], M, K, &d.w[c * mats + i]);
        uploaded += st == TRIT_OK;
    }
    if (st != TRIT_OK && uploaded >= 1) {
        /* Device memory ran out among the cold copies: rotate through those that fit (with one,
         * there are no cold rows). */
        for (int i = uploaded * mats; i < d.copies * mats; i++) {
            trit_ternary_free(d.w[i]);
            d.w[i] = NULL;
        }
        fprintf(cfg->table, "# %s: only %d weight copies fit (%s)\n", base_shape, uploaded,
                trit_last_error());
        d.copies = uploaded;
        st = TRIT_OK;
    }
    if (oom) {
        bench_failed(cfg, dev, op, base_shape, "", "host allocation", TRIT_ERROR_OUT_OF_MEMORY);
        shape_free(&d);
        return;
    }
    /* A device that cannot take the weights still gets its baseline rows. */
    const int have_trit = st == TRIT_OK;
    if (!have_trit)
        bench_failed(cfg, dev, op, base_shape, "", what, st);
    if (dev->cublas)
        shape_cublas(cfg, dev, &d, sh);
    if (!have_trit && !d.cub[0]) {
        shape_free(&d);
        return;
    }

    for (int ni = 0; ni < n_ns; ni++) {
        const int64_t N = ns[ni];
        char shape[64];
        snprintf(shape, sizeof(shape), "%s N=%lld", base_shape, (long long)N);
        bench_fill_floats(&rng, d.x, (size_t)(N * K));

        trit_buffer *xb = NULL, *yb = NULL;
        gemv_case c = {.stream = dev->stream, .w = d.w, .mats = mats, .gated = sh->gated};
        int64_t xs[2] = {N, K}, ys[2] = {N, M};
        st = TRIT_OK;
        if (have_trit)
            st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 2, xs, d.x, &xb, &c.x);
        if (have_trit && st == TRIT_OK)
            st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 2, ys, NULL, &yb, &c.y);
        if (st != TRIT_OK) {
            bench_failed(cfg, dev, op, shape, "", "allocating x / y", st);
            trit_buffer_free(xb);
            continue;
        }

        /* References, on as many host threads as the device's baselines would use (or all). */
        float dequant[TRIT_GEMV_MAX_N];
        bench_quantize_rows(d.x, N, K, d.xq, dequant);
        bench_gemv_ref ref = {.gated = sh->gated,
                              .m = M,
                              .k = K,
                              .n = N,
                              .scale = W_SCALE,
                              .x = d.x,
                              .q = d.xq,
                              .dequant = dequant};
        ref.codes[0] = d.codes[0];
        ref.codes[1] = d.codes[1];
        const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        const int ref_threads = dev->host_baselines ? dev->threads : ncpu > 0 ? (int)ncpu : 1;
        for (int path = TRIT_GEMV_FLOAT; path <= TRIT_GEMV_INT8; path++) {
            ref.path = path;
            ref.out = d.y_ref[path];
            bench_gemv_reference(&ref, ref_threads);
        }

        /* Baselines: OpenBLAS fp32 on the CPU device, cuBLAS fp16 (warm and cold) on CUDA. */
        double base_us[2] = {0, 0};
        const char *base_name = "";
        if (blas) {
            blas_case b = {.m = M, .k = K, .n = N, .gated = sh->gated, .x = d.x};
            b.w[0] = d.dense[0];
            b.w[1] = d.dense[1];
            b.y[0] = d.y_tmp[0];
            b.y[1] = d.y_tmp[1];
            bench_timing bt = {0};
            if (bench_time(cfg, cfg->min_time, blas_once, &b, &bt) == TRIT_OK)
                base_us[0] = base_us[1] = bt.median_s * 1e6;
            base_name = N == 1 ? "openblas sgemv" : "openblas sgemm";
            /* OpenBLAS's worker threads spin for ~0.1 s after their last job; let them go to
             * sleep before timing trit, or they take one of the two cores away from it. */
            bench_sleep(0.15);
        } else if (d.cub[0]) {
            for (size_t i = 0; i < (size_t)(N * K); i++)
                d.x_half[i] = trit_float_to_half(d.x[i]);
            for (int cold = 0; cold < 2; cold++)
                if (d.cub[cold] && bench_cublas_gemv_set_x(d.cub[cold], d.x_half, N) == 0)
                    base_us[cold] =
                        time_cublas(cfg, dev, &d, sh, N, cold, shape, d.y_ref[TRIT_GEMV_FLOAT]);
            base_name = "cublas f16";
        }
        char base_note[96] = "";
        if (dev->host_baselines && !blas)
            snprintf(base_note, sizeof(base_note), "OpenBLAS not found");
        else if (dev->info.backend == TRIT_BACKEND_CUDA && !dev->cublas)
            snprintf(base_note, sizeof(base_note), "%s",
                     strstr(dev->cublas_note, "not found") ? "cuBLAS not found"
                                                           : "cuBLAS unavailable (see header)");
        else if (dev->cublas && !d.cub[0])
            snprintf(base_note, sizeof(base_note), "cuBLAS: %.80s", d.cub_why);

        for (int cold = 0; have_trit && cold <= (dev->gpu_cases && d.copies > 1 ? 1 : 0); cold++) {
            c.copies = cold ? d.copies : 1;
            c.next = 0;
            for (int path = TRIT_GEMV_FLOAT; path <= TRIT_GEMV_INT8; path++) {
                char variant[32];
                snprintf(variant, sizeof(variant), "%s%s",
                         path == TRIT_GEMV_FLOAT ? "f32 float" : "f32 int8", cold ? " cold" : "");
                trit_op_desc desc = {
                    .size = sizeof(desc),
                    .op = sh->gated ? TRIT_OP_GEMV_GATED : TRIT_OP_GEMV,
                    .x_dtype = TRIT_DTYPE_F32,
                    .y_dtype = TRIT_DTYPE_F32,
                    .path = (trit_gemv_path)path,
                    .n = (int32_t)N,
                };
                if (bench_unsupported(cfg, dev, &desc, op, shape, variant))
                    continue;
                trit_gemv_params_init(&c.params);
                c.params.path = (trit_gemv_path)path;
                if (sh->gated)
                    c.params.act = TRIT_ACT_RELU2;

                bench_timing t;
                int reps = 1;
                st = bench_time_ops(cfg, dev, cfg->min_time, gemv_enqueue, &c, &t, &reps);
                if (st == TRIT_OK)
                    st = trit_buffer_download(dev->stream, yb, 0, d.y_dev,
                                              (uint64_t)(N * M) * sizeof(float));
                if (st == TRIT_OK)
                    st = trit_stream_sync(dev->stream);
                if (st != TRIT_OK) {
                    bench_failed(cfg, dev, op, shape, variant,
                                 sh->gated ? "trit_ternary_gemv_gated" : "trit_ternary_gemv", st);
                    continue;
                }

                bench_row row;
                bench_row_init(&row, dev, op, shape, variant);
                row.time_us = t.median_s * 1e6;
                row.min_us = t.min_s * 1e6;
                row.runs = t.runs;
                row.ops_per_sync = reps;
                row.bytes = gemv_bytes(mats, M, K, N);
                row.flops = 2.0 * mats * (double)M * (double)K * (double)N;
                if (base_us[cold] > 0) {
                    snprintf(row.baseline, sizeof(row.baseline), "%s", base_name);
                    row.base_us = base_us[cold];
                }
                snprintf(row.base_note, sizeof(row.base_note), "%s", base_note);
                row.check_err = bench_rel_error(d.y_dev, d.y_ref[path], (size_t)(N * M));
                /* Float path: f32 sums in some order against a double reference. Int8 path: the
                 * integer sums are exact on both sides, only the final rescale may round apart. */
                row.check_tol = path == TRIT_GEMV_FLOAT ? 2e-5 : 1e-5;
                if (!(row.check_err <= row.check_tol)) {
                    row.state = BENCH_ROW_MISMATCH;
                    snprintf(row.note, sizeof(row.note),
                             "relative error %.3g against the fp64 reference on the same weights "
                             "(tolerance %g)",
                             row.check_err, row.check_tol);
                }
                bench_row_finish(&row, dev);
                bench_row_emit(cfg, &row);
            }
        }
        trit_buffer_free(xb);
        trit_buffer_free(yb);
    }
    if (dev->gpu_cases && have_trit && d.copies > 1)
        fprintf(cfg->table, "# %s: cold rows rotate through %d copies (%.0f MB) of the weights\n",
                base_shape, d.copies, (double)d.copies * mats * (double)(M * row_bytes) * 1e-6);
    shape_free(&d);
}

void bench_gemv_run(const bench_config *cfg, bench_device *dev)
{
    /* BitNet b1.58 2B: hidden 2560, 20 query / 5 KV heads of 128, FFN 6912; plus a 7-8B-class
     * FFN matrix (4096x14336) that is bigger than the L3, and with GPU cases a 70B-class FFN
     * matrix (8192x28672, 58.7 MB of codes) that is bigger than any GPU's L2. */
    static const gemv_shape full[] = {
        {"q/o", 2560, 2560, 0},      {"k/v", 640, 2560, 0},      {"gate/up", 6912, 2560, 0},
        {"down", 2560, 6912, 0},     {"gate+up", 6912, 2560, 1}, {"ffn-8b", 4096, 14336, 0},
        {"ffn-70b", 8192, 28672, 0},
    };
    static const gemv_shape quick[] = {
        {"q/o", 2560, 2560, 0},
        {"gate+up", 6912, 2560, 1},
        {"ffn-70b", 8192, 28672, 0},
    };
    static const int ns_full[] = {1, 4, 16};
    static const int ns_quick[] = {1, 4};
    const gemv_shape *shapes = cfg->quick ? quick : full;
    int n_shapes = cfg->quick ? 3 : (int)(sizeof(full) / sizeof(full[0]));
    if (!dev->gpu_cases)
        n_shapes--; /* the last shape of each list is a GPU case */
    for (int i = 0; i < n_shapes; i++)
        run_shape(cfg, dev, &shapes[i], cfg->quick ? ns_quick : ns_full, cfg->quick ? 2 : 3,
                  0x7e57ull + (uint64_t)i);
}

/* ---- cold sweep ----------------------------------------------------------------------------- */

enum { SWEEP_PROJ = 7 };

static const struct {
    const char *name;
    int64_t m, k;
} SWEEP_SHAPES[SWEEP_PROJ] = {
    {"q", 2560, 2560},    {"k", 640, 2560},   {"v", 640, 2560},     {"o", 2560, 2560},
    {"gate", 6912, 2560}, {"up", 6912, 2560}, {"down", 2560, 6912},
};

typedef struct sweep_case {
    trit_stream *stream;
    int layers;
    trit_ternary **w; /* [layers][SWEEP_PROJ] */
    int fused_gate;   /* gate and up as one gated GEMV, as a trit-based decoder would issue them */
    trit_tensor x_hidden, x_ffn;
    trit_tensor y[SWEEP_PROJ];
    trit_gemv_params plain, gated;
} sweep_case;

/* One decode step's worth of projections, layer by layer, in the order a decoder runs them;
 * the host waits once at the end, as it would before sampling. */
static trit_status sweep_once(void *p)
{
    sweep_case *c = p;
    for (int l = 0; l < c->layers; l++) {
        trit_ternary **w = c->w + (size_t)l * SWEEP_PROJ;
        for (int j = 0; j < SWEEP_PROJ; j++) {
            trit_status st;
            if (j == 4 && c->fused_gate) {
                st = trit_ternary_gemv_gated(c->stream, w[4], w[5], &c->x_hidden, &c->y[4],
                                             &c->gated);
                j++; /* up was part of it */
            } else {
                st = trit_ternary_gemv(c->stream, w[j], j == 6 ? &c->x_ffn : &c->x_hidden, &c->y[j],
                                       &c->plain);
            }
            if (st != TRIT_OK)
                return st;
        }
    }
    return trit_stream_sync(c->stream);
}

void bench_sweep_run(const bench_config *cfg, bench_device *dev)
{
    const int layers = cfg->sweep_layers;
    char shape[64];
    snprintf(shape, sizeof(shape), "%d layers x 7 proj N=1", layers);

    sweep_case c = {.stream = dev->stream, .layers = layers};
    c.w = calloc((size_t)layers * SWEEP_PROJ, sizeof(trit_ternary *));
    uint8_t *codes = malloc((size_t)(6912 * 2560 / 4));
    float *x = malloc(6912 * sizeof(float));
    trit_buffer *xb_h = NULL, *xb_f = NULL, *yb[SWEEP_PROJ] = {0};
    trit_status st = TRIT_OK;
    const char *what = "trit_ternary_upload";
    if (!c.w || !codes || !x) {
        bench_failed(cfg, dev, "sweep", shape, "", "host allocation", TRIT_ERROR_OUT_OF_MEMORY);
        goto done;
    }

    /* Distinct random matrices, generated and uploaded one at a time so the host never holds
     * more than one matrix of codes (the device side holds all ~520 MB). */
    bench_rng rng = {0x5eedull};
    double bytes = 0, weight_bytes = 0, flops = 0, device_bytes = 0;
    for (int l = 0; l < layers && st == TRIT_OK; l++) {
        for (int j = 0; j < SWEEP_PROJ && st == TRIT_OK; j++) {
            const int64_t m = SWEEP_SHAPES[j].m, k = SWEEP_SHAPES[j].k;
            bench_fill_packed2(&rng, codes, m, k);
            trit_ternary **slot = &c.w[(size_t)l * SWEEP_PROJ + (size_t)j];
            st = upload_ternary(dev->device, codes, m, k, slot);
            if (st != TRIT_OK)
                break;
            bytes += gemv_bytes(1, m, k, 1);
            weight_bytes += (double)m * (double)((k + 3) / 4);
            flops += 2.0 * (double)m * (double)k;
            device_bytes += (double)trit_ternary_device_bytes(*slot);
        }
    }
    if (st == TRIT_OK) {
        what = "allocating x / y";
        int64_t sh[2] = {1, 2560}, sf[2] = {1, 6912};
        bench_fill_floats(&rng, x, 6912);
        st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 2, sh, x, &xb_h, &c.x_hidden);
        if (st == TRIT_OK)
            st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 2, sf, x, &xb_f, &c.x_ffn);
        for (int j = 0; j < SWEEP_PROJ && st == TRIT_OK; j++) {
            int64_t sy[2] = {1, SWEEP_SHAPES[j].m};
            st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 2, sy, NULL, &yb[j], &c.y[j]);
        }
    }
    if (st != TRIT_OK) {
        bench_failed(cfg, dev, "sweep", shape, "", what, st);
        goto done;
    }
    fprintf(cfg->table,
            "# sweep: %d layers, %.1f MB of 2-bit weights + %.1f MB of x / y / scales (the device "
            "holds %.1f MB); floor at %s bandwidth: %.2f ms\n",
            layers, weight_bytes * 1e-6, (bytes - weight_bytes) * 1e-6, device_bytes * 1e-6,
            dev->peak_kind, dev->peak_gbs > 0 ? bytes / (dev->peak_gbs * 1e9) * 1e3 : 0.0);

    for (int fused = 0; fused <= 1; fused++) {
        for (int path = TRIT_GEMV_INT8; path >= TRIT_GEMV_FLOAT; path--) {
            char variant[32];
            snprintf(variant, sizeof(variant), "%s%s",
                     path == TRIT_GEMV_INT8 ? "f32 int8" : "f32 float", fused ? " fused" : "");
            trit_op_desc desc = {.size = sizeof(desc),
                                 .op = TRIT_OP_GEMV,
                                 .x_dtype = TRIT_DTYPE_F32,
                                 .y_dtype = TRIT_DTYPE_F32,
                                 .path = (trit_gemv_path)path,
                                 .n = 1};
            if (bench_unsupported(cfg, dev, &desc, "sweep", shape, variant))
                continue;
            desc.op = TRIT_OP_GEMV_GATED;
            if (fused && bench_unsupported(cfg, dev, &desc, "sweep", shape, variant))
                continue;
            c.fused_gate = fused;
            trit_gemv_params_init(&c.plain);
            c.plain.path = (trit_gemv_path)path;
            c.gated = c.plain;
            c.gated.act = TRIT_ACT_RELU2;

            /* On a shared or virtual machine the bandwidth on offer moves during a run (a busy
             * neighbour, vCPUs placed on one physical core or two), so the read bandwidth is
             * measured again right before each sweep and reported next to it. */
            double bw_now = 0;
            if (dev->info.backend == TRIT_BACKEND_CPU)
                bw_now = baseline_read_bandwidth(cfg->read_bytes, dev->threads, cfg->quick ? 1 : 3);

            /* A sweep is tens of ms: a longer window gives a stable median across enough runs. */
            bench_timing t;
            st =
                bench_time(cfg, cfg->quick ? cfg->min_time : 5 * cfg->min_time, sweep_once, &c, &t);
            if (st != TRIT_OK) {
                bench_failed(cfg, dev, "sweep", shape, variant, "trit_ternary_gemv", st);
                continue;
            }
            bench_row row;
            bench_row_init(&row, dev, "sweep", shape, variant);
            row.time_us = t.median_s * 1e6;
            row.min_us = t.min_s * 1e6;
            row.runs = t.runs;
            row.bytes = bytes;
            row.flops = flops;
            bench_row_finish(&row, dev);
            if (bw_now > 0)
                snprintf(row.note, sizeof(row.note),
                         "read bandwidth measured just before: %.2f GB/s (%.1f%% of it)", bw_now,
                         100.0 * row.gbs / bw_now);
            bench_row_emit(cfg, &row);
            fprintf(cfg->table, "# sweep %s: %.2f ms per sweep (min %.2f), %.1f%% of %s bandwidth",
                    variant, row.time_us * 1e-3, row.min_us * 1e-3, row.pct_peak, dev->peak_kind);
            if (bw_now > 0)
                fprintf(cfg->table, "; %.1f%% of the %.2f GB/s measured just before",
                        100.0 * row.gbs / bw_now, bw_now);
            fputc('\n', cfg->table);
        }
    }

done:
    if (c.w)
        for (size_t i = 0; i < (size_t)layers * SWEEP_PROJ; i++)
            trit_ternary_free(c.w[i]);
    free(c.w);
    free(codes);
    free(x);
    trit_buffer_free(xb_h);
    trit_buffer_free(xb_f);
    for (int j = 0; j < SWEEP_PROJ; j++)
        trit_buffer_free(yb[j]);
}
