/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* LD_PRELOAD shim for fault tests: makes pread, pwrite, fdatasync or
 * ftruncate on one file fail with a chosen errno while a trigger file
 * exists, so a test turns faults on and off without timing.
 *   FAULT_PATH=/abs/file FAULT_OP=pread|pwrite|fdatasync|ftruncate
 *   FAULT_ERRNO=EIO|ENOSPC FAULT_TRIGGER=/abs/trigger-file
 * With FAULT_HOLD=/abs/hold-file, that call first waits while the hold
 * file exists (see hold), so a test acts while it is in progress.
 * With FAULT_RECORD=/abs/log it also records the pwrite and fdatasync
 * calls on FAULT_PATH, start and end, in the format of nbdkit's log filter
 * ("Write id=N offset=0x.. count=0x.. fua=0 ...", "Flush id=N ..."), so
 * the durability test reads a file payload as it reads a remote one. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tests/lib/shim-fd-path.h"

static int
is_target (int fd)
{
  return fd_is_path (fd, getenv ("FAULT_PATH"));
}

/* One line appended with one write (O_APPEND: lines from several
 * threads do not mix).  Keeps errno. */
static void
record_line (const char *fmt, ...)
{
  const char *log = getenv ("FAULT_RECORD");
  int saved = errno, fd, n;
  char line[256];
  va_list ap;

  if (!log)
    return;
  va_start (ap, fmt);
  n = vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  fd = open (log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0) {
    if (write (fd, line, (size_t) n) < 0)
      abort (); /* a lost record would make the test lie */
    close (fd);
  }
  errno = saved;
}

static atomic_ulong record_ids;

static unsigned long
record_start (int fd, const char *what, off_t offset, size_t count)
{
  unsigned long id;

  if (!getenv ("FAULT_RECORD") || !is_target (fd))
    return 0;
  id = ++record_ids;
  if (count)
    record_line ("connection=0 %s id=%lu offset=0x%llx count=0x%zx fua=0 ...\n",
                 what, id, (unsigned long long) offset, count);
  else
    record_line ("connection=0 %s id=%lu ...\n", what, id);
  return id;
}

static void
record_end (unsigned long id, const char *what, int failed)
{
  if (id)
    record_line ("connection=0 ...%s id=%lu return=%d\n", what, id,
                 failed ? -1 : 0);
}

static int
should_fail (int fd, const char *op)
{
  const char *want = getenv ("FAULT_OP");
  const char *trigger = getenv ("FAULT_TRIGGER");

  if (!want || !trigger || strcmp (want, op) != 0 ||
      access (trigger, F_OK) != 0 || !is_target (fd))
    return 0;
  errno = strcmp (getenv ("FAULT_ERRNO") ? getenv ("FAULT_ERRNO") : "EIO",
                  "ENOSPC") == 0
            ? ENOSPC
            : EIO;
  return 1;
}

/* The call FAULT_OP names on FAULT_PATH, with FAULT_HOLD set: creates
 * FAULT_HOLD.held (the test's sign that the call has begun), then waits
 * while FAULT_HOLD exists, at most 60 s.  Removing the file lets it go.
 * Keeps errno. */
static void
hold (int fd, const char *op)
{
  const char *gate = getenv ("FAULT_HOLD");
  const char *want = getenv ("FAULT_OP");
  char held[PATH_MAX];
  int saved = errno, h;

  if (!gate || !want || strcmp (want, op) != 0 || !is_target (fd))
    return;
  snprintf (held, sizeof held, "%s.held", gate);
  h = open (held, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (h < 0)
    abort (); /* the test would wait for it in vain */
  close (h);
  for (int i = 0; i < 6000 && access (gate, F_OK) == 0; i++)
    usleep (10000);
  errno = saved;
}

ssize_t
pread (int fd, void *buf, size_t count, off_t offset)
{
  static ssize_t (*real) (int, void *, size_t, off_t);
  if (!real)
    real =
      (ssize_t (*) (int, void *, size_t, off_t)) dlsym (RTLD_NEXT, "pread");
  if (should_fail (fd, "pread"))
    return -1;
  return real (fd, buf, count, offset);
}

/* The daemon's reads from the page cache (RWF_NOWAIT) fail as a pread
 * does: the fault is the file's, whichever call meets it. */
ssize_t
preadv2 (int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags)
{
  static ssize_t (*real) (int, const struct iovec *, int, off_t, int);
  if (!real)
    real = (ssize_t (*) (int, const struct iovec *, int, off_t, int)) dlsym (
      RTLD_NEXT, "preadv2");
  if (should_fail (fd, "pread"))
    return -1;
  return real (fd, iov, iovcnt, offset, flags);
}

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
  static ssize_t (*real) (int, const void *, size_t, off_t);
  if (!real)
    real = (ssize_t (*) (int, const void *, size_t, off_t)) dlsym (RTLD_NEXT,
                                                                   "pwrite");
  if (should_fail (fd, "pwrite"))
    return -1;
  unsigned long id = record_start (fd, "Write", offset, count);
  ssize_t r = real (fd, buf, count, offset);
  record_end (id, "Write", r < 0);
  return r;
}

int
fdatasync (int fd)
{
  static int (*real) (int);
  if (!real)
    real = (int (*) (int)) dlsym (RTLD_NEXT, "fdatasync");
  if (should_fail (fd, "fdatasync"))
    return -1;
  unsigned long id = record_start (fd, "Flush", 0, 0);
  int r = real (fd);
  record_end (id, "Flush", r < 0);
  return r;
}

/* export-resize's file_resize. */
int
ftruncate (int fd, off_t length)
{
  static int (*real) (int, off_t);
  if (!real)
    real = (int (*) (int, off_t)) dlsym (RTLD_NEXT, "ftruncate");
  hold (fd, "ftruncate");
  if (should_fail (fd, "ftruncate"))
    return -1;
  return real (fd, length);
}
