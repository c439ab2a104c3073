/*
 * error.h — the thread-local error sentence behind trit_last_error().
 */
#ifndef TRIT_HOST_ERROR_H
#define TRIT_HOST_ERROR_H

#include "trit/trit.h"

/* Records the sentence for trit_last_error() on this thread. The status is not stored; it is
 * there so call sites read `return trit_fail(TRIT_ERROR_X, "...")`. */
void trit_set_error(trit_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* trit_set_error, then returns `status`. */
trit_status trit_fail(trit_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears the sentence (called on entry by public functions that can fail). */
void trit_clear_error(void);

/* Prefixes the current sentence with "<prefix>: " (used to name the device a plugin spoke for). */
void trit_error_prefix(const char *prefix);

#endif /* TRIT_HOST_ERROR_H */
