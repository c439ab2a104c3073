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
 *
 * The walk emits items in (sequence, token block, KV head, head block, split) order, which the
 * tests read; cuda_attn_plan_order then puts the MMA items heaviest first for the launch.
 */
#ifndef TRIT_CUDA_ATTENTION_PLAN_H
#define TRIT_CUDA_ATTENTION_PLAN_H

#include <stdint.h>
#include <stdlib.h>
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
    int32_t target_items; /* blocks of one full wave of the SIMT kernel (resident at once) */
    uint64_t partial_bytes_max;
    int32_t target_items_mma;   /* the same for the MMA kernel; 0: target_items */
    int32_t combine_floats_max; /* a group's rows x splits at most (the combine's shared weight
                                   table); 0: no limit */
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
    int32_t combine_rows;   /* the most rows (n_heads x n_tok) of a group */
    int32_t combine_splits; /* the most splits of a group */
    int64_t combine_floats; /* the most rows x splits of a group */
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
 * p->splits requested splits per row block. An automatic split keeps at least two tiles; no
 * group gets more rows x splits than the combine's weight table holds (combine_floats_max). */
static inline void cuda_attn_plan_walk(const cuda_attn_config *c, uint32_t n_seqs,
                                       const int32_t *q_lens, const int32_t *kv_lens,
                                       const int64_t *q_starts, cuda_attn_plan *p)
{
    const int32_t ratio = c->n_heads / c->n_kv_heads, d = c->head_dim;
    int64_t n_items[2] = {0, 0}, n_groups = 0, combine_floats = 0;
    int32_t combine_rows = 0, combine_splits = 0;
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
            if (c->combine_floats_max > 0 && (int64_t)ns * hb * nt > c->combine_floats_max)
                ns = c->combine_floats_max / (hb * nt);
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
                        if (nh * nt > combine_rows)
                            combine_rows = nh * nt;
                        if (ns > combine_splits)
                            combine_splits = ns;
                        if ((int64_t)ns * nh * nt > combine_floats)
                            combine_floats = (int64_t)ns * nh * nt;
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
    p->combine_rows = combine_rows;
    p->combine_splits = combine_splits;
    p->combine_floats = combine_floats;
}

/* The automatic split count for `unsplit` blocks and a wave of `wave` blocks: of 1 ..
 * ceil(wave / unsplit), the one whose waves finish first, counting ceil(unsplit s / wave) waves
 * of blocks 1/s as long (ties: fewer splits). 8 blocks on a wave of 324 (3 per SM on 108 SMs)
 * split 40 ways (320 blocks, one wave), not 41 (328: a second wave of 4 blocks). */
static inline int32_t cuda_attn_wave_splits(int64_t unsplit, int64_t wave)
{
    if (unsplit <= 0 || wave <= unsplit)
        return 1;
    const int64_t s_max = (wave + unsplit - 1) / unsplit;
    int64_t best = 1, best_waves = (unsplit + wave - 1) / wave;
    for (int64_t s = 2; s <= s_max; s++) {
        const int64_t waves = (unsplit * s + wave - 1) / wave;
        if (waves * best < best_waves * s) { /* waves / s < best_waves / best */
            best = s;
            best_waves = waves;
        }
    }
    return (int32_t)best;
}

/* Chooses the split count the way the other plugins do: kv_splits > 0 is asked of every row
 * block (clamped to its tiles); 0 splits only when the unsplit items would leave the GPU idle,
 * up to about one wave of blocks (target_items, or target_items_mma when most unsplit items
 * take the MMA path), rounded to whole waves (cuda_attn_wave_splits); partials above
 * partial_bytes_max halve the count until they fit. Leaves p counted (items NULL) for the
 * chosen split count. */
static inline void cuda_attn_plan_splits(const cuda_attn_config *c, uint32_t n_seqs,
                                         const int32_t *q_lens, const int32_t *kv_lens,
                                         const int64_t *q_starts, int32_t kv_splits,
                                         cuda_attn_plan *p)
{
    memset(p, 0, sizeof(*p));
    p->splits = 1;
    cuda_attn_plan_walk(c, n_seqs, q_lens, kv_lens, q_starts, p);
    const int64_t unsplit = p->n_items[0] + p->n_items[1];
    const int32_t target =
        p->n_items[CUDA_ATTN_MMA] > p->n_items[CUDA_ATTN_SIMT] && c->target_items_mma > 0
            ? c->target_items_mma
            : c->target_items;
    p->auto_splits = kv_splits == 0;
    p->splits = kv_splits > 0 ? kv_splits : 1;
    if (p->auto_splits)
        p->splits = cuda_attn_wave_splits(unsplit, target);
    cuda_attn_plan_walk(c, n_seqs, q_lens, kv_lens, q_starts, p);
    while (p->splits > 1 && p->partial_floats * sizeof(float) > c->partial_bytes_max) {
        p->splits = (p->splits + 1) / 2;
        cuda_attn_plan_walk(c, n_seqs, q_lens, kv_lens, q_starts, p);
    }
}

/* qsort order of MMA items: most keys first, then by token and head (every item has its own
 * (token block, head, first key), so the order is total and the launch deterministic). */
static inline int cuda_attn_item_heavier_first(const void *a, const void *b)
{
    const cuda_attn_item *x = (const cuda_attn_item *)a, *y = (const cuda_attn_item *)b;
    const int32_t wx = x->j_end - x->j_begin, wy = y->j_end - y->j_begin;
    if (wx != wy)
        return wx > wy ? -1 : 1;
    if (x->tok0 != y->tok0)
        return x->tok0 < y->tok0 ? -1 : 1;
    if (x->head0 != y->head0)
        return x->head0 < y->head0 ? -1 : 1;
    return x->j_begin < y->j_begin ? -1 : x->j_begin > y->j_begin;
}

/* Reorders the emitted MMA items heaviest first (most keys). Blocks start roughly in launch
 * order, so in a causal prefill the late token blocks, which see the most keys, fill the first
 * waves and the tail wave holds light blocks instead of one long block that runs alone. Items
 * carry their own partial offsets and the combine walks groups, so any order is valid. The
 * SIMT items (decode: equal key ranges) keep the walk's order. */
static inline void cuda_attn_plan_order(cuda_attn_plan *p)
{
    if (p->items[CUDA_ATTN_MMA] && p->n_items[CUDA_ATTN_MMA] > 1)
        qsort(p->items[CUDA_ATTN_MMA], (size_t)p->n_items[CUDA_ATTN_MMA], sizeof(cuda_attn_item),
              cuda_attn_item_heavier_first);
}

/* The combine's launch: each group's rows * head_dim output elements cut into `chunks` runs of
 * `chunk` elements, one block of `threads` (= chunk) threads per run, `blocks` = groups x
 * chunks, and shared memory for the weights of the rows one run touches (all of a group's
 * splits). Blocks shrink from 128 to 32 threads while there are fewer of them than SMs (or
 * half of them would cover a group), so that a decode with few groups still spreads over the
 * GPU: 32/8 heads, D = 128, batch 1 gives 8 groups of 4 rows, 128 blocks of 32 threads. */
typedef struct cuda_attn_combine_shape {
    int32_t threads, chunk, chunks;
    int64_t blocks;
    uint64_t smem_bytes;
} cuda_attn_combine_shape;

static inline void cuda_attn_combine_plan(const cuda_attn_plan *p, int32_t head_dim, int32_t sms,
                                          cuda_attn_combine_shape *out)
{
    const int64_t elems = (int64_t)p->combine_rows * head_dim;
    int32_t threads = 128;
    while (threads > 32 &&
           (threads / 2 >= elems || p->n_groups * ((elems + threads - 1) / threads) < sms))
        threads /= 2;
    out->threads = threads;
    out->chunk = threads;
    out->chunks = (int32_t)((elems + threads - 1) / threads);
    out->blocks = p->n_groups * out->chunks;
    /* A run of `chunk` elements touches at most (chunk - 1) / head_dim + 2 rows. */
    int64_t rows = (threads - 1) / head_dim + 2;
    if (rows > p->combine_rows)
        rows = p->combine_rows;
    int64_t floats = rows * p->combine_splits;
    if (floats > p->combine_floats)
        floats = p->combine_floats;
    out->smem_bytes = (uint64_t)floats * sizeof(float);
}

#ifdef __cplusplus
}
#endif

#endif /* TRIT_CUDA_ATTENTION_PLAN_H */
