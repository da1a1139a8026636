/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the qcow2 node: qcow2 v2/v3 images as a block node.
 *
 * Reads map each cluster through L1/L2 (runs of contiguous clusters go in
 * one pread); unallocated and zero clusters read as zeros, compressed ones
 * are inflated.  Writes into allocated clusters go straight to the file;
 * first writes allocate a cluster at the end of the file, write it whole,
 * count it, persist, and only then link it (copy-on-write for compressed
 * clusters).  Metadata is guarded by one lock per image; data I/O to
 * allocated clusters runs outside it. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/checked.h"
#include "common/error_msg.h"
#include "formats/qcow2.h"

static uint64_t
min_u64 (uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

static int read_backing (struct qcow2 *q, uint8_t *out, uint64_t len,
                         uint64_t offset);

/* Reads a whole compressed cluster into out (cluster_size bytes). */
static int
read_compressed (struct qcow2 *q, uint64_t entry, uint8_t *out)
{
  uint64_t off, len;
  uint8_t *in;
  int r;

  r = qcow2_check_compressed (q, entry);
  if (r < 0)
    return r;
  qcow2_compressed_extent (q, entry, &off, &len);
  len = min_u64 (len, q->next_free - off);
  in = malloc (len);
  if (!in)
    return error_set (-ENOMEM, "out of memory");
  r = node_pread (q->file, in, len, off);
  if (r == 0)
    r = qcow2_decompress (q->h.compression, in, len, out, q->h.cluster_size);
  free (in);
  return r < 0 ? error_prefix (r, "%s", q->node.label) : 0;
}

static int reload (struct qcow2 *q);

/* Inactive (another host writes the image): the file's size, header, L1
 * and refcount tables as they are now, and no L2 table from before.
 * Costs a header and L1 read per request: inactive exports are rarely
 * read (a migration destination reads nothing before switchover). */
static int
inactive_refresh (struct qcow2 *q)
{
  int r = 0;

  pthread_mutex_lock (&q->lock);
  if (q->inactive) {
    for (size_t i = 0; i < q->cache_slots; i++)
      q->cache[i].offset = 0;
    r = node_file_refresh_size (q->file);
    if (r == 0)
      r = reload (q);
  }
  pthread_mutex_unlock (&q->lock);
  return r;
}

static int
qcow2_pread (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  struct qcow2 *q = (struct qcow2 *) n;
  uint8_t *out = buf;
  int r = inactive_refresh (q);

  if (r < 0)
    return r;
  pthread_rwlock_rdlock (&q->io_lock);
  while (count > 0 && r == 0) {
    uint64_t vcluster = offset >> q->h.cluster_bits;
    uint64_t in = offset & (q->h.cluster_size - 1);
    uint64_t len = min_u64 (q->h.cluster_size - in, count);
    uint64_t entry, host = 0;

    pthread_mutex_lock (&q->lock);
    r = qcow2_lookup (q, vcluster, &entry);
    if (r == 0 && (entry & QCOW2_OFLAG_COMPRESSED)) {
      uint8_t *tmp = malloc (q->h.cluster_size);
      r = tmp ? read_compressed (q, entry, tmp) : -ENOMEM;
      if (r == 0)
        memcpy (out, tmp + in, len);
      free (tmp);
      pthread_mutex_unlock (&q->lock);
    } else if (r == 0 && !(entry & QCOW2_OFFSET_MASK) &&
               !(entry & QCOW2_OFLAG_ZERO) && q->backing) {
      pthread_mutex_unlock (&q->lock);
      r = read_backing (q, out, len, offset);
    } else if (r == 0 &&
               (!(entry & QCOW2_OFFSET_MASK) || (entry & QCOW2_OFLAG_ZERO))) {
      pthread_mutex_unlock (&q->lock);
      memset (out, 0, len);
    } else if (r == 0) {
      host = entry & QCOW2_OFFSET_MASK;
      r = qcow2_check_data_offset (q, host, vcluster);
      /* Extend over following clusters that are contiguous on disk. */
      while (r == 0 && len < count) {
        uint64_t next;
        if (qcow2_lookup (q, vcluster + 1, &next) < 0 ||
            (next & (QCOW2_OFLAG_COMPRESSED | QCOW2_OFLAG_ZERO)) ||
            (next & QCOW2_OFFSET_MASK) != host + (len + in) ||
            qcow2_check_data_offset (q, next & QCOW2_OFFSET_MASK,
                                     vcluster + 1) < 0)
          break;
        vcluster++;
        len = min_u64 (len + q->h.cluster_size, count);
      }
      pthread_mutex_unlock (&q->lock);
      if (r == 0)
        r = node_pread (q->file, out, len, host + in);
    } else
      pthread_mutex_unlock (&q->lock);
    out += len;
    offset += len;
    count -= len;
  }
  pthread_rwlock_unlock (&q->io_lock);
  return r;
}

/* First write to a cluster (unallocated, zero, compressed, or shared):
 * build the whole new cluster, allocate, write, persist, link, then drop
 * the old compressed data's references.  Lock held. */
/* Whether rewriting a cluster drops the old entry's references: a
 * compressed one, or data shared with a snapshot (not COPIED). */
static bool
frees_old (uint64_t entry)
{
  return (entry & QCOW2_OFLAG_COMPRESSED) ||
         ((entry & QCOW2_OFFSET_MASK) && !(entry & QCOW2_OFLAG_COPIED) &&
          !(entry & QCOW2_OFLAG_ZERO));
}

static int
write_new_cluster (struct qcow2 *q, uint64_t vcluster, uint64_t entry,
                   const uint8_t *data, uint64_t in, uint64_t len)
{
  void *p = NULL;
  uint64_t host;
  int r = 0;

  /* Page-aligned, so cache=none writes it with O_DIRECT as it is. */
  if (posix_memalign (&p, 4096, q->h.cluster_size) != 0)
    return error_set (-ENOMEM, "out of memory");
  uint8_t *cl = memset (p, 0, q->h.cluster_size);
  if (frees_old (entry))
    r = qcow2_check_free_entry (q, entry); /* before anything changes */
  if (r < 0)
    goto out;
  if (entry & QCOW2_OFLAG_COMPRESSED)
    r = read_compressed (q, entry, cl);
  else if (!entry && q->backing) /* copy-on-write from the backing */
    r = read_backing (q, cl, q->h.cluster_size, vcluster << q->h.cluster_bits);
  else if ((entry & QCOW2_OFFSET_MASK) && !(entry & QCOW2_OFLAG_ZERO))
    r = node_pread (q->file, cl, q->h.cluster_size, entry & QCOW2_OFFSET_MASK);
  if (r < 0)
    goto out;
  memcpy (cl + in, data, len);
  if ((entry & QCOW2_OFLAG_ZERO) && (entry & QCOW2_OFFSET_MASK) &&
      (entry & QCOW2_OFLAG_COPIED))
    host = entry & QCOW2_OFFSET_MASK; /* preallocated zero cluster */
  else
    r = qcow2_alloc_cluster (q, &host);
  if (r == 0)
    r = node_pwrite (q->file, cl, q->h.cluster_size, host, 0);
  if (r == 0) {
    q->needs_sync = true;
    r = qcow2_set_l2_entry (q, vcluster, host | QCOW2_OFLAG_COPIED);
  }
  /* The old data's references go only once the new entry is durable: a
   * crash in between leaks them (qemu-img check -r leaks repairs that),
   * but never leaves the old entry on a cluster counted as free. */
  if (r == 0 && frees_old (entry)) {
    r = qcow2_barrier (q);
    if (r == 0)
      r = qcow2_free_entry (q, entry);
  }
out:
  free (cl);
  return r;
}

static int
qcow2_flush (struct node *n)
{
  struct qcow2 *q = (struct qcow2 *) n;
  int r;

  pthread_mutex_lock (&q->lock);
  q->needs_sync = false;
  r = node_flush (q->file);
  pthread_mutex_unlock (&q->lock);
  return r;
}

static int
qcow2_pwrite (struct node *n, const void *buf, uint64_t count, uint64_t offset,
              int flags)
{
  struct qcow2 *q = (struct qcow2 *) n;
  const uint8_t *data = buf;
  int r = 0;

  pthread_rwlock_rdlock (&q->io_lock);
  while (count > 0 && r == 0) {
    uint64_t vcluster = offset >> q->h.cluster_bits;
    uint64_t in = offset & (q->h.cluster_size - 1);
    uint64_t len = min_u64 (q->h.cluster_size - in, count);
    uint64_t entry;

    pthread_mutex_lock (&q->lock);
    r = qcow2_lookup (q, vcluster, &entry);
    if (r == 0 && (entry & QCOW2_OFLAG_COPIED) &&
        !(entry & (QCOW2_OFLAG_COMPRESSED | QCOW2_OFLAG_ZERO))) {
      uint64_t host = entry & QCOW2_OFFSET_MASK;
      r = qcow2_check_data_offset (q, host, vcluster);
      pthread_mutex_unlock (&q->lock);
      if (r == 0)
        r = node_pwrite (q->file, data, len, host + in, 0);
    } else {
      if (r == 0)
        r = write_new_cluster (q, vcluster, entry, data, in, len);
      pthread_mutex_unlock (&q->lock);
    }
    data += len;
    offset += len;
    count -= len;
  }
  pthread_rwlock_unlock (&q->io_lock);
  if (r == 0 && (flags & NODE_FUA))
    r = qcow2_flush (n);
  return r;
}

/* Unallocated clusters are holes that read as zeros (unless a backing
 * file shows through); zero clusters read as zeros; everything else is
 * data. */
static uint32_t
run_flags (const struct qcow2 *q, uint64_t entry)
{
  if (entry & QCOW2_OFLAG_COMPRESSED)
    return 0;
  if (!(entry & QCOW2_OFFSET_MASK) && !(entry & QCOW2_OFLAG_ZERO) && q->backing)
    return 0; /* from the backing file: data as far as we know */
  if (!(entry & QCOW2_OFFSET_MASK))
    return EXTENT_HOLE | EXTENT_ZERO;
  if (entry & QCOW2_OFLAG_ZERO)
    return EXTENT_ZERO;
  return 0;
}

/* One bounded walk over the map of [offset, offset+count): calls fn for
 * each run (clipped to the range) outside the lock, in batches of
 * qcow2_map_runs, until QCOW2_WALK_BUDGET entries were looked at, and
 * stops early when fn says so.  Returns 0 or fn's / the map's error. */
typedef int (*run_fn) (struct qcow2 *q, const struct qcow2_run *run,
                       uint64_t offset, uint64_t len, void *opaque, bool *stop);

static int
walk (struct qcow2 *q, uint64_t count, uint64_t offset, run_fn fn, void *opaque)
{
  enum { RUNS = 256 };
  struct qcow2_run runs[RUNS];
  uint64_t end = offset + count, budget = QCOW2_WALK_BUDGET;
  bool stop = false;
  int r = inactive_refresh (q);

  while (r == 0 && !stop && offset < end && budget > 0) {
    uint64_t vcluster = offset >> q->h.cluster_bits;
    uint64_t last = (end - 1) >> q->h.cluster_bits, looked_at;
    size_t n;
    r = qcow2_map_runs (q, vcluster, last - vcluster + 1, runs, RUNS, &n,
                        &looked_at);
    budget -= looked_at < budget ? looked_at : budget;
    for (size_t i = 0; r == 0 && !stop && i < n; i++) {
      vcluster += runs[i].clusters;
      uint64_t len = min_u64 (vcluster << q->h.cluster_bits, end) - offset;
      r = fn (q, &runs[i], offset, len, opaque, &stop);
      offset += len;
    }
  }
  return r;
}

static int
extent_of_run (struct qcow2 *q, const struct qcow2_run *run, uint64_t offset,
               uint64_t len, void *opaque, bool *stop)
{
  struct extent_list *out = opaque;
  int r = extent_add (out, offset, len, run_flags (q, run->entry));

  *stop = extent_list_full (out);
  return r;
}

static int
qcow2_extents (struct node *n, uint64_t count, uint64_t offset,
               struct extent_list *out)
{
  return walk ((struct qcow2 *) n, count, offset, extent_of_run, out);
}

/* Warms what a read of the run would touch: its data clusters, its
 * compressed bytes, or the backing file; zero clusters need nothing.
 * Nothing is decompressed. */
static int
prefetch_run (struct qcow2 *q, const struct qcow2_run *run, uint64_t offset,
              uint64_t len, void *opaque, bool *stop)
{
  uint64_t entry = run->entry, host = entry & QCOW2_OFFSET_MASK;
  uint64_t in = offset & (q->h.cluster_size - 1), off, clen;

  (void) opaque;
  *stop = false;
  if (entry & QCOW2_OFLAG_COMPRESSED) {
    qcow2_compressed_extent (q, entry, &off, &clen);
    /* An invalid length is left for the read to report. */
    return clen <= 2 * q->h.cluster_size ? node_prefetch (q->file, clen, off)
                                         : 0;
  }
  if (entry & QCOW2_OFLAG_ZERO)
    return 0;
  if (host)
    return node_prefetch (q->file, len, host + in);
  if (q->backing && offset < q->backing->size)
    return node_prefetch (q->backing, min_u64 (len, q->backing->size - offset),
                          offset);
  return 0;
}

/* NBD_CMD_CACHE: the walk itself loads the L2 tables into the cache. */
static int
qcow2_prefetch (struct node *n, uint64_t count, uint64_t offset)
{
  return walk ((struct qcow2 *) n, count, offset, prefetch_run, NULL);
}

static void
qcow2_close (struct node *n)
{
  struct qcow2 *q = (struct qcow2 *) n;

  for (size_t i = 0; q->cache && i < q->cache_slots; i++)
    free (q->cache[i].table);
  free (q->cache);
  free (q->l1);
  free (q->reftable);
  node_close (q->backing);
  node_close (q->file);
  pthread_mutex_destroy (&q->lock);
  pthread_rwlock_destroy (&q->io_lock);
  free (n->label);
  free (q);
}

static int qcow2_set_active (struct node *n, bool active);

static const struct node_ops qcow2_ops = {
  .name = "qcow2",
  .pread = qcow2_pread,
  .pwrite = qcow2_pwrite,
  .flush = qcow2_flush,
  .trim = qcow2_discard,
  .extents = qcow2_extents,
  .prefetch = qcow2_prefetch,
  .resize = qcow2_resize,
  .set_active = qcow2_set_active,
  .close = qcow2_close,
};

/* Reads a table of big-endian u64 into host order. */
static int
read_table (struct node *file, uint64_t offset, uint64_t entries,
            uint64_t **out)
{
  uint64_t *t = malloc (entries * 8 + 1);
  int r;

  if (!t)
    return error_set (-ENOMEM, "out of memory");
  r = node_pread (file, t, entries * 8, offset);
  if (r < 0) {
    free (t);
    return r;
  }
  for (uint64_t i = 0; i < entries; i++)
    t[i] = load_be64 ((uint8_t *) t + i * 8);
  *out = t;
  return 0;
}

static int
refuse_for_writing (const struct qcow2 *q)
{
  const char *l = q->node.label;

  if (q->h.incompatible & QCOW2_INCOMPAT_CORRUPT)
    return error_set (-EROFS,
                      "%s: qcow2 image is marked corrupt; open it "
                      "read-only or repair it with qemu-img check -r all",
                      l);
  if (q->h.incompatible & QCOW2_INCOMPAT_DIRTY)
    return error_set (-EROFS,
                      "%s: qcow2 image is dirty (lazy refcounts); "
                      "repair it with qemu-img check -r all",
                      l);
  if (q->h.nb_snapshots)
    return error_set (-ENOTSUP,
                      "%s: qcow2 internal snapshots are not "
                      "supported for writing; open read-only",
                      l);
  if (q->h.refcount_order != 4)
    return error_set (-ENOTSUP,
                      "%s: qcow2 refcount_order %u is not "
                      "supported for writing (only 16-bit refcounts)",
                      l, q->h.refcount_order);
  return 0;
}

static int qcow2_open_depth (struct node *file, uint64_t cache_bytes,
                             bool allow_backing, int depth, struct node **out);

/* Lock held, the file active again: the header, L1 and refcount tables
 * as another host (the migration source) left them.  The geometry must
 * be the one served so far: a client already knows the size. */
static int
reload (struct qcow2 *q)
{
  struct node *file = q->file;
  size_t head_len = (size_t) min_u64 (file->size, 1 << QCOW2_MAX_CLUSTER_BITS);
  uint8_t *head = malloc (head_len + 1);
  struct qcow2_header h;
  uint64_t *l1 = NULL, *reftable = NULL;
  int r;

  if (!head)
    return error_set (-ENOMEM, "out of memory");
  r = node_pread (file, head, head_len, 0);
  if (r == 0)
    r = qcow2_header_parse (head, head_len, file->size, file->label, &h);
  free (head);
  if (r == 0 && (h.size != q->h.size || h.cluster_bits != q->h.cluster_bits ||
                 h.backing_offset != q->h.backing_offset))
    r = error_set (-ESTALE,
                   "%s: qcow2 size, cluster size or backing file changed "
                   "while the export was inactive",
                   file->label);
  uint64_t ref_entries = ((uint64_t) h.reftable_clusters << h.cluster_bits) / 8;
  if (r == 0 && (r = read_table (file, h.l1_offset, h.l1_size, &l1)) == 0)
    r = read_table (file, h.reftable_offset, ref_entries, &reftable);
  if (r < 0) {
    free (l1);
    return r;
  }
  free (q->l1);
  free (q->reftable);
  q->h = h;
  q->l1 = l1;
  q->reftable = reftable;
  q->reftable_entries = ref_entries;
  q->next_free =
    (file->size + q->h.cluster_size - 1) & ~(q->h.cluster_size - 1);
  q->free_hint = 0;
  return q->writable ? refuse_for_writing (q) : 0;
}

/* Inactive: no L2 table stays cached and the file lets go of its lock.
 * Active: everything cached is read again (the source host wrote the
 * image meanwhile).  The caller flushed first and runs no op meanwhile;
 * reads while inactive read the metadata afresh (inactive_refresh). */
static int
qcow2_set_active (struct node *n, bool active)
{
  struct qcow2 *q = (struct qcow2 *) n;
  int r;

  pthread_mutex_lock (&q->lock);
  for (size_t i = 0; i < q->cache_slots; i++)
    q->cache[i].offset = 0;
  r = node_set_active (q->file, active);
  if (r == 0 && active)
    r = reload (q);
  q->inactive = !active || r < 0;
  pthread_mutex_unlock (&q->lock);
  return r;
}

/* The backing file, read-only, named relative to the image's directory:
 * only with payload-backing=on, never json: names, at most 16 deep. */
static int
open_backing (struct qcow2 *q, bool allow, int depth)
{
  const char *name = q->h.backing_name, *label = q->node.label;
  char *path = NULL;
  struct node *file;
  int r;

  if (strncmp (name, "json:", 5) == 0)
    return error_set (-EPERM,
                      "%s: qcow2 backing file '%.40s...' is a json: "
                      "name; those are always refused",
                      label, name);
  if (!allow)
    return error_set (-EPERM,
                      "%s: qcow2 image has a backing file (%s); "
                      "backing chains are refused unless the export says "
                      "payload-backing=on",
                      label, name);
  if (depth >= QCOW2_MAX_BACKING_DEPTH)
    return error_set (-ELOOP, "%s: qcow2 backing chain deeper than %d", label,
                      QCOW2_MAX_BACKING_DEPTH);
  if (name[0] == '/')
    path = strdup (name);
  else if (node_is_uri (label))
    return error_set (-EINVAL,
                      "%s: relative backing file '%s' of a remote "
                      "image",
                      label, name);
  else {
    const char *slash = strrchr (label, '/');
    int dir = slash ? (int) (slash - label) + 1 : 0;
    if (asprintf (&path, "%.*s%s", dir, label, name) < 0)
      path = NULL;
  }
  if (!path)
    return error_set (-ENOMEM, "out of memory");
  r = node_file_open (path, true, &file);
  free (path);
  if (r < 0)
    return error_prefix (r, "%s: backing file", label);
  bool is_qcow2 = strcmp (q->h.backing_format, "qcow2") == 0;
  if (!q->h.backing_format[0]) {
    uint8_t magic[4];
    is_qcow2 = file->size >= sizeof magic &&
               node_pread (file, magic, sizeof magic, 0) == 0 &&
               qcow2_probe (magic, sizeof magic);
  } else if (!is_qcow2 && strcmp (q->h.backing_format, "raw") != 0) {
    node_close (file);
    return error_set (-ENOTSUP, "%s: backing format '%s' is not supported",
                      label, q->h.backing_format);
  }
  if (!is_qcow2) {
    q->backing = file;
    return 0;
  }
  r = qcow2_open_depth (file, QCOW2_DEFAULT_CACHE_BYTES, true, depth + 1,
                        &q->backing);
  if (r < 0)
    node_close (file);
  return r;
}

/* Reads [offset, offset+len) of the backing file; zeros past its end. */
static int
read_backing (struct qcow2 *q, uint8_t *out, uint64_t len, uint64_t offset)
{
  uint64_t have = 0;

  if (q->backing && offset < q->backing->size)
    have = min_u64 (len, q->backing->size - offset);
  memset (out + have, 0, len - have);
  return have ? node_pread (q->backing, out, have, offset) : 0;
}

/* Writer-preferring, so a discard is not starved by a stream of I/O. */
static void
init_io_lock (struct qcow2 *q)
{
  pthread_rwlockattr_t a;

  pthread_rwlockattr_init (&a);
  pthread_rwlockattr_setkind_np (&a,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&q->io_lock, &a);
  pthread_rwlockattr_destroy (&a);
}

int
node_qcow2_open (struct node *file, uint64_t cache_bytes, bool allow_backing,
                 struct node **out)
{
  return qcow2_open_depth (file, cache_bytes, allow_backing, 0, out);
}

static int
open_payload (struct node *file, const struct stack_spec *spec,
              struct node **out)
{
  uint64_t cache = spec->qcow2_cache_bytes ? spec->qcow2_cache_bytes
                                           : QCOW2_DEFAULT_CACHE_BYTES;
  return node_qcow2_open (file, cache, spec->payload_backing, out);
}

const struct payload_format payload_format_qcow2 = {
  .name = "qcow2",
  .probe = qcow2_probe,
  .open = open_payload,
};

static int
qcow2_open_depth (struct node *file, uint64_t cache_bytes, bool allow_backing,
                  int depth, struct node **out)
{
  struct qcow2 *q = calloc (1, sizeof *q);
  size_t head_len = (size_t) min_u64 (file->size, 1 << QCOW2_MAX_CLUSTER_BITS);
  uint8_t *head = malloc (head_len + 1);
  int r;

  if (!q || !head) {
    free (q);
    free (head);
    return error_set (-ENOMEM, "out of memory");
  }
  pthread_mutex_init (&q->lock, NULL);
  init_io_lock (q);
  q->file = file;
  file->past_end_ok = true; /* new clusters go past its end */
  q->node.label = strdup (file->label);
  r = node_pread (file, head, head_len, 0);
  if (r == 0)
    r = qcow2_header_parse (head, head_len, file->size, file->label, &q->h);
  free (head);
  if (r < 0)
    goto fail;
  if (q->h.external_data_file ||
      (q->h.incompatible & QCOW2_INCOMPAT_DATA_FILE)) {
    r = error_set (-ENOTSUP,
                   "%s: qcow2 external data files are not "
                   "supported",
                   file->label);
    goto fail;
  }
  if (q->h.backing_offset && (r = open_backing (q, allow_backing, depth)) < 0)
    goto fail;
  q->writable = !file->readonly;
  if (q->writable && (r = refuse_for_writing (q)) < 0)
    goto fail;
  q->l2_entries = q->h.cluster_size / 8;
  q->next_free =
    (file->size + q->h.cluster_size - 1) & ~(q->h.cluster_size - 1);
  q->reftable_entries =
    ((uint64_t) q->h.reftable_clusters << q->h.cluster_bits) / 8;
  if ((r = read_table (file, q->h.l1_offset, q->h.l1_size, &q->l1)) < 0 ||
      (r = read_table (file, q->h.reftable_offset, q->reftable_entries,
                       &q->reftable)) < 0)
    goto fail;
  q->cache_slots = cache_bytes / q->h.cluster_size;
  if (q->cache_slots < 2)
    q->cache_slots = 2;
  q->cache = calloc (q->cache_slots, sizeof *q->cache);
  if (!q->cache) {
    r = error_set (-ENOMEM, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < q->cache_slots; i++)
    if (!(q->cache[i].table = malloc (q->h.cluster_size))) {
      r = error_set (-ENOMEM, "out of memory");
      goto fail;
    }
  q->node.ops = &qcow2_ops;
  q->node.size = q->h.size;
  q->node.block_size = 1;
  q->node.readonly = file->readonly;
  *out = &q->node;
  return 0;

fail:
  q->file = NULL; /* the caller still owns the file node */
  node_close (q->backing);
  for (size_t i = 0; q->cache && i < q->cache_slots; i++)
    free (q->cache[i].table);
  free (q->cache);
  free (q->l1);
  free (q->reftable);
  pthread_mutex_destroy (&q->lock);
  pthread_rwlock_destroy (&q->io_lock);
  free (q->node.label);
  free (q);
  return r;
}
