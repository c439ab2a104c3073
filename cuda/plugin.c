/*
 * plugin.c — the CUDA plugin's entry point: ABI query, start-up (driver and device discovery),
 * device info, streams and events.
 *
 * The runtime is linked statically, so without a driver the first runtime call fails with
 * cudaErrorInsufficientDriver (no libcuda.so.1 at all) or cudaErrorNoDevice; init then fails
 * softly with a sentence and the host skips the plugin, keeping the reason.
 *
 * The ops live in gemv.cu, attention.cu and rope.cu; supports() asks the op's file.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"

enum { CUDA_MAX_DEVICES = 64 };

typedef struct cuda_plugin {
    const trit_plugin_host *host;
    int count;
    cuda_device devices[CUDA_MAX_DEVICES];
} cuda_plugin;

static void set_error(const trit_plugin_host *host, const char *msg)
{
    if (host && host->set_error)
        host->set_error(host->user, msg);
}

trit_status cuda_error(const cuda_device *dev, trit_status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    set_error(dev ? dev->host : NULL, msg);
    return st;
}

trit_status cuda_fail(const cuda_device *dev, cudaError_t err, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "%s: %s: %s", what, cudaGetErrorName(err), cudaGetErrorString(err));
    set_error(dev ? dev->host : NULL, msg);
    cudaGetLastError(); /* clear the sticky-free error so later calls start clean */
    switch (err) {
    case cudaErrorMemoryAllocation: return TRIT_ERROR_OUT_OF_MEMORY;
    case cudaErrorInvalidValue: return TRIT_ERROR_INVALID_ARGUMENT;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver: return TRIT_ERROR_BACKEND;
    case cudaErrorLaunchFailure:
    case cudaErrorIllegalAddress:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorDevicesUnavailable: return TRIT_ERROR_DEVICE_LOST;
    default: return TRIT_ERROR_BACKEND;
    }
}

trit_status cuda_use(const cuda_device *dev)
{
    cudaError_t err = cudaSetDevice(dev->ordinal);
    return err == cudaSuccess ? TRIT_OK : cuda_fail(dev, err, "cudaSetDevice");
}

static trit_status plugin_init(const trit_plugin_host *host, void **out_plugin)
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaErrorInsufficientDriver) {
        set_error(host, "no CUDA driver (libcuda.so.1 is missing or older than this build's "
                        "runtime)");
        cudaGetLastError();
        return TRIT_ERROR_BACKEND;
    }
    if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0)) {
        set_error(host, "no CUDA device");
        cudaGetLastError();
        return TRIT_ERROR_BACKEND;
    }
    if (err != cudaSuccess)
        return cuda_fail(NULL, err, "cudaGetDeviceCount");
    cuda_plugin *p = calloc(1, sizeof(*p));
    if (!p) {
        set_error(host, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    p->host = host;
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    if (count > CUDA_MAX_DEVICES)
        count = CUDA_MAX_DEVICES;
    for (int i = 0; i < count; i++) {
        cuda_device *d = &p->devices[p->count];
        d->host = host;
        d->ordinal = i;
        d->driver_version = driver;
        d->runtime_version = runtime;
        err = cudaGetDeviceProperties(&d->prop, i);
        if (err != cudaSuccess) {
            char msg[160];
            snprintf(msg, sizeof(msg), "device %d: cudaGetDeviceProperties: %s; skipped", i,
                     cudaGetErrorString(err));
            if (host->log)
                host->log(host->user, TRIT_LOG_WARNING, msg);
            cudaGetLastError();
            continue;
        }
        p->count++;
    }
    if (p->count == 0) {
        free(p);
        set_error(host, "no usable CUDA device");
        return TRIT_ERROR_BACKEND;
    }
    *out_plugin = p;
    return TRIT_OK;
}

static void plugin_shutdown(void *plugin)
{
    free(plugin);
}

static uint32_t plugin_device_count(void *plugin)
{
    return (uint32_t)((cuda_plugin *)plugin)->count;
}

static trit_status plugin_device_open(void *plugin, uint32_t index, void **out_device)
{
    cuda_plugin *p = plugin;
    if (index >= (uint32_t)p->count) {
        set_error(p->host, "no such CUDA device");
        return TRIT_ERROR_NOT_FOUND;
    }
    cuda_device *d = &p->devices[index];
    trit_status st = cuda_use(d);
    if (st != TRIT_OK)
        return st;
    cudaError_t err = cudaFree(NULL); /* creates the primary context now, not in the first op */
    if (err != cudaSuccess)
        return cuda_fail(d, err, "creating the CUDA context");
    *out_device = d;
    return TRIT_OK;
}

static void plugin_device_close(void *device)
{
    (void)device; /* the primary context lives until the process exits */
}

static trit_status plugin_device_info(void *device, trit_device_info *info)
{
    cuda_device *d = device;
    trit_device_info out;
    memset(&out, 0, sizeof(out));
    out.backend = TRIT_BACKEND_CUDA;
    snprintf(out.name, sizeof(out.name), "%.*s", (int)sizeof(out.name) - 1, d->prop.name);
    snprintf(out.vendor, sizeof(out.vendor), "NVIDIA");
    snprintf(out.driver, sizeof(out.driver), "CUDA driver %d.%d, runtime %d.%d, sm_%d%d",
             d->driver_version / 1000, d->driver_version % 1000 / 10, d->runtime_version / 1000,
             d->runtime_version % 1000 / 10, d->prop.major, d->prop.minor);
    out.memory_bytes = d->prop.totalGlobalMem;
    out.max_buffer_bytes = d->prop.totalGlobalMem;
    out.compute_units = (uint32_t)d->prop.multiProcessorCount;
    out.subgroup_size = (uint32_t)d->prop.warpSize;
    out.caps = TRIT_CAP_FP16 | TRIT_CAP_INT8_DOT | TRIT_CAP_SUBGROUPS;
    if (d->prop.major >= 8)
        out.caps |= TRIT_CAP_BF16;
    if (d->prop.major >= 7)
        out.caps |= TRIT_CAP_COOP_MATRIX;
    if (d->prop.integrated)
        out.caps |= TRIT_CAP_UNIFIED_MEMORY;
    size_t n = info->size < sizeof(out) ? info->size : sizeof(out);
    out.size = info->size;
    memcpy(info, &out, n);
    return TRIT_OK;
}

static int plugin_supports(void *device, const trit_op_desc *desc, char *reason, size_t size)
{
    const cuda_device *d = device;
    switch (desc->op) {
    case TRIT_OP_GEMV:
    case TRIT_OP_GEMV_GATED: return cuda_gemv_supports(d, desc, reason, size);
    case TRIT_OP_ATTENTION: return cuda_attention_supports(d, desc, reason, size);
    case TRIT_OP_ROPE_KV_APPEND: return cuda_rope_supports(d, desc, reason, size);
    default:
        if (reason && size)
            snprintf(reason, size, "the CUDA plugin does not know op %d", (int)desc->op);
        return 0;
    }
}

/* --- streams and events -------------------------------------------------------------------- */

static trit_status plugin_stream_create(void *device, void **out_stream)
{
    cuda_device *d = device;
    trit_status st = cuda_use(d);
    if (st != TRIT_OK)
        return st;
    cuda_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        set_error(d->host, "out of host memory for a stream");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    s->dev = d;
    cudaError_t err = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (err != cudaSuccess) {
        free(s);
        return cuda_fail(d, err, "cudaStreamCreate");
    }
    *out_stream = s;
    return TRIT_OK;
}

static void plugin_stream_destroy(void *stream)
{
    cuda_stream *s = stream;
    if (cuda_use(s->dev) == TRIT_OK) {
        cudaStreamSynchronize(s->stream);
        cuda_staging_release(s);
        cudaStreamDestroy(s->stream);
        if (s->scratch)
            cudaFree(s->scratch);
    }
    free(s);
}

trit_status cuda_stream_scratch(cuda_stream *s, uint64_t bytes, void **out_ptr)
{
    if (s->scratch && bytes <= s->scratch_bytes) {
        *out_ptr = s->scratch;
        return TRIT_OK;
    }
    /* Grow by at least half, in whole MiB, so a sequence of growing calls allocates rarely. */
    const uint64_t mib = (uint64_t)1 << 20;
    const uint64_t want = (bytes + bytes / 2 + mib - 1) & ~(mib - 1);
    cudaError_t err = cudaStreamSynchronize(s->stream);
    if (err != cudaSuccess)
        return cuda_fail(s->dev, err, "cudaStreamSynchronize (growing the stream's scratch)");
    if (s->scratch) {
        cudaFree(s->scratch);
        s->scratch = NULL;
        s->scratch_bytes = 0;
    }
    void *p = NULL;
    err = cudaMalloc(&p, (size_t)want);
    if (err != cudaSuccess)
        return cuda_fail(s->dev, err, "cudaMalloc (the stream's scratch)");
    s->scratch = p;
    s->scratch_bytes = want;
    *out_ptr = p;
    return TRIT_OK;
}

static trit_status plugin_stream_sync(void *stream)
{
    cuda_stream *s = stream;
    trit_status st = cuda_use(s->dev);
    if (st != TRIT_OK)
        return st;
    cudaError_t err = cudaStreamSynchronize(s->stream);
    return err == cudaSuccess ? TRIT_OK : cuda_fail(s->dev, err, "cudaStreamSynchronize");
}

static trit_status plugin_event_create(void *device, void **out_event)
{
    cuda_device *d = device;
    trit_status st = cuda_use(d);
    if (st != TRIT_OK)
        return st;
    cuda_event *e = calloc(1, sizeof(*e));
    if (!e) {
        set_error(d->host, "out of host memory for an event");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    e->dev = d;
    cudaError_t err = cudaEventCreateWithFlags(&e->event, cudaEventDisableTiming);
    if (err != cudaSuccess) {
        free(e);
        return cuda_fail(d, err, "cudaEventCreate");
    }
    *out_event = e;
    return TRIT_OK;
}

static void plugin_event_destroy(void *event)
{
    cuda_event *e = event;
    if (cuda_use(e->dev) == TRIT_OK)
        cudaEventDestroy(e->event);
    free(e);
}

static trit_status plugin_event_record(void *event, void *stream)
{
    cuda_event *e = event;
    cuda_stream *s = stream;
    trit_status st = cuda_use(s->dev);
    if (st != TRIT_OK)
        return st;
    cudaError_t err = cudaEventRecord(e->event, s->stream);
    return err == cudaSuccess ? TRIT_OK : cuda_fail(s->dev, err, "cudaEventRecord");
}

static trit_status plugin_stream_wait_event(void *stream, void *event)
{
    cuda_stream *s = stream;
    cuda_event *e = event;
    trit_status st = cuda_use(s->dev);
    if (st != TRIT_OK)
        return st;
    /* Works across the plugin's devices too: CUDA events can be waited on by any stream. */
    cudaError_t err = cudaStreamWaitEvent(s->stream, e->event, 0);
    return err == cudaSuccess ? TRIT_OK : cuda_fail(s->dev, err, "cudaStreamWaitEvent");
}

static trit_status plugin_event_sync(void *event)
{
    cuda_event *e = event;
    trit_status st = cuda_use(e->dev);
    if (st != TRIT_OK)
        return st;
    cudaError_t err = cudaEventSynchronize(e->event);
    return err == cudaSuccess ? TRIT_OK : cuda_fail(e->dev, err, "cudaEventSynchronize");
}

TRIT_PLUGIN_EXPORT trit_status trit_plugin_query(uint32_t host_abi_version,
                                                 trit_plugin_vtable *vtable)
{
    (void)host_abi_version;
    if (!vtable || vtable->size < offsetof(trit_plugin_vtable, init))
        return TRIT_ERROR_INVALID_ARGUMENT;
    trit_plugin_vtable vt;
    memset(&vt, 0, sizeof(vt));
    vt.size = sizeof(vt);
    vt.abi_version = TRIT_PLUGIN_ABI_VERSION;
    vt.abi_min_host = 1;
    vt.backend = TRIT_BACKEND_CUDA;
    vt.name = "cuda";
    vt.init = plugin_init;
    vt.shutdown = plugin_shutdown;
    vt.device_count = plugin_device_count;
    vt.device_open = plugin_device_open;
    vt.device_close = plugin_device_close;
    vt.device_info = plugin_device_info;
    vt.supports = plugin_supports;
    vt.buffer_alloc = cuda_buffer_alloc;
    vt.buffer_free = cuda_buffer_free;
    vt.stream_create = plugin_stream_create;
    vt.stream_destroy = plugin_stream_destroy;
    vt.stream_sync = plugin_stream_sync;
    vt.event_create = plugin_event_create;
    vt.event_destroy = plugin_event_destroy;
    vt.event_record = plugin_event_record;
    vt.stream_wait_event = plugin_stream_wait_event;
    vt.event_sync = plugin_event_sync;
    vt.buffer_upload = cuda_buffer_upload;
    vt.buffer_download = cuda_buffer_download;
    vt.buffer_copy = cuda_buffer_copy;
    vt.buffer_fill = cuda_buffer_fill;
    vt.ternary_create = cuda_ternary_create;
    vt.ternary_destroy = cuda_ternary_destroy;
    vt.gemv = cuda_gemv;
    vt.attention = cuda_attention;
    vt.rope_kv_append = cuda_rope_kv_append;
    uint32_t n = vtable->size < vt.size ? vtable->size : vt.size;
    memcpy(vtable, &vt, n);
    vtable->size = vt.size;
    return TRIT_OK;
}
