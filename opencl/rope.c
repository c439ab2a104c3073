/*
 * rope.c — host side of the OpenCL RoPE + KV append: one work-group per new token (rope.cl).
 *
 * Per call the token -> (sequence, position) map, the inverse frequencies base^(-2i/rot_dims)
 * (computed in double here, as the CPU plugin does) and the block table go to the device in one
 * buffer created from host memory and released right after the launch (OpenCL defers the
 * release until the kernel has finished).
 *
 * Angles: with cl_khr_fp64 the kernel computes theta and its sin/cos in double; without it (or
 * with the option opencl.rope_fp64=off, which exists so that path can be tested on any device)
 * it gets each inverse frequency as an f32 pair hi + lo and does a float-pair product and range
 * reduction (see rope.cl). Both stay within the f32 tolerance for positions up to 2^24.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl.h"

#define ROPE_WG 64 /* must match rope.cl */

const char *ocl_rope_unsupported(const ocl_device *dev, const trit_op_desc *desc)
{
    if (desc->op != TRIT_OP_ROPE_KV_APPEND)
        return "not a rope_kv_append op";
    int d = desc->head_dim;
    if (d != 64 && d != 80 && d != 96 && d != 128 && d != 256)
        return "head dim must be 64, 80, 96, 128 or 256";
    if (desc->x_dtype != TRIT_DTYPE_F32 && desc->x_dtype != TRIT_DTYPE_F16)
        return "q must be f32 or f16";
    if (desc->y_dtype != TRIT_DTYPE_F32 && desc->y_dtype != TRIT_DTYPE_F16)
        return "k_new must be f32 or f16";
    if (desc->kv_dtype != TRIT_DTYPE_F32 && desc->kv_dtype != TRIT_DTYPE_F16)
        return "the KV cache must be f32 or f16";
    if (dev->max_wg < ROPE_WG)
        return "the device's work-groups are smaller than the 64 work-items RoPE needs";
    return NULL;
}

/* Whether the double-precision angle path is wanted: the option opencl.rope_fp64 ("off" / "0"
 * forces the f32 path); the kernel still falls back when the device lacks cl_khr_fp64. */
static int rope_fp64_wanted(const ocl_device *dev)
{
    const trit_plugin_host *h = dev->host;
    const char *v = h && h->get_option ? h->get_option(h->user, "rope_fp64") : NULL;
    return !(v && (strcmp(v, "off") == 0 || strcmp(v, "0") == 0 || strcmp(v, "false") == 0));
}

static cl_long elem_offset(const trit_plugin_tensor *t)
{
    return (cl_long)(t->offset / (t->dtype == TRIT_DTYPE_F16 ? 2u : 4u));
}

trit_status ocl_rope_kv_append(ocl_stream *s, const trit_plugin_rope_args *args)
{
    ocl_device *dev = s->dev;
    const trit_plugin_rope_args *a = args;
    const int64_t total = a->q_starts[a->n_seqs];
    if (total == 0)
        return TRIT_OK;
    if (a->head_dim > 256 || a->rot_dims > a->head_dim || a->rot_dims % 2) {
        ocl_set_error(dev, "rope_kv_append: head dim %d / rot_dims %d out of range",
                      (int)a->head_dim, (int)a->rot_dims);
        return TRIT_ERROR_UNSUPPORTED;
    }
    const int fp64 = rope_fp64_wanted(dev);
    cl_kernel kernel;
    trit_status st = ocl_kernel_get(dev, "rope", fp64 ? "-DROPE_FP64=1" : "-DROPE_FP64=0",
                                    "rope_append", &kernel);
    if (st != TRIT_OK)
        return st;

    /* meta: tok_seq [T] | tok_pos [T] | inverse frequencies, per pair a double then an f32 hi, lo
     * (8-byte aligned) | block table */
    const int half = a->rot_dims / 2;
    const uint64_t table_n =
        a->cache.block_table ? (uint64_t)a->n_seqs * a->cache.max_blocks_per_seq : 0;
    const uint64_t freq_at = ((uint64_t)total * 2 + 1) & ~(uint64_t)1;
    const uint64_t table_at = freq_at + 4 * (uint64_t)half;
    const uint64_t meta_n = table_at + table_n + 1;
    if (total > INT32_MAX / 2 || meta_n > INT32_MAX || meta_n * 4 > dev->max_alloc) {
        ocl_set_error(dev, "rope_kv_append: %lld tokens are too many for one launch",
                      (long long)total);
        return TRIT_ERROR_UNSUPPORTED;
    }
    int32_t *meta = calloc((size_t)meta_n, sizeof(int32_t));
    if (!meta) {
        ocl_set_error(dev, "rope_kv_append: out of host memory for the token map");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    for (uint32_t q = 0; q < a->n_seqs; q++)
        for (int64_t t = a->q_starts[q]; t < a->q_starts[q + 1]; t++) {
            meta[t] = (int32_t)q;
            meta[total + t] = a->start_pos[q] + (int32_t)(t - a->q_starts[q]);
        }
    const double log_base = log((double)a->base);
    for (int i = 0; i < half; i++) {
        /* Both forms: the kernel's choice depends on what the device compiler offers. */
        double f = exp(-(2.0 * i / a->rot_dims) * log_base);
        float hi = (float)f, lo = (float)(f - (double)hi);
        int32_t *slot = meta + freq_at + 4 * (uint64_t)i;
        memcpy(slot, &f, sizeof(f));
        memcpy(slot + 2, &hi, sizeof(hi));
        memcpy(slot + 3, &lo, sizeof(lo));
    }
    if (table_n)
        memcpy(meta + table_at, a->cache.block_table, (size_t)table_n * sizeof(int32_t));

    cl_int err;
    cl_mem meta_mem = clCreateBuffer(dev->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                     (size_t)meta_n * sizeof(int32_t), meta, &err);
    free(meta);
    if (err != CL_SUCCESS)
        return ocl_fail(dev, err, "rope_kv_append: clCreateBuffer (token map, %llu bytes)",
                        (unsigned long long)meta_n * 4);

    const trit_plugin_tensor *q = &a->q, *kn = &a->k_new, *vn = &a->v_new;
    const trit_plugin_tensor *kc = &a->cache.k, *vc = &a->cache.v;
    /* Without q the kernel never touches its argument; any valid buffer will do. */
    cl_mem q_mem = a->has_q ? ocl_tensor_mem(q) : ocl_tensor_mem(kn);
    cl_long q_off = a->has_q ? elem_offset(q) : 0;
    cl_long q_s0 = a->has_q ? q->strides[0] : 0, q_s1 = a->has_q ? q->strides[1] : 0;
    cl_int q_f16 = a->has_q && q->dtype == TRIT_DTYPE_F16, has_q = a->has_q != 0;
    cl_mem kn_mem = ocl_tensor_mem(kn), vn_mem = ocl_tensor_mem(vn);
    cl_long kn_off = elem_offset(kn), kn_s0 = kn->strides[0], kn_s1 = kn->strides[1];
    cl_long vn_off = elem_offset(vn), vn_s0 = vn->strides[0], vn_s1 = vn->strides[1];
    cl_int kn_f16 = kn->dtype == TRIT_DTYPE_F16, vn_f16 = vn->dtype == TRIT_DTYPE_F16;
    cl_mem kc_mem = ocl_tensor_mem(kc), vc_mem = ocl_tensor_mem(vc);
    cl_long k_off = elem_offset(kc), k_s0 = kc->strides[0], k_s1 = kc->strides[1],
            k_s2 = kc->strides[2];
    cl_long v_off = elem_offset(vc), v_s0 = vc->strides[0], v_s1 = vc->strides[1],
            v_s2 = vc->strides[2];
    cl_int k_f16 = kc->dtype == TRIT_DTYPE_F16, v_f16 = vc->dtype == TRIT_DTYPE_F16;
    cl_int block_size = a->cache.block_table ? (cl_int)kc->shape[1] : 0;
    cl_int max_blocks = a->cache.block_table ? a->cache.max_blocks_per_seq : 0;
    cl_int n_tokens = (cl_int)total, c_freq_at = (cl_int)freq_at, c_table_at = (cl_int)table_at;
    cl_int n_heads = a->n_heads, n_kv_heads = a->n_kv_heads, d = a->head_dim;
    cl_int rot = a->rot_dims, neox = a->mode == TRIT_ROPE_NEOX;

    size_t local = ROPE_WG, global = (size_t)total * ROPE_WG;
    st = OCL_ENQUEUE(s, "rope_kv_append", kernel, 1, &global, &local, OCL_ARG(q_mem),
                     OCL_ARG(q_off), OCL_ARG(q_s0), OCL_ARG(q_s1), OCL_ARG(q_f16), OCL_ARG(has_q),
                     OCL_ARG(kn_mem), OCL_ARG(kn_off), OCL_ARG(kn_s0), OCL_ARG(kn_s1),
                     OCL_ARG(kn_f16), OCL_ARG(vn_mem), OCL_ARG(vn_off), OCL_ARG(vn_s0),
                     OCL_ARG(vn_s1), OCL_ARG(vn_f16), OCL_ARG(kc_mem), OCL_ARG(k_off),
                     OCL_ARG(k_s0), OCL_ARG(k_s1), OCL_ARG(k_s2), OCL_ARG(k_f16), OCL_ARG(vc_mem),
                     OCL_ARG(v_off), OCL_ARG(v_s0), OCL_ARG(v_s1), OCL_ARG(v_s2), OCL_ARG(v_f16),
                     OCL_ARG(block_size), OCL_ARG(max_blocks), OCL_ARG(meta_mem), OCL_ARG(n_tokens),
                     OCL_ARG(c_freq_at), OCL_ARG(c_table_at), OCL_ARG(n_heads), OCL_ARG(n_kv_heads),
                     OCL_ARG(d), OCL_ARG(rot), OCL_ARG(neox));
    clReleaseMemObject(meta_mem);
    return st;
}
