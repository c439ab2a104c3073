/*
 * buffer.c — device buffers and transfers, including copies between devices of different
 * plugins, staged through host memory in chunks (or direct when one side is host-visible).
 */
#include <string.h>

#include "internal.h"

enum { STAGING_CHUNK = 64u << 20 };

trit_status trit_buffer_alloc(trit_device *device, uint64_t bytes, trit_buffer **out_buffer)
{
    trit_clear_error();
    if (!device || !out_buffer)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "buffer_alloc: device or out_buffer is NULL");
    *out_buffer = NULL;
    if (bytes == 0)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "buffer_alloc: size is 0 bytes");
    if (device->info.max_buffer_bytes && bytes > device->info.max_buffer_bytes)
        return trit_fail(
            TRIT_ERROR_OUT_OF_MEMORY,
            "%s: buffer of %llu bytes exceeds the device's largest buffer (%llu bytes)",
            device->label, (unsigned long long)bytes,
            (unsigned long long)device->info.max_buffer_bytes);
    trit_context *ctx = device->context;
    trit_buffer *b = host_calloc(ctx, 1, sizeof(*b));
    if (!b)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "buffer_alloc: out of host memory");
    b->device = device;
    b->bytes = bytes;
    trit_status st = device->plugin->vt.buffer_alloc(device->state, bytes, &b->state);
    if (st != TRIT_OK) {
        host_free(ctx, b);
        return host_plugin_failed(device, st);
    }
    host_object_link(ctx, &b->obj, HOST_OBJECT_BUFFER);
    *out_buffer = b;
    return TRIT_OK;
}

void host_buffer_release(trit_buffer *b)
{
    b->device->plugin->vt.buffer_free(b->device->state, b->state);
    host_free(b->device->context, b);
}

void trit_buffer_free(trit_buffer *b)
{
    if (!b)
        return;
    host_object_unlink(b->device->context, &b->obj);
    host_buffer_release(b);
}

uint64_t trit_buffer_size(const trit_buffer *b)
{
    return b ? b->bytes : 0;
}

trit_device *trit_buffer_device(const trit_buffer *b)
{
    return b ? b->device : NULL;
}

static trit_status check_range(const char *op, const char *what, const trit_buffer *b,
                               uint64_t offset, uint64_t bytes)
{
    uint64_t end;
    if (!host_add_u64(offset, bytes, &end))
        return trit_fail(TRIT_ERROR_OVERFLOW, "%s: %s offset %llu + %llu bytes overflows", op, what,
                         (unsigned long long)offset, (unsigned long long)bytes);
    if (end > b->bytes)
        return trit_fail(TRIT_ERROR_OUT_OF_BOUNDS,
                         "%s: %s range [%llu, %llu) is past the end of its %llu-byte buffer", op,
                         what, (unsigned long long)offset, (unsigned long long)end,
                         (unsigned long long)b->bytes);
    return TRIT_OK;
}

static trit_status check_stream_device(const char *op, const trit_stream *s, const trit_buffer *b)
{
    if (s->device != b->device)
        return trit_fail(TRIT_ERROR_WRONG_DEVICE, "%s: the buffer is on %s but the stream is on %s",
                         op, b->device->label, s->device->label);
    return TRIT_OK;
}

trit_status trit_buffer_upload(trit_stream *s, trit_buffer *dst, uint64_t dst_offset,
                               const void *src, uint64_t bytes)
{
    trit_clear_error();
    if (!s || !dst || (!src && bytes))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "buffer_upload: stream, buffer or src is NULL");
    trit_status st = check_stream_device("buffer_upload", s, dst);
    if (st == TRIT_OK)
        st = check_range("buffer_upload", "destination", dst, dst_offset, bytes);
    if (st != TRIT_OK || bytes == 0)
        return st;
    st = s->device->plugin->vt.buffer_upload(s->state, dst->state, dst_offset, src, bytes);
    return st == TRIT_OK ? TRIT_OK : host_plugin_failed(s->device, st);
}

trit_status trit_buffer_download(trit_stream *s, const trit_buffer *src, uint64_t src_offset,
                                 void *dst, uint64_t bytes)
{
    trit_clear_error();
    if (!s || !src || (!dst && bytes))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "buffer_download: stream, buffer or dst is NULL");
    trit_status st = check_stream_device("buffer_download", s, src);
    if (st == TRIT_OK)
        st = check_range("buffer_download", "source", src, src_offset, bytes);
    if (st != TRIT_OK || bytes == 0)
        return st;
    st = s->device->plugin->vt.buffer_download(s->state, src->state, src_offset, dst, bytes);
    return st == TRIT_OK ? TRIT_OK : host_plugin_failed(s->device, st);
}

static void *host_visible(const trit_buffer *b)
{
    const trit_plugin_vtable *vt = &b->device->plugin->vt;
    return vt->buffer_host_ptr ? vt->buffer_host_ptr(b->device->state, b->state) : NULL;
}

/* Copies between different devices (or a plugin without buffer_copy), blocking. */
static trit_status staged_copy(trit_stream *s, const trit_buffer *src, uint64_t src_offset,
                               trit_buffer *dst, uint64_t dst_offset, uint64_t bytes)
{
    trit_context *ctx = s->device->context;
    trit_status st;
    /* `s` is on one of the two devices (checked by the caller); the other gets its own stream. */
    trit_stream *owned = NULL;
    trit_device *other = s->device == src->device ? dst->device : src->device;
    if (other != s->device && (st = trit_stream_create(other, &owned)) != TRIT_OK)
        return st;
    trit_stream *src_stream = s->device == src->device ? s : owned;
    trit_stream *dst_stream = s->device == dst->device ? s : owned;
    /* Everything enqueued on `s` before this copy must be complete first. */
    if ((st = trit_stream_sync(s)) != TRIT_OK)
        goto done;

    void *src_ptr = host_visible(src);
    void *dst_ptr = host_visible(dst);
    if (src_ptr) {
        if ((st = trit_stream_sync(src_stream)) == TRIT_OK)
            st = trit_buffer_upload(dst_stream, dst, dst_offset, (char *)src_ptr + src_offset,
                                    bytes);
        if (st == TRIT_OK)
            st = trit_stream_sync(dst_stream);
    } else if (dst_ptr) {
        if ((st = trit_stream_sync(dst_stream)) == TRIT_OK)
            st = trit_buffer_download(src_stream, src, src_offset, (char *)dst_ptr + dst_offset,
                                      bytes);
        if (st == TRIT_OK)
            st = trit_stream_sync(src_stream);
    } else {
        uint64_t chunk = bytes < STAGING_CHUNK ? bytes : STAGING_CHUNK;
        void *staging = host_alloc(ctx, (size_t)chunk);
        if (!staging) {
            st = trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "buffer_copy: no host memory for staging");
            goto done;
        }
        st = TRIT_OK;
        for (uint64_t done = 0; done < bytes && st == TRIT_OK; done += chunk) {
            uint64_t n = bytes - done < chunk ? bytes - done : chunk;
            st = trit_buffer_download(src_stream, src, src_offset + done, staging, n);
            if (st == TRIT_OK)
                st = trit_stream_sync(src_stream);
            if (st == TRIT_OK)
                st = trit_buffer_upload(dst_stream, dst, dst_offset + done, staging, n);
            if (st == TRIT_OK)
                st = trit_stream_sync(dst_stream);
        }
        host_free(ctx, staging);
    }
done:
    if (owned) {
        trit_status keep_error = st;
        char saved[1024];
        memcpy(saved, trit_last_error(), sizeof(saved) - 1);
        saved[sizeof(saved) - 1] = '\0';
        trit_stream_destroy(owned);
        if (keep_error != TRIT_OK)
            trit_set_error(keep_error, "%s", saved);
    }
    return st;
}

trit_status trit_buffer_copy(trit_stream *s, const trit_buffer *src, uint64_t src_offset,
                             trit_buffer *dst, uint64_t dst_offset, uint64_t bytes)
{
    trit_clear_error();
    if (!s || !src || !dst)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "buffer_copy: stream, src or dst is NULL");
    if (s->device != src->device && s->device != dst->device)
        return trit_fail(TRIT_ERROR_WRONG_DEVICE,
                         "buffer_copy: the stream is on %s but the buffers are on %s and %s",
                         s->device->label, src->device->label, dst->device->label);
    trit_status st = check_range("buffer_copy", "source", src, src_offset, bytes);
    if (st == TRIT_OK)
        st = check_range("buffer_copy", "destination", dst, dst_offset, bytes);
    if (st != TRIT_OK)
        return st;
    if (src == dst && src_offset < dst_offset + bytes && dst_offset < src_offset + bytes && bytes)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "buffer_copy: source and destination ranges of one buffer overlap");
    if (bytes == 0)
        return TRIT_OK;
    if (src->device == dst->device && s->device->plugin->vt.buffer_copy) {
        st = s->device->plugin->vt.buffer_copy(s->state, src->state, src_offset, dst->state,
                                               dst_offset, bytes);
        return st == TRIT_OK ? TRIT_OK : host_plugin_failed(s->device, st);
    }
    return staged_copy(s, src, src_offset, dst, dst_offset, bytes);
}

trit_status trit_buffer_fill(trit_stream *s, trit_buffer *dst, uint64_t dst_offset, uint8_t value,
                             uint64_t bytes)
{
    trit_clear_error();
    if (!s || !dst)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "buffer_fill: stream or buffer is NULL");
    trit_status st = check_stream_device("buffer_fill", s, dst);
    if (st == TRIT_OK)
        st = check_range("buffer_fill", "destination", dst, dst_offset, bytes);
    if (st != TRIT_OK || bytes == 0)
        return st;
    if (s->device->plugin->vt.buffer_fill) {
        st = s->device->plugin->vt.buffer_fill(s->state, dst->state, dst_offset, value, bytes);
        return st == TRIT_OK ? TRIT_OK : host_plugin_failed(s->device, st);
    }
    /* No fill in the plugin: upload a pattern chunk by chunk (blocking). */
    trit_context *ctx = s->device->context;
    uint64_t chunk = bytes < (1u << 20) ? bytes : (1u << 20);
    void *pattern = host_alloc(ctx, (size_t)chunk);
    if (!pattern)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "buffer_fill: out of host memory");
    memset(pattern, value, (size_t)chunk);
    for (uint64_t done = 0; done < bytes && st == TRIT_OK; done += chunk) {
        uint64_t n = bytes - done < chunk ? bytes - done : chunk;
        st = trit_buffer_upload(s, dst, dst_offset + done, pattern, n);
        if (st == TRIT_OK)
            st = trit_stream_sync(s);
    }
    host_free(ctx, pattern);
    return st;
}
