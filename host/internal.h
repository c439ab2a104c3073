/*
 * internal.h — the host core's object layouts, shared by the files in host/.
 *
 * Ownership: a context owns its plugins and devices; every stream, event, buffer and ternary
 * matrix is linked into its context's object list (under the context mutex) so that
 * trit_context_destroy can release whatever the caller left behind, in dependency order.
 */
#ifndef TRIT_HOST_INTERNAL_H
#define TRIT_HOST_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "error.h"
#include "trit/trit.h"
#include "trit/trit_plugin.h"

typedef struct host_plugin {
    trit_context *context;
    void *library;         /* dlopen handle, NULL for a skipped plugin that never opened */
    trit_plugin_vtable vt; /* zero-filled past what the plugin provided */
    trit_plugin_host host; /* the services handed to the plugin */
    void *state;           /* from vt.init */
    trit_plugin_info info;
} host_plugin;

/* Intrusive list of live objects, for cleanup at context destruction. */
typedef enum host_object_kind {
    HOST_OBJECT_STREAM,
    HOST_OBJECT_EVENT,
    HOST_OBJECT_BUFFER,
    HOST_OBJECT_TERNARY,
} host_object_kind;

typedef struct host_object {
    struct host_object *prev, *next;
    host_object_kind kind;
} host_object;

struct trit_device {
    trit_context *context;
    host_plugin *plugin;
    void *state;    /* plugin device handle */
    uint32_t index; /* global index */
    uint32_t index_in_backend;
    char label[48]; /* "cpu:0" */
    trit_device_info info;
};

struct trit_stream {
    host_object obj;
    trit_device *device;
    void *state;
};

struct trit_event {
    host_object obj;
    trit_device *device;
    void *state;
};

struct trit_buffer {
    host_object obj;
    trit_device *device;
    void *state;
    uint64_t bytes;
};

struct trit_ternary {
    host_object obj;
    trit_device *device;
    void *state;
    int64_t rows, cols;
    trit_scale_kind scale_kind;
    uint64_t device_bytes;
};

typedef struct host_option {
    char *key; /* "cpu.threads" */
    char *value;
} host_option;

struct trit_context {
    trit_allocator allocator;
    trit_log_fn log;
    void *log_user;
    trit_log_level log_level;
    pthread_mutex_t mutex; /* guards `objects` */
    host_object objects;   /* list head (sentinel) */
    host_plugin *plugins;
    uint32_t plugin_count;
    trit_device *devices;
    uint32_t device_count;
    host_option *options;
    uint32_t option_count;
    /* Option values read from the environment, kept so returned strings stay valid. */
    host_option *env_options;
    uint32_t env_option_count;
};

/* Host allocator (context's, or malloc). */
void *host_alloc(const trit_context *ctx, size_t bytes);
void *host_calloc(const trit_context *ctx, size_t count, size_t size);
void host_free(const trit_context *ctx, void *ptr);
char *host_strdup(const trit_context *ctx, const char *s);

/* Checks the `size` member of a caller's extensible struct before its prefix is copied. Every
 * version of a struct has a sizeof that is a multiple of its alignment and far below
 * HOST_MAX_STRUCT_SIZE; any other value is garbage (typically an uninitialised member), and
 * copying that many bytes could take half of a member, e.g. half a pointer. */
enum { HOST_MAX_STRUCT_SIZE = 4096 };
trit_status host_check_struct_size(const char *op, const char *what, size_t size, size_t align,
                                   const char *type);
#define HOST_CHECK_SIZE(op, what, ptr, type)                                                       \
    host_check_struct_size(op, what, (ptr)->size, _Alignof(type), #type)

void host_log(const trit_context *ctx, trit_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void host_object_link(trit_context *ctx, host_object *obj, host_object_kind kind);
void host_object_unlink(trit_context *ctx, host_object *obj);

/* Plugin discovery and loading (loader.c). Fills ctx->plugins and ctx->devices. */
trit_status host_load_plugins(trit_context *ctx, const trit_context_options *options);
void host_unload_plugins(trit_context *ctx);

/* After a plugin call failed: make sure a sentence exists and prefix it with the device label. */
trit_status host_plugin_failed(const trit_device *device, trit_status status);

/* Object destruction without re-locking the list (context.c calls these at teardown). */
void host_stream_release(trit_stream *stream);
void host_event_release(trit_event *event);
void host_buffer_release(trit_buffer *buffer);
void host_ternary_release(trit_ternary *ternary);

/* Tensor checks (tensor.c). `what` names the tensor in messages ("x", "bias"). */
trit_status host_check_tensor(const char *op, const char *what, const trit_tensor *t);
/* Translates a checked public tensor into the plugin's view. */
void host_plugin_tensor(const trit_tensor *t, trit_plugin_tensor *out);
/* Byte span [begin, end) a tensor touches inside its buffer. */
void host_tensor_span(const trit_tensor *t, uint64_t *begin, uint64_t *end);
/* 1 if two tensors share a buffer and their spans overlap. */
int host_tensors_overlap(const trit_tensor *a, const trit_tensor *b);
/* 1 if the two tensors describe exactly the same elements. */
int host_tensors_same(const trit_tensor *a, const trit_tensor *b);

/* Checked arithmetic. Return 0 on overflow. */
static inline int host_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline int host_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

#endif /* TRIT_HOST_INTERNAL_H */
