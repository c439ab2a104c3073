/*
 * trit_bench.c — trit-bench: the main job. For every device found it measures the bandwidth the
 * device can actually deliver, then times every op at BitNet b1.58 2B shapes and reports time,
 * bytes, flops, GB/s, GFLOP/s, % of the measured bandwidth, and the same-process baseline
 * (OpenBLAS fp32 GEMV/GEMM on the CPU, cuBLAS fp16 on CUDA, a naive attention) with the speed-up.
 * Outputs are checked against fp64 references (or the naive attention) once per case, so a fast
 * wrong kernel cannot post a number.
 *
 * Percent of peak is against read bandwidth on the CPU (the kernels are read-bound: weights and
 * K/V stream in, a few KiB go out) and against copy bandwidth elsewhere (the only number the
 * public API lets the bench measure on a device). Where the CUDA runtime describes the card,
 * percent of floor is against its DRAM bandwidth and tensor peak as well. Devices with their own
 * memory (GPUs) also get the "GPU cases": larger shapes, cold-L2 GEMV rows and batched timing.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* ---- rows ----------------------------------------------------------------------------------- */

/* Rows collected for --json and for the exit status. The bench is one single-threaded program,
 * so a file-level list is the simplest owner. */
static struct {
    bench_row *rows;
    size_t count, cap;
    int failures;
} g_rows;

void bench_row_init(bench_row *row, const bench_device *dev, const char *op, const char *shape,
                    const char *variant)
{
    memset(row, 0, sizeof(*row));
    snprintf(row->op, sizeof(row->op), "%s", op);
    snprintf(row->shape, sizeof(row->shape), "%s", shape);
    snprintf(row->variant, sizeof(row->variant), "%s", variant);
    snprintf(row->device, sizeof(row->device), "%s", trit_device_label(dev->device));
    row->check_err = -1;
}

void bench_row_finish(bench_row *row, const bench_device *dev)
{
    if (row->time_us > 0) {
        row->gbs = row->bytes / (row->time_us * 1e-6) * 1e-9;
        row->gflops = row->flops / (row->time_us * 1e-6) * 1e-9;
        row->pct_peak = dev->peak_gbs > 0 ? 100.0 * row->gbs / dev->peak_gbs : 0;
        row->speedup = row->base_us > 0 ? row->base_us / row->time_us : 0;
        double t_bytes = dev->spec_gbs > 0 ? row->bytes / (dev->spec_gbs * 1e9) : 0;
        double t_flops = dev->spec_tflops > 0 ? row->flops / (dev->spec_tflops * 1e12) : 0;
        row->floor_us = (t_bytes > t_flops ? t_bytes : t_flops) * 1e6;
        row->pct_floor = row->floor_us > 0 ? 100.0 * row->floor_us / row->time_us : 0;
    }
}

#define TABLE_HEAD "%-14s %-34s %-15s %-8s %10s %8s %8s %7s %7s  %-15s %10s %8s %8s\n"

static void print_table_header(FILE *f)
{
    fprintf(f, TABLE_HEAD, "op", "shape", "variant", "device", "time_us", "GB/s", "GFLOP/s",
            "%peak", "%floor", "baseline", "base_us", "speedup", "rel_err");
}

void bench_row_emit(const bench_config *cfg, const bench_row *row)
{
    FILE *f = cfg->table;
    fprintf(f, "%-14s %-34s %-15s %-8s ", row->op, row->shape, row->variant, row->device);
    switch (row->state) {
    case BENCH_ROW_UNSUPPORTED: fprintf(f, "unsupported: %s\n", row->note); break;
    case BENCH_ROW_FAILED: fprintf(f, "FAILED: %s\n", row->note); break;
    case BENCH_ROW_MISMATCH:
    case BENCH_ROW_OK:
        fprintf(f, "%10.1f %8.2f %8.2f %6.1f%% ", row->time_us, row->gbs, row->gflops,
                row->pct_peak);
        if (row->pct_floor > 0)
            fprintf(f, "%6.1f%%  ", row->pct_floor);
        else
            fprintf(f, "%7s  ", "-");
        fprintf(f, "%-15s ", row->base_us > 0 ? row->baseline : "-");
        if (row->base_us > 0)
            fprintf(f, "%10.1f %7.2fx ", row->base_us, row->speedup);
        else
            fprintf(f, "%10s %8s ", "-", "-");
        if (row->check_err >= 0)
            fprintf(f, "%8.1e", row->check_err);
        else
            fprintf(f, "%8s", "-");
        if (row->state == BENCH_ROW_MISMATCH)
            fprintf(f, "  MISMATCH: %s", row->note);
        if (row->base_note[0])
            fprintf(f, "  baseline: %s", row->base_note);
        fputc('\n', f);
        break;
    }
    fflush(f);

    if (row->state == BENCH_ROW_FAILED || row->state == BENCH_ROW_MISMATCH)
        g_rows.failures++;
    if (g_rows.count == g_rows.cap) {
        size_t cap = g_rows.cap ? 2 * g_rows.cap : 64;
        bench_row *p = realloc(g_rows.rows, cap * sizeof(*p));
        if (!p) {
            fprintf(stderr, "trit-bench: out of memory keeping rows\n");
            exit(1);
        }
        g_rows.rows = p;
        g_rows.cap = cap;
    }
    g_rows.rows[g_rows.count++] = *row;
}

int bench_unsupported(const bench_config *cfg, const bench_device *dev, const trit_op_desc *desc,
                      const char *op, const char *shape, const char *variant)
{
    int supported = 0;
    char reason[256] = "";
    trit_status st = trit_device_supports(dev->device, desc, &supported, reason, sizeof(reason));
    if (st != TRIT_OK) {
        bench_failed(cfg, dev, op, shape, variant, "trit_device_supports", st);
        return 1;
    }
    if (supported)
        return 0;
    bench_row row;
    bench_row_init(&row, dev, op, shape, variant);
    row.state = BENCH_ROW_UNSUPPORTED;
    snprintf(row.note, sizeof(row.note), "%s", reason[0] ? reason : "(no reason given)");
    bench_row_emit(cfg, &row);
    return 1;
}

void bench_failed(const bench_config *cfg, const bench_device *dev, const char *op,
                  const char *shape, const char *variant, const char *what, trit_status status)
{
    bench_row row;
    bench_row_init(&row, dev, op, shape, variant);
    row.state = BENCH_ROW_FAILED;
    snprintf(row.note, sizeof(row.note), "%s: %s: %s", what, trit_status_string(status),
             trit_last_error());
    bench_row_emit(cfg, &row);
}

/* ---- timing --------------------------------------------------------------------------------- */

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bench_sleep(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

trit_status bench_time(const bench_config *cfg, double min_time, bench_fn fn, void *ctx,
                       bench_timing *out)
{
    memset(out, 0, sizeof(*out));
    double w0 = bench_now();
    do {
        trit_status st = fn(ctx);
        if (st != TRIT_OK)
            return st;
    } while (bench_now() - w0 < cfg->warmup_time);

    /* A case whose single run already takes seconds (the naive prefill baseline) stops after
     * three runs once it is past this cap, rather than running min_runs times. */
    const double cap = cfg->quick ? 0.5 : 3.0;
    size_t n = 0, capacity = 256;
    double *times = malloc(capacity * sizeof(double));
    if (!times)
        return TRIT_ERROR_OUT_OF_MEMORY;
    double start = bench_now(), total = 0;
    while (!(n >= (size_t)cfg->min_runs && total >= min_time) && !(n >= 3 && total >= cap) &&
           n < 1000000) {
        double a = bench_now();
        trit_status st = fn(ctx);
        double b = bench_now();
        if (st != TRIT_OK) {
            free(times);
            return st;
        }
        if (n == capacity) {
            double *p = realloc(times, 2 * capacity * sizeof(double));
            if (!p) {
                free(times);
                return TRIT_ERROR_OUT_OF_MEMORY;
            }
            times = p;
            capacity *= 2;
        }
        times[n++] = b - a;
        total = b - start;
    }
    qsort(times, n, sizeof(double), cmp_double);
    out->median_s = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
    out->min_s = times[0];
    out->runs = (int)n;
    free(times);
    return TRIT_OK;
}

typedef struct ops_batch {
    bench_fn enqueue;
    void *ctx;
    trit_stream *stream;
    int reps;
} ops_batch;

static trit_status ops_batch_once(void *p)
{
    ops_batch *b = p;
    for (int r = 0; r < b->reps; r++) {
        trit_status st = b->enqueue(b->ctx);
        if (st != TRIT_OK)
            return st;
    }
    return trit_stream_sync(b->stream);
}

int bench_reps_for(const bench_device *dev, double single_s)
{
    if (!dev->gpu_cases || !(single_s > 0))
        return 1;
    double r = ceil(1e-3 / single_s);
    return r < 1 ? 1 : r > 64 ? 64 : (int)r;
}

trit_status bench_time_ops(const bench_config *cfg, const bench_device *dev, double min_time,
                           bench_fn enqueue, void *ctx, bench_timing *out, int *out_reps)
{
    ops_batch b = {enqueue, ctx, dev->stream, 1};
    if (dev->gpu_cases) {
        /* The fastest of three single runs (the first may include one-time set-up) sets R. */
        double best = 0;
        for (int i = 0; i < 3; i++) {
            double a = bench_now();
            trit_status st = ops_batch_once(&b);
            if (st != TRIT_OK)
                return st;
            double t = bench_now() - a;
            best = i == 0 || t < best ? t : best;
        }
        b.reps = bench_reps_for(dev, best);
    }
    trit_status st = bench_time(cfg, min_time, ops_batch_once, &b, out);
    if (st == TRIT_OK) {
        out->median_s /= b.reps;
        out->min_s /= b.reps;
    }
    if (out_reps)
        *out_reps = b.reps;
    return st;
}

/* ---- data helpers --------------------------------------------------------------------------- */

void bench_fill_floats(bench_rng *r, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = bench_rng_float(r);
}

void bench_fill_packed2(bench_rng *r, uint8_t *out, int64_t rows, int64_t cols)
{
    /* Each byte is one of the 81 byte values whose four 2-bit codes are all valid (0..2), picked
     * uniformly: a third of each weight value without a per-weight division. */
    static uint8_t table[81];
    if (!table[80]) {
        for (int i = 0; i < 81; i++)
            table[i] = (uint8_t)((i % 3) | (i / 3 % 3) << 2 | (i / 9 % 3) << 4 | (i / 27) << 6);
    }
    const int64_t row_bytes = (cols + 3) / 4;
    const int tail = (int)(cols % 4); /* weights in a row's last byte when cols % 4 != 0 */
    for (int64_t m = 0; m < rows; m++) {
        uint8_t *row = out + m * row_bytes;
        for (int64_t j = 0; j < row_bytes; j += 2) {
            uint64_t x = bench_rng_next(r);
            row[j] = table[((x & 0xffffffffu) * 81) >> 32];
            if (j + 1 < row_bytes)
                row[j + 1] = table[((x >> 32) * 81) >> 32];
        }
        if (tail) { /* padding codes must be 1 (w = 0) */
            uint8_t keep = (uint8_t)((1u << (2 * tail)) - 1);
            uint8_t pad = (uint8_t)(0x55u & ~keep);
            row[row_bytes - 1] = (uint8_t)((row[row_bytes - 1] & keep) | pad);
        }
    }
}

void bench_unpack_f32(const uint8_t *codes, int64_t rows, int64_t cols, float scale, float *out)
{
    const int64_t row_bytes = (cols + 3) / 4;
    const float lut[4] = {-scale, 0.f, scale, NAN};
    for (int64_t m = 0; m < rows; m++)
        for (int64_t k = 0; k < cols; k++)
            out[m * cols + k] = lut[(codes[m * row_bytes + k / 4] >> (2 * (k % 4))) & 3];
}

double bench_rel_error(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0, max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        double d = fabs((double)a[i] - (double)b[i]);
        num += d * d;
        den += (double)b[i] * (double)b[i];
        max_diff = d > max_diff ? d : max_diff;
        max_ref = fabs((double)b[i]) > max_ref ? fabs((double)b[i]) : max_ref;
    }
    double l2 = den > 0 ? sqrt(num / den) : sqrt(num);
    double mx = max_ref > 0 ? max_diff / max_ref : max_diff;
    return l2 > mx ? l2 : mx;
}

trit_status bench_tensor_upload(trit_stream *stream, trit_dtype dtype, uint32_t rank,
                                const int64_t *shape, const void *data, trit_buffer **out_buffer,
                                trit_tensor *out_tensor)
{
    *out_buffer = NULL;
    uint64_t bytes = trit_dtype_size(dtype);
    for (uint32_t i = 0; i < rank; i++)
        bytes *= (uint64_t)shape[i];
    trit_buffer *b = NULL;
    trit_status st = trit_buffer_alloc(trit_stream_device(stream), bytes, &b);
    if (st == TRIT_OK)
        st = trit_tensor_make(b, 0, dtype, rank, shape, NULL, out_tensor);
    if (st == TRIT_OK && data)
        st = trit_buffer_upload(stream, b, 0, data, bytes);
    if (st == TRIT_OK)
        st = trit_stream_sync(stream);
    if (st != TRIT_OK) {
        trit_buffer_free(b);
        return st;
    }
    *out_buffer = b;
    return TRIT_OK;
}

/* ---- bandwidth ------------------------------------------------------------------------------ */

typedef struct copy_ctx {
    trit_stream *stream;
    trit_buffer *src, *dst;
    uint64_t bytes;
} copy_ctx;

static trit_status copy_enqueue(void *p)
{
    copy_ctx *c = p;
    return trit_buffer_copy(c->stream, c->src, 0, c->dst, 0, c->bytes);
}

static void measure_bandwidth(const bench_config *cfg, bench_device *dev)
{
    /* A GPU's L2 is 40-60 MB: copies of 256 MiB (512 MiB moved) come from DRAM. */
    copy_ctx c = {.stream = dev->stream, .bytes = cfg->copy_bytes};
    if (dev->gpu_cases && c.bytes < (256ull << 20))
        c.bytes = 256ull << 20;
    if (dev->info.max_buffer_bytes && c.bytes > dev->info.max_buffer_bytes)
        c.bytes = dev->info.max_buffer_bytes & ~(uint64_t)0xfffff;
    trit_status st = trit_buffer_alloc(dev->device, c.bytes, &c.src);
    if (st == TRIT_OK)
        st = trit_buffer_alloc(dev->device, c.bytes, &c.dst);
    /* Fill both so every page exists before the first timed copy. The source gets random bytes:
     * pages of one repeated byte can be merged by the hypervisor (a VM's host deduplicating
     * identical pages), and reading one shared page would report cache speed, not memory. */
    if (st == TRIT_OK)
        st = trit_buffer_fill(dev->stream, c.dst, 0, 0, c.bytes);
    enum { CHUNK = 4 << 20 };
    uint64_t *chunk = malloc(CHUNK);
    if (!chunk && st == TRIT_OK)
        st = TRIT_ERROR_OUT_OF_MEMORY;
    bench_rng rng = {0xc0b1ull};
    for (uint64_t off = 0; off < c.bytes && st == TRIT_OK; off += CHUNK) {
        uint64_t n = c.bytes - off < CHUNK ? c.bytes - off : CHUNK;
        for (uint64_t i = 0; i < n / 8; i++)
            chunk[i] = bench_rng_next(&rng);
        st = trit_buffer_upload(dev->stream, c.src, off, chunk, n);
        if (st == TRIT_OK)
            st = trit_stream_sync(dev->stream); /* the chunk is reused */
    }
    free(chunk);
    bench_timing t = {0};
    bench_config bc = *cfg;
    bc.min_runs = cfg->quick ? 3 : 7;
    bc.warmup_time = 0;
    if (st == TRIT_OK)
        st = bench_time_ops(&bc, dev, 0, copy_enqueue, &c, &t, NULL);
    if (st != TRIT_OK) {
        char shape[64];
        snprintf(shape, sizeof(shape), "%llu MiB", (unsigned long long)(c.bytes >> 20));
        bench_failed(cfg, dev, "copy_bandwidth", shape, "", "trit_buffer_copy", st);
    } else {
        dev->copy_gbs = 2.0 * (double)c.bytes / t.median_s * 1e-9;
    }
    trit_buffer_free(c.src);
    trit_buffer_free(c.dst);

    if (dev->info.backend == TRIT_BACKEND_CPU) {
        dev->read_gbs = baseline_read_bandwidth(cfg->read_bytes, dev->threads, cfg->quick ? 3 : 7);
        if (dev->read_gbs <= 0)
            fprintf(cfg->table,
                    "trit-bench: %s: could not allocate %llu MiB to measure read "
                    "bandwidth; %% peak is against copy bandwidth\n",
                    trit_device_label(dev->device), (unsigned long long)(cfg->read_bytes >> 20));
    }
    if (dev->read_gbs > 0) {
        dev->peak_gbs = dev->read_gbs;
        dev->peak_kind = "read";
    } else {
        dev->peak_gbs = dev->copy_gbs;
        dev->peak_kind = "copy";
    }
    fprintf(cfg->table,
            "# %s: copy bandwidth %.2f GB/s (trit_buffer_copy of %llu MiB, read + "
            "written)",
            trit_device_label(dev->device), dev->copy_gbs, (unsigned long long)(c.bytes >> 20));
    if (dev->read_gbs > 0)
        fprintf(cfg->table, "; read bandwidth %.2f GB/s (%d threads over %llu MiB)", dev->read_gbs,
                dev->threads, (unsigned long long)(cfg->read_bytes >> 20));
    fprintf(cfg->table, "; %% peak is against %s bandwidth\n", dev->peak_kind);
}

/* ---- how busy the machine was -----------------------------------------------------------------
 */

/* CPU seconds the whole machine spent busy (all CPUs, from /proc/stat) and this process used
 * (getrusage): their difference over a run is what other processes took, which is what makes a
 * number on a shared 2-core machine untrustworthy. Negative machine time if unavailable. */
typedef struct cpu_usage {
    double machine_busy_s, self_s, wall_s;
} cpu_usage;

static cpu_usage cpu_usage_now(void)
{
    cpu_usage u = {-1, 0, bench_now()};
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        unsigned long long v[8] = {0};
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8) {
            long hz = sysconf(_SC_CLK_TCK);
            /* user nice system [idle iowait] irq softirq steal */
            u.machine_busy_s = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)hz;
        }
        fclose(f);
    }
    struct rusage r;
    if (getrusage(RUSAGE_SELF, &r) == 0)
        u.self_s = (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec * 1e-6 +
                   (double)r.ru_stime.tv_sec + (double)r.ru_stime.tv_usec * 1e-6;
    return u;
}

/* Share of the machine's CPUs that other processes used between `a` and `b` (0..1), or -1. */
static double cpu_usage_others(cpu_usage a, cpu_usage b)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (a.machine_busy_s < 0 || b.machine_busy_s < 0 || n < 1 || b.wall_s <= a.wall_s)
        return -1;
    double others = (b.machine_busy_s - a.machine_busy_s) - (b.self_s - a.self_s);
    double share = others / ((b.wall_s - a.wall_s) * (double)n);
    return share < 0 ? 0 : share > 1 ? 1 : share;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.10g", v);
    else
        fputs("null", f);
}

static const char *caps_names[] = {
    [0] = "fp16",      [1] = "bf16",        [2] = "int8_dot",
    [3] = "subgroups", [4] = "coop_matrix", [5] = "unified_memory",
    [8] = "avx2",      [9] = "avx512",      [10] = "avx512_vnni",
};

static void json_device(FILE *f, const bench_device *d)
{
    fprintf(f, "{\"index\": %u, \"label\": ", d->index);
    json_string(f, trit_device_label(d->device));
    fprintf(f, ", \"backend\": ");
    json_string(f, trit_backend_name(d->info.backend));
    fprintf(f, ", \"name\": ");
    json_string(f, d->info.name);
    fprintf(f, ", \"vendor\": ");
    json_string(f, d->info.vendor);
    fprintf(f, ", \"driver\": ");
    json_string(f, d->info.driver);
    fprintf(f,
            ", \"memory_bytes\": %llu, \"max_buffer_bytes\": %llu, \"compute_units\": %u, "
            "\"subgroup_size\": %u, \"caps\": [",
            (unsigned long long)d->info.memory_bytes, (unsigned long long)d->info.max_buffer_bytes,
            d->info.compute_units, d->info.subgroup_size);
    int first = 1;
    for (unsigned b = 0; b < sizeof(caps_names) / sizeof(caps_names[0]); b++) {
        if ((d->info.caps >> b & 1u) && caps_names[b]) {
            fprintf(f, "%s", first ? "" : ", ");
            json_string(f, caps_names[b]);
            first = 0;
        }
    }
    fprintf(f, "], \"threads\": %d, \"copy_bandwidth_gbs\": ", d->threads);
    json_number(f, d->copy_gbs);
    fprintf(f, ", \"read_bandwidth_gbs\": ");
    if (d->read_gbs > 0)
        json_number(f, d->read_gbs);
    else
        fputs("null", f);
    fprintf(f, ", \"peak_gbs\": ");
    json_number(f, d->peak_gbs);
    fprintf(f, ", \"peak_kind\": ");
    json_string(f, d->peak_kind ? d->peak_kind : "copy");
    fprintf(f, ", \"gpu_cases\": %s, \"spec_dram_gbs\": ", d->gpu_cases ? "true" : "false");
    json_number(f, d->spec_gbs);
    fprintf(f, ", \"spec_f16_tensor_tflops\": ");
    json_number(f, d->spec_tflops);
    fprintf(f, ", \"l2_bytes\": %llu, \"cublas\": ", (unsigned long long)d->l2_bytes);
    json_string(f, d->cublas_note);
    fputc('}', f);
}

static const char *row_state_name(bench_row_state s)
{
    switch (s) {
    case BENCH_ROW_OK: return "ok";
    case BENCH_ROW_UNSUPPORTED: return "unsupported";
    case BENCH_ROW_FAILED: return "failed";
    case BENCH_ROW_MISMATCH: return "mismatch";
    }
    return "unknown";
}

static void json_row(FILE *f, const bench_row *r)
{
    fprintf(f, "{\"op\": ");
    json_string(f, r->op);
    fprintf(f, ", \"shape\": ");
    json_string(f, r->shape);
    fprintf(f, ", \"variant\": ");
    json_string(f, r->variant);
    fprintf(f, ", \"device\": ");
    json_string(f, r->device);
    fprintf(f, ", \"state\": ");
    json_string(f, row_state_name(r->state));
    if (r->note[0]) {
        fprintf(f, ", \"note\": ");
        json_string(f, r->note);
    }
    if (r->state == BENCH_ROW_OK || r->state == BENCH_ROW_MISMATCH) {
        fprintf(f, ", \"runs\": %d, \"time_us\": ", r->runs);
        json_number(f, r->time_us);
        fprintf(f, ", \"min_us\": ");
        json_number(f, r->min_us);
        fprintf(f, ", \"bytes\": ");
        json_number(f, r->bytes);
        fprintf(f, ", \"flops\": ");
        json_number(f, r->flops);
        fprintf(f, ", \"gbs\": ");
        json_number(f, r->gbs);
        fprintf(f, ", \"gflops\": ");
        json_number(f, r->gflops);
        fprintf(f, ", \"pct_peak\": ");
        json_number(f, r->pct_peak);
        fprintf(f, ", \"ops_per_sync\": %d", r->ops_per_sync > 0 ? r->ops_per_sync : 1);
        if (r->floor_us > 0) {
            fprintf(f, ", \"floor_us\": ");
            json_number(f, r->floor_us);
            fprintf(f, ", \"pct_floor\": ");
            json_number(f, r->pct_floor);
        }
        if (r->base_us > 0) {
            fprintf(f, ", \"baseline\": ");
            json_string(f, r->baseline);
            fprintf(f, ", \"baseline_us\": ");
            json_number(f, r->base_us);
            fprintf(f, ", \"speedup\": ");
            json_number(f, r->speedup);
        }
        if (r->base_note[0]) {
            fprintf(f, ", \"baseline_note\": ");
            json_string(f, r->base_note);
        }
        if (r->check_err >= 0) {
            fprintf(f, ", \"rel_error\": ");
            json_number(f, r->check_err);
            fprintf(f, ", \"rel_error_tol\": ");
            json_number(f, r->check_tol);
        }
    }
    fputc('}', f);
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: trit-bench [--quick] [--json] [--device N] [--backend NAME]\n"
        "                  [--op gemv|attention|rope|sweep|all] [--gpu-cases auto|on|off]\n"
        "                  [--min-time SECONDS] [--baselines] [--help]\n"
        "\n"
        "Times trit's ops on every device found (or device N): ternary GEMV at BitNet b1.58 2B\n"
        "shapes against OpenBLAS fp32 (CPU) or cuBLAS fp16 (CUDA), a cold sweep over all\n"
        "projections of a 30-layer model, attention (decode, prefill) against a naive attention,\n"
        "and RoPE + KV append. Reports median time, GB/s, GFLOP/s, %% of the bandwidth it\n"
        "measures on the device and, where the CUDA runtime describes the card, %% of the floor.\n"
        "\n"
        "  --quick          CI smoke run: fewer shapes and runs, smaller buffers (a few seconds)\n"
        "  --json           print one JSON object on stdout (the table goes to stderr)\n"
        "  --device N       only device N (0-based, in trit_device_get order)\n"
        "  --backend NAME   only devices of that backend: cpu, cuda, opencl, vulkan\n"
        "  --op OPS         comma-separated subset of gemv, attention, rope, sweep; or all\n"
        "  --gpu-cases M    large shapes (8192x28672 GEMV, 32/8-head attention to 16k tokens,\n"
        "                   32k-token decode), cold-L2 GEMV rows and batched timing; auto (the\n"
        "                   default) turns them on for devices with their own memory\n"
        "  --min-time S     seconds of timed runs per case (default 0.2; --quick 0.02)\n"
        "  --baselines      say which baseline libraries load here (OpenBLAS, cuBLAS), then exit\n"
        "\n"
        "Environment: TRIT_PLUGIN_PATH (where plugins are), TRIT_CPU_THREADS (CPU plugin threads;\n"
        "the baselines use as many), TRIT_BENCH_OPENBLAS (path of libopenblas, if not in the\n"
        "loader's path), TRIT_BENCH_CUBLAS_DIR (':'-separated directories holding libcublas and\n"
        "libcudart, e.g. those of PyTorch's nvidia wheels). Exit status: 0 if every op ran and\n"
        "matched its reference, 1 if an op failed or disagreed, 2 for bad arguments.\n");
}

static int parse_backend(const char *s)
{
    static const trit_backend all[] = {TRIT_BACKEND_CPU, TRIT_BACKEND_CUDA, TRIT_BACKEND_OPENCL,
                                       TRIT_BACKEND_VULKAN, TRIT_BACKEND_OTHER};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (!strcmp(s, trit_backend_name(all[i])))
            return (int)all[i];
    return -1;
}

static int print_baselines(void)
{
    char what[512], why[512];
    printf("OpenBLAS: %s\n", bench_blas_describe());
    if (bench_cublas_load(what, sizeof(what), why, sizeof(why)))
        printf("cuBLAS: %s\n", what);
    else
        printf("cuBLAS: %s\n", why);
    return 0;
}

/* What the CUDA runtime knows about the card behind `d` (CUDA devices by ordinal, others by name),
 * and the cuBLAS baseline on CUDA devices. */
static void attach_cuda(const bench_config *cfg, bench_device *d)
{
    char why[512] = "";
    const int is_cuda = d->info.backend == TRIT_BACKEND_CUDA;
    if (!is_cuda && !d->gpu_cases)
        return;
    if (bench_cuda_props(is_cuda ? (int)d->info.index_in_backend : -1,
                         is_cuda ? NULL : d->info.name, &d->spec_gbs, &d->spec_tflops, &d->l2_bytes,
                         why, sizeof(why)) == 0) {
        fprintf(cfg->table,
                "# %s: the CUDA runtime says: DRAM %.0f GB/s (memory clock x bus width), f16 "
                "tensor peak %.0f TFLOP/s (SMs x clock x per-SM rate), L2 %.1f MB; %%floor is "
                "max(bytes / DRAM, flops / tensor peak) over the time\n",
                trit_device_label(d->device), d->spec_gbs, d->spec_tflops,
                (double)d->l2_bytes * 1e-6);
    } else if (is_cuda) {
        fprintf(cfg->table, "# %s: no floors (%s)\n", trit_device_label(d->device), why);
    }
    if (!is_cuda)
        return;
    d->cublas = bench_cublas_open((int)d->info.index_in_backend, why, sizeof(why));
    char what[512];
    if (d->cublas && bench_cublas_load(what, sizeof(what), NULL, 0)) {
        fprintf(cfg->table, "# baseline: cuBLAS from %s\n", what);
        snprintf(d->cublas_note, sizeof(d->cublas_note), "loaded: %.180s", what);
    } else {
        snprintf(d->cublas_note, sizeof(d->cublas_note), "%.199s", why);
        fprintf(cfg->table, "# baseline: %s\n", why);
    }
}

static int parse_ops(const char *s, unsigned *out)
{
    unsigned ops = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "gemv"))
            ops |= BENCH_OP_GEMV;
        else if (!strcmp(tok, "attention"))
            ops |= BENCH_OP_ATTENTION;
        else if (!strcmp(tok, "rope"))
            ops |= BENCH_OP_ROPE;
        else if (!strcmp(tok, "sweep"))
            ops |= BENCH_OP_SWEEP;
        else if (!strcmp(tok, "all"))
            ops |= BENCH_OP_ALL;
        else
            return -1;
    }
    if (!ops)
        return -1;
    *out = ops;
    return 0;
}

int main(int argc, char **argv)
{
    bench_config cfg = {.ops = BENCH_OP_ALL, .gpu_cases = -1, .backend = -1, .table = stdout};
    int json = 0;
    long device_filter = -1;
    double min_time = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            cfg.quick = 1;
        } else if (!strcmp(a, "--baselines")) {
            return print_baselines();
        } else if (!strcmp(a, "--backend") && i + 1 < argc) {
            cfg.backend = parse_backend(argv[++i]);
            if (cfg.backend < 0) {
                fprintf(stderr, "trit-bench: unknown --backend '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--gpu-cases") && i + 1 < argc) {
            const char *m = argv[++i];
            if (!strcmp(m, "auto"))
                cfg.gpu_cases = -1;
            else if (!strcmp(m, "on"))
                cfg.gpu_cases = 1;
            else if (!strcmp(m, "off"))
                cfg.gpu_cases = 0;
            else {
                fprintf(stderr, "trit-bench: --gpu-cases wants auto, on or off, not '%s'\n", m);
                return 2;
            }
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--device") && i + 1 < argc) {
            char *end;
            errno = 0;
            device_filter = strtol(argv[++i], &end, 10);
            if (errno || *end || device_filter < 0) {
                fprintf(stderr, "trit-bench: --device wants a device index, not '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--op") && i + 1 < argc) {
            if (parse_ops(argv[++i], &cfg.ops)) {
                fprintf(stderr, "trit-bench: unknown --op '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--min-time") && i + 1 < argc) {
            char *end;
            min_time = strtod(argv[++i], &end);
            if (*end || !(min_time >= 0) || min_time > 100) {
                fprintf(stderr, "trit-bench: --min-time wants seconds, not '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "trit-bench: unknown argument '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (cfg.quick) {
        cfg.min_time = 0.02;
        cfg.min_runs = 3;
        cfg.warmup_time = 0.005;
        cfg.sweep_layers = 2;
        cfg.copy_bytes = 64ull << 20;
        cfg.read_bytes = 256ull << 20;
        cfg.cold_bytes = 128ull << 20;
    } else {
        cfg.min_time = 0.2;
        cfg.min_runs = 10;
        cfg.warmup_time = 0.05;
        cfg.sweep_layers = 30;
        cfg.copy_bytes = 256ull << 20;
        cfg.read_bytes = 1ull << 30;
        cfg.cold_bytes = 256ull << 20;
    }
    if (min_time >= 0)
        cfg.min_time = min_time;
    if (json)
        cfg.table = stderr;

    trit_context *ctx = NULL;
    trit_status st = trit_context_create(NULL, &ctx);
    if (st != TRIT_OK) {
        fprintf(stderr, "trit-bench: trit_context_create: %s: %s\n", trit_status_string(st),
                trit_last_error());
        return 1;
    }

    char date[64];
    time_t now = time(NULL);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    const char *env_threads = getenv("TRIT_CPU_THREADS");
    fprintf(cfg.table, "# trit-bench %d.%d.%d, %s%s; OpenBLAS: %s\n", TRIT_VERSION_MAJOR,
            TRIT_VERSION_MINOR, TRIT_VERSION_PATCH, date, cfg.quick ? ", --quick" : "",
            bench_blas_describe());
    if (env_threads)
        fprintf(cfg.table, "# TRIT_CPU_THREADS=%s\n", env_threads);
    /* Other work on the machine skews every number; say how busy it was. */
    double load[3] = {-1, -1, -1};
    FILE *lf = fopen("/proc/loadavg", "r");
    if (lf) {
        if (fscanf(lf, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = load[1] = load[2] = -1;
        fclose(lf);
    }
    if (load[0] >= 0)
        fprintf(cfg.table, "# load average before the run: %.2f %.2f %.2f\n", load[0], load[1],
                load[2]);
    uint32_t n_plugins = trit_context_plugin_count(ctx);
    for (uint32_t i = 0; i < n_plugins; i++) {
        trit_plugin_info pi = {.size = sizeof(pi)};
        if (trit_context_plugin_info(ctx, i, &pi) != TRIT_OK)
            continue;
        if (pi.state == TRIT_PLUGIN_LOADED)
            fprintf(cfg.table, "# plugin %s: %u device(s) (%s)\n", pi.name, pi.device_count,
                    pi.path);
        else
            fprintf(cfg.table, "# plugin %s: skipped: %s (%s)\n", pi.name, pi.reason, pi.path);
    }

    uint32_t n_devices = trit_device_count(ctx);
    if (n_devices == 0) {
        fprintf(stderr, "trit-bench: no device found (set TRIT_PLUGIN_PATH to the directory of the "
                        "plugins; see the plugin lines above)\n");
        trit_context_destroy(ctx);
        return 1;
    }
    if (device_filter >= (long)n_devices) {
        fprintf(stderr, "trit-bench: --device %ld: there are only %u devices\n", device_filter,
                n_devices);
        trit_context_destroy(ctx);
        return 2;
    }

    cpu_usage usage_start = cpu_usage_now();
    bench_device *devs = calloc(n_devices, sizeof(*devs));
    if (!devs) {
        fprintf(stderr, "trit-bench: out of memory\n");
        trit_context_destroy(ctx);
        return 1;
    }
    int device_errors = 0;
    uint32_t n_run = 0;
    for (uint32_t i = 0; i < n_devices; i++) {
        if (device_filter >= 0 && (uint32_t)device_filter != i)
            continue;
        bench_device *d = &devs[n_run];
        d->index = i;
        d->info.size = sizeof(d->info);
        st = trit_device_get(ctx, i, &d->device);
        if (st == TRIT_OK)
            st = trit_device_get_info(d->device, &d->info);
        if (st == TRIT_OK && cfg.backend >= 0 && (int)d->info.backend != cfg.backend)
            continue;
        if (st == TRIT_OK)
            st = trit_stream_create(d->device, &d->stream);
        if (st != TRIT_OK) {
            fprintf(stderr, "trit-bench: device %u: %s: %s\n", i, trit_status_string(st),
                    trit_last_error());
            device_errors++;
            continue;
        }
        n_run++;
        d->threads = (int)d->info.compute_units;
        if (d->threads < 1) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            d->threads = n > 0 ? (int)n : 1;
        }
        d->host_baselines = d->info.backend == TRIT_BACKEND_CPU;
        if (d->host_baselines)
            bench_blas_set_threads(d->threads);
        d->gpu_cases = cfg.gpu_cases >= 0 ? cfg.gpu_cases
                                          : d->info.backend != TRIT_BACKEND_CPU &&
                                                !(d->info.caps & TRIT_CAP_UNIFIED_MEMORY);

        fprintf(cfg.table, "\n# device %u: %s (%s, %s), %s, %u compute units, %.1f GiB\n", i,
                trit_device_label(d->device), d->info.name, d->info.vendor,
                trit_backend_name(d->info.backend), d->info.compute_units,
                (double)d->info.memory_bytes / (1024.0 * 1024 * 1024));
        if (!d->host_baselines)
            fprintf(cfg.table, "# host baselines (OpenBLAS, naive attention) run on the CPU, so "
                               "they are not timed against this device; outputs are still "
                               "checked against references\n");
        if (d->gpu_cases)
            fprintf(cfg.table,
                    "# GPU cases on: large shapes, cold-L2 GEMV rows; each timed sample enqueues "
                    "R ops back to back (about 1 ms, R <= 64) and syncs once, time_us is per op "
                    "(R is ops_per_sync in --json)\n");
        attach_cuda(&cfg, d);
        measure_bandwidth(&cfg, d);
        print_table_header(cfg.table);
        if (cfg.ops & BENCH_OP_GEMV)
            bench_gemv_run(&cfg, d);
        if (cfg.ops & BENCH_OP_SWEEP)
            bench_sweep_run(&cfg, d);
        if (cfg.ops & BENCH_OP_ATTENTION)
            bench_attention_run(&cfg, d);
        if (cfg.ops & BENCH_OP_ROPE)
            bench_rope_run(&cfg, d);
        trit_stream_destroy(d->stream);
        d->stream = NULL;
        bench_cublas_close(d->cublas);
        d->cublas = NULL;
    }

    if (n_run == 0 && device_errors == 0) {
        fprintf(stderr, "trit-bench: no device matches --device / --backend (see the plugin lines "
                        "above)\n");
        device_errors = 1;
    }
    double others = cpu_usage_others(usage_start, cpu_usage_now());
    if (others >= 0)
        fprintf(cfg.table,
                "\n# other processes (and hypervisor steal) used %.0f%% of the CPU time during the "
                "run%s\n",
                100.0 * others,
                others > 0.05 ? ": numbers are skewed, rerun on an idle machine" : "");

    if (json) {
        FILE *f = stdout;
        fprintf(f, "{\"trit_version\": \"%d.%d.%d\", \"date\": ", TRIT_VERSION_MAJOR,
                TRIT_VERSION_MINOR, TRIT_VERSION_PATCH);
        json_string(f, date);
        fprintf(f, ", \"quick\": %s, \"min_time_s\": ", cfg.quick ? "true" : "false");
        json_number(f, cfg.min_time);
        fprintf(f, ", \"loadavg_1min_before\": ");
        if (load[0] >= 0)
            json_number(f, load[0]);
        else
            fputs("null", f);
        fprintf(f, ", \"others_cpu_share\": ");
        if (others >= 0)
            json_number(f, others);
        else
            fputs("null", f);
        fprintf(f, ", \"openblas\": ");
        json_string(f, bench_blas_describe());
        fprintf(f, ",\n \"plugins\": [");
        for (uint32_t i = 0; i < n_plugins; i++) {
            trit_plugin_info pi = {.size = sizeof(pi)};
            if (trit_context_plugin_info(ctx, i, &pi) != TRIT_OK)
                continue;
            fprintf(f, "%s{\"name\": ", i ? ", " : "");
            json_string(f, pi.name);
            fprintf(f, ", \"path\": ");
            json_string(f, pi.path);
            fprintf(f, ", \"loaded\": %s, \"reason\": ",
                    pi.state == TRIT_PLUGIN_LOADED ? "true" : "false");
            json_string(f, pi.reason);
            fputc('}', f);
        }
        fprintf(f, "],\n \"devices\": [");
        for (uint32_t i = 0; i < n_run; i++) {
            fprintf(f, "%s\n  ", i ? "," : "");
            json_device(f, &devs[i]);
        }
        fprintf(f, "],\n \"rows\": [");
        for (size_t i = 0; i < g_rows.count; i++) {
            fprintf(f, "%s\n  ", i ? "," : "");
            json_row(f, &g_rows.rows[i]);
        }
        fprintf(f, "]}\n");
    }

    int failures = g_rows.failures + device_errors;
    if (failures)
        fprintf(stderr, "trit-bench: %d failure(s); see the FAILED / MISMATCH rows above\n",
                failures);
    free(g_rows.rows);
    free(devs);
    trit_context_destroy(ctx);
    return failures ? 1 : 0;
}
