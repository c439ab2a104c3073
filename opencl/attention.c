/*
 * attention.c — host side of the OpenCL attention: planning work items, split-KV, launches.
 *
 * The plan mirrors cpu/attention.c so the two read side by side. A work item is one KV head g
 * of one sequence, a block of query rows (the H/Hkv query heads that read g, times as many
 * consecutive tokens as fit in ROWS) and a key range; attention.cl runs one item per
 * work-group. Decode leaves few items (one per KV head and sequence), far fewer than a GPU's
 * compute units can hold, so with kv_splits = 0 long key ranges are cut into splits until
 * there are about four work-groups per compute unit, each at least two tiles long; a second
 * kernel merges the splits' (o, m, l) partials.
 *
 * Per call the plan (items, split groups, ALiBi slopes, sinks and the block table, all small)
 * goes to the device in one buffer created from host memory, and split partials get a scratch
 * buffer; both are released right after the launches, which OpenCL defers until the kernels
 * that use them have finished.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl.h"

/* Must match attention.cl. */
#define ATTN_WG 64
#define IT_STRIDE 12
#define GR_STRIDE 8

/* Partial results may take at most this much device scratch; larger kv_splits requests are
 * reduced until they fit (results agree within tolerance whatever the split count). */
#define ATTN_PARTIAL_BYTES_MAX ((uint64_t)64 << 20)

/* Query rows per work-group and keys per tile for a head dim: local memory stays under 32 KB
 * (see attention.cl). */
static void attn_config(int d, int *rows, int *tile)
{
    *rows = d <= 128 ? 16 : 8;
    *tile = d == 64 ? 64 : d <= 128 ? 32 : 16;
}

static uint64_t attn_local_bytes(int d)
{
    int rows, tile;
    attn_config(d, &rows, &tile);
    return 4u *
               ((uint64_t)rows * d + (uint64_t)tile * (d + 1) + (uint64_t)rows * tile + 3u * rows) +
           8u * tile;
}

typedef struct attn_plan {
    const trit_plugin_attention_args *a;
    int rows_max, tile;
    int32_t *items; /* NULL while counting */
    int32_t *groups;
} attn_plan;

static int cmp_item_cost(const void *pa, const void *pb)
{
    const int32_t *a = pa, *b = pb;
    /* Cost is rows x keys; the record's slots 3, 4 (heads, tokens) and 6, 7 (key range). */
    int64_t ca = (int64_t)a[3] * a[4] * (a[7] - a[6]), cb = (int64_t)b[3] * b[4] * (b[7] - b[6]);
    return ca < cb ? 1 : ca > cb ? -1 : 0;
}

/* Visible keys of the query rows at positions [p_first, p_last] of a sequence. */
static void key_range(const trit_plugin_attention_args *a, int32_t kv_len, int32_t p_first,
                      int32_t p_last, int32_t *out_begin, int32_t *out_end)
{
    int32_t b = 0, e = kv_len;
    if (a->window > 0 && p_first - a->window + 1 > 0)
        b = p_first - a->window + 1;
    if (a->causal && p_last + 1 < e)
        e = p_last + 1;
    *out_begin = b;
    *out_end = e;
}

/* Walks every (sequence, token block, KV head, head block) and either counts (plan->items ==
 * NULL) or writes items and groups for `splits` requested splits. Returns the group count. */
static int64_t plan_walk(const attn_plan *plan, int32_t splits, int auto_splits, int64_t *out_items,
                         uint64_t *out_partial_floats)
{
    const trit_plugin_attention_args *a = plan->a;
    const int d = a->head_dim, tile = plan->tile;
    const int ratio = a->n_heads / a->n_kv_heads;
    const int hb = ratio < plan->rows_max ? ratio : plan->rows_max;
    const int tb = plan->rows_max / hb;
    int64_t n_items = 0, n_groups = 0;
    uint64_t partial = 0;
    for (uint32_t s = 0; s < a->n_seqs; s++) {
        const int32_t q_len = a->q_lens[s], kv_len = a->kv_lens[s];
        for (int32_t t0 = 0; t0 < q_len; t0 += tb) {
            int32_t nt = q_len - t0 < tb ? q_len - t0 : tb;
            int32_t p0 = kv_len - q_len + t0, jb, je;
            key_range(a, kv_len, p0, p0 + nt - 1, &jb, &je);
            int32_t tiles = (je - jb + tile - 1) / tile;
            int32_t ns = splits < tiles ? splits : tiles;
            /* An automatic split shorter than two tiles costs more than it gains. */
            if (auto_splits && ns > tiles / 2)
                ns = tiles / 2;
            if (ns < 1)
                ns = 1;
            for (int g = 0; g < a->n_kv_heads; g++) {
                for (int h0 = 0; h0 < ratio; h0 += hb) {
                    int nh = ratio - h0 < hb ? ratio - h0 : hb;
                    uint64_t split_floats = (uint64_t)nh * nt * (uint64_t)(d + 2);
                    if (plan->items) {
                        if (ns > 1) {
                            int32_t *gr = plan->groups + n_groups * GR_STRIDE;
                            memset(gr, 0, GR_STRIDE * sizeof(int32_t));
                            gr[0] = g * ratio + h0;
                            gr[1] = nh;
                            gr[2] = nt;
                            gr[3] = ns;
                            gr[4] = (int32_t)(a->q_starts[s] + t0);
                            gr[5] = (int32_t)partial;
                        }
                        for (int32_t k = 0; k < ns; k++) {
                            int32_t *it = plan->items + (n_items + k) * IT_STRIDE;
                            memset(it, 0, IT_STRIDE * sizeof(int32_t));
                            it[0] = (int32_t)s;
                            it[1] = g;
                            it[2] = g * ratio + h0;
                            it[3] = nh;
                            it[4] = nt;
                            it[5] = p0;
                            it[6] = jb + (int32_t)((int64_t)tiles * k / ns) * tile;
                            it[7] = k + 1 == ns
                                        ? je
                                        : jb + (int32_t)((int64_t)tiles * (k + 1) / ns) * tile;
                            it[8] = (int32_t)(a->q_starts[s] + t0);
                            it[9] = ns > 1 ? (int32_t)(partial + (uint64_t)k * split_floats) : -1;
                            it[10] = kv_len;
                        }
                    }
                    if (ns > 1) {
                        partial += (uint64_t)ns * split_floats;
                        n_groups++;
                    }
                    n_items += ns;
                }
            }
        }
    }
    *out_items = n_items;
    *out_partial_floats = partial;
    return n_groups;
}

const char *ocl_attention_unsupported(const ocl_device *dev, const trit_op_desc *desc)
{
    if (desc->op != TRIT_OP_ATTENTION)
        return "not an attention op";
    int d = desc->head_dim;
    if (d != 64 && d != 80 && d != 96 && d != 128 && d != 256)
        return "head dim must be 64, 80, 96, 128 or 256";
    if (desc->x_dtype != TRIT_DTYPE_F32 && desc->x_dtype != TRIT_DTYPE_F16)
        return "q must be f32 or f16";
    if (desc->y_dtype != TRIT_DTYPE_F32 && desc->y_dtype != TRIT_DTYPE_F16)
        return "out must be f32 or f16";
    if (desc->kv_dtype != TRIT_DTYPE_F32 && desc->kv_dtype != TRIT_DTYPE_F16)
        return "the KV cache must be f32 or f16";
    if (dev->max_wg < ATTN_WG)
        return "the device's work-groups are smaller than the 64 work-items attention needs";
    if (dev->local_mem < attn_local_bytes(d))
        return "the device has too little local memory for this head dim's attention tiles";
    return NULL;
}

static int is_f16(const trit_plugin_tensor *t)
{
    return t->dtype == TRIT_DTYPE_F16;
}

/* Element offset of a tensor: the host guarantees offsets are multiples of the element size. */
static cl_long elem_offset(const trit_plugin_tensor *t)
{
    return (cl_long)(t->offset / (t->dtype == TRIT_DTYPE_F16 ? 2u : 4u));
}

trit_status ocl_attention(ocl_stream *s, const trit_plugin_attention_args *args)
{
    ocl_device *dev = s->dev;
    const trit_plugin_attention_args *a = args;
    const int d = a->head_dim;
    if (a->q_starts[a->n_seqs] > INT32_MAX) {
        ocl_set_error(dev, "attention: more than 2^31 query tokens in one call");
        return TRIT_ERROR_UNSUPPORTED;
    }
    attn_plan plan;
    memset(&plan, 0, sizeof(plan));
    plan.a = a;
    attn_config(d, &plan.rows_max, &plan.tile);

    char opts[96];
    snprintf(opts, sizeof(opts), "-DHEAD_DIM=%d -DROWS=%d -DTILE=%d", d, plan.rows_max, plan.tile);
    cl_kernel k_tiles, k_combine;
    trit_status st = ocl_kernel_get(dev, "attention", opts, "attn_tiles", &k_tiles);
    if (st == TRIT_OK)
        st = ocl_kernel_get(dev, "attention", opts, "attn_combine", &k_combine);
    if (st != TRIT_OK)
        return st;

    /* Split-KV: automatic splits only when the unsplit items would leave compute units idle;
     * then about four work-groups per compute unit. */
    int64_t n_items;
    uint64_t partial_floats;
    plan_walk(&plan, 1, 0, &n_items, &partial_floats);
    const int auto_splits = a->kv_splits == 0;
    int32_t splits = a->kv_splits > 0 ? a->kv_splits : 1;
    const int64_t want_groups = 4 * (int64_t)(dev->compute_units ? dev->compute_units : 1);
    if (auto_splits && n_items < want_groups)
        splits = (int32_t)((want_groups + n_items - 1) / n_items);
    uint64_t partial_cap =
        ATTN_PARTIAL_BYTES_MAX < dev->max_alloc ? ATTN_PARTIAL_BYTES_MAX : dev->max_alloc;
    int64_t n_groups = plan_walk(&plan, splits, auto_splits, &n_items, &partial_floats);
    while (splits > 1 && partial_floats * sizeof(float) > partial_cap) {
        splits = (splits + 1) / 2;
        n_groups = plan_walk(&plan, splits, auto_splits, &n_items, &partial_floats);
    }
    if ((uint64_t)n_items * ATTN_WG > (uint64_t)SIZE_MAX / 2 || n_items > INT32_MAX / IT_STRIDE) {
        ocl_set_error(dev, "attention: %lld work items are too many for one launch",
                      (long long)n_items);
        return TRIT_ERROR_UNSUPPORTED;
    }

    /* meta: items | groups | slopes [H] | sinks [H] | block table */
    const uint64_t table_n =
        a->cache.block_table ? (uint64_t)a->n_seqs * a->cache.max_blocks_per_seq : 0;
    const uint64_t items_at = 0, groups_at = items_at + (uint64_t)n_items * IT_STRIDE;
    const uint64_t slopes_at = groups_at + (uint64_t)n_groups * GR_STRIDE;
    const uint64_t sinks_at = slopes_at + (a->alibi_slopes ? (uint64_t)a->n_heads : 0);
    const uint64_t table_at = sinks_at + (a->sinks ? (uint64_t)a->n_heads : 0);
    const uint64_t meta_n = table_at + table_n + 1;
    if (meta_n > INT32_MAX || meta_n * 4 > dev->max_alloc) {
        ocl_set_error(dev, "attention: the plan and block table (%llu ints) exceed one buffer",
                      (unsigned long long)meta_n);
        return TRIT_ERROR_UNSUPPORTED;
    }
    int32_t *meta = calloc((size_t)meta_n, sizeof(int32_t));
    if (!meta) {
        ocl_set_error(dev, "attention: out of host memory for the plan");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    plan.items = meta + items_at;
    plan.groups = meta + groups_at;
    plan_walk(&plan, splits, auto_splits, &n_items, &partial_floats);
    /* Longest first, so the last work-groups to start are the short ones. */
    qsort(plan.items, (size_t)n_items, IT_STRIDE * sizeof(int32_t), cmp_item_cost);
    if (a->alibi_slopes)
        memcpy(meta + slopes_at, a->alibi_slopes, (size_t)a->n_heads * sizeof(float));
    if (a->sinks)
        memcpy(meta + sinks_at, a->sinks, (size_t)a->n_heads * sizeof(float));
    if (table_n)
        memcpy(meta + table_at, a->cache.block_table, (size_t)table_n * sizeof(int32_t));

    cl_int err;
    cl_mem meta_mem = clCreateBuffer(dev->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                     (size_t)meta_n * sizeof(int32_t), meta, &err);
    free(meta);
    if (err != CL_SUCCESS)
        return ocl_fail(dev, err, "attention: clCreateBuffer (plan, %llu bytes)",
                        (unsigned long long)meta_n * 4);
    cl_mem part_mem = NULL;
    if (partial_floats > 0) {
        part_mem = clCreateBuffer(dev->context, CL_MEM_READ_WRITE,
                                  (size_t)partial_floats * sizeof(float), NULL, &err);
        if (err != CL_SUCCESS) {
            clReleaseMemObject(meta_mem);
            return ocl_fail(dev, err, "attention: clCreateBuffer (split partials, %llu bytes)",
                            (unsigned long long)partial_floats * 4);
        }
    }

    const trit_plugin_tensor *q = &a->q, *o = &a->out, *kt = &a->cache.k, *vt = &a->cache.v;
    cl_mem q_mem = ocl_tensor_mem(q), o_mem = ocl_tensor_mem(o);
    cl_mem k_mem = ocl_tensor_mem(kt), v_mem = ocl_tensor_mem(vt);
    cl_long q_off = elem_offset(q), q_s0 = q->strides[0], q_s1 = q->strides[1];
    cl_long o_off = elem_offset(o), o_s0 = o->strides[0], o_s1 = o->strides[1];
    cl_long k_off = elem_offset(kt), k_s0 = kt->strides[0], k_s1 = kt->strides[1],
            k_s2 = kt->strides[2];
    cl_long v_off = elem_offset(vt), v_s0 = vt->strides[0], v_s1 = vt->strides[1],
            v_s2 = vt->strides[2];
    cl_int q_f16 = is_f16(q), o_f16 = is_f16(o), k_f16 = is_f16(kt), v_f16 = is_f16(vt);
    cl_int block_size = a->cache.block_table ? (cl_int)kt->shape[1] : 0;
    cl_int max_blocks = a->cache.block_table ? a->cache.max_blocks_per_seq : 0;
    cl_int c_table_at = (cl_int)table_at, c_groups_at = (cl_int)groups_at;
    cl_int c_slopes_at = a->alibi_slopes ? (cl_int)slopes_at : -1;
    cl_int c_sinks_at = a->sinks ? (cl_int)sinks_at : -1;
    cl_float scale = a->scale, softcap = a->softcap;
    cl_int causal = a->causal != 0, window = a->window;

    size_t local = ATTN_WG, global = (size_t)n_items * ATTN_WG;
    st = OCL_ENQUEUE(s, "attention", k_tiles, 1, &global, &local, OCL_ARG(q_mem), OCL_ARG(q_off),
                     OCL_ARG(q_s0), OCL_ARG(q_s1), OCL_ARG(q_f16), OCL_ARG(o_mem), OCL_ARG(o_off),
                     OCL_ARG(o_s0), OCL_ARG(o_s1), OCL_ARG(o_f16), OCL_ARG(k_mem), OCL_ARG(k_off),
                     OCL_ARG(k_s0), OCL_ARG(k_s1), OCL_ARG(k_s2), OCL_ARG(k_f16), OCL_ARG(v_mem),
                     OCL_ARG(v_off), OCL_ARG(v_s0), OCL_ARG(v_s1), OCL_ARG(v_s2), OCL_ARG(v_f16),
                     OCL_ARG(block_size), OCL_ARG(max_blocks), OCL_ARG(meta_mem),
                     OCL_ARG(c_table_at), OCL_ARG(c_slopes_at), OCL_ARG(c_sinks_at), OCL_ARG(scale),
                     OCL_ARG(causal), OCL_ARG(window), OCL_ARG(softcap), OCL_ARG(part_mem));
    if (st == TRIT_OK && n_groups > 0) {
        global = (size_t)n_groups * ATTN_WG;
        st = OCL_ENQUEUE(s, "attention (combine)", k_combine, 1, &global, &local, OCL_ARG(o_mem),
                         OCL_ARG(o_off), OCL_ARG(o_s0), OCL_ARG(o_s1), OCL_ARG(o_f16),
                         OCL_ARG(meta_mem), OCL_ARG(c_groups_at), OCL_ARG(c_sinks_at),
                         OCL_ARG(part_mem));
    }
    clReleaseMemObject(meta_mem);
    if (part_mem)
        clReleaseMemObject(part_mem);
    return st;
}
