/* luks-nbd: client connections on the loop thread: accepting, reading
 * into the input buffer (or straight into a write request's buffer),
 * handing input to the handshake or transmission parser, sending, and
 * closing once every request in flight has let go. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "internal.h"

static struct conn *all_conns;
static size_t n_conns;
static size_t n_live; /* connections not yet closing: the limit counts these */
static uint64_t next_id = 1;
static unsigned max_connections = 100;
static unsigned handshake_ms = 10000;

void
conn_set_limits (unsigned max, unsigned handshake_seconds)
{
  max_connections = max;
  handshake_ms = handshake_seconds * 1000;
}

size_t
conn_count (void)
{
  return n_conns;
}

void
conn_ref (struct conn *c)
{
  c->refs++;
}

void
conn_unref (struct conn *c)
{
  if (--c->refs > 0)
    return;
  if (c->prev)
    c->prev->next = c->next;
  else
    all_conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  n_conns--;
  log_info ("connection %llu closed", (unsigned long long) c->id);
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

/* A client that has not reached transmission in time is dropped, so idle
 * handshakes cannot exhaust the connection limit. */
static void
on_handshake_timeout (uv_timer_t *t)
{
  struct conn *c = t->data;

  log_info ("connection %llu: no export chosen within the handshake "
            "timeout; closing",
            (unsigned long long) c->id);
  conn_close (c);
}

void
conn_close (struct conn *c)
{
  if (c->closing)
    return;
  c->closing = true;
  c->finishing = true;
  n_live--;
  if (c->exp)
    c->exp->connections--;
  if (c->reading)
    uv_read_stop (&c->h.stream);
  c->reading = false;
  uv_close ((uv_handle_t *) &c->h, on_close);
  uv_close ((uv_handle_t *) &c->handshake_timer, on_close);
  transmission_drop_pending (c);
}

static void
on_shutdown (uv_shutdown_t *req, int status)
{
  conn_close (req->data);
}

/* Stops reading; once every reply is written, shuts the socket down and
 * closes it.  Called again as requests finish. */
void
conn_finish (struct conn *c)
{
  c->finishing = true;
  /* A write whose header arrived is in flight: keep reading its data
   * (conn_update_reading does), serve it, then stop. */
  conn_update_reading (c);
  if (c->closing || c->shutting_down || c->inflight > 0)
    return;
  tls_bye (c);
  c->shutdown_req.data = c;
  if (uv_shutdown (&c->shutdown_req, &c->h.stream, on_shutdown) < 0)
    conn_close (c);
  else
    c->shutting_down = true; /* on_shutdown closes the handle */
}

struct send_req {
  uv_write_t w;
  char data[];
};

static void
after_send (uv_write_t *w, int status)
{
  free (w);
}

int
conn_write (struct conn *c, uv_write_t *req, const uv_buf_t *bufs, unsigned n,
            uv_write_cb cb)
{
  if (c->closing)
    return -ESHUTDOWN;
  if (c->tls)
    return tls_write (c, req, bufs, n, cb);
  return uv_write (req, &c->h.stream, bufs, n, cb);
}

int
conn_send (struct conn *c, const void *data, size_t len)
{
  struct send_req *s;
  uv_buf_t b;
  int r;

  if (c->closing)
    return -ESHUTDOWN;
  if (c->tls) { /* encrypting copies it anyway */
    b = uv_buf_init ((char *) data, (unsigned) len);
    r = tls_write (c, NULL, &b, 1, NULL);
    if (r < 0)
      conn_close (c);
    return r;
  }
  s = malloc (sizeof *s + len);
  if (!s)
    return -ENOMEM;
  memcpy (s->data, data, len);
  b = uv_buf_init (s->data, (unsigned) len);
  r = uv_write (&s->w, &c->h.stream, &b, 1, after_send);
  if (r < 0) {
    free (s);
    conn_close (c);
  }
  return r;
}

static void
alloc_cb (uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct conn *c = h->data;

  if (c->tls) { /* ciphertext: decrypted into c->in later */
    c->direct = false;
    tls_alloc (c, buf);
    return;
  }
  /* A write's payload goes straight into its request buffer. */
  if (c->in_len == 0 && transmission_direct_buffer (c, buf)) {
    c->direct = true;
    return;
  }
  c->direct = false;
  buf->base = (char *) c->in + c->in_len;
  buf->len = INPUT_BUFFER_BYTES - c->in_len;
}

static void tls_pump (struct conn *c);

/* The in-flight limits, as conn_update_reading applies them.  Parsing
 * stops at them too: one read can bring 64 KiB of request headers, and
 * without this check 2,000 reads of up to 32 MiB each were all taken at
 * once.  A write whose data is still arriving is always fed. */
static bool
over_limits (const struct conn *c)
{
  /* On TLS a reply's buffer is let go once it is encrypted, so the
   * ciphertext still queued for the socket counts too: a client that
   * never reads its replies cannot make us queue without bound. */
  uint64_t queued = c->tls ? uv_stream_get_write_queue_size (&c->h.stream) : 0;

  return !c->pending && !c->discard &&
         (c->inflight >= MAX_INFLIGHT_REQUESTS ||
          c->inflight_bytes + queued >= MAX_INFLIGHT_BYTES);
}

/* Feeds buffered input to the current phase until it needs more. */
static void
process_input (struct conn *c)
{
  size_t off = 0;

  while (!c->closing && off < c->in_len) {
    ssize_t n = c->phase == PHASE_TRANSMISSION
                  ? transmission_input (c, c->in + off, c->in_len - off)
                  : handshake_input (c, c->in + off, c->in_len - off);
    if (n < 0 || c->closing)
      return;
    if (n == 0)
      break;
    off += (size_t) n;
    if (c->finishing || c->tls_starting || over_limits (c))
      break;
  }
  memmove (c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
  if (c->tls_starting && !c->closing) {
    /* Whatever followed STARTTLS is the client's first TLS record. */
    c->tls_starting = false;
    if (tls_feed (c, c->in, c->in_len) < 0) {
      conn_close (c);
      return;
    }
    c->in_len = 0;
    tls_pump (c);
  }
}

/* Decrypts buffered ciphertext into c->in and parses it, until GnuTLS
 * needs more ciphertext or the parser cannot take more. */
static void
tls_pump (struct conn *c)
{
  /* A finishing connection still takes the data of a write in flight. */
  while (!c->closing && c->tls && (!c->finishing || c->pending || c->discard) &&
         c->in_len < INPUT_BUFFER_BYTES) {
    ssize_t n = tls_recv (c, c->in + c->in_len, INPUT_BUFFER_BYTES - c->in_len);
    if (n < 0) {
      conn_close (c);
      return;
    }
    if (n == 0)
      return;
    c->in_len += (size_t) n;
    process_input (c);
  }
}

static void
read_cb (uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  struct conn *c = s->data;

  if (nread < 0) {
    if (nread != UV_EOF)
      log_info ("connection %llu: %s", (unsigned long long) c->id,
                uv_strerror ((int) nread));
    else
      log_info ("connection %llu: client closed", (unsigned long long) c->id);
    conn_close (c);
    return;
  }
  if (nread == 0)
    return;
  if (c->tls) {
    tls_received (c, (size_t) nread);
    tls_pump (c);
  } else if (c->direct) {
    c->direct = false;
    transmission_direct_filled (c, (size_t) nread);
  } else {
    c->in_len += (size_t) nread;
    process_input (c);
  }
  if (!c->closing)
    conn_update_reading (c);
}

/* Reads while the connection can take more: not finishing, below the
 * in-flight limits, and with room in the input buffer. */
static bool
wants_input (const struct conn *c)
{
  /* A write's data or a refused write's bytes must be read whatever the
   * limits, or the request holding them would never finish. */
  return !c->closing &&
         (c->pending || c->discard || (!c->finishing && !over_limits (c)));
}

void
conn_update_reading (struct conn *c)
{
  bool want = wants_input (c);

  /* Input buffered while over the limits may be parseable now.  This runs
   * whether or not the socket is being read: parsing stops at the limits,
   * and a client that sent everything at once sends nothing more to wake
   * us up. */
  if (want && c->in_len) {
    process_input (c);
    if (c->closing || c->finishing)
      return;
  }
  /* Only when something is buffered: this runs as every request ends. */
  if (want && tls_has_input (c)) {
    tls_pump (c);
    if (c->closing || c->finishing)
      return;
  }
  want = wants_input (c);
  if (want && !c->reading) {
    if (uv_read_start (&c->h.stream, alloc_cb, read_cb) == 0)
      c->reading = true;
  } else if (!want && c->reading) {
    uv_read_stop (&c->h.stream);
    c->reading = false;
  }
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
  uv_timer_init (loop, &c->handshake_timer);
  c->handshake_timer.data = c;
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
  log_info ("connection %llu opened", (unsigned long long) c->id);
  if (server_stopping ()) {
    conn_close (c);
    return;
  }
  if (n_live > max_connections) {
    log_error ("connection %llu refused: already %u connections "
               "(--max-connections)",
               (unsigned long long) c->id, max_connections);
    conn_close (c);
    return;
  }
  if (handshake_ms)
    uv_timer_start (&c->handshake_timer, on_handshake_timeout, handshake_ms, 0);
  handshake_start (c);
  conn_update_reading (c);
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
    if (c->exp == e && !c->closing) {
      conn_finish (c);
      n++;
    }
  }
  return n;
}

void
conn_shutdown_all (void)
{
  for (struct conn *c = all_conns, *next; c; c = next) {
    next = c->next;
    if (c->phase != PHASE_TRANSMISSION)
      conn_close (c);
    else
      conn_finish (c);
  }
}
