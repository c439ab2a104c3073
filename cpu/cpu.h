/*
 * cpu.h — internals of the CPU plugin shared by its files (plugin.c, memory.c, gemv*.c,
 * attention.c, rope.c, threadpool.c). Nothing here crosses the plugin boundary.
 */
#ifndef TRIT_CPU_CPU_H
#define TRIT_CPU_CPU_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "trit/trit_plugin.h"

/* Instruction sets the kernels may use, chosen once at init (option cpu.isa / TRIT_CPU_ISA:
 * "auto", "avx512", "avx2", "portable"; a forced ISA the CPU lacks falls back with a log line). */
typedef enum cpu_isa {
    CPU_ISA_PORTABLE = 0,
    CPU_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    CPU_ISA_AVX512 = 2, /* AVX-512 F/BW/VL/DQ (+ VNNI when has_vnni) */
} cpu_isa;

typedef struct cpu_pool cpu_pool;

/* One function run over [begin, end) item ranges by the pool; `thread` is 0..threads-1. */
typedef void (*cpu_task_fn)(void *ctx, int64_t begin, int64_t end, int thread);

/* Thread pool: `threads` - 1 workers plus the calling thread. */
trit_status cpu_pool_create(int threads, cpu_pool **out_pool);
void cpu_pool_destroy(cpu_pool *pool);
int cpu_pool_threads(const cpu_pool *pool);
/* Splits [0, n_items) into chunks of at least `grain` items, runs fn on every chunk across the
 * threads (the caller takes part) and returns when all are done. Not reentrant: one run at a
 * time per pool (the device serialises ops with its mutex). */
void cpu_pool_run(cpu_pool *pool, int64_t n_items, int64_t grain, cpu_task_fn fn, void *ctx);

typedef struct cpu_device {
    const trit_plugin_host *host;
    cpu_isa isa;
    int has_vnni;
    int threads;
    cpu_pool *pool;
    pthread_mutex_t lock; /* ops on one device run one at a time (each uses all threads) */
    uint64_t memory_bytes;
    char name[128];
    char vendor[64];
} cpu_device;

/* Serialise use of the device's thread pool (ops, large transfers). */
void cpu_device_lock(cpu_device *dev);
void cpu_device_unlock(cpu_device *dev);

/* A stream: work runs at enqueue time, in order, so a stream needs nothing but its device. */
typedef struct cpu_stream {
    cpu_device *dev;
} cpu_stream;

typedef struct cpu_buffer {
    void *ptr; /* 64-byte aligned */
    uint64_t bytes;
} cpu_buffer;

/* Address of element 0 of a tensor. */
static inline void *cpu_tensor_ptr(const trit_plugin_tensor *t)
{
    return (char *)((cpu_buffer *)t->buffer)->ptr + t->offset;
}

/* Sets the thread's error sentence through the host (printf-style). */
void cpu_set_error(const cpu_device *dev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* 64-byte aligned allocation for large data (weights, scratch). */
void *cpu_aligned_alloc(uint64_t bytes);
void cpu_aligned_free(void *ptr);

/* memory.c: the vtable's memory slots. */
trit_status cpu_buffer_alloc(void *device, uint64_t bytes, void **out_buffer);
void cpu_buffer_free(void *device, void *buffer);
void *cpu_buffer_host_ptr(void *device, void *buffer);
trit_status cpu_buffer_upload(void *stream, void *buffer, uint64_t offset, const void *src,
                              uint64_t bytes);
trit_status cpu_buffer_download(void *stream, void *buffer, uint64_t offset, void *dst,
                                uint64_t bytes);
trit_status cpu_buffer_copy(void *stream, void *src, uint64_t src_offset, void *dst,
                            uint64_t dst_offset, uint64_t bytes);
trit_status cpu_buffer_fill(void *stream, void *buffer, uint64_t offset, uint8_t value,
                            uint64_t bytes);

/* Support queries below return NULL when the device runs the op, else the reason. */

/* gemv.c: ternary matrices in the CPU layout, and the fused GEMV (plain and gated). */
const char *cpu_gemv_unsupported(const cpu_device *dev, const trit_op_desc *desc);
trit_status cpu_ternary_create(cpu_device *dev, const trit_ternary_host *w, void **out_ternary,
                               uint64_t *out_device_bytes);
void cpu_ternary_destroy(cpu_device *dev, void *ternary);
trit_status cpu_gemv(cpu_device *dev, const trit_plugin_gemv_args *args);

/* attention.c: tiled attention with online softmax (prefill and split-KV decode). */
const char *cpu_attention_unsupported(const cpu_device *dev, const trit_op_desc *desc);
trit_status cpu_attention(cpu_device *dev, const trit_plugin_attention_args *args);

/* rope.c: RoPE + append to the KV cache. */
const char *cpu_rope_unsupported(const cpu_device *dev, const trit_op_desc *desc);

/* plugin.c: what attention and RoPE share: head dims 64/80/96/128/256, f32/f16 tensors. Returns
 * NULL when supported, else `x_why` / `y_why` or a sentence of its own. */
const char *cpu_head_op_unsupported(const trit_op_desc *desc, const char *x_why, const char *y_why);
trit_status cpu_rope_kv_append(cpu_device *dev, const trit_plugin_rope_args *args);

#endif /* TRIT_CPU_CPU_H */
