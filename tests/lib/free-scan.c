/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* LD_PRELOAD shim for the secret-hygiene tests: scans every block the
 * process frees (free, and the old block of a realloc) for a secret and
 * appends a line to a report file for each block that still holds it.
 *   FREE_SCAN_SECRET=bytes FREE_SCAN_REPORT=/abs/report-file
 * realloc is done as malloc + copy + free, so a block that realloc would
 * have moved is scanned too.  Nothing here allocates. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The allocator under us: ASan's when the daemon is built with it (its
 * interceptor, found without dlsym, which allocates and frees itself
 * while ASan starts), else glibc's. */
extern void __interceptor_free (void *) __attribute__ ((weak));
extern void __libc_free (void *);

static void
real_free (void *p)
{
  if (__interceptor_free)
    __interceptor_free (p);
  else
    __libc_free (p);
}

static void
scan (void *p)
{
  const char *secret = getenv ("FREE_SCAN_SECRET");
  const char *report = getenv ("FREE_SCAN_REPORT");
  size_t n;

  if (!p || !secret || !*secret || !report)
    return;
  n = malloc_usable_size (p);
  if (memmem (p, n, secret, strlen (secret))) {
    char line[96];
    int fd = open (report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    int len = snprintf (line, sizeof line,
                        "secret found in a freed block of %zu bytes\n", n);
    if (fd >= 0) {
      ssize_t w = write (fd, line, (size_t) len);
      (void) w;
      close (fd);
    }
  }
}

void
free (void *p)
{
  scan (p);
  real_free (p);
}

void *
realloc (void *old, size_t size)
{
  void *n;

  if (!old)
    return malloc (size);
  if (size == 0) {
    free (old);
    return NULL;
  }
  n = malloc (size);
  if (!n)
    return NULL;
  size_t have = malloc_usable_size (old);
  memcpy (n, old, have < size ? have : size);
  free (old);
  return n;
}
