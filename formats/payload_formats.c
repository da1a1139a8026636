/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the table of payload formats, and the payload-format= value
 * checked and probed against it.  A new format is one entry here plus
 * its own file (which defines its struct payload_format). */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/error_msg.h"
#include "formats/node.h"

/* Listed in this order (--help, messages), probed in it too; raw has no
 * probe: it is what no other format's probe takes. */
static const struct payload_format *const formats[] = {
  &payload_format_raw,
  &payload_format_qcow2,
};
#define N_FORMATS (sizeof formats / sizeof formats[0])

/* "auto" and every name, joined by sep and (before the last) last. */
static void
join_names (char *buf, size_t len, const char *sep, const char *last)
{
  size_t n = (size_t) snprintf (buf, len, "auto");

  for (size_t i = 0; i < N_FORMATS && n < len; i++)
    n += (size_t) snprintf (buf + n, len - n, "%s%s",
                            i + 1 < N_FORMATS ? sep : last, formats[i]->name);
}

static const struct payload_format *
find (const char *name)
{
  for (size_t i = 0; i < N_FORMATS; i++)
    if (strcmp (formats[i]->name, name) == 0)
      return formats[i];
  return NULL;
}

int
node_stack_check_format (const char *name)
{
  char expected[256];

  if (!name || strcmp (name, "auto") == 0 || find (name))
    return 0;
  join_names (expected, sizeof expected, ", ", " or ");
  return error_set (-EINVAL, "payload-format=%s: expected %s", name, expected);
}

static char choices[256];
static pthread_once_t choices_once = PTHREAD_ONCE_INIT;

static void
make_choices (void)
{
  join_names (choices, sizeof choices, "|", "|");
}

const char *
node_stack_format_choices (void)
{
  pthread_once (&choices_once, make_choices);
  return choices;
}

int
payload_format_choose (struct node *file, const char *want,
                       const struct payload_format **out)
{
  uint8_t head[PAYLOAD_PROBE_BYTES];
  size_t len = file->size < sizeof head ? (size_t) file->size : sizeof head;
  int r = node_stack_check_format (want);

  if (r < 0)
    return r;
  if (want && strcmp (want, "auto") != 0) {
    *out = find (want); /* named: the payload is not even read */
    return 0;
  }
  if (len && (r = node_pread (file, head, len, 0)) < 0)
    return error_prefix (r, "probing the payload format (payload-format=)");
  for (size_t i = 0; i < N_FORMATS; i++)
    if (formats[i]->probe && formats[i]->probe (head, len)) {
      *out = formats[i];
      return 0;
    }
  *out = &payload_format_raw;
  return 0;
}
