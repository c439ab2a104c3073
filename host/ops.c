/*
 * ops.c — argument validation and dispatch for the ops. Every check a plugin would otherwise
 * repeat lives here, so all backends reject bad input the same way and never see it: devices,
 * dtypes, shapes, bounds, aliasing of outputs, sequence lengths, block tables, option values.
 * On failure nothing has been enqueued and no output has been written.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* --- shared checks --------------------------------------------------------------------------- */

static trit_status check_on_device(const char *op, const char *what, const trit_tensor *t,
                                   const trit_stream *s)
{
    if (t->buffer->device != s->device)
        return trit_fail(TRIT_ERROR_WRONG_DEVICE, "%s: %s is on %s but the stream is on %s", op,
                         what, t->buffer->device->label, s->device->label);
    return TRIT_OK;
}

/* A valid, on-device tensor of the given rank. */
static trit_status check_arg(const char *op, const char *what, const trit_tensor *t,
                             const trit_stream *s, uint32_t rank)
{
    trit_status st = host_check_tensor(op, what, t);
    if (st == TRIT_OK)
        st = check_on_device(op, what, t, s);
    if (st == TRIT_OK && t->rank != rank)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: %s has rank %u, expected %u", op, what,
                         t->rank, rank);
    return st;
}

static int is_float_dtype(trit_dtype dt)
{
    return dt == TRIT_DTYPE_F32 || dt == TRIT_DTYPE_F16;
}

static trit_status check_float(const char *op, const char *what, const trit_tensor *t)
{
    if (!is_float_dtype(t->dtype))
        return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: %s has dtype %s; f32 or f16 required", op,
                         what, trit_dtype_name(t->dtype));
    return TRIT_OK;
}

/* An output must not write one element twice. Taken in order of increasing stride, each dim's
 * stride must reach past everything the smaller-strided dims span; that is sufficient for any
 * dim order, so layouts other than row-major (e.g. attention output stored head-major) pass. */
static trit_status check_output_layout(const char *op, const char *what, const trit_tensor *t)
{
    uint32_t order[TRIT_MAX_RANK], n = 0;
    for (uint32_t d = 0; d < t->rank; d++) {
        if (t->shape[d] < 2)
            continue; /* an extent of 1 never revisits an element, whatever its stride */
        uint32_t i = n++;
        for (; i > 0 && t->strides[order[i - 1]] > t->strides[d]; i--)
            order[i] = order[i - 1];
        order[i] = d;
    }
    uint64_t inner = 1; /* elements spanned by the dims already taken */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t d = order[i];
        if ((uint64_t)t->strides[d] < inner)
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                             "%s: output %s has overlapping elements (stride %lld in dim %u)", op,
                             what, (long long)t->strides[d], d);
        inner += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->strides[d];
    }
    return TRIT_OK;
}

static trit_status check_no_overlap(const char *op, const char *out_name, const trit_tensor *out,
                                    const char *in_name, const trit_tensor *in)
{
    if (in && host_tensors_overlap(out, in))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: output %s overlaps input %s", op,
                         out_name, in_name);
    return TRIT_OK;
}

static trit_status check_supported(const trit_device *dev, const trit_op_desc *desc)
{
    char reason[256];
    int ok = 0;
    trit_status st = trit_device_supports(dev, desc, &ok, reason, sizeof(reason));
    if (st != TRIT_OK)
        return st;
    if (!ok)
        return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: %s", dev->label, reason);
    return TRIT_OK;
}

static trit_status call_done(const trit_device *dev, trit_status st)
{
    return st == TRIT_OK ? TRIT_OK : host_plugin_failed(dev, st);
}

/* --- GEMV ------------------------------------------------------------------------------------ */

void trit_gemv_params_init(trit_gemv_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof(*p));
    p->size = sizeof(*p);
    p->path = TRIT_GEMV_FLOAT;
    p->rmsnorm_eps = 1e-6f;
    p->act = TRIT_ACT_NONE;
}

static trit_status gemv_common(const char *op, trit_stream *s, const trit_ternary *w,
                               const trit_ternary *w_up, const trit_tensor *x, trit_tensor *y,
                               const trit_gemv_params *params)
{
    trit_clear_error();
    if (!s || !w || !x || !y)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: stream, matrix, x or y is NULL", op);
    trit_gemv_params p;
    trit_gemv_params_init(&p);
    if (params) {
        trit_status st = HOST_CHECK_SIZE(op, "params", params, trit_gemv_params);
        if (st != TRIT_OK)
            return st;
        memcpy(&p, params, params->size < sizeof(p) ? params->size : sizeof(p));
    }
    trit_device *dev = s->device;
    if (w->device != dev)
        return trit_fail(TRIT_ERROR_WRONG_DEVICE, "%s: the matrix is on %s but the stream is on %s",
                         op, w->device->label, dev->label);
    if (w_up && w_up->device != dev)
        return trit_fail(TRIT_ERROR_WRONG_DEVICE,
                         "%s: the up matrix is on %s but the stream is on %s", op,
                         w_up->device->label, dev->label);
    if (w_up && (w_up->rows != w->rows || w_up->cols != w->cols))
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: gate is %lldx%lld but up is %lldx%lld", op,
                         (long long)w->rows, (long long)w->cols, (long long)w_up->rows,
                         (long long)w_up->cols);

    trit_status st = host_check_tensor(op, "x", x);
    if (st == TRIT_OK)
        st = check_on_device(op, "x", x, s);
    if (st == TRIT_OK)
        st = host_check_tensor(op, "y", y);
    if (st == TRIT_OK)
        st = check_on_device(op, "y", y, s);
    if (st != TRIT_OK)
        return st;
    if (x->rank > 2 || y->rank > 2)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: x and y must be [N, K] and [N, M]", op);
    if ((st = check_float(op, "x", x)) != TRIT_OK || (st = check_float(op, "y", y)) != TRIT_OK)
        return st;
    int64_t k = x->shape[x->rank - 1], m = y->shape[y->rank - 1];
    int64_t n = x->rank == 2 ? x->shape[0] : 1, ny = y->rank == 2 ? y->shape[0] : 1;
    if (k != w->cols)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                         "%s: x has %lld columns but the matrix has %lld", op, (long long)k,
                         (long long)w->cols);
    if (m != w->rows)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                         "%s: y has %lld columns but the matrix has %lld rows", op, (long long)m,
                         (long long)w->rows);
    if (n != ny)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: x has %lld rows (tokens) but y has %lld",
                         op, (long long)n, (long long)ny);
    if (n > TRIT_GEMV_MAX_N)
        return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: N = %lld columns exceeds the maximum of %d",
                         op, (long long)n, TRIT_GEMV_MAX_N);
    if (p.path != TRIT_GEMV_FLOAT && p.path != TRIT_GEMV_INT8)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: unknown numeric path %d", op,
                         (int)p.path);
    if (p.act < TRIT_ACT_NONE || p.act > TRIT_ACT_GELU)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: unknown activation %d", op, (int)p.act);
    if ((st = check_output_layout(op, "y", y)) != TRIT_OK ||
        (st = check_no_overlap(op, "y", y, "x", x)) != TRIT_OK)
        return st;

    trit_plugin_gemv_args a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.w = w->state;
    a.w_up = w_up ? w_up->state : NULL;
    a.m = m;
    a.k = k;
    a.n = n;
    /* Rank-1 x / y are [1, K] / [1, M]. */
    trit_tensor x2 = *x, y2 = *y;
    if (x2.rank == 1) {
        x2.rank = 2;
        x2.shape[1] = k;
        x2.strides[1] = 1;
        x2.shape[0] = 1;
        x2.strides[0] = k;
    }
    if (y2.rank == 1) {
        y2.rank = 2;
        y2.shape[1] = m;
        y2.strides[1] = 1;
        y2.shape[0] = 1;
        y2.strides[0] = m;
    }
    host_plugin_tensor(&x2, &a.x);
    host_plugin_tensor(&y2, &a.y);
    a.path = p.path;
    a.act = p.act;

    if (p.rmsnorm_weight) {
        const trit_tensor *g = p.rmsnorm_weight;
        if ((st = check_arg(op, "rmsnorm weight", g, s, 1)) != TRIT_OK)
            return st;
        if (g->dtype != TRIT_DTYPE_F32)
            return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: rmsnorm weight must be f32, not %s", op,
                             trit_dtype_name(g->dtype));
        if (g->shape[0] != k)
            return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                             "%s: rmsnorm weight has %lld entries, K is %lld", op,
                             (long long)g->shape[0], (long long)k);
        if (!(p.rmsnorm_eps >= 0.0f) || !isfinite(p.rmsnorm_eps))
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: rmsnorm eps %g is not >= 0", op,
                             (double)p.rmsnorm_eps);
        if ((st = check_no_overlap(op, "y", y, "rmsnorm weight", g)) != TRIT_OK)
            return st;
        a.has_rmsnorm = 1;
        host_plugin_tensor(g, &a.rmsnorm_weight);
        a.rmsnorm_eps = p.rmsnorm_eps;
    }
    if (p.bias) {
        if (w_up)
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: the gated pair takes no bias", op);
        if ((st = check_arg(op, "bias", p.bias, s, 1)) != TRIT_OK)
            return st;
        if (p.bias->dtype != TRIT_DTYPE_F32)
            return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: bias must be f32, not %s", op,
                             trit_dtype_name(p.bias->dtype));
        if (p.bias->shape[0] != m)
            return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: bias has %lld entries, M is %lld", op,
                             (long long)p.bias->shape[0], (long long)m);
        if ((st = check_no_overlap(op, "y", y, "bias", p.bias)) != TRIT_OK)
            return st;
        a.has_bias = 1;
        host_plugin_tensor(p.bias, &a.bias);
    }
    if (p.residual) {
        const trit_tensor *r = p.residual;
        if ((st = host_check_tensor(op, "residual", r)) != TRIT_OK ||
            (st = check_on_device(op, "residual", r, s)) != TRIT_OK)
            return st;
        if (r->dtype != y->dtype)
            return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: residual is %s but y is %s", op,
                             trit_dtype_name(r->dtype), trit_dtype_name(y->dtype));
        if (r->rank != y->rank || r->shape[0] != y->shape[0] ||
            r->shape[r->rank - 1] != y->shape[y->rank - 1])
            return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: residual must have y's shape", op);
        /* The residual is an input (it may even be x); only y must stay clear of it, unless
         * it is exactly y. */
        if (!host_tensors_same(r, y) && (st = check_no_overlap(op, "y", y, "residual", r)))
            return st;
        trit_tensor r2 = *r;
        if (r2.rank == 1) {
            r2 = y2;
            r2.buffer = r->buffer;
            r2.offset = r->offset;
        }
        a.has_residual = 1;
        host_plugin_tensor(&r2, &a.residual);
    }
    if (p.accumulators) {
        trit_tensor *acc = p.accumulators;
        if (p.path != TRIT_GEMV_INT8)
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                             "%s: integer accumulators exist only on the INT8 path", op);
        if (w->scale_kind == TRIT_SCALE_BLOCK)
            return trit_fail(TRIT_ERROR_UNSUPPORTED,
                             "%s: accumulators need per-tensor or per-row scales, the matrix has "
                             "per-block scales",
                             op);
        if (w_up)
            return trit_fail(TRIT_ERROR_UNSUPPORTED,
                             "%s: the gated pair does not output accumulators", op);
        if ((st = check_arg(op, "accumulators", acc, s, 2)) != TRIT_OK)
            return st;
        if (acc->dtype != TRIT_DTYPE_I32)
            return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: accumulators must be i32, not %s", op,
                             trit_dtype_name(acc->dtype));
        if (acc->shape[0] != n || acc->shape[1] != m)
            return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: accumulators must be [%lld, %lld]", op,
                             (long long)n, (long long)m);
        if ((st = check_output_layout(op, "accumulators", acc)) != TRIT_OK ||
            (st = check_no_overlap(op, "accumulators", acc, "x", x)) != TRIT_OK ||
            (st = check_no_overlap(op, "accumulators", acc, "y", y)) != TRIT_OK ||
            (st = check_no_overlap(op, "accumulators", acc, "bias", p.bias)) != TRIT_OK ||
            (st = check_no_overlap(op, "accumulators", acc, "residual", p.residual)) != TRIT_OK ||
            (st = check_no_overlap(op, "accumulators", acc, "rmsnorm weight", p.rmsnorm_weight)) !=
                TRIT_OK)
            return st;
        a.has_accumulators = 1;
        host_plugin_tensor(acc, &a.accumulators);
    }

    trit_op_desc desc;
    memset(&desc, 0, sizeof(desc));
    desc.size = sizeof(desc);
    desc.op = w_up ? TRIT_OP_GEMV_GATED : TRIT_OP_GEMV;
    desc.x_dtype = x->dtype;
    desc.y_dtype = y->dtype;
    desc.path = p.path;
    desc.n = (int32_t)n;
    desc.features =
        (a.has_rmsnorm ? TRIT_FEATURE_RMSNORM : 0u) | (a.has_bias ? TRIT_FEATURE_BIAS : 0u) |
        (a.has_residual ? TRIT_FEATURE_RESIDUAL : 0u) |
        (a.act != TRIT_ACT_NONE ? TRIT_FEATURE_ACTIVATION : 0u) |
        (a.has_accumulators ? TRIT_FEATURE_ACCUMULATORS : 0u) |
        (w->scale_kind == TRIT_SCALE_BLOCK || (w_up && w_up->scale_kind == TRIT_SCALE_BLOCK)
             ? TRIT_FEATURE_BLOCK_SCALES
             : 0u);
    if ((st = check_supported(dev, &desc)) != TRIT_OK)
        return st;
    return call_done(dev, dev->plugin->vt.gemv(s->state, &a));
}

trit_status trit_ternary_gemv(trit_stream *s, const trit_ternary *w, const trit_tensor *x,
                              trit_tensor *y, const trit_gemv_params *params)
{
    return gemv_common("gemv", s, w, NULL, x, y, params);
}

trit_status trit_ternary_gemv_gated(trit_stream *s, const trit_ternary *w_gate,
                                    const trit_ternary *w_up, const trit_tensor *x, trit_tensor *y,
                                    const trit_gemv_params *params)
{
    if (!w_up) {
        trit_clear_error();
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "gemv_gated: the up matrix is NULL");
    }
    return gemv_common("gemv_gated", s, w_gate, w_up, x, y, params);
}

/* --- KV cache and sequences ------------------------------------------------------------------ */

typedef struct cache_shape {
    int64_t seqs_or_blocks; /* S (contiguous) or B (paged) */
    int64_t capacity;       /* C (contiguous) or P, the block size (paged) */
    int64_t n_kv_heads;
    int64_t head_dim;
    int paged;
} cache_shape;

static trit_status check_cache(const char *op, const trit_kv_cache *cache, const trit_stream *s,
                               uint32_t n_seqs, cache_shape *out)
{
    if (!cache)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: cache is NULL", op);
    trit_status st = HOST_CHECK_SIZE(op, "cache", cache, trit_kv_cache);
    if (st != TRIT_OK)
        return st;
    trit_kv_cache c;
    memset(&c, 0, sizeof(c));
    memcpy(&c, cache, cache->size < sizeof(c) ? cache->size : sizeof(c));
    if ((st = check_arg(op, "cache k", &c.k, s, 4)) != TRIT_OK ||
        (st = check_arg(op, "cache v", &c.v, s, 4)) != TRIT_OK)
        return st;
    if ((st = check_float(op, "cache k", &c.k)) != TRIT_OK)
        return st;
    if (c.v.dtype != c.k.dtype)
        return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: cache k is %s but cache v is %s", op,
                         trit_dtype_name(c.k.dtype), trit_dtype_name(c.v.dtype));
    for (int d = 0; d < 4; d++)
        if (c.k.shape[d] != c.v.shape[d])
            return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: cache k and v shapes differ (dim %d)",
                             op, d);
    if (host_tensors_overlap(&c.k, &c.v))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: cache k and v overlap", op);
    out->seqs_or_blocks = c.k.shape[0];
    out->capacity = c.k.shape[1];
    out->n_kv_heads = c.k.shape[2];
    out->head_dim = c.k.shape[3];
    out->paged = c.block_table != NULL;
    if (out->paged) {
        if (c.max_blocks_per_seq < 1)
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: max_blocks_per_seq is %d", op,
                             (int)c.max_blocks_per_seq);
        if (out->capacity < 16 || out->capacity > 256)
            return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: paged block size %lld is outside 16..256",
                             op, (long long)out->capacity);
    } else if (out->seqs_or_blocks < (int64_t)n_seqs) {
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                         "%s: the contiguous cache holds %lld sequences but %u were given", op,
                         (long long)out->seqs_or_blocks, n_seqs);
    }
    return TRIT_OK;
}

/* Checks that token positions [first, last] of sequence `seq` are inside the cache. */
static trit_status check_positions(const char *op, const trit_kv_cache *c, const cache_shape *cs,
                                   uint32_t seq, int64_t first, int64_t last)
{
    if (last < first)
        return TRIT_OK;
    if (!cs->paged) {
        if (last >= cs->capacity)
            return trit_fail(TRIT_ERROR_OUT_OF_BOUNDS,
                             "%s: sequence %u reaches token %lld but the cache holds %lld per "
                             "sequence",
                             op, seq, (long long)last, (long long)cs->capacity);
        return TRIT_OK;
    }
    int64_t b0 = first / cs->capacity, b1 = last / cs->capacity;
    if (b1 >= c->max_blocks_per_seq)
        return trit_fail(TRIT_ERROR_OUT_OF_BOUNDS,
                         "%s: sequence %u needs %lld blocks but the block table has %d per "
                         "sequence",
                         op, seq, (long long)(b1 + 1), (int)c->max_blocks_per_seq);
    const int32_t *row = c->block_table + (int64_t)seq * c->max_blocks_per_seq;
    for (int64_t b = b0; b <= b1; b++)
        if (row[b] < 0 || row[b] >= cs->seqs_or_blocks)
            return trit_fail(TRIT_ERROR_OUT_OF_BOUNDS,
                             "%s: sequence %u block %lld is %d, outside the pool of %lld blocks",
                             op, seq, (long long)b, (int)row[b], (long long)cs->seqs_or_blocks);
    return TRIT_OK;
}

/* A run of rows [lo, hi] of one cache block that one sequence writes. */
typedef struct block_write {
    int64_t block, lo, hi;
    uint32_t seq;
} block_write;

static int compare_block_writes(const void *pa, const void *pb)
{
    const block_write *a = pa, *b = pb;
    if (a->block != b->block)
        return a->block < b->block ? -1 : 1;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

/* Paged append: two new tokens must not land in the same block row. Block tables may share
 * blocks (a common prefix), which is fine for reading; but if the rows one sequence appends map
 * onto rows another sequence (or the same one, through a repeated table entry) appends, two
 * writers race for one slot. Positions are already checked to be inside the table and pool. */
static trit_status check_paged_writes(const char *op, const trit_kv_cache *c, const cache_shape *cs,
                                      uint32_t n_seqs, const int32_t *q_lens,
                                      const int32_t *start_pos)
{
    const int64_t p = cs->capacity;
    size_t count = 0;
    for (uint32_t i = 0; i < n_seqs; i++)
        if (q_lens[i] > 0)
            count += (size_t)((start_pos[i] + (int64_t)q_lens[i] - 1) / p - start_pos[i] / p + 1);
    if (count < 2)
        return TRIT_OK;
    const trit_context *ctx = c->k.buffer->device->context;
    block_write *w = host_calloc(ctx, count, sizeof(*w));
    if (!w)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    size_t n = 0;
    for (uint32_t i = 0; i < n_seqs; i++) {
        if (q_lens[i] <= 0)
            continue;
        int64_t first = start_pos[i], last = first + q_lens[i] - 1;
        const int32_t *row = c->block_table + (int64_t)i * c->max_blocks_per_seq;
        for (int64_t b = first / p; b <= last / p; b++) {
            w[n].block = row[b];
            w[n].lo = b == first / p ? first % p : 0;
            w[n].hi = b == last / p ? last % p : p - 1;
            w[n].seq = i;
            n++;
        }
    }
    qsort(w, n, sizeof(*w), compare_block_writes);
    trit_status st = TRIT_OK;
    /* Sorted by start, any two overlapping runs imply an overlapping adjacent pair. */
    for (size_t j = 1; j < n && st == TRIT_OK; j++) {
        if (w[j].block != w[j - 1].block || w[j].lo > w[j - 1].hi)
            continue;
        if (w[j].seq == w[j - 1].seq)
            st = trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                           "%s: sequence %u appends twice to row %lld of cache block %lld (its "
                           "block table repeats the block)",
                           op, w[j].seq, (long long)w[j].lo, (long long)w[j].block);
        else
            st = trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                           "%s: sequences %u and %u both append to row %lld of cache block %lld",
                           op, w[j - 1].seq, w[j].seq, (long long)w[j].lo, (long long)w[j].block);
    }
    host_free(ctx, w);
    return st;
}

static void plugin_cache(const trit_kv_cache *cache, trit_plugin_kv_cache *out)
{
    trit_kv_cache c;
    memset(&c, 0, sizeof(c));
    memcpy(&c, cache, cache->size < sizeof(c) ? cache->size : sizeof(c));
    memset(out, 0, sizeof(*out));
    host_plugin_tensor(&c.k, &out->k);
    host_plugin_tensor(&c.v, &out->v);
    out->block_table = c.block_table;
    out->max_blocks_per_seq = c.block_table ? c.max_blocks_per_seq : 0;
}

static trit_kv_cache cache_copy(const trit_kv_cache *cache)
{
    trit_kv_cache c;
    memset(&c, 0, sizeof(c));
    memcpy(&c, cache, cache->size < sizeof(c) ? cache->size : sizeof(c));
    return c;
}

static int head_dim_ok(int64_t d)
{
    return d == 64 || d == 80 || d == 96 || d == 128 || d == 256;
}

/* --- attention ------------------------------------------------------------------------------- */

void trit_attention_params_init(trit_attention_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof(*p));
    p->size = sizeof(*p);
}

trit_status trit_attention(trit_stream *s, const trit_tensor *q, const trit_kv_cache *cache,
                           uint32_t n_seqs, const int32_t *q_lens, const int32_t *kv_lens,
                           trit_tensor *out, const trit_attention_params *params)
{
    static const char op[] = "attention";
    trit_clear_error();
    if (!s || !q || !cache || !q_lens || !kv_lens || !out)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "%s: stream, q, cache, q_lens, kv_lens or out is NULL", op);
    if (n_seqs == 0)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: n_seqs is 0", op);
    trit_attention_params p;
    trit_attention_params_init(&p);
    if (params) {
        trit_status st = HOST_CHECK_SIZE(op, "params", params, trit_attention_params);
        if (st != TRIT_OK)
            return st;
        memcpy(&p, params, params->size < sizeof(p) ? params->size : sizeof(p));
    }
    trit_device *dev = s->device;
    trit_status st;
    cache_shape cs;
    if ((st = check_arg(op, "q", q, s, 3)) != TRIT_OK ||
        (st = check_arg(op, "out", out, s, 3)) != TRIT_OK ||
        (st = check_float(op, "q", q)) != TRIT_OK ||
        (st = check_float(op, "out", out)) != TRIT_OK ||
        (st = check_cache(op, cache, s, n_seqs, &cs)) != TRIT_OK)
        return st;
    trit_kv_cache c = cache_copy(cache);
    int64_t t = q->shape[0], h = q->shape[1], d = q->shape[2];
    if (out->shape[0] != t || out->shape[1] != h || out->shape[2] != d)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                         "%s: out must have q's shape [%lld, %lld, %lld]", op, (long long)t,
                         (long long)h, (long long)d);
    if (cs.head_dim != d)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: q head dim %lld but cache head dim %lld",
                         op, (long long)d, (long long)cs.head_dim);
    if (!head_dim_ok(d))
        return trit_fail(TRIT_ERROR_UNSUPPORTED,
                         "%s: head dim %lld is not supported (64, 80, 96, 128, 256)", op,
                         (long long)d);
    if (h % cs.n_kv_heads != 0)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                         "%s: %lld query heads is not a multiple of %lld KV heads", op,
                         (long long)h, (long long)cs.n_kv_heads);
    if (h > INT32_MAX)
        return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: %lld heads is more than int32 holds", op,
                         (long long)h);
    if (!isfinite(p.scale) || !isfinite(p.softcap) || p.softcap < 0 || p.window < 0 ||
        p.kv_splits < 0)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "%s: scale and softcap must be finite (softcap >= 0), window and "
                         "kv_splits >= 0",
                         op);
    for (int64_t i = 0; i < h; i++) {
        if (p.alibi_slopes && !isfinite(p.alibi_slopes[i]))
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: alibi slope %lld is not finite", op,
                             (long long)i);
        if (p.sinks && !isfinite(p.sinks[i]))
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: sink %lld is not finite", op,
                             (long long)i);
    }
    int64_t total = 0;
    for (uint32_t i = 0; i < n_seqs; i++) {
        if (q_lens[i] < 1 || kv_lens[i] < q_lens[i])
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                             "%s: sequence %u has q_len %d and kv_len %d (need 1 <= q_len <= "
                             "kv_len)",
                             op, i, (int)q_lens[i], (int)kv_lens[i]);
        if ((st = check_positions(op, &c, &cs, i, 0, (int64_t)kv_lens[i] - 1)) != TRIT_OK)
            return st;
        total += q_lens[i];
    }
    if (total != t)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                         "%s: q has %lld tokens but the q_lens add up to %lld", op, (long long)t,
                         (long long)total);
    if ((st = check_output_layout(op, "out", out)) != TRIT_OK ||
        (st = check_no_overlap(op, "out", out, "q", q)) != TRIT_OK ||
        (st = check_no_overlap(op, "out", out, "cache k", &c.k)) != TRIT_OK ||
        (st = check_no_overlap(op, "out", out, "cache v", &c.v)) != TRIT_OK)
        return st;

    trit_op_desc desc;
    memset(&desc, 0, sizeof(desc));
    desc.size = sizeof(desc);
    desc.op = TRIT_OP_ATTENTION;
    desc.features = (p.causal ? TRIT_FEATURE_CAUSAL : 0u) | (p.window ? TRIT_FEATURE_WINDOW : 0u) |
                    (p.softcap > 0 ? TRIT_FEATURE_SOFTCAP : 0u) |
                    (p.alibi_slopes ? TRIT_FEATURE_ALIBI : 0u) |
                    (p.sinks ? TRIT_FEATURE_SINKS : 0u);
    desc.x_dtype = q->dtype;
    desc.y_dtype = out->dtype;
    desc.kv_dtype = c.k.dtype;
    desc.head_dim = (int32_t)d;
    desc.paged = cs.paged;
    if ((st = check_supported(dev, &desc)) != TRIT_OK)
        return st;

    /* In size_t: n_seqs + 1 in 32 bits wraps to 0 for n_seqs = UINT32_MAX. */
    int64_t *starts = host_alloc(dev->context, ((size_t)n_seqs + 1) * sizeof(int64_t));
    if (!starts)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    starts[0] = 0;
    for (uint32_t i = 0; i < n_seqs; i++)
        starts[i + 1] = starts[i] + q_lens[i];

    trit_plugin_attention_args a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    host_plugin_tensor(q, &a.q);
    host_plugin_tensor(out, &a.out);
    plugin_cache(cache, &a.cache);
    a.n_seqs = n_seqs;
    a.q_lens = q_lens;
    a.kv_lens = kv_lens;
    a.q_starts = starts;
    a.n_heads = (int32_t)h;
    a.n_kv_heads = (int32_t)cs.n_kv_heads;
    a.head_dim = (int32_t)d;
    a.scale = p.scale != 0.0f ? p.scale : (float)(1.0 / sqrt((double)d));
    a.causal = p.causal != 0;
    a.window = p.window;
    a.softcap = p.softcap;
    a.alibi_slopes = p.alibi_slopes;
    a.sinks = p.sinks;
    a.kv_splits = p.kv_splits;
    st = call_done(dev, dev->plugin->vt.attention(s->state, &a));
    host_free(dev->context, starts);
    return st;
}

/* --- RoPE + KV append ------------------------------------------------------------------------ */

void trit_rope_params_init(trit_rope_params *p)
{
    if (!p)
        return;
    memset(p, 0, sizeof(*p));
    p->size = sizeof(*p);
    p->mode = TRIT_ROPE_NORMAL;
    p->base = 10000.0f;
}

trit_status trit_rope_kv_append(trit_stream *s, trit_tensor *q, const trit_tensor *k_new,
                                const trit_tensor *v_new, const trit_kv_cache *cache,
                                uint32_t n_seqs, const int32_t *q_lens, const int32_t *start_pos,
                                const trit_rope_params *params)
{
    static const char op[] = "rope_kv_append";
    trit_clear_error();
    if (!s || !k_new || !v_new || !cache || !q_lens || !start_pos)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "%s: stream, k_new, v_new, cache, q_lens or start_pos is NULL", op);
    if (n_seqs == 0)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: n_seqs is 0", op);
    trit_rope_params p;
    trit_rope_params_init(&p);
    if (params) {
        trit_status st = HOST_CHECK_SIZE(op, "params", params, trit_rope_params);
        if (st != TRIT_OK)
            return st;
        memcpy(&p, params, params->size < sizeof(p) ? params->size : sizeof(p));
    }
    trit_device *dev = s->device;
    trit_status st;
    cache_shape cs;
    if ((st = check_arg(op, "k_new", k_new, s, 3)) != TRIT_OK ||
        (st = check_arg(op, "v_new", v_new, s, 3)) != TRIT_OK ||
        (st = check_float(op, "k_new", k_new)) != TRIT_OK ||
        (st = check_float(op, "v_new", v_new)) != TRIT_OK ||
        (st = check_cache(op, cache, s, n_seqs, &cs)) != TRIT_OK)
        return st;
    trit_kv_cache c = cache_copy(cache);
    int64_t t = k_new->shape[0], hkv = k_new->shape[1], d = k_new->shape[2];
    for (int i = 0; i < 3; i++)
        if (v_new->shape[i] != k_new->shape[i])
            return trit_fail(TRIT_ERROR_SHAPE_MISMATCH, "%s: k_new and v_new shapes differ", op);
    if (hkv != cs.n_kv_heads || d != cs.head_dim)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                         "%s: k_new is [%lld, %lld, %lld] but the cache has %lld KV heads of dim "
                         "%lld",
                         op, (long long)t, (long long)hkv, (long long)d, (long long)cs.n_kv_heads,
                         (long long)cs.head_dim);
    if (!head_dim_ok(d))
        return trit_fail(TRIT_ERROR_UNSUPPORTED,
                         "%s: head dim %lld is not supported (64, 80, 96, 128, 256)", op,
                         (long long)d);
    int64_t h = hkv;
    if (q) {
        if ((st = check_arg(op, "q", q, s, 3)) != TRIT_OK ||
            (st = check_float(op, "q", q)) != TRIT_OK ||
            (st = check_output_layout(op, "q", q)) != TRIT_OK)
            return st;
        h = q->shape[1];
        if (q->shape[0] != t || q->shape[2] != d)
            return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                             "%s: q is [%lld, %lld, %lld] but k_new has %lld tokens of dim %lld",
                             op, (long long)q->shape[0], (long long)h, (long long)q->shape[2],
                             (long long)t, (long long)d);
        if (h % hkv != 0)
            return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                             "%s: %lld query heads is not a multiple of %lld KV heads", op,
                             (long long)h, (long long)hkv);
        if (h > INT32_MAX)
            return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: %lld heads is more than int32 holds", op,
                             (long long)h);
        if ((st = check_no_overlap(op, "q", q, "k_new", k_new)) != TRIT_OK ||
            (st = check_no_overlap(op, "q", q, "v_new", v_new)) != TRIT_OK ||
            (st = check_no_overlap(op, "q", q, "cache k", &c.k)) != TRIT_OK ||
            (st = check_no_overlap(op, "q", q, "cache v", &c.v)) != TRIT_OK)
            return st;
    }
    /* The cache is this op's output: no two of its slots may share memory. */
    if ((st = check_output_layout(op, "cache k", &c.k)) != TRIT_OK ||
        (st = check_output_layout(op, "cache v", &c.v)) != TRIT_OK)
        return st;
    if ((st = check_no_overlap(op, "cache k", &c.k, "k_new", k_new)) != TRIT_OK ||
        (st = check_no_overlap(op, "cache k", &c.k, "v_new", v_new)) != TRIT_OK ||
        (st = check_no_overlap(op, "cache v", &c.v, "k_new", k_new)) != TRIT_OK ||
        (st = check_no_overlap(op, "cache v", &c.v, "v_new", v_new)) != TRIT_OK)
        return st;
    if (p.mode != TRIT_ROPE_NORMAL && p.mode != TRIT_ROPE_NEOX)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: unknown RoPE mode %d", op, (int)p.mode);
    if (!(p.base > 0.0f) || !isfinite(p.base))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: RoPE base %g must be > 0", op,
                         (double)p.base);
    int32_t rot = p.rot_dims ? p.rot_dims : (int32_t)d;
    if (rot < 2 || rot > d || rot % 2 != 0)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: rot_dims %d must be even and in 2..%lld",
                         op, (int)p.rot_dims, (long long)d);
    int64_t total = 0;
    for (uint32_t i = 0; i < n_seqs; i++) {
        if (q_lens[i] < 0 || start_pos[i] < 0)
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                             "%s: sequence %u has q_len %d and start_pos %d (need >= 0)", op, i,
                             (int)q_lens[i], (int)start_pos[i]);
        int64_t last = (int64_t)start_pos[i] + q_lens[i] - 1;
        if ((st = check_positions(op, &c, &cs, i, start_pos[i], last)) != TRIT_OK)
            return st;
        total += q_lens[i];
    }
    if (total != t)
        return trit_fail(TRIT_ERROR_SHAPE_MISMATCH,
                         "%s: k_new has %lld tokens but the q_lens add up to %lld", op,
                         (long long)t, (long long)total);
    if (cs.paged && (st = check_paged_writes(op, &c, &cs, n_seqs, q_lens, start_pos)) != TRIT_OK)
        return st;

    trit_op_desc desc;
    memset(&desc, 0, sizeof(desc));
    desc.size = sizeof(desc);
    desc.op = TRIT_OP_ROPE_KV_APPEND;
    desc.features = (p.mode == TRIT_ROPE_NEOX ? TRIT_FEATURE_NEOX : 0u) |
                    (rot != (int32_t)d ? TRIT_FEATURE_PARTIAL_ROTARY : 0u);
    desc.x_dtype = q ? q->dtype : k_new->dtype;
    desc.y_dtype = k_new->dtype;
    desc.kv_dtype = c.k.dtype;
    desc.head_dim = (int32_t)d;
    desc.paged = cs.paged;
    if ((st = check_supported(dev, &desc)) != TRIT_OK)
        return st;

    /* In size_t: n_seqs + 1 in 32 bits wraps to 0 for n_seqs = UINT32_MAX. */
    int64_t *starts = host_alloc(dev->context, ((size_t)n_seqs + 1) * sizeof(int64_t));
    if (!starts)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op);
    starts[0] = 0;
    for (uint32_t i = 0; i < n_seqs; i++)
        starts[i + 1] = starts[i] + q_lens[i];

    trit_plugin_rope_args a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.has_q = q != NULL;
    if (q)
        host_plugin_tensor(q, &a.q);
    host_plugin_tensor(k_new, &a.k_new);
    host_plugin_tensor(v_new, &a.v_new);
    plugin_cache(cache, &a.cache);
    a.n_seqs = n_seqs;
    a.q_lens = q_lens;
    a.start_pos = start_pos;
    a.q_starts = starts;
    a.n_heads = (int32_t)h;
    a.n_kv_heads = (int32_t)hkv;
    a.head_dim = (int32_t)d;
    a.mode = p.mode;
    a.base = p.base;
    a.rot_dims = rot;
    st = call_done(dev, dev->plugin->vt.rope_kv_append(s->state, &a));
    host_free(dev->context, starts);
    return st;
}
