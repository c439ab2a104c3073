/*
 * loader.c — finds plugin shared libraries, negotiates the ABI, starts them, opens devices.
 *
 * Search order: the context's plugin_path (or, when it is NULL, $TRIT_PLUGIN_PATH), then the
 * directory libtrit itself was loaded from. Files named libtrit-plugin-<name>.so are plugins; the
 * first file of a given name wins. Every plugin found gets a trit_plugin_info entry: LOADED, or
 * SKIPPED with the reason (dlopen error, missing symbol, ABI mismatch, init failure, no device).
 */
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define PLUGIN_PREFIX "libtrit-plugin-"

/* Under AddressSanitizer plugins stay mapped after dlclose: leak reports then name their frames
 * (an unloaded library shows as <unknown module>, which no suppression can match). */
#if defined(__SANITIZE_ADDRESS__)
#define PLUGIN_DLOPEN_FLAGS (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)
#else
#define PLUGIN_DLOPEN_FLAGS (RTLD_NOW | RTLD_LOCAL)
#endif
#define PLUGIN_SUFFIX ".so"

/* More devices than this from one plugin is a broken plugin, not a machine: trusting the count
 * would size the device array by it (a plugin claiming UINT32_MAX fails the whole context, and
 * the sum over several wraps around). */
enum { MAX_DEVICES_PER_PLUGIN = 1024 };

/* --- services handed to plugins ------------------------------------------------------------ */

static const char *plugin_get_option(void *user, const char *key)
{
    host_plugin *p = user;
    trit_context *ctx = p->context;
    if (!key)
        return NULL;
    char full[160];
    snprintf(full, sizeof(full), "%s.%s", p->info.name, key);
    for (uint32_t i = 0; i < ctx->option_count; i++)
        if (strcmp(ctx->options[i].key, full) == 0)
            return ctx->options[i].value;

    /* TRIT_<PLUGIN>_<KEY> from the environment; kept in the context so the string lives on. */
    char env[192] = "TRIT_";
    size_t n = strlen(env);
    for (const char *s = full; *s && n + 1 < sizeof(env); s++)
        env[n++] = (*s == '.' || *s == '-') ? '_' : (char)toupper((unsigned char)*s);
    env[n] = '\0';
    const char *value = getenv(env);
    if (!value)
        return NULL;
    const char *result = NULL;
    pthread_mutex_lock(&ctx->mutex);
    for (uint32_t i = 0; i < ctx->env_option_count; i++)
        if (strcmp(ctx->env_options[i].key, full) == 0 &&
            strcmp(ctx->env_options[i].value, value) == 0)
            result = ctx->env_options[i].value;
    if (!result) {
        host_option *grown = host_alloc(ctx, (ctx->env_option_count + 1) * sizeof(host_option));
        char *k = host_strdup(ctx, full), *v = host_strdup(ctx, value);
        if (grown && k && v) {
            if (ctx->env_option_count)
                memcpy(grown, ctx->env_options, ctx->env_option_count * sizeof(host_option));
            host_free(ctx, ctx->env_options);
            ctx->env_options = grown;
            ctx->env_options[ctx->env_option_count].key = k;
            ctx->env_options[ctx->env_option_count].value = v;
            ctx->env_option_count++;
            result = v;
        } else {
            host_free(ctx, grown);
            host_free(ctx, k);
            host_free(ctx, v);
        }
    }
    pthread_mutex_unlock(&ctx->mutex);
    return result;
}

static void plugin_log(void *user, trit_log_level level, const char *message)
{
    host_plugin *p = user;
    host_log(p->context, level, "%s: %s", p->info.name, message ? message : "");
}

static void plugin_set_error(void *user, const char *message)
{
    (void)user;
    trit_set_error(TRIT_ERROR_INTERNAL, "%s", message ? message : "");
}

/* --- discovery ----------------------------------------------------------------------------- */

typedef struct candidate {
    char path[512];
    char name[32];
} candidate;

typedef struct candidate_list {
    candidate *items;
    uint32_t count, capacity;
} candidate_list;

static int name_selected(const char *filter, const char *name)
{
    if (!filter)
        return 1;
    size_t n = strlen(name);
    for (const char *s = filter; *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == n && strncmp(s, name, n) == 0)
            return 1;
        if (!e)
            break;
        s = e + 1;
    }
    return 0;
}

static int candidate_add(trit_context *ctx, candidate_list *list, const char *dir, const char *file,
                         const char *filter)
{
    size_t flen = strlen(file), plen = strlen(PLUGIN_PREFIX), slen = strlen(PLUGIN_SUFFIX);
    if (flen <= plen + slen || strncmp(file, PLUGIN_PREFIX, plen) != 0 ||
        strcmp(file + flen - slen, PLUGIN_SUFFIX) != 0)
        return 1;
    size_t nlen = flen - plen - slen;
    if (nlen >= sizeof(list->items[0].name))
        return 1;
    char name[32];
    memcpy(name, file + plen, nlen);
    name[nlen] = '\0';
    if (!name_selected(filter, name))
        return 1;
    for (uint32_t i = 0; i < list->count; i++)
        if (strcmp(list->items[i].name, name) == 0)
            return 1; /* an earlier directory wins */
    if (list->count == list->capacity) {
        uint32_t cap = list->capacity ? list->capacity * 2 : 8;
        candidate *grown = host_alloc(ctx, cap * sizeof(candidate));
        if (!grown)
            return 0;
        if (list->count)
            memcpy(grown, list->items, list->count * sizeof(candidate));
        host_free(ctx, list->items);
        list->items = grown;
        list->capacity = cap;
    }
    candidate *c = &list->items[list->count++];
    snprintf(c->path, sizeof(c->path), "%s/%s", dir, file);
    memcpy(c->name, name, nlen + 1);
    return 1;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds the plugins of one directory, sorted by file name so load order is stable. */
static int scan_dir(trit_context *ctx, candidate_list *list, const char *dir, const char *filter)
{
    DIR *d = opendir(dir);
    if (!d) {
        host_log(ctx, TRIT_LOG_DEBUG, "plugin directory %s cannot be read", dir);
        return 1;
    }
    char *names[256];
    uint32_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        if (strncmp(e->d_name, PLUGIN_PREFIX, strlen(PLUGIN_PREFIX)) == 0) {
            names[n] = host_strdup(ctx, e->d_name);
            if (names[n])
                n++;
        }
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), compare_names);
    int ok = 1;
    for (uint32_t i = 0; i < n; i++) {
        if (ok)
            ok = candidate_add(ctx, list, dir, names[i], filter);
        host_free(ctx, names[i]);
    }
    return ok;
}

static int scan_path_list(trit_context *ctx, candidate_list *list, const char *paths,
                          const char *filter)
{
    char dir[512];
    for (const char *s = paths; s && *s;) {
        const char *e = strchr(s, ':');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len > 0 && len < sizeof(dir)) {
            memcpy(dir, s, len);
            dir[len] = '\0';
            if (!scan_dir(ctx, list, dir, filter))
                return 0;
        }
        if (!e)
            break;
        s = e + 1;
    }
    return 1;
}

static void library_dir(char *out, size_t size)
{
    Dl_info info;
    out[0] = '\0';
    /* ISO C has no function-to-object pointer cast; copy the address bits instead. */
    trit_status (*fn)(const trit_context_options *, trit_context **) = trit_context_create;
    void *addr;
    memcpy(&addr, &fn, sizeof(addr));
    if (dladdr(addr, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash) {
            size_t len = (size_t)(slash - info.dli_fname);
            if (len < size) {
                memcpy(out, info.dli_fname, len);
                out[len] = '\0';
            }
        } else {
            snprintf(out, size, ".");
        }
    }
}

/* --- loading one plugin -------------------------------------------------------------------- */

static void skip(host_plugin *p, const char *fmt, const char *a, const char *b)
{
    p->info.state = TRIT_PLUGIN_SKIPPED;
    snprintf(p->info.reason, sizeof(p->info.reason), fmt, a ? a : "", b ? b : "");
}

/* Loads `c` into `p`. On any failure the plugin is left SKIPPED with its library closed. */
static void load_one(trit_context *ctx, host_plugin *p, const candidate *c)
{
    memset(p, 0, sizeof(*p));
    p->context = ctx;
    p->info.size = sizeof(p->info);
    snprintf(p->info.name, sizeof(p->info.name), "%s", c->name);
    snprintf(p->info.path, sizeof(p->info.path), "%s", c->path);

    dlerror();
    p->library = dlopen(c->path, PLUGIN_DLOPEN_FLAGS);
    if (!p->library) {
        const char *err = dlerror();
        skip(p, "cannot be loaded: %s%s", err ? err : "dlopen failed", NULL);
        return;
    }
    trit_plugin_query_fn query;
    void *sym = dlsym(p->library, TRIT_PLUGIN_QUERY_SYMBOL);
    memcpy(&query, &sym, sizeof(query));
    if (!query) {
        skip(p, "does not export %s%s", TRIT_PLUGIN_QUERY_SYMBOL, NULL);
        goto fail;
    }

    trit_plugin_vtable vt;
    memset(&vt, 0, sizeof(vt));
    vt.size = sizeof(vt);
    trit_clear_error();
    trit_status st = query(TRIT_PLUGIN_ABI_VERSION, &vt);
    p->info.abi_version = vt.abi_version;
    char num[64], num2[64];
    if (st != TRIT_OK) {
        snprintf(num, sizeof(num), "%s", trit_status_string(st));
        skip(p, "query failed (%s) %s", num, trit_last_error());
        goto fail;
    }
    if (vt.size < offsetof(trit_plugin_vtable, buffer_copy)) {
        snprintf(num, sizeof(num), "%u", vt.size);
        skip(p, "vtable of %s bytes is too small to hold the required slots%s", num, NULL);
        goto fail;
    }
    if (vt.abi_version < TRIT_PLUGIN_ABI_OLDEST) {
        snprintf(num, sizeof(num), "%u", vt.abi_version);
        snprintf(num2, sizeof(num2), "%u", (unsigned)TRIT_PLUGIN_ABI_OLDEST);
        skip(p, "plugin ABI %s is older than the oldest this libtrit loads (%s)", num, num2);
        goto fail;
    }
    if (vt.abi_min_host > TRIT_PLUGIN_ABI_VERSION) {
        snprintf(num, sizeof(num), "%u", vt.abi_min_host);
        snprintf(num2, sizeof(num2), "%u", (unsigned)TRIT_PLUGIN_ABI_VERSION);
        skip(p, "plugin needs host ABI %s or newer; this libtrit has %s", num, num2);
        goto fail;
    }
    /* Slots the plugin did not provide read as NULL, and so does a slot it provided only in
     * part: a size that ends inside a pointer would leave half an address behind, non-NULL.
     * Every slot past the fixed header is one pointer wide, so round down to a slot boundary. */
    size_t provided = vt.size - vt.size % sizeof(vt.gemv);
    if (provided < sizeof(vt))
        memset((char *)&vt + provided, 0, sizeof(vt) - provided);
    if (vt.name && vt.name[0]) {
        if (strcmp(vt.name, c->name) != 0)
            host_log(ctx, TRIT_LOG_DEBUG, "plugin %s calls itself %s", c->path, vt.name);
    }
    const char *missing = NULL;
    if (!vt.init)
        missing = "init";
    else if (!vt.shutdown)
        missing = "shutdown";
    else if (!vt.device_count)
        missing = "device_count";
    else if (!vt.device_open)
        missing = "device_open";
    else if (!vt.device_close)
        missing = "device_close";
    else if (!vt.device_info)
        missing = "device_info";
    else if (!vt.supports)
        missing = "supports";
    else if (!vt.buffer_alloc)
        missing = "buffer_alloc";
    else if (!vt.buffer_free)
        missing = "buffer_free";
    else if (!vt.stream_create)
        missing = "stream_create";
    else if (!vt.stream_destroy)
        missing = "stream_destroy";
    else if (!vt.stream_sync)
        missing = "stream_sync";
    else if (!vt.buffer_upload)
        missing = "buffer_upload";
    else if (!vt.buffer_download)
        missing = "buffer_download";
    if (missing) {
        skip(p, "vtable lacks the required slot %s%s", missing, NULL);
        goto fail;
    }
    p->vt = vt;

    p->host.size = sizeof(p->host);
    p->host.abi_version = TRIT_PLUGIN_ABI_VERSION;
    p->host.user = p;
    p->host.get_option = plugin_get_option;
    p->host.log = plugin_log;
    p->host.set_error = plugin_set_error;
    p->host.allocator = ctx->allocator;

    trit_clear_error();
    st = vt.init(&p->host, &p->state);
    if (st != TRIT_OK) {
        skip(p, "%s%s", trit_last_error()[0] ? trit_last_error() : trit_status_string(st), NULL);
        p->state = NULL;
        goto fail;
    }
    p->info.device_count = vt.device_count(p->state);
    if (p->info.device_count == 0) {
        vt.shutdown(p->state);
        p->state = NULL;
        skip(p, "no device found%s%s", NULL, NULL);
        goto fail;
    }
    if (p->info.device_count > MAX_DEVICES_PER_PLUGIN) {
        snprintf(num, sizeof(num), "%u", p->info.device_count);
        snprintf(num2, sizeof(num2), "%u", (unsigned)MAX_DEVICES_PER_PLUGIN);
        vt.shutdown(p->state);
        p->state = NULL;
        p->info.device_count = 0;
        skip(p, "claims %s devices, more than the %s a plugin may have", num, num2);
        goto fail;
    }
    p->info.state = TRIT_PLUGIN_LOADED;
    trit_clear_error();
    return;

fail:
    trit_clear_error();
    memset(&p->vt, 0, sizeof(p->vt));
    if (p->library)
        dlclose(p->library);
    p->library = NULL;
}

/* --- the context's plugin set ------------------------------------------------------------- */

trit_status host_load_plugins(trit_context *ctx, const trit_context_options *options)
{
    candidate_list list = {0};
    const char *paths = options->plugin_path ? options->plugin_path : getenv("TRIT_PLUGIN_PATH");
    char libdir[512];
    library_dir(libdir, sizeof(libdir));
    int ok = scan_path_list(ctx, &list, paths, options->plugins);
    if (ok && libdir[0])
        ok = scan_dir(ctx, &list, libdir, options->plugins);
    if (!ok) {
        host_free(ctx, list.items);
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY,
                         "context: out of host memory while scanning plugins");
    }

    if (list.count) {
        ctx->plugins = host_calloc(ctx, list.count, sizeof(host_plugin));
        if (!ctx->plugins) {
            host_free(ctx, list.items);
            return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "context: out of host memory for plugins");
        }
    }
    uint32_t total_devices = 0;
    for (uint32_t i = 0; i < list.count; i++) {
        host_plugin *p = &ctx->plugins[ctx->plugin_count++];
        load_one(ctx, p, &list.items[i]);
        if (p->info.state == TRIT_PLUGIN_LOADED) {
            host_log(ctx, TRIT_LOG_INFO, "plugin %s: loaded from %s, %u device(s)", p->info.name,
                     p->info.path, p->info.device_count);
            total_devices += p->info.device_count;
        } else {
            host_log(ctx, TRIT_LOG_INFO, "plugin %s: skipped: %s", p->info.name, p->info.reason);
        }
    }
    host_free(ctx, list.items);

    if (total_devices) {
        ctx->devices = host_calloc(ctx, total_devices, sizeof(trit_device));
        if (!ctx->devices)
            return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "context: out of host memory for devices");
    }
    for (uint32_t i = 0; i < ctx->plugin_count; i++) {
        host_plugin *p = &ctx->plugins[i];
        if (p->info.state != TRIT_PLUGIN_LOADED)
            continue;
        uint32_t opened = 0;
        for (uint32_t d = 0; d < p->info.device_count; d++) {
            trit_device *dev = &ctx->devices[ctx->device_count];
            memset(dev, 0, sizeof(*dev));
            dev->context = ctx;
            dev->plugin = p;
            dev->index = ctx->device_count;
            dev->index_in_backend = d;
            snprintf(dev->label, sizeof(dev->label), "%s:%u", p->info.name, d);
            trit_clear_error();
            if (p->vt.device_open(p->state, d, &dev->state) != TRIT_OK) {
                host_log(ctx, TRIT_LOG_WARNING, "%s: cannot open device: %s", dev->label,
                         trit_last_error());
                continue;
            }
            dev->info.size = sizeof(dev->info);
            if (p->vt.device_info(dev->state, &dev->info) != TRIT_OK) {
                host_log(ctx, TRIT_LOG_WARNING, "%s: device_info failed: %s", dev->label,
                         trit_last_error());
                p->vt.device_close(dev->state);
                continue;
            }
            dev->info.size = sizeof(dev->info);
            dev->info.index_in_backend = d;
            /* The strings are the plugin's writing: make sure they end inside their arrays. */
            dev->info.name[sizeof(dev->info.name) - 1] = '\0';
            dev->info.vendor[sizeof(dev->info.vendor) - 1] = '\0';
            dev->info.driver[sizeof(dev->info.driver) - 1] = '\0';
            ctx->device_count++;
            opened++;
        }
        if (opened != p->info.device_count) {
            p->info.device_count = opened;
            if (opened == 0) {
                p->vt.shutdown(p->state);
                p->state = NULL;
                dlclose(p->library);
                p->library = NULL;
                memset(&p->vt, 0, sizeof(p->vt)); /* its slots now point into unmapped code */
                p->info.state = TRIT_PLUGIN_SKIPPED;
                snprintf(p->info.reason, sizeof(p->info.reason), "no device could be opened");
            }
        }
    }
    trit_clear_error();
    return TRIT_OK;
}

void host_unload_plugins(trit_context *ctx)
{
    for (uint32_t i = 0; i < ctx->device_count; i++) {
        trit_device *dev = &ctx->devices[i];
        if (dev->state)
            dev->plugin->vt.device_close(dev->state);
        dev->state = NULL;
    }
    for (uint32_t i = 0; i < ctx->plugin_count; i++) {
        host_plugin *p = &ctx->plugins[i];
        if (p->state)
            p->vt.shutdown(p->state);
        p->state = NULL;
        if (p->library)
            dlclose(p->library);
        p->library = NULL;
    }
    host_free(ctx, ctx->devices);
    host_free(ctx, ctx->plugins);
    ctx->devices = NULL;
    ctx->plugins = NULL;
    ctx->device_count = ctx->plugin_count = 0;
}

trit_status host_plugin_failed(const trit_device *device, trit_status status)
{
    if (status == TRIT_OK)
        status = TRIT_ERROR_INTERNAL;
    /* A status that does not exist would reach the caller as "unknown trit_status". */
    if ((unsigned)status > (unsigned)TRIT_ERROR_INTERNAL) {
        if (!trit_last_error()[0])
            trit_set_error(TRIT_ERROR_PLUGIN,
                           "the %s plugin returned %d, which is not a trit_status",
                           device->plugin->info.name, (int)status);
        status = TRIT_ERROR_PLUGIN;
    }
    if (!trit_last_error()[0])
        trit_set_error(status, "%s", trit_status_string(status));
    trit_error_prefix(device->label);
    return status;
}
