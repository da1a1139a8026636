/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Proves the request buffer pool's size classes (server/bufpool.c) from
 * its API alone: a buffer put back is handed out again for any size of
 * its power-of-two class (4 KiB .. 32 MiB) and never for a size one byte
 * above it; every buffer holds its whole class (written end to end:
 * under ASan an overrun fails); nothing above 32 MiB; new buffers are
 * page-aligned; at most 64 MiB is kept idle, the buffer that would go
 * over it is freed instead. */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"
#include "tests/lib/tap.h"

#define MIB ((size_t) 1024 * 1024)
#define MIN_CLASS 12
#define MAX_CLASS 25

/* What main.c defines for the server core it links with. */
uv_loop_t *server_loop;

bool
server_stopping (void)
{
  return false;
}

static void
test_classes (void)
{
  for (unsigned c = MIN_CLASS; c <= MAX_CLASS; c++) {
    size_t size = (size_t) 1 << c;
    size_t smallest = c == MIN_CLASS ? 1 : size / 2 + 1;
    void *p = bufpool_get (size), *q, *r;

    memset (p, 0xa5, size); /* the whole class is the caller's */
    bufpool_put (p, size);
    q = bufpool_get (smallest);
    bufpool_put (q, smallest);
    r = c < MAX_CLASS ? bufpool_get (size + 1) : NULL;
    ok (p && ((uintptr_t) p & 4095) == 0 && q == p && r != p,
        "class of %zu bytes: %zu bytes reuse it, %zu bytes do not", size,
        smallest, size + 1);
    if (r) {
      memset (r, 0x5a, size + 1);
      bufpool_put (r, size + 1);
    }
  }
  void *max = bufpool_get ((size_t) 1 << MAX_CLASS);
  ok (max != NULL, "32 MiB (MAX_REQUEST_BYTES) is a class");
  bufpool_put (max, (size_t) 1 << MAX_CLASS);
  ok (bufpool_get (((size_t) 1 << MAX_CLASS) + 1) == NULL,
      "32 MiB + 1 is refused");
  bufpool_put (NULL, 4096); /* a no-op (a failed request's buffer) */
  bufpool_drain ();
}

/* The idle bound: sixteen 4 MiB buffers fill 64 MiB exactly and are
 * kept; the seventeenth is freed.  Handed out again last-in first-out. */
static void
test_idle_bound (void)
{
  enum { N = 17 };
  void *p[N], *again[N];
  bool lifo = true;

  for (int i = 0; i < N; i++)
    p[i] = bufpool_get (4 * MIB);
  for (int i = 0; i < N; i++)
    bufpool_put (p[i], 4 * MIB);
  for (int i = 0; i < N; i++)
    again[i] = bufpool_get (4 * MIB);
  for (int i = 0; i < N - 1; i++)
    lifo = lifo && again[i] == p[N - 2 - i];
  ok (lifo, "64 MiB of idle 4 MiB buffers are kept and handed out "
            "last-in first-out, the first again the 16th put back: the "
            "17th, over 64 MiB, was not kept");
  for (int i = 0; i < N; i++)
    bufpool_put (again[i], 4 * MIB);
  bufpool_drain ();
}

int
main (void)
{
  test_classes ();
  test_idle_bound ();
  return tap_done ();
}
