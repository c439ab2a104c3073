/*
 * trit-info — what trit finds on this machine, like clinfo or vulkaninfo: every plugin (loaded or
 * skipped, and why), every device with its properties, and which ops each device runs for a few
 * typical shapes (and why not).
 *
 * Uses only the public API, so it sees exactly what an application would.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trit/trit.h"

static void usage(FILE *out)
{
    fputs("usage: trit-info [--json] [--verbose] [--help]\n"
          "\n"
          "Lists the plugins trit finds (loaded, or skipped with the reason), the devices they\n"
          "offer, and which ops each device supports.\n"
          "\n"
          "  --json     machine-readable output on stdout\n"
          "  --verbose  also print the library's log messages (to stderr)\n"
          "  --help     this text\n"
          "\n"
          "Plugins are searched in TRIT_PLUGIN_PATH (':'-separated), then next to libtrit.\n"
          "Backend options come from the environment, e.g. TRIT_CPU_THREADS, TRIT_CPU_ISA.\n",
          out);
}

/* ---------------------------------------------------------------------------------------------
 * The op descriptions probed on every device: the shapes a ternary LLM typically runs.
 * ------------------------------------------------------------------------------------------- */

typedef struct probe {
    trit_op op;
    trit_gemv_path path; /* GEMV */
    trit_dtype dtype;    /* x/y for GEMV; Q/O and cache for attention and RoPE */
    int32_t head_dim;    /* attention / RoPE */
    int paged;
    uint32_t features; /* TRIT_FEATURE_* */
} probe;

enum {
    ATTN_ALL_OPTIONS = TRIT_FEATURE_CAUSAL | TRIT_FEATURE_WINDOW | TRIT_FEATURE_SOFTCAP |
                       TRIT_FEATURE_ALIBI | TRIT_FEATURE_SINKS,
};

/* Plain ops first, then the fused forms a BitNet-style layer actually calls: RMSNorm before the
 * int8 projections, the gated FFN with its activation, causal prefill, every attention option. */
static const probe probes[] = {
    {TRIT_OP_GEMV, TRIT_GEMV_FLOAT, TRIT_DTYPE_F32, 0, 0, 0},
    {TRIT_OP_GEMV, TRIT_GEMV_FLOAT, TRIT_DTYPE_F16, 0, 0, 0},
    {TRIT_OP_GEMV, TRIT_GEMV_INT8, TRIT_DTYPE_F32, 0, 0, 0},
    {TRIT_OP_GEMV, TRIT_GEMV_INT8, TRIT_DTYPE_F16, 0, 0, 0},
    {TRIT_OP_GEMV, TRIT_GEMV_INT8, TRIT_DTYPE_F32, 0, 0, TRIT_FEATURE_RMSNORM},
    {TRIT_OP_GEMV_GATED, TRIT_GEMV_FLOAT, TRIT_DTYPE_F32, 0, 0, TRIT_FEATURE_ACTIVATION},
    {TRIT_OP_GEMV_GATED, TRIT_GEMV_INT8, TRIT_DTYPE_F32, 0, 0,
     TRIT_FEATURE_RMSNORM | TRIT_FEATURE_ACTIVATION},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F16, 64, 0, 0},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F32, 64, 0, 0},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F16, 128, 0, 0},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F32, 128, 0, 0},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F16, 256, 0, 0},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F32, 256, 0, 0},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F16, 128, 0, TRIT_FEATURE_CAUSAL},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F16, 128, 0, ATTN_ALL_OPTIONS},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F16, 128, 1, 0},
    {TRIT_OP_ATTENTION, TRIT_GEMV_FLOAT, TRIT_DTYPE_F32, 128, 1, TRIT_FEATURE_CAUSAL},
    {TRIT_OP_ROPE_KV_APPEND, TRIT_GEMV_FLOAT, TRIT_DTYPE_F16, 128, 0, 0},
    {TRIT_OP_ROPE_KV_APPEND, TRIT_GEMV_FLOAT, TRIT_DTYPE_F16, 128, 1, TRIT_FEATURE_NEOX},
};

static const struct {
    uint32_t bit;
    const char *name;
} feature_names[] = {
    {TRIT_FEATURE_RMSNORM, "rmsnorm"},
    {TRIT_FEATURE_BIAS, "bias"},
    {TRIT_FEATURE_RESIDUAL, "residual"},
    {TRIT_FEATURE_ACTIVATION, "act"},
    {TRIT_FEATURE_ACCUMULATORS, "accumulators"},
    {TRIT_FEATURE_BLOCK_SCALES, "block_scales"},
    {TRIT_FEATURE_CAUSAL, "causal"},
    {TRIT_FEATURE_WINDOW, "window"},
    {TRIT_FEATURE_SOFTCAP, "softcap"},
    {TRIT_FEATURE_ALIBI, "alibi"},
    {TRIT_FEATURE_SINKS, "sinks"},
    {TRIT_FEATURE_NEOX, "neox"},
    {TRIT_FEATURE_PARTIAL_ROTARY, "partial_rotary"},
};

enum { FEATURE_NAME_COUNT = sizeof(feature_names) / sizeof(feature_names[0]) };

enum { PROBE_COUNT = sizeof(probes) / sizeof(probes[0]) };

static const char *op_name(trit_op op)
{
    switch (op) {
    case TRIT_OP_GEMV: return "gemv";
    case TRIT_OP_GEMV_GATED: return "gemv_gated";
    case TRIT_OP_ATTENTION: return "attention";
    case TRIT_OP_ROPE_KV_APPEND: return "rope_kv_append";
    }
    return "unknown";
}

static int is_gemv(trit_op op)
{
    return op == TRIT_OP_GEMV || op == TRIT_OP_GEMV_GATED;
}

static void probe_desc(const probe *p, trit_op_desc *out)
{
    memset(out, 0, sizeof(*out));
    out->size = sizeof(*out);
    out->op = p->op;
    out->x_dtype = p->dtype;
    out->y_dtype = p->dtype;
    out->kv_dtype = p->dtype;
    out->path = p->path;
    out->n = is_gemv(p->op) ? 1 : 0;
    out->head_dim = is_gemv(p->op) ? 0 : p->head_dim;
    out->paged = is_gemv(p->op) ? 0 : p->paged;
    out->features = p->features;
}

/* "gemv int8 f32 n=1 +rmsnorm", "attention d=128 f16 paged +causal". */
static void probe_label(const probe *p, char *out, size_t size)
{
    int len;
    if (is_gemv(p->op))
        len = snprintf(out, size, "%s %s %s n=1", op_name(p->op),
                       p->path == TRIT_GEMV_INT8 ? "int8" : "float", trit_dtype_name(p->dtype));
    else
        len = snprintf(out, size, "%s d=%d %s %s", op_name(p->op), (int)p->head_dim,
                       trit_dtype_name(p->dtype), p->paged ? "paged" : "contiguous");
    for (int i = 0; i < FEATURE_NAME_COUNT && len >= 0 && (size_t)len < size; i++)
        if (p->features & feature_names[i].bit)
            len += snprintf(out + len, size - (size_t)len, " +%s", feature_names[i].name);
}

/* ---------------------------------------------------------------------------------------------
 * Capabilities
 * ------------------------------------------------------------------------------------------- */

static const struct {
    uint32_t bit;
    const char *name;
} cap_names[] = {
    {TRIT_CAP_FP16, "fp16"},
    {TRIT_CAP_BF16, "bf16"},
    {TRIT_CAP_INT8_DOT, "int8_dot"},
    {TRIT_CAP_SUBGROUPS, "subgroups"},
    {TRIT_CAP_COOP_MATRIX, "coop_matrix"},
    {TRIT_CAP_UNIFIED_MEMORY, "unified_memory"},
    {TRIT_CAP_AVX2, "avx2"},
    {TRIT_CAP_AVX512, "avx512"},
    {TRIT_CAP_AVX512_VNNI, "avx512_vnni"},
};

enum { CAP_NAME_COUNT = sizeof(cap_names) / sizeof(cap_names[0]) };

/* Bits this build of trit-info has no name for: printed as "bitN" so nothing is hidden. */
static uint32_t unnamed_caps(uint32_t caps)
{
    for (int i = 0; i < CAP_NAME_COUNT; i++)
        caps &= ~cap_names[i].bit;
    return caps;
}

/* ---------------------------------------------------------------------------------------------
 * Text output
 * ------------------------------------------------------------------------------------------- */

static void print_bytes(uint64_t bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        printf("%" PRIu64 " B", bytes);
    else
        printf("%.1f %s (%" PRIu64 " bytes)", v, units[u], bytes);
}

static void print_text_plugins(const trit_context *ctx)
{
    uint32_t count = trit_context_plugin_count(ctx);
    printf("Plugins: %u\n", count);
    if (count == 0) {
        const char *env = getenv("TRIT_PLUGIN_PATH");
        printf("  none found in TRIT_PLUGIN_PATH (%s) or in libtrit's directory\n",
               env ? env : "not set");
    }
    for (uint32_t i = 0; i < count; i++) {
        trit_plugin_info info;
        memset(&info, 0, sizeof(info));
        info.size = sizeof(info);
        if (trit_context_plugin_info(ctx, i, &info) != TRIT_OK) {
            printf("  [%u] (no information: %s)\n", i, trit_last_error());
            continue;
        }
        char abi[24] = "ABI unknown"; /* 0: the plugin never said */
        if (info.abi_version)
            snprintf(abi, sizeof(abi), "ABI %u", info.abi_version);
        printf("  [%u] %-10s ", i, info.name);
        if (info.state == TRIT_PLUGIN_LOADED)
            printf("LOADED   %u device%s, %s\n", info.device_count,
                   info.device_count == 1 ? "" : "s", abi);
        else
            printf("SKIPPED  %s: %s\n", abi, info.reason);
        printf("       %s\n", info.path);
    }
}

static void print_text_device(const trit_device *dev, uint32_t index)
{
    trit_device_info info;
    memset(&info, 0, sizeof(info));
    info.size = sizeof(info);
    printf("\n  [%u] %s\n", index, trit_device_label(dev));
    if (trit_device_get_info(dev, &info) != TRIT_OK) {
        printf("      (no information: %s)\n", trit_last_error());
        return;
    }
    printf("      %-16s %s (device %u of its plugin)\n", "backend", trit_backend_name(info.backend),
           info.index_in_backend);
    printf("      %-16s %s\n", "name", info.name);
    printf("      %-16s %s\n", "vendor", info.vendor);
    printf("      %-16s %s\n", "driver", info.driver[0] ? info.driver : "-");
    printf("      %-16s ", "memory");
    print_bytes(info.memory_bytes);
    printf("\n      %-16s ", "max buffer");
    print_bytes(info.max_buffer_bytes);
    printf("\n      %-16s %u\n", "compute units", info.compute_units);
    if (info.subgroup_size)
        printf("      %-16s %u\n", "subgroup size", info.subgroup_size);
    else
        printf("      %-16s none\n", "subgroup size");
    printf("      %-16s", "capabilities");
    if (info.caps == 0)
        printf(" none");
    for (int i = 0; i < CAP_NAME_COUNT; i++)
        if (info.caps & cap_names[i].bit)
            printf(" %s", cap_names[i].name);
    uint32_t rest = unnamed_caps(info.caps);
    for (int b = 0; b < 32; b++)
        if (rest & (1u << b))
            printf(" bit%d", b);
    printf("\n      ops\n");
    for (int i = 0; i < PROBE_COUNT; i++) {
        trit_op_desc desc;
        char label[128], reason[256] = "";
        int supported = 0;
        probe_desc(&probes[i], &desc);
        probe_label(&probes[i], label, sizeof(label));
        trit_status st = trit_device_supports(dev, &desc, &supported, reason, sizeof(reason));
        if (st != TRIT_OK)
            printf("        error %s: %s\n", label, trit_last_error());
        else if (supported)
            printf("        yes   %s\n", label);
        else
            printf("        no    %s: %s\n", label, reason[0] ? reason : "(no reason given)");
    }
}

static void print_text(const trit_context *ctx)
{
    printf("trit-info (trit %d.%d.%d)\n\n", TRIT_VERSION_MAJOR, TRIT_VERSION_MINOR,
           TRIT_VERSION_PATCH);
    print_text_plugins(ctx);
    uint32_t count = trit_device_count(ctx);
    printf("\nDevices: %u\n", count);
    if (count == 0)
        printf("  none: no plugin offered a usable device (see the plugins above)\n");
    for (uint32_t i = 0; i < count; i++) {
        trit_device *dev = NULL;
        if (trit_device_get(ctx, i, &dev) != TRIT_OK) {
            printf("\n  [%u] (cannot get the device: %s)\n", i, trit_last_error());
            continue;
        }
        print_text_device(dev, i);
    }
}

/* ---------------------------------------------------------------------------------------------
 * JSON output
 * ------------------------------------------------------------------------------------------- */

/* Names, paths and reasons come from drivers and the file system: escape everything JSON needs. */
static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20)
                printf("\\u%04x", *p);
            else
                putchar(*p);
        }
    }
    putchar('"');
}

static void json_key(const char *key)
{
    json_string(key);
    fputs(": ", stdout);
}

static void print_json_plugins(const trit_context *ctx)
{
    uint32_t count = trit_context_plugin_count(ctx);
    fputs("  \"plugins\": [", stdout);
    for (uint32_t i = 0; i < count; i++) {
        trit_plugin_info info;
        memset(&info, 0, sizeof(info));
        info.size = sizeof(info);
        fputs(i ? ",\n    {" : "\n    {", stdout);
        if (trit_context_plugin_info(ctx, i, &info) != TRIT_OK) {
            json_key("error");
            json_string(trit_last_error());
            putchar('}');
            continue;
        }
        json_key("name");
        json_string(info.name);
        fputs(", ", stdout);
        json_key("path");
        json_string(info.path);
        fputs(", ", stdout);
        json_key("state");
        json_string(info.state == TRIT_PLUGIN_LOADED ? "loaded" : "skipped");
        printf(", \"abi_version\": %u, \"device_count\": %u, ", info.abi_version,
               info.device_count);
        json_key("reason");
        json_string(info.reason);
        putchar('}');
    }
    fputs(count ? "\n  ],\n" : "],\n", stdout);
}

static void print_json_ops(const trit_device *dev)
{
    fputs("      \"ops\": [", stdout);
    for (int i = 0; i < PROBE_COUNT; i++) {
        const probe *p = &probes[i];
        trit_op_desc desc;
        char label[128], reason[256] = "";
        int supported = 0;
        probe_desc(p, &desc);
        probe_label(p, label, sizeof(label));
        trit_status st = trit_device_supports(dev, &desc, &supported, reason, sizeof(reason));
        if (st != TRIT_OK)
            snprintf(reason, sizeof(reason), "%s", trit_last_error());
        fputs(i ? ",\n        {" : "\n        {", stdout);
        json_key("label");
        json_string(label);
        fputs(", ", stdout);
        json_key("op");
        json_string(op_name(p->op));
        fputs(", ", stdout);
        if (is_gemv(p->op)) {
            json_key("path");
            json_string(p->path == TRIT_GEMV_INT8 ? "int8" : "float");
            fputs(", ", stdout);
        }
        json_key("dtype");
        json_string(trit_dtype_name(p->dtype));
        fputs(", \"features\": [", stdout);
        for (int f = 0, first = 1; f < FEATURE_NAME_COUNT; f++) {
            if (!(p->features & feature_names[f].bit))
                continue;
            fputs(first ? "" : ", ", stdout);
            json_string(feature_names[f].name);
            first = 0;
        }
        putchar(']');
        if (is_gemv(p->op))
            printf(", \"n\": %d", (int)desc.n);
        else
            printf(", \"head_dim\": %d, \"paged\": %s", (int)desc.head_dim,
                   desc.paged ? "true" : "false");
        printf(", \"supported\": %s, ", st == TRIT_OK && supported ? "true" : "false");
        json_key(st == TRIT_OK ? "reason" : "error");
        json_string(supported && st == TRIT_OK ? "" : reason);
        putchar('}');
    }
    fputs("\n      ]", stdout);
}

static void print_json_device(const trit_context *ctx, uint32_t index)
{
    trit_device *dev = NULL;
    trit_device_info info;
    memset(&info, 0, sizeof(info));
    info.size = sizeof(info);
    printf("    {\"index\": %u, ", index);
    if (trit_device_get(ctx, index, &dev) != TRIT_OK ||
        trit_device_get_info(dev, &info) != TRIT_OK) {
        json_key("error");
        json_string(trit_last_error());
        putchar('}');
        return;
    }
    json_key("label");
    json_string(trit_device_label(dev));
    fputs(",\n      ", stdout);
    json_key("backend");
    json_string(trit_backend_name(info.backend));
    printf(", \"index_in_backend\": %u,\n      ", info.index_in_backend);
    json_key("name");
    json_string(info.name);
    fputs(", ", stdout);
    json_key("vendor");
    json_string(info.vendor);
    fputs(", ", stdout);
    json_key("driver");
    json_string(info.driver);
    printf(",\n      \"memory_bytes\": %" PRIu64 ", \"max_buffer_bytes\": %" PRIu64
           ", \"compute_units\": %u, \"subgroup_size\": %u,\n",
           info.memory_bytes, info.max_buffer_bytes, info.compute_units, info.subgroup_size);
    printf("      \"caps_mask\": %u, \"caps\": [", info.caps);
    int first = 1;
    for (int i = 0; i < CAP_NAME_COUNT; i++) {
        if (!(info.caps & cap_names[i].bit))
            continue;
        fputs(first ? "" : ", ", stdout);
        json_string(cap_names[i].name);
        first = 0;
    }
    uint32_t rest = unnamed_caps(info.caps);
    for (int b = 0; b < 32; b++) {
        if (!(rest & (1u << b)))
            continue;
        printf("%s\"bit%d\"", first ? "" : ", ", b);
        first = 0;
    }
    fputs("],\n", stdout);
    print_json_ops(dev);
    fputs("}", stdout);
}

static void print_json(const trit_context *ctx)
{
    printf("{\n  \"version\": \"%d.%d.%d\",\n", TRIT_VERSION_MAJOR, TRIT_VERSION_MINOR,
           TRIT_VERSION_PATCH);
    print_json_plugins(ctx);
    uint32_t count = trit_device_count(ctx);
    fputs("  \"devices\": [", stdout);
    for (uint32_t i = 0; i < count; i++) {
        fputs(i ? ",\n" : "\n", stdout);
        print_json_device(ctx, i);
    }
    fputs(count ? "\n  ]\n}\n" : "]\n}\n", stdout);
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

static void log_to_stderr(void *user, trit_log_level level, const char *message)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    (void)user;
    fprintf(stderr, "trit [%s] %s\n", (unsigned)level < 4 ? names[level] : "?", message);
}

int main(int argc, char **argv)
{
    int json = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
            verbose = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "trit-info: unknown option '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    trit_context_options opts;
    memset(&opts, 0, sizeof(opts));
    opts.size = sizeof(opts);
    if (verbose) {
        opts.log = log_to_stderr;
        opts.log_level = TRIT_LOG_DEBUG;
    }
    trit_context *ctx = NULL;
    trit_status st = trit_context_create(&opts, &ctx);
    if (st != TRIT_OK) {
        const char *why = trit_last_error();
        fprintf(stderr, "trit-info: cannot create a trit context: %s%s%s\n", trit_status_string(st),
                why[0] ? ": " : "", why);
        return 1;
    }
    if (json)
        print_json(ctx);
    else
        print_text(ctx);
    trit_context_destroy(ctx);
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
