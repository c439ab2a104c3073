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
 *   OPS       as CURRENT, plus ternary matrices and every op. The ops check that the host kept its
 *             promises (every tensor inside its buffer, last dim contiguous), count the calls
 *             that reach them and write 0x42 into their outputs, so tests can see whether
 *             invalid arguments ever got past the host and whether an output was touched
 *   HOSTILE   breaks the contract the way a buggy driver-backed plugin might: device strings
 *             and `supports` reasons that fill their buffers with no terminator, and a
 *             buffer_fill that returns a status that does not exist
 *   RAGGED    reports a vtable size that ends in the middle of the gemv slot
 *   MANYDEV   claims UINT32_MAX devices (and can open two)
 */
#include <stddef.h>
#include <stdint.h>
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

#if defined(FAKE_VARIANT_OPS) || defined(FAKE_VARIANT_HOSTILE)
/* Read and written by tests through dlopen(RTLD_NOLOAD) + dlsym("trit_fake_hooks"). */
typedef struct fake_hooks {
    int op_calls;        /* op calls that reached the plugin */
    int contract_breaks; /* op calls whose arguments broke the host's promises */
    int fill_status;     /* HOSTILE: what buffer_fill returns */
} fake_hooks;
TRIT_PLUGIN_EXPORT fake_hooks trit_fake_hooks = {0, 0, 4242};
#endif

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
#elif defined(FAKE_VARIANT_MANYDEV)
    return UINT32_MAX;
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
#if defined(FAKE_VARIANT_HOSTILE)
    memset(out.name, 'N', sizeof(out.name));
    memset(out.vendor, 'V', sizeof(out.vendor));
    memset(out.driver, 'D', sizeof(out.driver));
#endif
    size_t n = info->size < sizeof(out) ? info->size : sizeof(out);
    out.size = info->size;
    memcpy(info, &out, n);
    return TRIT_OK;
}

static int fake_supports(void *device, const trit_op_desc *desc, char *reason, size_t size)
{
    (void)device;
    (void)desc;
#if defined(FAKE_VARIANT_OPS)
    (void)reason;
    (void)size;
    return 1;
#elif defined(FAKE_VARIANT_HOSTILE)
    memset(reason, 'R', size); /* no terminator */
    return 0;
#endif
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

#if defined(FAKE_VARIANT_HOSTILE)
static trit_status fake_fill(void *stream, void *buffer, uint64_t offset, uint8_t value,
                             uint64_t bytes)
{
    (void)stream;
    (void)buffer;
    (void)offset;
    (void)value;
    (void)bytes;
    return (trit_status)trit_fake_hooks.fill_status; /* and no sentence */
}
#endif

#if defined(FAKE_VARIANT_OPS) || defined(FAKE_VARIANT_HOSTILE) || defined(FAKE_VARIANT_RAGGED)
typedef struct fake_ternary {
    int64_t rows, cols;
} fake_ternary;

static trit_status fake_ternary_create(void *device, const trit_ternary_host *w, void **out,
                                       uint64_t *out_bytes)
{
    (void)device;
    fake_ternary *t = malloc(sizeof(*t));
    if (!t)
        return TRIT_ERROR_OUT_OF_MEMORY;
    t->rows = w->rows;
    t->cols = w->cols;
    *out = t;
    *out_bytes = (uint64_t)w->rows * w->row_bytes;
    return TRIT_OK;
}

static void fake_ternary_destroy(void *device, void *ternary)
{
    (void)device;
    free(ternary);
}
#endif

#if defined(FAKE_VARIANT_OPS) || defined(FAKE_VARIANT_HOSTILE)
static size_t fake_dtype_size(trit_dtype dt)
{
    switch (dt) {
    case TRIT_DTYPE_F32:
    case TRIT_DTYPE_I32: return 4;
    case TRIT_DTYPE_F16:
    case TRIT_DTYPE_BF16: return 2;
    case TRIT_DTYPE_I8: return 1;
    }
    return 0;
}

/* What the host promises about every tensor it hands over. */
static int fake_tensor_ok(const trit_plugin_tensor *t)
{
    size_t es = fake_dtype_size(t->dtype);
    if (!t->buffer || es == 0 || t->rank < 1 || t->rank > TRIT_MAX_RANK ||
        t->strides[t->rank - 1] != 1)
        return 0;
    uint64_t last = 0;
    for (uint32_t d = 0; d < t->rank; d++) {
        if (t->shape[d] < 1 || t->strides[d] < 0)
            return 0;
        last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->strides[d];
    }
    return t->offset + (last + 1) * es <= ((fake_buffer *)t->buffer)->bytes;
}

static unsigned char *fake_element(const trit_plugin_tensor *t, const int64_t *idx)
{
    uint64_t e = 0;
    for (uint32_t d = 0; d < t->rank; d++)
        e += (uint64_t)idx[d] * (uint64_t)t->strides[d];
    return ((fake_buffer *)t->buffer)->data + t->offset + e * fake_dtype_size(t->dtype);
}

/* Writes 0x42 into every element of an output. */
static void fake_mark(const trit_plugin_tensor *t)
{
    int64_t idx[TRIT_MAX_RANK] = {0};
    for (;;) {
        memset(fake_element(t, idx), 0x42, fake_dtype_size(t->dtype));
        uint32_t d = t->rank;
        while (d-- > 0) {
            if (++idx[d] < t->shape[d])
                break;
            idx[d] = 0;
        }
        if (d == UINT32_MAX)
            return;
    }
}

static trit_status fake_op_done(int ok)
{
    trit_fake_hooks.op_calls++;
    if (!ok) {
        trit_fake_hooks.contract_breaks++;
        return TRIT_ERROR_INTERNAL;
    }
    return TRIT_OK;
}

static trit_status fake_gemv(void *stream, const trit_plugin_gemv_args *a)
{
    (void)stream;
    int ok = a->size >= sizeof(*a) && a->w && fake_tensor_ok(&a->x) && fake_tensor_ok(&a->y) &&
             (!a->has_rmsnorm || fake_tensor_ok(&a->rmsnorm_weight)) &&
             (!a->has_bias || fake_tensor_ok(&a->bias)) &&
             (!a->has_residual || fake_tensor_ok(&a->residual)) &&
             (!a->has_accumulators || fake_tensor_ok(&a->accumulators));
    if (ok) {
        fake_mark(&a->y);
        if (a->has_accumulators)
            fake_mark(&a->accumulators);
    }
    return fake_op_done(ok);
}

static trit_status fake_attention(void *stream, const trit_plugin_attention_args *a)
{
    (void)stream;
    int ok = a->size >= sizeof(*a) && fake_tensor_ok(&a->q) && fake_tensor_ok(&a->out) &&
             fake_tensor_ok(&a->cache.k) && fake_tensor_ok(&a->cache.v);
    if (ok)
        fake_mark(&a->out);
    return fake_op_done(ok);
}

/* The cache row of token `pos` of sequence `seq`, KV head `h`. */
static unsigned char *fake_cache_row(const trit_plugin_tensor *c, const trit_plugin_kv_cache *kv,
                                     uint32_t seq, int64_t pos, int64_t h)
{
    int64_t idx[4] = {seq, pos, h, 0};
    if (kv->block_table) {
        idx[0] = kv->block_table[(int64_t)seq * kv->max_blocks_per_seq + pos / c->shape[1]];
        idx[1] = pos % c->shape[1];
    }
    return fake_element(c, idx);
}

static trit_status fake_rope(void *stream, const trit_plugin_rope_args *a)
{
    (void)stream;
    int ok = a->size >= sizeof(*a) && (!a->has_q || fake_tensor_ok(&a->q)) &&
             fake_tensor_ok(&a->k_new) && fake_tensor_ok(&a->v_new) &&
             fake_tensor_ok(&a->cache.k) && fake_tensor_ok(&a->cache.v);
    if (ok) {
        if (a->has_q)
            fake_mark(&a->q);
        for (uint32_t s = 0; s < a->n_seqs; s++)
            for (int64_t i = 0; i < a->q_lens[s]; i++)
                for (int64_t h = 0; h < a->n_kv_heads; h++) {
                    size_t row = (size_t)a->head_dim * fake_dtype_size(a->cache.k.dtype);
                    memset(fake_cache_row(&a->cache.k, &a->cache, s, a->start_pos[s] + i, h), 0x42,
                           row);
                    memset(fake_cache_row(&a->cache.v, &a->cache, s, a->start_pos[s] + i, h), 0x42,
                           row);
                }
    }
    return fake_op_done(ok);
}
#endif

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
#elif defined(FAKE_VARIANT_RAGGED)
    own_size = offsetof(trit_plugin_vtable, gemv) + 4; /* half of the gemv pointer */
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
#if defined(FAKE_VARIANT_OPS) || defined(FAKE_VARIANT_HOSTILE) || defined(FAKE_VARIANT_RAGGED)
    vt->ternary_create = fake_ternary_create;
    vt->ternary_destroy = fake_ternary_destroy;
#endif
#if defined(FAKE_VARIANT_OPS) || defined(FAKE_VARIANT_HOSTILE)
    vt->gemv = fake_gemv;
    vt->attention = fake_attention;
    vt->rope_kv_append = fake_rope;
#elif defined(FAKE_VARIANT_RAGGED)
    /* Any non-NULL value: the host must never treat a half-provided slot as present. */
    vt->gemv =
        (trit_status(*)(void *, const trit_plugin_gemv_args *))(uintptr_t)0x1234567887654321ull;
#endif
#if defined(FAKE_VARIANT_HOSTILE)
    vt->buffer_fill = fake_fill;
#endif
    /* Write no more than the host's struct holds, and no more than this plugin has. */
    uint32_t n = vtable->size < own_size ? vtable->size : own_size;
    memcpy(vtable, vt, n);
    vtable->size = own_size;
    return TRIT_OK;
}
#endif
