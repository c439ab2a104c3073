/*
 * threadpool.c — a small fork-join pool for the CPU kernels.
 *
 * Decode-time GEMVs take tens of microseconds, so waking threads through a condition variable
 * (several microseconds each) would eat a visible share. Workers therefore spin on a generation
 * counter for a short while after each job (about 100 us) and only then sleep on the condition
 * variable. Work is handed out in chunks through one atomic counter, so a slow thread (the host
 * stealing a core) does not hold the others back.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

enum { POOL_SPIN_NS = 100000 };

struct cpu_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    _Atomic uint64_t generation; /* bumped for each job */
    _Atomic int sleeping;        /* workers blocked on `wake` */
    int stop;

    /* The job in flight. */
    cpu_task_fn fn;
    void *ctx;
    int64_t n_items;
    int64_t chunk;
    _Atomic int64_t next; /* next item to hand out */
    _Atomic int pending;  /* workers that have not finished the job */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pool_work(cpu_pool *pool, int thread)
{
    for (;;) {
        int64_t begin = atomic_fetch_add_explicit(&pool->next, pool->chunk, memory_order_relaxed);
        if (begin >= pool->n_items)
            break;
        int64_t end = begin + pool->chunk;
        if (end > pool->n_items)
            end = pool->n_items;
        pool->fn(pool->ctx, begin, end, thread);
    }
}

typedef struct worker_arg {
    cpu_pool *pool;
    int thread;
} worker_arg;

static void *pool_worker(void *p)
{
    worker_arg arg = *(worker_arg *)p;
    free(p);
    cpu_pool *pool = arg.pool;
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (gen == seen) {
            uint64_t start = now_ns();
            unsigned spins = 0;
            while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen) {
                CPU_RELAX();
                if ((++spins & 255) == 0) {
                    if (now_ns() - start > POOL_SPIN_NS)
                        break;
                    sched_yield(); /* let a descheduled thread of this pool or another run */
                }
            }
            if (gen == seen) {
                pthread_mutex_lock(&pool->mutex);
                atomic_fetch_add(&pool->sleeping, 1);
                while (!pool->stop && (gen = atomic_load(&pool->generation)) == seen)
                    pthread_cond_wait(&pool->wake, &pool->mutex);
                atomic_fetch_sub(&pool->sleeping, 1);
                int stop = pool->stop;
                pthread_mutex_unlock(&pool->mutex);
                if (stop)
                    return NULL;
            }
        }
        seen = gen;
        if (pool->stop)
            return NULL;
        pool_work(pool, arg.thread);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
    }
}

trit_status cpu_pool_create(int threads, cpu_pool **out_pool)
{
    if (threads < 1)
        threads = 1;
    cpu_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return TRIT_ERROR_OUT_OF_MEMORY;
    pool->threads = threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    atomic_init(&pool->generation, 0);
    atomic_init(&pool->sleeping, 0);
    atomic_init(&pool->next, 0);
    atomic_init(&pool->pending, 0);
    if (threads > 1) {
        pool->workers = calloc((size_t)threads - 1, sizeof(pthread_t));
        if (!pool->workers) {
            cpu_pool_destroy(pool);
            return TRIT_ERROR_OUT_OF_MEMORY;
        }
        for (int i = 1; i < threads; i++) {
            worker_arg *arg = malloc(sizeof(*arg));
            if (arg) {
                arg->pool = pool;
                arg->thread = i;
            }
            if (!arg || pthread_create(&pool->workers[i - 1], NULL, pool_worker, arg) != 0) {
                free(arg);
                pool->threads = i; /* only i - 1 workers exist */
                cpu_pool_destroy(pool);
                return TRIT_ERROR_OUT_OF_MEMORY;
            }
        }
    }
    *out_pool = pool;
    return TRIT_OK;
}

void cpu_pool_destroy(cpu_pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->mutex);
    pool->stop = 1;
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->threads; i++)
        pthread_join(pool->workers[i - 1], NULL);
    free(pool->workers);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
}

int cpu_pool_threads(const cpu_pool *pool)
{
    return pool->threads;
}

void cpu_pool_run(cpu_pool *pool, int64_t n_items, int64_t grain, cpu_task_fn fn, void *ctx)
{
    if (n_items <= 0)
        return;
    if (grain < 1)
        grain = 1;
    /* About four chunks per thread balances load without much counter traffic. */
    int64_t chunk = (n_items + (int64_t)pool->threads * 4 - 1) / ((int64_t)pool->threads * 4);
    if (chunk < grain)
        chunk = grain;
    if (pool->threads == 1 || chunk >= n_items) {
        fn(ctx, 0, n_items, 0);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n_items = n_items;
    pool->chunk = chunk;
    atomic_store_explicit(&pool->next, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->pending, pool->threads - 1, memory_order_relaxed);
    /* seq_cst on both sides: either a worker about to sleep sees the new generation, or we see
     * it counted in `sleeping` and wake it under the mutex it holds while checking. */
    atomic_fetch_add(&pool->generation, 1);
    if (atomic_load(&pool->sleeping) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
    pool_work(pool, 0);
    /* A worker still holding a chunk may have been descheduled (more runnable threads than
     * cores); after a short spin, yield so that it can run on this core. */
    unsigned spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        if (++spins < 4096)
            CPU_RELAX();
        else
            sched_yield();
    }
}
