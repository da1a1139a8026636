/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: a pool of request buffers (loop thread only).
 *
 * Every read and write needs a buffer of up to 32 MiB.  Fresh memory from
 * malloc is often fresh pages from the kernel, and the first touch of
 * each page (the payload pread filling it) faults: on a sequential read
 * that cost a third of the server's time.  Freed buffers are kept by
 * power-of-two size class and handed out again, up to a bound on idle
 * memory, so steady streams reuse warm pages. */
#include <config.h>

#include <stdlib.h>

#include "server/internal.h"

#define MIN_CLASS 12 /* 4 KiB */
#define MAX_CLASS 25 /* 32 MiB = MAX_REQUEST_BYTES */
#define IDLE_LIMIT (64 * 1024 * 1024)

struct idle {
  struct idle *next;
};

static struct idle *free_list[MAX_CLASS + 1];
static size_t idle_bytes;

static unsigned
size_class (size_t size)
{
  unsigned c = MIN_CLASS;

  while (c < MAX_CLASS && ((size_t) 1 << c) < size)
    c++;
  return c;
}

void *
bufpool_get (size_t size)
{
  unsigned c = size_class (size);
  struct idle *b = free_list[c];
  void *p;

  if (size > (size_t) 1 << MAX_CLASS)
    return NULL;
  if (b) {
    free_list[c] = b->next;
    idle_bytes -= (size_t) 1 << c;
    return b;
  }
  /* Page-aligned: whole pages for the kernel to copy into. */
  if (posix_memalign (&p, 4096, (size_t) 1 << c) != 0)
    return NULL;
  return p;
}

void
bufpool_put (void *buf, size_t size)
{
  unsigned c = size_class (size);
  struct idle *b = buf;

  if (!buf)
    return;
  /* Larger than any class (TLS output over 32 MiB): not kept. */
  if (size > (size_t) 1 << MAX_CLASS ||
      idle_bytes + ((size_t) 1 << c) > IDLE_LIMIT) {
    free (buf);
    return;
  }
  b->next = free_list[c];
  free_list[c] = b;
  idle_bytes += (size_t) 1 << c;
}

void
bufpool_drain (void)
{
  for (unsigned c = MIN_CLASS; c <= MAX_CLASS; c++)
    while (free_list[c]) {
      struct idle *b = free_list[c];
      free_list[c] = b->next;
      free (b);
    }
  idle_bytes = 0;
}
