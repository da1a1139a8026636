/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the first cluster of a qcow2 image through
 * qcow2_header_parse (header, extensions, table bounds, backing name). */
#include <config.h>

#include "fuzz/fuzz.h"
#include "formats/qcow2.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct qcow2_header h;

  qcow2_header_parse (data, size, (uint64_t) size * 16, "fuzz", &h);
  return 0;
}
