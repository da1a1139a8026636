/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: lays out the --help texts that tables generate (export keys:
 * export_spec.c; control commands: control_commands.c), so an entry's
 * help is one string, wrapped here, and no line passes 79 columns. */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "server/internal.h"

#define USAGE_WIDTH 79

void
usage_item (FILE *f, size_t indent, size_t col, const char *tag,
            const char *help)
{
  size_t at = indent + strlen (tag);
  const char *p = help;

  fprintf (f, "%*s%s", (int) indent, "", tag);
  /* Help beside the tag if it leaves two blanks, else under it. */
  if (at + 2 > col) {
    fputc ('\n', f);
    at = 0;
  }
  while (*p) {
    size_t room = USAGE_WIDTH - col, n = strlen (p);
    if (n > room) { /* break at the last blank that fits */
      n = room;
      while (n > 0 && p[n] != ' ')
        n--;
      if (n == 0)
        n = strcspn (p, " ");
    }
    fprintf (f, "%*s%.*s\n", (int) (col - at), "", (int) n, p);
    at = 0;
    p += n;
    while (*p == ' ')
      p++;
  }
  if (!*help)
    fputc ('\n', f);
}
