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

#include "error.h"
#include "internal.h"

/* Replies per write: at most two buffers each, well under IOV_MAX.  A
 * batch also ends once it holds BATCH_BYTES: every buffer in a batch is
 * held until the whole batch is written, and large replies gain nothing
 * from sharing a syscall (on sequential reads, batching them raised peak
 * memory by half). */
#define BATCH_MAX 128
#define BATCH_BYTES (256 * 1024)

static uv_prepare_t before_poll;
static uv_check_t after_poll;
static bool handles_ready;
static struct conn *waiting; /* connections with queued replies */

static void
complete (struct queued_reply *q, int status)
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
  complete (w->data, status);
}

/* Takes up to BATCH_MAX replies off the connection's queue; returns the
 * first, its chain ending in NULL, and their buffers in bufs. */
static struct queued_reply *
take_batch (struct conn *c, uv_buf_t *bufs, unsigned *nbufs)
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
    struct queued_reply *first = take_batch (c, bufs, &n);
    int r = -ESHUTDOWN;

    first->write.data = first;
    if (!conn_closed (c))
      r = conn_write (c, &first->write, bufs, n, after_batch);
    if (r < 0) {
      /* Not written, so not acknowledged: the client sees the close. */
      conn_close (c);
      complete (first, r);
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
