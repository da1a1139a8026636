/* luks-nbd: reading a text file line by line for the option parsers
 * (--config, --tls-psk): one loop, one set of messages. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "internal.h"

int
lines_read (const char *path, const char *option, lines_fn *fn, void *opaque)
{
  FILE *f = fopen (path, "re");
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int r = 0, lineno = 0;

  if (!f)
    return error_set (-errno, "%s %s: %s", option, path, strerror (errno));
  while (r == 0 && (len = getline (&line, &cap, f)) >= 0) {
    lineno++;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      len--;
    line[len] = '\0';
    /* A NUL would silently cut the line short (",readonly=on" lost). */
    if (memchr (line, '\0', (size_t) len))
      r = error_set (-EINVAL, "%s %s: line %d holds a NUL byte", option, path,
                     lineno);
    else
      r = fn (opaque, line, (size_t) len, lineno);
  }
  if (r == 0 && ferror (f))
    r = error_set (-EIO, "%s %s: read error at line %d", option, path, lineno);
  /* The lines may be secrets (pre-shared keys). */
  if (line)
    explicit_bzero (line, cap);
  free (line);
  fclose (f);
  return r;
}
