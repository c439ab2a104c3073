/*
 * bench_attention.c — attention (decode and causal prefill) against the naive attention in
 * baselines.c, and RoPE + KV append, at BitNet b1.58 2B's attention shape: 20 query heads, 5 KV
 * heads, head dim 128.
 *
 * Bytes: K and V read once (S * kv_len * Hkv * D * 2 elements) + Q + O. Decode is read-bound:
 * 4096 cached tokens in f16 are 10.5 MB per sequence, ~350 us at 30 GB/s if it came from DRAM
 * (one sequence fits in a 32 MiB L3, so warm runs can beat that; four do not). Flops count
 * 4 * H * D per visible (query, key) pair: QK^T and PV, a multiply and an add each; causal
 * prefill sees about half the pairs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { HEADS = 20, KV_HEADS = 5, HEAD_DIM = 128 };

/* `n` random values in [-1, 1) of `dtype` (f32 or f16) into `out`. */
static void fill_dtype(bench_rng *r, trit_dtype dtype, void *out, size_t n)
{
    if (dtype == TRIT_DTYPE_F16) {
        uint16_t *h = out;
        for (size_t i = 0; i < n; i++)
            h[i] = trit_float_to_half(bench_rng_float(r));
    } else {
        bench_fill_floats(r, out, n);
    }
}

typedef struct attn_case {
    trit_stream *stream;
    trit_tensor q, out;
    trit_kv_cache cache;
    uint32_t n_seqs;
    const int32_t *q_lens, *kv_lens;
    trit_attention_params params;
} attn_case;

static trit_status attn_once(void *p)
{
    attn_case *c = p;
    trit_status st = trit_attention(c->stream, &c->q, &c->cache, c->n_seqs, c->q_lens, c->kv_lens,
                                    &c->out, &c->params);
    return st == TRIT_OK ? trit_stream_sync(c->stream) : st;
}

static trit_status naive_once(void *p)
{
    baseline_attention_run(p);
    return TRIT_OK;
}

/* One attention case: `n_seqs` sequences of `q_len` new tokens over `kv_len` cached ones. */
static void run_attention(const bench_config *cfg, bench_device *dev, const char *kind, int n_seqs,
                          int q_len, int kv_len, trit_dtype kv_dtype, uint64_t seed)
{
    const int T = n_seqs * q_len, C = kv_len;
    const size_t esize = trit_dtype_size(kv_dtype);
    const size_t q_elems = (size_t)T * HEADS * HEAD_DIM;
    const size_t kv_elems = (size_t)n_seqs * C * KV_HEADS * HEAD_DIM;
    char shape[64], variant[32];
    if (q_len == 1)
        snprintf(shape, sizeof(shape), "%s S=%d ctx=%d H%d/%d D%d", kind, n_seqs, kv_len, HEADS,
                 KV_HEADS, HEAD_DIM);
    else
        snprintf(shape, sizeof(shape), "%s S=%d T=%d causal H%d/%d D%d", kind, n_seqs, q_len, HEADS,
                 KV_HEADS, HEAD_DIM);
    snprintf(variant, sizeof(variant), "kv %s", trit_dtype_name(kv_dtype));

    trit_op_desc desc = {.size = sizeof(desc),
                         .op = TRIT_OP_ATTENTION,
                         .x_dtype = TRIT_DTYPE_F32,
                         .y_dtype = TRIT_DTYPE_F32,
                         .kv_dtype = kv_dtype,
                         .head_dim = HEAD_DIM,
                         .paged = 0};
    if (bench_unsupported(cfg, dev, &desc, "attention", shape, variant))
        return;

    int32_t *q_lens = malloc((size_t)n_seqs * sizeof(int32_t));
    int32_t *kv_lens = malloc((size_t)n_seqs * sizeof(int32_t));
    float *q = malloc(q_elems * sizeof(float));
    float *o_dev = malloc(q_elems * sizeof(float));
    float *o_ref = malloc(q_elems * sizeof(float));
    void *k = malloc(kv_elems * esize);
    void *v = malloc(kv_elems * esize);
    trit_buffer *qb = NULL, *ob = NULL, *kb = NULL, *vb = NULL;
    baseline_attention *naive = NULL;
    if (!q_lens || !kv_lens || !q || !o_dev || !o_ref || !k || !v) {
        bench_failed(cfg, dev, "attention", shape, variant, "host allocation",
                     TRIT_ERROR_OUT_OF_MEMORY);
        goto done;
    }
    for (int s = 0; s < n_seqs; s++) {
        q_lens[s] = q_len;
        kv_lens[s] = kv_len;
    }
    bench_rng rng = {seed};
    bench_fill_floats(&rng, q, q_elems);
    fill_dtype(&rng, kv_dtype, k, kv_elems);
    fill_dtype(&rng, kv_dtype, v, kv_elems);

    attn_case c = {
        .stream = dev->stream, .n_seqs = (uint32_t)n_seqs, .q_lens = q_lens, .kv_lens = kv_lens};
    c.cache.size = sizeof(c.cache);
    int64_t qs[3] = {T, HEADS, HEAD_DIM}, ks[4] = {n_seqs, C, KV_HEADS, HEAD_DIM};
    trit_status st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 3, qs, q, &qb, &c.q);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 3, qs, NULL, &ob, &c.out);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, kv_dtype, 4, ks, k, &kb, &c.cache.k);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, kv_dtype, 4, ks, v, &vb, &c.cache.v);
    if (st != TRIT_OK) {
        bench_failed(cfg, dev, "attention", shape, variant, "uploading Q / K / V", st);
        goto done;
    }
    trit_attention_params_init(&c.params);
    c.params.causal = 1;

    bench_timing t;
    st = bench_time(cfg, cfg->min_time, attn_once, &c, &t);
    if (st == TRIT_OK)
        st = trit_buffer_download(dev->stream, ob, 0, o_dev, q_elems * sizeof(float));
    if (st == TRIT_OK)
        st = trit_stream_sync(dev->stream);
    if (st != TRIT_OK) {
        bench_failed(cfg, dev, "attention", shape, variant, "trit_attention", st);
        goto done;
    }

    baseline_attention_args na = {.q = q,
                                  .k = k,
                                  .v = v,
                                  .kv_f16 = kv_dtype == TRIT_DTYPE_F16,
                                  .out = o_ref,
                                  .n_seqs = n_seqs,
                                  .q_lens = q_lens,
                                  .kv_lens = kv_lens,
                                  .capacity = C,
                                  .heads = HEADS,
                                  .kv_heads = KV_HEADS,
                                  .head_dim = HEAD_DIM,
                                  .causal = 1,
                                  .scale = 0.f};
    naive = baseline_attention_create(&na, dev->threads);
    if (!naive) {
        bench_failed(cfg, dev, "attention", shape, variant, "naive attention scratch",
                     TRIT_ERROR_OUT_OF_MEMORY);
        goto done;
    }
    bench_timing bt = {0};
    if (dev->host_baselines)
        bench_time(cfg, cfg->min_time, naive_once, naive, &bt);
    else
        baseline_attention_run(naive);

    double pairs = 0;
    for (int s = 0; s < n_seqs; s++)
        for (int i = 0; i < q_lens[s]; i++)
            pairs += kv_lens[s] - q_lens[s] + i + 1; /* causal: keys 0..p */
    bench_row row;
    bench_row_init(&row, dev, "attention", shape, variant);
    row.time_us = t.median_s * 1e6;
    row.min_us = t.min_s * 1e6;
    row.runs = t.runs;
    row.bytes = 2.0 * (double)n_seqs * kv_len * KV_HEADS * HEAD_DIM * (double)esize +
                2.0 * (double)q_elems * sizeof(float);
    row.flops = 4.0 * HEADS * HEAD_DIM * pairs;
    if (bt.runs) {
        snprintf(row.baseline, sizeof(row.baseline), "naive");
        row.base_us = bt.median_s * 1e6;
    }
    row.check_err = bench_rel_error(o_dev, o_ref, q_elems);
    row.check_tol = kv_dtype == TRIT_DTYPE_F16 ? 2e-3 : 1e-4;
    if (!(row.check_err <= row.check_tol)) {
        row.state = BENCH_ROW_MISMATCH;
        snprintf(row.note, sizeof(row.note),
                 "relative error %.3g against the naive attention (tolerance %g)", row.check_err,
                 row.check_tol);
    }
    bench_row_finish(&row, dev);
    bench_row_emit(cfg, &row);

done:
    baseline_attention_destroy(naive);
    trit_buffer_free(qb);
    trit_buffer_free(ob);
    trit_buffer_free(kb);
    trit_buffer_free(vb);
    free(q_lens);
    free(kv_lens);
    free(q);
    free(o_dev);
    free(o_ref);
    free(k);
    free(v);
}

void bench_attention_run(const bench_config *cfg, bench_device *dev)
{
    static const trit_dtype kv_types[] = {TRIT_DTYPE_F16, TRIT_DTYPE_F32};
    const int n_kv = cfg->quick ? 1 : 2;
    uint64_t seed = 0xa77e;
    for (int i = 0; i < n_kv; i++) {
        run_attention(cfg, dev, "decode", 1, 1, 4096, kv_types[i], seed++);
        if (!cfg->quick)
            run_attention(cfg, dev, "decode", 4, 1, 4096, kv_types[i], seed++);
    }
    for (int i = 0; i < n_kv; i++) {
        run_attention(cfg, dev, "prefill", 1, 512, 512, kv_types[i], seed++);
        if (!cfg->quick)
            run_attention(cfg, dev, "prefill", 1, 2048, 2048, kv_types[i], seed++);
    }
}

/* ---- RoPE + KV append ----------------------------------------------------------------------- */

typedef struct rope_case {
    trit_stream *stream;
    trit_tensor q, k_new, v_new;
    trit_kv_cache cache;
    int32_t q_len, start_pos;
    trit_rope_params params;
} rope_case;

static trit_status rope_once(void *p)
{
    rope_case *c = p;
    trit_status st = trit_rope_kv_append(c->stream, &c->q, &c->k_new, &c->v_new, &c->cache, 1,
                                         &c->q_len, &c->start_pos, &c->params);
    return st == TRIT_OK ? trit_stream_sync(c->stream) : st;
}

/* What the cache must hold after the op, in f32: k_new rotated (NORMAL pairs, fp64 angles),
 * v_new as is, both rounded through the cache dtype. */
static void rope_reference(const float *k_new, const float *v_new, int tokens, int start_pos,
                           float base, trit_dtype kv_dtype, float *k_out, float *v_out)
{
    for (int t = 0; t < tokens; t++)
        for (int h = 0; h < KV_HEADS; h++) {
            const size_t off = ((size_t)t * KV_HEADS + h) * HEAD_DIM;
            for (int i = 0; i < HEAD_DIM / 2; i++) {
                double theta = (double)(start_pos + t) * pow(base, -2.0 * i / HEAD_DIM);
                double c = cos(theta), s = sin(theta);
                double x0 = k_new[off + 2 * i], x1 = k_new[off + 2 * i + 1];
                k_out[off + 2 * i] = (float)(x0 * c - x1 * s);
                k_out[off + 2 * i + 1] = (float)(x0 * s + x1 * c);
            }
            for (int d = 0; d < HEAD_DIM; d++)
                v_out[off + d] = v_new[off + d];
        }
    if (kv_dtype == TRIT_DTYPE_F16) {
        for (size_t i = 0; i < (size_t)tokens * KV_HEADS * HEAD_DIM; i++) {
            k_out[i] = trit_half_to_float(trit_float_to_half(k_out[i]));
            v_out[i] = trit_half_to_float(trit_float_to_half(v_out[i]));
        }
    }
}

static void run_rope(const bench_config *cfg, bench_device *dev, const char *kind, int tokens,
                     int start_pos, trit_dtype kv_dtype, uint64_t seed)
{
    const int C = 4096;
    const size_t esize = trit_dtype_size(kv_dtype);
    const size_t q_elems = (size_t)tokens * HEADS * HEAD_DIM;
    const size_t kv_new = (size_t)tokens * KV_HEADS * HEAD_DIM;
    char shape[64], variant[32];
    snprintf(shape, sizeof(shape), "%s T=%d pos=%d H%d/%d D%d", kind, tokens, start_pos, HEADS,
             KV_HEADS, HEAD_DIM);
    snprintf(variant, sizeof(variant), "kv %s", trit_dtype_name(kv_dtype));
    trit_op_desc desc = {.size = sizeof(desc),
                         .op = TRIT_OP_ROPE_KV_APPEND,
                         .x_dtype = TRIT_DTYPE_F32,
                         .y_dtype = TRIT_DTYPE_F32,
                         .kv_dtype = kv_dtype,
                         .head_dim = HEAD_DIM,
                         .paged = 0};
    if (bench_unsupported(cfg, dev, &desc, "rope_kv_append", shape, variant))
        return;

    float *q = malloc(q_elems * sizeof(float));
    float *kn = malloc(kv_new * sizeof(float));
    float *vn = malloc(kv_new * sizeof(float));
    float *k_ref = malloc(kv_new * sizeof(float)), *v_ref = malloc(kv_new * sizeof(float));
    float *k_dev = malloc(kv_new * sizeof(float)), *v_dev = malloc(kv_new * sizeof(float));
    void *raw = malloc(kv_new * esize);
    trit_buffer *qb = NULL, *knb = NULL, *vnb = NULL, *kcb = NULL, *vcb = NULL;
    if (!q || !kn || !vn || !k_ref || !v_ref || !k_dev || !v_dev || !raw) {
        bench_failed(cfg, dev, "rope_kv_append", shape, variant, "host allocation",
                     TRIT_ERROR_OUT_OF_MEMORY);
        goto done;
    }
    bench_rng rng = {seed};
    bench_fill_floats(&rng, q, q_elems);
    bench_fill_floats(&rng, kn, kv_new);
    bench_fill_floats(&rng, vn, kv_new);

    rope_case c = {.stream = dev->stream, .q_len = tokens, .start_pos = start_pos};
    c.cache.size = sizeof(c.cache);
    int64_t qs[3] = {tokens, HEADS, HEAD_DIM}, ns[3] = {tokens, KV_HEADS, HEAD_DIM};
    int64_t cs[4] = {1, C, KV_HEADS, HEAD_DIM};
    trit_status st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 3, qs, q, &qb, &c.q);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 3, ns, kn, &knb, &c.k_new);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, TRIT_DTYPE_F32, 3, ns, vn, &vnb, &c.v_new);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, kv_dtype, 4, cs, NULL, &kcb, &c.cache.k);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, kv_dtype, 4, cs, NULL, &vcb, &c.cache.v);
    if (st != TRIT_OK) {
        bench_failed(cfg, dev, "rope_kv_append", shape, variant, "uploading q / k / v / cache", st);
        goto done;
    }
    trit_rope_params_init(&c.params);
    c.params.base = 500000.f; /* BitNet b1.58 2B's rope theta */

    bench_timing t;
    st = bench_time(cfg, cfg->min_time, rope_once, &c, &t);
    /* q was rotated once per run, but the cache rows are rewritten from the same k_new / v_new
     * every run, so they can be checked. */
    const uint64_t off = (uint64_t)start_pos * KV_HEADS * HEAD_DIM * esize;
    for (int which = 0; which < 2 && st == TRIT_OK; which++) {
        st = trit_buffer_download(dev->stream, which ? vcb : kcb, off, raw, kv_new * esize);
        if (st == TRIT_OK)
            st = trit_stream_sync(dev->stream);
        float *dst = which ? v_dev : k_dev;
        for (size_t i = 0; i < kv_new && st == TRIT_OK; i++)
            dst[i] = kv_dtype == TRIT_DTYPE_F16 ? trit_half_to_float(((uint16_t *)raw)[i])
                                                : ((float *)raw)[i];
    }
    if (st != TRIT_OK) {
        bench_failed(cfg, dev, "rope_kv_append", shape, variant, "trit_rope_kv_append", st);
        goto done;
    }
    rope_reference(kn, vn, tokens, start_pos, c.params.base, kv_dtype, k_ref, v_ref);

    bench_row row;
    bench_row_init(&row, dev, "rope_kv_append", shape, variant);
    row.time_us = t.median_s * 1e6;
    row.min_us = t.min_s * 1e6;
    row.runs = t.runs;
    /* q read and written, k_new / v_new read, two cache rows written. */
    row.bytes = 2.0 * (double)q_elems * 4 + 2.0 * (double)kv_new * 4 + 2.0 * (double)kv_new * esize;
    row.flops = 3.0 * (double)tokens * (HEADS + KV_HEADS) * HEAD_DIM; /* 6 per rotated pair */
    double ek = bench_rel_error(k_dev, k_ref, kv_new), ev = bench_rel_error(v_dev, v_ref, kv_new);
    row.check_err = ek > ev ? ek : ev;
    /* f32 angles p * theta_i lose ~1e-4 rad at p ~ 4096; fp64 reference. */
    row.check_tol = kv_dtype == TRIT_DTYPE_F16 ? 2e-3 : 1e-3;
    if (!(row.check_err <= row.check_tol)) {
        row.state = BENCH_ROW_MISMATCH;
        snprintf(row.note, sizeof(row.note),
                 "cache rows: relative error K %.3g, V %.3g against a host fp64 RoPE (tolerance "
                 "%g)",
                 ek, ev, row.check_tol);
    }
    bench_row_finish(&row, dev);
    bench_row_emit(cfg, &row);

done:
    trit_buffer_free(qb);
    trit_buffer_free(knb);
    trit_buffer_free(vnb);
    trit_buffer_free(kcb);
    trit_buffer_free(vcb);
    free(q);
    free(kn);
    free(vn);
    free(k_ref);
    free(v_ref);
    free(k_dev);
    free(v_dev);
    free(raw);
}

void bench_rope_run(const bench_config *cfg, bench_device *dev)
{
    static const trit_dtype kv_types[] = {TRIT_DTYPE_F16, TRIT_DTYPE_F32};
    const int n_kv = cfg->quick ? 1 : 2;
    uint64_t seed = 0x2075e;
    for (int i = 0; i < n_kv; i++) {
        run_rope(cfg, dev, "decode", 1, 4095, kv_types[i], seed++);
        run_rope(cfg, dev, "prefill", 512, 0, kv_types[i], seed++);
    }
}
