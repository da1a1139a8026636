/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd tests: for the LD_PRELOAD shims (fault-inject.c,
 * write-log.c), whether a descriptor is the file a test names. */
#ifndef LUKS_NBD_SHIM_FD_PATH_H
#define LUKS_NBD_SHIM_FD_PATH_H

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* True if fd is open on path (as /proc/self/fd shows it); false for a
 * NULL path. */
static inline int
fd_is_path (int fd, const char *path)
{
  char link[64], target[PATH_MAX];
  ssize_t n;

  if (!path)
    return 0;
  snprintf (link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink (link, target, sizeof target - 1);
  if (n < 0)
    return 0;
  target[n] = '\0';
  return strcmp (target, path) == 0;
}

#endif
