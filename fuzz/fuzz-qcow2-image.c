/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: a whole qcow2 image (header, L1/L2 tables, refcounts,
 * compressed clusters) through the qcow2 node, over an in-memory node:
 * open, read, map and prefetch parts of the disk, write two clusters
 * (allocation and refcount updates), read them back, discard them
 * (freeing) and write again (reusing freed clusters).  A bad table must
 * fail the request (EIO), never crash. */
#include <config.h>

#include <string.h>

#include "fuzz/fuzz.h"
#include "fuzz/mem-node.h"

#define GROWTH (1024 * 1024) /* room for clusters the writes allocate */

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct node *m = mem_node_new (data, size, GROWTH, "fuzz.qcow2"), *q;
  struct extent_list l = { 0 };
  static uint8_t buf[65536];

  if (!m)
    return 0;
  if (node_qcow2_open (m, 64 * 1024, false, &q) < 0) {
    node_close (m);
    return 0;
  }
  uint64_t vsize = q->size;
  uint64_t offsets[] = { 0, 65536, vsize / 2, vsize > 4096 ? vsize - 4096 : 0 };
  for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
    uint64_t len =
      vsize - offsets[i] < sizeof buf ? vsize - offsets[i] : sizeof buf;
    if (len)
      node_pread (q, buf, len, offsets[i]);
  }
  node_extents (q, vsize < (64u << 20) ? vsize : (64u << 20), 0, &l);
  extent_list_free (&l);
  l.max = 4; /* a full list stops the walk (what BLOCK_STATUS does) */
  node_extents (q, vsize / 2, vsize / 4, &l);
  extent_list_free (&l);
  node_prefetch (q, vsize < (32u << 20) ? vsize : (32u << 20), 0);
  memset (buf, 0x5a, sizeof buf);
  if (vsize >= 2 * sizeof buf) {
    node_pwrite (q, buf, 4096, 0, 0);
    node_pwrite (q, buf, sizeof buf, vsize - sizeof buf, NODE_FUA);
    node_pread (q, buf, 4096, 0);
    node_trim (q, 2 * sizeof buf, 0);
    node_pwrite (q, buf, sizeof buf, sizeof buf, 0);
  }
  node_close (q);
  return 0;
}
