/*
 * ocl.h — internals of the OpenCL plugin shared by its files (plugin.c, memory.c, program.c,
 * gemv.c, attention.c, rope.c). Nothing here crosses the plugin boundary.
 *
 * How an op file gets its kernels
 *  - Every opencl/<name>.cl is embedded at build time: CMake turns it into a C string named
 *    ocl_src_<name> and lists it in the table ocl_sources[] (generated ocl_sources.c). Adding a
 *    .cl file is all it takes; nothing to register by hand.
 *  - ocl_kernel_get(dev, "attention", NULL, "attn_decode", &k) returns the kernel attn_decode of
 *    program "attention". Programs are built lazily, once per device and option string, with the
 *    device's build options (ocl_device_build_options: capability macros below) plus the
 *    caller's `extra_options` (e.g. "-DHEAD_DIM=128"); binaries are cached on disk
 *    (program.c). The returned cl_kernel belongs to the device: do not release it.
 *  - A cl_kernel's arguments are shared state, so set them and enqueue in one step with
 *    ocl_enqueue (it holds the device's enqueue lock); never call clSetKernelArg directly.
 *
 * Macros every program is built with (0 or 1 unless said otherwise):
 *    TRIT_HAS_FP16        cl_khr_fp16 usable (option opencl.fp16=off forces 0); when 0, f16
 *                         data is read/written with vload_half / vstore_half only
 *    TRIT_HAS_SUBGROUPS   cl_khr_subgroups or cl_intel_subgroups (opencl.subgroups=off)
 *    TRIT_SUBGROUP_SIZE   the device's subgroup width when known, else 0
 *    TRIT_HAS_INT_DOT     cl_khr_integer_dot_product with packed 4x8-bit (opencl.int_dot=off)
 *    TRIT_HAS_FP64        cl_khr_fp64 (opencl.fp64=off); the pragma is already enabled when 1
 *    TRIT_CORRECT_DIV     1 when built with -cl-fp32-correctly-rounded-divide-sqrt
 *  and -cl-fp32-correctly-rounded-divide-sqrt when CL_DEVICE_SINGLE_FP_CONFIG allows it
 *  (dev->correct_div_sqrt): kernels that must reproduce the host's f32 `/` and sqrtf rely on it.
 *
 * Thread safety: a device may be used from several threads (its kernel table and enqueues are
 * locked); a stream by one thread at a time, as trit.h says.
 */
#ifndef TRIT_OPENCL_OCL_H
#define TRIT_OPENCL_OCL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "trit/trit_plugin.h"

/* One embedded .cl source (generated table, terminated by {NULL, NULL}). */
typedef struct ocl_source {
    const char *name; /* file name without .cl: "gemv", "attention" */
    const char *text;
} ocl_source;
extern const ocl_source ocl_sources[];

typedef struct ocl_program ocl_program; /* program.c: one built program (name + options) */

typedef struct ocl_device {
    const trit_plugin_host *host;
    uint32_t index; /* among this plugin's devices */
    cl_platform_id platform;
    cl_device_id id;
    cl_context context;
    cl_command_queue queue; /* internal in-order queue for blocking work (ternary_create) */

    char name[128];
    char vendor[64];
    char driver[64];  /* CL_DRIVER_VERSION */
    char version[64]; /* CL_DEVICE_VERSION ("OpenCL 3.0 PoCL ...") */
    char platform_name[64];
    int cl_major, cl_minor; /* from CL_DEVICE_VERSION */

    uint64_t global_mem; /* CL_DEVICE_GLOBAL_MEM_SIZE */
    uint64_t max_alloc;  /* CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    uint64_t local_mem;  /* CL_DEVICE_LOCAL_MEM_SIZE */
    size_t max_wg;       /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    uint32_t compute_units;
    uint32_t mem_align; /* CL_DEVICE_MEM_BASE_ADDR_ALIGN, in bytes */
    int unified_memory; /* CL_DEVICE_HOST_UNIFIED_MEMORY or a CPU device */
    int is_cpu;         /* CL_DEVICE_TYPE_CPU */

    /* Capabilities after the options (opencl.fp16/subgroups/int_dot=off) were applied. */
    int has_fp16;
    int has_subgroups;
    uint32_t subgroup_size; /* 0 if unknown */
    int has_int_dot;
    int has_fp64;
    int correct_div_sqrt; /* CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT (opencl.correct_div=off) */
    int little_endian;

    const char *cache_dir; /* kernel binary cache; NULL or "" disables it (owned by the plugin) */

    pthread_mutex_t lock;         /* programs and kernel table */
    pthread_mutex_t enqueue_lock; /* clSetKernelArg + clEnqueueNDRangeKernel pairs */
    ocl_program *programs;        /* built programs, with their kernels */
    char build_options[256];      /* capability part of the options (ocl_device_build_options) */
} ocl_device;

typedef struct ocl_buffer {
    cl_mem mem;
    uint64_t bytes;
} ocl_buffer;

/* A stream is an in-order command queue, plus scratch memory its ops may use: the queue is in
 * order, so one op's scratch is free again for the next op on the same stream. */
typedef struct ocl_stream {
    ocl_device *dev;
    cl_command_queue queue;
    cl_mem scratch;
    uint64_t scratch_bytes;
} ocl_stream;

/* At least `bytes` of device scratch owned by the stream (grown on demand, contents undefined).
 * Valid until the next call on this stream; never released while queued work uses it. */
trit_status ocl_stream_scratch(ocl_stream *s, uint64_t bytes, cl_mem *out_mem);

/* An event is a marker enqueued on a stream; NULL ev: never recorded (complete). */
typedef struct ocl_event {
    ocl_device *dev;
    cl_event ev;
} ocl_event;

/* The cl_mem behind a plugin tensor. Kernels take the tensor's offset as an element-offset
 * argument (t->offset / dtype size) rather than a sub-buffer, which would need aligned offsets. */
static inline cl_mem ocl_tensor_mem(const trit_plugin_tensor *t)
{
    return ((const ocl_buffer *)t->buffer)->mem;
}

/* --- errors and logging (memory.c) ---------------------------------------------------------- */

/* Sets the thread's error sentence through the host (printf-style). */
void ocl_set_error(const ocl_device *dev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Logs through the host's callback (printf-style). */
void ocl_log(const ocl_device *dev, trit_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The name of a cl error code ("CL_OUT_OF_RESOURCES"); "unknown OpenCL error" otherwise. */
const char *ocl_error_name(cl_int err);
/* The trit status for a failed cl call: allocation failures are TRIT_ERROR_OUT_OF_MEMORY,
 * CL_DEVICE_NOT_AVAILABLE is TRIT_ERROR_DEVICE_LOST, others TRIT_ERROR_BACKEND. */
trit_status ocl_status(cl_int err);
/* Records "<what, printf-style>: CL_XXX (-n)" as the error and returns ocl_status(err).
 * Use as: if (err != CL_SUCCESS) return ocl_fail(dev, err, "clEnqueueReadBuffer"); */
trit_status ocl_fail(const ocl_device *dev, cl_int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- programs and kernels (program.c) ------------------------------------------------------- */

/* The kernel `kernel` of embedded program `program`, building the program on first use for
 * this device and `extra_options` (NULL or "" for none). The kernel stays valid until the
 * device is closed. A build failure returns TRIT_ERROR_BACKEND with the build log's first error
 * in the sentence; an unknown program or kernel TRIT_ERROR_INTERNAL. */
trit_status ocl_kernel_get(ocl_device *dev, const char *program, const char *extra_options,
                           const char *kernel, cl_kernel *out_kernel);
/* Fills dev->build_options from the capabilities (called by init and after options change). */
void ocl_device_build_options(ocl_device *dev);
/* Releases every program and kernel of the device. */
void ocl_programs_release(ocl_device *dev);

/* One kernel argument: `size` bytes at `value`; value NULL with size > 0 is __local memory. */
typedef struct ocl_arg {
    size_t size;
    const void *value;
} ocl_arg;
#define OCL_ARG(v) ((ocl_arg){sizeof(v), &(v)})
#define OCL_LOCAL(bytes) ((ocl_arg){(size_t)(bytes), NULL})

/* Sets the arguments and enqueues `kernel` on the stream's queue (dims 1..3; `local` may be
 * NULL). `what` names the op for the error sentence ("gemv"). Holds the device's enqueue lock. */
trit_status ocl_enqueue(ocl_stream *s, const char *what, cl_kernel kernel, cl_uint dims,
                        const size_t *global, const size_t *local, const ocl_arg *args,
                        cl_uint nargs);
/* ocl_enqueue with the arguments listed inline:
 *   OCL_ENQUEUE(s, "gemv", k, 1, global, local, OCL_ARG(mem), OCL_ARG(n), OCL_LOCAL(1024)); */
#define OCL_ENQUEUE(s, what, kernel, dims, global, local, ...)                                     \
    ocl_enqueue((s), (what), (kernel), (dims), (global), (local), (const ocl_arg[]){__VA_ARGS__},  \
                (cl_uint)(sizeof((ocl_arg[]){__VA_ARGS__}) / sizeof(ocl_arg)))

/* Rounds `n` up to a multiple of `m` (m > 0), for global sizes. */
static inline size_t ocl_round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/* --- memory.c: the vtable's memory slots ---------------------------------------------------- */

trit_status ocl_buffer_alloc(void *device, uint64_t bytes, void **out_buffer);
void ocl_buffer_free(void *device, void *buffer);
trit_status ocl_buffer_upload(void *stream, void *buffer, uint64_t offset, const void *src,
                              uint64_t bytes);
trit_status ocl_buffer_download(void *stream, void *buffer, uint64_t offset, void *dst,
                                uint64_t bytes);
trit_status ocl_buffer_copy(void *stream, void *src, uint64_t src_offset, void *dst,
                            uint64_t dst_offset, uint64_t bytes);
trit_status ocl_buffer_fill(void *stream, void *buffer, uint64_t offset, uint8_t value,
                            uint64_t bytes);
/* A device buffer of `bytes` filled from `src` with a blocking write on the internal queue
 * (for ternary_create and other setup work). Checks max_alloc with a clear sentence. */
trit_status ocl_buffer_create_from(ocl_device *dev, uint64_t bytes, const void *src,
                                   cl_mem *out_mem);

/* Support queries return NULL when the device runs the op, else the reason. */

/* gemv.c: ternary matrices in the OpenCL layout, and the fused GEMV (plain and gated). */
const char *ocl_gemv_unsupported(const ocl_device *dev, const trit_op_desc *desc);
trit_status ocl_ternary_create(ocl_device *dev, const trit_ternary_host *w, void **out_ternary,
                               uint64_t *out_device_bytes);
void ocl_ternary_destroy(ocl_device *dev, void *ternary);
trit_status ocl_gemv(ocl_stream *s, const trit_plugin_gemv_args *args);

/* attention.c / rope.c. CMake defines OCL_HAVE_ATTENTION / OCL_HAVE_ROPE when those files
 * exist; without them plugin.c reports the ops as "not implemented yet". */
const char *ocl_attention_unsupported(const ocl_device *dev, const trit_op_desc *desc);
trit_status ocl_attention(ocl_stream *s, const trit_plugin_attention_args *args);
const char *ocl_rope_unsupported(const ocl_device *dev, const trit_op_desc *desc);
trit_status ocl_rope_kv_append(ocl_stream *s, const trit_plugin_rope_args *args);

#endif /* TRIT_OPENCL_OCL_H */
