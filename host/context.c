/*
 * context.c — trit_context: options, host allocator, logging, the live-object list, teardown.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void *host_alloc(const trit_context *ctx, size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    if (ctx && ctx->allocator.alloc)
        return ctx->allocator.alloc(ctx->allocator.user, bytes);
    return malloc(bytes);
}

void *host_calloc(const trit_context *ctx, size_t count, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes))
        return NULL;
    void *p = host_alloc(ctx, bytes);
    if (p)
        memset(p, 0, bytes ? bytes : 1);
    return p;
}

void host_free(const trit_context *ctx, void *ptr)
{
    if (!ptr)
        return;
    if (ctx && ctx->allocator.alloc)
        ctx->allocator.free(ctx->allocator.user, ptr);
    else
        free(ptr);
}

char *host_strdup(const trit_context *ctx, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = host_alloc(ctx, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

trit_status host_check_struct_size(const char *op, const char *what, size_t size, size_t align,
                                   const char *type)
{
    if (size == 0 || size % align != 0 || size > HOST_MAX_STRUCT_SIZE)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s->size is %zu; set it to sizeof(%s)",
                         op, what, size, type);
    return TRIT_OK;
}

void host_log(const trit_context *ctx, trit_log_level level, const char *fmt, ...)
{
    if (!ctx || !ctx->log || level < ctx->log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_user, level, msg);
}

void host_object_link(trit_context *ctx, host_object *obj, host_object_kind kind)
{
    obj->kind = kind;
    pthread_mutex_lock(&ctx->mutex);
    obj->next = ctx->objects.next;
    obj->prev = &ctx->objects;
    ctx->objects.next->prev = obj;
    ctx->objects.next = obj;
    pthread_mutex_unlock(&ctx->mutex);
}

void host_object_unlink(trit_context *ctx, host_object *obj)
{
    pthread_mutex_lock(&ctx->mutex);
    obj->prev->next = obj->next;
    obj->next->prev = obj->prev;
    obj->prev = obj->next = obj;
    pthread_mutex_unlock(&ctx->mutex);
}

static trit_status context_parse_options(trit_context *ctx, const char *const *opts)
{
    if (!opts)
        return TRIT_OK;
    uint32_t n = 0;
    while (opts[n])
        n++;
    if (n == 0)
        return TRIT_OK;
    ctx->options = host_calloc(ctx, n, sizeof(host_option));
    if (!ctx->options)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "context: out of host memory for options");
    for (uint32_t i = 0; i < n; i++) {
        const char *eq = strchr(opts[i], '=');
        const char *dot = strchr(opts[i], '.');
        if (!eq || !dot || dot > eq || dot == opts[i] || dot + 1 == eq)
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                             "context: backend option \"%s\" is not of the form plugin.name=value",
                             opts[i]);
        host_option *o = &ctx->options[ctx->option_count];
        size_t klen = (size_t)(eq - opts[i]);
        o->key = host_alloc(ctx, klen + 1);
        o->value = host_strdup(ctx, eq + 1);
        if (!o->key || !o->value) {
            host_free(ctx, o->key);
            host_free(ctx, o->value);
            return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "context: out of host memory for options");
        }
        memcpy(o->key, opts[i], klen);
        o->key[klen] = '\0';
        ctx->option_count++;
    }
    return TRIT_OK;
}

static void context_free(trit_context *ctx)
{
    for (uint32_t i = 0; i < ctx->option_count; i++) {
        host_free(ctx, ctx->options[i].key);
        host_free(ctx, ctx->options[i].value);
    }
    host_free(ctx, ctx->options);
    for (uint32_t i = 0; i < ctx->env_option_count; i++) {
        host_free(ctx, ctx->env_options[i].key);
        host_free(ctx, ctx->env_options[i].value);
    }
    host_free(ctx, ctx->env_options);
    pthread_mutex_destroy(&ctx->mutex);
    trit_allocator a = ctx->allocator;
    if (a.alloc)
        a.free(a.user, ctx);
    else
        free(ctx);
}

trit_status trit_context_create(const trit_context_options *options, trit_context **out_context)
{
    trit_clear_error();
    if (!out_context)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "context: out_context is NULL");
    *out_context = NULL;
    trit_context_options opts;
    memset(&opts, 0, sizeof(opts));
    opts.log_level = TRIT_LOG_INFO;
    if (options) {
        trit_status st = HOST_CHECK_SIZE("context", "options", options, trit_context_options);
        if (st != TRIT_OK)
            return st;
        memcpy(&opts, options, options->size < sizeof(opts) ? options->size : sizeof(opts));
    }
    if ((opts.allocator.alloc == NULL) != (opts.allocator.free == NULL))
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "context: allocator needs both alloc and free (or neither)");

    trit_context *ctx = opts.allocator.alloc
                            ? opts.allocator.alloc(opts.allocator.user, sizeof(*ctx))
                            : malloc(sizeof(*ctx));
    if (!ctx)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "context: out of host memory");
    memset(ctx, 0, sizeof(*ctx));
    ctx->allocator = opts.allocator;
    ctx->log = opts.log;
    ctx->log_user = opts.log_user;
    ctx->log_level = opts.log_level;
    pthread_mutex_init(&ctx->mutex, NULL);
    ctx->objects.next = ctx->objects.prev = &ctx->objects;

    trit_status st = context_parse_options(ctx, opts.backend_options);
    if (st == TRIT_OK)
        st = host_load_plugins(ctx, &opts);
    if (st != TRIT_OK) {
        host_unload_plugins(ctx);
        context_free(ctx);
        return st;
    }
    *out_context = ctx;
    return TRIT_OK;
}

void trit_context_destroy(trit_context *ctx)
{
    if (!ctx)
        return;
    /* Streams first (they wait for pending work), then events, ternaries and buffers. */
    static const host_object_kind order[] = {HOST_OBJECT_STREAM, HOST_OBJECT_EVENT,
                                             HOST_OBJECT_TERNARY, HOST_OBJECT_BUFFER};
    for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
        host_object *o = ctx->objects.next;
        while (o != &ctx->objects) {
            host_object *next = o->next;
            if (o->kind == order[k]) {
                o->prev->next = o->next;
                o->next->prev = o->prev;
                o->prev = o->next = o;
                switch (o->kind) {
                case HOST_OBJECT_STREAM: host_stream_release((trit_stream *)o); break;
                case HOST_OBJECT_EVENT: host_event_release((trit_event *)o); break;
                case HOST_OBJECT_TERNARY: host_ternary_release((trit_ternary *)o); break;
                case HOST_OBJECT_BUFFER: host_buffer_release((trit_buffer *)o); break;
                }
            }
            o = next;
        }
    }
    host_unload_plugins(ctx);
    context_free(ctx);
}

uint32_t trit_context_plugin_count(const trit_context *ctx)
{
    return ctx ? ctx->plugin_count : 0;
}

trit_status trit_context_plugin_info(const trit_context *ctx, uint32_t index,
                                     trit_plugin_info *out_info)
{
    trit_clear_error();
    if (!ctx || !out_info)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "plugin_info: context or out_info is NULL");
    trit_status st = HOST_CHECK_SIZE("plugin_info", "out_info", out_info, trit_plugin_info);
    if (st != TRIT_OK)
        return st;
    if (index >= ctx->plugin_count)
        return trit_fail(TRIT_ERROR_NOT_FOUND, "plugin_info: index %u but only %u plugins", index,
                         ctx->plugin_count);
    size_t n =
        out_info->size < sizeof(trit_plugin_info) ? out_info->size : sizeof(trit_plugin_info);
    trit_plugin_info info = ctx->plugins[index].info;
    info.size = out_info->size;
    memcpy(out_info, &info, n);
    return TRIT_OK;
}
