/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: logging to stderr.  Errors always; connections with -v;
 * requests with -vv.  Never data or secrets. */
#include <config.h>

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

#include "server/internal.h"

static int verbose;

/* Each level's prefix and the -v count that turns it on. */
static const struct {
  const char *prefix;
  int min_verbose;
} levels[] = {
  [LOG_LEVEL_ERROR] = { "error: ", 0 },
  [LOG_LEVEL_WARNING] = { "warning: ", 0 },
  [LOG_LEVEL_INFO] = { "", 1 },
  [LOG_LEVEL_DEBUG] = { "", 2 },
};

void
log_set_verbose (int level)
{
  verbose = level;
}

bool
log_enabled (enum log_level level)
{
  return verbose >= levels[level].min_verbose;
}

/* c non-NULL: the line names its connection. */
static void
vlog (enum log_level level, const struct conn *c, const char *fmt, va_list ap)
{
  char line[2048];
  int n = 0;

  if (c)
    n = snprintf (line, sizeof line,
                  "connection %llu: ", (unsigned long long) c->id);
  vsnprintf (line + n, sizeof line - (size_t) n, fmt, ap);
  /* One fprintf per line so lines from worker threads do not interleave. */
  fprintf (stderr, "luks-nbd: %s%s\n", levels[level].prefix, line);
}

#define DEFINE_LOG(fn, level)                                                  \
  void fn (const char *fmt, ...)                                               \
  {                                                                            \
    va_list ap;                                                                \
    if (!log_enabled (level))                                                  \
      return;                                                                  \
    va_start (ap, fmt);                                                        \
    vlog (level, NULL, fmt, ap);                                               \
    va_end (ap);                                                               \
  }

DEFINE_LOG (log_error, LOG_LEVEL_ERROR)
DEFINE_LOG (log_warning, LOG_LEVEL_WARNING)
DEFINE_LOG (log_info, LOG_LEVEL_INFO)
DEFINE_LOG (log_debug, LOG_LEVEL_DEBUG)

void
conn_log (const struct conn *c, enum log_level level, const char *fmt, ...)
{
  va_list ap;

  if (!log_enabled (level))
    return;
  va_start (ap, fmt);
  vlog (level, c, fmt, ap);
  va_end (ap);
}

void
conn_log_refusal (struct conn *c, const char *fmt, ...)
{
  enum log_level level = LOG_LEVEL_INFO;
  va_list ap;

  if (c->refusals < UINT_MAX)
    c->refusals++;
  if (c->refusals == CONN_REFUSALS_LOGGED + 1)
    conn_log (c, LOG_LEVEL_INFO,
              "more than %d options or requests refused: the rest are "
              "logged with -vv only",
              CONN_REFUSALS_LOGGED);
  if (c->refusals > CONN_REFUSALS_LOGGED)
    level = LOG_LEVEL_DEBUG;
  if (!log_enabled (level))
    return;
  va_start (ap, fmt);
  vlog (level, c, fmt, ap);
  va_end (ap);
}
