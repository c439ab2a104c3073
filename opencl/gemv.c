/*
 * gemv.c — host glue of the OpenCL fused ternary GEMV (kernels and their tiling: gemv.cl).
 *
 * Layout chosen at ternary_create: the canonical 2-bit codes, row-major, each row padded with
 * w = 0 codes to a multiple of 16 bytes (64 weights). Every lane of gemv_main then reads whole
 * aligned 16-byte chunks, neighbouring lanes neighbouring chunks of one row, which is the
 * coalesced pattern on GPUs and a unit-stride stream on CPUs; the canonical bit order (weight i
 * of a 32-bit word at bits 2i) already decodes with shifts on a little-endian device.
 *
 * Programs are specialised at build time on NT (columns rounded up to 1, 2, 4, 8 or 16, so the
 * per-column accumulators stay in registers), the numeric path and the gated pair; the rest
 * (dtypes, scales, epilogue) are uniform run-time arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl.h"

typedef struct ocl_ternary {
    cl_mem codes;
    cl_mem scales;
    int64_t rows, cols;
    int pitch; /* 16-byte chunks per row */
    int nb;    /* scale blocks per row (ceil(cols / 256)) */
    trit_scale_kind scale_kind;
} ocl_ternary;

enum { GEMV_LANES = 32, GEMV_ROWS = 4, PREP_WG_MAX = 256 };

const char *ocl_gemv_unsupported(const ocl_device *dev, const trit_op_desc *desc)
{
    (void)dev;
    if (desc->x_dtype != TRIT_DTYPE_F32 && desc->x_dtype != TRIT_DTYPE_F16)
        return "x must be f32 or f16";
    if (desc->y_dtype != TRIT_DTYPE_F32 && desc->y_dtype != TRIT_DTYPE_F16)
        return "y must be f32 or f16";
    if (desc->n < 1 || desc->n > TRIT_GEMV_MAX_N)
        return "N must be 1..16";
    if (desc->path != TRIT_GEMV_FLOAT && desc->path != TRIT_GEMV_INT8)
        return "unknown numeric path";
    return NULL;
}

trit_status ocl_ternary_create(ocl_device *dev, const trit_ternary_host *w, void **out_ternary,
                               uint64_t *out_device_bytes)
{
    if (!dev->little_endian) {
        ocl_set_error(dev, "ternary matrices need a little-endian device");
        return TRIT_ERROR_UNSUPPORTED;
    }
    if (w->cols > (int64_t)1 << 24 || w->rows > INT32_MAX) {
        ocl_set_error(dev,
                      "matrix of %lld x %lld is too large for the OpenCL kernels "
                      "(rows < 2^31, cols <= 2^24 keep the int32 accumulators exact)",
                      (long long)w->rows, (long long)w->cols);
        return TRIT_ERROR_UNSUPPORTED;
    }
    const uint64_t pitch = (w->row_bytes + 15) / 16;
    const uint64_t bytes = (uint64_t)w->rows * pitch * 16;
    ocl_ternary *t = calloc(1, sizeof(*t));
    uint8_t *host = bytes <= SIZE_MAX ? malloc((size_t)bytes) : NULL;
    if (!t || !host) {
        free(t);
        free(host);
        ocl_set_error(dev, "out of host memory repacking a %lld x %lld matrix", (long long)w->rows,
                      (long long)w->cols);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    memset(host, 0x55, (size_t)bytes); /* code 1 (w = 0) in every padding slot */
    for (int64_t r = 0; r < w->rows; r++)
        memcpy(host + (uint64_t)r * pitch * 16, w->codes + (uint64_t)r * w->row_bytes,
               (size_t)w->row_bytes);
    trit_status st = ocl_buffer_create_from(dev, bytes, host, &t->codes);
    free(host);
    if (st == TRIT_OK)
        st = ocl_buffer_create_from(dev, w->scale_count * sizeof(float), w->scales, &t->scales);
    if (st != TRIT_OK) {
        if (t->codes)
            clReleaseMemObject(t->codes);
        free(t);
        return st;
    }
    t->rows = w->rows;
    t->cols = w->cols;
    t->pitch = (int)pitch;
    t->nb = (int)((w->cols + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K);
    t->scale_kind = w->scale_kind;
    *out_ternary = t;
    *out_device_bytes = bytes + w->scale_count * sizeof(float);
    return TRIT_OK;
}

void ocl_ternary_destroy(ocl_device *dev, void *ternary)
{
    (void)dev;
    ocl_ternary *t = ternary;
    if (!t)
        return;
    clReleaseMemObject(t->codes);
    clReleaseMemObject(t->scales);
    free(t);
}

/* Element offset of a tensor, or -1 when its byte offset is not a multiple of the element. */
static int64_t elem_offset(const trit_plugin_tensor *t, size_t elem)
{
    return t->offset % elem ? -1 : (int64_t)(t->offset / elem);
}

trit_status ocl_gemv(ocl_stream *s, const trit_plugin_gemv_args *a)
{
    ocl_device *dev = s->dev;
    const ocl_ternary *w = a->w, *wu = a->w_up;
    const int int8 = a->path == TRIT_GEMV_INT8, gated = wu != NULL;
    const int n = (int)a->n, k = (int)a->k, m = (int)a->m;
    int nt = 1;
    while (nt < n)
        nt *= 2;

    /* Work-group shape: LANES lanes per row (capped by the device), ROWS rows. */
    int lanes = GEMV_LANES, rows = GEMV_ROWS;
    while ((size_t)(lanes * rows) > dev->max_wg && rows > 1)
        rows /= 2;
    while ((size_t)(lanes * rows) > dev->max_wg && lanes > 1)
        lanes /= 2;
    if (lanes < nt) {
        ocl_set_error(dev, "gemv: work-groups of %zu work-items are too small for %d columns",
                      dev->max_wg, n);
        return TRIT_ERROR_UNSUPPORTED;
    }
    char opts[128];
    /* The integer dot builtins are declared for OpenCL C 3.0 only. */
    const char *std = dev->has_int_dot && dev->cl_major >= 3 ? " -cl-std=CL3.0" : "";
    snprintf(opts, sizeof(opts), "-DNT=%d -DINT8=%d -DGATED=%d -DLANES=%d -DROWS=%d%s", nt, int8,
             gated, lanes, rows, std);
    cl_kernel prep, main_k;
    trit_status st = ocl_kernel_get(dev, "gemv", opts, "gemv_prep", &prep);
    if (st == TRIT_OK)
        st = ocl_kernel_get(dev, "gemv", opts, "gemv_main", &main_k);
    if (st != TRIT_OK)
        return st;

    const size_t xsz = a->x.dtype == TRIT_DTYPE_F16 ? 2 : 4;
    const size_t ysz = a->y.dtype == TRIT_DTYPE_F16 ? 2 : 4;
    const int64_t x_off = elem_offset(&a->x, xsz), y_off = elem_offset(&a->y, ysz);
    const int64_t g_off = a->has_rmsnorm ? elem_offset(&a->rmsnorm_weight, 4) : 0;
    const int64_t b_off = a->has_bias ? elem_offset(&a->bias, 4) : 0;
    const int64_t r_off = a->has_residual ? elem_offset(&a->residual, ysz) : 0;
    const int64_t c_off = a->has_accumulators ? elem_offset(&a->accumulators, 4) : 0;
    if (x_off < 0 || y_off < 0 || g_off < 0 || b_off < 0 || r_off < 0 || c_off < 0) {
        ocl_set_error(dev, "gemv: a tensor's byte offset is not a multiple of its element size");
        return TRIT_ERROR_UNSUPPORTED;
    }

    /* Scratch: x' (f32) or q (int8) per column, kp wide, then the column scales (INT8). */
    const int kp = w->pitch * 64;
    const uint64_t xq_bytes = ((uint64_t)n * kp * (int8 ? 1 : 4) + 255) / 256 * 256;
    cl_mem scratch;
    if ((st = ocl_stream_scratch(s, xq_bytes + (uint64_t)n * sizeof(float), &scratch)) != TRIT_OK)
        return st;
    const cl_ulong cs_off = xq_bytes; /* column scales after x' / q */

    size_t p = 1;
    while (p * 2 <= PREP_WG_MAX && p * 2 <= dev->max_wg && p * 2 <= (size_t)k)
        p *= 2;
    if (p < 32 && dev->max_wg >= 32)
        p = 32;
    const cl_mem x_mem = ocl_tensor_mem(&a->x);
    const cl_mem g_mem = a->has_rmsnorm ? ocl_tensor_mem(&a->rmsnorm_weight) : NULL;
    const cl_ulong x_off_u = (cl_ulong)x_off, x_stride = (cl_ulong)a->x.strides[0],
                   g_off_u = (cl_ulong)g_off;
    const cl_int x_f16 = a->x.dtype == TRIT_DTYPE_F16, k_i = k, kp_i = kp, has_rms = a->has_rmsnorm;
    const float eps = a->rmsnorm_eps;
    size_t global = (size_t)n * p;
    st = OCL_ENQUEUE(s, "gemv prologue", prep, 1, &global, &p, OCL_ARG(x_mem), OCL_ARG(x_off_u),
                     OCL_ARG(x_stride), OCL_ARG(x_f16), OCL_ARG(k_i), OCL_ARG(kp_i),
                     OCL_ARG(has_rms), OCL_ARG(g_mem), OCL_ARG(g_off_u), OCL_ARG(eps),
                     OCL_ARG(scratch), OCL_ARG(cs_off));

    if (st == TRIT_OK) {
        const cl_mem u_codes = gated ? wu->codes : NULL, u_scales = gated ? wu->scales : NULL;
        const cl_int wkind = w->scale_kind, ukind = gated ? wu->scale_kind : 0, nb = w->nb,
                     pitch = w->pitch, m_i = m, n_i = n;
        const cl_mem b_mem = a->has_bias ? ocl_tensor_mem(&a->bias) : NULL;
        const cl_mem r_mem = a->has_residual ? ocl_tensor_mem(&a->residual) : NULL;
        const cl_mem y_mem = ocl_tensor_mem(&a->y);
        const cl_mem c_mem = a->has_accumulators ? ocl_tensor_mem(&a->accumulators) : NULL;
        const cl_ulong b_off_u = (cl_ulong)b_off, r_off_u = (cl_ulong)r_off,
                       r_stride = a->has_residual ? (cl_ulong)a->residual.strides[0] : 0,
                       y_off_u = (cl_ulong)y_off, y_stride = (cl_ulong)a->y.strides[0],
                       c_off_u = (cl_ulong)c_off,
                       c_stride = a->has_accumulators ? (cl_ulong)a->accumulators.strides[0] : 0;
        const cl_int has_bias = a->has_bias, has_res = a->has_residual, act = (cl_int)a->act,
                     y_f16 = a->y.dtype == TRIT_DTYPE_F16, has_acc = a->has_accumulators;
        size_t local = (size_t)(lanes * rows);
        size_t groups = ((size_t)m + (size_t)rows - 1) / (size_t)rows;
        size_t gsize = groups * local;
        st = OCL_ENQUEUE(s, "gemv", main_k, 1, &gsize, &local, OCL_ARG(w->codes),
                         OCL_ARG(w->scales), OCL_ARG(wkind), OCL_ARG(u_codes), OCL_ARG(u_scales),
                         OCL_ARG(ukind), OCL_ARG(nb), OCL_ARG(pitch), OCL_ARG(m_i), OCL_ARG(n_i),
                         OCL_ARG(kp_i), OCL_ARG(scratch), OCL_ARG(cs_off), OCL_ARG(b_mem),
                         OCL_ARG(b_off_u), OCL_ARG(has_bias), OCL_ARG(r_mem), OCL_ARG(r_off_u),
                         OCL_ARG(r_stride), OCL_ARG(has_res), OCL_ARG(act), OCL_ARG(y_mem),
                         OCL_ARG(y_off_u), OCL_ARG(y_stride), OCL_ARG(y_f16), OCL_ARG(c_mem),
                         OCL_ARG(c_off_u), OCL_ARG(c_stride), OCL_ARG(has_acc));
    }
    return st;
}
