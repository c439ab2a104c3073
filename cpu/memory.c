/*
 * memory.c — CPU plugin buffers and transfers. Device memory is host memory, 64-byte aligned so
 * the SIMD kernels can use aligned loads at buffer starts; transfers are memcpy, done at enqueue
 * time (a CPU stream completes its work before each call returns).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

void cpu_set_error(const cpu_device *dev, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (dev && dev->host && dev->host->set_error)
        dev->host->set_error(dev->host->user, msg);
}

void *cpu_aligned_alloc(uint64_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    if (bytes > UINT64_MAX - 63 || bytes + 63 > (uint64_t)SIZE_MAX)
        return NULL;
    /* aligned_alloc wants a multiple of the alignment. */
    return aligned_alloc(64, (size_t)((bytes + 63) & ~(uint64_t)63));
}

void cpu_aligned_free(void *ptr)
{
    free(ptr);
}

trit_status cpu_buffer_alloc(void *device, uint64_t bytes, void **out_buffer)
{
    cpu_device *dev = device;
    if (bytes > dev->memory_bytes) {
        cpu_set_error(dev, "buffer of %llu bytes exceeds the machine's %llu bytes of memory",
                      (unsigned long long)bytes, (unsigned long long)dev->memory_bytes);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    cpu_buffer *b = malloc(sizeof(*b));
    void *ptr = b ? cpu_aligned_alloc(bytes) : NULL;
    if (!ptr) {
        free(b);
        cpu_set_error(dev, "cannot allocate a buffer of %llu bytes", (unsigned long long)bytes);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    b->ptr = ptr;
    b->bytes = bytes;
    *out_buffer = b;
    return TRIT_OK;
}

void cpu_buffer_free(void *device, void *buffer)
{
    (void)device;
    cpu_buffer *b = buffer;
    if (!b)
        return;
    cpu_aligned_free(b->ptr);
    free(b);
}

void *cpu_buffer_host_ptr(void *device, void *buffer)
{
    (void)device;
    return ((cpu_buffer *)buffer)->ptr;
}

typedef struct copy_job {
    char *dst;
    const char *src;
    int value; /* -1: copy; else fill byte */
} copy_job;

static void copy_chunk(void *ctx, int64_t begin, int64_t end, int thread)
{
    (void)thread;
    copy_job *j = ctx;
    if (j->value < 0)
        memcpy(j->dst + begin, j->src + begin, (size_t)(end - begin));
    else
        memset(j->dst + begin, j->value, (size_t)(end - begin));
}

/* Large transfers use every thread: one core alone cannot saturate memory bandwidth. */
static void transfer(cpu_stream *s, char *dst, const char *src, int value, uint64_t bytes)
{
    enum { PARALLEL_MIN = 4u << 20, GRAIN = 1u << 20 };
    if (bytes < PARALLEL_MIN || s->dev->threads == 1) {
        if (value < 0)
            memcpy(dst, src, (size_t)bytes);
        else
            memset(dst, value, (size_t)bytes);
        return;
    }
    copy_job j = {dst, src, value};
    cpu_device_lock(s->dev);
    cpu_pool_run(s->dev->pool, (int64_t)bytes, GRAIN, copy_chunk, &j);
    cpu_device_unlock(s->dev);
}

trit_status cpu_buffer_upload(void *stream, void *buffer, uint64_t offset, const void *src,
                              uint64_t bytes)
{
    transfer(stream, (char *)((cpu_buffer *)buffer)->ptr + offset, src, -1, bytes);
    return TRIT_OK;
}

trit_status cpu_buffer_download(void *stream, void *buffer, uint64_t offset, void *dst,
                                uint64_t bytes)
{
    transfer(stream, dst, (char *)((cpu_buffer *)buffer)->ptr + offset, -1, bytes);
    return TRIT_OK;
}

trit_status cpu_buffer_copy(void *stream, void *src, uint64_t src_offset, void *dst,
                            uint64_t dst_offset, uint64_t bytes)
{
    /* The host rejects overlapping ranges of one buffer, so memcpy is safe. */
    transfer(stream, (char *)((cpu_buffer *)dst)->ptr + dst_offset,
             (char *)((cpu_buffer *)src)->ptr + src_offset, -1, bytes);
    return TRIT_OK;
}

trit_status cpu_buffer_fill(void *stream, void *buffer, uint64_t offset, uint8_t value,
                            uint64_t bytes)
{
    transfer(stream, (char *)((cpu_buffer *)buffer)->ptr + offset, NULL, value, bytes);
    return TRIT_OK;
}
