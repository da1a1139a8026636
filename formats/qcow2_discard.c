/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: qcow2 discard (the node's trim), as qemu discards a guest's
 * request: every cluster the range covers whole is unmapped and its host
 * clusters freed for reuse; partial clusters are left alone.
 *
 * An unmapped cluster reads as zeros on v3 images (the entry keeps the
 * zero flag, as qemu writes it, so a backing file does not show through)
 * and on v2 images without a backing file; a v2 image with one reads the
 * backing file's data there.  Through the luks node above, zeros are
 * ciphertext: a trimmed range reads as their decryption, noise that is
 * stable until rewritten, and BLOCK_STATUS reports it as a hole that is
 * not zero (see luks_extents).
 *
 * Order on disk: the L2 entries change first and are made durable; only
 * then do the refcounts drop.  A crash in between leaks the clusters (as
 * in qemu; qemu-img check -r leaks repairs it) but never leaves an entry
 * pointing at a cluster counted as free. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>

#include "common/error_msg.h"
#include "formats/qcow2.h"

/* What a discarded entry becomes, or `entry` itself if nothing changes. */
static uint64_t
discarded (const struct qcow2 *q, uint64_t entry)
{
  uint64_t unmapped = q->h.version >= 3 ? QCOW2_OFLAG_ZERO : 0;

  if (entry & QCOW2_OFLAG_COMPRESSED)
    return unmapped;
  if (entry & QCOW2_OFLAG_ZERO)
    return QCOW2_OFLAG_ZERO; /* a preallocated one loses its cluster */
  if (entry & QCOW2_OFFSET_MASK)
    return unmapped;
  /* Unallocated: reads as zeros already, unless a backing file shows
   * through (v3 hides it, as qemu does; v2 cannot). */
  return q->backing ? unmapped : entry;
}

/* Checks an entry before its clusters are freed: freeing what a broken
 * table names could free metadata. */
static int
check_entry (struct qcow2 *q, uint64_t vcluster, uint64_t entry)
{
  uint64_t host = entry & QCOW2_OFFSET_MASK;
  int r = qcow2_check_entry (q, vcluster, entry);

  if (r < 0)
    return r;
  if (!(entry & QCOW2_OFLAG_COMPRESSED) && host &&
      (r = qcow2_check_data_offset (q, host, vcluster)) < 0)
    return r;
  return qcow2_check_free_entry (q, entry);
}

/* Discards clusters [vcluster, vcluster+n) of one L2 table.  Lock held. */
static int
discard_in_table (struct qcow2 *q, uint64_t vcluster, uint64_t n)
{
  uint64_t l1_index = vcluster / q->l2_entries;
  uint64_t first = vcluster % q->l2_entries, lo = n, hi = 0;
  uint64_t *table, *old;
  int r;

  if (!(q->l1[l1_index] & QCOW2_OFFSET_MASK)) {
    if (discarded (q, 0) == 0)
      return 0; /* all unallocated, and stays so */
    /* A backing file must be hidden: the table comes into being. */
    r = qcow2_set_l2_entry (q, vcluster, QCOW2_OFLAG_ZERO);
    if (r < 0)
      return r;
  }
  r = qcow2_l2_get (q, q->l1[l1_index] & QCOW2_OFFSET_MASK, &table);
  if (r < 0)
    return r;
  old = malloc (n * sizeof *old);
  if (!old)
    return error_set (-ENOMEM, "out of memory");
  for (uint64_t i = 0; i < n && r == 0; i++) {
    old[i] = table[first + i];
    r = check_entry (q, vcluster + i, old[i]);
    if (r == 0 && discarded (q, old[i]) != old[i]) {
      lo = lo < i ? lo : i;
      hi = i + 1;
    }
  }
  for (uint64_t i = lo; r == 0 && i < hi; i++)
    table[first + i] = discarded (q, old[i]);
  if (r == 0 && lo < hi) {
    r = qcow2_write_l2_entries (q, q->l1[l1_index] & QCOW2_OFFSET_MASK, table,
                                first + lo, hi - lo);
    if (r < 0) /* the table in memory stays what the file holds */
      for (uint64_t i = lo; i < hi; i++)
        table[first + i] = old[i];
  }
  if (r == 0 && lo < hi)
    r = qcow2_barrier (q);
  for (uint64_t i = lo; r == 0 && i < hi; i++)
    r = qcow2_free_entry (q, old[i]);
  free (old);
  return r;
}

int
qcow2_discard (struct node *n, uint64_t count, uint64_t offset)
{
  struct qcow2 *q = (struct qcow2 *) n;
  uint64_t cs = q->h.cluster_size, end = offset + count;
  uint64_t first = (offset + cs - 1) >> q->h.cluster_bits;
  uint64_t last; /* one past the last cluster covered whole */
  int r = 0;

  if (!q->writable)
    return error_set (-EROFS, "%s: read-only qcow2 image", n->label);
  pthread_rwlock_wrlock (&q->io_lock);
  pthread_mutex_lock (&q->lock);
  /* The image's last cluster may be partial: its end is the disk's.
   * (The size is read under the lock: export-resize changes it.) */
  last = end == n->size ? (end + cs - 1) >> q->h.cluster_bits
                        : end >> q->h.cluster_bits;
  while (r == 0 && first < last) {
    uint64_t in_table = q->l2_entries - first % q->l2_entries;
    uint64_t len = last - first < in_table ? last - first : in_table;
    r = discard_in_table (q, first, len);
    first += len;
  }
  pthread_mutex_unlock (&q->lock);
  pthread_rwlock_unlock (&q->io_lock);
  return r;
}
