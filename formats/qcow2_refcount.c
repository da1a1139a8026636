/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: qcow2 refcounts and cluster allocation.  New clusters are
 * the lowest ones with refcount 0 (freed by a discard or a copy-on-write,
 * as qemu reuses them), else taken from the end of the file; every
 * refcount change is written through at once.  Callers hold q->lock. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "common/byteorder.h"
#include "common/error_msg.h"
#include "formats/qcow2.h"

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

static int
refcount_update (struct qcow2 *q, uint64_t host_offset, int delta,
                 int *new_value)
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
  *new_value = value;
  return r;
}

int
qcow2_refcount_update (struct qcow2 *q, uint64_t host_offset, int delta)
{
  int value;

  return refcount_update (q, host_offset, delta, &value);
}

/* A cluster the image's own tables name (header, L1, refcount table and
 * blocks, L2 tables): a refcount of 0 there means the image is corrupt,
 * and handing it out would overwrite metadata. */
static bool
is_metadata (const struct qcow2 *q, uint64_t cluster)
{
  uint64_t off = cluster << q->h.cluster_bits;
  uint64_t l1_end = q->h.l1_offset + (uint64_t) q->h.l1_size * 8;
  uint64_t rt_end =
    q->h.reftable_offset + q->reftable_entries * 8; /* whole clusters */

  if (cluster == 0 ||
      (off + q->h.cluster_size > q->h.l1_offset && off < l1_end) ||
      (off >= q->h.reftable_offset && off < rt_end))
    return true;
  for (uint64_t i = 0; i < q->reftable_entries; i++)
    if ((q->reftable[i] & QCOW2_OFFSET_MASK) == off)
      return true;
  for (uint64_t i = 0; i < q->h.l1_size; i++)
    if ((q->l1[i] & QCOW2_OFFSET_MASK) == off)
      return true;
  return false;
}

/* The lowest cluster in [free_hint, end of file) with refcount 0, or 0
 * if none (cluster 0 is the header, never free).  Clusters without a
 * refcount block are not taken: nothing says they are unused. */
static int
find_free (struct qcow2 *q, uint64_t *cluster)
{
  uint64_t per_block = q->h.cluster_size / REFCOUNT_BYTES;
  uint64_t end = q->next_free >> q->h.cluster_bits;
  uint8_t *block = NULL;
  int r = 0;

  *cluster = 0;
  while (r == 0 && !*cluster && q->free_hint < end) {
    uint64_t index = q->free_hint / per_block;
    uint64_t first = q->free_hint, last = (index + 1) * per_block;
    if (index >= q->reftable_entries) { /* past what the table covers */
      q->free_hint = end;
      break;
    }
    uint64_t at = q->reftable[index] & QCOW2_OFFSET_MASK;
    if (last > end)
      last = end;
    if (at && !block && !(block = malloc (q->h.cluster_size)))
      return error_set (-ENOMEM, "out of memory");
    if (at && (r = node_pread (q->file, block, q->h.cluster_size, at)) < 0)
      break;
    for (uint64_t c = first; at && c < last && !*cluster; c++)
      if (c && load_be16 (block + (c % per_block) * REFCOUNT_BYTES) == 0)
        *cluster = c;
    q->free_hint = *cluster ? *cluster : last;
  }
  free (block);
  if (r == 0 && *cluster && is_metadata (q, *cluster))
    r = error_set (-EIO,
                   "%s: qcow2 metadata cluster at %llu has refcount 0: the "
                   "image is corrupt; repair it with qemu-img check -r all",
                   q->node.label,
                   (unsigned long long) (*cluster << q->h.cluster_bits));
  return r;
}

int
qcow2_alloc_cluster (struct qcow2 *q, uint64_t *host_offset)
{
  uint64_t end = q->next_free >> q->h.cluster_bits, cluster;
  int r = find_free (q, &cluster);

  if (r < 0)
    return r;
  if (cluster) {
    *host_offset = cluster << q->h.cluster_bits;
    q->free_hint = cluster + 1;
    return qcow2_refcount_update (q, *host_offset, +1);
  }
  *host_offset = q->next_free;
  q->next_free += q->h.cluster_size;
  if (q->free_hint == end)
    q->free_hint = end + 1;
  return qcow2_refcount_update (q, *host_offset, +1);
}

/* One reference less; a cluster left unused becomes free for reuse, and
 * its space goes back to the file system (as qemu passes a guest's
 * discard down), which may refuse: that costs only space. */
static int
free_cluster (struct qcow2 *q, uint64_t host_offset)
{
  int value, r = refcount_update (q, host_offset, -1, &value);

  if (r < 0 || value > 0)
    return r;
  if ((host_offset >> q->h.cluster_bits) < q->free_hint)
    q->free_hint = host_offset >> q->h.cluster_bits;
  (void) node_trim (q->file, q->h.cluster_size, host_offset);
  return 0;
}

/* Calls fn for each host cluster an entry holds a reference to: a
 * compressed entry's deflated bytes may straddle two. */
static int
for_each_cluster (struct qcow2 *q, uint64_t entry,
                  int (*fn) (struct qcow2 *, uint64_t))
{
  int r = 0;

  if (entry & QCOW2_OFLAG_COMPRESSED) {
    uint64_t off, len;
    qcow2_compressed_extent (q, entry, &off, &len);
    uint64_t first = off & ~(q->h.cluster_size - 1);
    uint64_t last = (off + len - 1) & ~(q->h.cluster_size - 1);
    for (uint64_t c = first; r == 0 && c <= last; c += q->h.cluster_size)
      r = fn (q, c);
  } else if (entry & QCOW2_OFFSET_MASK)
    r = fn (q, entry & QCOW2_OFFSET_MASK);
  return r;
}

static int
refuse_metadata (struct qcow2 *q, uint64_t host_offset)
{
  if (is_metadata (q, host_offset >> q->h.cluster_bits))
    return error_set (-EIO,
                      "%s: qcow2 L2 entry names the metadata cluster at "
                      "%llu as data: the image is corrupt",
                      q->node.label, (unsigned long long) host_offset);
  return 0;
}

int
qcow2_check_free_entry (struct qcow2 *q, uint64_t entry)
{
  int r = 0;

  if (entry & QCOW2_OFLAG_COMPRESSED)
    r = qcow2_check_compressed (q, entry);
  return r < 0 ? r : for_each_cluster (q, entry, refuse_metadata);
}

int
qcow2_free_entry (struct qcow2 *q, uint64_t entry)
{
  return for_each_cluster (q, entry, free_cluster);
}
