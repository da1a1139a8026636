/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the one error helper.  Functions return 0 or -errno and, on
 * error, leave a message naming the cause (file, field, value) in a
 * thread-local buffer that the caller up the stack prints or prefixes. */
#ifndef LUKS_NBD_ERROR_H
#define LUKS_NBD_ERROR_H

#include <stddef.h>

/* Sets the message and returns err (which must be negative), so callers
 * write `return error_set (-EINVAL, "...", ...);`. */
int error_set (int err, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Prepends "prefix: " to the current message (adds context going up). */
int error_prefix (int err, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* Appends to the current message (a hint after the cause). */
int error_append (int err, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* The current thread's last message ("" if none). */
const char *error_message (void);

void error_clear (void);

#endif
