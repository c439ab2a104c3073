/*
 * error.c — status names and the per-thread error sentence.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

enum { ERROR_CAPACITY = 1024 };

static _Thread_local char last_error[ERROR_CAPACITY];

const char *trit_status_string(trit_status status)
{
    switch (status) {
    case TRIT_OK: return "TRIT_OK: success";
    case TRIT_ERROR_INVALID_ARGUMENT: return "TRIT_ERROR_INVALID_ARGUMENT: invalid argument";
    case TRIT_ERROR_SHAPE_MISMATCH:
        return "TRIT_ERROR_SHAPE_MISMATCH: tensor shapes do not fit together";
    case TRIT_ERROR_UNSUPPORTED: return "TRIT_ERROR_UNSUPPORTED: not supported by the device";
    case TRIT_ERROR_OUT_OF_MEMORY: return "TRIT_ERROR_OUT_OF_MEMORY: out of memory";
    case TRIT_ERROR_OUT_OF_BOUNDS:
        return "TRIT_ERROR_OUT_OF_BOUNDS: access past the end of a buffer";
    case TRIT_ERROR_WRONG_DEVICE:
        return "TRIT_ERROR_WRONG_DEVICE: object belongs to another device";
    case TRIT_ERROR_OVERFLOW: return "TRIT_ERROR_OVERFLOW: size overflows";
    case TRIT_ERROR_BAD_FORMAT: return "TRIT_ERROR_BAD_FORMAT: malformed data";
    case TRIT_ERROR_PLUGIN: return "TRIT_ERROR_PLUGIN: plugin failed";
    case TRIT_ERROR_NOT_FOUND: return "TRIT_ERROR_NOT_FOUND: not found";
    case TRIT_ERROR_BACKEND: return "TRIT_ERROR_BACKEND: driver error";
    case TRIT_ERROR_DEVICE_LOST: return "TRIT_ERROR_DEVICE_LOST: device lost";
    case TRIT_ERROR_INTERNAL: return "TRIT_ERROR_INTERNAL: internal error (a bug in trit)";
    }
    return "unknown trit_status";
}

const char *trit_last_error(void)
{
    return last_error;
}

static void set_error_v(const char *fmt, va_list ap)
{
    char tmp[ERROR_CAPACITY];
    vsnprintf(tmp, sizeof(tmp), fmt, ap); /* fmt may name last_error itself */
    memcpy(last_error, tmp, sizeof(tmp));
}

void trit_set_error(trit_status status, const char *fmt, ...)
{
    (void)status;
    va_list ap;
    va_start(ap, fmt);
    set_error_v(fmt, ap);
    va_end(ap);
}

trit_status trit_fail(trit_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(fmt, ap);
    va_end(ap);
    return status;
}

void trit_clear_error(void)
{
    last_error[0] = '\0';
}

void trit_error_prefix(const char *prefix)
{
    char tmp[ERROR_CAPACITY];
    /* Keep the prefix whole; cut the old sentence if the two do not fit. */
    int room = (int)(sizeof(tmp) - strlen(prefix) - 3);
    snprintf(tmp, sizeof(tmp), "%s: %.*s", prefix, room > 0 ? room : 0,
             last_error[0] ? last_error : "failed");
    memcpy(last_error, tmp, sizeof(tmp));
}
