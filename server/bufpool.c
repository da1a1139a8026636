/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: a pool of request buffers (loop thread only).
 *
 * Every read and write needs a buffer of up to 32 MiB.  Fresh memory from
 * malloc is often fresh pages from the kernel, and the first touch of
 * each page (the payload pread filling it) faults: on a sequential read
 * that cost a third of the server's time.  Freed buffers are kept by
 * power-of-two size class and handed out again, up to a bound on idle
 * memory, so steady streams reuse warm pages.
 *
 * Kept pages are given back once load stops: a host runs one daemon per
 * volume, so what an idle daemon holds is paid a hundred times.  Every
 * TRIM_INTERVAL_MS a timer frees, per class, as many buffers as stayed
 * unused on its free list through the whole interval (its low-water
 * mark): after a burst the pool is empty within two intervals, while a
 * steady stream keeps what it reuses.  Then malloc_trim hands the freed
 * heap pages to the kernel. */
#include <config.h>

#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>

#include "server/internal.h"

#define MIN_CLASS 12 /* 4 KiB */
#define MAX_CLASS 25 /* 32 MiB = MAX_REQUEST_BYTES */
#define IDLE_LIMIT (64 * 1024 * 1024)
#define TRIM_INTERVAL_MS 1000
/* Buffers from this size up are mmapped by malloc and unmapped by free.
 * glibc's default threshold is dynamic: after a 256 KiB mapping is freed
 * it rises to 256 KiB, later buffers come from the heap, and a heap
 * keeps its pages while anything above them is in use. */
#define MMAP_THRESHOLD (128 * 1024)

struct idle {
  struct idle *next;
};

static struct idle *free_list[MAX_CLASS + 1];
static unsigned free_count[MAX_CLASS + 1];
/* The fewest buffers on each free list since the last trim. */
static unsigned low_water[MAX_CLASS + 1];
static size_t idle_bytes;
static uv_timer_t trim_timer;
static bool timer_ready;

static unsigned
size_class (size_t size)
{
  unsigned c = MIN_CLASS;

  while (c < MAX_CLASS && ((size_t) 1 << c) < size)
    c++;
  return c;
}

static void
release (unsigned c)
{
  struct idle *b = free_list[c];

  free_list[c] = b->next;
  free_count[c]--;
  idle_bytes -= (size_t) 1 << c;
  free (b);
}

static void
on_trim (uv_timer_t *t)
{
  bool freed = false;

  for (unsigned c = MIN_CLASS; c <= MAX_CLASS; c++) {
    for (unsigned n = low_water[c]; n > 0; n--, freed = true)
      release (c);
    low_water[c] = free_count[c];
  }
  if (freed)
    malloc_trim (0);
  if (idle_bytes == 0)
    uv_timer_stop (t);
}

static void
setup (void)
{
  if (timer_ready || !server_loop ||
      uv_timer_init (server_loop, &trim_timer) < 0)
    return; /* without the timer the pool still works, untrimmed */
  uv_unref ((uv_handle_t *) &trim_timer); /* never keeps the loop alive */
  mallopt (M_MMAP_THRESHOLD, MMAP_THRESHOLD);
  timer_ready = true;
}

/* The timer runs only while the pool holds something. */
static void
trim_later (void)
{
  if (timer_ready && !uv_is_active ((uv_handle_t *) &trim_timer))
    uv_timer_start (&trim_timer, on_trim, TRIM_INTERVAL_MS, TRIM_INTERVAL_MS);
}

void *
bufpool_get (size_t size)
{
  unsigned c = size_class (size);
  struct idle *b = free_list[c];
  void *p;

  if (size > (size_t) 1 << MAX_CLASS)
    return NULL;
  setup ();
  if (b) {
    free_list[c] = b->next;
    free_count[c]--;
    if (low_water[c] > free_count[c])
      low_water[c] = free_count[c];
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
  free_count[c]++;
  idle_bytes += (size_t) 1 << c;
  trim_later ();
}

void
bufpool_drain (void)
{
  for (unsigned c = MIN_CLASS; c <= MAX_CLASS; c++) {
    while (free_list[c])
      release (c);
    low_water[c] = 0;
  }
  if (timer_ready)
    uv_timer_stop (&trim_timer);
}
