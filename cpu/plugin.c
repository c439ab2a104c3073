/*
 * plugin.c — the CPU plugin's entry point: ABI query, start-up (ISA detection, thread count),
 * the single CPU device, streams and events, and the op slots that forward to the kernels.
 *
 * Options (trit_context_options.backend_options, or the environment):
 *   cpu.threads / TRIT_CPU_THREADS   threads for the kernels, 1..1024 (default: CPUs available)
 *   cpu.isa     / TRIT_CPU_ISA       auto | avx512 | avx2 | portable (default auto); a forced ISA
 *                                    the CPU lacks falls back to the best it has, with a log line
 *
 * Streams run their work at enqueue time, so every stream is always complete and events are
 * complete as soon as they are recorded.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"

typedef struct cpu_plugin {
    const trit_plugin_host *host;
    cpu_device device; /* one device: the whole machine */
    int opened;
} cpu_plugin;

void cpu_device_lock(cpu_device *dev)
{
    pthread_mutex_lock(&dev->lock);
}

void cpu_device_unlock(cpu_device *dev)
{
    pthread_mutex_unlock(&dev->lock);
}

static void cpu_log(const cpu_device *dev, trit_log_level level, const char *msg)
{
    if (dev->host->log)
        dev->host->log(dev->host->user, level, msg);
}

static int available_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void read_cpu_name(char *name, size_t size, char *vendor, size_t vsize)
{
    snprintf(name, size, "CPU");
    snprintf(vendor, vsize, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    int got_name = 0, got_vendor = 0;
    while ((!got_name || !got_vendor) && fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        value[strcspn(value, "\n")] = '\0';
        if (!got_name && strncmp(line, "model name", 10) == 0) {
            snprintf(name, size, "%s", value);
            got_name = 1;
        } else if (!got_vendor && strncmp(line, "vendor_id", 9) == 0) {
            snprintf(vendor, vsize, "%s", value);
            got_vendor = 1;
        }
    }
    fclose(f);
}

static cpu_isa detect_isa(int *out_vnni)
{
    *out_vnni = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("fma")) {
        *out_vnni = __builtin_cpu_supports("avx512vnni");
        return CPU_ISA_AVX512;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2"))
        return CPU_ISA_AVX2; /* F16C comes with every AVX2 CPU */
#endif
    return CPU_ISA_PORTABLE;
}

static const char *isa_name(cpu_isa isa)
{
    switch (isa) {
    case CPU_ISA_AVX512: return "avx512";
    case CPU_ISA_AVX2: return "avx2";
    case CPU_ISA_PORTABLE: return "portable";
    }
    return "?";
}

static trit_status parse_options(cpu_plugin *p)
{
    cpu_device *dev = &p->device;
    const trit_plugin_host *host = p->host;
    const char *threads = host->get_option ? host->get_option(host->user, "threads") : NULL;
    dev->threads = available_cpus();
    if (threads && *threads) {
        char *end;
        errno = 0;
        long n = strtol(threads, &end, 10);
        if (errno || *end || n < 1 || n > 1024) {
            cpu_set_error(dev, "option threads=\"%s\" is not an integer in 1..1024", threads);
            return TRIT_ERROR_INVALID_ARGUMENT;
        }
        dev->threads = (int)n;
    }

    int vnni;
    cpu_isa best = detect_isa(&vnni);
    dev->isa = best;
    dev->has_vnni = vnni;
    const char *isa = host->get_option ? host->get_option(host->user, "isa") : NULL;
    if (isa && *isa && strcmp(isa, "auto") != 0) {
        cpu_isa want;
        if (strcmp(isa, "avx512") == 0)
            want = CPU_ISA_AVX512;
        else if (strcmp(isa, "avx2") == 0)
            want = CPU_ISA_AVX2;
        else if (strcmp(isa, "portable") == 0)
            want = CPU_ISA_PORTABLE;
        else {
            cpu_set_error(dev, "option isa=\"%s\" is not one of auto, avx512, avx2, portable", isa);
            return TRIT_ERROR_INVALID_ARGUMENT;
        }
        if (want > best) {
            char msg[160];
            snprintf(msg, sizeof(msg), "isa=%s requested but this CPU only has %s; using %s", isa,
                     isa_name(best), isa_name(best));
            cpu_log(dev, TRIT_LOG_WARNING, msg);
            want = best;
        }
        dev->isa = want;
        if (want != CPU_ISA_AVX512)
            dev->has_vnni = 0;
    }
    return TRIT_OK;
}

static trit_status plugin_init(const trit_plugin_host *host, void **out_plugin)
{
    cpu_plugin *p = calloc(1, sizeof(*p));
    if (!p) {
        if (host->set_error)
            host->set_error(host->user, "out of host memory");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    p->host = host;
    cpu_device *dev = &p->device;
    dev->host = host;
    trit_status st = parse_options(p);
    if (st != TRIT_OK) {
        free(p);
        return st;
    }
    read_cpu_name(dev->name, sizeof(dev->name), dev->vendor, sizeof(dev->vendor));
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    dev->memory_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : (1ull << 32);
    st = cpu_pool_create(dev->threads, &dev->pool);
    if (st != TRIT_OK) {
        cpu_set_error(dev, "cannot start %d threads", dev->threads);
        free(p);
        return st;
    }
    pthread_mutex_init(&dev->lock, NULL);
    char msg[256];
    snprintf(msg, sizeof(msg), "%s, %d threads, %s kernels%s", dev->name, dev->threads,
             isa_name(dev->isa), dev->has_vnni ? " (VNNI)" : "");
    cpu_log(dev, TRIT_LOG_DEBUG, msg);
    *out_plugin = p;
    return TRIT_OK;
}

static void plugin_shutdown(void *plugin)
{
    cpu_plugin *p = plugin;
    if (!p)
        return;
    cpu_pool_destroy(p->device.pool);
    pthread_mutex_destroy(&p->device.lock);
    free(p);
}

static uint32_t plugin_device_count(void *plugin)
{
    (void)plugin;
    return 1;
}

static trit_status plugin_device_open(void *plugin, uint32_t index, void **out_device)
{
    cpu_plugin *p = plugin;
    if (index != 0) {
        cpu_set_error(&p->device, "no CPU device %u", index);
        return TRIT_ERROR_NOT_FOUND;
    }
    p->opened = 1;
    *out_device = &p->device;
    return TRIT_OK;
}

static void plugin_device_close(void *device)
{
    (void)device;
}

static trit_status plugin_device_info(void *device, trit_device_info *info)
{
    cpu_device *dev = device;
    trit_device_info out;
    memset(&out, 0, sizeof(out));
    out.size = sizeof(out);
    out.backend = TRIT_BACKEND_CPU;
    snprintf(out.name, sizeof(out.name), "%s", dev->name);
    snprintf(out.vendor, sizeof(out.vendor), "%s", dev->vendor);
    snprintf(out.driver, sizeof(out.driver), "%s kernels", isa_name(dev->isa));
    out.memory_bytes = dev->memory_bytes;
    out.max_buffer_bytes = dev->memory_bytes;
    out.compute_units = (uint32_t)dev->threads;
    out.subgroup_size = dev->isa == CPU_ISA_AVX512 ? 16 : dev->isa == CPU_ISA_AVX2 ? 8 : 1;
    out.caps = TRIT_CAP_UNIFIED_MEMORY;
    if (dev->isa >= CPU_ISA_AVX2)
        out.caps |= TRIT_CAP_AVX2 | TRIT_CAP_INT8_DOT;
    if (dev->isa == CPU_ISA_AVX512)
        out.caps |= TRIT_CAP_AVX512;
    if (dev->has_vnni)
        out.caps |= TRIT_CAP_AVX512_VNNI;
    size_t n = info->size < sizeof(out) ? info->size : sizeof(out);
    out.size = info->size;
    memcpy(info, &out, n);
    return TRIT_OK;
}

const char *cpu_head_op_unsupported(const trit_op_desc *desc, const char *x_why, const char *y_why)
{
    int d = desc->head_dim;
    if (d != 64 && d != 80 && d != 96 && d != 128 && d != 256)
        return "head dim must be 64, 80, 96, 128 or 256";
    if (desc->x_dtype != TRIT_DTYPE_F32 && desc->x_dtype != TRIT_DTYPE_F16)
        return x_why;
    if (desc->y_dtype != TRIT_DTYPE_F32 && desc->y_dtype != TRIT_DTYPE_F16)
        return y_why;
    if (desc->kv_dtype != TRIT_DTYPE_F32 && desc->kv_dtype != TRIT_DTYPE_F16)
        return "the KV cache must be f32 or f16";
    return NULL;
}

static int plugin_supports(void *device, const trit_op_desc *desc, char *reason, size_t size)
{
    cpu_device *dev = device;
    const char *why;
    switch (desc->op) {
    case TRIT_OP_GEMV:
    case TRIT_OP_GEMV_GATED: why = cpu_gemv_unsupported(dev, desc); break;
    case TRIT_OP_ATTENTION: why = cpu_attention_unsupported(dev, desc); break;
    case TRIT_OP_ROPE_KV_APPEND: why = cpu_rope_unsupported(dev, desc); break;
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
    cpu_stream *s = malloc(sizeof(*s));
    if (!s) {
        cpu_set_error(device, "out of host memory for a stream");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    s->dev = device;
    *out_stream = s;
    return TRIT_OK;
}

static void plugin_stream_destroy(void *stream)
{
    free(stream);
}

static trit_status plugin_stream_sync(void *stream)
{
    (void)stream;
    return TRIT_OK;
}

static int event_token;

static trit_status plugin_event_create(void *device, void **out_event)
{
    (void)device;
    *out_event = &event_token; /* complete from birth: work finishes at enqueue */
    return TRIT_OK;
}

static void plugin_event_destroy(void *event)
{
    (void)event;
}

static trit_status plugin_event_record(void *event, void *stream)
{
    (void)event;
    (void)stream;
    return TRIT_OK;
}

static trit_status plugin_stream_wait_event(void *stream, void *event)
{
    (void)stream;
    (void)event;
    return TRIT_OK;
}

static trit_status plugin_event_sync(void *event)
{
    (void)event;
    return TRIT_OK;
}

/* --- ops: serialised per device, since each uses every thread of the pool ------------------- */

static trit_status plugin_ternary_create(void *device, const trit_ternary_host *w, void **out,
                                         uint64_t *out_bytes)
{
    cpu_device *dev = device;
    cpu_device_lock(dev);
    trit_status st = cpu_ternary_create(dev, w, out, out_bytes);
    cpu_device_unlock(dev);
    return st;
}

static void plugin_ternary_destroy(void *device, void *ternary)
{
    cpu_ternary_destroy(device, ternary);
}

static trit_status plugin_gemv(void *stream, const trit_plugin_gemv_args *args)
{
    cpu_device *dev = ((cpu_stream *)stream)->dev;
    cpu_device_lock(dev);
    trit_status st = cpu_gemv(dev, args);
    cpu_device_unlock(dev);
    return st;
}

static trit_status plugin_attention(void *stream, const trit_plugin_attention_args *args)
{
    cpu_device *dev = ((cpu_stream *)stream)->dev;
    cpu_device_lock(dev);
    trit_status st = cpu_attention(dev, args);
    cpu_device_unlock(dev);
    return st;
}

static trit_status plugin_rope(void *stream, const trit_plugin_rope_args *args)
{
    cpu_device *dev = ((cpu_stream *)stream)->dev;
    cpu_device_lock(dev);
    trit_status st = cpu_rope_kv_append(dev, args);
    cpu_device_unlock(dev);
    return st;
}

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
    vt.backend = TRIT_BACKEND_CPU;
    vt.name = "cpu";
    vt.init = plugin_init;
    vt.shutdown = plugin_shutdown;
    vt.device_count = plugin_device_count;
    vt.device_open = plugin_device_open;
    vt.device_close = plugin_device_close;
    vt.device_info = plugin_device_info;
    vt.supports = plugin_supports;
    vt.buffer_alloc = cpu_buffer_alloc;
    vt.buffer_free = cpu_buffer_free;
    vt.buffer_host_ptr = cpu_buffer_host_ptr;
    vt.stream_create = plugin_stream_create;
    vt.stream_destroy = plugin_stream_destroy;
    vt.stream_sync = plugin_stream_sync;
    vt.event_create = plugin_event_create;
    vt.event_destroy = plugin_event_destroy;
    vt.event_record = plugin_event_record;
    vt.stream_wait_event = plugin_stream_wait_event;
    vt.event_sync = plugin_event_sync;
    vt.buffer_upload = cpu_buffer_upload;
    vt.buffer_download = cpu_buffer_download;
    vt.buffer_copy = cpu_buffer_copy;
    vt.buffer_fill = cpu_buffer_fill;
    vt.ternary_create = plugin_ternary_create;
    vt.ternary_destroy = plugin_ternary_destroy;
    vt.gemv = plugin_gemv;
    vt.attention = plugin_attention;
    vt.rope_kv_append = plugin_rope;
    /* Fill only what the host knows; it zeroes the rest. */
    uint32_t n = vtable->size < vt.size ? vtable->size : vt.size;
    memcpy(vtable, &vt, n);
    vtable->size = vt.size;
    return TRIT_OK;
}
