/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: reading a text file line by line for the option parsers
 * (--config, --tls-psk): one loop, one set of messages. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error_msg.h"
#include "server/internal.h"

/* Longer lines are refused: a line is an export spec or a key, and
 * --config /dev/zero (or a runaway generator) must not grow the daemon
 * without bound. */
#define LINE_MAX_BYTES (64 * 1024)

/* One line of f into line (NUL terminated, newline and CRs stripped);
 * its length, -1 at the end of the file, -2 if it is too long. */
static ssize_t
next_line (FILE *f, char *line)
{
  size_t len = 0;
  int c;

  while ((c = getc (f)) != EOF && c != '\n') {
    if (len == LINE_MAX_BYTES)
      return -2;
    line[len++] = (char) c;
  }
  if (c == EOF && len == 0)
    return -1;
  while (len > 0 && line[len - 1] == '\r')
    len--;
  line[len] = '\0';
  return (ssize_t) len;
}

int
lines_read (const char *path, const char *option, lines_fn *fn, void *opaque)
{
  FILE *f = fopen (path, "re");
  char *line = malloc (LINE_MAX_BYTES + 1);
  char iobuf[4096];
  ssize_t len;
  int r = 0, lineno = 0;

  if (!f || !line) {
    r = f ? error_set (-ENOMEM, "out of memory")
          : error_set (-errno, "%s %s: %s", option, path, strerror (errno));
    free (line);
    if (f)
      fclose (f);
    return r;
  }
  /* stdio's buffer holds the lines too: ours, so it can be wiped. */
  setvbuf (f, iobuf, _IOFBF, sizeof iobuf);
  while (r == 0 && (len = next_line (f, line)) != -1) {
    lineno++;
    if (len == -2)
      r = error_set (-EFBIG, "%s %s: line %d is longer than %d bytes", option,
                     path, lineno, LINE_MAX_BYTES);
    /* A NUL would silently cut the line short (",readonly=on" lost). */
    else if (memchr (line, '\0', (size_t) len))
      r = error_set (-EINVAL, "%s %s: line %d holds a NUL byte", option, path,
                     lineno);
    else
      r = fn (opaque, line, (size_t) len, lineno);
  }
  if (r == 0 && ferror (f))
    r = error_set (-EIO, "%s %s: read error at line %d", option, path, lineno);
  /* The lines may be secrets (pre-shared keys). */
  explicit_bzero (line, LINE_MAX_BYTES + 1);
  free (line);
  fclose (f);
  explicit_bzero (iobuf, sizeof iobuf);
  return r;
}
