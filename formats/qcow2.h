/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: qcow2 internals shared by formats/qcow2*.c.  The qcow2 node
 * stores ciphertext for the luks node above it; it knows nothing of
 * encryption. */
#ifndef LUKS_NBD_QCOW2_H
#define LUKS_NBD_QCOW2_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/node.h"

/* Named limits on what an image may ask of us. */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32 * 1024 * 1024)
#define QCOW2_MAX_REFTABLE_BYTES (8 * 1024 * 1024)
#define QCOW2_MAX_VIRTUAL_SIZE (UINT64_C (1) << 63)
#define QCOW2_DEFAULT_CACHE_BYTES (1024 * 1024)
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_BACKING_DEPTH 16
/* Map walks (extents, prefetch): L2 entries looked at per hold of the
 * lock, and per call of the node op (the caller asks again for the
 * rest); an unallocated L2 table counts as one entry. */
#define QCOW2_WALK_LOCKED 4096
#define QCOW2_WALK_BUDGET 65536

#define QCOW2_INCOMPAT_DIRTY (1u << 0)
#define QCOW2_INCOMPAT_CORRUPT (1u << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1u << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1u << 3)
#define QCOW2_INCOMPAT_EXTL2 (1u << 4)
#define QCOW2_INCOMPAT_KNOWN 0x1fu

#define QCOW2_OFLAG_COPIED (UINT64_C (1) << 63)
#define QCOW2_OFLAG_COMPRESSED (UINT64_C (1) << 62)
#define QCOW2_OFLAG_ZERO UINT64_C (1)
#define QCOW2_OFFSET_MASK UINT64_C (0x00fffffffffffe00)
/* Bits 1-8 and 56-61 of a standard (uncompressed) L2 entry: must be 0. */
#define QCOW2_L2_STANDARD_RESERVED UINT64_C (0x3f000000000001fe)

enum qcow2_compression { QCOW2_DEFLATE = 0, QCOW2_ZSTD = 1 };

/* The parsed header (host order), validated against the file size. */
struct qcow2_header {
  uint32_t version;
  uint32_t cluster_bits;
  uint64_t cluster_size;
  uint64_t size; /* virtual size */
  uint32_t l1_size;
  uint64_t l1_offset;
  uint64_t reftable_offset;
  uint32_t reftable_clusters;
  uint32_t nb_snapshots;
  uint64_t incompatible, compatible, autoclear;
  uint32_t refcount_order;
  uint32_t header_length;
  enum qcow2_compression compression;
  uint64_t backing_offset;
  uint32_t backing_size;
  char backing_name[QCOW2_MAX_BACKING_NAME + 1];
  char backing_format[32]; /* from the header extension, or "" */
  bool external_data_file;
};

/* qcow2_header.c: true if buf, the first len bytes of a file, starts
 * with the qcow2 magic (the probe of payload_format_qcow2). */
bool qcow2_probe (const uint8_t *buf, size_t len);
/* Parses the first cluster of an image (buf holds
 * min(file size, 2 MiB) bytes).  Errors name `label` and the field. */
int qcow2_header_parse (const uint8_t *buf, size_t len, uint64_t file_size,
                        const char *label, struct qcow2_header *h);

/* The image: metadata under `lock`; data I/O outside it. */
struct qcow2_l2_slot {
  uint64_t offset; /* host offset of the L2 table, 0 = free */
  uint64_t last_use;
  uint64_t *table; /* host order */
};

struct qcow2 {
  struct node node;
  struct node *file;
  struct qcow2_header h;
  bool writable;
  /* Data transfers outside `lock` (to clusters looked up under it) hold
   * io_lock shared; a discard, which frees clusters for reuse, holds it
   * exclusive, so no transfer lands in a cluster freed under it.  Taken
   * before `lock`. */
  pthread_rwlock_t io_lock;
  pthread_mutex_t lock; /* L1, L2 cache, refcounts, allocation */
  uint64_t *l1;         /* host order */
  uint64_t l2_entries;  /* per table */
  struct qcow2_l2_slot *cache;
  size_t cache_slots;
  uint64_t use_clock;
  uint64_t *reftable; /* host order */
  uint64_t reftable_entries;
  uint64_t next_free;   /* first cluster past the end of the file */
  uint64_t free_hint;   /* no cluster below this one has refcount 0 */
  struct node *backing; /* read-only; NULL without a backing file */
  bool needs_sync;      /* metadata written since the last flush */
  /* Live migration: another host may be writing the image.  Reads then
   * read the metadata afresh each time (inactive_refresh), so no cached
   * table outlives a request.  Under `lock`. */
  bool inactive;
};

/* qcow2_map.c (lock held) */
int qcow2_l2_get (struct qcow2 *q, uint64_t l2_offset, uint64_t **table);
int qcow2_lookup (struct qcow2 *q, uint64_t vcluster, uint64_t *entry);
/* -EIO, naming the cluster, if a standard L2 entry has reserved bits set
 * / if a data cluster's host offset is unaligned, 0 or past the file. */
int qcow2_check_entry (const struct qcow2 *q, uint64_t vcluster,
                       uint64_t entry);
int qcow2_check_data_offset (const struct qcow2 *q, uint64_t host,
                             uint64_t vcluster);
/* -EIO if a compressed entry's bytes start in the header cluster, are
 * longer than two clusters or lie past the file. */
int qcow2_check_compressed (const struct qcow2 *q, uint64_t entry);
int qcow2_set_l2_entry (struct qcow2 *q, uint64_t vcluster, uint64_t entry);
/* Writes table[first, first+n) of the L2 table at l2_offset in one go. */
int qcow2_write_l2_entries (struct qcow2 *q, uint64_t l2_offset,
                            const uint64_t *table, uint64_t first, uint64_t n);
/* Makes what was written so far durable before what follows (no-op if
 * nothing was). */
int qcow2_barrier (struct qcow2 *q);
/* A compressed entry's host byte offset and length. */
void qcow2_compressed_extent (const struct qcow2 *q, uint64_t entry,
                              uint64_t *offset, uint64_t *len);

/* A run of clusters of one kind: `entry` is its first cluster's L2 entry
 * (0: unallocated); data runs are contiguous on disk, a compressed
 * cluster is a run of its own. */
struct qcow2_run {
  uint64_t entry;
  uint64_t clusters;
};
/* qcow2_map.c (takes the lock itself): the runs from vcluster on, at most
 * max_runs of them and QCOW2_WALK_LOCKED entries looked at (an
 * unallocated L2 table counts as one; *looked_at says how many), so they
 * may cover less than `clusters` but cover at least one on success. */
int qcow2_map_runs (struct qcow2 *q, uint64_t vcluster, uint64_t clusters,
                    struct qcow2_run *runs, size_t max_runs, size_t *n_runs,
                    uint64_t *looked_at);

/* qcow2_refcount.c (lock held) */
int qcow2_refcount_update (struct qcow2 *q, uint64_t host_offset, int delta);
int qcow2_alloc_cluster (struct qcow2 *q, uint64_t *host_offset);
/* Drops the references an L2 entry held (normal or compressed data).
 * Only once the entry no longer points there on disk (after a barrier):
 * a crash must never leave an L2 entry on a cluster with refcount 0. */
/* -EIO, before anything changes, if freeing entry's clusters would free
 * metadata (the header, a table) or a compressed extent is invalid: a
 * corrupt entry must fail its request, not punch a hole in the image. */
int qcow2_check_free_entry (struct qcow2 *q, uint64_t entry);
int qcow2_free_entry (struct qcow2 *q, uint64_t entry);

/* qcow2_discard.c: the node's trim op (takes the locks itself). */
int qcow2_discard (struct node *n, uint64_t count, uint64_t offset);

/* qcow2_resize.c: the node's resize op: grows the virtual size (and the
 * L1 table); shrinking is refused.  Takes the lock itself. */
int qcow2_resize (struct node *n, uint64_t size);

/* qcow2_compress.c */
int qcow2_decompress (enum qcow2_compression type, const void *in,
                      size_t in_len, void *out, size_t out_len);

#endif
