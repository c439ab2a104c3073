/*
 * blas.c — OpenBLAS, the CPU rows' fp32 dense baseline, loaded at run time.
 *
 * trit-bench used to link OpenBLAS; a GPU machine without it (no package manager, only the CUDA
 * stack) could then not even start the bench. Now the library is opened with dlopen on first use:
 * TRIT_BENCH_OPENBLAS (a file) if set, else libopenblas.so.0 / libopenblas.so from the loader's
 * search path (Debian's libopenblas0 puts it there through its alternative). Without it the CPU
 * rows carry no OpenBLAS time and say so; outputs are checked against the bench's own fp64
 * references either way, so a missing baseline never hides a wrong result.
 *
 * Only the five functions the bench calls are resolved; CBLAS's enum values are part of its ABI
 * (CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112), so no cblas.h is needed to build.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

typedef void (*sgemv_fn)(int order, int trans, int m, int n, float alpha, const float *a, int lda,
                         const float *x, int incx, float beta, float *y, int incy);
typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc);
typedef char *(*config_fn)(void);
typedef void (*threads_fn)(int);

/* Loaded once; the bench is single-threaded where it touches this. */
static struct {
    int tried, ok;
    sgemv_fn sgemv;
    sgemm_fn sgemm;
    config_fn config;
    threads_fn set_threads;
    char describe[256];
} g_blas;

static void blas_load(void)
{
    if (g_blas.tried)
        return;
    g_blas.tried = 1;
    const char *env = getenv("TRIT_BENCH_OPENBLAS");
    const char *names[] = {env && *env ? env : NULL, "libopenblas.so.0", "libopenblas.so"};
    void *lib = NULL;
    const char *err = "not tried";
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !lib; i++) {
        if (!names[i])
            continue;
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib)
            err = dlerror();
    }
    if (!lib) {
        snprintf(g_blas.describe, sizeof(g_blas.describe), "not found (%s)", err ? err : "?");
        return;
    }
    /* memcpy: ISO C has no cast from an object pointer to a function pointer. */
    void *sym;
    sym = dlsym(lib, "cblas_sgemv");
    memcpy(&g_blas.sgemv, &sym, sizeof(sym));
    sym = dlsym(lib, "cblas_sgemm");
    memcpy(&g_blas.sgemm, &sym, sizeof(sym));
    sym = dlsym(lib, "openblas_get_config");
    memcpy(&g_blas.config, &sym, sizeof(sym));
    sym = dlsym(lib, "openblas_set_num_threads");
    memcpy(&g_blas.set_threads, &sym, sizeof(sym));
    if (!g_blas.sgemv || !g_blas.sgemm) {
        snprintf(g_blas.describe, sizeof(g_blas.describe),
                 "not found (the library has no cblas_sgemv / cblas_sgemm)");
        dlclose(lib);
        return;
    }
    g_blas.ok = 1;
    snprintf(g_blas.describe, sizeof(g_blas.describe), "%s",
             g_blas.config ? g_blas.config() : "OpenBLAS (no openblas_get_config)");
}

int bench_blas_available(void)
{
    blas_load();
    return g_blas.ok;
}

const char *bench_blas_describe(void)
{
    blas_load();
    return g_blas.describe;
}

void bench_blas_set_threads(int threads)
{
    if (bench_blas_available() && g_blas.set_threads)
        g_blas.set_threads(threads);
}

void bench_blas_sgemv(int64_t m, int64_t k, const float *w, const float *x, float *y)
{
    if (bench_blas_available())
        g_blas.sgemv(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, (int)m, (int)k, 1.f, w, (int)k, x, 1, 0.f, y,
                     1);
}

void bench_blas_sgemm(int64_t n, int64_t m, int64_t k, const float *x, const float *w, float *y)
{
    if (bench_blas_available())
        g_blas.sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, (int)n, (int)m, (int)k, 1.f, x,
                     (int)k, w, (int)k, 0.f, y, (int)m);
}
