/*
 * bench.h — what the files of trit-bench share: the run configuration, the timing loop, result
 * rows (printed as a table and collected for --json), a fast RNG for test data, and the baselines
 * that the bench implements itself (baselines.c).
 *
 * trit-bench only uses the public API (trit.h, trit_formats.h); nothing here reaches into a plugin.
 */
#ifndef TRIT_BENCH_BENCH_H
#define TRIT_BENCH_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "trit/trit.h"
#include "trit/trit_formats.h"

/* ---- configuration -------------------------------------------------------------------------- */

enum {
    BENCH_OP_GEMV = 1u << 0,
    BENCH_OP_ATTENTION = 1u << 1,
    BENCH_OP_ROPE = 1u << 2,
    BENCH_OP_SWEEP = 1u << 3,
    BENCH_OP_ALL = 0xf,
};

typedef struct bench_config {
    int quick;       /* CI smoke run: fewer shapes, fewer runs, smaller buffers */
    unsigned ops;    /* BENCH_OP_* */
    double min_time; /* seconds of timed runs per case (at least min_runs runs) */
    int min_runs;
    double warmup_time;  /* seconds of untimed runs before timing (at least one run) */
    int sweep_layers;    /* layers of the BitNet-2B-shaped model in the cold sweep */
    uint64_t copy_bytes; /* size of the trit_buffer_copy used for copy bandwidth */
    uint64_t read_bytes; /* size of the host buffer read for the CPU's read bandwidth */
    FILE *table;         /* where the human-readable table goes (stderr with --json) */
} bench_config;

/* What one device offers the rows: who it is and the bandwidth its % peak is measured against. */
typedef struct bench_device {
    uint32_t index;
    trit_device *device;
    trit_device_info info;
    trit_stream *stream;
    int threads;           /* CPU: threads the plugin uses (compute_units); baselines use as many */
    int host_baselines;    /* 1 when host-side baselines run on the same silicon (the CPU device) */
    double copy_gbs;       /* trit_buffer_copy: (bytes read + written) / time */
    double read_gbs;       /* CPU only: multi-threaded read-only sweep; 0 if not measured */
    double peak_gbs;       /* read_gbs when measured, else copy_gbs */
    const char *peak_kind; /* "read" or "copy" */
} bench_device;

/* ---- result rows ---------------------------------------------------------------------------- */

typedef enum bench_row_state {
    BENCH_ROW_OK = 0,
    BENCH_ROW_UNSUPPORTED = 1, /* trit_device_supports said no; `note` has the reason */
    BENCH_ROW_FAILED = 2,      /* the op returned an error; `note` has trit_last_error() */
    BENCH_ROW_MISMATCH = 3,    /* the output disagrees with the baseline beyond `check_tol` */
} bench_row_state;

typedef struct bench_row {
    char op[24];      /* "gemv", "gemv_gated", "attention", "rope_kv_append", "sweep", ... */
    char shape[64];   /* "2560x2560 N=1", "decode S=4 ctx=4096 H=20/5 D=128", ... */
    char variant[32]; /* dtype / path: "f32 int8", "kv f16", ... */
    char device[24];  /* trit_device_label */
    bench_row_state state;
    char note[320]; /* reason for unsupported / failed / mismatch rows */
    int runs;
    double time_us; /* median of the timed runs */
    double min_us;
    double bytes; /* bytes the op must move at least (its floor's numerator) */
    double flops;
    double gbs, gflops, pct_peak;
    char baseline[32]; /* "openblas sgemv", "naive", "" when there is none */
    double base_us;    /* median; 0 when there is none */
    double speedup;    /* base_us / time_us */
    double check_err;  /* relative L2 error against the baseline / reference; < 0 if not checked */
    double check_tol;
} bench_row;

/* Starts a row for `dev` with op, shape and variant; every numeric field unset. */
void bench_row_init(bench_row *row, const bench_device *dev, const char *op, const char *shape,
                    const char *variant);
/* Fills gbs, gflops, pct_peak and speedup from time_us, bytes, flops and base_us. */
void bench_row_finish(bench_row *row, const bench_device *dev);
/* Prints the row to the table and keeps a copy for --json. Rows that are FAILED or MISMATCH
 * make the process exit non-zero at the end. */
void bench_row_emit(const bench_config *cfg, const bench_row *row);
/* Emits an "unsupported: <reason>" row when the device says no to `desc`; returns 1 if so. */
int bench_unsupported(const bench_config *cfg, const bench_device *dev, const trit_op_desc *desc,
                      const char *op, const char *shape, const char *variant);
/* Emits a FAILED row carrying `status` and trit_last_error(). */
void bench_failed(const bench_config *cfg, const bench_device *dev, const char *op,
                  const char *shape, const char *variant, const char *what, trit_status status);

/* ---- timing --------------------------------------------------------------------------------- */

double bench_now(void); /* seconds, monotonic */
void bench_sleep(double seconds);

/* One run of the thing being timed; returns TRIT_OK or the failure (which stops the timing). */
typedef trit_status (*bench_fn)(void *ctx);

typedef struct bench_timing {
    double median_s;
    double min_s;
    int runs;
} bench_timing;

/* Warm-up (cfg->warmup_time, at least one run), then times runs one by one until both
 * `min_time` seconds and cfg->min_runs runs are reached; median and minimum of the runs. */
trit_status bench_time(const bench_config *cfg, double min_time, bench_fn fn, void *ctx,
                       bench_timing *out);

/* ---- data ----------------------------------------------------------------------------------- */

typedef struct bench_rng {
    uint64_t s;
} bench_rng;

static inline uint64_t bench_rng_next(bench_rng *r)
{
    /* splitmix64: statistically fine for test data and fast enough for 2 G weights. */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline float bench_rng_float(bench_rng *r)
{
    return (float)((double)(bench_rng_next(r) >> 11) * 0x1.0p-52 - 1.0);
}

/* `n` uniform floats in [-1, 1). */
void bench_fill_floats(bench_rng *r, float *out, size_t n);
/* rows x cols random ternary weights in TRIT_WEIGHTS_PACKED2, about a third of each value;
 * `out` holds rows * ceil(cols / 4) bytes. */
void bench_fill_packed2(bench_rng *r, uint8_t *out, int64_t rows, int64_t cols);
/* The dense f32 matrix w * scale of packed-2 codes (row-major rows x cols). */
void bench_unpack_f32(const uint8_t *codes, int64_t rows, int64_t cols, float scale, float *out);

static inline float bench_half_to_float(uint16_t h)
{
    /* Move the 15 exponent+mantissa bits into f32 position and let one multiply rebias the
     * exponent (this also turns f16 subnormals into f32 normals); inf/NaN need the top bits.
     * Branch-free, so loops over it vectorise. */
    uint32_t em = h & 0x7fffu, u = em << 13;
    float f;
    memcpy(&f, &u, sizeof(f));
    f *= 0x1.0p112f;
    memcpy(&u, &f, sizeof(u));
    u |= (em >= 0x7c00u ? 0x7f800000u : 0u) | (uint32_t)(h & 0x8000u) << 16;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* The larger of ||a - b|| / ||b|| and max|a - b| / max|b| over n floats: the second catches a
 * single wrong element in a long output. A non-finite value in a gives +inf. */
double bench_rel_error(const float *a, const float *b, size_t n);

/* Allocates a contiguous tensor on the device and uploads `data` (may be NULL: left undefined).
 * On failure returns the status with *out_buffer NULL. */
trit_status bench_tensor_upload(trit_stream *stream, trit_dtype dtype, uint32_t rank,
                                const int64_t *shape, const void *data, trit_buffer **out_buffer,
                                trit_tensor *out_tensor);

/* ---- ops (bench_gemv.c, bench_attention.c) --------------------------------------------------- */

void bench_gemv_run(const bench_config *cfg, bench_device *dev);
void bench_sweep_run(const bench_config *cfg, bench_device *dev);
void bench_attention_run(const bench_config *cfg, bench_device *dev);
void bench_rope_run(const bench_config *cfg, bench_device *dev);

/* ---- baselines (baselines.c) ----------------------------------------------------------------- */

/* Runs fn(ctx, t) on `threads` threads (t = 0..threads-1; the caller is thread 0) and joins. */
void baseline_parallel(int threads, void (*fn)(void *ctx, int thread), void *ctx);

/* Host read bandwidth in GB/s: `threads` threads each sum a disjoint slice of a `bytes` buffer
 * (AVX2 when the CPU has it), median of `runs`. Returns 0 if the buffer cannot be allocated. */
double baseline_read_bandwidth(uint64_t bytes, int threads, int runs);

/* Naive attention: per (sequence, head) the whole score matrix [q_len, kv_len] is materialised,
 * softmaxed row by row, then multiplied by V, with f16 K/V upcast to f32 first. Same layouts and
 * semantics as trit_attention (contiguous cache, optional causal, scale 0 = 1/sqrt(D)). */
typedef struct baseline_attention_args {
    const float *q; /* [T, H, D] */
    const void *k;  /* [S, C, Hkv, D] f32 or f16 */
    const void *v;
    int kv_f16;
    float *out; /* [T, H, D] */
    int n_seqs;
    const int32_t *q_lens;
    const int32_t *kv_lens;
    int capacity; /* C */
    int heads, kv_heads, head_dim;
    int causal;
    float scale;
} baseline_attention_args;

typedef struct baseline_attention baseline_attention;
/* Allocates per-thread scratch once (so the timed runs do not page-fault). NULL if out of memory.
 */
baseline_attention *baseline_attention_create(const baseline_attention_args *args, int threads);
void baseline_attention_run(baseline_attention *plan);
void baseline_attention_destroy(baseline_attention *plan);

#endif /* TRIT_BENCH_BENCH_H */
