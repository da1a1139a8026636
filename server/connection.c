/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: client connections on the loop thread: accepting, reading
 * into the input buffer (or straight into a write request's buffer),
 * handing input to the handshake or transmission parser through one
 * gate (may_parse) that holds every connection to its budgets, sending,
 * and closing once every request in flight has let go.  A connection's
 * life is struct conn's state (internal.h). */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/error_msg.h"
#include "server/internal.h"

static struct conn *all_conns;
static size_t n_conns;
static size_t n_live; /* connections not yet closed: the limit counts these */
static uint64_t next_id = 1;
static unsigned max_connections = 100;
static unsigned handshake_ms = 10000;
/* Sum of every connection's inflight_bytes and output_bytes. */
static uint64_t total_inflight;
static uint64_t max_inflight_total = MAX_INFLIGHT_TOTAL_BYTES;

void
conn_set_limits (unsigned max, unsigned handshake_seconds)
{
  max_connections = max;
  handshake_ms = handshake_seconds * 1000;
}

void
conn_set_inflight_total (uint64_t bytes)
{
  max_inflight_total = bytes;
}

/* Neither a connection's counters nor the daemon-wide sum can wrap: the
 * gate takes a request only while the connection holds under its
 * budget, and one request holds at most MAX_INFLIGHT_BYTES (a buffer is
 * at most MAX_REQUEST_BYTES; transmission.c's charge caps the ranges of
 * zeroes and trims), so a connection holds under twice its budget and
 * the daemon under that times its connections.  Asserted: a wrap would
 * silently lift every budget. */
void
conn_hold (uint64_t *counter, uint64_t n)
{
  assert (n <= UINT64_MAX - *counter);
  assert (n <= UINT64_MAX - total_inflight);
  *counter += n;
  total_inflight += n;
}

/* Crossing back under the daemon-wide budget wakes every connection: the
 * ones it paused have reading off and run again (conn_wake skips the
 * others).  They are at most --max-connections. */
void
conn_release (uint64_t *counter, uint64_t n)
{
  bool was_over = total_inflight >= max_inflight_total;

  assert (n <= *counter); /* released more than was held */
  assert (n <= total_inflight);
  *counter -= n;
  total_inflight -= n;
  if (was_over && total_inflight < max_inflight_total)
    for (struct conn *o = all_conns; o; o = o->next)
      conn_wake (o);
}

size_t
conn_count (void)
{
  return n_conns;
}

int
conn_stream_write (struct conn *c, uv_write_t *req, const uv_buf_t *bufs,
                   unsigned n, uv_write_cb cb)
{
  int r = uv_write (req, &c->h.stream, bufs, n, cb);

  for (unsigned i = 0; r == 0 && i < n; i++)
    c->submitted += bufs[i].len;
  return r;
}

void
conn_ref (struct conn *c)
{
  assert (c->refs > 0); /* a freed connection cannot be held again */
  c->refs++;
}

void
conn_unref (struct conn *c)
{
  assert (c->refs > 0);
  if (--c->refs > 0)
    return;
  if (c->prev)
    c->prev->next = c->next;
  else
    all_conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  n_conns--;
  conn_log (c, LOG_LEVEL_INFO, "closed");
  if (c->exp)
    export_unref (c->exp);
  tls_free (c);
  free (c->in);
  free (c);
}

static void
on_close (uv_handle_t *h)
{
  conn_unref (h->data);
}

/* The connection's one timer.  Before transmission it is the handshake
 * timeout: a client that has not chosen an export in time is dropped, so
 * idle handshakes cannot exhaust the connection limit.  Once a serving
 * connection finishes (FINISHING, then SHUTTING_DOWN) it ticks every
 * timeout period, and a client that took none of its queued output
 * since the last tick is dropped: it would otherwise hold shutdown (and
 * its buffers) for as long as it likes.  Likewise a client that owes
 * the data of a write whose header was taken (or of a refused one) and
 * sent none of it since the last tick: the request counts as in flight,
 * so it would hold shutdown for ever.  Requests still running on our
 * side keep the connection (nothing is queued for it then). */
static void
on_timer (uv_timer_t *t)
{
  struct conn *c = t->data;
  size_t queued = uv_stream_get_write_queue_size (&c->h.stream);

  if (c->state < CONN_TRANSMISSION || !c->exp) {
    conn_log (c, LOG_LEVEL_INFO,
              "no export chosen within the handshake timeout; closing");
    conn_close (c);
    return;
  }
  /* Progress is bytes the client took: the queue alone can grow while
   * the client reads, as requests still running on our side add their
   * replies, and one large reply may take longer than a tick. */
  uint64_t taken = c->submitted - queued;
  bool owed = c->pending || c->discard; /* the client owes us data */
  bool moved = taken != c->drain_taken || c->rcvd != c->drain_rcvd;

  c->drain_taken = taken;
  c->drain_rcvd = c->rcvd;
  if ((queued == 0 && !owed) || moved)
    return;
  if (queued)
    conn_log (c, LOG_LEVEL_INFO,
              "the client took none of its last %zu bytes in %u ms; closing",
              queued, handshake_ms);
  else
    conn_log (c, LOG_LEVEL_INFO,
              "the client sent none of a write's data in %u ms; closing",
              handshake_ms);
  conn_close (c);
}

void
conn_close (struct conn *c)
{
  if (conn_closed (c))
    return;
  c->state = CONN_CLOSED;
  n_live--;
  if (c->exp) {
    assert (c->exp->connections > 0);
    c->exp->connections--;
  }
  if (c->reading)
    uv_read_stop (&c->h.stream);
  c->reading = false;
  uv_close ((uv_handle_t *) &c->h, on_close);
  uv_close ((uv_handle_t *) &c->timer, on_close);
  /* A receive job may be decrypting into the pending write's buffer:
   * its end drops it then. */
  if (!tls_decrypting (c))
    transmission_drop_pending (c);
  tls_drop_queued (c, -ESHUTDOWN); /* never encrypted, never sent */
}

static void
on_shutdown (uv_shutdown_t *req, int status)
{
  conn_close (req->data);
}

/* FINISHING and every request done: close_notify (TLS), then shut the
 * socket down once every byte queued is written, then close. */
static void
begin_shutdown (struct conn *c)
{
  tls_bye (c);
  c->shutdown_req.data = c;
  if (uv_shutdown (&c->shutdown_req, &c->h.stream, on_shutdown) < 0)
    conn_close (c);
  else
    c->state = CONN_SHUTTING_DOWN; /* on_shutdown closes the handle */
}

/* No new requests: the replies of those in flight still go out (and the
 * data of a write whose header arrived is still read), then the
 * connection shuts down.  Runs from parsers (DISC, ABORT) too, so the
 * rest happens from the loop (conn_wake). */
void
conn_finish (struct conn *c)
{
  bool serving = c->state == CONN_TRANSMISSION;

  if (conn_finishing (c))
    return;
  c->state = CONN_FINISHING;
  if (serving && handshake_ms) {
    c->drain_taken = UINT64_MAX; /* the first tick only takes a reading */
    uv_timer_start (&c->timer, on_timer, handshake_ms, handshake_ms);
  }
  conn_wake (c);
}

struct send_req {
  uv_write_t w;
  struct conn *c;
  size_t len;
  char data[];
};

static void
after_conn_send (uv_write_t *w, int status)
{
  struct send_req *s = (struct send_req *) w;
  struct conn *c = s->c; /* it outlives its handle's write callbacks */

  conn_release (&c->output_bytes, sizeof *s + s->len);
  free (s);
  conn_wake (c); /* output budget freed */
}

int
conn_write (struct conn *c, uv_write_t *req, const uv_buf_t *bufs, unsigned n,
            uv_write_cb cb)
{
  if (conn_closed (c))
    return -ESHUTDOWN;
  return conn_stream_write (c, req, bufs, n, cb);
}

/* A copy of data goes out; it counts against the output budget until
 * written, so a client that sends options and reads no reply stops being
 * read (may_parse) instead of growing our write queue. */
int
conn_send (struct conn *c, const void *data, size_t len)
{
  struct send_req *s;
  uv_buf_t b;
  int r;

  if (conn_closed (c))
    return -ESHUTDOWN;
  if (c->tls) { /* a copy to encrypt in the connection's job */
    r = tls_send_copy (c, data, len);
    if (r < 0)
      conn_close (c);
    return r;
  }
  s = malloc (sizeof *s + len);
  if (!s)
    return -ENOMEM;
  s->c = c;
  s->len = len;
  memcpy (s->data, data, len);
  b = uv_buf_init (s->data, (unsigned) len);
  r = conn_stream_write (c, &s->w, &b, 1, after_conn_send);
  if (r < 0) {
    free (s);
    conn_close (c);
    return r;
  }
  conn_hold (&c->output_bytes, sizeof *s + len); /* until written */
  return 0;
}

static void
alloc_cb (uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct conn *c = h->data;

  if (c->tls) { /* ciphertext: decrypted into c->in later */
    tls_alloc (c, buf);
    return;
  }
  /* A write's payload goes straight into its request buffer. */
  if (c->in_len == 0 && transmission_direct_buffer (c, buf))
    return;
  buf->base = (char *) c->in + c->in_len;
  buf->len = INPUT_BUFFER_BYTES - c->in_len;
}

/* The gate: the one place that decides whether more input may be
 * parsed, in every state, checked before each parse (plaintext, each
 * TLS record, and resuming once budget is freed) and by the reading
 * switch.  A connection holds at most MAX_INFLIGHT_REQUESTS requests and
 * MAX_INFLIGHT_BYTES of request buffers (and of ranges being zeroed or
 * trimmed: transmission.c's charge) and queued output together;
 * before transmission, MAX_HANDSHAKE_OUTPUT_BYTES of queued output.
 * Output counts whether it is option replies, ciphertext (a reply's
 * buffer is let go once encrypted) or plaintext replies (their buffers
 * are in inflight_bytes until written).  The same bytes of every
 * connection together are held to max_inflight_total, except that a
 * connection with nothing in flight may always take one request: others
 * filling the total cannot starve it. */
static bool
may_parse (const struct conn *c)
{
  uint64_t budget = c->state < CONN_TRANSMISSION ? MAX_HANDSHAKE_OUTPUT_BYTES
                                                 : MAX_INFLIGHT_BYTES;
  uint64_t held = c->inflight_bytes + c->output_bytes;

  if (c->state >= CONN_SHUTTING_DOWN)
    return false;
  /* The data of a write whose header was taken (or the bytes of a
   * refused one) is fed whatever the budgets: the request holding them
   * could not finish otherwise.  Its buffer is already counted. */
  if (c->pending || c->discard)
    return true;
  if (c->awaiting_export)
    return false;
  if (held && total_inflight >= max_inflight_total)
    return false;
  /* Behind: replies not yet written or encrypted, and ciphertext not
   * yet written (small TLS replies are encrypted at once, so only their
   * ciphertext shows that the client does not keep up). */
  if (c->unsent_bytes + c->output_bytes >= CLIENT_BEHIND_BYTES &&
      held >= READ_AHEAD_BYTES)
    return false; /* the client is behind: no reading further ahead */
  return c->state != CONN_FINISHING && c->inflight < MAX_INFLIGHT_REQUESTS &&
         held < budget;
}

/* Feeds buffered input to the current state's parser while the gate
 * allows it. */
static void
parse_buffered (struct conn *c)
{
  size_t off = 0;

  if (tls_decrypting (c))
    return; /* its job decrypts into c->in: parsed at its end */
  while (off < c->in_len && c->state != CONN_STARTTLS && may_parse (c)) {
    ssize_t n = c->state >= CONN_TRANSMISSION
                  ? transmission_input (c, c->in + off, c->in_len - off)
                  : handshake_input (c, c->in + off, c->in_len - off);
    if (n < 0 || conn_closed (c)) {
      c->in_len = 0; /* closed or finishing: the rest is never parsed */
      return;
    }
    if (n == 0)
      break;
    off += (size_t) n;
  }
  memmove (c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
  if (c->state == CONN_STARTTLS && c->in_len) {
    /* Whatever followed STARTTLS is the client's first TLS record. */
    if (tls_feed (c, c->in, c->in_len) < 0) {
      conn_close (c);
      return;
    }
    c->in_len = 0;
  }
}

/* Decrypts buffered ciphertext into c->in and parses it, while the gate
 * allows and GnuTLS has whole records: small ones here, the rest in the
 * connection's receive job, whose end parses it (conn_wake).  At most
 * the free part of c->in at a time: a client that puts each request in
 * its own record is held to the same budget as one that sends them in
 * one. */
static void
tls_pump (struct conn *c)
{
  while (c->tls && tls_has_input (c) && may_parse (c)) {
    /* A write's data straight into its buffer, as read_cb does. */
    uv_buf_t b;
    bool direct = c->in_len == 0 && transmission_direct_buffer (c, &b);
    if (!direct) {
      if (c->in_len >= INPUT_BUFFER_BYTES)
        return;
      b = uv_buf_init ((char *) c->in + c->in_len,
                       INPUT_BUFFER_BYTES - c->in_len);
    }
    ssize_t n = tls_recv (c, (uint8_t *) b.base, b.len, direct);
    if (n < 0) {
      conn_close (c);
      return;
    }
    if (n == 0)
      return; /* a job runs, or nothing came of the records */
    if (direct)
      transmission_direct_filled (c, (size_t) n);
    else
      c->in_len += (size_t) n;
    parse_buffered (c);
    if (conn_closed (c))
      return;
  }
}

static void read_cb (uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads while the gate is open. */
static void
update_reading (struct conn *c)
{
  bool want = may_parse (c) && !tls_input_full (c);

  if (want && !c->reading) {
    if (uv_read_start (&c->h.stream, alloc_cb, read_cb) == 0)
      c->reading = true;
  } else if (!want && c->reading) {
    uv_read_stop (&c->h.stream);
    c->reading = false;
  }
}

/* Everything a connection does with its input, in one order: parse what
 * is buffered, then what TLS holds, shut down once FINISHING has nothing
 * left in flight, and read again only if the gate is open.  Runs from
 * read_cb and from the loop (conn_wake), never inside a parser or a
 * request's completion. */
static void
conn_run (struct conn *c)
{
  if (conn_closed (c))
    return;
  if (c->state == CONN_STARTTLS && tls_handshake_done (c))
    c->state = CONN_OPTIONS; /* c->in holds plaintext options now */
  parse_buffered (c);
  if (!conn_closed (c))
    tls_pump (c);
  if (conn_closed (c))
    return;
  /* A TLS job still running may hold replies' ciphertext to write. */
  if (c->state == CONN_FINISHING && c->inflight == 0 && !tls_busy (c))
    begin_shutdown (c);
  if (!conn_closed (c))
    update_reading (c);
}

static void
read_cb (uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  struct conn *c = s->data;

  if (nread < 0) {
    if (nread != UV_EOF)
      conn_log (c, LOG_LEVEL_INFO, "%s", uv_strerror ((int) nread));
    else
      conn_log (c, LOG_LEVEL_INFO, "client closed");
    conn_close (c);
    return;
  }
  if (nread == 0)
    return;
  c->rcvd += (uint64_t) nread;
  if (c->tls)
    tls_received (c, (size_t) nread);
  else if (buf->base == (char *) c->in + c->in_len)
    c->in_len += (size_t) nread;
  else /* alloc_cb handed out a write request's buffer */
    transmission_direct_filled (c, (size_t) nread);
  conn_run (c);
}

/* Connections to run again from the loop's idle phase.  An active idle
 * handle also keeps the loop from blocking in poll, so whatever phase
 * wakes a connection, it runs within one loop iteration. */
static uv_idle_t wake_idle;
static bool wake_ready;
static struct conn *woken;

static void
on_wake (uv_idle_t *h)
{
  struct conn *list = woken; /* what is woken while these run waits */

  woken = NULL;
  uv_idle_stop (h);
  while (list) {
    struct conn *c = list;
    list = c->next_woken;
    c->next_woken = NULL;
    c->woken = false;
    conn_run (c);
    conn_unref (c);
  }
  if (woken)
    uv_idle_start (h, on_wake);
}

/* Whether a run could change anything: input waits (in c->in or in
 * TLS), reading is off (the gate was shut), or the connection drains.
 * A reading connection with nothing buffered just goes on reading:
 * that is most completions, which then cost nothing. */
static bool
needs_run (const struct conn *c)
{
  return !c->reading || c->in_len || c->state == CONN_FINISHING ||
         tls_has_input (c);
}

void
conn_wake (struct conn *c)
{
  if (c->woken || conn_closed (c) || !needs_run (c))
    return;
  if (!wake_ready) {
    if (uv_idle_init (c->h.stream.loop, &wake_idle) < 0) {
      conn_log (c, LOG_LEVEL_ERROR, "cannot schedule it; closing");
      conn_close (c);
      return;
    }
    wake_ready = true;
  }
  conn_ref (c);
  c->woken = true;
  c->next_woken = woken;
  woken = c;
  uv_idle_start (&wake_idle, on_wake);
}

/* A new connection on loop, its stream initialised as a pipe or TCP
 * handle but not yet connected; NULL if out of memory. */
static struct conn *
conn_new (uv_loop_t *loop, bool tcp)
{
  struct conn *c = calloc (1, sizeof *c);
  int r;

  if (!c || !(c->in = malloc (INPUT_BUFFER_BYTES))) {
    free (c);
    log_error ("accept: out of memory");
    return NULL;
  }
  r = tcp ? uv_tcp_init (loop, &c->h.tcp) : uv_pipe_init (loop, &c->h.pipe, 0);
  if (r < 0) {
    log_error ("accept: %s", uv_strerror (r));
    free (c->in);
    free (c);
    return NULL;
  }
  c->h.stream.data = c;
  c->id = next_id++;
  c->refs = 2; /* the stream's and the handshake timer's */
  uv_timer_init (loop, &c->timer);
  c->timer.data = c;
  c->next = all_conns;
  if (all_conns)
    all_conns->prev = c;
  all_conns = c;
  n_conns++;
  n_live++;
  return c;
}

/* The connected stream starts its handshake, unless limits refuse it. */
static void
conn_start (struct conn *c)
{
  conn_log (c, LOG_LEVEL_INFO, "opened");
  if (server_stopping ()) {
    conn_close (c);
    return;
  }
  if (n_live > max_connections) {
    conn_log (c, LOG_LEVEL_ERROR,
              "refused: already %u connections (--max-connections)",
              max_connections);
    conn_close (c);
    return;
  }
  if (handshake_ms)
    uv_timer_start (&c->timer, on_timer, handshake_ms, 0);
  handshake_start (c);
  conn_run (c);
}

void
conn_accept (uv_stream_t *server)
{
  struct conn *c = conn_new (server->loop, server->type == UV_TCP);
  int r;

  if (!c)
    return;
  r = uv_accept (server, &c->h.stream);
  if (r == 0 && server->type == UV_TCP)
    uv_tcp_nodelay (&c->h.tcp, 1);
  if (r < 0) {
    log_error ("accept: %s", uv_strerror (r));
    conn_close (c);
    return;
  }
  conn_start (c);
}

int
conn_open_fd (uv_loop_t *loop, int fd)
{
  struct conn *c = conn_new (loop, false);
  int r;

  if (!c)
    return -ENOMEM;
  r = uv_pipe_open (&c->h.pipe, fd);
  if (r < 0) {
    conn_close (c);
    return r;
  }
  conn_start (c);
  return 0;
}

unsigned
conn_drain_export (const struct export *e)
{
  unsigned n = 0;

  for (struct conn *c = all_conns, *next; c; c = next) {
    next = c->next;
    if (c->exp == e && !conn_closed (c)) {
      conn_finish (c);
      n++;
    }
  }
  return n;
}

void
conn_wake_awaiting (void)
{
  for (struct conn *c = all_conns; c; c = c->next)
    if (c->awaiting_export) {
      c->awaiting_export = false;
      conn_wake (c);
    }
}

void
conn_shutdown_all (void)
{
  for (struct conn *c = all_conns, *next; c; c = next) {
    next = c->next;
    /* Before transmission nothing is owed: GREETING, OPTIONS and
     * STARTTLS (mid TLS handshake) close at once. */
    if (c->state < CONN_TRANSMISSION)
      conn_close (c);
    else
      conn_finish (c);
  }
}
