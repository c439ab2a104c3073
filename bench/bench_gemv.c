/*
 * bench_gemv.c — fused ternary GEMV at BitNet b1.58 2B shapes against OpenBLAS fp32, and the cold
 * sweep over every projection of a 30-layer BitNet-2B-shaped model.
 *
 * Bytes a GEMV must move: the 2-bit codes (M * ceil(K/4) per matrix) + its scale + x (N*K f32) +
 * y (N*M f32). Weights dominate, so the floor is M*K/4 / bandwidth: for 6912x2560 that is 4.4 MB,
 * about 150 us at 30 GB/s. The OpenBLAS baseline streams the same matrix as dense f32, 16x the
 * bytes. Only the sweep is cold: a single matrix of these shapes fits in a 32 MiB L3, so the
 * per-shape rows (median of warm runs) measure cache-resident speed and can pass "100 %" of DRAM.
 * The sweep's ~520 MB of weights cannot stay in any cache, which makes it the honest number.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "bench.h"

enum { GEMV_MAX_MATS = 2 };

static const float W_SCALE = 0.5f; /* per-tensor scale; a power of two keeps references exact */

typedef struct gemv_case {
    trit_stream *stream;
    const trit_ternary *w[GEMV_MAX_MATS];
    int gated;
    trit_tensor x, y;
    trit_gemv_params params;
} gemv_case;

static trit_status gemv_once(void *p)
{
    gemv_case *c = p;
    trit_status st =
        c->gated ? trit_ternary_gemv_gated(c->stream, c->w[0], c->w[1], &c->x, &c->y, &c->params)
                 : trit_ternary_gemv(c->stream, c->w[0], &c->x, &c->y, &c->params);
    return st == TRIT_OK ? trit_stream_sync(c->stream) : st;
}

/* The dense baseline: y[N, M] = x[N, K] · W^T per matrix, then relu²(gate) ⊙ up when gated. */
typedef struct blas_case {
    int64_t m, k, n;
    int gated;
    const float *w[GEMV_MAX_MATS];
    const float *x;
    float *y[GEMV_MAX_MATS];
} blas_case;

static void blas_run(const blas_case *b)
{
    for (int i = 0; i < (b->gated ? 2 : 1); i++) {
        if (b->n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)b->m, (int)b->k, 1.f, b->w[i], (int)b->k,
                        b->x, 1, 0.f, b->y[i], 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b->n, (int)b->m, (int)b->k,
                        1.f, b->x, (int)b->k, b->w[i], (int)b->k, 0.f, b->y[i], (int)b->m);
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
}

static trit_status blas_once(void *p)
{
    blas_run(p);
    return TRIT_OK;
}

/* x quantized the way TRIT_GEMV_INT8 specifies (per token: a = max|x|, s = 127 / a, q = rint(x s)
 * clamped), kept as floats; `dequant[n]` = a / 127. Integer-valued W·q sums stay below 2^24 for
 * these shapes, so OpenBLAS computes them exactly and the reference is exact up to the rescale. */
static void quantize_rows(const float *x, int64_t n, int64_t k, float *q, float *dequant)
{
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * k;
        float a = 0.f;
        for (int64_t i = 0; i < k; i++)
            a = fabsf(xr[i]) > a ? fabsf(xr[i]) : a;
        const float s = a > 0.f ? 127.f / a : 0.f;
        for (int64_t i = 0; i < k; i++) {
            float v = rintf(xr[i] * s);
            q[t * k + i] = v > 127.f ? 127.f : v < -127.f ? -127.f : v;
        }
        dequant[t] = a / 127.f;
    }
}

/* Reference output of one path, computed with OpenBLAS on the dense weights (untimed). */
static void gemv_reference(const blas_case *shape, trit_gemv_path path, float *out,
                           float *scratch_q, float *scratch_y)
{
    blas_case b = *shape;
    b.y[0] = out;
    b.y[1] = scratch_y;
    if (path == TRIT_GEMV_FLOAT) {
        blas_run(&b);
        return;
    }
    float dequant[TRIT_GEMV_MAX_N];
    quantize_rows(shape->x, shape->n, shape->k, scratch_q, dequant);
    b.x = scratch_q;
    b.gated = 0;
    for (int i = 0; i < (shape->gated ? 2 : 1); i++) {
        b.w[0] = shape->w[i];
        b.y[0] = i == 0 ? out : scratch_y;
        blas_run(&b);
        for (int64_t t = 0; t < shape->n; t++)
            for (int64_t m = 0; m < shape->m; m++)
                b.y[0][t * shape->m + m] *= dequant[t];
    }
    if (shape->gated) {
        for (int64_t i = 0; i < shape->n * shape->m; i++) {
            float r = out[i] > 0.f ? out[i] : 0.f;
            out[i] = r * r * scratch_y[i];
        }
    }
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

typedef struct gemv_shape {
    const char *role;
    int64_t m, k;
    int gated;
} gemv_shape;

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
    uint8_t *codes = malloc((size_t)(M * (int64_t)row_bytes));
    float *dense[GEMV_MAX_MATS] = {0};
    trit_ternary *tw[GEMV_MAX_MATS] = {0};
    float *x = malloc((size_t)(TRIT_GEMV_MAX_N * K) * sizeof(float));
    float *xq = malloc((size_t)(TRIT_GEMV_MAX_N * K) * sizeof(float));
    float *y_ref[2] = {malloc((size_t)(TRIT_GEMV_MAX_N * M) * sizeof(float)),
                       malloc((size_t)(TRIT_GEMV_MAX_N * M) * sizeof(float))};
    float *y_dev = malloc((size_t)(TRIT_GEMV_MAX_N * M) * sizeof(float));
    float *y_tmp[GEMV_MAX_MATS] = {malloc((size_t)(TRIT_GEMV_MAX_N * M) * sizeof(float)),
                                   malloc((size_t)(TRIT_GEMV_MAX_N * M) * sizeof(float))};
    int oom = !codes || !x || !xq || !y_ref[0] || !y_ref[1] || !y_dev || !y_tmp[0] || !y_tmp[1];
    trit_status st = TRIT_OK;
    for (int i = 0; i < mats && !oom && st == TRIT_OK; i++) {
        dense[i] = malloc((size_t)(M * K) * sizeof(float));
        if (!dense[i]) {
            oom = 1;
            break;
        }
        bench_fill_packed2(&rng, codes, M, K);
        st = upload_ternary(dev->device, codes, M, K, &tw[i]);
        bench_unpack_f32(codes, M, K, W_SCALE, dense[i]);
    }
    if (oom || st != TRIT_OK) {
        bench_failed(cfg, dev, op, base_shape, "", oom ? "host allocation" : "trit_ternary_upload",
                     oom ? TRIT_ERROR_OUT_OF_MEMORY : st);
        goto done;
    }

    for (int ni = 0; ni < n_ns; ni++) {
        const int64_t N = ns[ni];
        char shape[64];
        snprintf(shape, sizeof(shape), "%s N=%lld", base_shape, (long long)N);
        bench_fill_floats(&rng, x, (size_t)(N * K));

        trit_buffer *xb = NULL, *yb = NULL;
        gemv_case c = {.stream = dev->stream, .gated = sh->gated};
        c.w[0] = tw[0];
        c.w[1] = tw[1];
        int64_t xs[2] = {N, K}, ys[2] = {N, M};
        st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 2, xs, x, &xb, &c.x);
        if (st == TRIT_OK)
            st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 2, ys, NULL, &yb, &c.y);
        if (st != TRIT_OK) {
            bench_failed(cfg, dev, op, shape, "", "allocating x / y", st);
            trit_buffer_free(xb);
            continue;
        }

        blas_case b = {.m = M, .k = K, .n = N, .gated = sh->gated, .x = x};
        b.w[0] = dense[0];
        b.w[1] = dense[1];
        b.y[0] = y_tmp[0];
        b.y[1] = y_tmp[1];
        bench_timing bt = {0};
        if (dev->host_baselines)
            bench_time(cfg, cfg->min_time, blas_once, &b, &bt);
        gemv_reference(&b, TRIT_GEMV_FLOAT, y_ref[TRIT_GEMV_FLOAT], xq, y_tmp[1]);
        gemv_reference(&b, TRIT_GEMV_INT8, y_ref[TRIT_GEMV_INT8], xq, y_tmp[1]);
        /* OpenBLAS's worker threads spin for ~0.1 s after their last job; let them go to sleep
         * before timing trit, or they take one of the two cores away from it. */
        bench_sleep(0.15);

        for (int path = TRIT_GEMV_FLOAT; path <= TRIT_GEMV_INT8; path++) {
            const char *variant = path == TRIT_GEMV_FLOAT ? "f32 float" : "f32 int8";
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
            st = bench_time(cfg, cfg->min_time, gemv_once, &c, &t);
            if (st == TRIT_OK)
                st = trit_buffer_download(dev->stream, yb, 0, y_dev,
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
            row.bytes = gemv_bytes(mats, M, K, N);
            row.flops = 2.0 * mats * (double)M * (double)K * (double)N;
            if (bt.runs) {
                snprintf(row.baseline, sizeof(row.baseline), "openblas %s",
                         N == 1 ? "sgemv" : "sgemm");
                row.base_us = bt.median_s * 1e6;
            }
            row.check_err = bench_rel_error(y_dev, y_ref[path], (size_t)(N * M));
            /* Float path: only the summation order differs from OpenBLAS. Int8 path: the
             * integer sums are exact on both sides, only the final rescale may round apart. */
            row.check_tol = path == TRIT_GEMV_FLOAT ? 2e-5 : 1e-5;
            if (!(row.check_err <= row.check_tol)) {
                row.state = BENCH_ROW_MISMATCH;
                snprintf(row.note, sizeof(row.note),
                         "relative error %.3g against OpenBLAS on the same weights (tolerance %g)",
                         row.check_err, row.check_tol);
            }
            bench_row_finish(&row, dev);
            bench_row_emit(cfg, &row);
        }
        trit_buffer_free(xb);
        trit_buffer_free(yb);
    }

done:
    for (int i = 0; i < GEMV_MAX_MATS; i++) {
        trit_ternary_free(tw[i]);
        free(dense[i]);
        free(y_tmp[i]);
    }
    free(codes);
    free(x);
    free(xq);
    free(y_ref[0]);
    free(y_ref[1]);
    free(y_dev);
}

void bench_gemv_run(const bench_config *cfg, bench_device *dev)
{
    /* BitNet b1.58 2B: hidden 2560, 20 query / 5 KV heads of 128, FFN 6912; plus a 7-8B-class
     * FFN matrix (4096x14336) that is bigger than the L3. */
    static const gemv_shape full[] = {
        {"q/o", 2560, 2560, 0},  {"k/v", 640, 2560, 0},      {"gate/up", 6912, 2560, 0},
        {"down", 2560, 6912, 0}, {"gate+up", 6912, 2560, 1}, {"ffn-8b", 4096, 14336, 0},
    };
    static const gemv_shape quick[] = {
        {"q/o", 2560, 2560, 0},
        {"gate+up", 6912, 2560, 1},
    };
    static const int ns_full[] = {1, 4, 16};
    static const int ns_quick[] = {1, 4};
    const gemv_shape *shapes = cfg->quick ? quick : full;
    const int n_shapes = cfg->quick ? 2 : (int)(sizeof(full) / sizeof(full[0]));
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
