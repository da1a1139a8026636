/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: growing a qcow2 image's virtual size, as qemu-img resize
 * does: a larger L1 table if the new size needs one, then the header's
 * size.  Every step is made durable before the one that depends on it,
 * so a crash leaves either the old image or the new one, at worst with
 * leaked clusters (qemu-img check -r leaks), never a table on a cluster
 * counted as free (docs/design.md, "Resizing a qcow2 payload"). */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/checked.h"
#include "common/error_msg.h"
#include "formats/qcow2.h"

/* Header fields rewritten here (offsets in the qcow2 header). */
#define HDR_SIZE 24
#define HDR_L1_SIZE 36 /* be32 l1_size, then be64 l1_table_offset */

static uint64_t
clusters_for (const struct qcow2 *q, uint64_t bytes)
{
  return (bytes + q->h.cluster_size - 1) >> q->h.cluster_bits;
}

/* A new L1 table of `entries` at the end of the file: counted, written
 * and flushed, then the header switched to it in one write and flushed,
 * then the old table's clusters freed.  Lock held. */
static int
grow_l1 (struct qcow2 *q, uint64_t entries)
{
  uint64_t bytes = entries * 8, n = clusters_for (q, bytes);
  uint64_t old_offset = q->h.l1_offset;
  uint64_t old_n = clusters_for (q, (uint64_t) q->h.l1_size * 8);
  uint64_t offset = q->next_free;
  uint64_t *l1 = calloc (entries, 8);
  uint8_t *disk = calloc (n, q->h.cluster_size), hdr[12];
  int r = 0;

  if (!l1 || !disk) {
    free (l1);
    free (disk);
    return error_set (-ENOMEM, "out of memory");
  }
  memcpy (l1, q->l1, (size_t) q->h.l1_size * 8);
  for (uint64_t i = 0; i < q->h.l1_size; i++)
    store_be64 (disk + i * 8, q->l1[i]);
  /* Contiguous clusters past the end: a refcount block this needs goes
   * after them. */
  q->next_free += n << q->h.cluster_bits;
  for (uint64_t i = 0; r == 0 && i < n; i++)
    r = qcow2_refcount_update (q, offset + (i << q->h.cluster_bits), +1);
  if (r == 0)
    r = node_pwrite (q->file, disk, n << q->h.cluster_bits, offset, 0);
  if (r == 0)
    r = node_flush (q->file);
  store_be32 (hdr, (uint32_t) entries);
  store_be64 (hdr + 4, offset);
  if (r == 0)
    r = node_pwrite (q->file, hdr, sizeof hdr, HDR_L1_SIZE, 0);
  if (r == 0)
    r = node_flush (q->file);
  free (disk);
  if (r < 0) { /* at worst the new clusters leak */
    free (l1);
    return error_prefix (r, "%s: growing the qcow2 L1 table", q->node.label);
  }
  free (q->l1);
  q->l1 = l1;
  q->h.l1_size = (uint32_t) entries;
  q->h.l1_offset = offset;
  q->needs_sync = true;
  /* The header no longer names the old table: its clusters are free. */
  for (uint64_t i = 0; r == 0 && i < old_n; i++)
    r = qcow2_free_entry (q, old_offset + (i << q->h.cluster_bits));
  return r;
}

static int
resize_locked (struct qcow2 *q, uint64_t size)
{
  uint64_t clusters = clusters_for (q, size);
  uint64_t entries = (clusters + q->l2_entries - 1) / q->l2_entries;
  uint8_t be[8];
  int r = 0;

  if (size < q->h.size)
    return error_set (-ENOTSUP,
                      "%s: shrinking a qcow2 payload is not supported (data "
                      "past the new end would stay allocated); export-remove "
                      "it and use qemu-img resize --shrink",
                      q->node.label);
  if (size > QCOW2_MAX_VIRTUAL_SIZE || entries * 8 > QCOW2_MAX_L1_BYTES)
    return error_set (-EFBIG,
                      "%s: %llu bytes would need a qcow2 L1 table of %llu "
                      "bytes (at most %d)",
                      q->node.label, (unsigned long long) size,
                      (unsigned long long) (entries * 8), QCOW2_MAX_L1_BYTES);
  if (entries > q->h.l1_size)
    r = grow_l1 (q, entries);
  store_be64 (be, size);
  if (r == 0)
    r = node_pwrite (q->file, be, sizeof be, HDR_SIZE, 0);
  if (r == 0)
    r = node_flush (q->file);
  if (r < 0)
    return r;
  q->needs_sync = false;
  q->h.size = size;
  q->node.size = size;
  return 0;
}

int
qcow2_resize (struct node *n, uint64_t size)
{
  struct qcow2 *q = (struct qcow2 *) n;
  int r;

  if (!q->writable)
    return error_set (-EROFS, "%s: opened read-only", n->label);
  pthread_mutex_lock (&q->lock);
  r = resize_locked (q, size);
  pthread_mutex_unlock (&q->lock);
  return r;
}
