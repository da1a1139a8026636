/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: one --export / config-file line through export_parse (the
 * key=value splitter, ',,' escapes, every key's value checks). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "server/internal.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *text = malloc (size + 1);
  struct export *e = NULL;

  if (!text)
    return 0;
  memcpy (text, data, size);
  text[size] = '\0';
  if (export_parse (text, "--export #1", false, false, &e) == 0)
    export_free (e);
  free (text);
  return 0;
}
