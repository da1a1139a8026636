/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: thread-local error messages (see error_msg.h). */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/error_msg.h"

enum { ERROR_MESSAGE_MAX = 1024 };

static __thread char message[ERROR_MESSAGE_MAX];

int
error_set (int err, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (message, sizeof message, fmt, ap);
  va_end (ap);
  return err;
}

int
error_prefix (int err, const char *fmt, ...)
{
  char old[ERROR_MESSAGE_MAX];
  char prefix[ERROR_MESSAGE_MAX];
  va_list ap;

  memcpy (old, message, sizeof old);
  va_start (ap, fmt);
  vsnprintf (prefix, sizeof prefix, fmt, ap);
  va_end (ap);
  if (old[0])
    snprintf (message, sizeof message, "%s: %s", prefix, old);
  else
    snprintf (message, sizeof message, "%s: %s", prefix, strerror (-err));
  return err;
}

int
error_append (int err, const char *fmt, ...)
{
  size_t len = strlen (message);
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (message + len, sizeof message - len, fmt, ap);
  va_end (ap);
  return err;
}

const char *
error_message (void)
{
  return message;
}

void
error_clear (void)
{
  message[0] = '\0';
}
