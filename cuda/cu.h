/*
 * cu.h — internals of the CUDA plugin shared by its files. Nothing here crosses the plugin
 * boundary.
 *
 * Every call into the CUDA runtime first makes the object's device current on the calling
 * thread (cudaSetDevice is per thread and cheap when nothing changes).
 */
#ifndef TRIT_CUDA_CU_H
#define TRIT_CUDA_CU_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "trit/trit_plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cuda_device {
    const trit_plugin_host *host;
    int ordinal; /* CUDA device number */
    struct cudaDeviceProp prop;
    int driver_version;
    int runtime_version;
    /* attention.cu: blocks per SM of each attention kernel instantiation on this device, 0 until
     * its launch attributes are set (once; two threads that race both set the same values). */
    int attn_blocks_per_sm[16];
    /* gemv.cu: what the GEMV learns at the device's first use (cuda_gemv_prepare), read without
     * a lock once `ready` is set (stored last, with release; two threads that race both compute
     * the same values). */
    struct {
        int ready;
        int no_image;         /* the build has no kernel image for this device */
        int pdl;              /* launch with programmatic dependent launch */
        int forced_splits;    /* cuda.gemv_splits, 0 if unset */
        size_t prologue_smem; /* the prologue's dynamic shared memory limit (opt-in set) */
    } gemv;
} cuda_device;

typedef struct cuda_buffer {
    void *ptr;
    uint64_t bytes;
} cuda_buffer;

typedef struct cuda_stream {
    cuda_device *dev;
    cudaStream_t stream;
    struct cuda_staging *staging; /* attention.cu: pinned upload staging, NULL until first use */
    /* Device scratch private to the stream (per-call temporaries of the ops), grown on demand by
     * cuda_stream_scratch and freed with the stream. Work on one stream runs in order, so reusing
     * it needs no more synchronisation; a per-device buffer would race between streams. */
    void *scratch;
    uint64_t scratch_bytes;
} cuda_stream;

typedef struct cuda_event {
    cuda_device *dev;
    cudaEvent_t event;
} cuda_event;

/* Records "<what>: <cuda error name>: <description>" as the thread's error sentence and returns
 * the matching status (out of memory, device lost, ...). */
trit_status cuda_fail(const cuda_device *dev, cudaError_t err, const char *what);

/* Records the printf-formatted sentence as the thread's error and returns `st`. */
trit_status cuda_error(const cuda_device *dev, trit_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Makes dev current on this thread; fails with a sentence if that is impossible. */
trit_status cuda_use(const cuda_device *dev);

/* plugin.c: at least `bytes` of the stream's scratch, valid for work enqueued on this stream until
 * the next call. Growing waits for the stream's queued work first (it may still use the old one).
 */
trit_status cuda_stream_scratch(cuda_stream *s, uint64_t bytes, void **out_ptr);

/* memory.c: the vtable's memory slots. */
trit_status cuda_buffer_alloc(void *device, uint64_t bytes, void **out_buffer);
void cuda_buffer_free(void *device, void *buffer);
trit_status cuda_buffer_upload(void *stream, void *buffer, uint64_t offset, const void *src,
                               uint64_t bytes);
trit_status cuda_buffer_download(void *stream, void *buffer, uint64_t offset, void *dst,
                                 uint64_t bytes);
trit_status cuda_buffer_copy(void *stream, void *src, uint64_t src_offset, void *dst,
                             uint64_t dst_offset, uint64_t bytes);
trit_status cuda_buffer_fill(void *stream, void *buffer, uint64_t offset, uint8_t value,
                             uint64_t bytes);

/* gemv.cu: ternary matrices (layout chosen at upload) and the fused GEMV. */
trit_status cuda_ternary_create(void *device, const trit_ternary_host *weights, void **out_ternary,
                                uint64_t *out_device_bytes);
void cuda_ternary_destroy(void *device, void *ternary);
int cuda_gemv_supports(const cuda_device *dev, const trit_op_desc *desc, char *reason,
                       size_t reason_size);
trit_status cuda_gemv(void *stream, const trit_plugin_gemv_args *args);

/* attention.cu: tiled prefill on tensor cores, split-KV decode and its combine. */
int cuda_attention_supports(const cuda_device *dev, const trit_op_desc *desc, char *reason,
                            size_t reason_size);
trit_status cuda_attention(void *stream, const trit_plugin_attention_args *args);

/* attention.cu: per-stream pinned staging for the small host arrays an op sends to the device
 * (block tables, lengths, ALiBi slopes, sinks). acquire returns host memory of at least `bytes`
 * that stays untouched by other calls until its upload (cudaMemcpyAsync on the stream) has run;
 * upload enqueues the copy of the acquired memory to `dst` and marks the slot busy until the
 * stream passes it. The stream owns the slots; release frees them (after a stream sync). */
trit_status cuda_staging_acquire(cuda_stream *s, size_t bytes, void **out_host);
trit_status cuda_staging_upload(cuda_stream *s, void *dst, size_t bytes);
void cuda_staging_release(cuda_stream *s);

/* rope.cu: RoPE on Q and new K, and the append of K/V into the cache. */
int cuda_rope_supports(const cuda_device *dev, const trit_op_desc *desc, char *reason,
                       size_t reason_size);
trit_status cuda_rope_kv_append(void *stream, const trit_plugin_rope_args *args);

#ifdef __cplusplus
}
#endif

#endif /* TRIT_CUDA_CU_H */
