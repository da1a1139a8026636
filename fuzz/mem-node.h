/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An in-memory block node for the fuzz targets. */
#ifndef LUKS_NBD_FUZZ_MEM_NODE_H
#define LUKS_NBD_FUZZ_MEM_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "formats/node.h"

/* A node holding a copy of data (size bytes) with room to grow by
 * `growth` bytes; NULL if out of memory.  node_close frees it. */
struct node *mem_node_new (const uint8_t *data, size_t size, size_t growth,
                           const char *label);

#endif
