/*
 * attention.c — host glue of the Vulkan attention: plans work items, uploads them with the
 * block table, ALiBi slopes and sinks, and records attention.comp (+ attention_combine.comp for
 * split-KV).
 *
 * Planning mirrors the CPU plugin (cpu/attention.c): a work item is one KV head of one sequence,
 * up to rows_max query rows that read it (the H/Hkv query heads of the KV head times consecutive
 * tokens) and a key range; each item is one workgroup. Decode has few items (sequences x KV
 * heads), too few to fill a GPU, so with kv_splits = 0 the keys are cut into splits until there
 * are about ATT_TARGET_GROUPS workgroups, keeping at least two tiles per split; the combine pass
 * merges each group of splits. The tile sizes are specialization constants chosen from the
 * device's shared-memory limit (attention.comp's header explains the kernel).
 *
 * Prefill with f16 Q and KV runs attention_coop.comp instead when the device has cooperative
 * matrices (dev->coop, decided once at device creation by vk_coop_decide in coop_matrix.h) and
 * its tiles fit in shared memory; same work items (rows_max a multiple of 16), same partial
 * format, same combine pass. Decode (one query token per sequence) keeps attention.comp: with a
 * few query rows per KV head most of a 16-row fragment would be padding, and decode is bound by
 * streaming K and V, not by arithmetic. The first call of each (path, head dim) logs its choice.
 *
 * Floor: see attention.comp (decode streams K and V once; the combine pass reads n_splits
 * partial rows per output row, a few percent of that).
 */
#include <stdlib.h>
#include <string.h>

#include "vk.h"

enum {
    ATT_WG = 128,           /* invocations per workgroup of attention.comp */
    ATT_COMBINE_WG = 64,    /* ... of attention_combine.comp */
    ATT_ITEM_WORDS = 12,    /* must match attention.comp */
    ATT_GROUP_WORDS = 8,    /* must match attention_combine.comp */
    ATT_TARGET_GROUPS = 256 /* workgroups automatic split-KV aims for */
};
#define ATT_NO_PARTIAL 0xFFFFFFFFu

/* attention.comp's push constants. */
typedef struct att_push {
    uint32_t q_off, q_s0, q_s1;
    uint32_t o_off, o_s0, o_s1;
    uint32_t k_off, k_s0, k_s1, k_s2;
    uint32_t v_off, v_s0, v_s1, v_s2;
    uint32_t block, max_blocks, table_off, alibi_off, sinks_off, n_items;
    int32_t window;
    uint32_t causal;
    float scale, softcap;
} att_push;

/* attention_combine.comp's push constants. */
typedef struct att_combine_push {
    uint32_t o_off, o_s0, o_s1;
    uint32_t groups_off, n_groups, sinks_off;
} att_combine_push;

/* Keys per tile and query rows per workgroup for head dim d, from the shared-memory limit:
 * the K/V tile (row stride d + 4), the query rows, the score block and per-row state. Returns 0
 * when not even the smallest tile fits. tk divides ATT_WG (attention.comp's score phase gives
 * each invocation one key of the tile). */
static int att_tiles(const vk_device *dev, int d, uint32_t *out_tk, uint32_t *out_rows)
{
    const uint32_t rows = d <= 128 ? 16 : 8;
    for (uint32_t tk = 64; tk >= 16; tk /= 2) {
        uint64_t bytes =
            4u * ((uint64_t)tk * (uint32_t)(d + 4) + rows * (uint32_t)d + rows * tk + 3u * rows);
        if (bytes <= dev->max_shared) {
            *out_tk = tk;
            *out_rows = rows;
            return 1;
        }
    }
    return 0;
}

/* attention_coop.comp's tiles (vk_coop_tiles in coop_matrix.h, a pure function the tests also
 * feed made-up devices). */
static int att_coop_tiles(const vk_device *dev, int d, uint32_t *out_tk, uint32_t *out_rows)
{
    const uint32_t max_wg = dev->max_wg_invocations < dev->max_wg_size[0] ? dev->max_wg_invocations
                                                                          : dev->max_wg_size[0];
    return vk_coop_tiles(&dev->coop, dev->max_shared, max_wg, (uint32_t)d, out_tk, out_rows);
}

/* Logs the first use of each (path, prefill/decode, head dim). */
static void log_path(vk_device *dev, const char *shader, int coop, int prefill, int d,
                     uint32_t rows, uint32_t tk)
{
    const int di = d == 64 ? 0 : d == 80 ? 1 : d == 96 ? 2 : d == 128 ? 3 : 4;
    const uint64_t bit = (uint64_t)1 << (coop * 16 + prefill * 8 + di);
    if (__atomic_fetch_or(&dev->attention_paths_logged, bit, __ATOMIC_RELAXED) & bit)
        return;
    vk_log(dev, TRIT_LOG_DEBUG, "vulkan: attention d=%d %s uses %s (%u rows x %u keys per tile)", d,
           prefill ? "prefill" : "decode", shader, rows, tk);
}

const char *vk_attention_unsupported(const vk_device *dev, const trit_op_desc *desc)
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
    uint32_t tk, rows;
    if (!att_tiles(dev, d, &tk, &rows))
        return "the device's shared memory is too small for the smallest attention tile";
    return NULL;
}

/* The work list: items, then groups of splits, as attention.comp / attention_combine.comp read
 * them. */
typedef struct att_plan {
    const trit_plugin_attention_args *a;
    uint32_t tile, rows_max, d;
    uint32_t *items; /* NULL: count only */
    uint32_t *groups;
    uint64_t n_items, n_groups, partial_floats;
} att_plan;

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

/* Walks every (sequence, token block, head block) and counts (p->items == NULL) or emits items
 * and groups for `splits` requested splits per row block. */
static void plan_walk(att_plan *p, int32_t splits, int auto_splits)
{
    const trit_plugin_attention_args *a = p->a;
    const int ratio = a->n_heads / a->n_kv_heads;
    const int hb = ratio < (int)p->rows_max ? ratio : (int)p->rows_max;
    const int tb = (int)p->rows_max / hb;
    uint64_t n_items = 0, n_groups = 0, partial = 0;
    for (uint32_t s = 0; s < a->n_seqs; s++) {
        const int32_t q_len = a->q_lens[s], kv_len = a->kv_lens[s];
        for (int32_t t0 = 0; t0 < q_len; t0 += tb) {
            const int32_t nt = q_len - t0 < tb ? q_len - t0 : tb;
            const int32_t p0 = kv_len - q_len + t0;
            int32_t jb, je;
            key_range(a, kv_len, p0, p0 + nt - 1, &jb, &je);
            const int32_t tiles = je > jb ? (je - jb + (int32_t)p->tile - 1) / (int32_t)p->tile : 0;
            int32_t ns = splits < tiles ? splits : tiles;
            /* An automatic split shorter than two tiles costs more than it gains. */
            if (auto_splits && ns > tiles / 2)
                ns = tiles / 2;
            if (ns < 1)
                ns = 1;
            for (int g = 0; g < a->n_kv_heads; g++) {
                for (int h0 = 0; h0 < ratio; h0 += hb) {
                    const int nh = ratio - h0 < hb ? ratio - h0 : hb;
                    const uint64_t rows = (uint64_t)nh * (uint64_t)nt;
                    const uint64_t split_floats = rows * (p->d + 2);
                    if (p->items) {
                        if (ns > 1) {
                            uint32_t *gr = p->groups + n_groups * ATT_GROUP_WORDS;
                            gr[0] = (uint32_t)(g * ratio + h0);
                            gr[1] = (uint32_t)nh;
                            gr[2] = (uint32_t)nt;
                            gr[3] = (uint32_t)ns;
                            gr[4] = (uint32_t)(a->q_starts[s] + t0);
                            gr[5] = (uint32_t)partial;
                        }
                        for (int32_t k = 0; k < ns; k++) {
                            uint32_t *it = p->items + (n_items + (uint64_t)k) * ATT_ITEM_WORDS;
                            int32_t j0 = jb + (int32_t)((int64_t)tiles * k / ns) * (int32_t)p->tile;
                            int32_t j1 = k + 1 == ns
                                             ? je
                                             : jb + (int32_t)((int64_t)tiles * (k + 1) / ns) *
                                                        (int32_t)p->tile;
                            it[0] = s;
                            it[1] = (uint32_t)g;
                            it[2] = (uint32_t)(g * ratio + h0);
                            it[3] = (uint32_t)nh;
                            it[4] = (uint32_t)nt;
                            it[5] = (uint32_t)p0;
                            it[6] = (uint32_t)(a->q_starts[s] + t0);
                            it[7] = (uint32_t)j0;
                            it[8] = (uint32_t)(j1 > j0 ? j1 : j0);
                            it[9] = (uint32_t)kv_len;
                            it[10] = ns > 1 ? (uint32_t)(partial + (uint64_t)k * split_floats)
                                            : ATT_NO_PARTIAL;
                        }
                    }
                    if (ns > 1) {
                        partial += (uint64_t)ns * split_floats;
                        n_groups++;
                    }
                    n_items += (uint64_t)ns;
                }
            }
        }
    }
    p->n_items = n_items;
    p->n_groups = n_groups;
    p->partial_floats = partial;
}

/* Groups of n workgroups as x (up to the device limit) by y. */
static void grid(const vk_device *dev, uint64_t n, uint32_t *gx, uint32_t *gy)
{
    uint64_t x = n < dev->max_wg_count[0] ? n : dev->max_wg_count[0];
    *gx = (uint32_t)x;
    *gy = (uint32_t)((n + x - 1) / x);
}

static uint32_t u32(int64_t v)
{
    return (uint32_t)v;
}

/* Whether every row of view t (element 0 at index `first` of binding b; strides 0 .. n-1, the
 * last dim contiguous) starts at a multiple of `elems` elements and the binding at a multiple of
 * 16 bytes: then the shaders may read rows `elems` elements at a time (16-byte or 8-byte loads). */
static int rows_aligned(const trit_plugin_tensor *t, uint32_t first, const vk_binding *b, int n,
                        uint32_t elems)
{
    if (first % elems != 0 || b->offset % 16 != 0)
        return 0;
    for (int i = 0; i < n; i++)
        if (u32(t->strides[i]) % elems != 0)
            return 0;
    return 1;
}

/* attention_coop.comp's pipeline for these tiles. A driver may refuse to build it (the path has
 * not run on every driver that offers the extension): then the path is turned off for the device
 * for good, once (dev->coop_failed, atomic: concurrent calls may each see a failure, one logs
 * it), with a warning naming the reason, and *out_pipe is left NULL so the call, and every later
 * one, runs attention.comp. Returns an error only for what attention.comp could not survive
 * either (out of memory, device lost). The emulated kernel counts as the real one only with
 * vulkan.coop_matrix=emulate-reject (testing: the driver is asked to refuse it, see plugin.c). */
static trit_status coop_pipeline(vk_device *dev, uint32_t d, uint32_t tile, uint32_t rows,
                                 int out16, uint32_t q_vec8, uint32_t kv_vec8,
                                 const vk_pipeline **out_pipe)
{
    const int acc16 = dev->coop.acc16;
    vk_pipeline_desc pd;
    memset(&pd, 0, sizeof(pd));
    pd.shader = dev->coop.emulated
                    ? (acc16 ? "attention_coop_emu_f16acc" : "attention_coop_emu_f32acc")
                    : (acc16 ? "attention_coop_f16acc" : "attention_coop_f32acc");
    pd.spec[0] = d;
    pd.spec[1] = tile;
    pd.spec[2] = rows;
    pd.spec[3] = (uint32_t)out16;
    pd.spec[4] = dev->coop.n;
    pd.spec[5] = dev->coop.subgroup_size;
    pd.spec[6] = VK_COOP_SUBGROUPS * dev->coop.subgroup_size;
    pd.spec[7] = q_vec8;
    pd.spec[8] = kv_vec8;
    /* Fragments are per subgroup at the size the device runs them: pin it, all full. */
    pd.subgroup_size = dev->coop.subgroup_size;
    pd.n_spec = 9;
    pd.n_bindings = 6;
    pd.push_bytes = sizeof(att_push);
    pd.refuse_build = dev->coop_reject;
    char why[256];
    why[0] = '\0';
    const trit_status st = vk_pipeline_get_why(dev, &pd, out_pipe, why, sizeof(why));
    if (st == TRIT_OK)
        return TRIT_OK;
    *out_pipe = NULL;
    if (dev->coop.emulated && !dev->coop_reject)
        return st; /* the test mode's own kernel: a bug to report, not a driver to survive */
    if (st == TRIT_ERROR_OUT_OF_MEMORY || st == TRIT_ERROR_DEVICE_LOST)
        return st;
    if (!__atomic_exchange_n(&dev->coop_failed, 1, __ATOMIC_ACQ_REL))
        vk_log(dev, TRIT_LOG_WARNING,
               "vulkan: device %u: cooperative-matrix attention turned off for this device: "
               "pipeline %s (d=%u, %u rows x %u keys) could not be built (%s); attention.comp "
               "runs instead",
               dev->index, pd.shader, d, rows, tile, why[0] ? why : "no reason given");
    return TRIT_OK;
}

trit_status vk_attention(vk_stream *s, const trit_plugin_attention_args *args)
{
    vk_device *dev = vk_stream_device(s);
    const trit_plugin_attention_args *a = args;
    att_plan plan;
    memset(&plan, 0, sizeof(plan));
    plan.a = a;
    plan.d = (uint32_t)a->head_dim;
    int prefill = 0;
    for (uint32_t i = 0; i < a->n_seqs; i++)
        prefill |= a->q_lens[i] > 1;
    trit_status st;
    vk_binding b[6];
    uint32_t q_first, o_first, k_first, v_first;
    if ((st = vk_tensor_binding(dev, &a->q, &b[0], &q_first)) != TRIT_OK ||
        (st = vk_tensor_binding(dev, &a->cache.k, &b[1], &k_first)) != TRIT_OK ||
        (st = vk_tensor_binding(dev, &a->cache.v, &b[2], &v_first)) != TRIT_OK ||
        (st = vk_tensor_binding(dev, &a->out, &b[3], &o_first)) != TRIT_OK)
        return st;
    /* K/V rows 4-element aligned and bindings 16-byte aligned: vector loads (attention.comp).
     * attention_coop.comp loads 16 bytes (8 halves) where q, or K and V, rows allow. */
    const uint32_t kv_vec = rows_aligned(&a->cache.k, k_first, &b[1], 3, 4) &&
                            rows_aligned(&a->cache.v, v_first, &b[2], 3, 4) && plan.d % 4 == 0;
    const uint32_t q_vec8 = rows_aligned(&a->q, q_first, &b[0], 2, 8);
    const uint32_t kv_vec8 = rows_aligned(&a->cache.k, k_first, &b[1], 3, 8) &&
                             rows_aligned(&a->cache.v, v_first, &b[2], 3, 8);

    const vk_pipeline *coop_pipe = NULL;
    if (dev->coop.m != 0 && !__atomic_load_n(&dev->coop_failed, __ATOMIC_ACQUIRE) && prefill &&
        a->q.dtype == TRIT_DTYPE_F16 && a->cache.k.dtype == TRIT_DTYPE_F16 &&
        a->cache.v.dtype == TRIT_DTYPE_F16 &&
        att_coop_tiles(dev, a->head_dim, &plan.tile, &plan.rows_max) &&
        (st = coop_pipeline(dev, plan.d, plan.tile, plan.rows_max, a->out.dtype == TRIT_DTYPE_F16,
                            q_vec8, kv_vec8, &coop_pipe)) != TRIT_OK)
        return st;
    const int coop = coop_pipe != NULL;
    if (!coop && !att_tiles(dev, a->head_dim, &plan.tile, &plan.rows_max)) {
        vk_set_error(dev, "attention: shared memory (%u bytes) too small for head dim %d",
                     dev->max_shared, (int)a->head_dim);
        return TRIT_ERROR_UNSUPPORTED;
    }

    /* Split-KV: automatic splits only when the unsplit items would leave the device idle. */
    plan_walk(&plan, 1, 0);
    const int auto_splits = a->kv_splits == 0;
    int32_t splits = a->kv_splits > 0 ? a->kv_splits : 1;
    if (auto_splits && plan.n_items < ATT_TARGET_GROUPS / 2)
        splits = (int32_t)((ATT_TARGET_GROUPS + plan.n_items - 1) / plan.n_items);
    plan_walk(&plan, splits, auto_splits);
    while (splits > 1 && (plan.partial_floats * sizeof(float) > dev->max_range ||
                          plan.partial_floats >= ATT_NO_PARTIAL)) {
        splits = (splits + 1) / 2;
        plan_walk(&plan, splits, auto_splits);
    }

    /* meta: items | groups | block table | ALiBi slopes | sinks, all 32-bit words. */
    const int paged = a->cache.block_table != NULL;
    const uint64_t items_w = plan.n_items * ATT_ITEM_WORDS;
    const uint64_t groups_w = plan.n_groups * ATT_GROUP_WORDS;
    const uint64_t table_w =
        paged ? (uint64_t)a->n_seqs * (uint64_t)a->cache.max_blocks_per_seq : 0;
    const uint64_t heads_w = (uint64_t)a->n_heads;
    const uint64_t total_w =
        items_w + groups_w + table_w + (a->alibi_slopes ? heads_w : 0) + (a->sinks ? heads_w : 0);
    if (total_w * 4 > dev->max_range) {
        vk_set_error(dev, "attention: %llu bytes of work list exceed maxStorageBufferRange",
                     (unsigned long long)(total_w * 4));
        return TRIT_ERROR_UNSUPPORTED;
    }
    uint32_t *meta = calloc((size_t)total_w, sizeof(uint32_t));
    if (!meta) {
        vk_set_error(dev, "attention: out of host memory for the work list");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    plan.items = meta;
    plan.groups = meta + items_w;
    plan_walk(&plan, splits, auto_splits);
    uint64_t at = items_w + groups_w;
    att_push pc;
    memset(&pc, 0, sizeof(pc));
    pc.table_off = (uint32_t)at;
    if (paged) {
        memcpy(meta + at, a->cache.block_table, (size_t)table_w * sizeof(uint32_t));
        at += table_w;
    }
    if (a->alibi_slopes) {
        pc.alibi_off = (uint32_t)at;
        memcpy(meta + at, a->alibi_slopes, (size_t)heads_w * sizeof(float));
        at += heads_w;
    }
    if (a->sinks) {
        pc.sinks_off = (uint32_t)at;
        memcpy(meta + at, a->sinks, (size_t)heads_w * sizeof(float));
        at += heads_w;
    }

    if ((st = vk_stream_upload_scratch(s, meta, total_w * 4, &b[4])) != TRIT_OK) {
        free(meta);
        return st;
    }
    free(meta);
    b[5] = b[4]; /* no splits: the partial binding is never written */
    if (plan.n_groups && (st = vk_stream_scratch(s, plan.partial_floats * 4, &b[5])) != TRIT_OK)
        return st;

    pc.q_off = q_first;
    pc.q_s0 = u32(a->q.strides[0]);
    pc.q_s1 = u32(a->q.strides[1]);
    pc.o_off = o_first;
    pc.o_s0 = u32(a->out.strides[0]);
    pc.o_s1 = u32(a->out.strides[1]);
    pc.k_off = k_first;
    pc.k_s0 = u32(a->cache.k.strides[0]);
    pc.k_s1 = u32(a->cache.k.strides[1]);
    pc.k_s2 = u32(a->cache.k.strides[2]);
    pc.v_off = v_first;
    pc.v_s0 = u32(a->cache.v.strides[0]);
    pc.v_s1 = u32(a->cache.v.strides[1]);
    pc.v_s2 = u32(a->cache.v.strides[2]);
    pc.block = paged ? u32(a->cache.k.shape[1]) : 0;
    pc.max_blocks = paged ? (uint32_t)a->cache.max_blocks_per_seq : 0;
    pc.n_items = (uint32_t)plan.n_items;
    pc.window = a->window;
    pc.causal = a->causal != 0;
    pc.scale = a->scale;
    pc.softcap = a->softcap;

    const int f16 = dev->f.fp16, sg = dev->f.subgroups;
    vk_pipeline_desc pd;
    memset(&pd, 0, sizeof(pd));
    const vk_pipeline *pipe = coop_pipe;
    if (!coop) {
        pd.shader =
            f16 ? (sg ? "attention_f16_sg" : "attention_f16") : (sg ? "attention_sg" : "attention");
        pd.spec[0] = plan.d;
        pd.spec[1] = plan.tile;
        pd.spec[2] = plan.rows_max;
        pd.spec[3] = a->q.dtype == TRIT_DTYPE_F16;
        pd.spec[4] = a->cache.k.dtype == TRIT_DTYPE_F16;
        pd.spec[5] = a->out.dtype == TRIT_DTYPE_F16;
        pd.spec[6] = ATT_WG;
        pd.spec[7] = kv_vec;
        /* The subgroup softmax splits rows over whole subgroups: pin the size so all are full. */
        pd.subgroup_size = sg ? dev->subgroup_size : 0;
        pd.n_spec = 8;
        pd.n_bindings = 6;
        pd.push_bytes = sizeof(att_push);
        if ((st = vk_pipeline_get(dev, &pd, &pipe)) != TRIT_OK)
            return st;
    }
    log_path(dev, pipe->desc.shader, coop, prefill, a->head_dim, plan.rows_max, plan.tile);
    uint32_t gx, gy;
    grid(dev, plan.n_items, &gx, &gy);
    if ((st = vk_dispatch(s, pipe, b, &pc, gx, gy, 1)) != TRIT_OK || plan.n_groups == 0)
        return st;

    att_combine_push cp;
    memset(&cp, 0, sizeof(cp));
    cp.o_off = o_first;
    cp.o_s0 = pc.o_s0;
    cp.o_s1 = pc.o_s1;
    cp.groups_off = (uint32_t)items_w;
    cp.n_groups = (uint32_t)plan.n_groups;
    cp.sinks_off = pc.sinks_off;
    vk_pipeline_desc cd;
    memset(&cd, 0, sizeof(cd));
    cd.shader = f16 ? "attention_combine_f16" : "attention_combine";
    cd.spec[0] = plan.d;
    cd.spec[1] = a->out.dtype == TRIT_DTYPE_F16;
    cd.spec[2] = ATT_COMBINE_WG;
    cd.n_spec = 3;
    cd.n_bindings = 3;
    cd.push_bytes = sizeof(att_combine_push);
    if ((st = vk_pipeline_get(dev, &cd, &pipe)) != TRIT_OK)
        return st;
    vk_binding cb[3] = {b[3], b[4], b[5]};
    grid(dev, plan.n_groups, &gx, &gy);
    return vk_dispatch(s, pipe, cb, &cp, gx, gy, 1);
}
