/*
 * baselines.c — what trit is measured against that the bench writes itself: the host's read
 * bandwidth (the floor every memory-bound kernel is held to) and a naive attention.
 *
 * Read bandwidth: `threads` threads (as many as the CPU plugin uses) each sum one contiguous slice
 * of a buffer far larger than the caches; 4 independent AVX2 accumulators keep enough loads in
 * flight that the memory system, not the adder, is the limit. Time runs from a common barrier to
 * the last thread's finish, so a straggler counts.
 *
 * Naive attention, the way a framework's unfused "math" path does it: an f16 cache is first
 * upcast to f32 as a whole (all threads, each a slice), then work items (sequence, query head) are
 * handed out through an atomic counter; each materialises its [q_len, kv_len] score matrix (a row
 * for decode), softmaxes it row by row and multiplies by V. It writes and re-reads the scores and
 * the upcast cache, which is what a tiled kernel avoids. The loops are written so the compiler
 * vectorises them (an AVX2 clone is picked at run time): a fair "straightforward C" baseline, not
 * a strawman.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BASELINE_X86 1
#else
#define BASELINE_X86 0
#endif

/* ---- threads -------------------------------------------------------------------------------- */

typedef struct parallel_arg {
    void (*fn)(void *ctx, int thread);
    void *ctx;
    int thread;
} parallel_arg;

static void *parallel_entry(void *p)
{
    parallel_arg *a = p;
    a->fn(a->ctx, a->thread);
    return NULL;
}

void baseline_parallel(int threads, void (*fn)(void *ctx, int thread), void *ctx)
{
    if (threads < 1)
        threads = 1;
    pthread_t *tids = calloc((size_t)threads, sizeof(*tids));
    parallel_arg *args = calloc((size_t)threads, sizeof(*args));
    int started = 1;
    if (tids && args) {
        for (int t = 1; t < threads; t++) {
            args[t] = (parallel_arg){fn, ctx, t};
            if (pthread_create(&tids[t], NULL, parallel_entry, &args[t]) != 0)
                break;
            started++;
        }
    }
    /* Threads that could not be started are run by the caller, so the work is always done. */
    fn(ctx, 0);
    for (int t = started; t < threads; t++)
        fn(ctx, t);
    for (int t = 1; t < started; t++)
        pthread_join(tids[t], NULL);
    free(tids);
    free(args);
}

/* ---- read bandwidth ------------------------------------------------------------------------- */

#if BASELINE_X86
__attribute__((target("avx2"))) static uint64_t read_sum_avx2(const uint8_t *p, uint64_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, a0);
    uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; i < n; i++)
        s += p[i];
    return s;
}
#endif

static uint64_t read_sum_portable(const uint8_t *p, uint64_t n)
{
    const uint64_t *w = (const uint64_t *)p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, i = 0, words = n / 8;
    for (; i + 4 <= words; i += 4) {
        s0 += w[i];
        s1 += w[i + 1];
        s2 += w[i + 2];
        s3 += w[i + 3];
    }
    for (; i < words; i++)
        s0 += w[i];
    return s0 + s1 + s2 + s3;
}

typedef struct read_ctx {
    const uint8_t *buf;
    uint64_t bytes;
    int threads;
    int avx2;
    pthread_barrier_t barrier;
    double *start, *end;
    _Atomic uint64_t sink; /* keeps the sums alive */
} read_ctx;

static void read_task(void *p, int t)
{
    read_ctx *c = p;
    uint64_t slice = (c->bytes / (uint64_t)c->threads) & ~(uint64_t)127;
    uint64_t begin = slice * (uint64_t)t;
    uint64_t n = t == c->threads - 1 ? c->bytes - begin : slice;
    pthread_barrier_wait(&c->barrier);
    c->start[t] = bench_now();
    uint64_t s;
#if BASELINE_X86
    s = c->avx2 ? read_sum_avx2(c->buf + begin, n) : read_sum_portable(c->buf + begin, n);
#else
    s = read_sum_portable(c->buf + begin, n);
#endif
    c->end[t] = bench_now();
    atomic_fetch_add(&c->sink, s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double baseline_read_bandwidth(uint64_t bytes, int threads, int runs)
{
    if (threads < 1)
        threads = 1;
    if (runs < 1)
        runs = 1;
    bytes = (bytes + 4095) & ~(uint64_t)4095;
    uint8_t *buf = aligned_alloc(4096, bytes);
    double *start = calloc((size_t)threads, sizeof(double));
    double *end = calloc((size_t)threads, sizeof(double));
    double *gbs = calloc((size_t)runs, sizeof(double));
    double result = 0;
    if (!buf || !start || !end || !gbs)
        goto done;
#ifdef MADV_HUGEPAGE
    /* Huge pages take TLB misses out of the picture, so this is the most the memory can give. */
    madvise(buf, bytes, MADV_HUGEPAGE);
#endif
    /* Fault every page in before timing, with distinct contents so no page can be deduplicated. */
    for (uint64_t i = 0; i < bytes / 8; i++)
        ((uint64_t *)buf)[i] = i * 0x9e3779b97f4a7c15ull;

    read_ctx c = {.buf = buf, .bytes = bytes, .threads = threads, .start = start, .end = end};
#if BASELINE_X86
    c.avx2 = __builtin_cpu_supports("avx2");
#endif
    atomic_init(&c.sink, 0);
    for (int r = -1; r < runs; r++) { /* run -1 is the warm-up */
        pthread_barrier_init(&c.barrier, NULL, (unsigned)threads);
        baseline_parallel(threads, read_task, &c);
        pthread_barrier_destroy(&c.barrier);
        double t0 = start[0], t1 = end[0];
        for (int t = 1; t < threads; t++) {
            t0 = start[t] < t0 ? start[t] : t0;
            t1 = end[t] > t1 ? end[t] : t1;
        }
        if (r >= 0)
            gbs[r] = (double)bytes / (t1 - t0) * 1e-9;
    }
    qsort(gbs, (size_t)runs, sizeof(double), cmp_double);
    result = gbs[runs / 2];
done:
    free(buf);
    free(start);
    free(end);
    free(gbs);
    return result;
}

/* ---- naive attention ------------------------------------------------------------------------ */

struct baseline_attention {
    baseline_attention_args a;
    int threads;
    int n_items;
    int64_t *q_start; /* first token of each sequence in Q / O */
    float **scores;   /* per thread: max q_len * max kv_len */
    float *k32, *v32; /* f16 caches only: the cache upcast to f32, same [S, C, Hkv, D] layout */
    _Atomic int next;
};

static inline float naive_dot(const float *a, const float *b, int n)
{
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += a[i + l] * b[i + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

#if BASELINE_X86 && defined(__GNUC__) && !defined(__clang__)
#define NAIVE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NAIVE_CLONES
#endif

NAIVE_CLONES static void naive_item(baseline_attention *pl, int item, int thread)
{
    const baseline_attention_args *a = &pl->a;
    const int s = item / a->heads, h = item % a->heads;
    const int D = a->head_dim, g = h / (a->heads / a->kv_heads);
    const int ql = a->q_lens[s], kvl = a->kv_lens[s];
    const int64_t row_stride = (int64_t)a->kv_heads * D; /* elements from one token to the next */
    const int64_t base = ((int64_t)s * a->capacity * a->kv_heads + g) * D;
    const float scale = a->scale != 0.f ? a->scale : 1.f / sqrtf((float)D);

    const float *k_all = a->kv_f16 ? pl->k32 : (const float *)a->k;
    const float *v_all = a->kv_f16 ? pl->v32 : (const float *)a->v;
    const float *kr = k_all + base, *vr = v_all + base;
    const int64_t kst = row_stride;

    float *S = pl->scores[thread];
    const int64_t t0 = pl->q_start[s];
    /* Scores for every visible (query, key) pair. */
    for (int i = 0; i < ql; i++) {
        const int p = kvl - ql + i;
        const int nvis = a->causal ? p + 1 : kvl;
        const float *q = a->q + ((t0 + i) * a->heads + h) * D;
        float *row = S + (int64_t)i * kvl;
        for (int j = 0; j < nvis; j++)
            row[j] = naive_dot(q, kr + j * kst, D) * scale;
    }
    /* Softmax, row by row, in place. */
    for (int i = 0; i < ql; i++) {
        const int p = kvl - ql + i;
        const int nvis = a->causal ? p + 1 : kvl;
        float *row = S + (int64_t)i * kvl;
        float m = -INFINITY, sum = 0.f;
        for (int j = 0; j < nvis; j++)
            m = row[j] > m ? row[j] : m;
        for (int j = 0; j < nvis; j++) {
            row[j] = expf(row[j] - m);
            sum += row[j];
        }
        const float inv = 1.f / sum;
        for (int j = 0; j < nvis; j++)
            row[j] *= inv;
    }
    /* P · V. */
    for (int i = 0; i < ql; i++) {
        const int p = kvl - ql + i;
        const int nvis = a->causal ? p + 1 : kvl;
        const float *row = S + (int64_t)i * kvl;
        float *o = a->out + ((t0 + i) * a->heads + h) * D;
        for (int d = 0; d < D; d++)
            o[d] = 0.f;
        for (int j = 0; j < nvis; j++) {
            const float pj = row[j];
            const float *v = vr + j * kst;
            for (int d = 0; d < D; d++)
                o[d] += pj * v[d];
        }
    }
}

/* Thread t upcasts its share of every sequence's visible rows [0, kv_len). */
NAIVE_CLONES static void naive_upcast_task(void *p, int thread)
{
    baseline_attention *pl = p;
    const baseline_attention_args *a = &pl->a;
    const int64_t row = (int64_t)a->kv_heads * a->head_dim;
    for (int s = 0; s < a->n_seqs; s++) {
        const int64_t n = a->kv_lens[s] * row, base = (int64_t)s * a->capacity * row;
        const int64_t lo = base + n * thread / pl->threads,
                      hi = base + n * (thread + 1) / pl->threads;
        const uint16_t *k16 = a->k, *v16 = a->v;
        for (int64_t i = lo; i < hi; i++) {
            pl->k32[i] = bench_half_to_float(k16[i]);
            pl->v32[i] = bench_half_to_float(v16[i]);
        }
    }
}

static void naive_task(void *p, int thread)
{
    baseline_attention *pl = p;
    for (;;) {
        int item = atomic_fetch_add(&pl->next, 1);
        if (item >= pl->n_items)
            break;
        naive_item(pl, item, thread);
    }
}

baseline_attention *baseline_attention_create(const baseline_attention_args *args, int threads)
{
    if (threads < 1)
        threads = 1;
    baseline_attention *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return NULL;
    pl->a = *args;
    pl->threads = threads;
    pl->n_items = args->n_seqs * args->heads;
    pl->q_start = calloc((size_t)args->n_seqs, sizeof(int64_t));
    pl->scores = calloc((size_t)threads, sizeof(float *));
    if (!pl->q_start || !pl->scores) {
        baseline_attention_destroy(pl);
        return NULL;
    }
    int64_t max_q = 0, max_kv = 0, t = 0;
    for (int s = 0; s < args->n_seqs; s++) {
        pl->q_start[s] = t;
        t += args->q_lens[s];
        max_q = args->q_lens[s] > max_q ? args->q_lens[s] : max_q;
        max_kv = args->kv_lens[s] > max_kv ? args->kv_lens[s] : max_kv;
    }
    /* Touch all scratch now so the timed runs do not pay for page faults. */
    for (int i = 0; i < threads; i++) {
        size_t sb = (size_t)(max_q * max_kv) * sizeof(float);
        pl->scores[i] = malloc(sb);
        if (!pl->scores[i]) {
            baseline_attention_destroy(pl);
            return NULL;
        }
        memset(pl->scores[i], 0, sb);
    }
    if (args->kv_f16) {
        size_t kb = (size_t)args->n_seqs * (size_t)args->capacity * (size_t)args->kv_heads *
                    (size_t)args->head_dim * sizeof(float);
        pl->k32 = malloc(kb);
        pl->v32 = malloc(kb);
        if (!pl->k32 || !pl->v32) {
            baseline_attention_destroy(pl);
            return NULL;
        }
        memset(pl->k32, 0, kb);
        memset(pl->v32, 0, kb);
    }
    return pl;
}

void baseline_attention_run(baseline_attention *pl)
{
    if (pl->a.kv_f16)
        baseline_parallel(pl->threads, naive_upcast_task, pl);
    atomic_store(&pl->next, 0);
    baseline_parallel(pl->threads, naive_task, pl);
}

void baseline_attention_destroy(baseline_attention *pl)
{
    if (!pl)
        return;
    for (int i = 0; pl->scores && i < pl->threads; i++)
        free(pl->scores[i]);
    free(pl->scores);
    free(pl->k32);
    free(pl->v32);
    free(pl->q_start);
    free(pl);
}

/* ---- GEMV references --------------------------------------------------------------------------
 */

void bench_quantize_rows(const float *x, int64_t n, int64_t k, int8_t *q, float *dequant)
{
    for (int64_t t = 0; t < n; t++) {
        const float *xr = x + t * k;
        float a = 0.f;
        for (int64_t i = 0; i < k; i++)
            a = fabsf(xr[i]) > a ? fabsf(xr[i]) : a;
        const float s = a > 0.f ? 127.f / a : 0.f;
        for (int64_t i = 0; i < k; i++) {
            float v = rintf(xr[i] * s);
            q[t * k + i] = (int8_t)(v > 127.f ? 127.f : v < -127.f ? -127.f : v);
        }
        dequant[t] = a / 127.f;
    }
}

typedef struct gemv_ref_ctx {
    const bench_gemv_ref *r;
    int threads;
} gemv_ref_ctx;

/* Thread t owns rows t, t + threads, ...: decodes the row's codes once per matrix, then one dot
 * product per token (8 independent accumulators, so the compiler can vectorise the loop). */
NAIVE_CLONES static void gemv_ref_task(void *p, int t)
{
    const gemv_ref_ctx *c = p;
    const bench_gemv_ref *r = c->r;
    const int64_t K = r->k, row_bytes = (K + 3) / 4;
    const int mats = r->gated ? 2 : 1;
    int8_t *w = malloc((size_t)K);
    if (!w)
        abort(); /* a few KiB; nothing sensible to report instead */
    double val[2][TRIT_GEMV_MAX_N];
    for (int64_t m = t; m < r->m; m += c->threads) {
        for (int i = 0; i < mats; i++) {
            const uint8_t *row = r->codes[i] + m * row_bytes;
            for (int64_t k = 0; k < K; k++)
                w[k] = (int8_t)(((row[k / 4] >> (2 * (k % 4))) & 3) - 1);
            for (int64_t n = 0; n < r->n; n++) {
                if (r->path == TRIT_GEMV_INT8) {
                    const int8_t *q = r->q + n * K;
                    int32_t acc = 0; /* |sum| <= 127 * K: exact for K < 16.9 M */
                    for (int64_t k = 0; k < K; k++)
                        acc += (int32_t)w[k] * (int32_t)q[k];
                    val[i][n] = (double)acc * (double)r->scale * (double)r->dequant[n];
                } else {
                    const float *x = r->x + n * K;
                    double acc[8] = {0};
                    int64_t k = 0;
                    for (; k + 8 <= K; k += 8)
                        for (int l = 0; l < 8; l++)
                            acc[l] += (double)w[k + l] * (double)x[k + l];
                    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                               ((acc[4] + acc[5]) + (acc[6] + acc[7]));
                    for (; k < K; k++)
                        s += (double)w[k] * (double)x[k];
                    val[i][n] = s * (double)r->scale;
                }
            }
        }
        for (int64_t n = 0; n < r->n; n++) {
            double y = val[0][n];
            if (r->gated) {
                double g = y > 0 ? y : 0;
                y = g * g * val[1][n];
            }
            r->out[n * r->m + m] = (float)y;
        }
    }
    free(w);
}

void bench_gemv_reference(const bench_gemv_ref *r, int threads)
{
    gemv_ref_ctx c = {r, threads < 1 ? 1 : threads};
    baseline_parallel(c.threads, gemv_ref_task, &c);
}
