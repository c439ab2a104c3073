/*
 * attention.c — tiled attention with online softmax on the CPU: prefill and split-KV decode.
 *
 * Tiling. A work item is one KV head g of one sequence, a block of its query rows (the H/Hkv
 * query heads that read g, times up to rows_max/(H/Hkv) consecutive query tokens) and a range of
 * keys. It walks its keys in tiles of 64 (32 for D = 256), gathering the tile's K and V row
 * addresses (contiguous or paged, any strides) and prefetching the next tile's rows while this one
 * computes: every row of the item scores against the tile, takes one online-softmax step and
 * accumulates P.V. So each K/V element is read once per KV head, not once per query head, and
 * the score matrix never exists beyond one rows x tile block. f16 K/V is widened to f32 in
 * registers when few rows share the tile (decode; a separate conversion pass would cost a store
 * and a reload per element) and into per-thread scratch once per tile when many rows do
 * (prefill). Long contexts with few items are cut into kv_splits key ranges whose partial
 * (max, sum, output) triples a second pass combines.
 *
 * Threads. Items are sorted by cost and taken one at a time from an atomic counter by all the
 * pool's threads; an unsplit item writes its own output rows, a split item writes its partial
 * and the combine pass (one group of splits per task) writes the output. No two tasks write the
 * same bytes.
 *
 * Floor. Decode must stream K and V once: 2 * kv_len * Hkv * D * sizeof(kv). For 20/5 heads,
 * D = 128, 4096 f16 tokens that is 10.5 MB: 0.32 ms at the ~33 GB/s this 2-core EPYC (Zen 4,
 * 3.6 GHz) reads from DRAM, 0.15 ms from L3 (~70 GB/s) when the cache is warm. The arithmetic
 * is 2 * H * kv_len * D = 21 M FMAs, 0.18 ms at one 16-lane FMA per cycle on each core, so warm
 * decode is compute-bound and cold decode memory-bound. Prefill is compute-bound: 2 * H * D FMAs
 * per visible (query, key) pair, 11.7 ms on one core for 512 causal queries with 20 heads.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "cpu.h"

/* Partial results of split items may take at most this much scratch; larger kv_splits requests
 * are reduced until they fit (results agree within tolerance whatever the split count). */
#define ATTN_PARTIAL_BYTES_MAX ((uint64_t)64 << 20)

/* Items with at most this many query rows read f16 K/V straight from the cache. */
#define ATTN_FUSED_ROWS_MAX 8

/* What padded keys point to: zeros read as f32 or f16 alike. */
static const float attn_zero_row[256];

/* --- portable kernels ------------------------------------------------------------------------ */

static void load_rows_portable(float *dst, const void *const *src, int n, int d, trit_dtype dt,
                               float mul)
{
    for (int r = 0; r < n; r++) {
        float *o = dst + (size_t)r * d;
        if (dt == TRIT_DTYPE_F16) {
            const uint16_t *h = src[r];
            for (int i = 0; i < d; i++)
                o[i] = mul * cpu_half_to_float(h[i]);
        } else {
            const float *f = src[r];
            for (int i = 0; i < d; i++)
                o[i] = mul * f[i];
        }
    }
}

/* Row `row` of f32 or f16 values as f32. */
static void widen_row(float *dst, const void *row, trit_dtype dt, int d)
{
    if (dt == TRIT_DTYPE_F16) {
        const uint16_t *h = row;
        for (int i = 0; i < d; i++)
            dst[i] = cpu_half_to_float(h[i]);
    } else {
        memcpy(dst, row, (size_t)d * sizeof(float));
    }
}

static void scores_portable(const float *q, int rows, const void *const *k, trit_dtype kdt,
                            int n_keys, int d, float *s, int lds)
{
    float kc[256];
    for (int c = 0; c < n_keys; c++) {
        widen_row(kc, k[c], kdt, d);
        for (int r = 0; r < rows; r++) {
            const float *qr = q + (size_t)r * d;
            /* Eight partial sums (d is a multiple of 16): one vector's worth of independent
             * chains that the compiler may keep in a register. */
            float acc[8] = {0};
            for (int i = 0; i < d; i += 8)
                for (int u = 0; u < 8; u++)
                    acc[u] += qr[i + u] * kc[i + u];
            s[(size_t)r * lds + c] =
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
    }
}

static float softmax_row_portable(float *s, int n, const attn_row *row, float *m_io, float *l_io)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        float x = s[i];
        if (i < row->lo || i >= row->hi) {
            x = -INFINITY;
        } else {
            if (row->softcap > 0)
                x = row->softcap * tanhf(x * row->inv_softcap);
            if (row->has_alibi)
                x += row->slope * (row->bias0 + (float)i);
        }
        s[i] = x;
        mx = x > mx ? x : mx;
    }
    float m_old = *m_io, m_new = m_old > mx ? m_old : mx;
    if (m_new == -INFINITY) {
        memset(s, 0, (size_t)n * sizeof(float));
        return 1.0f;
    }
    float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
    float sum = 0;
    for (int i = 0; i < n; i++) {
        float p = s[i] == -INFINITY ? 0.0f : expf(s[i] - m_new);
        s[i] = p;
        sum += p;
    }
    *l_io = *l_io * alpha + sum;
    *m_io = m_new;
    return alpha;
}

static void accumulate_portable(float *o, const float *alpha, int rows, const float *p, int ldp,
                                const void *const *v, trit_dtype vdt, int n_keys, int d)
{
    float vc[256];
    for (int r = 0; r < rows; r++)
        if (alpha[r] != 1.0f)
            for (int i = 0; i < d; i++)
                o[(size_t)r * d + i] *= alpha[r];
    for (int c = 0; c < n_keys; c++) {
        widen_row(vc, v[c], vdt, d);
        for (int r = 0; r < rows; r++) {
            float w = p[(size_t)r * ldp + c];
            if (w == 0.0f)
                continue;
            float *orow = o + (size_t)r * d;
            for (int i = 0; i < d; i++)
                orow[i] += w * vc[i];
        }
    }
}

static void store_row_portable(void *dst, const float *src, int d, trit_dtype dt, float mul)
{
    if (dt == TRIT_DTYPE_F16) {
        uint16_t *h = dst;
        for (int i = 0; i < d; i++)
            h[i] = cpu_float_to_half(mul * src[i]);
    } else {
        float *f = dst;
        for (int i = 0; i < d; i++)
            f[i] = mul * src[i];
    }
}

const attn_kernels attn_kernels_portable = {
    load_rows_portable,  scores_portable,    softmax_row_portable,
    accumulate_portable, store_row_portable,
};

/* --- planning -------------------------------------------------------------------------------- */

/* One unit of work: query heads [head0, head0 + n_heads) of KV head kv_head, query tokens
 * [tok0, tok0 + n_tok) (positions pos0...), against keys [j_begin, j_end). Row r of the item is
 * token r / n_heads, head r % n_heads. */
typedef struct attn_item {
    int32_t seq, kv_head, head0, n_heads, n_tok, pos0, j_begin, j_end;
    int64_t tok0;
    int64_t partial; /* float offset of this split's partial result; -1: write the output */
    int64_t cost;
} attn_item;

/* The rows of one (sequence, head block, token block) whose keys were split. */
typedef struct attn_group {
    int32_t head0, n_heads, n_tok, n_splits;
    int64_t tok0;
    int64_t partial; /* float offset of split 0; split k follows at k * rows * (d + 2) */
} attn_group;

typedef struct attn_job {
    const trit_plugin_attention_args *a;
    const attn_kernels *kern;
    int d, tile, rows_max;
    attn_item *items;
    int64_t n_items;
    attn_group *groups;
    int64_t n_groups;
    float *partials;
    char *scratch;
    size_t scratch_stride; /* bytes per thread */
    _Atomic int64_t next;  /* next item to hand out */
} attn_job;

static size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

/* Per-thread scratch, carved in this order. */
typedef struct attn_scratch {
    float *q, *o, *s, *k, *v, *m, *l, *alpha;
    int32_t *lo, *hi, *pos;
    const void **kp, **vp, **qp, **kt, **vt;
} attn_scratch;

static size_t scratch_layout(const attn_job *job, char *base, attn_scratch *sc)
{
    const size_t rm = (size_t)job->rows_max, t = (size_t)job->tile;
    const size_t rows_d = rm * (size_t)job->d, rows_t = rm * t, tile_d = t * (size_t)job->d;
    size_t off = 0;
#define CARVE(field, type, count)                                                                  \
    do {                                                                                           \
        if (sc)                                                                                    \
            sc->field = (type *)(void *)(base + off);                                              \
        off += align64((count) * sizeof(type));                                                    \
    } while (0)
    CARVE(q, float, rows_d);
    CARVE(o, float, rows_d);
    CARVE(s, float, rows_t);
    CARVE(k, float, tile_d);
    CARVE(v, float, tile_d);
    CARVE(m, float, rm);
    CARVE(l, float, rm);
    CARVE(alpha, float, rm);
    CARVE(lo, int32_t, rm);
    CARVE(hi, int32_t, rm);
    CARVE(pos, int32_t, rm);
    CARVE(kp, const void *, 2 * t); /* this tile's rows, then the next one's */
    CARVE(vp, const void *, 2 * t);
    CARVE(qp, const void *, rm);
    CARVE(kt, const void *, t); /* rows of the converted tile */
    CARVE(vt, const void *, t);
#undef CARVE
    return off;
}

static int cmp_item_cost(const void *pa, const void *pb)
{
    const attn_item *a = pa, *b = pb;
    return a->cost < b->cost ? 1 : a->cost > b->cost ? -1 : 0;
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

/* Walks every (sequence, token block, head block) and either counts them (items == NULL) or
 * emits items and groups for `splits` requested splits. Returns the number of groups. */
static int64_t plan_walk(attn_job *job, int32_t splits, int auto_splits, int64_t *out_items,
                         uint64_t *out_partial_floats)
{
    const trit_plugin_attention_args *a = job->a;
    int ratio = a->n_heads / a->n_kv_heads;
    int hb = ratio < job->rows_max ? ratio : job->rows_max;
    int tb = job->rows_max / hb;
    int64_t n_items = 0, n_groups = 0;
    uint64_t partial = 0;
    for (uint32_t s = 0; s < a->n_seqs; s++) {
        int32_t q_len = a->q_lens[s], kv_len = a->kv_lens[s];
        for (int32_t t0 = 0; t0 < q_len; t0 += tb) {
            int32_t nt = q_len - t0 < tb ? q_len - t0 : tb;
            int32_t p0 = kv_len - q_len + t0;
            int32_t jb, je;
            key_range(a, kv_len, p0, p0 + nt - 1, &jb, &je);
            int32_t tiles = (je - jb + job->tile - 1) / job->tile;
            int32_t ns = splits < tiles ? splits : tiles;
            /* An automatic split shorter than two tiles costs more than it gains. */
            if (auto_splits && ns > tiles / 2)
                ns = tiles / 2 > 1 ? tiles / 2 : 1;
            if (ns < 1)
                ns = 1;
            for (int g = 0; g < a->n_kv_heads; g++) {
                for (int h0 = 0; h0 < ratio; h0 += hb) {
                    int nh = ratio - h0 < hb ? ratio - h0 : hb;
                    uint64_t rows = (uint64_t)nh * (uint64_t)nt;
                    uint64_t split_floats = rows * (uint64_t)(job->d + 2);
                    if (job->items) {
                        if (ns > 1) {
                            attn_group *gr = &job->groups[n_groups];
                            gr->head0 = g * ratio + h0;
                            gr->n_heads = nh;
                            gr->n_tok = nt;
                            gr->n_splits = ns;
                            gr->tok0 = a->q_starts[s] + t0;
                            gr->partial = (int64_t)partial;
                        }
                        for (int32_t k = 0; k < ns; k++) {
                            attn_item *it = &job->items[n_items + k];
                            it->seq = (int32_t)s;
                            it->kv_head = g;
                            it->head0 = g * ratio + h0;
                            it->n_heads = nh;
                            it->n_tok = nt;
                            it->pos0 = p0;
                            it->tok0 = a->q_starts[s] + t0;
                            it->j_begin = jb + (int32_t)((int64_t)tiles * k / ns) * job->tile;
                            it->j_end =
                                k + 1 == ns
                                    ? je
                                    : jb + (int32_t)((int64_t)tiles * (k + 1) / ns) * job->tile;
                            it->partial =
                                ns > 1 ? (int64_t)(partial + (uint64_t)k * split_floats) : -1;
                            it->cost = (int64_t)rows * (it->j_end - it->j_begin + job->tile);
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

/* --- one work item --------------------------------------------------------------------------- */

static inline const char *cache_row(const trit_plugin_tensor *t, const trit_plugin_kv_cache *c,
                                    const char *base, size_t es, int32_t seq, int64_t j, int g)
{
    int64_t blk = seq, row = j;
    if (c->block_table) {
        int64_t p = t->shape[1];
        blk = c->block_table[(int64_t)seq * c->max_blocks_per_seq + j / p];
        row = j % p;
    }
    return base + (size_t)(blk * t->strides[0] + row * t->strides[1] + g * t->strides[2]) * es;
}

/* Writes o / l (with the sink folded into the denominator) to one output row; zeros when the
 * row saw no key. */
static void finish_row(const attn_job *job, float *o, float m, float l, int head, void *dst)
{
    const trit_plugin_attention_args *a = job->a;
    float mul = 0.0f;
    if (l > 0.0f) {
        if (a->sinks) {
            float sink = a->sinks[head];
            float mx = m > sink ? m : sink;
            float keep = expf(m - mx);
            mul = keep / (l * keep + expf(sink - mx));
        } else {
            mul = 1.0f / l;
        }
    } else {
        memset(o, 0, (size_t)job->d * sizeof(float));
    }
    job->kern->store_row(dst, o, job->d, a->out.dtype, mul);
}

static char *out_row(const trit_plugin_attention_args *a, int64_t tok, int head)
{
    const trit_plugin_tensor *t = &a->out;
    return (char *)cpu_tensor_ptr(t) + (size_t)(tok * t->strides[0] + head * t->strides[1]) *
                                           (a->out.dtype == TRIT_DTYPE_F16 ? 2 : 4);
}

static void run_item(const attn_job *job, const attn_item *it, int thread)
{
    const trit_plugin_attention_args *a = job->a;
    const attn_kernels *kern = job->kern;
    const int d = job->d, tile = job->tile;
    attn_scratch sc;
    scratch_layout(job, job->scratch + (size_t)thread * job->scratch_stride, &sc);

    const int nh = it->n_heads;
    const int rows = nh * it->n_tok;
    const size_t qes = a->q.dtype == TRIT_DTYPE_F16 ? 2 : 4;
    const char *qbase = cpu_tensor_ptr(&a->q);
    const int32_t kv_len = a->kv_lens[it->seq];
    for (int r = 0; r < rows; r++) {
        int t = r / nh, h = it->head0 + r % nh;
        sc.qp[r] = qbase + (size_t)((it->tok0 + t) * a->q.strides[0] + h * a->q.strides[1]) * qes;
        int32_t p = it->pos0 + t, lo, hi;
        key_range(a, kv_len, p, p, &lo, &hi);
        sc.pos[r] = p;
        sc.lo[r] = lo > it->j_begin ? lo : it->j_begin;
        sc.hi[r] = hi < it->j_end ? hi : it->j_end;
        sc.m[r] = -INFINITY;
        sc.l[r] = 0.0f;
    }
    /* Folding the scale into q costs one rounding of q, far inside the f32 tolerance. */
    kern->load_rows(sc.q, sc.qp, rows, d, a->q.dtype, a->scale);
    memset(sc.o, 0, (size_t)rows * d * sizeof(float));

    const trit_plugin_kv_cache *c = &a->cache;
    const size_t kes = c->k.dtype == TRIT_DTYPE_F16 ? 2 : 4;
    const char *kbase = cpu_tensor_ptr(&c->k), *vbase = cpu_tensor_ptr(&c->v);
    attn_row row;
    memset(&row, 0, sizeof(row));
    row.softcap = a->softcap;
    row.inv_softcap = a->softcap > 0 ? 1.0f / a->softcap : 0.0f;
    row.has_alibi = a->alibi_slopes != NULL;

    /* f16 rows are widened inside the kernels while few query rows share them; for a large
     * block of rows one conversion into scratch, reused by every row block, is cheaper. f32
     * rows are always read in place. */
    const int convert = c->k.dtype == TRIT_DTYPE_F16 && rows > ATTN_FUSED_ROWS_MAX;
    const trit_dtype tile_dt = convert ? TRIT_DTYPE_F32 : c->k.dtype;
    const size_t row_bytes = (size_t)d * kes;
    const void **kp = sc.kp, **vp = sc.vp, **kp_next = sc.kp + tile, **vp_next = sc.vp + tile;
    if (convert)
        for (int i = 0; i < tile; i++) {
            sc.kt[i] = sc.k + (size_t)i * d;
            sc.vt[i] = sc.v + (size_t)i * d;
        }
    for (int i = 0; i < tile && it->j_begin + i < it->j_end; i++) {
        kp[i] = cache_row(&c->k, c, kbase, kes, it->seq, it->j_begin + i, it->kv_head);
        vp[i] = cache_row(&c->v, c, vbase, kes, it->seq, it->j_begin + i, it->kv_head);
    }
    for (int32_t j0 = it->j_begin; j0 < it->j_end; j0 += tile) {
        int n = it->j_end - j0 < tile ? it->j_end - j0 : tile;
        int npad = (n + ATTN_KEY_PAD - 1) / ATTN_KEY_PAD * ATTN_KEY_PAD;
        const void **kt = kp, **vt = vp;
        if (convert) {
            kern->load_rows(sc.k, kp, n, d, c->k.dtype, 1.0f);
            kern->load_rows(sc.v, vp, n, d, c->v.dtype, 1.0f);
            kt = sc.kt;
            vt = sc.vt;
        }
        /* Padded keys are masked, but 0 * garbage could still be NaN: they read zeros. */
        for (int i = n; i < npad; i++)
            kt[i] = vt[i] = attn_zero_row;

        /* The next tile's rows are strided (Hkv rows apart, or scattered over blocks), which
         * the hardware prefetchers follow poorly: ask for them while this tile computes. */
        int32_t j1 = j0 + tile;
        for (int i = 0; i < tile && j1 + i < it->j_end; i++) {
            kp_next[i] = cache_row(&c->k, c, kbase, kes, it->seq, j1 + i, it->kv_head);
            vp_next[i] = cache_row(&c->v, c, vbase, kes, it->seq, j1 + i, it->kv_head);
            for (size_t off = 0; off < row_bytes; off += 64) {
                __builtin_prefetch((const char *)kp_next[i] + off, 0, 2);
                __builtin_prefetch((const char *)vp_next[i] + off, 0, 2);
            }
        }

        kern->scores(sc.q, rows, kt, tile_dt, npad, d, sc.s, tile);
        for (int r = 0; r < rows; r++) {
            int lo = sc.lo[r] - j0, hi = sc.hi[r] - j0;
            row.lo = lo < 0 ? 0 : lo;
            row.hi = hi > n ? n : hi;
            if (row.has_alibi) {
                row.slope = a->alibi_slopes[it->head0 + r % nh];
                row.bias0 = (float)(j0 - sc.pos[r]);
            }
            sc.alpha[r] =
                kern->softmax_row(sc.s + (size_t)r * tile, npad, &row, &sc.m[r], &sc.l[r]);
        }
        kern->accumulate(sc.o, sc.alpha, rows, sc.s, tile, vt, tile_dt, npad, d);

        const void **swap = kp;
        kp = kp_next;
        kp_next = swap;
        swap = vp;
        vp = vp_next;
        vp_next = swap;
    }

    if (it->partial < 0) {
        for (int r = 0; r < rows; r++) {
            int h = it->head0 + r % nh;
            finish_row(job, sc.o + (size_t)r * d, sc.m[r], sc.l[r], h,
                       out_row(a, it->tok0 + r / nh, h));
        }
    } else {
        float *dst = job->partials + it->partial;
        memcpy(dst, sc.o, (size_t)rows * d * sizeof(float));
        memcpy(dst + (size_t)rows * d, sc.m, (size_t)rows * sizeof(float));
        memcpy(dst + (size_t)rows * d + rows, sc.l, (size_t)rows * sizeof(float));
    }
}

/* Merges the splits of one group: out = sum_k e^(m_k - M) o_k / (sum_k e^(m_k - M) l_k + sink). */
static void combine_group(const attn_job *job, const attn_group *gr, int thread)
{
    const trit_plugin_attention_args *a = job->a;
    const int d = job->d, nh = gr->n_heads, rows = nh * gr->n_tok;
    const size_t stride = (size_t)rows * (d + 2);
    const float *base = job->partials + gr->partial;
    attn_scratch sc;
    scratch_layout(job, job->scratch + (size_t)thread * job->scratch_stride, &sc);
    float *acc = sc.o;
    for (int r = 0; r < rows; r++) {
        int h = gr->head0 + r % nh;
        float mx = -INFINITY;
        for (int k = 0; k < gr->n_splits; k++) {
            const float *part = base + k * stride;
            float m = part[(size_t)rows * d + r], l = part[(size_t)rows * d + rows + r];
            if (l > 0.0f && m > mx)
                mx = m;
        }
        if (mx == -INFINITY) {
            finish_row(job, acc, -INFINITY, 0.0f, h, out_row(a, gr->tok0 + r / nh, h));
            continue;
        }
        if (a->sinks && a->sinks[h] > mx)
            mx = a->sinks[h];
        float denom = a->sinks ? expf(a->sinks[h] - mx) : 0.0f;
        memset(acc, 0, (size_t)d * sizeof(float));
        for (int k = 0; k < gr->n_splits; k++) {
            const float *part = base + k * stride;
            float m = part[(size_t)rows * d + r], l = part[(size_t)rows * d + rows + r];
            if (!(l > 0.0f))
                continue;
            float w = expf(m - mx);
            denom += w * l;
            const float *o = part + (size_t)r * d;
            for (int i = 0; i < d; i++)
                acc[i] += w * o[i];
        }
        job->kern->store_row(out_row(a, gr->tok0 + r / nh, h), acc, d, a->out.dtype, 1.0f / denom);
    }
}

static void item_task(void *ctx, int64_t begin, int64_t end, int thread)
{
    attn_job *job = ctx;
    (void)begin;
    (void)end;
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (i >= job->n_items)
            break;
        run_item(job, &job->items[i], thread);
    }
}

static void combine_task(void *ctx, int64_t begin, int64_t end, int thread)
{
    attn_job *job = ctx;
    for (int64_t g = begin; g < end; g++)
        combine_group(job, &job->groups[g], thread);
}

/* --- entry points ---------------------------------------------------------------------------- */

const char *cpu_attention_unsupported(const cpu_device *dev, const trit_op_desc *desc)
{
    (void)dev;
    if (desc->op != TRIT_OP_ATTENTION)
        return "not an attention op";
    return cpu_head_op_unsupported(desc, "q must be f32 or f16", "out must be f32 or f16");
}

const attn_kernels *attn_kernels_select(const cpu_device *dev)
{
    switch (dev->isa) {
    case CPU_ISA_AVX512: return &attn_kernels_avx512;
    case CPU_ISA_AVX2: return &attn_kernels_avx2;
    case CPU_ISA_PORTABLE: break;
    }
    return &attn_kernels_portable;
}

trit_status cpu_attention(cpu_device *dev, const trit_plugin_attention_args *args)
{
    attn_job job;
    memset(&job, 0, sizeof(job));
    job.a = args;
    job.kern = attn_kernels_select(dev);
    job.d = args->head_dim;
    /* 64 keys x D f32 for K and V stay within L2 next to the rows' q and o. */
    job.tile = job.d <= 128 ? 64 : 32;
    job.rows_max = job.d <= 128 ? 64 : 32;
    const int threads = cpu_pool_threads(dev->pool);

    /* Split-KV: automatic splits only when the unsplit items would leave threads idle; then
     * about eight items per thread, in a multiple of the thread count so that equal splits end
     * together. */
    int64_t n_items;
    uint64_t partial_floats;
    plan_walk(&job, 1, 0, &n_items, &partial_floats);
    int auto_splits = args->kv_splits == 0;
    int32_t splits = args->kv_splits > 0 ? args->kv_splits : 1;
    if (auto_splits && threads > 1 && n_items < 4 * (int64_t)threads) {
        int64_t want = (8 * (int64_t)threads + n_items - 1) / n_items;
        while ((n_items * want) % threads)
            want++;
        splits = (int32_t)want;
    }
    int64_t n_groups = plan_walk(&job, splits, auto_splits, &n_items, &partial_floats);
    while (splits > 1 && partial_floats * sizeof(float) > ATTN_PARTIAL_BYTES_MAX) {
        splits = (splits + 1) / 2;
        n_groups = plan_walk(&job, splits, auto_splits, &n_items, &partial_floats);
    }

    job.scratch_stride = align64(scratch_layout(&job, NULL, NULL));
    size_t items_bytes = align64((size_t)n_items * sizeof(attn_item));
    size_t groups_bytes = align64((size_t)n_groups * sizeof(attn_group));
    size_t total = items_bytes + groups_bytes + (size_t)partial_floats * sizeof(float) +
                   (size_t)threads * job.scratch_stride;
    char *mem = cpu_aligned_alloc(total);
    if (!mem) {
        cpu_set_error(dev, "attention: cannot allocate %zu bytes of scratch", total);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    job.items = (attn_item *)(void *)mem;
    job.groups = (attn_group *)(void *)(mem + items_bytes);
    job.scratch = mem + items_bytes + groups_bytes;
    job.partials = (float *)(void *)(job.scratch + (size_t)threads * job.scratch_stride);
    plan_walk(&job, splits, auto_splits, &job.n_items, &partial_floats);
    job.n_groups = n_groups;
    /* Longest first, so the last items to start are the short ones. */
    qsort(job.items, (size_t)job.n_items, sizeof(attn_item), cmp_item_cost);

    atomic_init(&job.next, 0);
    cpu_pool_run(dev->pool, threads, 1, item_task, &job);
    if (job.n_groups > 0)
        cpu_pool_run(dev->pool, job.n_groups, 1, combine_task, &job);
    cpu_aligned_free(mem);
    return TRIT_OK;
}
