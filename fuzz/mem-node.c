/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An in-memory block node for the fuzz targets (see mem-node.h). */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/error_msg.h"
#include "fuzz/mem-node.h"

struct mem_node {
  struct node node;
  uint8_t *data;
  uint64_t cap;
};

static int
mem_pread (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  struct mem_node *m = (struct mem_node *) n;

  if (offset > n->size || count > n->size - offset)
    return error_set (-EIO, "%s: read past the end", n->label);
  memcpy (buf, m->data + offset, count);
  return 0;
}

static int
mem_pwrite (struct node *n, const void *buf, uint64_t count, uint64_t offset,
            int flags)
{
  struct mem_node *m = (struct mem_node *) n;

  if (offset > m->cap || count > m->cap - offset)
    return error_set (-ENOSPC, "%s: write past the room", n->label);
  memcpy (m->data + offset, buf, count);
  if (offset + count > n->size)
    n->size = offset + count;
  return 0;
}

static int
mem_flush (struct node *n)
{
  return 0;
}

static void
mem_close (struct node *n)
{
  struct mem_node *m = (struct mem_node *) n;

  free (m->data);
  free (n->label);
  free (m);
}

static const struct node_ops mem_ops = {
  .name = "mem",
  .pread = mem_pread,
  .pwrite = mem_pwrite,
  .flush = mem_flush,
  .close = mem_close,
};

struct node *
mem_node_new (const uint8_t *data, size_t size, size_t growth,
              const char *label)
{
  struct mem_node *m = calloc (1, sizeof *m);

  if (!m || !(m->data = calloc (1, size + growth)) ||
      !(m->node.label = strdup (label))) {
    if (m)
      free (m->data);
    free (m);
    return NULL;
  }
  memcpy (m->data, data, size);
  m->cap = size + growth;
  m->node.ops = &mem_ops;
  m->node.size = size;
  m->node.block_size = 512;
  return &m->node;
}
