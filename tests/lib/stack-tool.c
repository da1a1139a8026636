/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Test helper: opens an export's node stack as the daemon would and
 * prints its extents, one "offset length flags" line each (flags: 1 hole,
 * 2 reads as zeros).
 *   stack-tool extents PAYLOAD HEADER KEYFILE   the plaintext (luks) view
 *   stack-tool raw-extents PAYLOAD              the payload file itself */
#include <config.h>

#include <stdio.h>
#include <string.h>

#include "common/error_msg.h"
#include "formats/node.h"

static int
print_extents (struct node *n)
{
  struct extent_list l = { 0 };

  /* A node may describe only a prefix per call: ask again from its end. */
  for (uint64_t pos = 0; pos < n->size;) {
    if (node_extents (n, n->size - pos, pos, &l) < 0) {
      fprintf (stderr, "stack-tool: extents: %s\n", error_message ());
      return 1;
    }
    uint64_t end = l.n ? l.e[l.n - 1].offset + l.e[l.n - 1].length : 0;
    if (end <= pos) {
      fprintf (stderr, "stack-tool: extents made no progress at %llu\n",
               (unsigned long long) pos);
      return 1;
    }
    pos = end;
  }
  for (size_t i = 0; i < l.n; i++)
    printf ("%llu %llu %u\n", (unsigned long long) l.e[i].offset,
            (unsigned long long) l.e[i].length, l.e[i].flags);
  extent_list_free (&l);
  node_close (n);
  return 0;
}

int
main (int argc, char **argv)
{
  struct node *n;
  const char *format;

  if (argc == 3 && strcmp (argv[1], "raw-extents") == 0) {
    int r = node_is_uri (argv[2]) ? node_nbd_open (argv[2], true, &n)
                                  : node_file_open (argv[2], true, &n);
    if (r < 0) {
      fprintf (stderr, "stack-tool: %s\n", error_message ());
      return 1;
    }
    return print_extents (n);
  }
  if (argc != 5 || strcmp (argv[1], "extents") != 0)
    return 2;
  struct stack_spec spec = { .payload = argv[2],
                             .header = argv[3],
                             .key_file = argv[4],
                             .key_slot = -1,
                             .readonly = true,
                             /* extents only: random test data is fine */
                             .no_plaintext_check = true };
  if (node_stack_open (&spec, &n, &format) < 0) {
    fprintf (stderr, "stack-tool: %s\n", error_message ());
    return 1;
  }
  return print_extents (n);
}
