/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: TLS records move through the thread pool, off the loop.
 *
 * GnuTLS never touches the socket: its pull function reads ciphertext
 * that read_cb stored in the session's input buffer, and its push
 * function appends ciphertext to an output buffer that tls_flush hands
 * to one uv_write.  The record work itself (the handshake, decrypting
 * what came in, encrypting the replies) runs in the connection's receive
 * and send jobs in the libuv pool (tls_session.h says who touches what):
 * the loop thread only moves buffers, and the connections of a client
 * such as nbdcopy encrypt on as many cores as the pool has. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/tls_session.h"

#define CIPHER_READ_BYTES (64 * 1024)
/* Replies one job encrypts at most: enough to amortise the hand-off
 * (a job also stops at a full socket, so no ciphertext piles up); the
 * replies' buffers go back when the job ends.  1 MiB against 256 KiB:
 * TLS nbdcopy 955 against 903 MiB/s (medians of 5), peak RSS 29-32 MiB
 * either way. */
#define JOB_SEND_BYTES (1024 * 1024)
/* Small buffers (reply headers, 4 KiB reads) are gathered into full
 * records: one record per 16-byte header doubled the records (and
 * their tags) of a 4 KiB random read. */
#define RECORD_BYTES 16384
/* Work this small is done on the loop: handing it to the pool and back
 * (two wake-ups, often two context switches) costs more than doing it.
 * A 4 KiB random read's reply, or a few request headers (each in a
 * record of its own from libnbd), stay on the loop; a 256 KiB read's
 * reply or a write's data go to the pool. */
#define INLINE_BYTES (16 * 1024)
#define INLINE_RECORD 1024 /* records holding requests, not write data */
/* A write's data is decrypted straight into its buffer once this much
 * (or all of it) is buffered: a job per 16 KiB record cost more in
 * hand-offs than the AES-GCM.  Reading pauses at TLS_INPUT_MAX. */
#define DIRECT_MIN (128 * 1024)
#define TLS_INPUT_MAX (256 * 1024)

static struct tls *
session_tls (gnutls_transport_ptr_t ptr)
{
  return ptr;
}

/* Room for `more` bytes of ciphertext (out_lock held).  Buffers are
 * page-aligned powers of two, so the loop hands them back to the request
 * buffer pool once written (warm, reused pages); from_pool: on the loop,
 * which alone may use the pool. */
static int
grow_out (struct tls *t, size_t more, bool from_pool)
{
  size_t cap = t->out_cap ? t->out_cap : 16384;
  void *n = NULL;

  if (t->out_len + more <= t->out_cap)
    return 0;
  while (cap < t->out_len + more)
    cap *= 2;
  if (from_pool)
    n = bufpool_get (cap); /* loop thread only */
  if (!n && posix_memalign (&n, 4096, cap) != 0)
    return -ENOMEM;
  if (t->out_len)
    memcpy (n, t->out, t->out_len);
  if (from_pool)
    bufpool_put (t->out, t->out_cap);
  else
    free (t->out);
  t->out = n;
  t->out_cap = cap;
  return 0;
}

/* Appends to out (out_lock held); -1 if out of memory. */
static int
push_buffered (struct tls *t, const void *data, size_t len)
{
  if (grow_out (t, len, false) < 0)
    return -1;
  memcpy (t->out + t->out_len, data, len);
  t->out_len += len;
  return 0;
}

/* Records go straight to the socket while a send job may write there
 * (direct_fd) and it takes them: no copy and no buffer.  Once it is full
 * the rest, and all after it, waits in out for the loop to write, in
 * order. */
static ssize_t
push (gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
  struct tls *t = session_tls (ptr);
  const char *p = data;
  size_t left = len;
  int err = ENOMEM;

  if (len == 0)
    return 0;
  pthread_mutex_lock (&t->out_lock);
  if (t->direct_fd >= 0 && t->out_len == 0) {
    ssize_t n = send (t->direct_fd, p, left, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      err = errno;
      t->push_errno = err; /* for send_done's message */
      goto fail;
    }
    if (n > 0) {
      t->direct_bytes += (size_t) n;
      p += n;
      left -= (size_t) n;
    }
    if (left)
      t->direct_fd = -1; /* the job's end closes the descriptor */
  }
  if (left && push_buffered (t, p, left) < 0)
    goto fail;
  pthread_mutex_unlock (&t->out_lock);
  return (ssize_t) len;
fail:
  pthread_mutex_unlock (&t->out_lock);
  errno = err; /* this thread's, not the session's: see pull */
  return -1;
}

/* The size of the record at p (header and body), or 0 if its header is
 * not all there; not a TLS record type (an SSLv2 hello): all there is. */
static size_t
record_size (const char *p, size_t avail)
{
  const unsigned char *u = (const unsigned char *) p;

  if (avail < 5)
    return 0;
  if (u[0] < 20 || u[0] > 24)
    return avail;
  return 5 + ((size_t) u[3] << 8 | u[4]);
}

/* in_lock held: the bytes pull may still give of the record it is in,
 * or of the next one if it is all there; 0 if none. */
static size_t
record_left (const struct tls *t)
{
  size_t need;

  if (t->rec_left)
    return t->rec_left;
  need = record_size (t->in + t->in_start, t->in_len);
  return need <= t->in_len ? need : 0;
}

/* GnuTLS gets whole records only: it never holds part of one, so the
 * loop can tell from what is buffered whether a job has work and how
 * much (scan_records). */
static ssize_t
pull (gnutls_transport_ptr_t ptr, void *data, size_t len)
{
  struct tls *t = session_tls (ptr);

  pthread_mutex_lock (&t->in_lock);
  t->rec_left = record_left (t);
  if (t->rec_left == 0) {
    pthread_mutex_unlock (&t->in_lock);
    /* errno, never gnutls_transport_set_errno: that stores it in the
     * session, which GnuTLS clears before every push and pull, so a
     * sender in another thread could wipe our EAGAIN before GnuTLS read
     * it, and the receive job failed with "Error in the pull function"
     * (seen with TLS writes and replies encrypted on the loop).  With
     * no session errno GnuTLS reads this thread's errno. */
    errno = EAGAIN;
    return -1;
  }
  if (len > t->rec_left)
    len = t->rec_left;
  memcpy (data, t->in + t->in_start, len);
  t->in_start += len;
  t->in_len -= len;
  t->rec_left -= len;
  pthread_mutex_unlock (&t->in_lock);
  return (ssize_t) len;
}

/* Loop, no receive job running: the bytes of the whole records
 * buffered (counting at most limit + one record) and the largest of
 * them. */
static size_t
scan_records (const struct tls *t, size_t limit, size_t *largest)
{
  size_t off = t->rec_left, end = t->in_len;

  *largest = t->rec_left;
  if (off > end)
    return 0;
  while (off < end && off <= limit) {
    size_t n = record_size (t->in + t->in_start + off, end - off);
    if (n == 0 || n > end - off)
      break;
    if (n > *largest)
      *largest = n;
    off += n;
  }
  return off;
}

/* Never waits: there is data or there is not (the loop calls again). */
static int
pull_timeout (gnutls_transport_ptr_t ptr, unsigned ms)
{
  struct tls *t = session_tls (ptr);
  bool any;

  (void) ms;
  pthread_mutex_lock (&t->in_lock);
  any = t->in_len > 0;
  pthread_mutex_unlock (&t->in_lock);
  return any;
}

int
tls_io_init (struct tls *t)
{
  int r = pthread_mutex_init (&t->in_lock, NULL);

  if (r != 0)
    return -r;
  r = pthread_mutex_init (&t->out_lock, NULL);
  if (r != 0) {
    pthread_mutex_destroy (&t->in_lock);
    return -r;
  }
  r = pthread_mutex_init (&t->record_lock, NULL);
  if (r != 0) {
    pthread_mutex_destroy (&t->in_lock);
    pthread_mutex_destroy (&t->out_lock);
    return -r;
  }
  t->send_tail = &t->send;
  t->direct_fd = -1; /* not 0: that is a descriptor too */
  gnutls_transport_set_ptr (t->session, t);
  gnutls_transport_set_push_function (t->session, push);
  gnutls_transport_set_pull_function (t->session, pull);
  gnutls_transport_set_pull_timeout_function (t->session, pull_timeout);
  return 0;
}

void
tls_io_free (struct tls *t)
{
  /* No job runs: each holds a reference to the connection. */
  pthread_mutex_destroy (&t->in_lock);
  pthread_mutex_destroy (&t->out_lock);
  pthread_mutex_destroy (&t->record_lock);
  free (t->in);
  bufpool_put (t->out, t->out_cap);
}

static void send_queued (struct conn *c);

struct tls_write {
  uv_write_t w;
  struct conn *c;
  char *data;
  size_t cap;  /* data's size, for the pool */
  size_t held; /* counted in c->output_bytes until written */
};

static void
after_tls_write (uv_write_t *w, int status)
{
  struct tls_write *tw = w->data;
  struct conn *c = tw->c; /* it outlives its handle's write callbacks */

  (void) status; /* a failed write ends in read_cb's error or EOF */
  conn_release (&c->output_bytes, tw->held);
  bufpool_put (tw->data, tw->cap);
  free (tw);
  if (c->tls->blocked && !conn_closed (c) &&
      uv_stream_get_write_queue_size (&c->h.stream) == 0) {
    c->tls->blocked = false; /* caught up: encrypt what waits */
    send_queued (c);
  }
  conn_wake (c); /* output budget freed: parsing may resume */
}

int
tls_flush (struct conn *c)
{
  struct tls *t = c->tls;
  struct tls_write *tw;
  uv_buf_t b;
  int r;

  tw = malloc (sizeof *tw);
  if (!tw)
    return -ENOMEM;
  pthread_mutex_lock (&t->out_lock);
  tw->w.data = tw;
  tw->c = c;
  tw->data = t->out;
  tw->cap = t->out_cap;
  /* What it holds, not what it says: an option reply of 40 bytes
   * sits in a 16 KiB buffer until the client reads it. */
  tw->held = sizeof *tw + t->out_cap;
  b = uv_buf_init (t->out, (unsigned) t->out_len);
  t->out = NULL;
  t->out_len = t->out_cap = 0;
  pthread_mutex_unlock (&t->out_lock);
  if (b.len == 0) {
    bufpool_put (tw->data, tw->cap);
    free (tw);
    return 0;
  }
  r = conn_stream_write (c, &tw->w, &b, 1, after_tls_write);
  if (r < 0) {
    bufpool_put (tw->data, tw->cap);
    free (tw);
    return r;
  }
  conn_hold (&c->output_bytes, tw->held); /* the gate counts it */
  return 0;
}

/* A job runs, or replies wait to be encrypted (a job stopped at a full
 * socket): shutdown's close_notify must come after them. */
bool
tls_busy (const struct conn *c)
{
  const struct tls *t = c->tls;

  return t && (t->receiving || t->sending || (t->established && t->send));
}

bool
tls_decrypting (const struct conn *c)
{
  return c->tls && c->tls->receiving;
}

/* Whether a job could yield plaintext without a new read: ciphertext
 * stored but not pulled, or records GnuTLS decrypted but not handed
 * out.  While a job runs, its end says (conn_wake). */
bool
tls_has_input (const struct conn *c)
{
  const struct tls *t = c->tls;

  size_t largest;

  /* No receive job runs, so nothing but the loop touches in. */
  return t && !t->receiving &&
         (t->pending || scan_records (t, 0, &largest) > 0);
}

/* Reading pauses while a job works through a full buffer: ciphertext
 * must not pile up faster than the pool decrypts it. */
bool
tls_input_full (const struct conn *c)
{
  struct tls *t = c->tls;
  bool full;

  if (!t)
    return false;
  pthread_mutex_lock (&t->in_lock);
  full = t->in_len >= TLS_INPUT_MAX;
  pthread_mutex_unlock (&t->in_lock);
  return full;
}

bool
tls_handshake_done (const struct conn *c)
{
  return c->tls && c->tls->established;
}

void
tls_alloc (struct conn *c, uv_buf_t *buf)
{
  struct tls *t = c->tls;

  pthread_mutex_lock (&t->in_lock);
  if (t->in_start && t->in_len == 0)
    t->in_start = 0;
  if (t->in_start + t->in_len + CIPHER_READ_BYTES > t->in_cap) {
    /* Compact, then grow only if still short (t->in is NULL at first).
     * A job pulls only under the lock, so moving the bytes is safe. */
    if (t->in_len)
      memmove (t->in, t->in + t->in_start, t->in_len);
    t->in_start = 0;
    if (t->in_len + CIPHER_READ_BYTES > t->in_cap) {
      char *n = realloc (t->in, t->in_len + CIPHER_READ_BYTES);
      if (!n) {
        pthread_mutex_unlock (&t->in_lock);
        *buf = uv_buf_init (NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
      }
      t->in = n;
      t->in_cap = t->in_len + CIPHER_READ_BYTES;
    }
  }
  /* The read fills bytes past in_len, which no job touches. */
  *buf = uv_buf_init (t->in + t->in_start + t->in_len,
                      (unsigned) (t->in_cap - t->in_start - t->in_len));
  pthread_mutex_unlock (&t->in_lock);
}

void
tls_received (struct conn *c, size_t n)
{
  struct tls *t = c->tls;

  pthread_mutex_lock (&t->in_lock);
  t->in_len += n;
  pthread_mutex_unlock (&t->in_lock);
}

int
tls_feed (struct conn *c, const void *data, size_t len)
{
  uv_buf_t b;

  while (len > 0) {
    tls_alloc (c, &b);
    if (!b.base)
      return -ENOMEM;
    size_t n = len < b.len ? len : b.len;
    memcpy (b.base, data, n);
    tls_received (c, n);
    data = (const char *) data + n;
    len -= n;
  }
  return 0;
}

/* Job: the handshake until it is done.  Returns false while it still
 * runs or if it failed (handshake_err). */
static bool
job_handshake (struct tls *t, struct tls_recv_job *j)
{
  int r;

  if (t->handshake_done)
    return true;
  do
    r = gnutls_handshake (t->session);
  while (r == GNUTLS_E_INTERRUPTED);
  if (r == GNUTLS_E_AGAIN)
    return false;
  if (r < 0) {
    j->handshake_err = r;
    return false;
  }
  t->handshake_done = true;
  j->handshake_now = true;
  tls_log_peer (t);
  return true;
}

/* Job: whether pull has a record (or the rest of one) to give. */
static bool
record_buffered (struct tls *t)
{
  bool any;

  pthread_mutex_lock (&t->in_lock);
  any = record_left (t) > 0;
  pthread_mutex_unlock (&t->in_lock);
  return any;
}

/* Job: decrypts records into dst until it is full or no whole record is
 * left.  Non-fatal errors (alerts, a renegotiation request) consume
 * records; a bound keeps a misbehaving peer from holding a worker. */
static void
job_recv (struct tls *t, struct tls_recv_job *j)
{
  unsigned tries = 0;

  if (!job_handshake (t, j))
    return;
  while (j->got < j->dst_cap) {
    ssize_t n;

    pthread_mutex_lock (&t->record_lock); /* tls_session.h says why */
    n = gnutls_record_recv (t->session, j->dst + j->got, j->dst_cap - j->got);
    pthread_mutex_unlock (&t->record_lock);
    if (n > 0) {
      j->got += (size_t) n;
      continue;
    }
    /* GnuTLS also answers AGAIN after a post-handshake message (a TLS
     * 1.3 KeyUpdate) with whole records still buffered: stopping then
     * left a request unparsed until the client sent more, which a
     * client waiting for its reply never does. */
    if (n == GNUTLS_E_AGAIN) {
      if (record_buffered (t) && ++tries < 64)
        continue;
      break;
    }
    if (n == 0 || gnutls_error_is_fatal ((int) n) || ++tries >= 64) {
      j->recv_err = n == 0 ? TLS_JOB_EOF : (int) n;
      break;
    }
  }
  pthread_mutex_lock (&t->record_lock);
  t->pending = gnutls_record_check_pending (t->session) > 0;
  pthread_mutex_unlock (&t->record_lock);
}

/* Job: whether a job that writes straight to the socket found it full
 * (push kept what the socket did not take, and stopped writing). */
static bool
socket_filled (struct tls *t, bool direct)
{
  bool filled;

  if (!direct)
    return false;
  pthread_mutex_lock (&t->out_lock);
  filled = t->direct_fd < 0;
  pthread_mutex_unlock (&t->out_lock);
  return filled;
}

/* Job: len bytes in records of the session's size; *sent says how many
 * went.  With direct, it stops at the first record the socket did not
 * wholly take: encrypting on would only queue ciphertext (a copy of it,
 * and memory) faster than the client reads it. */
static int
send_records (struct tls *t, bool direct, const char *p, size_t len,
              size_t *sent)
{
  unsigned retries = 0;

  *sent = 0;
  while (*sent < len) {
    ssize_t s;

    pthread_mutex_lock (&t->record_lock); /* tls_session.h says why */
    s = gnutls_record_send (t->session, p + *sent, len - *sent);
    pthread_mutex_unlock (&t->record_lock);
    /* push never blocks, so these are only requests to call again. */
    if ((s == GNUTLS_E_INTERRUPTED || s == GNUTLS_E_AGAIN) && ++retries < 16)
      continue;
    if (s < 0)
      return (int) s;
    *sent += (size_t) s;
    if (socket_filled (t, direct))
      break;
  }
  return 0;
}

/* Job: every buffer of every reply, in order, from j->from on.  Whole
 * records go from the reply's buffer; the pieces around them (headers,
 * small reads, the ends of large ones) are gathered into full records
 * first.  Writing straight to the socket, the job stops where it fills
 * up, between records (j->stop); the loop resumes there once the socket
 * has drained. */
static void
job_send (struct tls *t, struct tls_send_job *j)
{
  char stage[RECORD_BYTES];
  size_t staged = 0, rec, sent;
  bool direct;
  int r = 0;

  pthread_mutex_lock (&t->record_lock);
  rec = gnutls_record_get_max_size (t->session);
  pthread_mutex_unlock (&t->record_lock);
  pthread_mutex_lock (&t->out_lock);
  direct = t->direct_fd >= 0;
  pthread_mutex_unlock (&t->out_lock);
  j->bytes = 0;
  j->stop = (struct tls_send_mark){ NULL, 0, 0 };
  if (rec == 0 || rec > sizeof stage)
    rec = sizeof stage;
  for (struct queued_reply *q = j->send; q && r == 0; q = q->next)
    for (unsigned i = q == j->from.q ? j->from.buf : 0; i < q->n && r == 0;
         i++) {
      const char *base = q->bufs[i].base;
      size_t skip = q == j->from.q && i == j->from.buf ? j->from.off : 0;
      const char *p = base + skip;
      size_t len = q->bufs[i].len - skip;
      if (staged || len < rec) {
        size_t take = rec - staged < len ? rec - staged : len;
        memcpy (stage + staged, p, take);
        staged += take;
        p += take;
        len -= take;
        if (staged == rec) {
          r = send_records (t, false, stage, staged, &sent);
          j->bytes += staged;
          staged = 0;
        }
      }
      if (r == 0 && len >= rec && !socket_filled (t, direct)) {
        r = send_records (t, direct, p, len - len % rec, &sent);
        j->bytes += sent;
        p += sent;
        len -= sent;
      }
      if (r == 0 && socket_filled (t, direct)) {
        /* staged is 0 here: each stop follows a whole record.  A reply
         * sent to its end is done: the mark moves to the next one (none:
         * nothing is left, and send_queued sees the socket behind). */
        bool whole = len == 0 && i + 1 == q->n;
        j->stop = whole ? (struct tls_send_mark){ q->next, 0, 0 }
                        : (struct tls_send_mark){ q, i, (size_t) (p - base) };
        j->err = 0;
        return;
      }
      if (r == 0 && len) {
        memcpy (stage, p, len); /* staged is 0 here */
        staged = len;
      }
    }
  if (r == 0 && staged) {
    r = send_records (t, false, stage, staged, &sent);
    j->bytes += staged;
  }
  j->err = r;
}

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
recv_work (uv_work_t *w)
{
  struct tls *t = w->data;

  job_recv (t, &t->recv_job);
}

static void
send_work (uv_work_t *w)
{
  struct tls *t = w->data;

  job_send (t, &t->send_job);
}

static void send_done (uv_work_t *w, int status);

/* A few small replies, encrypted here (INLINE_BYTES); then written. */
static void
send_inline (struct conn *c, struct tls_send_job *j)
{
  struct tls *t = c->tls;
  int r;

  job_send (t, j);
  t->inline_encrypted += j->bytes;
  if (j->err)
    conn_log (c, LOG_LEVEL_INFO, "TLS send: %s", gnutls_strerror (j->err));
  r = j->err ? -EIO : tls_flush (c);
  if (r < 0)
    conn_close (c); /* not written, so not acknowledged */
  complete (j->send, r);
  j->send = NULL;
}

/* Starts a send job with the replies waiting (up to JOB_SEND_BYTES),
 * unless one runs (its end does) or the socket is behind (the write
 * that catches up does).  A reply that cannot be sent closes the
 * connection. */
static void
send_queued (struct conn *c)
{
  struct tls *t = c->tls;
  struct tls_send_job *j = &t->send_job;
  struct queued_reply *q = t->send, *last = NULL;
  size_t bytes = 0, nbufs = 0, skip = 0;
  bool inline_job;
  uv_os_fd_t fd;
  int r;

  if (t->sending || t->blocked || !t->established || !t->send)
    return;
  if (t->resume.q == q) { /* part of the head reply went out already */
    for (unsigned i = 0; i < t->resume.buf; i++)
      skip += q->bufs[i].len;
    skip += t->resume.off;
  }
  while (q && bytes < JOB_SEND_BYTES + skip) {
    for (unsigned i = 0; i < q->n; i++)
      bytes += q->bufs[i].len;
    nbufs += q->n;
    last = q;
    q = q->next;
  }
  bytes -= skip;
  inline_job = bytes <= INLINE_BYTES && !q;
  if (!inline_job && uv_stream_get_write_queue_size (&c->h.stream) > 0) {
    /* The socket is behind: after_tls_write starts the job once it has
     * caught up, so that it writes straight to the socket. */
    t->blocked = true;
    return;
  }
  *j = (struct tls_send_job){ .send = t->send, .from = t->resume };
  t->resume = (struct tls_send_mark){ NULL, 0, 0 };
  t->send = last->next;
  last->next = NULL;
  if (!t->send)
    t->send_tail = &t->send;
  if (inline_job) {
    send_inline (c, j);
    return;
  }
  /* Nothing of ours waits in libuv's queue (and the loop writes nothing
   * to this socket until the job is done): the job may write straight to
   * the socket, through a descriptor of its own, which a close of the
   * connection meanwhile cannot hand to another client.  Otherwise its
   * ciphertext buffer is reserved for all of it (each record adds a
   * header, a tag and padding, well under 256 bytes). */
  pthread_mutex_lock (&t->out_lock);
  j->fd = -1;
  if (t->out_len == 0 && uv_fileno ((uv_handle_t *) &c->h, &fd) == 0)
    j->fd = fcntl (fd, F_DUPFD_CLOEXEC, 0);
  t->direct_fd = j->fd;
  t->direct_bytes = 0;
  /* Direct, the job buffers at most the record the socket did not take
   * all of (then it stops); from the pool here, as workers cannot take
   * from it, so that the buffer comes back to be used again. */
  r = grow_out (t,
                j->fd >= 0 ? RECORD_BYTES + 256
                           : bytes + (bytes / RECORD_BYTES + nbufs + 2) * 256,
                true);
  pthread_mutex_unlock (&t->out_lock);
  if (r == 0) {
    j->work.data = t;
    r = uv_queue_work (server_loop, &j->work, send_work, send_done);
  }
  if (r < 0) {
    if (j->fd >= 0)
      close (j->fd);
    t->direct_fd = -1;
    conn_log (c, LOG_LEVEL_ERROR, "TLS: %s",
              r == -ENOMEM ? "out of memory" : uv_strerror (r));
    conn_close (c); /* drops the rest of the queue */
    complete (j->send, r);
    j->send = NULL;
    return;
  }
  t->sending = true;
  conn_ref (c); /* the session lives until the job is done */
}

/* Loop: the job stopped at a full socket; the replies from where it
 * stopped go back to the head of the queue, to be resumed there once
 * the socket has drained (after_tls_write). */
static void
requeue_unsent (struct tls *t, struct tls_send_job *j)
{
  struct queued_reply **cut = &j->send, *last = j->stop.q;

  while (*cut != j->stop.q)
    cut = &(*cut)->next;
  *cut = NULL; /* j->send: the replies wholly sent */
  while (last->next)
    last = last->next;
  last->next = t->send;
  if (!t->send)
    t->send_tail = &last->next;
  t->send = j->stop.q;
  t->resume = j->stop;
  t->blocked = true;
  t->stops++;
}

/* Loop: the ciphertext goes out, then the replies are done (their
 * buffers go back), and the next send job starts with what queued
 * meanwhile. */
static void
send_done (uv_work_t *w, int status)
{
  struct tls *t = w->data;
  struct tls_send_job *j = &t->send_job;
  struct conn *c = t->conn;
  int r = status < 0 ? status : j->err ? -EIO : 0;

  t->sending = false;
  t->jobs++;
  t->bytes_encrypted += j->bytes;
  /* No job pushes now: the lock only orders this after the job's. */
  pthread_mutex_lock (&t->out_lock);
  t->direct_fd = -1;
  c->submitted += t->direct_bytes; /* taken by the socket (drain timer) */
  t->direct_bytes = 0;
  pthread_mutex_unlock (&t->out_lock);
  if (j->fd >= 0)
    close (j->fd);
  if (j->stop.q && !conn_closed (c))
    requeue_unsent (t, j);
  if (j->err == GNUTLS_E_PUSH_ERROR && t->push_errno)
    conn_log (c, LOG_LEVEL_INFO, "the client went away: %s",
              strerror (t->push_errno));
  else if (j->err)
    conn_log (c, LOG_LEVEL_INFO, "TLS send: %s", gnutls_strerror (j->err));
  if (conn_closed (c))
    r = -ESHUTDOWN;
  else if (r == 0)
    r = tls_flush (c);
  if (r < 0)
    conn_close (c); /* not written, so not acknowledged */
  complete (j->send, r);
  j->send = NULL;
  if (!conn_closed (c)) {
    send_queued (c);
    conn_wake (c); /* a shutdown may have waited for this job */
  }
  conn_unref (c);
}

/* Loop: whether the session goes on after a receive (logs why not). */
static bool
recv_ok (struct tls *t, const struct tls_recv_job *j, int status)
{
  struct conn *c = t->conn;

  if (status < 0)
    conn_log (c, LOG_LEVEL_INFO, "TLS: %s", uv_strerror (status));
  else if (j->handshake_err)
    tls_log_handshake_failure (t, j->handshake_err);
  else if (j->recv_err == TLS_JOB_EOF)
    conn_log (c, LOG_LEVEL_INFO, "client ended TLS");
  else if (j->recv_err)
    conn_log (c, LOG_LEVEL_INFO, "TLS: %s", gnutls_strerror (j->recv_err));
  else
    return true;
  return false;
}

/* Loop: the plaintext is the connection's to parse (conn_wake), and the
 * handshake's messages go out. */
static void
recv_done (uv_work_t *w, int status)
{
  struct tls *t = w->data;
  struct tls_recv_job *j = &t->recv_job;
  struct conn *c = t->conn;

  t->receiving = false;
  t->jobs++;
  t->bytes_decrypted += j->got;
  if (j->handshake_now)
    t->established = true;
  if (conn_closed (c))
    transmission_drop_pending (c); /* conn_close left it to us */
  else {
    if (j->direct)
      transmission_direct_filled (c, j->got);
    else
      c->in_len += j->got;
    /* Handshake messages; after it, nothing else pushes on this side
     * while a send job runs, which writes it all at its end. */
    if (!t->sending && tls_flush (c) < 0)
      conn_close (c);
  }
  if (!conn_closed (c) && !recv_ok (t, j, status))
    conn_close (c);
  if (!conn_closed (c)) {
    send_queued (c); /* option replies that waited for the handshake */
    conn_wake (c);   /* parse the plaintext, read or decrypt more */
  }
  conn_unref (c);
}

ssize_t
tls_recv (struct conn *c, uint8_t *dst, size_t cap, bool direct)
{
  struct tls *t = c->tls;
  struct tls_recv_job *j = &t->recv_job;
  size_t largest, bytes;
  int r;

  if (t->receiving)
    return 0;
  *j = (struct tls_recv_job){ .dst = dst, .dst_cap = cap, .direct = direct };
  bytes = scan_records (t, DIRECT_MIN, &largest);
  /* A write's data: wait for a worthwhile share while reading goes on. */
  if (direct && !t->pending && bytes < cap && bytes < DIRECT_MIN &&
      t->in_len < TLS_INPUT_MAX)
    return 0;
  if (t->established && bytes <= INLINE_BYTES &&
      (largest <= INLINE_RECORD || direct)) {
    job_recv (t, j); /* here: requests, each in a small record */
    t->inline_decrypted += j->got;
    return recv_ok (t, j, 0) ? (ssize_t) j->got : -1;
  }
  j->work.data = t;
  r = uv_queue_work (server_loop, &j->work, recv_work, recv_done);
  if (r < 0) {
    conn_log (c, LOG_LEVEL_ERROR, "TLS: %s", uv_strerror (r));
    return -1;
  }
  t->receiving = true;
  conn_ref (c); /* the session lives until the job is done */
  return 0;
}

/* Replies (chained by next) to encrypt in order behind what is queued;
 * done runs for each once its ciphertext is queued on the socket. */
void
tls_send (struct conn *c, struct queued_reply *chain)
{
  struct tls *t = c->tls;

  for (struct queued_reply *q = chain; q; q = q->next) {
    *t->send_tail = q;
    t->send_tail = &q->next;
  }
  send_queued (c);
}

/* A copy of an option reply, until its ciphertext is queued. */
struct tls_copy {
  struct queued_reply q;
  struct conn *c;
  size_t held;
  char data[];
};

static void
copy_done (struct queued_reply *q, int status)
{
  struct tls_copy *k = (struct tls_copy *) q;

  (void) status;
  conn_release (&k->c->output_bytes, k->held);
  free (k);
}

int
tls_send_copy (struct conn *c, const void *data, size_t len)
{
  struct tls_copy *k = malloc (sizeof *k + len);

  if (!k)
    return -ENOMEM;
  k->c = c;
  k->held = sizeof *k + len;
  memcpy (k->data, data, len);
  k->q.next = NULL;
  k->q.bufs[0] = uv_buf_init (k->data, (unsigned) len);
  k->q.n = 1;
  k->q.done = copy_done;
  conn_hold (&c->output_bytes, k->held); /* the gate counts it */
  tls_send (c, &k->q);
  return 0;
}

/* The connection closed: replies not yet encrypted never go out. */
void
tls_drop_queued (struct conn *c, int status)
{
  struct tls *t = c->tls;
  struct queued_reply *q;

  if (!t)
    return;
  q = t->send;
  t->send = NULL;
  t->send_tail = &t->send;
  t->resume = (struct tls_send_mark){ NULL, 0, 0 };
  t->blocked = false;
  complete (q, status);
}
