/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the file node: pread/pwrite/fdatasync on a regular file or
 * block device. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "formats/file_locks.h"
#include "formats/node.h"

struct file_node {
  struct node node;
  int fd;
  /* cache=none: a second descriptor with O_DIRECT that every transfer
   * uses (the first one serves flushes, fallocate and SEEK_DATA); -1
   * otherwise. */
  int direct_fd;
  unsigned dio_mem_align, dio_offset_align;
  /* cache=none: a transfer O_DIRECT cannot take as it is (a partial
   * block, an unaligned buffer) is read-modify-written through an aligned
   * bounce buffer, holding this exclusive; direct writes hold it shared,
   * so none lands between such a read and its write. */
  pthread_rwlock_t rmw;
  /* After a failed fdatasync the kernel may have dropped the dirty pages
   * and cleared the error: a later fdatasync could succeed although
   * writes were lost.  So one failure fails every later flush. */
  atomic_int flush_errno;
  /* Image locking: the lock this node takes when active (lock_wanted,
   * exclusive or not) and whether it holds it now.  Changed only by
   * node_file_lock and set_active, which run with no op in flight. */
  bool lock_wanted, lock_exclusive, locked;
  atomic_bool no_nowait; /* preadv2 refused RWF_NOWAIT here */
};

/* Direct I/O needs the buffer, offset and length aligned as the file
 * system says. */
static bool
dio_aligned (const struct file_node *f, const void *buf, uint64_t count,
             uint64_t offset)
{
  return (uintptr_t) buf % f->dio_mem_align == 0 &&
         offset % f->dio_offset_align == 0 && count % f->dio_offset_align == 0;
}

/* One loop for both directions: retries short transfers and EINTR. */
static int
fd_io (struct node *n, int fd, bool write, void *buf, uint64_t count,
       uint64_t offset)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = write ? pwrite (fd, p, count, (off_t) offset)
                      : pread (fd, p, count, (off_t) offset);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return error_set (-errno, "%s: %s at %llu: %s", n->label,
                        write ? "write" : "read", (unsigned long long) offset,
                        strerror (errno));
    if (r == 0)
      return error_set (-EIO, "%s: unexpected end of file at %llu", n->label,
                        (unsigned long long) offset);
    p += r;
    count -= (uint64_t) r;
    offset += (uint64_t) r;
  }
  return 0;
}

/* Reads whole blocks [start, start+len) with O_DIRECT.  What lies past
 * the end of the file reads as zeros; `need` bytes must exist. */
static int
direct_read_blocks (struct file_node *f, char *bounce, uint64_t len,
                    uint64_t start, uint64_t need)
{
  ssize_t r;

  do
    r = pread (f->direct_fd, bounce, len, (off_t) start);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return error_set (-errno, "%s: read at %llu: %s", f->node.label,
                      (unsigned long long) start, strerror (errno));
  if ((uint64_t) r < need)
    return error_set (-EIO, "%s: unexpected end of file at %llu", f->node.label,
                      (unsigned long long) (start + r));
  memset (bounce + r, 0, len - (uint64_t) r);
  return 0;
}

/* Bounce buffers hold at most this much of a transfer at a time. */
#define BOUNCE_CHUNK (1024 * 1024)

/* One window of a bounced transfer: [offset, offset+n) of the caller's
 * within whole blocks [start, end).  Writes hold the rmw lock:
 * exclusive if a block is partial, else shared. */
static int
bounce_window (struct file_node *f, bool write, char *p, uint64_t n,
               uint64_t offset, char *bounce)
{
  uint64_t a = f->dio_offset_align;
  uint64_t start = offset / a * a, end = (offset + n + a - 1) / a * a;
  off_t eof = 0;
  int r = 0;

  if (!write) {
    r = direct_read_blocks (f, bounce, end - start, start, offset + n - start);
    if (r == 0)
      memcpy (p, bounce + (offset - start), n);
    return r;
  }
  /* Only a partial first or last block needs its old contents. */
  if (offset != start)
    r = direct_read_blocks (f, bounce, a, start, 0);
  if (r == 0 && (offset + n) % a && (end - a > start || offset == start))
    r = direct_read_blocks (f, bounce + (end - a - start), a, end - a, 0);
  /* A partial last block may lie past a regular file's end: the file
   * must end where the write (or the file) ended, not at the block's. */
  if (r == 0 && (offset + n) % a &&
      (eof = lseek (f->direct_fd, 0, SEEK_END)) < 0)
    r = error_set (-errno, "%s: %s", f->node.label, strerror (errno));
  if (r < 0)
    return r;
  memcpy (bounce + (offset - start), p, n);
  r = fd_io (&f->node, f->direct_fd, true, bounce, end - start, start);
  if (r == 0 && (offset + n) % a && end > (uint64_t) eof &&
      ftruncate (f->fd,
                 (off_t) (offset + n > (uint64_t) eof ? offset + n
                                                      : (uint64_t) eof)) < 0)
    r = error_set (-errno, "%s: truncating to the written end: %s",
                   f->node.label, strerror (errno));
  return r;
}

/* cache=none never uses the page cache, not even for what O_DIRECT
 * cannot take: a buffered write racing a direct one within the same page
 * leaves a dirty page the kernel cannot invalidate ("Page cache
 * invalidation failure on direct I/O"), whose writeback later undoes the
 * direct write (seen on a block device, where nothing serialises the two:
 * tests/server/test-cache-none-coherence.sh).  Such transfers are bounced
 * through aligned memory, still with O_DIRECT. */
static int
bounced_io (struct file_node *f, bool write, char *p, uint64_t count,
            uint64_t offset)
{
  uint64_t a = f->dio_offset_align;
  size_t align =
    f->dio_mem_align < sizeof (void *) ? sizeof (void *) : f->dio_mem_align;
  void *bounce = NULL;
  int r = 0;

  if (posix_memalign (&bounce, align,
                      (count < BOUNCE_CHUNK ? count : BOUNCE_CHUNK) + 2 * a) !=
      0)
    return error_set (-ENOMEM, "out of memory");
  /* Only partial blocks are read-modify-written; a misaligned buffer
   * alone is copied and written like any direct write. */
  if (write && (offset % a || count % a))
    pthread_rwlock_wrlock (&f->rmw);
  else if (write)
    pthread_rwlock_rdlock (&f->rmw);
  while (r == 0 && count > 0) {
    uint64_t lead = offset % a;
    uint64_t n = count < BOUNCE_CHUNK - lead ? count : BOUNCE_CHUNK - lead;
    r = bounce_window (f, write, p, n, offset, bounce);
    p += n;
    offset += n;
    count -= n;
  }
  if (write)
    pthread_rwlock_unlock (&f->rmw);
  free (bounce);
  return r;
}

static int
file_io (struct node *n, bool write, void *buf, uint64_t count, uint64_t offset)
{
  struct file_node *f = (struct file_node *) n;
  int r;

  if (f->direct_fd < 0)
    return fd_io (n, f->fd, write, buf, count, offset);
  if (!dio_aligned (f, buf, count, offset))
    return bounced_io (f, write, buf, count, offset);
  if (!write)
    return fd_io (n, f->direct_fd, false, buf, count, offset);
  pthread_rwlock_rdlock (&f->rmw);
  r = fd_io (n, f->direct_fd, true, buf, count, offset);
  pthread_rwlock_unlock (&f->rmw);
  return r;
}

static int
file_pread (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  return file_io (n, false, buf, count, offset);
}

/* preadv2 with RWF_NOWAIT: the kernel reads only what the page cache
 * holds and answers EAGAIN rather than wait for the disk.  A file system
 * without it (EOPNOTSUPP) is not asked again.  Under cache=none every
 * read goes to the disk: never. */
static int
file_pread_cached (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  struct file_node *f = (struct file_node *) n;
  struct iovec iov = { .iov_base = buf, .iov_len = count };
  ssize_t r;

  if (f->direct_fd >= 0 ||
      atomic_load_explicit (&f->no_nowait, memory_order_relaxed))
    return -EAGAIN;
  r = preadv2 (f->fd, &iov, 1, (off_t) offset, RWF_NOWAIT);
  if (r < 0 && (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL))
    atomic_store_explicit (&f->no_nowait, true, memory_order_relaxed);
  return r >= 0 && (uint64_t) r == count ? 0 : -EAGAIN;
}

static int
file_flush (struct node *n)
{
  struct file_node *f = (struct file_node *) n;
  int earlier = atomic_load (&f->flush_errno);

  if (earlier)
    return error_set (-earlier,
                      "%s: an earlier fdatasync failed (%s): writes may "
                      "have been lost, so no flush succeeds any more",
                      n->label, strerror (earlier));
  if (fdatasync (f->fd) < 0) {
    int e = errno;
    atomic_store (&f->flush_errno, e);
    return error_set (-e, "%s: fdatasync: %s", n->label, strerror (e));
  }
  return 0;
}

static int
file_pwrite (struct node *n, const void *buf, uint64_t count, uint64_t offset,
             int flags)
{
  /* file_io does not write through p when writing; the cast is safe. */
  int r = file_io (n, true, (void *) buf, count, offset);

  if (r == 0 && (flags & NODE_FUA))
    r = file_flush (n);
  return r;
}

/* fallocate, excluding cache=none read-modify-writes, which could
 * otherwise write back what it just punched or zeroed. */
static int
file_fallocate (struct file_node *f, int mode, uint64_t count, uint64_t offset)
{
  int r;

  if (f->direct_fd >= 0)
    pthread_rwlock_wrlock (&f->rmw);
  r = fallocate (f->fd, mode, (off_t) offset, (off_t) count);
  if (f->direct_fd >= 0)
    pthread_rwlock_unlock (&f->rmw);
  return r;
}

static int
file_trim (struct node *n, uint64_t count, uint64_t offset)
{
  struct file_node *f = (struct file_node *) n;

  if (file_fallocate (f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, count,
                      offset) < 0)
    return error_set (errno == EOPNOTSUPP ? -ENOTSUP : -errno,
                      "%s: punching a hole: %s", n->label, strerror (errno));
  return 0;
}

static int
file_zero (struct node *n, uint64_t count, uint64_t offset, int flags)
{
  struct file_node *f = (struct file_node *) n;
  int r = 0;

  if (file_fallocate (f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, count,
                      offset) < 0 &&
      file_fallocate (f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, count,
                      offset) < 0) {
    /* No fallocate here: write the zeros. */
    static const char zeros[65536];
    for (uint64_t done = 0; r == 0 && done < count; done += sizeof zeros) {
      uint64_t len = count - done < sizeof zeros ? count - done : sizeof zeros;
      r = file_io (n, true, (void *) zeros, len, offset + done);
    }
  }
  if (r == 0 && (flags & NODE_FUA))
    r = file_flush (n);
  return r;
}

/* Data and holes from SEEK_DATA/SEEK_HOLE; a hole reads as zeros. */
static int
file_extents (struct node *n, uint64_t count, uint64_t offset,
              struct extent_list *out)
{
  struct file_node *f = (struct file_node *) n;
  uint64_t end = offset + count, pos = offset;
  int r = 0;

  while (r == 0 && pos < end && !extent_list_full (out)) {
    off_t data = lseek (f->fd, (off_t) pos, SEEK_DATA);
    if (data < 0 && errno != ENXIO)
      return extent_add (out, pos, end - pos, 0); /* unknown: data */
    uint64_t d = data < 0 || (uint64_t) data > end ? end : (uint64_t) data;
    r = extent_add (out, pos, d - pos, EXTENT_HOLE | EXTENT_ZERO);
    if (r < 0 || d == end)
      break;
    off_t hole = lseek (f->fd, data, SEEK_HOLE);
    uint64_t h = hole < 0 || (uint64_t) hole > end ? end : (uint64_t) hole;
    r = extent_add (out, d, h - d, 0);
    pos = h;
  }
  return r;
}

/* Asks the kernel to read the range ahead (it bounds the readahead
 * itself).  Under cache=none the payload's data bypasses the page cache,
 * so warming it would only evict pages someone else uses. */
static int
file_prefetch (struct node *n, uint64_t count, uint64_t offset)
{
  struct file_node *f = (struct file_node *) n;

  if (f->direct_fd < 0)
    (void) posix_fadvise (f->fd, (off_t) offset, (off_t) count,
                          POSIX_FADV_WILLNEED); /* advice: errors ignored */
  return 0;
}

/* QEMU's image locking (block/file-posix.c), so that QEMU and luks-nbd
 * see each other's locks: one byte per permission a user holds at
 * LOCK_PERM_BASE + bit, and one per permission it does not let others
 * take at LOCK_SHARED_BASE + bit, all as shared OFD locks; an opener then
 * tests (as if for an exclusive lock) the bytes that contradict it.
 * Readers hold CONSISTENT_READ and refuse writers and resizers, so they
 * share with each other and with `qemu-io -r` or `qemu-img compare`; a
 * writer also holds WRITE and RESIZE (a qcow2 payload grows) and, as a
 * QEMU guest disk does, lets others read but not write or resize. */
enum { LOCK_PERM_BASE = 100, LOCK_SHARED_BASE = 200 };
enum {
  PERM_CONSISTENT_READ = 1 << 0,
  PERM_WRITE = 1 << 1,
  PERM_WRITE_UNCHANGED = 1 << 2,
  PERM_RESIZE = 1 << 3,
  PERM_BITS = 4
};

/* 0, -EAGAIN if another open file holds a conflicting lock, or -errno. */
static int
lock_byte (int fd, off_t byte, bool test_only)
{
  struct flock fl = { .l_type = test_only ? F_WRLCK : F_RDLCK,
                      .l_whence = SEEK_SET,
                      .l_start = byte,
                      .l_len = 1 };

  if (fcntl (fd, test_only ? F_OFD_GETLK : F_OFD_SETLK, &fl) < 0)
    return errno == EACCES ? -EAGAIN : -errno;
  return test_only && fl.l_type != F_UNLCK ? -EAGAIN : 0;
}

/* Takes the bytes for perm and ~shared, then tests the others' bytes
 * (QEMU's raw_apply_lock_bytes and raw_check_lock_bytes, in that order,
 * so of two openers racing at least one sees the other). */
static int
lock_perms (int fd, unsigned perm, unsigned shared)
{
  int r = 0;

  for (unsigned i = 0; r == 0 && i < PERM_BITS; i++) {
    if (perm & (1u << i))
      r = lock_byte (fd, LOCK_PERM_BASE + i, false);
    if (r == 0 && !(shared & (1u << i)))
      r = lock_byte (fd, LOCK_SHARED_BASE + i, false);
  }
  for (unsigned i = 0; r == 0 && i < PERM_BITS; i++) {
    if (perm & (1u << i))
      r = lock_byte (fd, LOCK_SHARED_BASE + i, true);
    if (r == 0 && !(shared & (1u << i)))
      r = lock_byte (fd, LOCK_PERM_BASE + i, true);
  }
  return r;
}

int
node_file_lock (struct node *n, bool exclusive)
{
  struct file_node *f = (struct file_node *) n;
  unsigned perm = PERM_CONSISTENT_READ;
  unsigned shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
  struct stat st;
  char holder[256];
  int r;

  if (exclusive)
    perm |= PERM_WRITE | PERM_RESIZE;
  if (fstat (f->fd, &st) < 0)
    return error_set (-errno, "%s: %s", n->label, strerror (errno));
  f->lock_wanted = true;
  f->lock_exclusive = exclusive;
  r = lock_perms (f->fd, perm, shared);
  if (r == 0 && (r = file_locks_add (n, st.st_dev, st.st_ino, n->label)) == 0)
    f->locked = true;
  if (r == 0 || r == -ENOMEM)
    return r;
  /* Bytes taken before the conflict go when the caller closes the node
   * (or, on activation, at once: unlock_all). */
  if (r == -EAGAIN &&
      file_locks_holder (st.st_dev, st.st_ino, holder, sizeof holder))
    return error_set (-EBUSY,
                      "%s: this luks-nbd already uses the file (opened as "
                      "%s by another export): two exports of one payload "
                      "keep separate caches and do not see each other's "
                      "writes (a qcow2 payload would be corrupted); serve "
                      "it in one export, or make both readonly=on",
                      n->label, holder);
  if (r == -EAGAIN)
    return error_set (-EBUSY,
                      "%s: in use by another process (a luks-nbd, qemu or "
                      "qemu-nbd holds a lock on it); locking=off overrides",
                      n->label);
  return error_set (r, "%s: locking: %s", n->label, strerror (-r));
}

void
node_file_lock_later (struct node *n, bool exclusive)
{
  struct file_node *f = (struct file_node *) n;

  f->lock_wanted = true;
  f->lock_exclusive = exclusive;
}

/* Every lock byte this descriptor holds (OFD locks belong to it). */
static int
unlock_all (struct file_node *f)
{
  struct flock fl = { .l_type = F_UNLCK,
                      .l_whence = SEEK_SET,
                      .l_start = LOCK_PERM_BASE,
                      .l_len = LOCK_SHARED_BASE + PERM_BITS - LOCK_PERM_BASE };

  file_locks_remove (&f->node);
  f->locked = false;
  if (fcntl (f->fd, F_OFD_SETLK, &fl) < 0)
    return error_set (-errno, "%s: unlocking: %s", f->node.label,
                      strerror (errno));
  return 0;
}

static const struct node_ops file_ops;

/* Inactive: no lock and nothing of the file in our page cache (another
 * host writes it next: a network file system's cache could go stale).
 * Active: the lock again, and the size as the other host left it. */
static int
file_set_active (struct node *n, bool active)
{
  struct file_node *f = (struct file_node *) n;
  int r = 0;

  if (!active) {
    posix_fadvise (f->fd, 0, 0, POSIX_FADV_DONTNEED);
    return f->locked ? unlock_all (f) : 0;
  }
  posix_fadvise (f->fd, 0, 0, POSIX_FADV_DONTNEED);
  if (f->lock_wanted && !f->locked &&
      (r = node_file_lock (n, f->lock_exclusive)) < 0) {
    unlock_all (f); /* bytes taken before the conflict */
    return r;
  }
  return node_file_refresh_size (n);
}

int
node_file_refresh_size (struct node *n)
{
  struct stat st;

  if (n->ops != &file_ops)
    return 0;
  if (fstat (((struct file_node *) n)->fd, &st) < 0)
    return error_set (-errno, "%s: %s", n->label, strerror (errno));
  if (S_ISREG (st.st_mode))
    n->size = (uint64_t) st.st_size;
  return 0;
}

static void
file_close (struct node *n)
{
  struct file_node *f = (struct file_node *) n;

  file_locks_remove (n);
  close (f->fd);
  if (f->direct_fd >= 0)
    close (f->direct_fd);
  pthread_rwlock_destroy (&f->rmw);
  free (n->label);
  free (f);
}

/* As qemu-img resize does for a raw file without preallocation: a
 * sparse ftruncate, made durable with fsync (the size is metadata).  A
 * block device cannot grow here: it must be large enough already (grown
 * with lvextend or the like). */
static int
file_resize (struct node *n, uint64_t size)
{
  struct file_node *f = (struct file_node *) n;
  struct stat st;
  off_t end;

  if (size > INT64_MAX)
    return error_set (-EFBIG, "%s: %llu bytes is too large", n->label,
                      (unsigned long long) size);
  if (fstat (f->fd, &st) < 0)
    return error_set (-errno, "%s: %s", n->label, strerror (errno));
  if (S_ISBLK (st.st_mode)) {
    if ((end = lseek (f->fd, 0, SEEK_END)) < 0)
      return error_set (-errno, "%s: %s", n->label, strerror (errno));
    if (size > (uint64_t) end)
      return error_set (-ENOSPC,
                        "%s: the block device has only %llu bytes (%llu "
                        "needed); grow the device first",
                        n->label, (unsigned long long) end,
                        (unsigned long long) size);
  } else if ((size < n->size || (uint64_t) st.st_size < size) &&
             (ftruncate (f->fd, (off_t) size) < 0 || fsync (f->fd) < 0))
    /* Growing never truncates: a file extended behind our back (its
     * size when opened is what n->size says) is large enough already. */
    return error_set (-errno, "%s: resizing to %llu bytes: %s", n->label,
                      (unsigned long long) size, strerror (errno));
  n->size = size;
  return 0;
}

static const struct node_ops file_ops = {
  .name = "file",
  .pread = file_pread,
  .pwrite = file_pwrite,
  .flush = file_flush,
  .trim = file_trim,
  .zero = file_zero,
  .extents = file_extents,
  .prefetch = file_prefetch,
  .resize = file_resize,
  .set_active = file_set_active,
  .pread_cached = file_pread_cached,
  .close = file_close,
};

/* Writer-preferring: a stream of direct writes must not starve the
 * occasional read-modify-write. */
static void
init_rmw_lock (struct file_node *f)
{
  pthread_rwlockattr_t a;

  pthread_rwlockattr_init (&a);
  pthread_rwlockattr_setkind_np (&a,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&f->rmw, &a);
  pthread_rwlockattr_destroy (&a);
}

int
node_file_open (const char *path, bool readonly, struct node **out)
{
  struct file_node *f;
  struct stat st;
  off_t end;
  /* O_NONBLOCK for the open only: opening a FIFO for reading waits for
   * a writer, which would hold a worker (export-add) or startup for
   * ever; a FIFO is refused below anyway. */
  int fd = open (path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK);

  if (fd < 0)
    return error_set (-errno, "%s: %s", path, strerror (errno));
  if (fstat (fd, &st) < 0) {
    int e = errno;
    close (fd);
    return error_set (-e, "%s: %s", path, strerror (e));
  }
  if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode)) {
    close (fd);
    return error_set (-EINVAL, "%s: not a regular file or block device", path);
  }
  if (fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) & ~O_NONBLOCK) < 0 ||
      (end = lseek (fd, 0, SEEK_END)) < 0) {
    int e = errno;
    close (fd);
    return error_set (-e, "%s: %s", path, strerror (e));
  }
  f = calloc (1, sizeof *f);
  if (!f || !(f->node.label = strdup (path))) {
    free (f);
    close (fd);
    return error_set (-ENOMEM, "out of memory");
  }
  /* Reads on the loop thread (file_pread_cached) must not wait, but a
   * read after a write updates the access time (relatime), which on ext4
   * starts a journal transaction inside the read.  A disk image's atime
   * tells nobody anything: not updated where the kernel lets us (the
   * owner or CAP_FOWNER; elsewhere reads update it as before). */
  (void) fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) | O_NOATIME);
  f->fd = fd;
  f->direct_fd = -1;
  init_rmw_lock (f);
  f->node.ops = &file_ops;
  f->node.size = (uint64_t) end;
  f->node.block_size = 1;
  f->node.past_end_ok = true; /* others may change the file's size */
  f->node.readonly = readonly;
  *out = &f->node;
  return 0;
}

/* Alignment when statx cannot tell (older kernels, some block devices):
 * a page satisfies every device we know of. */
#define DIO_ALIGN_FALLBACK 4096

int
node_file_set_direct (struct node *n)
{
  struct file_node *f = (struct file_node *) n;
  struct statx stx;
  struct stat a, b;
  int fd;

  if (n->ops != &file_ops)
    return error_set (-EINVAL, "%s: cache=none needs a file or block device",
                      n->label);
  /* Reopened by path; the inode check catches a file renamed over it in
   * between. */
  fd =
    open (n->label, (n->readonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC);
  if (fd < 0)
    return error_set (
      errno == EINVAL ? -ENOTSUP : -errno,
      "%s: cache=none: opening with O_DIRECT: %s%s", n->label, strerror (errno),
      errno == EINVAL ? " (the file system has no direct I/O)" : "");
  if (fstat (f->fd, &a) < 0 || fstat (fd, &b) < 0 || a.st_dev != b.st_dev ||
      a.st_ino != b.st_ino) {
    close (fd);
    return error_set (-ESTALE,
                      "%s: cache=none: the file changed while it "
                      "was being opened",
                      n->label);
  }
  f->dio_mem_align = f->dio_offset_align = DIO_ALIGN_FALLBACK;
  if (statx (fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
      (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
    f->dio_mem_align = stx.stx_dio_mem_align ? stx.stx_dio_mem_align : 1;
    f->dio_offset_align = stx.stx_dio_offset_align;
  }
  f->direct_fd = fd;
  return 0;
}
