/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Proves how replies queued on a connection are cut into writes
 * (server/reply_batch.h): in order, at most BATCH_MAX replies each, a
 * batch ending with the reply that brings it to BATCH_BYTES (not one
 * byte earlier), a reply larger than that alone, and the queue left
 * consistent for the replies pushed after a batch was taken.  Replies are
 * queued with reply_queue_push itself; the loop never runs (no socket). */
#include <config.h>

#include <stdlib.h>

#include "server/internal.h"
#include "server/reply_batch.h"
#include "tests/lib/tap.h"

#define KIB (1024)

/* What main.c defines for the server core it links with. */
uv_loop_t *server_loop;

bool
server_stopping (void)
{
  return false;
}

/* Stand-ins for reply buffers: only their addresses and lengths are
 * looked at, never their bytes. */
static char fake[1];

static struct queued_reply *
replies (size_t n, unsigned nbufs, size_t len)
{
  struct queued_reply *q = calloc (n, sizeof *q);

  for (size_t i = 0; q && i < n; i++) {
    q[i].n = nbufs;
    for (unsigned b = 0; b < nbufs; b++)
      q[i].bufs[b] = uv_buf_init (fake, (unsigned) len);
  }
  return q;
}

static void
push_all (struct conn *c, struct queued_reply *q, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (reply_queue_push (c, &q[i]) < 0)
      abort ();
}

/* The batch is q[from], q[from+1], ... q[to-1] in order, its chain ending
 * in NULL, with the buffers of each in bufs. */
static bool
batch_is (const struct queued_reply *first, const uv_buf_t *bufs,
          unsigned nbufs, const struct queued_reply *q, size_t from, size_t to)
{
  const struct queued_reply *p = first;
  unsigned k = 0;

  for (size_t i = from; i < to; i++, p = p->next) {
    if (p != &q[i])
      return false;
    for (unsigned b = 0; b < q[i].n; b++, k++)
      if (bufs[k].base != q[i].bufs[b].base || bufs[k].len != q[i].bufs[b].len)
        return false;
  }
  return p == NULL && k == nbufs;
}

static uv_buf_t bufs[2 * BATCH_MAX];

/* Takes the batches left (the queue must not be taken from empty). */
static void
take_rest (struct conn *c)
{
  unsigned n;

  while (c->replies)
    (void) reply_queue_take_batch (c, bufs, &n);
}
/* reply_queue.c keeps queued connections on its list: they outlive each
 * test. */
static struct conn conns[3];

static void
test_one (void)
{
  struct conn *c = &conns[0];
  struct queued_reply *q = replies (2, 1, 4 * KIB), *first;
  unsigned n;

  push_all (c, q, 1);
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, 0, 1) && n == 1,
      "one queued reply: a batch of it alone, one buffer");
  ok (c->replies == NULL && c->replies_tail == &c->replies,
      "the queue is empty after it, its tail at its head");
  push_all (c, q + 1, 1);
  ok (c->replies == &q[1], "a reply pushed after that heads the queue");
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, 1, 2), "and is the next batch");
  free (q);
}

static void
test_count_bound (void)
{
  struct conn *c = &conns[1];
  size_t total = BATCH_MAX + 72;
  struct queued_reply *q = replies (total + 1, 2, 16), *first;
  unsigned n;

  push_all (c, q, total);
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, 0, BATCH_MAX) && n == 2 * BATCH_MAX,
      "%zu small replies: the first batch is BATCH_MAX of them (%u buffers)",
      total, n);
  ok (c->replies == &q[BATCH_MAX] && c->replies_tail == &q[total - 1].next,
      "the rest stay queued, the tail still at the last reply");
  push_all (c, q + total, 1);
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, BATCH_MAX, total + 1),
      "the second batch: the other 72 and one pushed in between, in order");
  ok (c->replies == NULL && c->replies_tail == &c->replies, "queue empty");
  free (q);
}

static void
test_byte_bound (void)
{
  struct conn *c = &conns[2];
  struct queued_reply *q, *first;
  unsigned n;

  q = replies (5, 1, 100 * KIB);
  push_all (c, q, 5);
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, 0, 3),
      "100 KiB replies: the batch ends with the third (300 KiB >= "
      "BATCH_BYTES)");
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, 3, 5), "the last two are the next batch");
  free (q);

  q = replies (3, 1, BATCH_BYTES / 2);
  push_all (c, q, 3);
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, 0, 2),
      "two replies of exactly BATCH_BYTES / 2 make a batch");
  take_rest (c);
  free (q);

  q = replies (4, 1, BATCH_BYTES / 2 - 1);
  push_all (c, q, 4);
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, 0, 3),
      "two of BATCH_BYTES / 2 - 1 are one byte short: a third joins");
  take_rest (c);
  free (q);

  q = replies (3, 2, 16);
  q[0].bufs[1].len = 32 * 1024 * 1024; /* a 32 MiB read's data */
  push_all (c, q, 3);
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, 0, 1) && n == 2,
      "a reply larger than BATCH_BYTES goes alone");
  first = reply_queue_take_batch (c, bufs, &n);
  ok (batch_is (first, bufs, n, q, 1, 3), "the small ones after it together");
  free (q);
}

int
main (void)
{
  server_loop = uv_default_loop ();
  test_one ();
  test_count_bound ();
  test_byte_bound ();
  reply_queue_close ();
  uv_run (server_loop, UV_RUN_NOWAIT); /* the handles' close callbacks */
  ok (uv_loop_close (server_loop) == 0, "the loop closes: nothing was left");
  return tap_done ();
}
