/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* LD_PRELOAD shim for crash-order tests: records, in order, every write,
 * hole punch and fdatasync/fsync a process makes to one file, so a test
 * can rebuild each state the file could be in after a power cut (what
 * was flushed, plus any subset of the writes since) and check it.
 *   WRITE_LOG_PATH=/abs/file  WRITE_LOG=/abs/log
 * Records: 'W' u64 offset, u64 length, the bytes; 'P' u64 offset,
 * u64 length (punched: reads as zeros); 'F' (a flush).  Host order. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "tests/lib/shim-fd-path.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int
watched (int fd)
{
  return getenv ("WRITE_LOG") && fd_is_path (fd, getenv ("WRITE_LOG_PATH"));
}

/* Appends one record; the caller holds `lock`, so records keep the
 * order of the calls they follow. */
static void
record (char type, uint64_t offset, uint64_t len, const void *data)
{
  int fd = open (getenv ("WRITE_LOG"), O_WRONLY | O_APPEND | O_CREAT, 0600);
  int ok = fd >= 0 && write (fd, &type, 1) == 1;

  if (ok && type != 'F')
    ok = write (fd, &offset, 8) == 8 && write (fd, &len, 8) == 8;
  if (ok && type == 'W')
    ok = write (fd, data, len) == (ssize_t) len;
  if (!ok)
    abort (); /* a gap in the log would make every later check wrong */
  close (fd);
}

static ssize_t
logged_pwrite (const char *sym, int fd, const void *buf, size_t count,
               off_t offset)
{
  ssize_t (*real) (int, const void *, size_t, off_t) =
    (ssize_t (*) (int, const void *, size_t, off_t)) dlsym (RTLD_NEXT, sym);

  if (!watched (fd))
    return real (fd, buf, count, offset);
  pthread_mutex_lock (&lock);
  ssize_t r = real (fd, buf, count, offset);
  if (r > 0)
    record ('W', (uint64_t) offset, (uint64_t) r, buf);
  pthread_mutex_unlock (&lock);
  return r;
}

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
  return logged_pwrite ("pwrite", fd, buf, count, offset);
}

ssize_t
pwrite64 (int fd, const void *buf, size_t count, off_t offset)
{
  return logged_pwrite ("pwrite64", fd, buf, count, offset);
}

static int
logged_sync (const char *sym, int fd)
{
  int (*real) (int) = (int (*) (int)) dlsym (RTLD_NEXT, sym);

  if (!watched (fd))
    return real (fd);
  pthread_mutex_lock (&lock);
  int r = real (fd);
  if (r == 0)
    record ('F', 0, 0, NULL);
  pthread_mutex_unlock (&lock);
  return r;
}

int
fdatasync (int fd)
{
  return logged_sync ("fdatasync", fd);
}

int
fsync (int fd)
{
  return logged_sync ("fsync", fd);
}

static int
logged_fallocate (const char *sym, int fd, int mode, off_t offset, off_t len)
{
  int (*real) (int, int, off_t, off_t) =
    (int (*) (int, int, off_t, off_t)) dlsym (RTLD_NEXT, sym);

  if (!watched (fd))
    return real (fd, mode, offset, len);
  pthread_mutex_lock (&lock);
  int r = real (fd, mode, offset, len);
  if (r == 0 && (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)))
    record ('P', (uint64_t) offset, (uint64_t) len, NULL);
  pthread_mutex_unlock (&lock);
  return r;
}

int
fallocate (int fd, int mode, off_t offset, off_t len)
{
  return logged_fallocate ("fallocate", fd, mode, offset, len);
}

int
fallocate64 (int fd, int mode, off_t offset, off_t len)
{
  return logged_fallocate ("fallocate64", fd, mode, offset, len);
}
