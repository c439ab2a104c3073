/*
 * memory.c — OpenCL plugin buffers, transfers, and the error helpers every file uses.
 *
 * Buffers are plain cl_mem objects. The driver is asked for nothing it will refuse later:
 * a size above CL_DEVICE_MAX_MEM_ALLOC_SIZE is rejected here with a sentence naming the limit,
 * because many drivers accept it and fail only at first use. Allocation is lazy on most
 * drivers, so a fill-free buffer could still fail at first use; clCreateBuffer's own errors
 * and CL_MEM_OBJECT_ALLOCATION_FAILURE from a later enqueue both map to OUT_OF_MEMORY.
 * Transfers are non-blocking enqueues on the stream's in-order queue (trit.h requires the host
 * memory to stay valid until the stream is synced).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl.h"

void ocl_set_error(const ocl_device *dev, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (dev && dev->host && dev->host->set_error)
        dev->host->set_error(dev->host->user, msg);
}

void ocl_log(const ocl_device *dev, trit_log_level level, const char *fmt, ...)
{
    if (!dev || !dev->host || !dev->host->log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    dev->host->log(dev->host->user, level, msg);
}

const char *ocl_error_name(cl_int err)
{
    switch (err) {
#define E(x)                                                                                       \
    case x: return #x
        E(CL_SUCCESS);
        E(CL_DEVICE_NOT_FOUND);
        E(CL_DEVICE_NOT_AVAILABLE);
        E(CL_COMPILER_NOT_AVAILABLE);
        E(CL_MEM_OBJECT_ALLOCATION_FAILURE);
        E(CL_OUT_OF_RESOURCES);
        E(CL_OUT_OF_HOST_MEMORY);
        E(CL_PROFILING_INFO_NOT_AVAILABLE);
        E(CL_MEM_COPY_OVERLAP);
        E(CL_IMAGE_FORMAT_MISMATCH);
        E(CL_IMAGE_FORMAT_NOT_SUPPORTED);
        E(CL_BUILD_PROGRAM_FAILURE);
        E(CL_MAP_FAILURE);
        E(CL_MISALIGNED_SUB_BUFFER_OFFSET);
        E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
        E(CL_COMPILE_PROGRAM_FAILURE);
        E(CL_LINKER_NOT_AVAILABLE);
        E(CL_LINK_PROGRAM_FAILURE);
        E(CL_DEVICE_PARTITION_FAILED);
        E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE);
        E(CL_INVALID_VALUE);
        E(CL_INVALID_DEVICE_TYPE);
        E(CL_INVALID_PLATFORM);
        E(CL_INVALID_DEVICE);
        E(CL_INVALID_CONTEXT);
        E(CL_INVALID_QUEUE_PROPERTIES);
        E(CL_INVALID_COMMAND_QUEUE);
        E(CL_INVALID_HOST_PTR);
        E(CL_INVALID_MEM_OBJECT);
        E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR);
        E(CL_INVALID_IMAGE_SIZE);
        E(CL_INVALID_SAMPLER);
        E(CL_INVALID_BINARY);
        E(CL_INVALID_BUILD_OPTIONS);
        E(CL_INVALID_PROGRAM);
        E(CL_INVALID_PROGRAM_EXECUTABLE);
        E(CL_INVALID_KERNEL_NAME);
        E(CL_INVALID_KERNEL_DEFINITION);
        E(CL_INVALID_KERNEL);
        E(CL_INVALID_ARG_INDEX);
        E(CL_INVALID_ARG_VALUE);
        E(CL_INVALID_ARG_SIZE);
        E(CL_INVALID_KERNEL_ARGS);
        E(CL_INVALID_WORK_DIMENSION);
        E(CL_INVALID_WORK_GROUP_SIZE);
        E(CL_INVALID_WORK_ITEM_SIZE);
        E(CL_INVALID_GLOBAL_OFFSET);
        E(CL_INVALID_EVENT_WAIT_LIST);
        E(CL_INVALID_EVENT);
        E(CL_INVALID_OPERATION);
        E(CL_INVALID_GL_OBJECT);
        E(CL_INVALID_BUFFER_SIZE);
        E(CL_INVALID_MIP_LEVEL);
        E(CL_INVALID_GLOBAL_WORK_SIZE);
        E(CL_INVALID_PROPERTY);
        E(CL_INVALID_IMAGE_DESCRIPTOR);
        E(CL_INVALID_COMPILER_OPTIONS);
        E(CL_INVALID_LINKER_OPTIONS);
        E(CL_INVALID_DEVICE_PARTITION_COUNT);
#undef E
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "unknown OpenCL error";
    }
}

trit_status ocl_status(cl_int err)
{
    switch (err) {
    case CL_SUCCESS: return TRIT_OK;
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_OUT_OF_HOST_MEMORY:
    case CL_INVALID_BUFFER_SIZE: return TRIT_ERROR_OUT_OF_MEMORY;
    case CL_DEVICE_NOT_AVAILABLE: return TRIT_ERROR_DEVICE_LOST;
    default: return TRIT_ERROR_BACKEND;
    }
}

trit_status ocl_fail(const ocl_device *dev, cl_int err, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    const char *hint = "";
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY)
        hint = " (out of device memory)";
    else if (err == CL_OUT_OF_RESOURCES)
        hint = " (the device ran out of resources; it may be out of memory)";
    ocl_set_error(dev, "%s: %s (%d)%s", what, ocl_error_name(err), (int)err, hint);
    return ocl_status(err);
}

static trit_status check_alloc_size(const ocl_device *dev, uint64_t bytes)
{
    if (bytes > dev->max_alloc) {
        ocl_set_error(dev,
                      "buffer of %llu bytes exceeds CL_DEVICE_MAX_MEM_ALLOC_SIZE "
                      "(%llu bytes, the largest single buffer this device allows)",
                      (unsigned long long)bytes, (unsigned long long)dev->max_alloc);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    if (bytes > (uint64_t)SIZE_MAX) {
        ocl_set_error(dev, "buffer of %llu bytes does not fit in size_t",
                      (unsigned long long)bytes);
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    return TRIT_OK;
}

trit_status ocl_buffer_alloc(void *device, uint64_t bytes, void **out_buffer)
{
    ocl_device *dev = device;
    trit_status st = check_alloc_size(dev, bytes);
    if (st != TRIT_OK)
        return st;
    ocl_buffer *b = malloc(sizeof(*b));
    if (!b) {
        ocl_set_error(dev, "out of host memory for a buffer record");
        return TRIT_ERROR_OUT_OF_MEMORY;
    }
    cl_int err;
    b->mem = clCreateBuffer(dev->context, CL_MEM_READ_WRITE, (size_t)bytes, NULL, &err);
    if (!b->mem || err != CL_SUCCESS) {
        free(b);
        if (err == CL_SUCCESS)
            err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        return ocl_fail(dev, err, "cannot allocate a buffer of %llu bytes",
                        (unsigned long long)bytes);
    }
    b->bytes = bytes;
    *out_buffer = b;
    return TRIT_OK;
}

void ocl_buffer_free(void *device, void *buffer)
{
    (void)device;
    ocl_buffer *b = buffer;
    if (!b)
        return;
    clReleaseMemObject(b->mem);
    free(b);
}

trit_status ocl_buffer_create_from(ocl_device *dev, uint64_t bytes, const void *src,
                                   cl_mem *out_mem)
{
    *out_mem = NULL;
    trit_status st = check_alloc_size(dev, bytes);
    if (st != TRIT_OK)
        return st;
    cl_int err;
    cl_mem mem = clCreateBuffer(dev->context, CL_MEM_READ_ONLY, (size_t)bytes, NULL, &err);
    if (!mem || err != CL_SUCCESS)
        return ocl_fail(dev, err == CL_SUCCESS ? CL_MEM_OBJECT_ALLOCATION_FAILURE : err,
                        "cannot allocate %llu bytes for a ternary matrix",
                        (unsigned long long)bytes);
    err = clEnqueueWriteBuffer(dev->queue, mem, CL_TRUE, 0, (size_t)bytes, src, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(mem);
        return ocl_fail(dev, err, "uploading %llu bytes of a ternary matrix",
                        (unsigned long long)bytes);
    }
    *out_mem = mem;
    return TRIT_OK;
}

trit_status ocl_buffer_upload(void *stream, void *buffer, uint64_t offset, const void *src,
                              uint64_t bytes)
{
    ocl_stream *s = stream;
    ocl_buffer *b = buffer;
    cl_int err = clEnqueueWriteBuffer(s->queue, b->mem, CL_FALSE, (size_t)offset, (size_t)bytes,
                                      src, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ocl_fail(s->dev, err, "upload of %llu bytes", (unsigned long long)bytes);
    return TRIT_OK;
}

trit_status ocl_buffer_download(void *stream, void *buffer, uint64_t offset, void *dst,
                                uint64_t bytes)
{
    ocl_stream *s = stream;
    ocl_buffer *b = buffer;
    cl_int err = clEnqueueReadBuffer(s->queue, b->mem, CL_FALSE, (size_t)offset, (size_t)bytes, dst,
                                     0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ocl_fail(s->dev, err, "download of %llu bytes", (unsigned long long)bytes);
    return TRIT_OK;
}

trit_status ocl_buffer_copy(void *stream, void *src, uint64_t src_offset, void *dst,
                            uint64_t dst_offset, uint64_t bytes)
{
    ocl_stream *s = stream;
    cl_int err =
        clEnqueueCopyBuffer(s->queue, ((ocl_buffer *)src)->mem, ((ocl_buffer *)dst)->mem,
                            (size_t)src_offset, (size_t)dst_offset, (size_t)bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ocl_fail(s->dev, err, "copy of %llu bytes", (unsigned long long)bytes);
    return TRIT_OK;
}

trit_status ocl_buffer_fill(void *stream, void *buffer, uint64_t offset, uint8_t value,
                            uint64_t bytes)
{
    ocl_stream *s = stream;
    cl_int err = clEnqueueFillBuffer(s->queue, ((ocl_buffer *)buffer)->mem, &value, 1,
                                     (size_t)offset, (size_t)bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return ocl_fail(s->dev, err, "fill of %llu bytes", (unsigned long long)bytes);
    return TRIT_OK;
}
