/*
 * attention_plan.h — host-side planning of the CUDA attention (attention.cu), kept free of CUDA
 * so tests/test_cuda_attention_plan.cpp can check it on machines without a GPU.
 *
 * A work item is one thread block. Two kinds exist:
 *  - SIMT items (attn_simt_kernel): KV head g of one sequence, a block of query rows (the H/Hkv
 *    query heads that read g, times as many consecutive tokens as fit in simt_rows; row r is token
 *    r / n_heads, head head0 + r % n_heads) and a key range. Each K/V row is read once per item.
 *    Decode, short query runs and every f32 cache take this path.
 *  - MMA items (attn_mma_kernel, f16 cache only): one query head of one sequence, up to
 *    mma_rows (64) consecutive tokens, four warps of 16 rows each, and a key range.
 * A sequence takes the MMA path when the cache is f16 and it has at least mma_min_q queries.
 *
 * Key ranges start at the first key any row of the item can see and are cut on tile boundaries
 * into kv_splits pieces; split items write (o, m, l) partials which the combine kernel merges,
 * one group of splits per (sequence, token block, head block). The functions marked
 * CUDA_ATTN_HD also run on the device, so the kernels and the tests use the same bounds.
 */
#ifndef TRIT_CUDA_ATTENTION_PLAN_H
#define TRIT_CUDA_ATTENTION_PLAN_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define CUDA_ATTN_HD static __host__ __device__ __forceinline__
#else
#define CUDA_ATTN_HD static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum { CUDA_ATTN_SIMT = 0, CUDA_ATTN_MMA = 1 };

/* One thread block's work. POD, copied to the device as is. */
typedef struct cuda_attn_item {
    int32_t seq, kv_head, head0, n_heads, n_tok, pos0;
    int32_t j_begin, j_end; /* keys [j_begin, j_end); j_end <= kv_len */
    int32_t kv_len, pad;
    int64_t tok0;    /* first query token (row of q / out) */
    int64_t partial; /* float offset of this split's partial (o, m, l); -1: write the output */
} cuda_attn_item;

/* The rows of one item whose keys were split: the combine kernel merges n_splits partials of
 * rows = n_heads * n_tok rows each, split k at partial + k * rows * (D + 2). */
typedef struct cuda_attn_group {
    int32_t head0, n_heads, n_tok, n_splits;
    int64_t tok0;
    int64_t partial;
} cuda_attn_group;

typedef struct cuda_attn_config {
    int32_t n_heads, n_kv_heads, head_dim;
    int32_t causal, window;
    int32_t mma;          /* 1: the tensor-core path may be used (f16 cache) */
    int32_t mma_min_q;    /* sequences with at least this many queries take it */
    int32_t mma_rows;     /* query rows per MMA item (16 per warp) */
    int32_t mma_tile;     /* keys per MMA tile */
    int32_t simt_rows;    /* query rows per SIMT item */
    int32_t simt_tile;    /* keys per SIMT tile */
    int32_t target_items; /* automatic split-KV aims for at least this many blocks */
    uint64_t partial_bytes_max;
} cuda_attn_config;

/* Where a plan walk writes; NULL arrays: count only. */
typedef struct cuda_attn_plan {
    cuda_attn_item *items[2]; /* [CUDA_ATTN_SIMT], [CUDA_ATTN_MMA] */
    cuda_attn_group *groups;
    int64_t n_items[2];
    int64_t n_groups;
    uint64_t partial_floats;
    int32_t splits; /* the split count asked of every row block (clamped per block) */
    int32_t auto_splits;
} cuda_attn_plan;

/* Visible keys [*lo, *hi) of query rows at positions [p_first, p_last] of a sequence with kv_len
 * keys, intersected with [j_begin, j_end): the union of what those rows may see (causal: j <= p,
 * window: p - j < window). Empty when *hi <= *lo. */
CUDA_ATTN_HD void cuda_attn_key_range(int32_t causal, int32_t window, int32_t kv_len,
                                      int32_t p_first, int32_t p_last, int32_t j_begin,
                                      int32_t j_end, int32_t *lo, int32_t *hi)
{
    int32_t b = 0, e = kv_len;
    if (window > 0 && p_first - window + 1 > 0)
        b = p_first - window + 1;
    if (causal && p_last + 1 < e)
        e = p_last + 1;
    *lo = b > j_begin ? b : j_begin;
    *hi = e < j_end ? e : j_end;
}

/* Whether the tile of keys [j0, j0 + tile) holds a key of [lo, hi): tiles for which this is 0
 * are skipped whole (by the block, or by one warp for its 16 rows). */
CUDA_ATTN_HD int cuda_attn_tile_needed(int32_t lo, int32_t hi, int32_t j0, int32_t tile)
{
    return lo < hi && j0 < hi && j0 + tile > lo;
}

/* Whether every key of the tile is visible to every row whose range is [lo_r, hi_r) with
 * lo_max the largest lo_r and hi_min the smallest hi_r: then the kernel skips the mask. */
CUDA_ATTN_HD int cuda_attn_tile_unmasked(int32_t lo_max, int32_t hi_min, int32_t j0, int32_t tile)
{
    return j0 >= lo_max && j0 + tile <= hi_min;
}

/* Query rows of an item per KV head block (head block size, tokens per block) for one path. */
static inline void cuda_attn_row_block(const cuda_attn_config *c, int path, int32_t *hb,
                                       int32_t *tb)
{
    if (path == CUDA_ATTN_MMA) {
        *hb = 1;
        *tb = c->mma_rows;
        return;
    }
    int32_t ratio = c->n_heads / c->n_kv_heads;
    *hb = ratio < c->simt_rows ? ratio : c->simt_rows;
    *tb = c->simt_rows / *hb;
}

static inline int cuda_attn_path_of(const cuda_attn_config *c, int32_t q_len)
{
    return c->mma && q_len >= c->mma_min_q ? CUDA_ATTN_MMA : CUDA_ATTN_SIMT;
}

/* Walks every (sequence, token block, head block) and counts or emits items and groups for
 * p->splits requested splits per row block. An automatic split keeps at least two tiles. */
static inline void cuda_attn_plan_walk(const cuda_attn_config *c, uint32_t n_seqs,
                                       const int32_t *q_lens, const int32_t *kv_lens,
                                       const int64_t *q_starts, cuda_attn_plan *p)
{
    const int32_t ratio = c->n_heads / c->n_kv_heads, d = c->head_dim;
    int64_t n_items[2] = {0, 0}, n_groups = 0;
    uint64_t partial = 0;
    for (uint32_t s = 0; s < n_seqs; s++) {
        const int32_t q_len = q_lens[s], kv_len = kv_lens[s];
        const int path = cuda_attn_path_of(c, q_len);
        const int32_t tile = path == CUDA_ATTN_MMA ? c->mma_tile : c->simt_tile;
        int32_t hb, tb;
        cuda_attn_row_block(c, path, &hb, &tb);
        for (int32_t t0 = 0; t0 < q_len; t0 += tb) {
            const int32_t nt = q_len - t0 < tb ? q_len - t0 : tb;
            const int32_t p0 = kv_len - q_len + t0;
            int32_t jb, je;
            cuda_attn_key_range(c->causal, c->window, kv_len, p0, p0 + nt - 1, 0, kv_len, &jb, &je);
            const int32_t tiles = je > jb ? (je - jb + tile - 1) / tile : 0;
            int32_t ns = p->splits < tiles ? p->splits : tiles;
            if (p->auto_splits && ns > tiles / 2)
                ns = tiles / 2;
            if (ns < 1)
                ns = 1;
            for (int32_t g = 0; g < c->n_kv_heads; g++) {
                for (int32_t h0 = 0; h0 < ratio; h0 += hb) {
                    const int32_t nh = ratio - h0 < hb ? ratio - h0 : hb;
                    const uint64_t split_floats = (uint64_t)nh * (uint64_t)nt * (uint64_t)(d + 2);
                    if (p->items[path]) {
                        if (ns > 1) {
                            cuda_attn_group *gr = &p->groups[n_groups];
                            gr->head0 = g * ratio + h0;
                            gr->n_heads = nh;
                            gr->n_tok = nt;
                            gr->n_splits = ns;
                            gr->tok0 = q_starts[s] + t0;
                            gr->partial = (int64_t)partial;
                        }
                        for (int32_t k = 0; k < ns; k++) {
                            cuda_attn_item *it = &p->items[path][n_items[path] + k];
                            int32_t j0 = jb + (int32_t)((int64_t)tiles * k / ns) * tile;
                            int32_t j1 = k + 1 == ns
                                             ? je
                                             : jb + (int32_t)((int64_t)tiles * (k + 1) / ns) * tile;
                            memset(it, 0, sizeof(*it));
                            it->seq = (int32_t)s;
                            it->kv_head = g;
                            it->head0 = g * ratio + h0;
                            it->n_heads = nh;
                            it->n_tok = nt;
                            it->pos0 = p0;
                            it->j_begin = j0;
                            it->j_end = j1 > j0 ? j1 : j0;
                            it->kv_len = kv_len;
                            it->tok0 = q_starts[s] + t0;
                            it->partial =
                                ns > 1 ? (int64_t)(partial + (uint64_t)k * split_floats) : -1;
                        }
                    }
                    if (ns > 1) {
                        partial += (uint64_t)ns * split_floats;
                        n_groups++;
                    }
                    n_items[path] += ns;
                }
            }
        }
    }
    p->n_items[0] = n_items[0];
    p->n_items[1] = n_items[1];
    p->n_groups = n_groups;
    p->partial_floats = partial;
}

/* Chooses the split count the way the other plugins do: kv_splits > 0 is asked of every row
 * block (clamped to its tiles); 0 splits only when the unsplit items would leave the GPU idle,
 * up to about target_items blocks; partials above partial_bytes_max halve the count until they
 * fit. Leaves p counted (items NULL) for the chosen split count. */
static inline void cuda_attn_plan_splits(const cuda_attn_config *c, uint32_t n_seqs,
                                         const int32_t *q_lens, const int32_t *kv_lens,
                                         const int64_t *q_starts, int32_t kv_splits,
                                         cuda_attn_plan *p)
{
    memset(p, 0, sizeof(*p));
    p->splits = 1;
    cuda_attn_plan_walk(c, n_seqs, q_lens, kv_lens, q_starts, p);
    const int64_t unsplit = p->n_items[0] + p->n_items[1];
    p->auto_splits = kv_splits == 0;
    p->splits = kv_splits > 0 ? kv_splits : 1;
    if (p->auto_splits && unsplit > 0 && unsplit < c->target_items)
        p->splits = (int32_t)((c->target_items + unsplit - 1) / unsplit);
    cuda_attn_plan_walk(c, n_seqs, q_lens, kv_lens, q_starts, p);
    while (p->splits > 1 && p->partial_floats * sizeof(float) > c->partial_bytes_max) {
        p->splits = (p->splits + 1) / 2;
        cuda_attn_plan_walk(c, n_seqs, q_lens, kv_lens, q_starts, p);
    }
}

#ifdef __cplusplus
}
#endif

#endif /* TRIT_CUDA_ATTENTION_PLAN_H */
