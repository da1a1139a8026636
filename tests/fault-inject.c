/* LD_PRELOAD shim for fault tests: makes pread, pwrite or fdatasync on
 * one file fail with a chosen errno while a trigger file exists, so a
 * test turns faults on and off without timing.
 *   FAULT_PATH=/abs/file FAULT_OP=pread|pwrite|fdatasync
 *   FAULT_ERRNO=EIO|ENOSPC FAULT_TRIGGER=/abs/trigger-file */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int
should_fail (int fd, const char *op)
{
  const char *path = getenv ("FAULT_PATH"), *want = getenv ("FAULT_OP");
  const char *trigger = getenv ("FAULT_TRIGGER");
  char link[64], target[PATH_MAX];
  ssize_t n;

  if (!path || !want || !trigger || strcmp (want, op) != 0 ||
      access (trigger, F_OK) != 0)
    return 0;
  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink (link, target, sizeof target - 1);
  if (n < 0)
    return 0;
  target[n] = '\0';
  if (strcmp (target, path) != 0)
    return 0;
  errno = strcmp (getenv ("FAULT_ERRNO") ? getenv ("FAULT_ERRNO") : "EIO",
                  "ENOSPC") == 0
            ? ENOSPC
            : EIO;
  return 1;
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

ssize_t
pwrite (int fd, const void *buf, size_t count, off_t offset)
{
  static ssize_t (*real) (int, const void *, size_t, off_t);
  if (!real)
    real = (ssize_t (*) (int, const void *, size_t, off_t)) dlsym (RTLD_NEXT,
                                                                   "pwrite");
  if (should_fail (fd, "pwrite"))
    return -1;
  return real (fd, buf, count, offset);
}

int
fdatasync (int fd)
{
  static int (*real) (int);
  if (!real)
    real = (int (*) (int)) dlsym (RTLD_NEXT, "fdatasync");
  if (should_fail (fd, "fdatasync"))
    return -1;
  return real (fd);
}
