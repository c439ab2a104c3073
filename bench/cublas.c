/*
 * cublas.c — the CUDA rows' baseline, cuBLAS fp16 GEMV/GEMM, and what the CUDA runtime says about
 * the card (DRAM bandwidth and tensor peak for the floors, L2 size for the cold rows).
 *
 * Neither library is linked: trit-bench must build and run on machines with no CUDA at all, and
 * on a GPU machine cuBLAS may exist only inside a Python package (PyTorch's wheels ship
 * libcublas.so.13 and libcudart.so.13). So both are opened with dlopen on first use: first from
 * each directory in TRIT_BENCH_CUBLAS_DIR (':'-separated), then by soname from the loader's search
 * path; libcudart.so.13, .12, libcudart.so, and the libcublas of the same major version first.
 * libcublasLt is opened from the same directory before libcublas, which needs it.
 *
 * The runtime loaded here is a second CUDA runtime in the process (the trit CUDA plugin links its
 * own statically); both use the device's primary context, so buffers and streams here live beside
 * trit's and the two never share pointers. Only enum values and pointer-sized handles cross the
 * boundary, and those are part of the libraries' ABI (cudaDeviceProp is read for its first
 * member, `char name[256]`, only). Timing is host-side like every trit row: `reps` calls enqueued
 * back to back, one cudaStreamSynchronize, time / reps.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* The few enum values used (cuda_runtime_api.h, driver_types.h, cublas_api.h, library_types.h). */
enum {
    CUDA_MEMCPY_H2D = 1,
    CUDA_MEMCPY_D2H = 2,
    ATTR_CLOCK_RATE = 13, /* kHz */
    ATTR_SM_COUNT = 16,
    ATTR_MEM_CLOCK_RATE = 36, /* kHz */
    ATTR_MEM_BUS_WIDTH = 37,  /* bits */
    ATTR_L2_SIZE = 38,        /* bytes */
    ATTR_CC_MAJOR = 75,
    ATTR_CC_MINOR = 76,
    CUBLAS_OP_N = 0,
    CUBLAS_OP_T = 1,
    CUDA_R_16F = 2,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_GEMM_DEFAULT = -1,
};

typedef int (*count_fn)(int *);
typedef int (*int_fn)(int);
typedef int (*attr_fn)(int *, int, int);
typedef int (*props_fn)(void *, int);
typedef int (*malloc_fn)(void **, size_t);
typedef int (*free_fn)(void *);
typedef int (*memcpy_fn)(void *, const void *, size_t, int);
typedef int (*stream_create_fn)(void **);
typedef int (*stream_fn)(void *);
typedef const char *(*errstr_fn)(int);
typedef int (*version_fn)(int *);
typedef int (*cublas_create_fn)(void **);
typedef int (*cublas_destroy_fn)(void *);
typedef int (*cublas_stream_fn)(void *, void *);
typedef int (*gemm_ex_fn)(void *, int, int, int, int, int, const void *, const void *, int, int,
                          const void *, int, int, const void *, void *, int, int, int, int);

static struct {
    int tried, ok_rt, ok; /* ok_rt: the runtime loaded; ok: cuBLAS too */
    char what[512], why[512];
    count_fn get_device_count;
    int_fn set_device;
    attr_fn attr;
    props_fn props;
    malloc_fn malloc_;
    free_fn free_;
    memcpy_fn memcpy_;
    stream_create_fn stream_create;
    stream_fn stream_destroy, stream_sync;
    errstr_fn error_string;
    version_fn runtime_version;
    cublas_create_fn create;
    cublas_destroy_fn destroy;
    cublas_stream_fn set_stream;
    gemm_ex_fn gemm_ex;
} g_cu;

/* dlopen `file` from each directory of TRIT_BENCH_CUBLAS_DIR, then by name. */
static void *open_in_dirs(const char *file, char *loaded, size_t loaded_size)
{
    const char *dirs = getenv("TRIT_BENCH_CUBLAS_DIR");
    if (dirs && *dirs) {
        const char *p = dirs;
        while (*p) {
            const char *end = strchr(p, ':');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            if (n > 0 && n < 900) {
                char path[1024];
                snprintf(path, sizeof(path), "%.*s/%s", (int)n, p, file);
                void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
                if (h) {
                    snprintf(loaded, loaded_size, "%s", path);
                    return h;
                }
            }
            p += n;
            if (*p == ':')
                p++;
        }
    }
    void *h = dlopen(file, RTLD_NOW | RTLD_GLOBAL);
    if (h)
        snprintf(loaded, loaded_size, "%s", file);
    return h;
}

/* memcpy: ISO C has no cast from an object pointer to a function pointer. */
#define CU_SYM(lib, field, name)                                                                   \
    do {                                                                                           \
        void *sym_ = dlsym(lib, name);                                                             \
        memcpy(&g_cu.field, &sym_, sizeof(sym_));                                                  \
        if (!g_cu.field) {                                                                         \
            snprintf(g_cu.why, sizeof(g_cu.why), "%s has no %s", #lib, name);                      \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void cu_load(void)
{
    if (g_cu.tried)
        return;
    g_cu.tried = 1;
    static const char *versions[] = {".13", ".12", ""};
    void *cudart = NULL, *cublas = NULL;
    char rt_path[1024] = "", bl_path[1024] = "", lt_path[1024] = "";
    int major = -1;
    for (int i = 0; i < 3 && !cudart; i++) {
        char file[64];
        snprintf(file, sizeof(file), "libcudart.so%s", versions[i]);
        cudart = open_in_dirs(file, rt_path, sizeof(rt_path));
        if (cudart)
            major = i;
    }
    if (!cudart) {
        snprintf(g_cu.why, sizeof(g_cu.why),
                 "cuBLAS not found: no libcudart.so.13 / .12 / .so (set TRIT_BENCH_CUBLAS_DIR to "
                 "the directory that holds libcublas and libcudart)");
        return;
    }
    CU_SYM(cudart, get_device_count, "cudaGetDeviceCount");
    CU_SYM(cudart, set_device, "cudaSetDevice");
    CU_SYM(cudart, attr, "cudaDeviceGetAttribute");
    void *props = dlsym(cudart, "cudaGetDeviceProperties_v2"); /* CUDA 12's name */
    memcpy(&g_cu.props, &props, sizeof(props));
    if (!g_cu.props)
        CU_SYM(cudart, props, "cudaGetDeviceProperties");
    CU_SYM(cudart, malloc_, "cudaMalloc");
    CU_SYM(cudart, free_, "cudaFree");
    CU_SYM(cudart, memcpy_, "cudaMemcpy");
    CU_SYM(cudart, stream_create, "cudaStreamCreate");
    CU_SYM(cudart, stream_destroy, "cudaStreamDestroy");
    CU_SYM(cudart, stream_sync, "cudaStreamSynchronize");
    CU_SYM(cudart, error_string, "cudaGetErrorString");
    CU_SYM(cudart, runtime_version, "cudaRuntimeGetVersion");
    g_cu.ok_rt = 1; /* enough for the card's properties */

    /* cuBLAS of the runtime's major version first, then any. */
    for (int pass = 0; pass < 2 && !cublas; pass++) {
        for (int i = 0; i < 3 && !cublas; i++) {
            if ((pass == 0) != (i == major))
                continue;
            char file[64];
            snprintf(file, sizeof(file), "libcublasLt.so%s", versions[i]);
            void *lt = open_in_dirs(file, lt_path, sizeof(lt_path));
            snprintf(file, sizeof(file), "libcublas.so%s", versions[i]);
            cublas = open_in_dirs(file, bl_path, sizeof(bl_path));
            if (!cublas && lt)
                dlclose(lt);
        }
    }
    if (!cublas) {
        snprintf(g_cu.why, sizeof(g_cu.why),
                 "cuBLAS not found: %.300s loaded but no libcublas.so.13 / .12 / .so (set "
                 "TRIT_BENCH_CUBLAS_DIR)",
                 rt_path);
        return;
    }
    CU_SYM(cublas, create, "cublasCreate_v2");
    CU_SYM(cublas, destroy, "cublasDestroy_v2");
    CU_SYM(cublas, set_stream, "cublasSetStream_v2");
    CU_SYM(cublas, gemm_ex, "cublasGemmEx");
    int rtv = 0;
    g_cu.runtime_version(&rtv);
    snprintf(g_cu.what, sizeof(g_cu.what), "%.220s (runtime %d.%d), %.220s", bl_path, rtv / 1000,
             rtv % 1000 / 10, rt_path);
    g_cu.ok = 1;
}

int bench_cublas_load(char *what, size_t what_size, char *why, size_t why_size)
{
    cu_load();
    if (what && what_size)
        snprintf(what, what_size, "%s", g_cu.what);
    if (why && why_size)
        snprintf(why, why_size, "%s", g_cu.why);
    return g_cu.ok;
}

static int cu_check(int err, const char *what, char *why, size_t why_size)
{
    if (err == 0)
        return 0;
    if (why && why_size)
        snprintf(why, why_size, "%s: CUDA error %d (%s)", what, err,
                 g_cu.error_string ? g_cu.error_string(err) : "?");
    return -1;
}

int bench_cuda_props(int ordinal, const char *name, double *spec_gbs, double *spec_tflops,
                     uint64_t *l2_bytes, char *why, size_t why_size)
{
    *spec_gbs = *spec_tflops = 0;
    *l2_bytes = 0;
    cu_load();
    if (!g_cu.ok_rt) {
        snprintf(why, why_size, "%s", g_cu.why);
        return -1;
    }
    int count = 0;
    if (cu_check(g_cu.get_device_count(&count), "cudaGetDeviceCount", why, why_size))
        return -1;
    if (name) {
        /* cudaDeviceProp starts with char name[256] in every CUDA version; the rest of the struct
         * (about 1 KB) lands in a buffer far larger than any version of it. */
        ordinal = -1;
        for (int i = 0; i < count && ordinal < 0; i++) {
            char *prop = calloc(1, 16384);
            if (prop && g_cu.props(prop, i) == 0 && !strncmp(prop, name, 255))
                ordinal = i;
            free(prop);
        }
        if (ordinal < 0) {
            snprintf(why, why_size, "no CUDA device named '%s'", name);
            return -1;
        }
    }
    if (ordinal < 0 || ordinal >= count) {
        snprintf(why, why_size, "CUDA device %d does not exist (%d found)", ordinal, count);
        return -1;
    }
    int clock = 0, sms = 0, mclock = 0, bus = 0, l2 = 0, major = 0;
    if (cu_check(g_cu.attr(&sms, ATTR_SM_COUNT, ordinal), "cudaDeviceGetAttribute", why, why_size))
        return -1;
    g_cu.attr(&clock, ATTR_CLOCK_RATE, ordinal);
    g_cu.attr(&mclock, ATTR_MEM_CLOCK_RATE, ordinal);
    g_cu.attr(&bus, ATTR_MEM_BUS_WIDTH, ordinal);
    g_cu.attr(&l2, ATTR_L2_SIZE, ordinal);
    g_cu.attr(&major, ATTR_CC_MAJOR, ordinal);
    /* Double data rate: two transfers per memory clock on the whole bus. */
    *spec_gbs = 2.0 * (double)mclock * 1e3 * (double)bus / 8.0 * 1e-9;
    /* Dense f16 tensor-core flops per SM per clock (A100: 108 SMs x 1.41 GHz x 2048 = 312 TFLOP/s;
     * H100 SXM: 132 x 1.83 GHz x 4096 = 989; the driver reports the top boost clock, so the
     * product is a few % above the datasheet, which only lowers the floor). */
    double per_sm = major == 8 ? 2048 : major == 9 ? 4096 : 0;
    *spec_tflops = (double)sms * (double)clock * 1e3 * per_sm * 1e-12;
    *l2_bytes = (uint64_t)(l2 > 0 ? l2 : 0);
    return 0;
}

struct bench_cublas {
    int ordinal;
    void *handle;
    void *stream;
};

bench_cublas *bench_cublas_open(int ordinal, char *why, size_t why_size)
{
    if (!bench_cublas_load(NULL, 0, why, why_size))
        return NULL;
    bench_cublas *cb = calloc(1, sizeof(*cb));
    if (!cb) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    cb->ordinal = ordinal;
    if (cu_check(g_cu.set_device(ordinal), "cudaSetDevice", why, why_size) ||
        cu_check(g_cu.stream_create(&cb->stream), "cudaStreamCreate", why, why_size)) {
        free(cb);
        return NULL;
    }
    int st = g_cu.create(&cb->handle);
    if (st == 0)
        st = g_cu.set_stream(cb->handle, cb->stream);
    if (st != 0) {
        snprintf(why, why_size, "cublasCreate / cublasSetStream: cuBLAS status %d", st);
        if (cb->handle)
            g_cu.destroy(cb->handle);
        g_cu.stream_destroy(cb->stream);
        free(cb);
        return NULL;
    }
    return cb;
}

void bench_cublas_close(bench_cublas *cb)
{
    if (!cb)
        return;
    g_cu.set_device(cb->ordinal);
    g_cu.destroy(cb->handle);
    g_cu.stream_destroy(cb->stream);
    free(cb);
}

struct bench_cublas_gemv {
    bench_cublas *cb;
    int64_t m, k, n;
    int copies, next;
    void **w; /* [copies] device copies of W, f16 [M, K] */
    void *x;  /* f16 [16, K] */
    void *y;  /* f16 [16, M] */
};

void bench_cublas_gemv_destroy(bench_cublas_gemv *g)
{
    if (!g)
        return;
    g_cu.set_device(g->cb->ordinal);
    for (int i = 0; g->w && i < g->copies; i++)
        if (g->w[i])
            g_cu.free_(g->w[i]);
    free(g->w);
    if (g->x)
        g_cu.free_(g->x);
    if (g->y)
        g_cu.free_(g->y);
    free(g);
}

bench_cublas_gemv *bench_cublas_gemv_create(bench_cublas *cb, const uint16_t *w_half, int64_t m,
                                            int64_t k, int copies, char *why, size_t why_size)
{
    bench_cublas_gemv *g = calloc(1, sizeof(*g));
    if (!g || copies < 1) {
        snprintf(why, why_size, "out of memory");
        free(g);
        return NULL;
    }
    g->cb = cb;
    g->m = m;
    g->k = k;
    g->copies = copies;
    g->w = calloc((size_t)copies, sizeof(void *));
    const size_t wb = (size_t)m * (size_t)k * 2;
    int err = g->w ? 0 : -1;
    if (err) {
        snprintf(why, why_size, "out of memory");
        free(g);
        return NULL;
    }
    g_cu.set_device(cb->ordinal);
    for (int i = 0; i < copies && !err; i++) {
        err = cu_check(g_cu.malloc_(&g->w[i], wb), "cudaMalloc (weights)", why, why_size);
        if (!err)
            err = cu_check(g_cu.memcpy_(g->w[i], w_half, wb, CUDA_MEMCPY_H2D), "cudaMemcpy", why,
                           why_size);
    }
    if (!err)
        err = cu_check(g_cu.malloc_(&g->x, (size_t)TRIT_GEMV_MAX_N * (size_t)k * 2), "cudaMalloc",
                       why, why_size);
    if (!err)
        err = cu_check(g_cu.malloc_(&g->y, (size_t)TRIT_GEMV_MAX_N * (size_t)m * 2), "cudaMalloc",
                       why, why_size);
    if (err) {
        bench_cublas_gemv_destroy(g);
        return NULL;
    }
    return g;
}

int bench_cublas_gemv_set_x(bench_cublas_gemv *g, const uint16_t *x_half, int64_t n)
{
    if (n < 1 || n > TRIT_GEMV_MAX_N)
        return -1;
    g->n = n;
    g_cu.set_device(g->cb->ordinal);
    return g_cu.memcpy_(g->x, x_half, (size_t)n * (size_t)g->k * 2, CUDA_MEMCPY_H2D) ? -1 : 0;
}

int bench_cublas_gemv_run(bench_cublas_gemv *g, int reps, char *why, size_t why_size)
{
    /* Column-major view: W (row-major [M, K]) is a K x M matrix with ld K, so op(A) = A^T is
     * M x K; X (row-major [N, K]) is K x N; Y^T = W X^T is M x N with ld M, i.e. row-major
     * [N, M]. */
    const float alpha = 1.f, beta = 0.f;
    for (int r = 0; r < reps; r++) {
        const void *w = g->w[g->next];
        g->next = (g->next + 1) % g->copies;
        int st =
            g_cu.gemm_ex(g->cb->handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)g->m, (int)g->n, (int)g->k,
                         &alpha, w, CUDA_R_16F, (int)g->k, g->x, CUDA_R_16F, (int)g->k, &beta, g->y,
                         CUDA_R_16F, (int)g->m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != 0) {
            snprintf(why, why_size, "cublasGemmEx: cuBLAS status %d", st);
            return -1;
        }
    }
    return cu_check(g_cu.stream_sync(g->cb->stream), "cudaStreamSynchronize", why, why_size);
}

int bench_cublas_gemv_output(bench_cublas_gemv *g, float *y)
{
    size_t n = (size_t)g->n * (size_t)g->m;
    uint16_t *h = malloc(n * 2);
    if (!h)
        return -1;
    g_cu.set_device(g->cb->ordinal);
    int err = g_cu.memcpy_(h, g->y, n * 2, CUDA_MEMCPY_D2H);
    for (size_t i = 0; i < n && !err; i++)
        y[i] = bench_half_to_float(h[i]);
    free(h);
    return err ? -1 : 0;
}
