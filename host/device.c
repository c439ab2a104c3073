/*
 * device.c — device enumeration, information and support queries.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *trit_backend_name(trit_backend backend)
{
    switch (backend) {
    case TRIT_BACKEND_CPU: return "cpu";
    case TRIT_BACKEND_CUDA: return "cuda";
    case TRIT_BACKEND_OPENCL: return "opencl";
    case TRIT_BACKEND_VULKAN: return "vulkan";
    case TRIT_BACKEND_OTHER: return "other";
    }
    return "unknown";
}

uint32_t trit_device_count(const trit_context *ctx)
{
    return ctx ? ctx->device_count : 0;
}

trit_status trit_device_get(const trit_context *ctx, uint32_t index, trit_device **out_device)
{
    trit_clear_error();
    if (!ctx || !out_device)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "device_get: context or out_device is NULL");
    *out_device = NULL;
    if (index >= ctx->device_count)
        return trit_fail(TRIT_ERROR_NOT_FOUND, "device_get: device %u requested but %u found",
                         index, ctx->device_count);
    *out_device = &ctx->devices[index];
    return TRIT_OK;
}

trit_status trit_device_get_info(const trit_device *device, trit_device_info *out_info)
{
    trit_clear_error();
    if (!device || !out_info)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "device_info: device or out_info is NULL");
    trit_status st = HOST_CHECK_SIZE("device_info", "out_info", out_info, trit_device_info);
    if (st != TRIT_OK)
        return st;
    size_t n =
        out_info->size < sizeof(trit_device_info) ? out_info->size : sizeof(trit_device_info);
    trit_device_info info = device->info;
    info.size = out_info->size;
    memcpy(out_info, &info, n);
    return TRIT_OK;
}

const char *trit_device_label(const trit_device *device)
{
    return device ? device->label : "(null device)";
}

trit_status trit_device_supports(const trit_device *device, const trit_op_desc *desc,
                                 int *out_supported, char *reason, size_t reason_size)
{
    trit_clear_error();
    if (!device || !desc || !out_supported)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "supports: device, desc or out_supported is NULL");
    trit_status st = HOST_CHECK_SIZE("supports", "desc", desc, trit_op_desc);
    if (st != TRIT_OK)
        return st;
    trit_op_desc d;
    memset(&d, 0, sizeof(d));
    memcpy(&d, desc, desc->size < sizeof(d) ? desc->size : sizeof(d));
    d.size = sizeof(d);
    const trit_plugin_vtable *vt = &device->plugin->vt;
    int has_slot = 0;
    switch (d.op) {
    case TRIT_OP_GEMV:
    case TRIT_OP_GEMV_GATED: has_slot = vt->gemv != NULL && vt->ternary_create != NULL; break;
    case TRIT_OP_ATTENTION: has_slot = vt->attention != NULL; break;
    case TRIT_OP_ROPE_KV_APPEND: has_slot = vt->rope_kv_append != NULL; break;
    default:
        /* Before anything is written to `reason`: a failed call leaves its outputs alone. */
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "supports: unknown op %d", (int)d.op);
    }
    char local[256];
    char *r = reason && reason_size ? reason : local;
    size_t rs = reason && reason_size ? reason_size : sizeof(local);
    r[0] = '\0';
    if (!has_slot) {
        snprintf(r, rs, "the %s plugin does not implement this op", device->plugin->info.name);
        *out_supported = 0;
        return TRIT_OK;
    }
    *out_supported = vt->supports(device->state, &d, r, rs) ? 1 : 0;
    /* The reason is the plugin's writing: make sure it ends inside the caller's buffer. */
    r[rs - 1] = '\0';
    if (!*out_supported && !r[0])
        snprintf(r, rs, "not supported by %s", device->label);
    return TRIT_OK;
}
