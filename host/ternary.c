/*
 * ternary.c — ternary weight matrices: any host format -> canonical packed 2-bit form (checked
 * byte by byte in formats/) -> the plugin's resident layout.
 */
#include <string.h>

#include "internal.h"

trit_status trit_ternary_upload(trit_device *device, const trit_ternary_desc *desc,
                                trit_ternary **out_ternary)
{
    trit_clear_error();
    if (!device || !desc || !out_ternary)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "ternary_upload: device, desc or out_ternary is NULL");
    *out_ternary = NULL;
    trit_status st = HOST_CHECK_SIZE("ternary_upload", "desc", desc, trit_ternary_desc);
    if (st != TRIT_OK)
        return st;
    trit_ternary_desc d;
    memset(&d, 0, sizeof(d));
    memcpy(&d, desc, desc->size < sizeof(d) ? desc->size : sizeof(d));
    if (!device->plugin->vt.ternary_create || !device->plugin->vt.ternary_destroy)
        return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: the %s plugin has no ternary matrices",
                         device->label, device->plugin->info.name);

    trit_context *ctx = device->context;
    trit_ternary_host host;
    memset(&host, 0, sizeof(host));
    st = trit_ternary_host_from_desc(&d, ctx->allocator.alloc ? &ctx->allocator : NULL, &host);
    if (st != TRIT_OK)
        return st;

    trit_ternary *t = host_calloc(ctx, 1, sizeof(*t));
    if (!t) {
        trit_ternary_host_release(&host);
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "ternary_upload: out of host memory");
    }
    t->device = device;
    t->rows = host.rows;
    t->cols = host.cols;
    t->scale_kind = host.scale_kind;
    st = device->plugin->vt.ternary_create(device->state, &host, &t->state, &t->device_bytes);
    trit_ternary_host_release(&host);
    if (st != TRIT_OK) {
        host_free(ctx, t);
        return host_plugin_failed(device, st);
    }
    host_object_link(ctx, &t->obj, HOST_OBJECT_TERNARY);
    *out_ternary = t;
    return TRIT_OK;
}

void host_ternary_release(trit_ternary *t)
{
    t->device->plugin->vt.ternary_destroy(t->device->state, t->state);
    host_free(t->device->context, t);
}

void trit_ternary_free(trit_ternary *t)
{
    if (!t)
        return;
    host_object_unlink(t->device->context, &t->obj);
    host_ternary_release(t);
}

int64_t trit_ternary_rows(const trit_ternary *t)
{
    return t ? t->rows : 0;
}

int64_t trit_ternary_cols(const trit_ternary *t)
{
    return t ? t->cols : 0;
}

trit_device *trit_ternary_device(const trit_ternary *t)
{
    return t ? t->device : NULL;
}

uint64_t trit_ternary_device_bytes(const trit_ternary *t)
{
    return t ? t->device_bytes : 0;
}
