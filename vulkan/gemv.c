/*
 * gemv.c — fused ternary GEMV on Vulkan: upload (repack), support query, dispatch.
 *
 * Two dispatches per call: gemv_prep.comp (one workgroup per token: RMSNorm, INT8 quantization,
 * x' or q into scratch) and gemv.comp (a workgroup of 64 owns 64 / LANES rows, LANES lanes a row,
 * all tokens at once, epilogue fused). Tiling and bytes-moved notes are at the top of each shader.
 *
 * Resident layout: canonical 2-bit codes, row-major, each row padded with code 1 (w = 0) to whole
 * 64-weight chunks so a lane reads one aligned uvec4 per step and the lanes of a row read
 * contiguous bytes. A matrix larger than maxStorageBufferRange (or maxMemoryAllocationSize) is
 * split by rows into parts, each its own buffer and dispatch, so no matrix is refused for its size.
 *
 * Shader variants follow the device's features (vk.h): subgroup shuffles for the reductions
 * ("sg"), 16-bit storage for f16 x / y / residual ("h"), 8-bit storage for the q bytes ("i8"),
 * OpSDotKHR for the INT8 dot products ("dot"), fp64 for RMSNorm ("f64"; without it, float-float
 * arithmetic that is just as exact, see gemv_prep.comp). Each pair used is logged once per device
 * at DEBUG level ("vulkan: gemv uses ..."), which tests/test_vulkan.cpp checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk.h"

enum { CHUNK = 64 /* weights per uvec4 of codes */ };

typedef struct part {
    vk_buffer *codes;
    vk_buffer *scales; /* NULL for tensor scales */
    int64_t row0, rows;
} part;

typedef struct vk_ternary {
    int64_t rows, cols, chunks, blocks;
    trit_scale_kind scale_kind;
    float tensor_scale;
    part *parts;
    uint32_t n_parts;
    uint64_t bytes;
} vk_ternary;

typedef struct prep_push {
    uint32_t k, kp, n, x_first, x_stride, x_f16, has_rms;
    float eps;
    uint32_t g_first, int8;
} prep_push;

typedef struct gemv_push {
    uint32_t rows, row0, chunks, kp, n, flags, act, scale_kind;
    float ts_g, ts_u;
    uint32_t y_first, y_stride, res_first, res_stride, bias_first, acc_first, acc_stride;
} gemv_push;

/* Appends "_<suffix>" to `name` when `on`. */
static void add_suffix(char *name, size_t size, int on, const char *suffix)
{
    if (on) {
        const size_t len = strlen(name);
        snprintf(name + len, size - len, "_%s", suffix);
    }
}

/* The feature bits of a (gemv, prep) variant pair, for logging each pair once per device. */
static void log_variants(vk_device *dev, const char *gemv, const char *prep, uint32_t key)
{
    const uint64_t bit = (uint64_t)1 << (key & 63);
    if (__atomic_fetch_or(&dev->gemv_variants_logged, bit, __ATOMIC_RELAXED) & bit)
        return;
    vk_log(dev, TRIT_LOG_DEBUG, "vulkan: gemv uses %s + %s", gemv, prep);
}

const char *vk_gemv_unsupported(const vk_device *dev, const trit_op_desc *desc)
{
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
    (void)dev; /* every device runs every GEMV: without fp64, RMSNorm is float-float */
    return NULL;
}

void vk_ternary_destroy(vk_device *dev, void *ternary)
{
    vk_ternary *t = ternary;
    if (!t)
        return;
    for (uint32_t i = 0; i < t->n_parts; i++) {
        vk_buffer_destroy(dev, t->parts[i].codes);
        vk_buffer_destroy(dev, t->parts[i].scales);
    }
    free(t->parts);
    free(t);
}

trit_status vk_ternary_create(vk_device *dev, const trit_ternary_host *w, void **out_ternary,
                              uint64_t *out_device_bytes)
{
    const int64_t rows = w->rows, cols = w->cols;
    const int64_t chunks = (cols + CHUNK - 1) / CHUNK;
    const int64_t blocks = (cols + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K;
    const int64_t words = chunks * 4;
    const uint64_t row_bytes = (uint64_t)chunks * 16;
    uint64_t limit = dev->max_range < dev->max_alloc ? dev->max_range : dev->max_alloc;
    if (row_bytes > limit || chunks > UINT32_MAX / 64) {
        vk_set_error(dev, "ternary upload: one row of %lld weights exceeds maxStorageBufferRange",
                     (long long)cols);
        return TRIT_ERROR_UNSUPPORTED;
    }
    int64_t per_part = (int64_t)(limit / row_bytes);
    if (per_part > (int64_t)(UINT32_MAX / 2))
        per_part = UINT32_MAX / 2;
    vk_ternary *t = calloc(1, sizeof(*t));
    if (!t) {
        vk_set_error(dev, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    t->rows = rows;
    t->cols = cols;
    t->chunks = chunks;
    t->blocks = blocks;
    t->scale_kind = w->scale_kind;
    t->tensor_scale = w->scales ? w->scales[0] : 1.0f;
    t->n_parts = (uint32_t)((rows + per_part - 1) / per_part);
    t->parts = calloc(t->n_parts, sizeof(part));
    vk_stream *s = NULL;
    trit_status st = t->parts ? vk_stream_create(dev, &s) : TRIT_ERROR_OUT_OF_MEMORY;
    if (!t->parts)
        vk_set_error(dev, "out of host memory");
    uint32_t *host = NULL;
    for (uint32_t pi = 0; pi < t->n_parts && st == TRIT_OK; pi++) {
        part *p = &t->parts[pi];
        p->row0 = (int64_t)pi * per_part;
        p->rows = rows - p->row0 < per_part ? rows - p->row0 : per_part;
        const uint64_t bytes = (uint64_t)p->rows * row_bytes;
        host = malloc((size_t)bytes);
        if (!host) {
            vk_set_error(dev, "ternary upload: out of host memory");
            st = TRIT_ERROR_OUT_OF_MEMORY;
            break;
        }
        for (int64_t r = 0; r < p->rows; r++) {
            const uint8_t *src = w->codes + (uint64_t)(p->row0 + r) * w->row_bytes;
            uint32_t *dst = host + r * words;
            for (int64_t wd = 0; wd < words; wd++) {
                uint32_t v = 0;
                for (int b = 0; b < 4; b++) {
                    const int64_t byte = wd * 4 + b;
                    uint32_t c = 0x55; /* padding: code 1 (w = 0) */
                    if (byte * 4 < cols) {
                        c = src[byte];
                        /* Weights past cols inside the last byte are padding codes already. */
                    }
                    v |= c << (8 * b);
                }
                dst[wd] = v;
            }
        }
        st = vk_buffer_create(dev, bytes, &p->codes);
        if (st == TRIT_OK)
            st = vk_stream_upload(s, p->codes, 0, host, bytes);
        if (st == TRIT_OK && w->scale_kind != TRIT_SCALE_TENSOR) {
            const uint64_t per_row = w->scale_kind == TRIT_SCALE_ROW ? 1 : (uint64_t)blocks;
            const uint64_t sb = (uint64_t)p->rows * per_row * sizeof(float);
            st = vk_buffer_create(dev, sb, &p->scales);
            if (st == TRIT_OK)
                st = vk_stream_upload(s, p->scales, 0, w->scales + (uint64_t)p->row0 * per_row, sb);
            t->bytes += sb;
        }
        t->bytes += bytes;
        free(host); /* uploads copy into staging at enqueue */
        host = NULL;
    }
    if (st == TRIT_OK)
        st = vk_stream_sync(s);
    vk_stream_destroy(s);
    if (st != TRIT_OK) {
        vk_ternary_destroy(dev, t);
        return st;
    }
    if (t->n_parts > 1)
        vk_log(dev, TRIT_LOG_DEBUG, "vulkan: %lld x %lld matrix split into %u buffers",
               (long long)rows, (long long)cols, t->n_parts);
    *out_ternary = t;
    if (out_device_bytes)
        *out_device_bytes = t->bytes;
    return TRIT_OK;
}

static uint32_t row_stride(const trit_plugin_tensor *t)
{
    return t->rank >= 2 ? (uint32_t)t->strides[t->rank - 2] : 0;
}

trit_status vk_gemv(vk_stream *s, const trit_plugin_gemv_args *args)
{
    vk_device *dev = vk_stream_device(s);
    const vk_ternary *w = args->w, *wu = args->w_up;
    const uint32_t n = (uint32_t)args->n;
    const uint32_t kp = (uint32_t)(w->chunks * CHUNK);
    const int int8 = args->path == TRIT_GEMV_INT8;
    trit_status st;

    /* Prologue. */
    vk_binding xs, cf, xb, gb;
    uint32_t x_first, g_first = 0;
    if ((st = vk_stream_scratch(s, (uint64_t)n * kp * (int8 ? 1 : 4), &xs)) != TRIT_OK ||
        (st = vk_stream_scratch(s, (uint64_t)n * 4, &cf)) != TRIT_OK ||
        (st = vk_tensor_binding(dev, &args->x, &xb, &x_first)) != TRIT_OK)
        return st;
    if (args->has_rmsnorm) {
        if ((st = vk_tensor_binding(dev, &args->rmsnorm_weight, &gb, &g_first)) != TRIT_OK)
            return st;
    } else {
        gb = cf;
    }
    if (args->x.dtype == TRIT_DTYPE_F16) {
        /* Packed halves: bind from an even element so word index = element / 2. */
        if (xb.offset % 4) {
            vk_set_error(dev, "gemv: f16 x must start on a 4-byte boundary");
            return TRIT_ERROR_UNSUPPORTED;
        }
    }
    vk_pipeline_desc pd;
    memset(&pd, 0, sizeof(pd));
    char prep_name[32] = "gemv_prep", gemv_name[32] = "gemv";
    add_suffix(prep_name, sizeof(prep_name), dev->f.fp64, "f64");
    add_suffix(prep_name, sizeof(prep_name), dev->f.fp16, "h");
    add_suffix(prep_name, sizeof(prep_name), dev->f.int8, "i8");
    pd.shader = prep_name;
    pd.n_bindings = 4;
    pd.push_bytes = sizeof(prep_push);
    const vk_pipeline *prep;
    if ((st = vk_pipeline_get(dev, &pd, &prep)) != TRIT_OK)
        return st;
    prep_push pp = {(uint32_t)args->k,
                    kp,
                    n,
                    x_first,
                    row_stride(&args->x),
                    args->x.dtype == TRIT_DTYPE_F16,
                    (uint32_t)args->has_rmsnorm,
                    args->rmsnorm_eps,
                    g_first,
                    (uint32_t)int8};
    vk_binding pb[4] = {xb, gb, xs, cf};
    if ((st = vk_dispatch(s, prep, pb, &pp, n, 1, 1)) != TRIT_OK)
        return st;

    /* The rows, part by part. */
    vk_binding yb, bb = cf, rb = cf, ab = cf;
    uint32_t y_first, bias_first = 0, res_first = 0, acc_first = 0;
    if ((st = vk_tensor_binding(dev, &args->y, &yb, &y_first)) != TRIT_OK)
        return st;
    if (args->has_bias && (st = vk_tensor_binding(dev, &args->bias, &bb, &bias_first)) != TRIT_OK)
        return st;
    if (args->has_residual &&
        (st = vk_tensor_binding(dev, &args->residual, &rb, &res_first)) != TRIT_OK)
        return st;
    const int has_acc = args->has_accumulators && int8;
    if (has_acc && (st = vk_tensor_binding(dev, &args->accumulators, &ab, &acc_first)) != TRIT_OK)
        return st;
    memset(&pd, 0, sizeof(pd));
    /* Lanes per row: 16 (256 contiguous bytes of codes a step) unless the rows are short; with
     * subgroups, at most the pinned subgroup size so a row's lanes share a subgroup. */
    uint32_t lanes = 16;
    while (lanes > 1 && (int64_t)lanes / 2 >= w->chunks)
        lanes /= 2;
    const int sg = dev->f.subgroups && dev->subgroup_size <= 64;
    if (sg && lanes > dev->subgroup_size)
        lanes = dev->subgroup_size;
    add_suffix(gemv_name, sizeof(gemv_name), sg, "sg");
    add_suffix(gemv_name, sizeof(gemv_name), dev->f.fp16, "h");
    add_suffix(gemv_name, sizeof(gemv_name), dev->f.int_dot, "dot");
    log_variants(dev, gemv_name, prep_name,
                 (uint32_t)sg | (uint32_t)dev->f.fp16 << 1 | (uint32_t)dev->f.int_dot << 2 |
                     (uint32_t)dev->f.fp64 << 3 | (uint32_t)dev->f.int8 << 4);
    pd.shader = gemv_name;
    pd.spec[0] = n <= 1 ? 1 : n <= 4 ? 4 : n <= 8 ? 8 : 16;
    pd.spec[1] = lanes;
    pd.n_spec = 2;
    pd.subgroup_size = sg ? dev->subgroup_size : 0;
    pd.n_bindings = 10;
    pd.push_bytes = sizeof(gemv_push);
    const vk_pipeline *gp;
    if ((st = vk_pipeline_get(dev, &pd, &gp)) != TRIT_OK)
        return st;
    gemv_push gpc;
    memset(&gpc, 0, sizeof(gpc));
    gpc.chunks = (uint32_t)w->chunks;
    gpc.kp = kp;
    gpc.n = n;
    gpc.flags = (uint32_t)int8 | (wu ? 2u : 0u) | (args->has_bias ? 4u : 0u) |
                (args->has_residual ? 8u : 0u) | (has_acc ? 16u : 0u) |
                (args->y.dtype == TRIT_DTYPE_F16 ? 32u : 0u) |
                (args->has_residual && args->residual.dtype == TRIT_DTYPE_F16 ? 64u : 0u);
    gpc.act = (uint32_t)args->act;
    gpc.scale_kind = (uint32_t)w->scale_kind;
    gpc.ts_g = w->tensor_scale;
    gpc.ts_u = wu ? wu->tensor_scale : 1.0f;
    gpc.y_first = y_first;
    gpc.y_stride = row_stride(&args->y);
    gpc.res_first = res_first;
    gpc.res_stride = args->has_residual ? row_stride(&args->residual) : 0;
    gpc.bias_first = bias_first;
    gpc.acc_first = acc_first;
    gpc.acc_stride = has_acc ? row_stride(&args->accumulators) : 0;
    if (wu && (wu->n_parts != w->n_parts || wu->scale_kind != w->scale_kind)) {
        vk_set_error(dev, "gemv: the gated pair's matrices have different layouts");
        return TRIT_ERROR_UNSUPPORTED;
    }
    for (uint32_t pi = 0; pi < w->n_parts; pi++) {
        const part *p = &w->parts[pi];
        const part *pu = wu ? &wu->parts[pi] : p;
        vk_binding b[10];
        b[0] = vk_buffer_binding(p->codes, 0, 0);
        b[1] = vk_buffer_binding(pu->codes, 0, 0);
        b[2] = p->scales ? vk_buffer_binding(p->scales, 0, 0) : cf;
        b[3] = pu->scales ? vk_buffer_binding(pu->scales, 0, 0) : cf;
        b[4] = xs;
        b[5] = cf;
        b[6] = yb;
        b[7] = bb;
        b[8] = rb;
        b[9] = ab;
        gpc.rows = (uint32_t)p->rows;
        gpc.row0 = (uint32_t)p->row0;
        const uint32_t groups = (gpc.rows + (64 / lanes) - 1) / (64 / lanes);
        const uint32_t maxx = dev->max_wg_count[0] < 65535 ? dev->max_wg_count[0] : 65535;
        const uint32_t gx = groups < maxx ? groups : maxx;
        const uint32_t gy = (groups + gx - 1) / gx;
        if ((st = vk_dispatch(s, gp, b, &gpc, gx, gy, 1)) != TRIT_OK)
            return st;
    }
    return TRIT_OK;
}
