/*
 * bench_attention.c — attention (decode and causal prefill) and RoPE + KV append. The standing
 * shapes are BitNet b1.58 2B's attention (20 query heads, 5 KV heads, head dim 128, Q/O f32,
 * K/V f16 or f32) against the naive attention in baselines.c. With GPU cases on, a Llama-style
 * 32 query / 8 KV head shape follows with Q, K, V and O all f16 or all bf16, as FlashAttention
 * and PyTorch's SDPA take them (bench/compare_torch.py times SDPA on the same shapes): causal
 * prefill of 2k-16k tokens and decode over a 32k-token context.
 *
 * Bytes: K and V read once (S * kv_len * Hkv * D * 2 elements) + Q + O. Decode is read-bound:
 * 4096 cached tokens in f16 are 10.5 MB per sequence at 20/5 heads, ~350 us at 30 GB/s; a 32k
 * context at 8 KV heads is 134 MB, 40 us at 3.35 TB/s. Flops count 4 * H * D per visible (query,
 * key) pair: QK^T and PV, a multiply and an add each; causal prefill sees about half the pairs,
 * which makes 16k tokens at 32 heads 2.2 TFLOP, compute-bound on any GPU.
 *
 * Checks: the naive attention's output where it is cheap enough to run (the standing shapes);
 * for the large shapes, whose score matrices would take the host minutes, 64 (token, head) rows
 * spread over the output, each against an fp64 attention of that one query.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

enum { HEADS = 20, KV_HEADS = 5, HEAD_DIM = 128, SPOT_ROWS = 64 };

static float load_dtype(trit_dtype dtype, const void *p, size_t i)
{
    switch (dtype) {
    case TRIT_DTYPE_F16: return bench_half_to_float(((const uint16_t *)p)[i]);
    case TRIT_DTYPE_BF16: return trit_bf16_to_float(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

/* `n` random values in [-1, 1) of `dtype` (f32, f16 or bf16) into `out`. */
static void fill_dtype(bench_rng *r, trit_dtype dtype, void *out, size_t n)
{
    if (dtype == TRIT_DTYPE_F16) {
        uint16_t *h = out;
        for (size_t i = 0; i < n; i++)
            h[i] = trit_float_to_half(bench_rng_float(r));
    } else if (dtype == TRIT_DTYPE_BF16) {
        uint16_t *h = out;
        for (size_t i = 0; i < n; i++)
            h[i] = trit_float_to_bf16(bench_rng_float(r));
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

static trit_status attn_enqueue(void *p)
{
    attn_case *c = p;
    return trit_attention(c->stream, &c->q, &c->cache, c->n_seqs, c->q_lens, c->kv_lens, &c->out,
                          &c->params);
}

static trit_status naive_once(void *p)
{
    baseline_attention_run(p);
    return TRIT_OK;
}

typedef struct attn_shape {
    const char *kind; /* "decode", "prefill" */
    int n_seqs, q_len, kv_len;
    int heads, kv_heads;
    trit_dtype q_dtype, kv_dtype; /* O has Q's dtype */
} attn_shape;

/* fp64 attention of query (token t, head h) of a batch of equal sequences, causal; out[D]. */
static void spot_reference(const attn_shape *a, const void *q, const void *k, const void *v,
                           int64_t t, int h, double *scores, float *out)
{
    const int D = HEAD_DIM, s = (int)(t / a->q_len), i = (int)(t % a->q_len);
    const int g = h / (a->heads / a->kv_heads), p = a->kv_len - a->q_len + i;
    const double scale = 1.0 / sqrt((double)D);
    const size_t qo = ((size_t)t * a->heads + h) * D;
    double m = -INFINITY;
    for (int j = 0; j <= p; j++) {
        const size_t ko = (((size_t)s * a->kv_len + j) * a->kv_heads + g) * D;
        double dot = 0;
        for (int d = 0; d < D; d++)
            dot += (double)load_dtype(a->q_dtype, q, qo + d) *
                   (double)load_dtype(a->kv_dtype, k, ko + d);
        scores[j] = dot * scale;
        m = scores[j] > m ? scores[j] : m;
    }
    double sum = 0, acc[HEAD_DIM] = {0};
    for (int j = 0; j <= p; j++) {
        const double e = exp(scores[j] - m);
        const size_t vo = (((size_t)s * a->kv_len + j) * a->kv_heads + g) * D;
        sum += e;
        for (int d = 0; d < D; d++)
            acc[d] += e * (double)load_dtype(a->kv_dtype, v, vo + d);
    }
    for (int d = 0; d < D; d++)
        out[d] = (float)(acc[d] / sum);
}

typedef struct spot_ctx {
    const attn_shape *a;
    const void *q, *k, *v, *o_dev; /* o_dev in q_dtype */
    int64_t T;
    float *got, *want; /* [SPOT_ROWS, D] */
    int threads;
} spot_ctx;

static void spot_task(void *p, int thread)
{
    spot_ctx *c = p;
    double *scores = malloc((size_t)c->a->kv_len * sizeof(double));
    if (!scores)
        abort(); /* at most 256 KiB; nothing sensible to report instead */
    for (int r = thread; r < SPOT_ROWS; r += c->threads) {
        /* First and last token included; heads cycle so every KV group is visited. */
        const int64_t t = (int64_t)r * (c->T - 1) / (SPOT_ROWS - 1);
        const int h = (r * 7) % c->a->heads;
        spot_reference(c->a, c->q, c->k, c->v, t, h, scores, c->want + (size_t)r * HEAD_DIM);
        const size_t off = ((size_t)t * c->a->heads + h) * HEAD_DIM;
        for (int d = 0; d < HEAD_DIM; d++)
            c->got[(size_t)r * HEAD_DIM + d] = load_dtype(c->a->q_dtype, c->o_dev, off + d);
    }
    free(scores);
}

/* One attention case: `n_seqs` sequences of `q_len` new tokens over `kv_len` cached ones. */
static void run_attention(const bench_config *cfg, bench_device *dev, const attn_shape *a,
                          uint64_t seed)
{
    const int n_seqs = a->n_seqs, q_len = a->q_len, kv_len = a->kv_len;
    const int T = n_seqs * q_len, C = kv_len;
    const size_t esize = trit_dtype_size(a->kv_dtype), qsize = trit_dtype_size(a->q_dtype);
    const size_t q_elems = (size_t)T * a->heads * HEAD_DIM;
    const size_t kv_elems = (size_t)n_seqs * C * a->kv_heads * HEAD_DIM;
    /* The naive attention materialises q_len x kv_len scores per head: only where that stays
     * small (the standing shapes, up to 2048 x 2048 at 20 heads) and Q is f32. */
    const int naive_ok = a->q_dtype == TRIT_DTYPE_F32 &&
                         (double)q_len * kv_len * a->heads * n_seqs <= 2048.0 * 2048.0 * 20.0;
    char shape[64], variant[32];
    if (q_len == 1)
        snprintf(shape, sizeof(shape), "%s S=%d ctx=%d H%d/%d D%d", a->kind, n_seqs, kv_len,
                 a->heads, a->kv_heads, HEAD_DIM);
    else
        snprintf(shape, sizeof(shape), "%s S=%d T=%d causal H%d/%d D%d", a->kind, n_seqs, q_len,
                 a->heads, a->kv_heads, HEAD_DIM);
    if (a->q_dtype != TRIT_DTYPE_F32) /* GPU cases: everything in one 16-bit dtype */
        snprintf(variant, sizeof(variant), "q/kv/o %s", trit_dtype_name(a->kv_dtype));
    else
        snprintf(variant, sizeof(variant), "kv %s", trit_dtype_name(a->kv_dtype));

    trit_op_desc desc = {.size = sizeof(desc),
                         .op = TRIT_OP_ATTENTION,
                         .x_dtype = a->q_dtype,
                         .y_dtype = a->q_dtype,
                         .kv_dtype = a->kv_dtype,
                         .head_dim = HEAD_DIM,
                         .paged = 0};
    if (bench_unsupported(cfg, dev, &desc, "attention", shape, variant))
        return;

    int32_t *q_lens = malloc((size_t)n_seqs * sizeof(int32_t));
    int32_t *kv_lens = malloc((size_t)n_seqs * sizeof(int32_t));
    void *q = malloc(q_elems * qsize);
    void *o_dev = malloc(q_elems * qsize);
    float *o_ref =
        naive_ok ? malloc(q_elems * sizeof(float)) : malloc(2 * SPOT_ROWS * HEAD_DIM * 4);
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
    fill_dtype(&rng, a->q_dtype, q, q_elems);
    fill_dtype(&rng, a->kv_dtype, k, kv_elems);
    fill_dtype(&rng, a->kv_dtype, v, kv_elems);

    attn_case c = {
        .stream = dev->stream, .n_seqs = (uint32_t)n_seqs, .q_lens = q_lens, .kv_lens = kv_lens};
    c.cache.size = sizeof(c.cache);
    int64_t qs[3] = {T, a->heads, HEAD_DIM}, ks[4] = {n_seqs, C, a->kv_heads, HEAD_DIM};
    trit_status st = bench_tensor_upload(dev->stream, a->q_dtype, 3, qs, q, &qb, &c.q);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, a->q_dtype, 3, qs, NULL, &ob, &c.out);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, a->kv_dtype, 4, ks, k, &kb, &c.cache.k);
    if (st == TRIT_OK)
        st = bench_tensor_upload(dev->stream, a->kv_dtype, 4, ks, v, &vb, &c.cache.v);
    if (st != TRIT_OK) {
        bench_failed(cfg, dev, "attention", shape, variant, "uploading Q / K / V", st);
        goto done;
    }
    trit_attention_params_init(&c.params);
    c.params.causal = 1;

    bench_timing t;
    int reps = 1;
    st = bench_time_ops(cfg, dev, cfg->min_time, attn_enqueue, &c, &t, &reps);
    if (st == TRIT_OK)
        st = trit_buffer_download(dev->stream, ob, 0, o_dev, q_elems * qsize);
    if (st == TRIT_OK)
        st = trit_stream_sync(dev->stream);
    if (st != TRIT_OK) {
        bench_failed(cfg, dev, "attention", shape, variant, "trit_attention", st);
        goto done;
    }

    bench_timing bt = {0};
    double err;
    if (naive_ok) {
        baseline_attention_args na = {.q = q,
                                      .k = k,
                                      .v = v,
                                      .kv_f16 = a->kv_dtype == TRIT_DTYPE_F16,
                                      .out = o_ref,
                                      .n_seqs = n_seqs,
                                      .q_lens = q_lens,
                                      .kv_lens = kv_lens,
                                      .capacity = C,
                                      .heads = a->heads,
                                      .kv_heads = a->kv_heads,
                                      .head_dim = HEAD_DIM,
                                      .causal = 1,
                                      .scale = 0.f};
        naive = baseline_attention_create(&na, dev->threads);
        if (!naive) {
            bench_failed(cfg, dev, "attention", shape, variant, "naive attention scratch",
                         TRIT_ERROR_OUT_OF_MEMORY);
            goto done;
        }
        if (dev->host_baselines)
            bench_time(cfg, cfg->min_time, naive_once, naive, &bt);
        else
            baseline_attention_run(naive);
        err = bench_rel_error(o_dev, o_ref, q_elems);
    } else {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        spot_ctx sc = {.a = a, .q = q, .k = k, .v = v, .o_dev = o_dev, .T = T};
        sc.got = o_ref;
        sc.want = o_ref + SPOT_ROWS * HEAD_DIM;
        sc.threads = dev->host_baselines ? dev->threads : ncpu > 0 ? (int)ncpu : 1;
        sc.threads = sc.threads > SPOT_ROWS ? SPOT_ROWS : sc.threads;
        baseline_parallel(sc.threads, spot_task, &sc);
        err = bench_rel_error(sc.got, sc.want, (size_t)SPOT_ROWS * HEAD_DIM);
    }

    double pairs = 0;
    for (int s = 0; s < n_seqs; s++)
        for (int i = 0; i < q_lens[s]; i++)
            pairs += kv_lens[s] - q_lens[s] + i + 1; /* causal: keys 0..p */
    bench_row row;
    bench_row_init(&row, dev, "attention", shape, variant);
    row.time_us = t.median_s * 1e6;
    row.min_us = t.min_s * 1e6;
    row.runs = t.runs;
    row.ops_per_sync = reps;
    row.bytes = 2.0 * (double)n_seqs * kv_len * a->kv_heads * HEAD_DIM * (double)esize +
                2.0 * (double)q_elems * (double)qsize;
    row.flops = 4.0 * a->heads * HEAD_DIM * pairs;
    if (bt.runs) {
        snprintf(row.baseline, sizeof(row.baseline), "naive");
        row.base_us = bt.median_s * 1e6;
    } else if (!naive_ok) {
        snprintf(row.base_note, sizeof(row.base_note),
                 "none in-process (compare_torch.py: SDPA); %d rows checked in fp64", SPOT_ROWS);
    }
    row.check_err = err;
    /* bf16 output alone rounds to 2^-9 relative. */
    row.check_tol = a->q_dtype == TRIT_DTYPE_BF16 || a->kv_dtype == TRIT_DTYPE_BF16 ? 1e-2
                    : a->kv_dtype == TRIT_DTYPE_F16 || a->q_dtype == TRIT_DTYPE_F16 ? 2e-3
                                                                                    : 1e-4;
    if (!(row.check_err <= row.check_tol)) {
        row.state = BENCH_ROW_MISMATCH;
        snprintf(row.note, sizeof(row.note), "relative error %.3g against the %s (tolerance %g)",
                 row.check_err, naive_ok ? "naive attention" : "fp64 rows", row.check_tol);
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
    const trit_dtype F32 = TRIT_DTYPE_F32;
    for (int i = 0; i < n_kv; i++) {
        attn_shape a = {"decode", 1, 1, 4096, HEADS, KV_HEADS, F32, kv_types[i]};
        run_attention(cfg, dev, &a, seed++);
        if (!cfg->quick) {
            a.n_seqs = 4;
            run_attention(cfg, dev, &a, seed++);
        }
    }
    for (int i = 0; i < n_kv; i++) {
        attn_shape a = {"prefill", 1, 512, 512, HEADS, KV_HEADS, F32, kv_types[i]};
        run_attention(cfg, dev, &a, seed++);
        if (!cfg->quick) {
            a.q_len = a.kv_len = 2048;
            run_attention(cfg, dev, &a, seed++);
        }
    }
    if (!dev->gpu_cases)
        return;
    /* GPU cases: 32 query / 8 KV heads (Llama 3 8B / 70B), everything in f16 or in bf16. */
    static const trit_dtype gpu_types[] = {TRIT_DTYPE_F16, TRIT_DTYPE_BF16};
    static const int prefill_full[] = {2048, 4096, 8192, 16384}, prefill_quick[] = {4096};
    const int *lens = cfg->quick ? prefill_quick : prefill_full;
    const int n_lens = cfg->quick ? 1 : 4;
    for (int i = 0; i < 2; i++) {
        attn_shape a = {"decode", 1, 1, 32768, 32, 8, gpu_types[i], gpu_types[i]};
        run_attention(cfg, dev, &a, seed++);
        for (int j = 0; j < n_lens; j++) {
            attn_shape p = {"prefill", 1, lens[j], lens[j], 32, 8, gpu_types[i], gpu_types[i]};
            run_attention(cfg, dev, &p, seed++);
        }
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

static trit_status rope_enqueue(void *p)
{
    rope_case *c = p;
    return trit_rope_kv_append(c->stream, &c->q, &c->k_new, &c->v_new, &c->cache, 1, &c->q_len,
                               &c->start_pos, &c->params);
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
    int reps = 1;
    st = bench_time_ops(cfg, dev, cfg->min_time, rope_enqueue, &c, &t, &reps);
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
    row.ops_per_sync = reps;
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
