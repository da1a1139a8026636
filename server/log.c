/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: logging to stderr.  Errors always; connections with -v;
 * requests with -vv.  Never data or secrets. */
#include <config.h>

#include <stdarg.h>
#include <stdio.h>

#include "server/internal.h"

static int verbose;

void
log_set_verbose (int level)
{
  verbose = level;
}

static void
vlog (const char *level, const char *fmt, va_list ap)
{
  char line[2048];

  vsnprintf (line, sizeof line, fmt, ap);
  /* One fprintf per line so lines from worker threads do not interleave. */
  fprintf (stderr, "luks-nbd: %s%s\n", level, line);
}

#define DEFINE_LOG(fn, min, prefix)                                            \
  void fn (const char *fmt, ...)                                               \
  {                                                                            \
    va_list ap;                                                                \
    if (verbose < (min))                                                       \
      return;                                                                  \
    va_start (ap, fmt);                                                        \
    vlog (prefix, fmt, ap);                                                    \
    va_end (ap);                                                               \
  }

DEFINE_LOG (log_error, 0, "error: ")
DEFINE_LOG (log_warning, 0, "warning: ")
DEFINE_LOG (log_info, 1, "")
DEFINE_LOG (log_debug, 2, "")
