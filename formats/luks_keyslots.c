/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: keyslot edits on a served export's header file.  The header
 * is opened read-write beside the export's read-only header node, under
 * the lock cryptsetup takes to write metadata (lib/utils_device_locking.c:
 * flock on the header file itself, or on /run/cryptsetup/L_MAJ:MIN for a
 * block device), re-read under that lock, and edited by crypto/ with the
 * volume key the export serves with: no passphrase is needed but the new
 * one.  Runs on a thread of its own (a KDF runs): never the loop. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "crypto/luks.h"
#include "formats/node.h"

/* cryptsetup's DEFAULT_LUKS2_LOCK_PATH. */
#define CRYPTSETUP_LOCK_DIR "/run/cryptsetup"

struct hdr_file {
  int fd, lock_fd; /* lock_fd: fd itself, or a block device's lock file */
  const char *path;
  struct luks_source src;
  struct luks_header *hdr;
};

/* All count bytes at offset, read or written (EINTR retried): one loop
 * for both directions. */
static int
hf_io (struct hdr_file *h, bool write, void *buf, size_t count, uint64_t offset)
{
  for (size_t done = 0; done < count;) {
    char *p = (char *) buf + done;
    off_t at = (off_t) (offset + done);
    ssize_t n = write ? pwrite (h->fd, p, count - done, at)
                      : pread (h->fd, p, count - done, at);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return error_set (n < 0 ? -errno : -EIO, "%s: %s %zu bytes at %llu: %s",
                        h->path, write ? "writing" : "reading", count,
                        (unsigned long long) offset,
                        n < 0   ? strerror (errno)
                        : write ? "no progress"
                                : "end of file");
    done += (size_t) n;
  }
  return 0;
}

static int
hf_read (void *opaque, void *buf, size_t count, uint64_t offset)
{
  return hf_io (opaque, false, buf, count, offset);
}

/* pwrite only reads buf: the cast lets one loop serve both directions. */
static int
hf_write (void *opaque, const void *buf, size_t count, uint64_t offset)
{
  return hf_io (opaque, true, (void *) buf, count, offset);
}

/* Test hook: LUKS_NBD_TEST_CRASH_AFTER=<what> makes the process die as
 * if killed right after that write became durable ("primary header":
 * between the two LUKS2 copies), so that tests can show a crash there
 * leaves a header that cryptsetup opens. */
static int
hf_sync (void *opaque, const char *done)
{
  struct hdr_file *h = opaque;
  const char *crash = getenv ("LUKS_NBD_TEST_CRASH_AFTER");

  if (fsync (h->fd) < 0)
    return error_set (-errno, "%s: fsync after the %s: %s", h->path, done,
                      strerror (errno));
  if (crash && !strcmp (crash, done))
    _exit (99);
  return 0;
}

/* flock(LOCK_EX) as cryptsetup does before it writes metadata: on the
 * file itself, or a block device's lock file. */
static int
lock_header (struct hdr_file *h, const struct stat *st)
{
  char res[64];

  h->lock_fd = h->fd;
  if (S_ISBLK (st->st_mode)) {
    snprintf (res, sizeof res, CRYPTSETUP_LOCK_DIR "/L_%u:%u",
              major (st->st_rdev), minor (st->st_rdev));
    h->lock_fd = open (res, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (h->lock_fd < 0)
      return error_set (-errno, "%s: lock file %s: %s", h->path, res,
                        strerror (errno));
  }
  while (flock (h->lock_fd, LOCK_EX) < 0)
    if (errno != EINTR)
      return error_set (-errno, "%s: cannot lock it: %s", h->path,
                        strerror (errno));
  return 0;
}

static void
hf_close (struct hdr_file *h)
{
  luks_header_free (h->hdr);
  if (h->lock_fd >= 0 && h->lock_fd != h->fd)
    close (h->lock_fd);
  if (h->fd >= 0)
    close (h->fd); /* drops the flock */
}

/* Opens, locks and parses the header at path for writing. */
static int
hf_open (struct node *luks, const char *path, struct hdr_file *h)
{
  struct node *hn = node_luks_header_node (luks);
  struct stat st;
  off_t size;
  int r;

  *h = (struct hdr_file){ .fd = -1, .lock_fd = -1, .path = path };
  /* A local file: a detached header, or a raw payload holding one. */
  if (strstr (path, "://") ||
      (strcmp (hn->ops->name, "file") && strcmp (hn->ops->name, "raw")))
    return error_set (-ENOTSUP,
                      "%s: keyslots can be edited only in a header in a "
                      "local file (a detached header, or a raw payload "
                      "file), not through %s",
                      path, hn->ops->name);
  h->fd = open (path, O_RDWR | O_CLOEXEC);
  if (h->fd < 0)
    return error_set (-errno, "%s: %s", path, strerror (errno));
  if (fstat (h->fd, &st) < 0 || (size = lseek (h->fd, 0, SEEK_END)) < 0) {
    r = error_set (-errno, "%s: %s", path, strerror (errno));
    goto fail;
  }
  r = lock_header (h, &st);
  if (r < 0)
    goto fail;
  h->src = (struct luks_source){ .read = hf_read,
                                 .opaque = h,
                                 .size = (uint64_t) size,
                                 .name = path,
                                 .write = hf_write,
                                 .sync = hf_sync };
  r = luks_header_open (&h->src, &h->hdr);
  if (r == 0)
    return 0;
fail:
  hf_close (h);
  return r;
}

/* The header as written must open (a check of our own writing, cheap:
 * no KDF), and kept keys no longer vouch for it. */
static int
hf_finish (struct hdr_file *h)
{
  struct luks_header *again;
  int r = luks_header_open (&h->src, &again);

  if (r == 0)
    luks_header_free (again);
  else
    r = error_prefix (r, "the header as written does not open");
  node_stack_forget_header (h->path);
  hf_close (h);
  return r;
}

int
node_luks_keyslot_list (struct node *luks, struct node_keyslot_info *out,
                        int cap, int *n, int *version)
{
  struct luks_header *hdr;
  struct luks_keyslot_info ki;
  int r = node_luks_header_parse (luks, &hdr);

  if (r < 0)
    return r;
  *n = 0;
  *version = luks_keyslot_max (hdr) == 8 ? 1 : 2;
  for (int i = 0; i < luks_keyslot_count (hdr) && i < cap; i++) {
    luks_keyslot_info (hdr, i, &ki);
    out[i] = (struct node_keyslot_info){ .id = ki.id,
                                         .kdf = ki.kdf,
                                         .iterations = ki.iterations,
                                         .memory_kib = ki.memory_kib,
                                         .parallel = ki.parallel,
                                         .priority = ki.priority };
    (*n)++;
  }
  luks_header_free (hdr);
  return 0;
}

int
node_luks_keyslot_add (struct node *luks, const char *path, const void *pass,
                       size_t passlen, int slot,
                       const struct node_kdf_choice *kc, int *added)
{
  struct luks_kdf_choice c = { .type = kc->type,
                               .iter_time_ms = kc->iter_time_ms,
                               .iterations = kc->iterations,
                               .memory_kib = kc->memory_kib,
                               .parallel = kc->parallel };
  struct hdr_file h;
  int r = hf_open (luks, path, &h);

  if (r < 0)
    return r;
  r = luks_keyslot_add (h.hdr, node_luks_volume (luks), pass, passlen, slot, &c,
                        added);
  if (r < 0) {
    node_stack_forget_header (path); /* key material may have changed */
    hf_close (&h);
    return r;
  }
  return hf_finish (&h);
}

int
node_luks_keyslot_remove (struct node *luks, const char *path, int slot,
                          bool force)
{
  struct hdr_file h;
  int r = hf_open (luks, path, &h);

  if (r < 0)
    return r;
  r = luks_keyslot_remove (h.hdr, slot, force);
  if (r < 0) {
    node_stack_forget_header (path);
    hf_close (&h);
    return r;
  }
  return hf_finish (&h);
}

int
node_luks_keyslot_change (struct node *luks, const char *path, int slot,
                          const void *pass, size_t passlen,
                          const struct node_kdf_choice *kc, int *added)
{
  struct node_keyslot_info info[32];
  bool found = false;
  int n, version;
  int r = node_luks_keyslot_list (luks, info, 32, &n, &version);

  for (int i = 0; r == 0 && i < n; i++)
    found |= info[i].id == slot;
  if (r == 0 && !found)
    r = error_set (-ENOENT, "%s: keyslot %d is not active", path, slot);
  /* The new passphrase is in place before the old one goes: a crash in
   * between leaves both working, never neither. */
  if (r == 0)
    r = node_luks_keyslot_add (luks, path, pass, passlen, -1, kc, added);
  if (r == 0 && (r = node_luks_keyslot_remove (luks, path, slot, true)) < 0)
    r = error_prefix (r,
                      "keyslot %d was added with the new passphrase, but "
                      "removing keyslot %d",
                      *added, slot);
  return r;
}
