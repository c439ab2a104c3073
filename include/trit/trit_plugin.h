/*
 * trit_plugin.h — the contract between libtrit (the host) and a backend plugin.
 *
 * A plugin is a shared library that exports one symbol, TRIT_PLUGIN_QUERY_SYMBOL, of type
 * trit_plugin_query_fn. The host calls it once with its own ABI version and a vtable whose `size`
 * it has set to sizeof(trit_plugin_vtable) as the host knows it. The plugin writes its own
 * `abi_version`, the oldest host ABI it can serve (`abi_min_host`) and its own vtable size, and
 * fills at most min(host size, plugin size) bytes.
 *
 * Compatibility rules
 *  - The vtable only ever grows at the end; a slot's meaning never changes once released.
 *  - Every struct crossing the boundary starts with its size, so either side can tell how much
 *    of it the other knows.
 *  - The host loads a plugin when plugin.abi_version >= TRIT_PLUGIN_ABI_OLDEST and
 *    plugin.abi_min_host <= TRIT_PLUGIN_ABI_VERSION. Slots past min(sizes) are treated as NULL.
 *  - A NULL op slot means "not implemented": the host reports TRIT_ERROR_UNSUPPORTED, and
 *    `supports` is asked before every op (with the options the call uses in desc->features), so
 *    a plugin never sees an op or option it declined.
 *  - Every vtable slot after the fixed header is one function pointer wide; a reported size that
 *    ends inside a slot is rounded down to the slot boundary.
 *  - trit_plugin_tensor and trit_plugin_kv_cache are embedded by value in the sized args
 *    structs and are frozen for ABI 1: changing them needs a new args struct (a new slot).
 *  - A plugin has at most 1024 devices (more is treated as a broken plugin and skipped).
 *  - set_error records the sentence for the calling thread: call it from the thread that called
 *    into the plugin, not from a worker, before returning the error.
 *  - The int32 fields of the args structs (heads, head dim, positions) are guaranteed to fit.
 *
 * Division of labour: the host validates every argument (pointers, shapes, dtypes, bounds,
 * devices, overflow) before calling a plugin op, so plugins receive only well-formed requests;
 * plugins check what only they can know (device limits, memory). Plugins report failures by
 * returning a status and calling host->set_error with a sentence (the host prefixes it with the
 * device label).
 */
#ifndef TRIT_TRIT_PLUGIN_H
#define TRIT_TRIT_PLUGIN_H

#include "trit.h"
#include "trit_formats.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TRIT_PLUGIN_ABI_VERSION 1 /* what this header describes */
#define TRIT_PLUGIN_ABI_OLDEST 1  /* oldest plugin ABI this host still loads */
#define TRIT_PLUGIN_QUERY_SYMBOL "trit_plugin_query"

#if defined(_WIN32)
#define TRIT_PLUGIN_EXPORT __declspec(dllexport)
#else
#define TRIT_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* Services the host offers a plugin. Valid from init until shutdown returns. */
typedef struct trit_plugin_host {
    uint32_t size; /* sizeof(trit_plugin_host) */
    uint32_t abi_version;
    void *user; /* pass back to every callback */
    /* Value of backend option "<plugin>.<key>" (from the context options or the environment), or
     * NULL when not set. The string stays valid until shutdown. */
    const char *(*get_option)(void *user, const char *key);
    /* Log through the context's callback (no-op when none is installed). */
    void (*log)(void *user, trit_log_level level, const char *message);
    /* Record the failure sentence for the calling thread; call before returning an error. */
    void (*set_error)(void *user, const char *message);
    /* The context's host allocator (for small bookkeeping). */
    trit_allocator allocator;
} trit_plugin_host;

/* A tensor as the plugin sees it: `buffer` is the plugin's own buffer handle. The host has
 * checked that every element is inside the buffer and that the last dim is contiguous. */
typedef struct trit_plugin_tensor {
    void *buffer;
    uint64_t offset; /* bytes */
    trit_dtype dtype;
    uint32_t rank;
    int64_t shape[TRIT_MAX_RANK];
    int64_t strides[TRIT_MAX_RANK]; /* elements */
} trit_plugin_tensor;

typedef struct trit_plugin_gemv_args {
    uint32_t size; /* sizeof(trit_plugin_gemv_args) */
    void *w;       /* plugin ternary handle */
    void *w_up;    /* gated pair: the up matrix (w is the gate); NULL otherwise */
    int64_t m, k, n;
    trit_plugin_tensor x; /* [n, k] */
    trit_plugin_tensor y; /* [n, m] */
    trit_gemv_path path;
    int has_rmsnorm;
    trit_plugin_tensor rmsnorm_weight; /* [k] f32 */
    float rmsnorm_eps;
    int has_bias;
    trit_plugin_tensor bias; /* [m] f32 */
    int has_residual;
    trit_plugin_tensor residual; /* [n, m] */
    trit_activation act;
    int has_accumulators;
    trit_plugin_tensor accumulators; /* [n, m] i32 */
} trit_plugin_gemv_args;

typedef struct trit_plugin_kv_cache {
    trit_plugin_tensor k; /* rank 4 */
    trit_plugin_tensor v;
    const int32_t *block_table; /* NULL: contiguous (validated by the host) */
    int32_t max_blocks_per_seq;
} trit_plugin_kv_cache;

typedef struct trit_plugin_attention_args {
    uint32_t size;          /* sizeof(trit_plugin_attention_args) */
    trit_plugin_tensor q;   /* [T, H, D] */
    trit_plugin_tensor out; /* [T, H, D] */
    trit_plugin_kv_cache cache;
    uint32_t n_seqs;
    const int32_t *q_lens;   /* host, n_seqs */
    const int32_t *kv_lens;  /* host, n_seqs */
    const int64_t *q_starts; /* host, n_seqs + 1 prefix sums of q_lens */
    int32_t n_heads, n_kv_heads, head_dim;
    float scale; /* resolved: never 0 */
    int causal;
    int32_t window;
    float softcap;
    const float *alibi_slopes; /* host [H] or NULL */
    const float *sinks;        /* host [H] or NULL */
    int32_t kv_splits;
} trit_plugin_attention_args;

typedef struct trit_plugin_rope_args {
    uint32_t size; /* sizeof(trit_plugin_rope_args) */
    int has_q;
    trit_plugin_tensor q;     /* [T, H, D] */
    trit_plugin_tensor k_new; /* [T, Hkv, D] */
    trit_plugin_tensor v_new; /* [T, Hkv, D] */
    trit_plugin_kv_cache cache;
    uint32_t n_seqs;
    const int32_t *q_lens;    /* host */
    const int32_t *start_pos; /* host */
    const int64_t *q_starts;  /* host, n_seqs + 1 */
    int32_t n_heads, n_kv_heads, head_dim;
    trit_rope_mode mode;
    float base;
    int32_t rot_dims; /* resolved: never 0 */
} trit_plugin_rope_args;

typedef struct trit_plugin_vtable {
    uint32_t size;         /* plugin writes sizeof(its vtable) */
    uint32_t abi_version;  /* plugin writes TRIT_PLUGIN_ABI_VERSION it was built with */
    uint32_t abi_min_host; /* oldest host ABI the plugin can work with */
    trit_backend backend;
    const char *name; /* short lowercase name: "cpu", "vulkan"; static storage */

    /* Lifecycle. init may fail softly (no driver, no device): return an error with a sentence
     * through host->set_error; the host then skips the plugin and keeps the sentence. */
    trit_status (*init)(const trit_plugin_host *host, void **out_plugin);
    void (*shutdown)(void *plugin);

    /* Devices. */
    uint32_t (*device_count)(void *plugin);
    trit_status (*device_open)(void *plugin, uint32_t index, void **out_device);
    void (*device_close)(void *device);
    trit_status (*device_info)(void *device, trit_device_info *out_info);
    /* Returns 1 if the device runs the op; else 0 with a reason written to `reason`. */
    int (*supports)(void *device, const trit_op_desc *desc, char *reason, size_t reason_size);

    /* Memory. buffer_host_ptr may be NULL or return NULL when buffers are not host-visible. */
    trit_status (*buffer_alloc)(void *device, uint64_t bytes, void **out_buffer);
    void (*buffer_free)(void *device, void *buffer);
    void *(*buffer_host_ptr)(void *device, void *buffer);

    /* Streams and events. */
    trit_status (*stream_create)(void *device, void **out_stream);
    void (*stream_destroy)(void *stream);
    trit_status (*stream_sync)(void *stream);
    trit_status (*event_create)(void *device, void **out_event);
    void (*event_destroy)(void *event);
    trit_status (*event_record)(void *event, void *stream);
    trit_status (*stream_wait_event)(void *stream, void *event);
    trit_status (*event_sync)(void *event);

    /* Transfers (same device for copy; ranges checked by the host). */
    trit_status (*buffer_upload)(void *stream, void *buffer, uint64_t offset, const void *src,
                                 uint64_t bytes);
    trit_status (*buffer_download)(void *stream, void *buffer, uint64_t offset, void *dst,
                                   uint64_t bytes);
    trit_status (*buffer_copy)(void *stream, void *src, uint64_t src_offset, void *dst,
                               uint64_t dst_offset, uint64_t bytes);
    trit_status (*buffer_fill)(void *stream, void *buffer, uint64_t offset, uint8_t value,
                               uint64_t bytes);

    /* Ternary matrices: repack the canonical host form into the device's layout. Blocking. */
    trit_status (*ternary_create)(void *device, const trit_ternary_host *weights,
                                  void **out_ternary, uint64_t *out_device_bytes);
    void (*ternary_destroy)(void *device, void *ternary);

    /* Ops (NULL: not implemented). */
    trit_status (*gemv)(void *stream, const trit_plugin_gemv_args *args);
    trit_status (*attention)(void *stream, const trit_plugin_attention_args *args);
    trit_status (*rope_kv_append)(void *stream, const trit_plugin_rope_args *args);

    /* ABI 1 ends here. Append new slots below this line only. */
} trit_plugin_vtable;

/* The one symbol a plugin exports. `host_abi_version` is TRIT_PLUGIN_ABI_VERSION of the host;
 * `vtable->size` is preset by the host. Return TRIT_OK after filling the vtable. */
typedef trit_status (*trit_plugin_query_fn)(uint32_t host_abi_version, trit_plugin_vtable *vtable);

#ifdef __cplusplus
}
#endif

#endif /* TRIT_TRIT_PLUGIN_H */
