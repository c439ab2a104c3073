/*
 * trit.h — the host API of trit, a library for 1.58-bit (ternary-weight) LLM inference kernels.
 *
 * One backend-agnostic API dispatches fused ternary GEMV, tiled attention and RoPE + KV-cache
 * append to plugins (CPU, CUDA, OpenCL, Vulkan) loaded at run time.
 *
 * Conventions
 *  - Every fallible call returns a trit_status (TRIT_OK = 0) and writes results through trailing
 *    `out_` pointers. On failure, trit_last_error() returns a sentence that says what went wrong,
 *    object-creating calls set their `out_` pointer to NULL, and nothing else (no other output
 *    argument, no device buffer) has been written.
 *  - Optional parameters ride in structs whose first member is `size`: set it to sizeof the
 *    struct (the *_init functions do). The library reads only the members that fit, so callers
 *    built against an older header keep working; a size of 0, one that is not a multiple of the
 *    struct's alignment, or one above 4096 is TRIT_ERROR_INVALID_ARGUMENT.
 *  - The library never aborts and never prints. Install a log callback to see its messages.
 *
 * Thread safety
 *  - A trit_context and its devices may be used from several threads at once, except that
 *    trit_context_destroy must not race with anything else.
 *  - A trit_stream must be used by one thread at a time. Buffers and ternary matrices may be read
 *    by several streams at once; writes must be ordered by the caller (events or stream sync).
 *  - trit_last_error() is per thread.
 */
#ifndef TRIT_TRIT_H
#define TRIT_TRIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define TRIT_API __declspec(dllexport)
#else
#define TRIT_API __attribute__((visibility("default")))
#endif

#define TRIT_VERSION_MAJOR 0
#define TRIT_VERSION_MINOR 1
#define TRIT_VERSION_PATCH 0

/* ----------------------------------------------------------------------------------------------
 * Status and errors
 * -------------------------------------------------------------------------------------------- */

typedef enum trit_status {
    TRIT_OK = 0,
    TRIT_ERROR_INVALID_ARGUMENT = 1, /* a null pointer, an unknown enum value, a negative size */
    TRIT_ERROR_SHAPE_MISMATCH = 2,   /* tensor shapes that do not fit together */
    TRIT_ERROR_UNSUPPORTED = 3,      /* dtype, head dim, option or op the device does not do */
    TRIT_ERROR_OUT_OF_MEMORY = 4,    /* host or device allocation failed */
    TRIT_ERROR_OUT_OF_BOUNDS = 5,    /* a view or copy reaches past the end of its buffer */
    TRIT_ERROR_WRONG_DEVICE = 6,     /* an object belongs to another device than the stream's */
    TRIT_ERROR_OVERFLOW = 7,         /* sizes whose product does not fit in 64 bits / size_t */
    TRIT_ERROR_BAD_FORMAT = 8,       /* malformed weight data or file */
    TRIT_ERROR_PLUGIN = 9,           /* a plugin could not be loaded or broke its contract */
    TRIT_ERROR_NOT_FOUND = 10,       /* no such device, plugin or file */
    TRIT_ERROR_BACKEND = 11,         /* the driver or API underneath reported an error */
    TRIT_ERROR_DEVICE_LOST = 12,     /* the device stopped working; its objects are unusable */
    TRIT_ERROR_INTERNAL = 13,        /* a bug in trit: please report it */
} trit_status;

/* A static name for a status ("TRIT_ERROR_SHAPE_MISMATCH: tensor shapes do not fit together").
 * Never NULL; unknown values give "unknown trit_status". */
TRIT_API const char *trit_status_string(trit_status status);

/* The sentence describing the last failure on the calling thread, for example
 * "cpu: device 0: gemv: x has 2559 columns but the matrix has 2560". Empty ("") if the last
 * call on this thread succeeded or none failed yet. Valid until the next trit call on this thread.
 */
TRIT_API const char *trit_last_error(void);

/* ----------------------------------------------------------------------------------------------
 * Context
 * -------------------------------------------------------------------------------------------- */

typedef struct trit_context trit_context;
typedef struct trit_device trit_device;
typedef struct trit_stream trit_stream;
typedef struct trit_event trit_event;
typedef struct trit_buffer trit_buffer;
typedef struct trit_ternary trit_ternary;

typedef enum trit_log_level {
    TRIT_LOG_DEBUG = 0,
    TRIT_LOG_INFO = 1,
    TRIT_LOG_WARNING = 2,
    TRIT_LOG_ERROR = 3,
} trit_log_level;

/* Called from any thread; must be thread-safe. `message` is valid only during the call. */
typedef void (*trit_log_fn)(void *user, trit_log_level level, const char *message);

/* Host memory allocator for the library's own bookkeeping (not device memory, not the CPU
 * plugin's weight storage, which is aligned and large). All-NULL members mean malloc/free. */
typedef struct trit_allocator {
    void *user;
    void *(*alloc)(void *user, size_t bytes); /* returns 16-byte aligned memory or NULL */
    void (*free)(void *user, void *ptr);
} trit_allocator;

typedef struct trit_context_options {
    size_t size; /* sizeof(trit_context_options) */
    /* Directories to search for plugins, separated by ':'. NULL: the environment variable
     * TRIT_PLUGIN_PATH, then the directory libtrit was loaded from. */
    const char *plugin_path;
    /* Only load plugins whose names are in this comma-separated list ("cpu,vulkan"). NULL: all. */
    const char *plugins;
    trit_allocator allocator;
    trit_log_fn log;
    void *log_user;
    trit_log_level log_level; /* messages below this level are not delivered */
    /* Backend options as "key=value" strings, NULL-terminated array, or NULL. Keys are
     * "<plugin>.<name>", e.g. "cpu.threads=8", "cpu.isa=avx2". Unknown keys are ignored.
     * An option not given here is read from the environment as TRIT_<PLUGIN>_<NAME>
     * (e.g. TRIT_CPU_THREADS). Each plugin documents its options in its README. */
    const char *const *backend_options;
} trit_context_options;

/* Creates a context and loads every plugin found. Plugins that fail to load, speak an
 * incompatible ABI, or find no device are skipped and their reason kept (trit_plugin_info).
 * `options` may be NULL for defaults. A context with no device at all is still created. */
TRIT_API trit_status trit_context_create(const trit_context_options *options,
                                         trit_context **out_context);

/* Destroys the context and every object created from it that the caller did not destroy
 * (streams, buffers, ternary matrices), then unloads the plugins. NULL is a no-op. */
TRIT_API void trit_context_destroy(trit_context *context);

typedef enum trit_plugin_state {
    TRIT_PLUGIN_LOADED = 0,  /* loaded and has at least one device */
    TRIT_PLUGIN_SKIPPED = 1, /* found but not usable: see `reason` */
} trit_plugin_state;

typedef struct trit_plugin_info {
    size_t size;    /* sizeof(trit_plugin_info), set by the caller */
    char name[32];  /* <name> of the file libtrit-plugin-<name>.so: "cpu", "vulkan" */
    char path[512]; /* file it was loaded from */
    trit_plugin_state state;
    uint32_t abi_version; /* the ABI the plugin declared (0 if unknown) */
    uint32_t device_count;
    char reason[256]; /* why it was skipped, "" if loaded */
} trit_plugin_info;

/* Plugins found by the context, loaded or skipped, in load order. */
TRIT_API uint32_t trit_context_plugin_count(const trit_context *context);
TRIT_API trit_status trit_context_plugin_info(const trit_context *context, uint32_t index,
                                              trit_plugin_info *out_info);

/* ----------------------------------------------------------------------------------------------
 * Devices
 * -------------------------------------------------------------------------------------------- */

typedef enum trit_backend {
    TRIT_BACKEND_CPU = 0,
    TRIT_BACKEND_CUDA = 1,
    TRIT_BACKEND_OPENCL = 2,
    TRIT_BACKEND_VULKAN = 3,
    TRIT_BACKEND_OTHER = 4, /* a third-party plugin */
} trit_backend;

/* "cpu", "cuda", "opencl", "vulkan", "other". */
TRIT_API const char *trit_backend_name(trit_backend backend);

/* Capability flags in trit_device_info.caps. */
enum {
    TRIT_CAP_FP16 = 1u << 0,           /* native f16 arithmetic */
    TRIT_CAP_BF16 = 1u << 1,           /* native bf16 arithmetic */
    TRIT_CAP_INT8_DOT = 1u << 2,       /* 4-way int8 dot product instructions (dp4a, VNNI, ...) */
    TRIT_CAP_SUBGROUPS = 1u << 3,      /* subgroup / warp reductions and shuffles */
    TRIT_CAP_COOP_MATRIX = 1u << 4,    /* cooperative matrices / tensor cores */
    TRIT_CAP_UNIFIED_MEMORY = 1u << 5, /* device buffers are host memory (CPU, integrated GPUs) */
    TRIT_CAP_AVX2 = 1u << 8,           /* CPU: AVX2 + FMA kernels in use */
    TRIT_CAP_AVX512 = 1u << 9,         /* CPU: AVX-512 (F/BW/VL) kernels in use */
    TRIT_CAP_AVX512_VNNI = 1u << 10,   /* CPU: AVX-512 VNNI */
};

typedef struct trit_device_info {
    size_t size; /* sizeof(trit_device_info), set by the caller */
    trit_backend backend;
    uint32_t index_in_backend; /* 0-based index among this plugin's devices */
    char name[128];            /* "AMD EPYC 9B14", "NVIDIA H100 80GB HBM3", ... */
    char vendor[64];
    char driver[64];           /* driver / API version string, "" if none */
    uint64_t memory_bytes;     /* total device memory (host RAM for the CPU) */
    uint64_t max_buffer_bytes; /* largest single buffer */
    uint32_t compute_units;    /* SMs, CUs, EUs, or CPU threads in use */
    uint32_t subgroup_size;    /* warp / subgroup / SIMD width in 32-bit lanes; 0 if none */
    uint32_t caps;             /* TRIT_CAP_* */
} trit_device_info;

/* Devices across all loaded plugins, in plugin load order. The device objects are owned by the
 * context and valid until it is destroyed. */
TRIT_API uint32_t trit_device_count(const trit_context *context);
TRIT_API trit_status trit_device_get(const trit_context *context, uint32_t index,
                                     trit_device **out_device);
TRIT_API trit_status trit_device_get_info(const trit_device *device, trit_device_info *out_info);
/* Short label used in messages: "cpu:0", "vulkan:1". */
TRIT_API const char *trit_device_label(const trit_device *device);

/* ----------------------------------------------------------------------------------------------
 * Streams and events
 * -------------------------------------------------------------------------------------------- */

/* An ordered queue of work on one device. Ops and transfers enqueued on one stream run in order;
 * they may run asynchronously with the host (CPU plugin: they complete before the call returns).
 * Host memory passed to an upload/download must stay valid until trit_stream_sync. */
TRIT_API trit_status trit_stream_create(trit_device *device, trit_stream **out_stream);
TRIT_API void trit_stream_destroy(trit_stream *stream); /* waits for pending work; NULL ok */
/* Blocks until all work enqueued so far has completed. Reports errors of asynchronous work. */
TRIT_API trit_status trit_stream_sync(trit_stream *stream);
TRIT_API trit_device *trit_stream_device(const trit_stream *stream);

/* Events mark a point in a stream; another stream (on any device, of any backend) can wait
 * for it. Waiting across backends is done by the host (the waiting call blocks). */
TRIT_API trit_status trit_event_create(trit_device *device, trit_event **out_event);
TRIT_API void trit_event_destroy(trit_event *event);
/* Records the event at the current end of `stream` (the stream must be on the event's device). */
TRIT_API trit_status trit_event_record(trit_event *event, trit_stream *stream);
/* Makes later work on `stream` wait until `event` has completed. */
TRIT_API trit_status trit_stream_wait_event(trit_stream *stream, trit_event *event);
/* Blocks the host until the event has completed (an event never recorded is complete). */
TRIT_API trit_status trit_event_sync(trit_event *event);

/* ----------------------------------------------------------------------------------------------
 * Buffers
 * -------------------------------------------------------------------------------------------- */

/* Allocates `bytes` (> 0) of device memory, contents undefined. */
TRIT_API trit_status trit_buffer_alloc(trit_device *device, uint64_t bytes,
                                       trit_buffer **out_buffer);
/* Frees the buffer. The caller must make sure no pending work uses it. NULL is a no-op. */
TRIT_API void trit_buffer_free(trit_buffer *buffer);
TRIT_API uint64_t trit_buffer_size(const trit_buffer *buffer);
TRIT_API trit_device *trit_buffer_device(const trit_buffer *buffer);

/* Host -> device, enqueued on `stream` (which must be on the buffer's device). */
TRIT_API trit_status trit_buffer_upload(trit_stream *stream, trit_buffer *dst, uint64_t dst_offset,
                                        const void *src, uint64_t bytes);
/* Device -> host, enqueued on `stream`; `dst` is complete after trit_stream_sync. */
TRIT_API trit_status trit_buffer_download(trit_stream *stream, const trit_buffer *src,
                                          uint64_t src_offset, void *dst, uint64_t bytes);
/* Device -> device. `stream` must be on the device of `src` or of `dst`. When the two buffers are
 * on devices of different plugins the copy is staged through host memory and the call blocks
 * until it is complete; otherwise it is enqueued like any op. Overlapping ranges of one buffer
 * are an error. */
TRIT_API trit_status trit_buffer_copy(trit_stream *stream, const trit_buffer *src,
                                      uint64_t src_offset, trit_buffer *dst, uint64_t dst_offset,
                                      uint64_t bytes);
/* Fills `bytes` bytes with the byte `value`. */
TRIT_API trit_status trit_buffer_fill(trit_stream *stream, trit_buffer *dst, uint64_t dst_offset,
                                      uint8_t value, uint64_t bytes);

/* ----------------------------------------------------------------------------------------------
 * Tensors: views of buffers
 * -------------------------------------------------------------------------------------------- */

typedef enum trit_dtype {
    TRIT_DTYPE_F32 = 0,
    TRIT_DTYPE_F16 = 1,
    TRIT_DTYPE_BF16 = 2,
    TRIT_DTYPE_I8 = 3,
    TRIT_DTYPE_I32 = 4, /* only for integer accumulator outputs and index tensors */
} trit_dtype;

TRIT_API const char *trit_dtype_name(trit_dtype dtype);
TRIT_API size_t trit_dtype_size(trit_dtype dtype); /* 0 for an unknown dtype */

#define TRIT_MAX_RANK 4

/* A view: element (i0, i1, ...) lives at byte offset + sum(i_d * strides[d]) * dtype_size.
 * Shapes are listed outermost first; strides are in elements. Plain struct: copy freely. */
typedef struct trit_tensor {
    trit_buffer *buffer;
    uint64_t offset; /* bytes */
    trit_dtype dtype;
    uint32_t rank; /* 1..TRIT_MAX_RANK */
    int64_t shape[TRIT_MAX_RANK];
    int64_t strides[TRIT_MAX_RANK];
} trit_tensor;

/* Makes a view after checking it: rank in range, every extent >= 1, strides >= 0, every element
 * inside the buffer, no overflow. `strides` may be NULL for a contiguous row-major view. */
TRIT_API trit_status trit_tensor_make(trit_buffer *buffer, uint64_t offset, trit_dtype dtype,
                                      uint32_t rank, const int64_t *shape, const int64_t *strides,
                                      trit_tensor *out_tensor);

/* ----------------------------------------------------------------------------------------------
 * Ternary weight matrices
 * -------------------------------------------------------------------------------------------- */

/* Host formats a ternary matrix can be uploaded from (see trit_formats.h for byte layouts). */
typedef enum trit_weight_format {
    TRIT_WEIGHTS_I8 = 0,      /* int8 {-1,0,+1}, row-major, rows x cols bytes */
    TRIT_WEIGHTS_PACKED2 = 1, /* 2-bit codes (w+1), 4 per byte, each row padded to a byte */
    TRIT_WEIGHTS_BASE3 = 2,   /* 5 trits per byte, each row padded to a byte */
    TRIT_WEIGHTS_TQ2_0 = 3,   /* GGUF TQ2_0 blocks (66 B / 256 weights); scales inside */
    TRIT_WEIGHTS_TQ1_0 = 4,   /* GGUF TQ1_0 blocks (54 B / 256 weights); scales inside */
    TRIT_WEIGHTS_I2_S = 5,    /* BitNet I2_S: 2-bit codes + one f32 scale per tensor inside */
} trit_weight_format;

typedef enum trit_scale_kind {
    TRIT_SCALE_TENSOR = 0, /* one scale */
    TRIT_SCALE_ROW = 1,    /* one scale per output row */
    TRIT_SCALE_BLOCK = 2,  /* one scale per row per block of TRIT_SCALE_BLOCK_K along K */
} trit_scale_kind;

#define TRIT_SCALE_BLOCK_K 256

typedef struct trit_ternary_desc {
    size_t size;  /* sizeof(trit_ternary_desc) */
    int64_t rows; /* M: output features */
    int64_t cols; /* K: input features */
    trit_weight_format format;
    const void *data;    /* host memory in `format` */
    uint64_t data_bytes; /* bytes readable at `data`; checked against what the format needs */
    /* Scales for I8 / PACKED2 / BASE3 (ignored for the GGUF and BitNet formats, which carry
     * their own). NULL means a single scale of 1. */
    trit_scale_kind scale_kind;
    const float *scales; /* 1, rows, or rows * ceil(cols / 256) values */
} trit_ternary_desc;

/* Converts the weights, checks every byte (an invalid code or a short buffer is
 * TRIT_ERROR_BAD_FORMAT), and makes them resident on `device` in its preferred layout. Blocks
 * until the upload is complete; `desc->data` may be freed afterwards. */
TRIT_API trit_status trit_ternary_upload(trit_device *device, const trit_ternary_desc *desc,
                                         trit_ternary **out_ternary);
TRIT_API void trit_ternary_free(trit_ternary *ternary); /* NULL is a no-op */
TRIT_API int64_t trit_ternary_rows(const trit_ternary *ternary);
TRIT_API int64_t trit_ternary_cols(const trit_ternary *ternary);
TRIT_API trit_device *trit_ternary_device(const trit_ternary *ternary);
/* Device memory the resident matrix occupies, in bytes (codes, scales and any index data). */
TRIT_API uint64_t trit_ternary_device_bytes(const trit_ternary *ternary);

/* ----------------------------------------------------------------------------------------------
 * Fused ternary GEMV:  y = epilogue(scale ⊙ (W · prologue(x)))
 *
 *   W: M x K ternary (trit_ternary).  x: [N, K] (N = 1..16 token columns, one row each).
 *   y: [N, M].  Every tensor's last dimension must be contiguous (stride 1).
 *
 *   prologue (per column n):  x' = x                          (no RMSNorm)
 *                             x' = x / sqrt(mean(x^2) + eps) * g   (RMSNorm, g = weight [K] f32)
 *   numeric path:
 *     TRIT_GEMV_FLOAT: t[m] = sum_k W[m,k] * x'[k] in f32, times the scale(s) of W.
 *     TRIT_GEMV_INT8 (BitNet W1.58A8): a = max_k |x'[k]|; s = 127 / a (f32 division);
 *       q[k] = clamp(rint(x'[k] * s), -127, 127) with ties to even; acc[m] = sum_k W[m,k] q[k]
 *       exactly in int32; t[m] = acc[m] * (a / 127) times the scale(s) of W. (a = 0 gives t = 0.)
 *       With block scales, each block of 256 is accumulated exactly and rescaled once.
 *   epilogue:  t += bias[m];  t = act(t);  y = t (+ residual[n, m]).
 *     act: NONE, RELU2 (max(t,0)^2), SILU (t / (1 + e^-t)), GELU (tanh approximation).
 *
 * Gated pair: y = act(Wg · x') ⊙ (Wu · x') in one pass over x (both matrices M x K on the same
 * device); the epilogue's act applies to the gate; bias is not allowed; residual is added last.
 * -------------------------------------------------------------------------------------------- */

typedef enum trit_gemv_path {
    TRIT_GEMV_FLOAT = 0,
    TRIT_GEMV_INT8 = 1,
} trit_gemv_path;

typedef enum trit_activation {
    TRIT_ACT_NONE = 0,
    TRIT_ACT_RELU2 = 1,
    TRIT_ACT_SILU = 2,
    TRIT_ACT_GELU = 3,
} trit_activation;

#define TRIT_GEMV_MAX_N 16

typedef struct trit_gemv_params {
    size_t size; /* sizeof(trit_gemv_params) */
    trit_gemv_path path;
    /* Prologue: RMSNorm with weight `rmsnorm_weight` ([K] f32 tensor) when non-NULL. */
    const trit_tensor *rmsnorm_weight;
    float rmsnorm_eps;
    /* Epilogue. */
    const trit_tensor *bias;     /* [M] f32, or NULL */
    const trit_tensor *residual; /* [N, M], dtype of y, or NULL (may alias y) */
    trit_activation act;
    /* INT8 path only, optional: the exact int32 accumulators acc[n, m] ([N, M] i32). Requires
     * per-tensor or per-row scales. For tests and debugging. */
    trit_tensor *accumulators;
} trit_gemv_params;

/* Fills `params` with defaults: float path, no prologue, no epilogue, eps 1e-6. */
TRIT_API void trit_gemv_params_init(trit_gemv_params *params);

/* x: f32 or f16 [N, K]; y: f32 or f16 [N, M]. `params` may be NULL for defaults. */
TRIT_API trit_status trit_ternary_gemv(trit_stream *stream, const trit_ternary *w,
                                       const trit_tensor *x, trit_tensor *y,
                                       const trit_gemv_params *params);
TRIT_API trit_status trit_ternary_gemv_gated(trit_stream *stream, const trit_ternary *w_gate,
                                             const trit_ternary *w_up, const trit_tensor *x,
                                             trit_tensor *y, const trit_gemv_params *params);

/* ----------------------------------------------------------------------------------------------
 * Attention (online softmax, tiled over K/V; the score matrix is never materialised)
 *
 *   A batch of S sequences. Sequence s has q_lens[s] >= 1 new query tokens and kv_lens[s] >=
 *   q_lens[s] tokens in the cache (the new ones included). Queries are the last q_lens[s]
 *   positions: query i of sequence s sits at position p = kv_lens[s] - q_lens[s] + i.
 *   Q:  [T, H, D] with T = sum(q_lens), tokens of sequence 0 first.  O: [T, H, D].
 *   K/V cache, contiguous: [S, C, Hkv, D] (C = capacity per sequence, kv_lens[s] <= C).
 *   K/V cache, paged:      [B, P, Hkv, D] (B blocks of P tokens); token j of sequence s lives
 *                          in block block_table[s * max_blocks_per_seq + j / P], row j % P.
 *   H must be a multiple of Hkv (MHA: equal, GQA, MQA: Hkv = 1); query head h reads KV head
 *   h / (H / Hkv). D in {64, 80, 96, 128, 256}. Q/K/V/O dtypes f32 or f16; f32 accumulation.
 *
 *   For key position j visible to a query at position p:
 *     s = scale * (q . k_j)                       scale = 0 means 1/sqrt(D)
 *     if softcap > 0:  s = softcap * tanh(s / softcap)
 *     if alibi:        s += alibi_slopes[h] * (j - p)
 *   visible: j < kv_len; causal: j <= p; window > 0: p - j < window.
 *   softmax over visible keys; with sinks, exp(sinks[h] - max) is added to the denominator.
 *   A query with no visible key outputs zeros.
 * -------------------------------------------------------------------------------------------- */

typedef struct trit_kv_cache {
    size_t size;   /* sizeof(trit_kv_cache) */
    trit_tensor k; /* rank 4, see above; last dim contiguous */
    trit_tensor v;
    /* Paged cache when non-NULL: host array of S * max_blocks_per_seq block indices
     * (entries past a sequence's last block are ignored). Block size P = k.shape[1]. */
    const int32_t *block_table;
    int32_t max_blocks_per_seq;
} trit_kv_cache;

typedef struct trit_attention_params {
    size_t size; /* sizeof(trit_attention_params) */
    float scale; /* 0: 1/sqrt(D) */
    int causal;
    int32_t window;            /* 0: none */
    float softcap;             /* 0: none */
    const float *alibi_slopes; /* host [H] or NULL */
    const float *sinks;        /* host [H] or NULL */
    /* Split-KV for decode: 0 lets the device choose, 1 forces a single pass, n > 1 asks for n
     * splits per sequence (clamped to the number of K/V tiles). Results agree within tolerance. */
    int32_t kv_splits;
} trit_attention_params;

TRIT_API void trit_attention_params_init(trit_attention_params *params);

/* `q_lens`, `kv_lens`: host arrays of `n_seqs` entries. `params` may be NULL for defaults. */
TRIT_API trit_status trit_attention(trit_stream *stream, const trit_tensor *q,
                                    const trit_kv_cache *cache, uint32_t n_seqs,
                                    const int32_t *q_lens, const int32_t *kv_lens, trit_tensor *out,
                                    const trit_attention_params *params);

/* ----------------------------------------------------------------------------------------------
 * RoPE + KV-cache append, one op
 *
 *   For sequence s, its new tokens i = 0..q_lens[s]-1 get position p = start_pos[s] + i.
 *   q: [T, H, D] rotated in place. k_new, v_new: [T, Hkv, D]; k_new is rotated, then both are
 *   written into the cache at token index p of sequence s (converted to the cache's dtype).
 *   Rotation of the first `rot_dims` dims (even, <= D; 0 means D) with
 *   theta_i = p * base^(-2i / rot_dims):
 *     NORMAL: pairs (x[2i], x[2i+1]);  NEOX: pairs (x[i], x[i + rot_dims/2]).
 *   `q` may be NULL (only K/V appended). Positions must fit in the cache capacity / block table.
 * -------------------------------------------------------------------------------------------- */

typedef enum trit_rope_mode {
    TRIT_ROPE_NORMAL = 0,
    TRIT_ROPE_NEOX = 1,
} trit_rope_mode;

typedef struct trit_rope_params {
    size_t size; /* sizeof(trit_rope_params) */
    trit_rope_mode mode;
    float base;       /* theta base, e.g. 10000 or 500000 */
    int32_t rot_dims; /* 0: all of D */
} trit_rope_params;

TRIT_API void trit_rope_params_init(trit_rope_params *params);

TRIT_API trit_status trit_rope_kv_append(trit_stream *stream, trit_tensor *q,
                                         const trit_tensor *k_new, const trit_tensor *v_new,
                                         const trit_kv_cache *cache, uint32_t n_seqs,
                                         const int32_t *q_lens, const int32_t *start_pos,
                                         const trit_rope_params *params);

/* ----------------------------------------------------------------------------------------------
 * Support queries: ask before dispatching
 * -------------------------------------------------------------------------------------------- */

typedef enum trit_op {
    TRIT_OP_GEMV = 0,
    TRIT_OP_GEMV_GATED = 1,
    TRIT_OP_ATTENTION = 2,
    TRIT_OP_ROPE_KV_APPEND = 3,
} trit_op;

typedef struct trit_op_desc {
    size_t size; /* sizeof(trit_op_desc) */
    trit_op op;
    trit_dtype x_dtype;  /* GEMV: x; attention/rope: Q */
    trit_dtype y_dtype;  /* GEMV: y; attention: O */
    trit_dtype kv_dtype; /* attention/rope: cache dtype */
    trit_gemv_path path; /* GEMV */
    int32_t n;           /* GEMV: columns */
    int32_t head_dim;    /* attention/rope */
    int paged;           /* attention/rope */
    uint32_t features;   /* TRIT_FEATURE_* the call uses, so a device can decline one option */
} trit_op_desc;

/* Bits of trit_op_desc.features. */
enum {
    TRIT_FEATURE_RMSNORM = 1u << 0,      /* GEMV prologue */
    TRIT_FEATURE_BIAS = 1u << 1,         /* GEMV epilogue */
    TRIT_FEATURE_RESIDUAL = 1u << 2,     /* GEMV epilogue */
    TRIT_FEATURE_ACTIVATION = 1u << 3,   /* GEMV epilogue act != NONE */
    TRIT_FEATURE_ACCUMULATORS = 1u << 4, /* GEMV int32 accumulator output */
    TRIT_FEATURE_BLOCK_SCALES = 1u << 5, /* GEMV matrix with per-block scales */
    TRIT_FEATURE_CAUSAL = 1u << 8,       /* attention */
    TRIT_FEATURE_WINDOW = 1u << 9,
    TRIT_FEATURE_SOFTCAP = 1u << 10,
    TRIT_FEATURE_ALIBI = 1u << 11,
    TRIT_FEATURE_SINKS = 1u << 12,
    TRIT_FEATURE_NEOX = 1u << 16, /* RoPE mode */
    TRIT_FEATURE_PARTIAL_ROTARY = 1u << 17,
};

/* Sets *out_supported to 1 if `device` can run the op described, else 0 and, when non-NULL,
 * writes a reason into `reason` (at most `reason_size` bytes, NUL-terminated). */
TRIT_API trit_status trit_device_supports(const trit_device *device, const trit_op_desc *desc,
                                          int *out_supported, char *reason, size_t reason_size);

#ifdef __cplusplus
}
#endif

#endif /* TRIT_TRIT_H */
