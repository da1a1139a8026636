/* luks-nbd: qcow2 refcounts and cluster allocation.  New clusters are
 * taken from the end of the file; every refcount change is written
 * through at once.  Callers hold q->lock. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "byteorder.h"
#include "error.h"
#include "qcow2.h"

/* Writable images use 16-bit refcounts (refcount_order 4, the default);
 * qcow2.c refuses others for writing. */
#define REFCOUNT_BYTES 2

static int
refblock_for (struct qcow2 *q, uint64_t cluster, bool create, uint64_t *block)
{
  uint64_t per_block = q->h.cluster_size / REFCOUNT_BYTES;
  uint64_t index = cluster / per_block;
  int r;

  if (index >= q->reftable_entries)
    return error_set (-ENOSPC,
                      "%s: qcow2 refcount table is full (growing it is not "
                      "supported)",
                      q->node.label);
  *block = q->reftable[index] & QCOW2_OFFSET_MASK;
  if (*block || !create)
    return 0;

  /* A new refcount block: zeroed, linked from the table, then it counts
   * itself (through this very block if it covers its own cluster). */
  uint64_t offset = q->next_free;
  uint8_t *zero = calloc (1, q->h.cluster_size), be[8];
  if (!zero)
    return error_set (-ENOMEM, "out of memory");
  q->next_free += q->h.cluster_size;
  r = node_pwrite (q->file, zero, q->h.cluster_size, offset, 0);
  free (zero);
  if (r == 0)
    r = node_flush (q->file);
  store_be64 (be, offset);
  if (r == 0)
    r =
      node_pwrite (q->file, be, sizeof be, q->h.reftable_offset + index * 8, 0);
  if (r < 0)
    return r;
  q->reftable[index] = offset;
  *block = offset;
  return qcow2_refcount_update (q, offset, +1);
}

int
qcow2_refcount_update (struct qcow2 *q, uint64_t host_offset, int delta)
{
  uint64_t cluster = host_offset >> q->h.cluster_bits;
  uint64_t per_block = q->h.cluster_size / REFCOUNT_BYTES;
  uint64_t block = 0, at;
  uint8_t be[REFCOUNT_BYTES];
  int r = refblock_for (q, cluster, delta > 0, &block);

  if (r < 0)
    return r;
  if (!block)
    return error_set (-EIO, "%s: qcow2 cluster at %llu has no refcount block",
                      q->node.label, (unsigned long long) host_offset);
  at = block + (cluster % per_block) * REFCOUNT_BYTES;
  r = node_pread (q->file, be, sizeof be, at);
  if (r < 0)
    return r;
  int value = load_be16 (be) + delta;
  if (value < 0 || value > 0xffff)
    return error_set (-EIO,
                      "%s: qcow2 refcount of cluster at %llu would "
                      "be %d",
                      q->node.label, (unsigned long long) host_offset, value);
  store_be16 (be, (uint16_t) value);
  r = node_pwrite (q->file, be, sizeof be, at, 0);
  if (r == 0)
    q->needs_sync = true;
  return r;
}

int
qcow2_alloc_cluster (struct qcow2 *q, uint64_t *host_offset)
{
  uint64_t offset = q->next_free;

  q->next_free += q->h.cluster_size;
  *host_offset = offset;
  return qcow2_refcount_update (q, offset, +1);
}
