/*
 * vk.h — internals of the Vulkan plugin shared by its files (plugin.c, memory.c, pipeline.c,
 * gemv.c, attention.c, rope.c). Nothing here crosses the plugin boundary.
 *
 * Adding a shader (op files only, no CMake edit needed):
 *   1. Write vulkan/<name>.comp (GLSL 450, compute). vulkan/CMakeLists.txt compiles every *.comp
 *      with glslc (--target-env=vulkan1.2, -O) at build time and embeds the SPIR-V in the plugin
 *      as a uint32_t array registered under the file's stem, "<name>".
 *   2. Several variants of one source: put lines `//! variant <suffix> <glslc args>` at the top,
 *      e.g. `//! variant f16 -DSTORAGE16=1`. Each becomes a shader "<name>_<suffix>"; a source
 *      with variant lines gets only those (add `//! variant - ` for a plain "<name>" too).
 *      Variants exist because a module that declares a capability the device lacks (16-bit
 *      storage, Int8, Float64, subgroup ops) is invalid even if the code path is never taken.
 *   3. At run time: vk_pipeline_get(dev, &desc, &pipe) with desc.shader = "<name>[_<suffix>]",
 *      the specialization constants (constant_id 0..n-1, each a 32-bit value), the number of
 *      storage-buffer bindings (set 0, bindings 0..n-1) and the push-constant bytes. Pipelines are
 *      built once per (shader, constants, subgroup size) and kept for the device's lifetime; the
 *      device's VkPipelineCache is saved to disk at close (pipeline.c).
 *   4. Record with vk_dispatch(stream, pipe, bindings, push, gx, gy, gz). Tensors become
 *      bindings with vk_tensor_binding(), which returns the first element's index relative to
 *      the bound (offset-aligned) range: pass it in the push constants.
 *
 * Descriptors: every dispatch allocates one descriptor set from the recording batch's pools
 * (plain Vulkan 1.1, no push-descriptor or buffer-device-address dependency, so every device
 * and the validation layer take the same path); pools are reset when the batch retires. Scalars
 * travel as push constants (at least 128 bytes everywhere).
 *
 * Ordering: a stream records into a command buffer ("batch"); vk_dispatch and the transfer
 * helpers put a global memory barrier (shader/transfer write -> shader/transfer read/write)
 * between consecutive commands, so ops need no barriers of their own. A batch is submitted at
 * stream sync, event record, when it holds too much staging memory, or explicitly with
 * vk_stream_flush. Completion is tracked with one timeline semaphore per stream.
 *
 * Thread safety: a stream is used by one thread at a time (trit.h); the device's queue and its
 * pipeline table are guarded by mutexes.
 */
#ifndef TRIT_VULKAN_VK_H
#define TRIT_VULKAN_VK_H

#define VK_NO_PROTOTYPES
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#include "coop_matrix.h"
#include "trit/trit_plugin.h"

/* --- Vulkan entry points, loaded at run time (no link-time dependency on the loader) --------- */

#define VK_GLOBAL_FUNCS(X)                                                                         \
    X(CreateInstance)                                                                              \
    X(EnumerateInstanceVersion)                                                                    \
    X(EnumerateInstanceExtensionProperties)                                                        \
    X(EnumerateInstanceLayerProperties)

#define VK_INSTANCE_FUNCS(X)                                                                       \
    X(DestroyInstance)                                                                             \
    X(EnumeratePhysicalDevices)                                                                    \
    X(GetPhysicalDeviceProperties)                                                                 \
    X(GetPhysicalDeviceProperties2)                                                                \
    X(GetPhysicalDeviceFeatures2)                                                                  \
    X(GetPhysicalDeviceMemoryProperties)                                                           \
    X(GetPhysicalDeviceQueueFamilyProperties)                                                      \
    X(EnumerateDeviceExtensionProperties)                                                          \
    X(CreateDevice)                                                                                \
    X(GetDeviceProcAddr)

#define VK_DEVICE_FUNCS(X)                                                                         \
    X(DestroyDevice)                                                                               \
    X(GetDeviceQueue)                                                                              \
    X(DeviceWaitIdle)                                                                              \
    X(QueueSubmit)                                                                                 \
    X(AllocateMemory)                                                                              \
    X(FreeMemory)                                                                                  \
    X(MapMemory)                                                                                   \
    X(UnmapMemory)                                                                                 \
    X(CreateBuffer)                                                                                \
    X(DestroyBuffer)                                                                               \
    X(GetBufferMemoryRequirements)                                                                 \
    X(BindBufferMemory)                                                                            \
    X(CreateCommandPool)                                                                           \
    X(DestroyCommandPool)                                                                          \
    X(AllocateCommandBuffers)                                                                      \
    X(FreeCommandBuffers)                                                                          \
    X(BeginCommandBuffer)                                                                          \
    X(EndCommandBuffer)                                                                            \
    X(ResetCommandBuffer)                                                                          \
    X(CmdCopyBuffer)                                                                               \
    X(CmdFillBuffer)                                                                               \
    X(CmdPipelineBarrier)                                                                          \
    X(CmdBindPipeline)                                                                             \
    X(CmdBindDescriptorSets)                                                                       \
    X(CmdPushConstants)                                                                            \
    X(CmdDispatch)                                                                                 \
    X(CreateSemaphore)                                                                             \
    X(DestroySemaphore)                                                                            \
    X(WaitSemaphores)                                                                              \
    X(GetSemaphoreCounterValue)                                                                    \
    X(CreateShaderModule)                                                                          \
    X(DestroyShaderModule)                                                                         \
    X(CreatePipelineCache)                                                                         \
    X(DestroyPipelineCache)                                                                        \
    X(GetPipelineCacheData)                                                                        \
    X(CreateComputePipelines)                                                                      \
    X(DestroyPipeline)                                                                             \
    X(CreatePipelineLayout)                                                                        \
    X(DestroyPipelineLayout)                                                                       \
    X(CreateDescriptorSetLayout)                                                                   \
    X(DestroyDescriptorSetLayout)                                                                  \
    X(CreateDescriptorPool)                                                                        \
    X(DestroyDescriptorPool)                                                                       \
    X(ResetDescriptorPool)                                                                         \
    X(AllocateDescriptorSets)                                                                      \
    X(UpdateDescriptorSets)

/* One table per plugin: `fn.CmdDispatch(...)` instead of vkCmdDispatch. */
typedef struct vk_fns {
    PFN_vkGetInstanceProcAddr GetInstanceProcAddr;
#define VK_FN_MEMBER(name) PFN_vk##name name;
    VK_GLOBAL_FUNCS(VK_FN_MEMBER)
    VK_INSTANCE_FUNCS(VK_FN_MEMBER)
    VK_DEVICE_FUNCS(VK_FN_MEMBER)
#undef VK_FN_MEMBER
    /* Instance extension (validation only; NULL otherwise). */
    PFN_vkCreateDebugUtilsMessengerEXT CreateDebugUtilsMessengerEXT;
    PFN_vkDestroyDebugUtilsMessengerEXT DestroyDebugUtilsMessengerEXT;
    /* VK_NV_cooperative_matrix's query (NULL when the loader lacks it). */
    PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV
        GetPhysicalDeviceCooperativeMatrixPropertiesNV;
} vk_fns;

/* --- plugin and device ---------------------------------------------------------------------- */

enum {
    VK_MAX_BINDINGS = 12, /* storage buffers per dispatch */
    VK_MAX_SPEC = 16,     /* specialization constants per pipeline */
    VK_MAX_PUSH = 128,    /* push-constant bytes (the guaranteed minimum) */
};

/* Features chosen at device creation. Each is on only when the device has it and the backend
 * option does not force it off ("vulkan.fp16=off", "vulkan.int8=off", "vulkan.subgroups=off",
 * "vulkan.int_dot=off", "vulkan.coop_matrix=off"). Shaders that need one have a variant without. */
typedef struct vk_features {
    int fp16;         /* shaderFloat16 + storageBuffer16BitAccess */
    int int8;         /* shaderInt8 + storageBuffer8BitAccess */
    int fp64;         /* shaderFloat64 (exact RMSNorm / quantization scale; see gemv.c) */
    int subgroups;    /* basic + arithmetic + shuffle in compute, and subgroup size control with
                         computeFullSubgroups, so a pipeline can pin its subgroup size */
    int int_dot;      /* VK_KHR_shader_integer_dot_product (core 1.3) with int8 above */
    int int_dot_fast; /* ... and 4x8-bit packed signed dot products are accelerated */
    int coop_matrix;  /* VK_NV_cooperative_matrix enabled: attention_coop.comp runs on tensor
                         cores (decided by vk_coop_decide, coop_matrix.h; see `coop` below) */
} vk_features;

typedef struct vk_plugin vk_plugin;

typedef struct vk_pipeline vk_pipeline;
typedef struct vk_stream vk_stream;

typedef struct vk_device {
    vk_plugin *plugin;
    const trit_plugin_host *host;
    const vk_fns *fn; /* the plugin's table, with this device's functions filled in */
    vk_fns fns;       /* storage for the above (device-level pointers are per VkDevice) */
    uint32_t index;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t queue_family;
    pthread_mutex_t queue_lock; /* vkQueueSubmit needs external synchronization */

    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem_props;
    /* Property flags asked of memory types (memory.c picks per buffer from its type bits). */
    VkMemoryPropertyFlags mem_device;  /* DEVICE_LOCAL */
    VkMemoryPropertyFlags mem_staging; /* HOST_VISIBLE | HOST_COHERENT (+ CACHED if offered) */
    int uma; /* device-local memory is host-visible (integrated GPU, lavapipe) */
    uint64_t memory_bytes;

    /* Limits, some lowered by options for testing ("vulkan.max_buffer_range=<bytes>"). */
    uint64_t max_range;    /* maxStorageBufferRange: the most one binding may cover */
    uint64_t max_alloc;    /* maxMemoryAllocationSize (and maxBufferSize when known) */
    uint64_t offset_align; /* minStorageBufferOffsetAlignment */
    uint32_t max_shared;   /* maxComputeSharedMemorySize, bytes */
    uint32_t max_wg_invocations;
    uint32_t max_wg_size[3];
    uint32_t max_wg_count[3];
    uint32_t subgroup_size; /* default subgroup size (0 when subgroups are off) */
    uint32_t min_subgroup, max_subgroup;
    vk_features f;
    /* Cooperative-matrix attention: the configuration (coop.m == 0: off; coop.emulated: forced
     * with vulkan.coop_matrix=emulate, without the extension) and, when off, why. */
    vk_coop_config coop;
    char coop_reason[128];
    /* Set (atomically, once) when the driver refused to build attention_coop.comp: the path is
     * then off for the device for good and attention.comp runs (attention.c). */
    int coop_failed;
    /* Testing (vulkan.coop_matrix=emulate...-reject): the emulated kernel's pipeline is asked
     * with VK_PIPELINE_CREATE_FAIL_ON_PIPELINE_COMPILE_REQUIRED_BIT, so the driver refuses it,
     * and attention.c treats the refusal as it would the real kernel's. */
    int coop_reject;
    char name[128];
    char driver[64];

    /* Pipelines (pipeline.c). */
    pthread_mutex_t pipe_lock;
    VkPipelineCache cache;
    vk_pipeline *pipelines;      /* list */
    char cache_path[1024];       /* "" when the cache is not persisted */
    uint64_t cache_loaded_bytes; /* bytes of pipeline cache accepted from disk (0: none) */

    /* gemv.c: one bit per GEMV shader-variant pair already logged (atomic). */
    uint64_t gemv_variants_logged;
    /* attention.c: one bit per (shader, head dim) choice already logged (atomic). */
    uint64_t attention_paths_logged;

    /* Deferred destruction (memory.c): the device's live streams and the objects waiting for
     * work recorded on them. Guarded by life_lock; `garbage` is also peeked atomically. */
    pthread_mutex_t life_lock;
    vk_stream *streams;
    struct vk_garbage *garbage;
} vk_device;

/* --- buffers (memory.c) --------------------------------------------------------------------- */

/* A device-local buffer: what a trit_buffer of this plugin is, and what weights live in. */
typedef struct vk_buffer {
    VkBuffer buffer;
    VkDeviceMemory memory;
    uint64_t bytes;
} vk_buffer;

/* Creates a device-local storage buffer (also a transfer source and destination). `bytes` above
 * max_alloc is TRIT_ERROR_OUT_OF_MEMORY with a sentence; callers that can split (weights) do. */
trit_status vk_buffer_create(vk_device *dev, uint64_t bytes, vk_buffer **out_buffer);
/* Safe while work still uses the buffer: see vk_device_defer. */
void vk_buffer_destroy(vk_device *dev, vk_buffer *buffer);

/* Runs destroy(dev, object) once no work recorded so far on any stream of the device can still
 * use the object: at once when every stream's recorded work has completed (the usual case, one
 * atomic load per stream), else when the batches holding that work have completed (checked at
 * stream submits and syncs, buffer creation, stream destruction and device close). trit.h asks
 * callers not to free what pending work uses; this keeps a caller who does from corrupting memory
 * (OpenCL defers the release the same way, CUDA's cudaFree synchronizes). Work recorded later can
 * not use the object, so it does not delay it. */
void vk_device_defer(vk_device *dev, void (*destroy)(vk_device *, void *), void *object);
/* Destroys the deferred objects whose work has completed; every one with `all` (device close,
 * after vkDeviceWaitIdle). */
void vk_device_collect(vk_device *dev, int all);

/* --- streams (memory.c) --------------------------------------------------------------------- */

trit_status vk_stream_create(vk_device *dev, vk_stream **out_stream);
void vk_stream_destroy(vk_stream *s); /* waits for pending work */
vk_device *vk_stream_device(const vk_stream *s);
/* Submits what has been recorded (no wait). */
trit_status vk_stream_flush(vk_stream *s);
/* Submits and waits; completes pending downloads. Reports the first error of the stream. */
trit_status vk_stream_sync(vk_stream *s);

/* Events (plugin.c): submit the recorded batch so that it also signals `sem` to `value`; make
 * the next submitted batch wait for `sem` to reach `value`. */
trit_status vk_stream_signal(vk_stream *s, VkSemaphore sem, uint64_t value);
trit_status vk_stream_wait(vk_stream *s, VkSemaphore sem, uint64_t value);

/* Enqueued transfers. Host memory is copied into staging at enqueue for uploads; downloads land
 * in `dst` at vk_stream_sync. */
trit_status vk_stream_upload(vk_stream *s, vk_buffer *dst, uint64_t offset, const void *src,
                             uint64_t bytes);
trit_status vk_stream_download(vk_stream *s, vk_buffer *src, uint64_t offset, void *dst,
                               uint64_t bytes);
trit_status vk_stream_copy(vk_stream *s, vk_buffer *src, uint64_t src_offset, vk_buffer *dst,
                           uint64_t dst_offset, uint64_t bytes);
trit_status vk_stream_fill(vk_stream *s, vk_buffer *dst, uint64_t offset, uint8_t value,
                           uint64_t bytes);

/* One storage-buffer binding. */
typedef struct vk_binding {
    VkBuffer buffer;
    VkDeviceSize offset; /* multiple of offset_align */
    VkDeviceSize range;  /* <= max_range */
} vk_binding;

/* Device-local scratch memory that lives until the recording batch retires (for partial
 * results of multi-pass ops). `bytes` is rounded up to 16; at most max_range. */
trit_status vk_stream_scratch(vk_stream *s, uint64_t bytes, vk_binding *out_binding);
/* Copies `bytes` of host data (`src` is read before the call returns) into host-visible memory
 * of the recording batch, readable by later dispatches of the stream as a storage buffer until
 * the batch retires, and returns its binding (offset a multiple of offset_align, range `bytes`
 * rounded up to 16, at most max_range). For small per-call tables: work lists, block tables,
 * ALiBi slopes, sinks, RoPE frequencies. No copy command is recorded. */
trit_status vk_stream_upload_scratch(vk_stream *s, const void *src, uint64_t bytes,
                                     vk_binding *out_binding);

/* Binds the elements a tensor view reaches: the binding starts at the tensor's offset aligned
 * down to offset_align and ends after its last element (rounded up to 4 bytes, within the
 * buffer); *out_first is the index, in elements of the tensor's dtype, of element 0 inside the
 * binding. A view wider than max_range is TRIT_ERROR_UNSUPPORTED with a sentence. */
trit_status vk_tensor_binding(vk_device *dev, const trit_plugin_tensor *t, vk_binding *out,
                              uint32_t *out_first);
/* The whole of a buffer, or of [offset, offset + bytes) (offset must be aligned). */
vk_binding vk_buffer_binding(const vk_buffer *b, uint64_t offset, uint64_t bytes);

/* --- pipelines (pipeline.c) ----------------------------------------------------------------- */

typedef struct vk_pipeline_desc {
    const char *shader; /* embedded shader name: file stem [+ "_" variant suffix] */
    uint32_t spec[VK_MAX_SPEC];
    uint32_t n_spec;     /* constant_id 0 .. n_spec-1 */
    uint32_t n_bindings; /* storage buffers at set 0, bindings 0 .. n_bindings-1 */
    uint32_t push_bytes; /* push-constant block size (multiple of 4, <= VK_MAX_PUSH) */
    /* Required subgroup size (VK_EXT_subgroup_size_control / 1.3), with full subgroups; 0 for
     * the driver's choice. Only when dev->f.subgroups. */
    uint32_t subgroup_size;
    /* Testing: ask the driver to refuse to compile it (VK_PIPELINE_CREATE_FAIL_ON_PIPELINE_
     * COMPILE_REQUIRED_BIT; needs pipelineCreationCacheControl enabled). */
    int refuse_build;
} vk_pipeline_desc;

struct vk_pipeline {
    vk_pipeline *next;
    vk_pipeline_desc desc;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout layout;
    VkPipeline pipeline;
};

/* Finds or builds the pipeline. Thread-safe. The result lives until the device closes. */
trit_status vk_pipeline_get(vk_device *dev, const vk_pipeline_desc *desc,
                            const vk_pipeline **out_pipeline);
/* The same; on failure also writes the reason ("building pipeline <name>: <VkResult>") to `why`
 * (`size` bytes), for callers that survive the failure and log it. */
trit_status vk_pipeline_get_why(vk_device *dev, const vk_pipeline_desc *desc,
                                const vk_pipeline **out_pipeline, char *why, size_t size);
/* The embedded SPIR-V of a shader, or NULL (generated by CMake: vk_shaders.c). */
const uint32_t *vk_shader_spirv(const char *name, size_t *out_bytes);

/* Pipeline cache (pipeline.c), called by plugin.c at device open / close. */
void vk_pipeline_cache_open(vk_device *dev);
void vk_pipelines_destroy(vk_device *dev); /* saves the cache, destroys every pipeline */

/* Records a dispatch of `pipe` with `bindings` (pipe->desc.n_bindings of them) and the push
 * constants (pipe->desc.push_bytes), after a barrier on earlier commands of the stream. Group
 * counts above the device's limits are TRIT_ERROR_UNSUPPORTED. */
trit_status vk_dispatch(vk_stream *s, const vk_pipeline *pipe, const vk_binding *bindings,
                        const void *push, uint32_t gx, uint32_t gy, uint32_t gz);

/* --- errors, logging, options (plugin.c) ---------------------------------------------------- */

/* Sets the thread's error sentence through the host (printf-style). */
void vk_set_error(const vk_device *dev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vk_log(const vk_device *dev, trit_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* VkResult -> trit_status: device lost -> TRIT_ERROR_DEVICE_LOST, out of host/device memory ->
 * TRIT_ERROR_OUT_OF_MEMORY, anything else -> TRIT_ERROR_BACKEND. */
trit_status vk_status(VkResult r);
const char *vk_result_name(VkResult r);
/* For VK_SUCCESS returns TRIT_OK; else sets "<what>: <VK_ERROR_NAME>" and returns vk_status(r). */
trit_status vk_check(const vk_device *dev, VkResult r, const char *what);
/* Validation-layer errors and warnings counted so far (0 without "vulkan.validation=on"); the
 * first message is copied to `first` when non-NULL. Streams turn a new one into an error. */
uint64_t vk_validation_messages(const vk_device *dev, char *first, size_t size);
/* The value of backend option "vulkan.<key>" / TRIT_VULKAN_<KEY>, or NULL. */
const char *vk_option(const trit_plugin_host *host, const char *key);

/* --- ops ------------------------------------------------------------------------------------ */

/* Support queries return NULL when the device runs the op, else the reason. */

/* gemv.c */
const char *vk_gemv_unsupported(const vk_device *dev, const trit_op_desc *desc);
trit_status vk_ternary_create(vk_device *dev, const trit_ternary_host *w, void **out_ternary,
                              uint64_t *out_device_bytes);
void vk_ternary_destroy(vk_device *dev, void *ternary);
trit_status vk_gemv(vk_stream *s, const trit_plugin_gemv_args *args);

/* attention.c (VK-B) */
const char *vk_attention_unsupported(const vk_device *dev, const trit_op_desc *desc);
trit_status vk_attention(vk_stream *s, const trit_plugin_attention_args *args);

/* rope.c (VK-B) */
const char *vk_rope_unsupported(const vk_device *dev, const trit_op_desc *desc);
trit_status vk_rope_kv_append(vk_stream *s, const trit_plugin_rope_args *args);

#endif /* TRIT_VULKAN_VK_H */
