/*
 * fake_plugin.c — a minimal plugin for the loader and ABI tests, built in several variants:
 *
 *   CURRENT   ABI 1, full vtable, two devices whose buffers are not host-visible (so copies
 *             to and from other plugins go through host staging), no ops
 *   OLD       as if built against an early header: its vtable stops before the op slots
 *   NEWER     built against a future header (ABI 2, a longer vtable) that still serves ABI 1
 *   FUTURE    needs a host of ABI 3 or newer
 *   ANCIENT   declares ABI 0, older than any host loads
 *   BROKEN    init fails the way a plugin with no driver does
 *   NODEVICE  starts but finds no device
 *   NOQUERY   does not export the query symbol
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trit/trit_plugin.h"

#ifndef FAKE_NAME
#define FAKE_NAME "fake"
#endif

typedef struct fake_device {
    uint32_t index;
} fake_device;

typedef struct fake_plugin {
    const trit_plugin_host *host;
    fake_device devices[2];
} fake_plugin;

typedef struct fake_buffer {
    unsigned char *data;
    uint64_t bytes;
} fake_buffer;

static trit_status fake_init(const trit_plugin_host *host, void **out)
{
#if defined(FAKE_VARIANT_BROKEN)
    host->set_error(host->user, "fake: no driver installed (libfake.so.1 not found)");
    return TRIT_ERROR_BACKEND;
#else
    fake_plugin *p = calloc(1, sizeof(*p));
    if (!p)
        return TRIT_ERROR_OUT_OF_MEMORY;
    p->host = host;
    p->devices[0].index = 0;
    p->devices[1].index = 1;
    *out = p;
    return TRIT_OK;
#endif
}

static void fake_shutdown(void *plugin)
{
    free(plugin);
}

static uint32_t fake_device_count(void *plugin)
{
    (void)plugin;
#if defined(FAKE_VARIANT_NODEVICE)
    return 0;
#else
    return 2;
#endif
}

static trit_status fake_device_open(void *plugin, uint32_t index, void **out)
{
    fake_plugin *p = plugin;
    if (index >= 2)
        return TRIT_ERROR_NOT_FOUND;
    *out = &p->devices[index];
    return TRIT_OK;
}

static void fake_device_close(void *device)
{
    (void)device;
}

static trit_status fake_device_info(void *device, trit_device_info *info)
{
    fake_device *d = device;
    trit_device_info out;
    memset(&out, 0, sizeof(out));
    out.backend = TRIT_BACKEND_OTHER;
    snprintf(out.name, sizeof(out.name), "Fake device %u", d->index);
    snprintf(out.vendor, sizeof(out.vendor), "trit tests");
    out.memory_bytes = 1ull << 30;
    out.max_buffer_bytes = 1ull << 28;
    out.compute_units = 1;
    size_t n = info->size < sizeof(out) ? info->size : sizeof(out);
    out.size = info->size;
    memcpy(info, &out, n);
    return TRIT_OK;
}

static int fake_supports(void *device, const trit_op_desc *desc, char *reason, size_t size)
{
    (void)device;
    (void)desc;
    if (reason && size)
        strncpy(reason, "the fake plugin runs no ops", size - 1);
    return 0;
}

static trit_status fake_buffer_alloc(void *device, uint64_t bytes, void **out)
{
    (void)device;
    fake_buffer *b = malloc(sizeof(*b));
    if (!b)
        return TRIT_ERROR_OUT_OF_MEMORY;
    b->data = malloc(bytes);
    if (!b->data) {
        free(b);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    b->bytes = bytes;
    *out = b;
    return TRIT_OK;
}

static void fake_buffer_free(void *device, void *buffer)
{
    (void)device;
    fake_buffer *b = buffer;
    free(b->data);
    free(b);
}

static trit_status fake_stream_create(void *device, void **out)
{
    *out = device;
    return TRIT_OK;
}

static void fake_stream_destroy(void *stream)
{
    (void)stream;
}

static trit_status fake_stream_sync(void *stream)
{
    (void)stream;
    return TRIT_OK;
}

static trit_status fake_upload(void *stream, void *buffer, uint64_t offset, const void *src,
                               uint64_t bytes)
{
    (void)stream;
    memcpy(((fake_buffer *)buffer)->data + offset, src, bytes);
    return TRIT_OK;
}

static trit_status fake_download(void *stream, void *buffer, uint64_t offset, void *dst,
                                 uint64_t bytes)
{
    (void)stream;
    memcpy(dst, ((fake_buffer *)buffer)->data + offset, bytes);
    return TRIT_OK;
}

static trit_status fake_copy(void *stream, void *src, uint64_t so, void *dst, uint64_t dof,
                             uint64_t bytes)
{
    (void)stream;
    memmove(((fake_buffer *)dst)->data + dof, ((fake_buffer *)src)->data + so, bytes);
    return TRIT_OK;
}

#if defined(FAKE_VARIANT_NEWER)
/* What a future header might look like: ABI 2 appended a slot. */
typedef struct fake_vtable_v2 {
    trit_plugin_vtable v1;
    trit_status (*future_op)(void *stream, const void *args);
} fake_vtable_v2;

static trit_status fake_future_op(void *stream, const void *args)
{
    (void)stream;
    (void)args;
    return TRIT_OK;
}
#endif

#if !defined(FAKE_VARIANT_NOQUERY)
TRIT_PLUGIN_EXPORT trit_status trit_plugin_query(uint32_t host_abi_version,
                                                 trit_plugin_vtable *vtable)
{
    (void)host_abi_version;
#if defined(FAKE_VARIANT_NEWER)
    fake_vtable_v2 full;
    memset(&full, 0, sizeof(full));
    trit_plugin_vtable *vt = &full.v1;
    full.future_op = fake_future_op;
    uint32_t own_size = sizeof(full);
#else
    trit_plugin_vtable v;
    memset(&v, 0, sizeof(v));
    trit_plugin_vtable *vt = &v;
    uint32_t own_size = sizeof(v);
#endif
    vt->abi_version = 1;
    vt->abi_min_host = 1;
#if defined(FAKE_VARIANT_NEWER)
    vt->abi_version = 2;
#elif defined(FAKE_VARIANT_FUTURE)
    vt->abi_version = 3;
    vt->abi_min_host = 3;
#elif defined(FAKE_VARIANT_ANCIENT)
    vt->abi_version = 0;
    vt->abi_min_host = 0;
#elif defined(FAKE_VARIANT_OLD)
    own_size = offsetof(trit_plugin_vtable, ternary_create);
#endif
    vt->size = own_size;
    vt->backend = TRIT_BACKEND_OTHER;
    vt->name = FAKE_NAME;
    vt->init = fake_init;
    vt->shutdown = fake_shutdown;
    vt->device_count = fake_device_count;
    vt->device_open = fake_device_open;
    vt->device_close = fake_device_close;
    vt->device_info = fake_device_info;
    vt->supports = fake_supports;
    vt->buffer_alloc = fake_buffer_alloc;
    vt->buffer_free = fake_buffer_free;
    vt->stream_create = fake_stream_create;
    vt->stream_destroy = fake_stream_destroy;
    vt->stream_sync = fake_stream_sync;
    vt->buffer_upload = fake_upload;
    vt->buffer_download = fake_download;
    vt->buffer_copy = fake_copy;
    /* Write no more than the host's struct holds, and no more than this plugin has. */
    uint32_t n = vtable->size < own_size ? vtable->size : own_size;
    memcpy(vtable, vt, n);
    vtable->size = own_size;
    return TRIT_OK;
}
#endif
