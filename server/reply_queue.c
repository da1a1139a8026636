/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: replies that finish in the same loop iteration leave in one
 * write per connection.  Each reply written on its own costs a syscall
 * and wakes the client once per reply; at queue depth 32 with 4 KiB
 * requests that was most of the server's time outside the crypto (and
 * every wakeup may preempt the loop thread on a small machine).
 *
 * Queued replies are flushed from a prepare handle (before the loop
 * polls, so nothing waits behind a blocking poll) and from a check handle
 * (right after the poll phase, where worker completions and the read
 * callbacks queue most replies). */
#include <config.h>

#include <errno.h>
#include <stdbool.h>

#include "common/error_msg.h"
#include "server/internal.h"
#include "server/reply_batch.h"

static uv_prepare_t before_poll;
static uv_check_t after_poll;
static bool handles_ready;
static struct conn *waiting; /* connections with queued replies */

static void
batch_complete (struct queued_reply *q, int status)
{
  while (q) {
    struct queued_reply *next = q->next;
    q->done (q, status);
    q = next;
  }
}

static void
after_batch (uv_write_t *w, int status)
{
  batch_complete (w->data, status);
}

struct queued_reply *
reply_queue_take_batch (struct conn *c, uv_buf_t *bufs, unsigned *nbufs)
{
  struct queued_reply *first = c->replies, *q = first;
  unsigned n = 0;
  size_t bytes = 0;

  for (unsigned k = 1;; k++, q = q->next) {
    for (unsigned i = 0; i < q->n; i++) {
      bufs[n++] = q->bufs[i];
      bytes += q->bufs[i].len;
    }
    if (!q->next || k == BATCH_MAX || bytes >= BATCH_BYTES)
      break;
  }
  c->replies = q->next;
  if (!c->replies)
    c->replies_tail = &c->replies;
  q->next = NULL;
  *nbufs = n;
  return first;
}

/* Plaintext: a batch usually fits the socket's buffer and is written
 * here at once with uv_try_write, its replies completed; only what does
 * not fit goes through uv_write.  uv_write alone costs an epoll_ctl per
 * batch besides the writev: libuv (1.44) re-registers the socket after
 * every write it drains, one syscall in five of a 4 KiB read at queue
 * depth 1.  uv_try_write takes nothing while uv_write still has bytes
 * queued, so order is kept. */
static int
write_batch (struct conn *c, struct queued_reply *first, uv_buf_t *bufs,
             unsigned n)
{
  int w = uv_try_write (&c->h.stream, bufs, n);
  size_t left;
  unsigned i = 0;

  if (w == UV_EAGAIN)
    w = 0;
  if (w < 0)
    return w;
  c->submitted += (uint64_t) w;
  for (left = (size_t) w; i < n && left >= bufs[i].len; i++)
    left -= bufs[i].len;
  if (i == n) {
    batch_complete (first, 0);
    return 0;
  }
  bufs[i].base += left; /* the rest of a buffer partly written */
  bufs[i].len -= left;
  return conn_stream_write (c, &first->write, bufs + i, n - i, after_batch);
}

static void
flush_conn (struct conn *c)
{
  uv_buf_t bufs[2 * BATCH_MAX];

  if (!conn_closed (c) && tls_active (c)) {
    /* All of them to the connection's TLS job, which encrypts them in
     * the pool in order; each is done (its buffer free) once its
     * ciphertext is queued on the socket, where the gate counts it
     * instead (c->output_bytes). */
    struct queued_reply *all = c->replies;
    c->replies = NULL;
    c->replies_tail = &c->replies;
    tls_send (c, all);
    return;
  }
  conn_ref (c); /* completing replies may drop the last other reference */
  while (c->replies) {
    unsigned n;
    struct queued_reply *first = reply_queue_take_batch (c, bufs, &n);
    int r = -ESHUTDOWN;

    first->write.data = first;
    if (!conn_closed (c))
      r = c->tls ? conn_write (c, &first->write, bufs, n, after_batch)
                 : write_batch (c, first, bufs, n);
    if (r < 0) {
      /* Not written, so not acknowledged: the client sees the close. */
      conn_close (c);
      batch_complete (first, r);
    }
  }
  conn_unref (c);
}

static void
flush_all (void)
{
  while (waiting) {
    struct conn *c = waiting;
    waiting = c->next_waiting;
    c->next_waiting = NULL;
    c->queued = false;
    flush_conn (c);
  }
  uv_prepare_stop (&before_poll);
  uv_check_stop (&after_poll);
}

static void
on_before_poll (uv_prepare_t *h)
{
  (void) h;
  flush_all ();
}

static void
on_after_poll (uv_check_t *h)
{
  (void) h;
  flush_all ();
}

int
reply_queue_push (struct conn *c, struct queued_reply *q)
{
  if (!handles_ready) {
    int r = uv_prepare_init (server_loop, &before_poll);
    if (r < 0 || (r = uv_check_init (server_loop, &after_poll)) < 0)
      return error_set (r, "reply queue: %s", uv_strerror (r));
    handles_ready = true;
  }
  q->next = NULL;
  if (!c->replies_tail)
    c->replies_tail = &c->replies;
  *c->replies_tail = q;
  c->replies_tail = &q->next;
  if (!c->queued) {
    c->queued = true;
    c->next_waiting = waiting;
    waiting = c;
    uv_prepare_start (&before_poll, on_before_poll);
    uv_check_start (&after_poll, on_after_poll);
  }
  return 0;
}

void
reply_queue_close (void)
{
  if (!handles_ready)
    return;
  handles_ready = false;
  uv_close ((uv_handle_t *) &before_poll, NULL);
  uv_close ((uv_handle_t *) &after_poll, NULL);
}
