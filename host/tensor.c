/*
 * tensor.c — dtypes, tensor views and the checks every op runs on its tensors.
 */
#include <string.h>

#include "internal.h"

const char *trit_dtype_name(trit_dtype dtype)
{
    switch (dtype) {
    case TRIT_DTYPE_F32: return "f32";
    case TRIT_DTYPE_F16: return "f16";
    case TRIT_DTYPE_BF16: return "bf16";
    case TRIT_DTYPE_I8: return "i8";
    case TRIT_DTYPE_I32: return "i32";
    }
    return "unknown-dtype";
}

size_t trit_dtype_size(trit_dtype dtype)
{
    switch (dtype) {
    case TRIT_DTYPE_F32: return 4;
    case TRIT_DTYPE_F16: return 2;
    case TRIT_DTYPE_BF16: return 2;
    case TRIT_DTYPE_I8: return 1;
    case TRIT_DTYPE_I32: return 4;
    }
    return 0;
}

/* Checks a view's own consistency: dtype, rank, extents, strides, bounds, overflow. */
static trit_status check_view(const char *op, const char *what, const trit_buffer *buffer,
                              uint64_t offset, trit_dtype dtype, uint32_t rank,
                              const int64_t *shape, const int64_t *strides)
{
    size_t es = trit_dtype_size(dtype);
    if (es == 0)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s has unknown dtype %d", op, what,
                         (int)dtype);
    if (rank < 1 || rank > TRIT_MAX_RANK)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s has rank %u (1..%d allowed)", op,
                         what, rank, TRIT_MAX_RANK);
    if (offset % es != 0)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "%s: %s offset %llu is not a multiple of its element size %zu", op, what,
                         (unsigned long long)offset, es);
    uint64_t last = 0; /* index of the last element, in elements */
    for (uint32_t d = 0; d < rank; d++) {
        if (shape[d] < 1)
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s has extent %lld in dim %u", op,
                             what, (long long)shape[d], d);
        if (strides[d] < 0)
            return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s has negative stride in dim %u",
                             op, what, d);
        uint64_t span;
        if (!host_mul_u64((uint64_t)(shape[d] - 1), (uint64_t)strides[d], &span) ||
            !host_add_u64(last, span, &last))
            return trit_fail(TRIT_ERROR_OVERFLOW, "%s: %s shape and strides overflow 64 bits", op,
                             what);
    }
    uint64_t end;
    if (!host_add_u64(last, 1, &end) || !host_mul_u64(end, es, &end) ||
        !host_add_u64(end, offset, &end))
        return trit_fail(TRIT_ERROR_OVERFLOW, "%s: %s extent overflows 64 bits", op, what);
    if (end > buffer->bytes)
        return trit_fail(TRIT_ERROR_OUT_OF_BOUNDS, "%s: %s reaches byte %llu of a %llu-byte buffer",
                         op, what, (unsigned long long)end, (unsigned long long)buffer->bytes);
    return TRIT_OK;
}

trit_status trit_tensor_make(trit_buffer *buffer, uint64_t offset, trit_dtype dtype, uint32_t rank,
                             const int64_t *shape, const int64_t *strides, trit_tensor *out_tensor)
{
    trit_clear_error();
    if (!buffer || !shape || !out_tensor)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "tensor_make: buffer, shape or out_tensor is NULL");
    if (rank < 1 || rank > TRIT_MAX_RANK)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "tensor_make: rank %u (1..%d allowed)", rank,
                         TRIT_MAX_RANK);
    trit_tensor t;
    memset(&t, 0, sizeof(t));
    t.buffer = buffer;
    t.offset = offset;
    t.dtype = dtype;
    t.rank = rank;
    for (uint32_t d = 0; d < rank; d++)
        t.shape[d] = shape[d];
    if (strides) {
        for (uint32_t d = 0; d < rank; d++)
            t.strides[d] = strides[d];
    } else {
        uint64_t stride = 1;
        for (uint32_t d = rank; d-- > 0;) {
            if (shape[d] < 1)
                return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "tensor_make: extent %lld in dim %u",
                                 (long long)shape[d], d);
            if (stride > (uint64_t)INT64_MAX)
                return trit_fail(TRIT_ERROR_OVERFLOW, "tensor_make: shape overflows 64 bits");
            t.strides[d] = (int64_t)stride;
            if (!host_mul_u64(stride, (uint64_t)shape[d], &stride))
                return trit_fail(TRIT_ERROR_OVERFLOW, "tensor_make: shape overflows 64 bits");
        }
    }
    trit_status st =
        check_view("tensor_make", "tensor", buffer, offset, dtype, rank, t.shape, t.strides);
    if (st != TRIT_OK)
        return st;
    *out_tensor = t;
    return TRIT_OK;
}

trit_status host_check_tensor(const char *op, const char *what, const trit_tensor *t)
{
    if (!t)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", op, what);
    if (!t->buffer)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "%s: %s has no buffer", op, what);
    trit_status st =
        check_view(op, what, t->buffer, t->offset, t->dtype, t->rank, t->shape, t->strides);
    if (st != TRIT_OK)
        return st;
    if (t->strides[t->rank - 1] != 1 && t->shape[t->rank - 1] > 1)
        return trit_fail(TRIT_ERROR_UNSUPPORTED,
                         "%s: %s must be contiguous in its last dim (stride %lld)", op, what,
                         (long long)t->strides[t->rank - 1]);
    return TRIT_OK;
}

void host_plugin_tensor(const trit_tensor *t, trit_plugin_tensor *out)
{
    memset(out, 0, sizeof(*out));
    out->buffer = t->buffer->state;
    out->offset = t->offset;
    out->dtype = t->dtype;
    out->rank = t->rank;
    for (uint32_t d = 0; d < t->rank; d++) {
        out->shape[d] = t->shape[d];
        out->strides[d] = t->strides[d];
    }
    out->strides[t->rank - 1] = 1;
}

void host_tensor_span(const trit_tensor *t, uint64_t *begin, uint64_t *end)
{
    uint64_t last = 0;
    for (uint32_t d = 0; d < t->rank; d++)
        last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->strides[d];
    *begin = t->offset;
    *end = t->offset + (last + 1) * trit_dtype_size(t->dtype);
}

int host_tensors_overlap(const trit_tensor *a, const trit_tensor *b)
{
    if (a->buffer != b->buffer)
        return 0;
    uint64_t ab, ae, bb, be;
    host_tensor_span(a, &ab, &ae);
    host_tensor_span(b, &bb, &be);
    return ab < be && bb < ae;
}

int host_tensors_same(const trit_tensor *a, const trit_tensor *b)
{
    if (a->buffer != b->buffer || a->offset != b->offset || a->dtype != b->dtype ||
        a->rank != b->rank)
        return 0;
    for (uint32_t d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d] || (a->shape[d] > 1 && a->strides[d] != b->strides[d]))
            return 0;
    return 1;
}
