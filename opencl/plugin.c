/*
 * plugin.c — the OpenCL plugin's entry point: ABI query, start-up (platforms and devices),
 * device info and capabilities, streams as in-order command queues, events as markers, and the
 * op slots that forward to the kernels.
 *
 * Options (trit_context_options.backend_options, or the environment):
 *   opencl.fp16       / TRIT_OPENCL_FP16        auto | off: use cl_khr_fp16 arithmetic
 *   opencl.subgroups  / TRIT_OPENCL_SUBGROUPS   auto | off: subgroup reductions
 *   opencl.int_dot    / TRIT_OPENCL_INT_DOT     auto | off: cl_khr_integer_dot_product
 *   opencl.fp64       / TRIT_OPENCL_FP64        auto | off: fp64 for the exact RMSNorm prologue
 *   opencl.correct_div/ TRIT_OPENCL_CORRECT_DIV auto | off: -cl-fp32-correctly-rounded-divide-sqrt
 *   opencl.build_options / TRIT_OPENCL_BUILD_OPTIONS  extra options for every kernel build
 *   opencl.cache_dir  / TRIT_OPENCL_CACHE_DIR   kernel binary cache directory, or "off"
 *                                               (default $XDG_CACHE_HOME/trit, ~/.cache/trit)
 * Forcing a capability off makes the kernels take their fallback path, so every fallback can be
 * tested on a device that has the feature.
 *
 * Each device gets its own cl_context, so devices never share objects: copies between two
 * OpenCL devices are staged by the host like any cross-device copy, and an event of one device
 * that a stream of another waits for is waited on by the host.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl.h"

#ifndef CL_DEVICE_INTEGER_DOT_PRODUCT_CAPABILITIES_KHR
#define CL_DEVICE_INTEGER_DOT_PRODUCT_CAPABILITIES_KHR 0x1073
#endif
#ifndef CL_DEVICE_INTEGER_DOT_PRODUCT_INPUT_4x8BIT_PACKED_KHR
#define CL_DEVICE_INTEGER_DOT_PRODUCT_INPUT_4x8BIT_PACKED_KHR (1 << 0)
#endif
#ifndef CL_DEVICE_SUB_GROUP_SIZES_INTEL
#define CL_DEVICE_SUB_GROUP_SIZES_INTEL 0x4108
#endif
#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

enum { MAX_DEVICES = 64 };

typedef struct ocl_plugin {
    const trit_plugin_host *host;
    uint32_t device_count;
    cl_platform_id platforms[MAX_DEVICES];
    cl_device_id ids[MAX_DEVICES];
    ocl_device *devices[MAX_DEVICES]; /* opened ones */
    char cache_dir[1024];
    /* Capability switches: 1 = auto (use when present), 0 = forced off. */
    int want_fp16, want_subgroups, want_int_dot, want_fp64, want_correct_div;
} ocl_plugin;

static void host_error(const trit_plugin_host *host, const char *msg)
{
    if (host->set_error)
        host->set_error(host->user, msg);
}

static const char *option(const ocl_plugin *p, const char *key)
{
    return p->host->get_option ? p->host->get_option(p->host->user, key) : NULL;
}

/* auto | on | off -> 1 / 0; anything else is an error. */
static trit_status parse_switch(ocl_plugin *p, const char *key, int *out)
{
    const char *v = option(p, key);
    *out = 1;
    if (!v || !*v || strcmp(v, "auto") == 0 || strcmp(v, "on") == 0)
        return TRIT_OK;
    if (strcmp(v, "off") == 0) {
        *out = 0;
        return TRIT_OK;
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "option %s=\"%s\" is not one of auto, on, off", key, v);
    host_error(p->host, msg);
    return TRIT_ERROR_INVALID_ARGUMENT;
}

static void choose_cache_dir(ocl_plugin *p)
{
    const char *dir = option(p, "cache_dir");
    if (dir) {
        snprintf(p->cache_dir, sizeof(p->cache_dir), "%s", strcmp(dir, "off") == 0 ? "" : dir);
        return;
    }
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(p->cache_dir, sizeof(p->cache_dir), "%s/trit", xdg);
    else if (home && *home)
        snprintf(p->cache_dir, sizeof(p->cache_dir), "%s/.cache/trit", home);
    else
        p->cache_dir[0] = '\0';
}

static trit_status plugin_init(const trit_plugin_host *host, void **out_plugin)
{
    ocl_plugin *p = calloc(1, sizeof(*p));
    if (!p) {
        host_error(host, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    p->host = host;
    trit_status st = TRIT_OK;
    if ((st = parse_switch(p, "fp16", &p->want_fp16)) != TRIT_OK ||
        (st = parse_switch(p, "subgroups", &p->want_subgroups)) != TRIT_OK ||
        (st = parse_switch(p, "int_dot", &p->want_int_dot)) != TRIT_OK ||
        (st = parse_switch(p, "fp64", &p->want_fp64)) != TRIT_OK ||
        (st = parse_switch(p, "correct_div", &p->want_correct_div)) != TRIT_OK) {
        free(p);
        return st;
    }
    choose_cache_dir(p);

    cl_uint n_platforms = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &n_platforms);
    if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && n_platforms == 0)) {
        host_error(host, "no OpenCL platform found (is an ICD installed?)");
        free(p);
        return TRIT_ERROR_NOT_FOUND;
    }
    if (err != CL_SUCCESS) {
        char msg[160];
        snprintf(msg, sizeof(msg), "clGetPlatformIDs failed: %s (%d)", ocl_error_name(err),
                 (int)err);
        host_error(host, msg);
        free(p);
        return TRIT_ERROR_BACKEND;
    }
    cl_platform_id platforms[16];
    if (n_platforms > 16)
        n_platforms = 16;
    if (clGetPlatformIDs(n_platforms, platforms, NULL) != CL_SUCCESS) {
        host_error(host, "clGetPlatformIDs failed on the second call");
        free(p);
        return TRIT_ERROR_BACKEND;
    }
    for (cl_uint i = 0; i < n_platforms && p->device_count < MAX_DEVICES; i++) {
        cl_uint n = 0;
        cl_device_id ids[MAX_DEVICES];
        if (clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_ALL, MAX_DEVICES, ids, &n) != CL_SUCCESS)
            continue; /* CL_DEVICE_NOT_FOUND: a platform with nothing to run on */
        if (n > MAX_DEVICES)
            n = MAX_DEVICES;
        for (cl_uint d = 0; d < n && p->device_count < MAX_DEVICES; d++) {
            cl_bool avail = CL_FALSE, compiler = CL_FALSE;
            clGetDeviceInfo(ids[d], CL_DEVICE_AVAILABLE, sizeof(avail), &avail, NULL);
            clGetDeviceInfo(ids[d], CL_DEVICE_COMPILER_AVAILABLE, sizeof(compiler), &compiler,
                            NULL);
            if (!avail || !compiler)
                continue; /* kernels are compiled at run time: no compiler, no device */
            p->platforms[p->device_count] = platforms[i];
            p->ids[p->device_count++] = ids[d];
        }
    }
    if (p->device_count == 0) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "no usable OpenCL device found on %u platform(s) (none available with a compiler)",
                 n_platforms);
        host_error(host, msg);
        free(p);
        return TRIT_ERROR_NOT_FOUND;
    }
    *out_plugin = p;
    return TRIT_OK;
}

static void device_release(ocl_device *dev)
{
    ocl_programs_release(dev);
    if (dev->queue)
        clReleaseCommandQueue(dev->queue);
    if (dev->context)
        clReleaseContext(dev->context);
    pthread_mutex_destroy(&dev->lock);
    pthread_mutex_destroy(&dev->enqueue_lock);
    free(dev);
}

static void plugin_shutdown(void *plugin)
{
    ocl_plugin *p = plugin;
    if (!p)
        return;
    for (uint32_t i = 0; i < p->device_count; i++)
        if (p->devices[i])
            device_release(p->devices[i]);
    free(p);
}

static uint32_t plugin_device_count(void *plugin)
{
    return ((ocl_plugin *)plugin)->device_count;
}

static void info_string(cl_device_id id, cl_device_info what, char *out, size_t size)
{
    out[0] = '\0';
    if (clGetDeviceInfo(id, what, size, out, NULL) != CL_SUCCESS)
        out[0] = '\0';
    out[size - 1] = '\0';
}

static int has_extension(const char *extensions, const char *name)
{
    size_t n = strlen(name);
    for (const char *s = extensions; (s = strstr(s, name)) != NULL; s += n)
        if ((s == extensions || s[-1] == ' ') && (s[n] == ' ' || s[n] == '\0'))
            return 1;
    return 0;
}

static void query_capabilities(ocl_plugin *p, ocl_device *dev)
{
    cl_device_id id = dev->id;
    size_t ext_len = 0;
    char *ext = NULL;
    if (clGetDeviceInfo(id, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len) == CL_SUCCESS &&
        (ext = malloc(ext_len + 1)) != NULL) {
        if (clGetDeviceInfo(id, CL_DEVICE_EXTENSIONS, ext_len, ext, NULL) != CL_SUCCESS)
            ext_len = 0;
        ext[ext_len] = '\0';
    }
    const char *e = ext ? ext : "";

    dev->has_fp16 = p->want_fp16 && has_extension(e, "cl_khr_fp16");
    dev->has_fp64 = p->want_fp64 && has_extension(e, "cl_khr_fp64");
    dev->has_subgroups = p->want_subgroups && (has_extension(e, "cl_khr_subgroups") ||
                                               has_extension(e, "cl_intel_subgroups"));
    dev->subgroup_size = 0;
    if (dev->has_subgroups && has_extension(e, "cl_intel_subgroups")) {
        size_t sizes[8] = {0}, bytes = 0;
        if (clGetDeviceInfo(id, CL_DEVICE_SUB_GROUP_SIZES_INTEL, sizeof(sizes), sizes, &bytes) ==
                CL_SUCCESS &&
            bytes >= sizeof(size_t))
            dev->subgroup_size = (uint32_t)sizes[bytes / sizeof(size_t) - 1]; /* the widest */
    }
    dev->has_int_dot = 0;
    if (p->want_int_dot && has_extension(e, "cl_khr_integer_dot_product")) {
        cl_bitfield caps = 0;
        if (clGetDeviceInfo(id, CL_DEVICE_INTEGER_DOT_PRODUCT_CAPABILITIES_KHR, sizeof(caps), &caps,
                            NULL) == CL_SUCCESS)
            dev->has_int_dot = (caps & CL_DEVICE_INTEGER_DOT_PRODUCT_INPUT_4x8BIT_PACKED_KHR) != 0;
    }
    cl_device_fp_config fp = 0;
    clGetDeviceInfo(id, CL_DEVICE_SINGLE_FP_CONFIG, sizeof(fp), &fp, NULL);
    dev->correct_div_sqrt = p->want_correct_div && (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
    free(ext);
}

static trit_status plugin_device_open(void *plugin, uint32_t index, void **out_device)
{
    ocl_plugin *p = plugin;
    if (index >= p->device_count) {
        host_error(p->host, "no such OpenCL device");
        return TRIT_ERROR_NOT_FOUND;
    }
    if (p->devices[index]) {
        *out_device = p->devices[index];
        return TRIT_OK;
    }
    ocl_device *dev = calloc(1, sizeof(*dev));
    if (!dev) {
        host_error(p->host, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    dev->host = p->host;
    dev->index = index;
    dev->platform = p->platforms[index];
    dev->id = p->ids[index];
    dev->cache_dir = p->cache_dir;
    pthread_mutex_init(&dev->lock, NULL);
    pthread_mutex_init(&dev->enqueue_lock, NULL);

    cl_device_id id = dev->id;
    info_string(id, CL_DEVICE_NAME, dev->name, sizeof(dev->name));
    info_string(id, CL_DEVICE_VENDOR, dev->vendor, sizeof(dev->vendor));
    info_string(id, CL_DRIVER_VERSION, dev->driver, sizeof(dev->driver));
    info_string(id, CL_DEVICE_VERSION, dev->version, sizeof(dev->version));
    if (clGetPlatformInfo(dev->platform, CL_PLATFORM_NAME, sizeof(dev->platform_name),
                          dev->platform_name, NULL) != CL_SUCCESS)
        dev->platform_name[0] = '\0';
    dev->platform_name[sizeof(dev->platform_name) - 1] = '\0';
    if (sscanf(dev->version, "OpenCL %d.%d", &dev->cl_major, &dev->cl_minor) != 2)
        dev->cl_major = 1, dev->cl_minor = 0;

    cl_ulong u64 = 0;
    cl_uint u32 = 0;
    size_t sz = 0;
    cl_bool b = CL_FALSE;
    cl_device_type type = 0;
    clGetDeviceInfo(id, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof(u64), &u64, NULL);
    dev->global_mem = u64;
    u64 = 0;
    clGetDeviceInfo(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(u64), &u64, NULL);
    dev->max_alloc = u64 ? u64 : dev->global_mem / 4;
    u64 = 0;
    clGetDeviceInfo(id, CL_DEVICE_LOCAL_MEM_SIZE, sizeof(u64), &u64, NULL);
    dev->local_mem = u64;
    clGetDeviceInfo(id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof(sz), &sz, NULL);
    dev->max_wg = sz ? sz : 1;
    clGetDeviceInfo(id, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof(u32), &u32, NULL);
    dev->compute_units = u32;
    u32 = 0;
    clGetDeviceInfo(id, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof(u32), &u32, NULL);
    dev->mem_align = u32 / 8;
    clGetDeviceInfo(id, CL_DEVICE_TYPE, sizeof(type), &type, NULL);
    dev->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    clGetDeviceInfo(id, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof(b), &b, NULL);
    dev->unified_memory = b || dev->is_cpu;
    b = CL_TRUE;
    clGetDeviceInfo(id, CL_DEVICE_ENDIAN_LITTLE, sizeof(b), &b, NULL);
    dev->little_endian = b != CL_FALSE;
    query_capabilities(p, dev);
    ocl_device_build_options(dev);
    /* opencl.build_options: extra compiler options appended to every build (tuning, debugging;
     * the tests use it to make a build fail on purpose). */
    const char *user_options = option(p, "build_options");
    if (user_options && *user_options) {
        size_t used = strlen(dev->build_options);
        if (used + 1 + strlen(user_options) < sizeof(dev->build_options))
            snprintf(dev->build_options + used, sizeof(dev->build_options) - used, " %s",
                     user_options);
        else
            ocl_log(dev, TRIT_LOG_WARNING, "option build_options is too long; ignored");
    }

    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)dev->platform, 0};
    dev->context = clCreateContext(props, 1, &id, NULL, NULL, &err);
    if (!dev->context || err != CL_SUCCESS) {
        trit_status st = ocl_fail(dev, err, "creating a context on %s", dev->name);
        dev->context = NULL;
        device_release(dev);
        return st;
    }
    dev->queue = clCreateCommandQueue(dev->context, id, 0, &err);
    if (!dev->queue || err != CL_SUCCESS) {
        trit_status st = ocl_fail(dev, err, "creating a command queue on %s", dev->name);
        dev->queue = NULL;
        device_release(dev);
        return st;
    }
    ocl_log(dev, TRIT_LOG_DEBUG,
            "%s (%s, %s): fp16 %d, fp64 %d, subgroups %d (size %u), int dot %d, correct div %d, "
            "max alloc %llu, kernel cache %s",
            dev->name, dev->platform_name, dev->version, dev->has_fp16, dev->has_fp64,
            dev->has_subgroups, dev->subgroup_size, dev->has_int_dot, dev->correct_div_sqrt,
            (unsigned long long)dev->max_alloc, dev->cache_dir[0] ? dev->cache_dir : "off");
    p->devices[index] = dev;
    *out_device = dev;
    return TRIT_OK;
}

static void plugin_device_close(void *device)
{
    (void)device; /* devices live until shutdown */
}

static trit_status plugin_device_info(void *device, trit_device_info *info)
{
    ocl_device *dev = device;
    trit_device_info out;
    memset(&out, 0, sizeof(out));
    out.backend = TRIT_BACKEND_OPENCL;
    out.index_in_backend = dev->index;
    snprintf(out.name, sizeof(out.name), "%s", dev->name);
    snprintf(out.vendor, sizeof(out.vendor), "%s", dev->vendor);
    snprintf(out.driver, sizeof(out.driver), "%s", dev->driver);
    out.memory_bytes = dev->global_mem;
    out.max_buffer_bytes = dev->max_alloc;
    out.compute_units = dev->compute_units;
    out.subgroup_size = dev->subgroup_size;
    if (dev->has_fp16)
        out.caps |= TRIT_CAP_FP16;
    if (dev->has_int_dot)
        out.caps |= TRIT_CAP_INT8_DOT;
    if (dev->has_subgroups)
        out.caps |= TRIT_CAP_SUBGROUPS;
    if (dev->unified_memory)
        out.caps |= TRIT_CAP_UNIFIED_MEMORY;
    size_t n = info->size < sizeof(out) ? info->size : sizeof(out);
    out.size = info->size;
    memcpy(info, &out, n);
    return TRIT_OK;
}

static int plugin_supports(void *device, const trit_op_desc *desc, char *reason, size_t size)
{
    ocl_device *dev = device;
    const char *why;
    switch (desc->op) {
    case TRIT_OP_GEMV:
    case TRIT_OP_GEMV_GATED: why = ocl_gemv_unsupported(dev, desc); break;
#ifdef OCL_HAVE_ATTENTION
    case TRIT_OP_ATTENTION: why = ocl_attention_unsupported(dev, desc); break;
#else
    case TRIT_OP_ATTENTION: why = "not implemented yet"; break;
#endif
#ifdef OCL_HAVE_ROPE
    case TRIT_OP_ROPE_KV_APPEND: why = ocl_rope_unsupported(dev, desc); break;
#else
    case TRIT_OP_ROPE_KV_APPEND: why = "not implemented yet"; break;
#endif
    default: why = "unknown op"; break;
    }
    if (!why)
        return 1;
    if (reason && size)
        snprintf(reason, size, "%s", why);
    return 0;
}

/* --- streams and events -------------------------------------------------------------------- */

static trit_status plugin_stream_create(void *device, void **out_stream)
{
    ocl_device *dev = device;
    ocl_stream *s = calloc(1, sizeof(*s));
    if (!s) {
        ocl_set_error(dev, "out of host memory for a stream");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    cl_int err;
    s->dev = dev;
    s->queue = clCreateCommandQueue(dev->context, dev->id, 0, &err);
    if (!s->queue || err != CL_SUCCESS) {
        free(s);
        return ocl_fail(dev, err, "creating a command queue");
    }
    *out_stream = s;
    return TRIT_OK;
}

static void plugin_stream_destroy(void *stream)
{
    ocl_stream *s = stream;
    if (!s)
        return;
    clFinish(s->queue);
    if (s->scratch)
        clReleaseMemObject(s->scratch);
    clReleaseCommandQueue(s->queue);
    free(s);
}

static trit_status plugin_stream_sync(void *stream)
{
    ocl_stream *s = stream;
    cl_int err = clFinish(s->queue);
    if (err != CL_SUCCESS)
        return ocl_fail(s->dev, err, "waiting for the stream");
    return TRIT_OK;
}

static trit_status plugin_event_create(void *device, void **out_event)
{
    ocl_event *e = calloc(1, sizeof(*e));
    if (!e) {
        ocl_set_error(device, "out of host memory for an event");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    e->dev = device;
    *out_event = e;
    return TRIT_OK;
}

static void plugin_event_destroy(void *event)
{
    ocl_event *e = event;
    if (!e)
        return;
    if (e->ev)
        clReleaseEvent(e->ev);
    free(e);
}

static trit_status plugin_event_record(void *event, void *stream)
{
    ocl_event *e = event;
    ocl_stream *s = stream;
    cl_event ev = NULL;
    cl_int err = clEnqueueMarkerWithWaitList(s->queue, 0, NULL, &ev);
    if (err != CL_SUCCESS)
        return ocl_fail(s->dev, err, "recording an event");
    /* Markers do not start by themselves on every driver: flush so a waiter cannot hang. */
    clFlush(s->queue);
    if (e->ev)
        clReleaseEvent(e->ev);
    e->ev = ev;
    return TRIT_OK;
}

static trit_status plugin_stream_wait_event(void *stream, void *event)
{
    ocl_stream *s = stream;
    ocl_event *e = event;
    if (!e->ev)
        return TRIT_OK;
    cl_int err;
    if (e->dev->context == s->dev->context)
        err = clEnqueueBarrierWithWaitList(s->queue, 1, &e->ev, NULL);
    else
        err = clWaitForEvents(1, &e->ev); /* another context: only the host can wait */
    if (err != CL_SUCCESS)
        return ocl_fail(s->dev, err, "waiting for an event");
    return TRIT_OK;
}

static trit_status plugin_event_sync(void *event)
{
    ocl_event *e = event;
    if (!e->ev)
        return TRIT_OK;
    cl_int err = clWaitForEvents(1, &e->ev);
    if (err != CL_SUCCESS)
        return ocl_fail(e->dev, err, "waiting for an event");
    return TRIT_OK;
}

/* --- ops ---------------------------------------------------------------------------------- */

static trit_status plugin_ternary_create(void *device, const trit_ternary_host *w, void **out,
                                         uint64_t *out_bytes)
{
    return ocl_ternary_create(device, w, out, out_bytes);
}

static void plugin_ternary_destroy(void *device, void *ternary)
{
    ocl_ternary_destroy(device, ternary);
}

static trit_status plugin_gemv(void *stream, const trit_plugin_gemv_args *args)
{
    return ocl_gemv(stream, args);
}

#ifdef OCL_HAVE_ATTENTION
static trit_status plugin_attention(void *stream, const trit_plugin_attention_args *args)
{
    return ocl_attention(stream, args);
}
#endif

#ifdef OCL_HAVE_ROPE
static trit_status plugin_rope(void *stream, const trit_plugin_rope_args *args)
{
    return ocl_rope_kv_append(stream, args);
}
#endif

TRIT_PLUGIN_EXPORT trit_status trit_plugin_query(uint32_t host_abi_version,
                                                 trit_plugin_vtable *vtable)
{
    (void)host_abi_version; /* ABI 1 is the first: any host that can call us speaks it */
    if (!vtable || vtable->size < offsetof(trit_plugin_vtable, init))
        return TRIT_ERROR_INVALID_ARGUMENT;
    trit_plugin_vtable vt;
    memset(&vt, 0, sizeof(vt));
    vt.size = sizeof(vt);
    vt.abi_version = TRIT_PLUGIN_ABI_VERSION;
    vt.abi_min_host = 1;
    vt.backend = TRIT_BACKEND_OPENCL;
    vt.name = "opencl";
    vt.init = plugin_init;
    vt.shutdown = plugin_shutdown;
    vt.device_count = plugin_device_count;
    vt.device_open = plugin_device_open;
    vt.device_close = plugin_device_close;
    vt.device_info = plugin_device_info;
    vt.supports = plugin_supports;
    vt.buffer_alloc = ocl_buffer_alloc;
    vt.buffer_free = ocl_buffer_free;
    vt.buffer_host_ptr = NULL; /* cl_mem has no stable host address */
    vt.stream_create = plugin_stream_create;
    vt.stream_destroy = plugin_stream_destroy;
    vt.stream_sync = plugin_stream_sync;
    vt.event_create = plugin_event_create;
    vt.event_destroy = plugin_event_destroy;
    vt.event_record = plugin_event_record;
    vt.stream_wait_event = plugin_stream_wait_event;
    vt.event_sync = plugin_event_sync;
    vt.buffer_upload = ocl_buffer_upload;
    vt.buffer_download = ocl_buffer_download;
    vt.buffer_copy = ocl_buffer_copy;
    vt.buffer_fill = ocl_buffer_fill;
    vt.ternary_create = plugin_ternary_create;
    vt.ternary_destroy = plugin_ternary_destroy;
    vt.gemv = plugin_gemv;
#ifdef OCL_HAVE_ATTENTION
    vt.attention = plugin_attention;
#endif
#ifdef OCL_HAVE_ROPE
    vt.rope_kv_append = plugin_rope;
#endif
    /* Fill only what the host knows; it zeroes the rest. */
    uint32_t n = vtable->size < vt.size ? vtable->size : vt.size;
    memcpy(vtable, &vt, n);
    vtable->size = vt.size;
    return TRIT_OK;
}
