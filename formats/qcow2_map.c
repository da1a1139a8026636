/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: qcow2 cluster map: L1 in memory, L2 tables through a cache
 * of fixed size (so memory does not grow with the disk), entry updates
 * written through to the file at once.  Callers hold q->lock, except
 * for qcow2_map_runs, which takes it for one bounded batch. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/error_msg.h"
#include "formats/qcow2.h"

int
qcow2_l2_get (struct qcow2 *q, uint64_t l2_offset, uint64_t **table)
{
  struct qcow2_l2_slot *victim = &q->cache[0];
  uint8_t *raw;
  int r;

  for (size_t i = 0; i < q->cache_slots; i++) {
    struct qcow2_l2_slot *s = &q->cache[i];
    if (s->offset == l2_offset) {
      s->last_use = ++q->use_clock;
      *table = s->table;
      return 0;
    }
    if (s->last_use < victim->last_use)
      victim = s;
  }
  if (l2_offset % q->h.cluster_size ||
      l2_offset + q->h.cluster_size > q->next_free)
    return error_set (-EIO, "%s: qcow2 L2 table offset %llu is invalid",
                      q->node.label, (unsigned long long) l2_offset);
  /* Read straight into the slot, then convert in place. */
  raw = (uint8_t *) victim->table;
  victim->offset = 0;
  r = node_pread (q->file, raw, q->h.cluster_size, l2_offset);
  if (r < 0)
    return r;
  for (uint64_t i = 0; i < q->l2_entries; i++)
    victim->table[i] = load_be64 (raw + i * 8);
  victim->offset = l2_offset;
  victim->last_use = ++q->use_clock;
  *table = victim->table;
  return 0;
}

int
qcow2_check_entry (const struct qcow2 *q, uint64_t vcluster, uint64_t entry)
{
  if (!(entry & QCOW2_OFLAG_COMPRESSED) && (entry & QCOW2_L2_STANDARD_RESERVED))
    return error_set (-EIO,
                      "%s: qcow2 L2 entry for cluster %llu has reserved "
                      "bits set (0x%016llx)",
                      q->node.label, (unsigned long long) vcluster,
                      (unsigned long long) entry);
  return 0;
}

int
qcow2_check_data_offset (const struct qcow2 *q, uint64_t host,
                         uint64_t vcluster)
{
  if (host % q->h.cluster_size || host + q->h.cluster_size > q->next_free ||
      host == 0)
    return error_set (-EIO,
                      "%s: qcow2 L2 entry for cluster %llu points to %llu, "
                      "outside the image",
                      q->node.label, (unsigned long long) vcluster,
                      (unsigned long long) host);
  return 0;
}

int
qcow2_check_compressed (const struct qcow2 *q, uint64_t entry)
{
  uint64_t off, len;

  qcow2_compressed_extent (q, entry, &off, &len);
  if (off < q->h.cluster_size || len > 2 * q->h.cluster_size ||
      off + len > q->next_free + q->h.cluster_size)
    return error_set (-EIO, "%s: qcow2 compressed cluster at %llu is invalid",
                      q->node.label, (unsigned long long) off);
  return 0;
}

int
qcow2_lookup (struct qcow2 *q, uint64_t vcluster, uint64_t *entry)
{
  uint64_t l1_index = vcluster / q->l2_entries;
  uint64_t *table;
  int r;

  if (l1_index >= q->h.l1_size)
    return error_set (-EIO, "%s: qcow2 cluster %llu beyond the L1 table",
                      q->node.label, (unsigned long long) vcluster);
  uint64_t l2_offset = q->l1[l1_index] & QCOW2_OFFSET_MASK;
  if (!l2_offset) {
    *entry = 0;
    return 0;
  }
  r = qcow2_l2_get (q, l2_offset, &table);
  if (r < 0)
    return r;
  *entry = table[vcluster % q->l2_entries];
  return qcow2_check_entry (q, vcluster, *entry);
}

/* What a run of clusters is, for qcow2_map_runs: runs merge only within
 * one kind (and data only when contiguous on disk). */
enum kind { UNALLOCATED, ZERO_UNALLOCATED, ZERO_ALLOCATED, COMPRESSED, DATA };

static enum kind
kind_of (uint64_t entry)
{
  if (entry & QCOW2_OFLAG_COMPRESSED)
    return COMPRESSED;
  if (entry & QCOW2_OFLAG_ZERO)
    return entry & QCOW2_OFFSET_MASK ? ZERO_ALLOCATED : ZERO_UNALLOCATED;
  return entry & QCOW2_OFFSET_MASK ? DATA : UNALLOCATED;
}

/* Appends one cluster's entry to the runs; false if it needs a new run
 * and there is no room. */
static bool
add_to_runs (struct qcow2_run *runs, size_t *n, size_t max, uint64_t entry,
             uint64_t clusters, uint64_t cluster_size)
{
  struct qcow2_run *last = *n ? &runs[*n - 1] : NULL;
  enum kind k = kind_of (entry);

  if (last && kind_of (last->entry) == k && k != COMPRESSED &&
      (k != DATA ||
       (last->entry & QCOW2_OFFSET_MASK) + last->clusters * cluster_size ==
         (entry & QCOW2_OFFSET_MASK))) {
    last->clusters += clusters;
    return true;
  }
  if (*n == max)
    return false;
  runs[(*n)++] = (struct qcow2_run){ entry, clusters };
  return true;
}

int
qcow2_map_runs (struct qcow2 *q, uint64_t vcluster, uint64_t clusters,
                struct qcow2_run *runs, size_t max_runs, size_t *n_runs,
                uint64_t *looked_at)
{
  uint64_t end = vcluster + clusters, visited = 0;
  int r = 0;

  *n_runs = 0;
  pthread_mutex_lock (&q->lock);
  while (r == 0 && vcluster < end && visited < QCOW2_WALK_LOCKED) {
    uint64_t l1_index = vcluster / q->l2_entries;
    uint64_t in_table = vcluster % q->l2_entries;
    uint64_t stop = end - vcluster < q->l2_entries - in_table
                      ? end
                      : vcluster + (q->l2_entries - in_table);
    uint64_t l2_offset, *table;

    if (l1_index >= q->h.l1_size) {
      r = error_set (-EIO, "%s: qcow2 cluster %llu beyond the L1 table",
                     q->node.label, (unsigned long long) vcluster);
      break;
    }
    l2_offset = q->l1[l1_index] & QCOW2_OFFSET_MASK;
    if (!l2_offset) { /* a whole table's range unallocated: one step */
      if (!add_to_runs (runs, n_runs, max_runs, 0, stop - vcluster,
                        q->h.cluster_size))
        break;
      visited++;
      vcluster = stop;
      continue;
    }
    r = qcow2_l2_get (q, l2_offset, &table);
    for (; r == 0 && vcluster < stop && visited < QCOW2_WALK_LOCKED;
         vcluster++, visited++) {
      uint64_t entry = table[vcluster % q->l2_entries];
      r = qcow2_check_entry (q, vcluster, entry);
      if (r == 0 &&
          !add_to_runs (runs, n_runs, max_runs, entry, 1, q->h.cluster_size))
        goto out;
    }
  }
out:
  pthread_mutex_unlock (&q->lock);
  *looked_at = visited;
  return r;
}

/* Writes one big-endian 64-bit table entry through to the file. */
static int
write_entry (struct qcow2 *q, uint64_t offset, uint64_t value)
{
  uint8_t be[8];

  store_be64 (be, value);
  return node_pwrite (q->file, be, sizeof be, offset, 0);
}

/* Compressed entry: host offset and byte length of the deflated data. */
void
qcow2_compressed_extent (const struct qcow2 *q, uint64_t entry,
                         uint64_t *offset, uint64_t *len)
{
  unsigned x = 62 - (q->h.cluster_bits - 8);
  uint64_t sectors =
    ((entry & ~QCOW2_OFLAG_COPIED & ~QCOW2_OFLAG_COMPRESSED) >> x) + 1;

  *offset = entry & ((UINT64_C (1) << x) - 1);
  *len = sectors * 512 - (*offset & 511);
}

/* Persists what newly allocated clusters hold before anything points at
 * them: data and refcounts reach the disk before L2, L2 before L1; and
 * an L2 entry's change before the refcounts it drops. */
int
qcow2_barrier (struct qcow2 *q)
{
  if (!q->needs_sync)
    return 0;
  q->needs_sync = false;
  return node_flush (q->file);
}

int
qcow2_set_l2_entry (struct qcow2 *q, uint64_t vcluster, uint64_t entry)
{
  uint64_t l1_index = vcluster / q->l2_entries;
  uint64_t l2_offset = q->l1[l1_index] & QCOW2_OFFSET_MASK;
  uint64_t *table;
  int r;

  if (!l2_offset) {
    /* A new L2 table: zeroed, counted, persisted, then linked from L1. */
    uint8_t *zero = calloc (1, q->h.cluster_size);
    if (!zero)
      return error_set (-ENOMEM, "out of memory");
    r = qcow2_alloc_cluster (q, &l2_offset);
    if (r == 0)
      r = node_pwrite (q->file, zero, q->h.cluster_size, l2_offset, 0);
    free (zero);
    if (r == 0)
      r = qcow2_barrier (q);
    if (r == 0)
      r = write_entry (q, q->h.l1_offset + l1_index * 8,
                       l2_offset | QCOW2_OFLAG_COPIED);
    if (r < 0)
      return r;
    q->l1[l1_index] = l2_offset | QCOW2_OFLAG_COPIED;
    q->needs_sync = true;
  }
  r = qcow2_l2_get (q, l2_offset, &table);
  if (r == 0)
    r = qcow2_barrier (q);
  if (r == 0)
    r = write_entry (q, l2_offset + (vcluster % q->l2_entries) * 8, entry);
  if (r < 0)
    return r;
  table[vcluster % q->l2_entries] = entry;
  q->needs_sync = true;
  return 0;
}

int
qcow2_write_l2_entries (struct qcow2 *q, uint64_t l2_offset,
                        const uint64_t *table, uint64_t first, uint64_t n)
{
  uint8_t *be = malloc (n * 8);
  int r;

  if (!be)
    return error_set (-ENOMEM, "out of memory");
  for (uint64_t i = 0; i < n; i++)
    store_be64 (be + i * 8, table[first + i]);
  r = node_pwrite (q->file, be, n * 8, l2_offset + first * 8, 0);
  free (be);
  if (r == 0)
    q->needs_sync = true;
  return r;
}
