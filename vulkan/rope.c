/*
 * rope.c — host glue of RoPE + KV append on Vulkan: one workgroup of rope.comp per new token.
 *
 * The host resolves what is cheap here and awkward in a shader: each token's position and the
 * element index of its cache slot in K and V (contiguous or through the block table), and the
 * rot_dims/2 frequencies w_i = base^(-2i/rot_dims) as 64-bit fixed-point fractions of a turn
 * (computed in long double), which let rope.comp reduce p * w_i exactly in integers (see its
 * header for why not f32 or fp64). Both travel in one small per-call upload.
 *
 * Floor: see rope.comp (a decode token moves ~30 KB and is launch-bound).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "vk.h"

enum {
    ROPE_WG = 64,         /* invocations per workgroup (one token) */
    ROPE_TOKEN_WORDS = 3, /* position, K slot, V slot: must match rope.comp */
};

typedef struct rope_push {
    uint32_t q_off, q_s0, q_s1;
    uint32_t kn_off, kn_s0, kn_s1;
    uint32_t vn_off, vn_s0, vn_s1;
    uint32_t kc_s2, vc_s2;
    uint32_t n_heads, n_kv_heads, half_rot, tokens_off, n_tokens;
} rope_push;

const char *vk_rope_unsupported(const vk_device *dev, const trit_op_desc *desc)
{
    (void)dev;
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
    return NULL;
}

/* Element index of (position pos, KV head 0, dim 0) of sequence seq, relative to `first`. */
static uint64_t slot(const trit_plugin_tensor *t, const trit_plugin_kv_cache *c, uint32_t first,
                     uint32_t seq, int64_t pos)
{
    int64_t blk = seq, row = pos;
    if (c->block_table) {
        int64_t p = t->shape[1];
        blk = c->block_table[(int64_t)seq * c->max_blocks_per_seq + pos / p];
        row = pos % p;
    }
    return first + (uint64_t)(blk * t->strides[0] + row * t->strides[1]);
}

trit_status vk_rope_kv_append(vk_stream *s, const trit_plugin_rope_args *args)
{
    vk_device *dev = vk_stream_device(s);
    const trit_plugin_rope_args *a = args;
    const int64_t n_tokens = a->q_starts[a->n_seqs];
    const uint32_t half = (uint32_t)a->rot_dims / 2;
    if (n_tokens == 0)
        return TRIT_OK;
    if (half > 128 || a->head_dim > 256) {
        vk_set_error(dev, "rope_kv_append: head dim %d / rot_dims %d out of range",
                     (int)a->head_dim, (int)a->rot_dims);
        return TRIT_ERROR_UNSUPPORTED;
    }

    trit_status st;
    vk_binding b[6];
    uint32_t q_first = 0, kn_first, vn_first, kc_first, vc_first;
    if ((st = vk_tensor_binding(dev, &a->k_new, &b[1], &kn_first)) != TRIT_OK ||
        (st = vk_tensor_binding(dev, &a->v_new, &b[2], &vn_first)) != TRIT_OK ||
        (st = vk_tensor_binding(dev, &a->cache.k, &b[3], &kc_first)) != TRIT_OK ||
        (st = vk_tensor_binding(dev, &a->cache.v, &b[4], &vc_first)) != TRIT_OK)
        return st;
    if (a->has_q && (st = vk_tensor_binding(dev, &a->q, &b[0], &q_first)) != TRIT_OK)
        return st;

    /* meta: frequencies (lo, hi words of w_i / 2pi in units of 2^-64 turns) | tokens. */
    const uint64_t tokens_off = 2u * (uint64_t)half;
    const uint64_t total_w = tokens_off + (uint64_t)n_tokens * ROPE_TOKEN_WORDS;
    if (total_w * 4 > dev->max_range) {
        vk_set_error(dev, "rope_kv_append: %lld tokens exceed maxStorageBufferRange",
                     (long long)n_tokens);
        return TRIT_ERROR_UNSUPPORTED;
    }
    uint32_t *meta = malloc((size_t)total_w * sizeof(uint32_t));
    if (!meta) {
        vk_set_error(dev, "rope_kv_append: out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    const long double two_pi = 6.283185307179586476925286766559L;
    const long double log_base = logl((long double)a->base);
    for (uint32_t i = 0; i < half; i++) {
        long double w = expl(-(2.0L * i / a->rot_dims) * log_base);
        /* w <= 1 rad, so w / 2pi < 0.16 turns and the fixed-point value fits in 63 bits. */
        uint64_t turns = (uint64_t)(w / two_pi * 18446744073709551616.0L);
        meta[2 * i] = (uint32_t)turns;
        meta[2 * i + 1] = (uint32_t)(turns >> 32);
    }
    for (uint32_t seq = 0; seq < a->n_seqs; seq++) {
        for (int32_t i = 0; i < a->q_lens[seq]; i++) {
            const int64_t pos = (int64_t)a->start_pos[seq] + i;
            uint32_t *t = meta + tokens_off + (uint64_t)(a->q_starts[seq] + i) * ROPE_TOKEN_WORDS;
            t[0] = (uint32_t)pos;
            t[1] = (uint32_t)slot(&a->cache.k, &a->cache, kc_first, seq, pos);
            t[2] = (uint32_t)slot(&a->cache.v, &a->cache, vc_first, seq, pos);
        }
    }
    st = vk_stream_upload_scratch(s, meta, total_w * 4, &b[5]);
    free(meta);
    if (st != TRIT_OK)
        return st;
    if (!a->has_q)
        b[0] = b[5]; /* never accessed: n_heads is 0 */

    rope_push pc;
    memset(&pc, 0, sizeof(pc));
    if (a->has_q) {
        pc.q_off = q_first;
        pc.q_s0 = (uint32_t)a->q.strides[0];
        pc.q_s1 = (uint32_t)a->q.strides[1];
        pc.n_heads = (uint32_t)a->n_heads;
    }
    pc.kn_off = kn_first;
    pc.kn_s0 = (uint32_t)a->k_new.strides[0];
    pc.kn_s1 = (uint32_t)a->k_new.strides[1];
    pc.vn_off = vn_first;
    pc.vn_s0 = (uint32_t)a->v_new.strides[0];
    pc.vn_s1 = (uint32_t)a->v_new.strides[1];
    pc.kc_s2 = (uint32_t)a->cache.k.strides[2];
    pc.vc_s2 = (uint32_t)a->cache.v.strides[2];
    pc.n_kv_heads = (uint32_t)a->n_kv_heads;
    pc.half_rot = half;
    pc.tokens_off = (uint32_t)tokens_off;
    pc.n_tokens = (uint32_t)n_tokens;

    vk_pipeline_desc pd;
    memset(&pd, 0, sizeof(pd));
    pd.shader = dev->f.fp16 ? "rope_f16" : "rope";
    pd.spec[0] = (uint32_t)a->head_dim;
    pd.spec[1] = a->mode == TRIT_ROPE_NEOX;
    pd.spec[2] = a->has_q && a->q.dtype == TRIT_DTYPE_F16;
    pd.spec[3] = a->k_new.dtype == TRIT_DTYPE_F16;
    pd.spec[4] = a->v_new.dtype == TRIT_DTYPE_F16;
    pd.spec[5] = a->cache.k.dtype == TRIT_DTYPE_F16;
    pd.spec[6] = ROPE_WG;
    pd.n_spec = 7;
    pd.n_bindings = 6;
    pd.push_bytes = sizeof(rope_push);
    const vk_pipeline *pipe;
    if ((st = vk_pipeline_get(dev, &pd, &pipe)) != TRIT_OK)
        return st;
    uint64_t gx =
        (uint64_t)n_tokens < dev->max_wg_count[0] ? (uint64_t)n_tokens : dev->max_wg_count[0];
    return vk_dispatch(s, pipe, b, &pc, (uint32_t)gx,
                       (uint32_t)(((uint64_t)n_tokens + gx - 1) / gx), 1);
}
