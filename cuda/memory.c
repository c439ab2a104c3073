/*
 * memory.c — CUDA plugin buffers and transfers. Transfers are enqueued on the stream; pageable
 * host memory makes the runtime stage them, so an upload's source may be reused once the call
 * returns and a download's destination is complete at stream sync, as the API promises.
 */
#include <stdlib.h>

#include "cu.h"

trit_status cuda_buffer_alloc(void *device, uint64_t bytes, void **out_buffer)
{
    cuda_device *d = device;
    trit_status st = cuda_use(d);
    if (st != TRIT_OK)
        return st;
    cuda_buffer *b = malloc(sizeof(*b));
    if (!b) {
        d->host->set_error(d->host->user, "out of host memory for a buffer");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    cudaError_t err = cudaMalloc(&b->ptr, (size_t)bytes);
    if (err != cudaSuccess) {
        free(b);
        return cuda_fail(d, err, "cudaMalloc");
    }
    b->bytes = bytes;
    *out_buffer = b;
    return TRIT_OK;
}

void cuda_buffer_free(void *device, void *buffer)
{
    cuda_device *d = device;
    cuda_buffer *b = buffer;
    if (cuda_use(d) == TRIT_OK)
        cudaFree(b->ptr);
    free(b);
}

static trit_status memcpy_on(cuda_stream *s, void *dst, const void *src, uint64_t bytes,
                             enum cudaMemcpyKind kind, const char *what)
{
    trit_status st = cuda_use(s->dev);
    if (st != TRIT_OK)
        return st;
    cudaError_t err = cudaMemcpyAsync(dst, src, (size_t)bytes, kind, s->stream);
    return err == cudaSuccess ? TRIT_OK : cuda_fail(s->dev, err, what);
}

trit_status cuda_buffer_upload(void *stream, void *buffer, uint64_t offset, const void *src,
                               uint64_t bytes)
{
    cuda_buffer *b = buffer;
    return memcpy_on(stream, (char *)b->ptr + offset, src, bytes, cudaMemcpyHostToDevice, "upload");
}

trit_status cuda_buffer_download(void *stream, void *buffer, uint64_t offset, void *dst,
                                 uint64_t bytes)
{
    cuda_buffer *b = buffer;
    return memcpy_on(stream, dst, (char *)b->ptr + offset, bytes, cudaMemcpyDeviceToHost,
                     "download");
}

trit_status cuda_buffer_copy(void *stream, void *src, uint64_t src_offset, void *dst,
                             uint64_t dst_offset, uint64_t bytes)
{
    return memcpy_on(stream, (char *)((cuda_buffer *)dst)->ptr + dst_offset,
                     (char *)((cuda_buffer *)src)->ptr + src_offset, bytes,
                     cudaMemcpyDeviceToDevice, "copy");
}

trit_status cuda_buffer_fill(void *stream, void *buffer, uint64_t offset, uint8_t value,
                             uint64_t bytes)
{
    cuda_stream *s = stream;
    trit_status st = cuda_use(s->dev);
    if (st != TRIT_OK)
        return st;
    cudaError_t err = cudaMemsetAsync((char *)((cuda_buffer *)buffer)->ptr + offset, value,
                                      (size_t)bytes, s->stream);
    return err == cudaSuccess ? TRIT_OK : cuda_fail(s->dev, err, "fill");
}
