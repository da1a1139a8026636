/* LD_PRELOAD shim for the secret-hygiene tests: scans every block the
 * process frees (free, and the old block of a realloc) for a secret and
 * appends a line to a report file for each block that still holds it.
 *   FREE_SCAN_SECRET=bytes FREE_SCAN_REPORT=/abs/report-file
 * realloc is done as malloc + copy + free, so a block that realloc would
 * have moved is scanned too.  Nothing here allocates. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void (*real_free) (void *);
static void *(*real_malloc) (size_t);
static size_t (*real_usable) (void *);
static __thread int resolving;

static void
resolve (void)
{
  if (real_free || resolving)
    return;
  resolving = 1;
  real_malloc = (void *(*) (size_t)) dlsym (RTLD_NEXT, "malloc");
  real_usable = (size_t (*) (void *)) dlsym (RTLD_NEXT, "malloc_usable_size");
  real_free = (void (*) (void *)) dlsym (RTLD_NEXT, "free");
  resolving = 0;
}

static void
scan (void *p)
{
  const char *secret = getenv ("FREE_SCAN_SECRET");
  const char *report = getenv ("FREE_SCAN_REPORT");
  size_t n;

  if (!p || !secret || !*secret || !report || !real_usable)
    return;
  n = real_usable (p);
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
  resolve ();
  if (!real_free)
    return; /* dlsym's own frees while resolving: leaked, harmless */
  scan (p);
  real_free (p);
}

void *
realloc (void *old, size_t size)
{
  void *n;

  resolve ();
  if (!real_malloc)
    return NULL;
  if (!old)
    return real_malloc (size);
  if (size == 0) {
    free (old);
    return NULL;
  }
  n = real_malloc (size);
  if (!n)
    return NULL;
  size_t have = real_usable (old);
  memcpy (n, old, have < size ? have : size);
  free (old);
  return n;
}
