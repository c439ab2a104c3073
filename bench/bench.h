/*
 * bench.h — what the files of trit-bench share: the run configuration, the timing loop, result
 * rows (printed as a table and collected for --json), a fast RNG for test data, the baselines
 * that the bench implements itself (baselines.c), and the ones it loads at run time: OpenBLAS
 * (blas.c) and cuBLAS with the CUDA runtime (cublas.c).
 *
 * trit-bench only uses the public API (trit.h, trit_formats.h); nothing here reaches into a plugin.
 * Neither OpenBLAS nor cuBLAS is a link-time dependency: a machine without one still runs the
 * bench, and the rows say which baseline was not found.
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
    uint64_t cold_bytes; /* at least this many bytes of weight copies in the cold-L2 GEMV rows */
    int gpu_cases;       /* -1: auto (devices with their own memory), 0: never, 1: every device */
    int backend;         /* only devices of this trit_backend; -1: all */
    FILE *table;         /* where the human-readable table goes (stderr with --json) */
} bench_config;

typedef struct bench_cublas bench_cublas;

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
    /* GPU cases: the large shapes (8192x28672 GEMV, 32/8-head attention up to 16k tokens and a
     * 32k context), cold-L2 GEMV rows and batched timing. On for devices with their own memory
     * (not TRIT_CAP_UNIFIED_MEMORY) unless --gpu-cases says otherwise. */
    int gpu_cases;
    /* What the CUDA runtime says about the card (any backend's device of the same name), 0 when
     * unknown: DRAM bandwidth from memory clock x bus width (the datasheet number), f16 tensor
     * peak from SMs x clock x per-SM rate, L2 size. The floor of a row is
     * max(bytes / spec_gbs, flops / spec_tflops). */
    double spec_gbs, spec_tflops;
    uint64_t l2_bytes;
    bench_cublas *cublas;  /* CUDA devices: the cuBLAS baseline, NULL when not available */
    char cublas_note[200]; /* "loaded: <files>", or why there is no cuBLAS baseline */
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
    int ops_per_sync;   /* ops enqueued back to back per timed sample (time_us is per op) */
    double floor_us;    /* max(bytes / spec bandwidth, flops / spec peak); 0 when unknown */
    double pct_floor;   /* 100 * floor_us / time_us */
    char base_note[96]; /* "cuBLAS not found", ... printed at the end of the row */
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

/* Times an op on dev->stream. `enqueue` only enqueues one op (no sync). With GPU cases on, one
 * sample enqueues R ops back to back and syncs once, R chosen so that a sample lasts about 1 ms
 * (1..64): a GPU op of 20 us would otherwise be timed together with a launch and a host wake-up.
 * Elsewhere R = 1 (enqueue, sync), as the CPU rows have always been timed. Times are per op;
 * *out_reps (may be NULL) gets R. */
trit_status bench_time_ops(const bench_config *cfg, const bench_device *dev, double min_time,
                           bench_fn enqueue, void *ctx, bench_timing *out, int *out_reps);

/* The R that bench_time_ops picks for an op whose single run (enqueue + sync) takes `single_s`. */
int bench_reps_for(const bench_device *dev, double single_s);

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

/* ---- references ---------------------------------------------------------------------------- */

/* Per-token absmax quantization as TRIT_GEMV_INT8 specifies it (a = max|x|, q = rint(x * 127 / a)
 * clamped to +-127); dequant[t] = a / 127. */
void bench_quantize_rows(const float *x, int64_t n, int64_t k, int8_t *q, float *dequant);

/* y[N, M] of a ternary GEMV computed from the packed-2 codes in double (exact integer sums on
 * the int8 path), on `threads` host threads. gated: relu2(W0 x) * (W1 x). */
typedef struct bench_gemv_ref {
    const uint8_t *codes[2];
    int gated;
    int64_t m, k, n;
    float scale;
    int path;             /* trit_gemv_path */
    const float *x;       /* [N, K], float path */
    const int8_t *q;      /* [N, K], int8 path */
    const float *dequant; /* [N], int8 path */
    float *out;           /* [N, M] */
} bench_gemv_ref;
void bench_gemv_reference(const bench_gemv_ref *r, int threads);

/* ---- baselines (baselines.c) --------------------------------------------------------------- */

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

/* ---- OpenBLAS, loaded at run time (blas.c) --------------------------------------------------- */

/* Loads libopenblas.so.0 (or TRIT_BENCH_OPENBLAS, a path) once; 1 if it is there. */
int bench_blas_available(void);
/* "OpenBLAS <config>" or "not found (<why>)". */
const char *bench_blas_describe(void);
void bench_blas_set_threads(int threads);
/* y[M] = W[M, K] x (row-major W). */
void bench_blas_sgemv(int64_t m, int64_t k, const float *w, const float *x, float *y);
/* Y[N, M] = X[N, K] W[M, K]^T. */
void bench_blas_sgemm(int64_t n, int64_t m, int64_t k, const float *x, const float *w, float *y);

/* ---- cuBLAS and the CUDA runtime, loaded at run time (cublas.c) ------------------------------ */

/* Loads libcudart and libcublas once (directories in TRIT_BENCH_CUBLAS_DIR, ':'-separated, then
 * the loader's search path). Returns 1 if both loaded, else 0 with the reason in `why`. `what`
 * gets the files loaded. */
int bench_cublas_load(char *what, size_t what_size, char *why, size_t why_size);

/* Properties of CUDA device `ordinal`, or, when `name` is not NULL, of the first CUDA device with
 * that name. 0 on success; spec_gbs = 2 * memory clock * bus width, spec_tflops = SMs * clock *
 * dense f16 tensor flops per SM per clock (sm_80: 2048, sm_90: 4096; 0 for others). */
int bench_cuda_props(int ordinal, const char *name, double *spec_gbs, double *spec_tflops,
                     uint64_t *l2_bytes, char *why, size_t why_size);

/* A cuBLAS handle and stream on CUDA device `ordinal`; NULL with `why` filled if unavailable. */
bench_cublas *bench_cublas_open(int ordinal, char *why, size_t why_size);
void bench_cublas_close(bench_cublas *cb);

/* The fp16 dense baseline of a GEMV: Y[N, M] = X[N, K] W[M, K]^T through cublasGemmEx (f16
 * inputs and output, f32 accumulation), with `copies` device copies of W that successive calls
 * rotate through (copies * M * K * 2 bytes past the L2 make every call read W from DRAM). */
typedef struct bench_cublas_gemv bench_cublas_gemv;
bench_cublas_gemv *bench_cublas_gemv_create(bench_cublas *cb, const uint16_t *w_half, int64_t m,
                                            int64_t k, int copies, char *why, size_t why_size);
/* Uploads x [n, K] (f16) for the next runs. 0 on success. */
int bench_cublas_gemv_set_x(bench_cublas_gemv *g, const uint16_t *x_half, int64_t n);
/* Enqueues `reps` GEMMs (rotating copies) and waits; 0 on success, else the error in `why`. */
int bench_cublas_gemv_run(bench_cublas_gemv *g, int reps, char *why, size_t why_size);
/* The last output, [n, M] as floats. 0 on success. */
int bench_cublas_gemv_output(bench_cublas_gemv *g, float *y);
void bench_cublas_gemv_destroy(bench_cublas_gemv *g);

#endif /* TRIT_BENCH_BENCH_H */
