/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the nbd node: a remote export through libnbd, so ciphertext
 * (or a header) can live on any NBD server (nbdkit, qemu-nbd, rbd-nbd,
 * another luks-nbd).  Workers share a small pool of connections: one per
 * concurrent request when the server allows multi-conn, else one.
 *
 * Durability: NODE_FUA means every byte of the call is durable on return
 * (a request that fits one chunk carries FUA, otherwise or when the
 * server has no FUA a flush follows); flush covers every write completed
 * before it.  A connection that
 * dies is dropped and made again on next use (bounded retries); if it
 * died with writes not yet flushed, the next flush fails once with EIO,
 * because those writes may never have reached stable storage. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "common/error_msg.h"
#include "formats/nbd_api.h"
#include "formats/node.h"

#define NBD_POOL_MAX 8
#define NBD_CHUNK_DEFAULT (32 * 1024 * 1024)
/* Reconnecting a dropped connection: this many attempts, the delay
 * doubling from the first, so a request waits at most ~0.7 s. */
#define NBD_CONNECT_ATTEMPTS 4
#define NBD_CONNECT_DELAY_MS 100
/* Block status round trips per extents call: the reply to our own client
 * may cover less, and it asks again. */
#define NBD_EXTENTS_MAX_CALLS 16

struct nbd_node {
  struct node node;
  char *uri;
  pthread_mutex_t lock;
  pthread_cond_t idle_cond;
  /* A slot's handle is NULL after its connection died (made again on
   * next use); only the thread that holds the slot (busy) touches it. */
  struct nbd_handle *handles[NBD_POOL_MAX];
  bool busy[NBD_POOL_MAX];
  unsigned n_handles, max_handles;
  uint64_t chunk; /* largest request the server takes */
  bool can_fua;
  /* Under lock: writes completed without FUA (a count), how many of them
   * the last successful flush covered, and whether a connection died
   * while some were not covered (reported by the next flush). */
  uint64_t writes_done, writes_flushed;
  bool writes_lost;
  bool can_cache; /* the server takes NBD_CMD_CACHE */
};

bool
node_is_uri (const char *s)
{
  return strncmp (s, "nbd://", 6) == 0 || strncmp (s, "nbds://", 7) == 0 ||
         strncmp (s, "nbd+unix://", 11) == 0 ||
         strncmp (s, "nbds+unix://", 12) == 0 ||
         strncmp (s, "nbd+vsock://", 12) == 0;
}

static int
nbd_failure (const char *uri, const char *what)
{
  int e = libnbd.get_errno ();

  return error_set (e ? -e : -EIO, "%s: %s: %s", uri, what,
                    libnbd.get_error ());
}

/* A TCP peer that vanishes without a FIN (power loss, a network cut)
 * would leave a request waiting for its reply for ever.  Keepalive probes
 * an idle connection (one waiting for a reply is idle to TCP) from 10 s
 * on, and TCP_USER_TIMEOUT (which also bounds keepalive) fails the socket
 * once nothing has been acknowledged for 60 s: the request fails (EIO)
 * and the next one reconnects.  Other sockets (unix, vsock) are left
 * alone; failing to set an option only loses this bound. */
#define NBD_KEEPALIVE_IDLE_S 10
#define NBD_KEEPALIVE_INTERVAL_S 5
#define NBD_KEEPALIVE_PROBES 4
#define NBD_USER_TIMEOUT_MS 60000

static void
set_keepalive (struct nbd_handle *h)
{
  int fd = libnbd.aio_get_fd (h), on = 1, idle = NBD_KEEPALIVE_IDLE_S;
  int intvl = NBD_KEEPALIVE_INTERVAL_S, cnt = NBD_KEEPALIVE_PROBES;
  unsigned timeout = NBD_USER_TIMEOUT_MS;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;

  if (fd < 0 || getsockname (fd, (struct sockaddr *) &ss, &len) < 0 ||
      (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
    return;
  setsockopt (fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt (fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt (fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  setsockopt (fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  setsockopt (fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout, sizeof timeout);
}

static int
connect_one (struct nbd_node *n, struct nbd_handle **out)
{
  struct nbd_handle *h = libnbd.create ();

  if (!h)
    return nbd_failure (n->uri, "nbd_create");
  /* Ask for allocation status, for extents (ignored if unsupported). */
  if (libnbd.add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
      libnbd.connect_uri (h, n->uri) < 0) {
    int r = nbd_failure (n->uri, "connect");
    libnbd.close (h);
    return r;
  }
  set_keepalive (h);
  *out = h;
  return 0;
}

static void
put_handle (struct nbd_node *n, unsigned slot)
{
  pthread_mutex_lock (&n->lock);
  n->busy[slot] = false;
  pthread_cond_signal (&n->idle_cond);
  pthread_mutex_unlock (&n->lock);
}

/* Closes a connection that died and empties its slot, so the next use
 * connects again instead of failing on it for ever.  Writes completed
 * but not yet flushed may have died with it: the next flush says so. */
static void
drop_connection (struct nbd_node *n, unsigned slot, const char *why)
{
  node_log ("%s: the connection died (%s); reconnecting on next use", n->uri,
            why);
  libnbd.close (n->handles[slot]);
  n->handles[slot] = NULL;
  pthread_mutex_lock (&n->lock);
  if (n->writes_done != n->writes_flushed)
    n->writes_lost = true;
  pthread_mutex_unlock (&n->lock);
}

/* An idle connection has nothing to read; one the server closed (it
 * restarted, or went away) polls as hung up.  Checked before each use so
 * that only requests in flight when a server goes away fail. */
static bool
closed_while_idle (struct nbd_handle *h)
{
  struct pollfd p = { .fd = libnbd.aio_get_fd (h), .events = POLLRDHUP };

  return p.fd < 0 || (poll (&p, 1, 0) == 1 &&
                      (p.revents & (POLLRDHUP | POLLHUP | POLLERR)));
}

/* What came back after a reconnect must still be the disk we opened. */
static bool
same_export (struct nbd_node *n, struct nbd_handle *h)
{
  int64_t size = libnbd.get_size (h);

  if (size < 0 || (uint64_t) size != n->node.size) {
    error_set (-EIO, "%s: the export is %lld bytes now, was %llu", n->uri,
               (long long) size, (unsigned long long) n->node.size);
    return false;
  }
  if (!n->node.readonly && libnbd.is_read_only (h) == 1) {
    error_set (-EROFS, "%s: the export is read-only now", n->uri);
    return false;
  }
  return true;
}

/* A dropped connection made again: a few attempts with a growing delay,
 * so a remote that restarts is found again, and one that is gone fails
 * the request (EIO) instead of holding it. */
static int
reconnect (struct nbd_node *n, struct nbd_handle **out)
{
  long delay_ms = NBD_CONNECT_DELAY_MS;
  int r = 0;

  for (int attempt = 1; attempt <= NBD_CONNECT_ATTEMPTS; attempt++) {
    r = connect_one (n, out);
    if (r == 0 && !same_export (n, *out)) {
      libnbd.close (*out);
      r = -EIO;
      break; /* a different disk now: retrying will not help */
    }
    if (r == 0) {
      node_log ("%s: reconnected (attempt %d)", n->uri, attempt);
      return 0;
    }
    if (attempt < NBD_CONNECT_ATTEMPTS) {
      struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000 };
      nanosleep (&ts, NULL);
      delay_ms *= 2;
    }
  }
  node_log ("%s: reconnecting failed after %d attempts: %s", n->uri,
            NBD_CONNECT_ATTEMPTS, error_message ());
  return error_set (-EIO, "%s: the connection to the NBD server is lost",
                    n->uri);
}

/* Takes an idle connection, opening another while the pool may grow. */
static int
get_handle (struct nbd_node *n, unsigned *slot)
{
  int r = 0;

  pthread_mutex_lock (&n->lock);
  for (;;) {
    for (unsigned i = 0; i < n->n_handles; i++)
      if (!n->busy[i]) {
        n->busy[i] = true;
        *slot = i;
        pthread_mutex_unlock (&n->lock);
        if (n->handles[i] && closed_while_idle (n->handles[i]))
          drop_connection (n, i, "closed by the server while idle");
        if (!n->handles[i] && (r = reconnect (n, &n->handles[i])) < 0) {
          put_handle (n, i);
          return r;
        }
        return 0;
      }
    if (n->n_handles < n->max_handles)
      break;
    pthread_cond_wait (&n->idle_cond, &n->lock);
  }
  unsigned i = n->n_handles++;
  n->busy[i] = true;
  pthread_mutex_unlock (&n->lock);
  r = connect_one (n, &n->handles[i]);
  if (r < 0) {
    pthread_mutex_lock (&n->lock);
    /* Give the slot back: the last slot is ours, nobody else took it
     * because n_handles only shrinks here. */
    n->n_handles--;
    n->busy[i] = false;
    pthread_cond_signal (&n->idle_cond);
    pthread_mutex_unlock (&n->lock);
    return r;
  }
  *slot = i;
  return 0;
}

/* After a failed command: a dead connection is dropped, and the caller
 * sees EIO whatever errno libnbd had (ENOTCONN, EPIPE). */
static int
command_failed (struct nbd_node *n, unsigned slot, const char *what)
{
  struct nbd_handle *h = n->handles[slot];
  int r = nbd_failure (n->uri, what);
  char why[512];

  if (libnbd.aio_is_dead (h) != 1 && libnbd.aio_is_closed (h) != 1)
    return r;
  snprintf (why, sizeof why, "%s", error_message ());
  drop_connection (n, slot, why);
  return error_set (-EIO, "%s", why);
}

/* Counts a write that completed without FUA: a later flush must cover it. */
static void
note_write (struct nbd_node *n)
{
  pthread_mutex_lock (&n->lock);
  n->writes_done++;
  pthread_mutex_unlock (&n->lock);
}

/* Flushes on the held connection.  With multi-conn (or a single
 * connection) one flush covers the writes completed on every connection
 * before it was sent.  Writes lost with a dead connection fail every
 * flush after, as a failed fdatasync does on a file: one flag for the
 * node cannot tell whose writes were lost, and clearing it at the first
 * flush (perhaps another client's, or a FUA write's own) would let the
 * next one report durable what may be gone. */
static int
flush_on (struct nbd_node *n, unsigned slot)
{
  uint64_t covered;
  bool lost;

  pthread_mutex_lock (&n->lock);
  covered = n->writes_done;
  pthread_mutex_unlock (&n->lock);
  if (libnbd.flush (n->handles[slot], 0) < 0)
    return command_failed (n, slot, "flush");
  pthread_mutex_lock (&n->lock);
  if (covered > n->writes_flushed)
    n->writes_flushed = covered;
  lost = n->writes_lost;
  pthread_mutex_unlock (&n->lock);
  if (lost)
    return error_set (-EIO,
                      "%s: a connection to the NBD server died with writes "
                      "not yet flushed: they may be lost, and every flush "
                      "fails until the export is opened again",
                      n->uri);
  return 0;
}

static int
nbd_io (struct node *node, bool write, void *buf, uint64_t count,
        uint64_t offset, int flags)
{
  struct nbd_node *n = (struct nbd_node *) node;
  unsigned slot;
  int r = get_handle (n, &slot);
  struct nbd_handle *h;

  if (r < 0)
    return r;
  h = n->handles[slot];
  /* The server's FUA covers only the bytes of its own request, so FUA on
   * the last chunk alone would leave the others in its cache.  One chunk
   * carries FUA; several go without it and one flush follows them (one
   * sync on the server instead of one per chunk: 50 FUA writes of 1 MiB
   * in 64 KiB chunks to nbdkit's file plugin took 0.37-0.63 s with FUA on
   * every chunk, 0.18-0.42 s with a flush, as fast as e8be15f). */
  bool fua = write && (flags & NODE_FUA);
  uint32_t f = fua && n->can_fua && count <= n->chunk ? LIBNBD_CMD_FLAG_FUA : 0;
  while (count > 0 && r == 0) {
    uint64_t len = count < n->chunk ? count : n->chunk;
    if ((write ? libnbd.pwrite (h, buf, len, offset, f)
               : libnbd.pread (h, buf, len, offset, 0)) < 0)
      r = command_failed (n, slot, write ? "write" : "read");
    buf = (char *) buf + len;
    offset += len;
    count -= len;
  }
  if (r == 0 && write && !f)
    note_write (n);
  if (r == 0 && fua && !f)
    r = flush_on (n, slot);
  put_handle (n, slot);
  return r;
}

static int
nbd_node_pread (struct node *node, void *buf, uint64_t count, uint64_t offset)
{
  return nbd_io (node, false, buf, count, offset, 0);
}

static int
nbd_node_pwrite (struct node *node, const void *buf, uint64_t count,
                 uint64_t offset, int flags)
{
  /* libnbd only reads the buffer for a write. */
  return nbd_io (node, true, (void *) buf, count, offset, flags);
}

static int
nbd_node_flush (struct node *node)
{
  struct nbd_node *n = (struct nbd_node *) node;
  unsigned slot;
  int r = get_handle (n, &slot);

  if (r < 0)
    return r;
  r = flush_on (n, slot);
  put_handle (n, slot);
  return r;
}

static int
nbd_node_trim (struct node *node, uint64_t count, uint64_t offset)
{
  struct nbd_node *n = (struct nbd_node *) node;
  unsigned slot;
  int r = get_handle (n, &slot);

  if (r < 0)
    return r;
  if (libnbd.trim (n->handles[slot], count, offset, 0) < 0)
    r = command_failed (n, slot, "trim");
  else
    note_write (n);
  put_handle (n, slot);
  return r;
}

static int
nbd_node_zero (struct node *node, uint64_t count, uint64_t offset, int flags)
{
  struct nbd_node *n = (struct nbd_node *) node;
  unsigned slot;
  int r = get_handle (n, &slot);

  if (r < 0)
    return r;
  uint32_t f = (flags & NODE_FUA) && n->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
  if (libnbd.zero (n->handles[slot], count, offset, f) < 0)
    r = command_failed (n, slot, "zero");
  else if (!f)
    note_write (n);
  if (r == 0 && (flags & NODE_FUA) && !f)
    r = flush_on (n, slot); /* no FUA on the server: a flush instead */
  put_handle (n, slot);
  return r;
}

struct status_ctx {
  struct extent_list *out;
  uint64_t pos, end;
  int err;
};

static int
status_cb (void *opaque, const char *context, uint64_t offset,
           uint32_t *entries, size_t n, int *error)
{
  struct status_ctx *c = opaque;

  if (strcmp (context, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0)
    return 0;
  for (size_t i = 0;
       i + 1 < n && c->pos < c->end && !c->err && !extent_list_full (c->out);
       i += 2) {
    uint64_t len = entries[i] < c->end - c->pos ? entries[i] : c->end - c->pos;
    c->err = extent_add (c->out, c->pos, len, entries[i + 1] & 3);
    c->pos += len;
  }
  return 0;
}

/* base:allocation from the server, whose hole/zero bits are ours. */
static int
nbd_node_extents (struct node *node, uint64_t count, uint64_t offset,
                  struct extent_list *out)
{
  struct nbd_node *n = (struct nbd_node *) node;
  struct status_ctx c = { out, offset, offset + count, 0 };
  unsigned slot;
  int r = get_handle (n, &slot);

  if (r < 0)
    return r;
  if (libnbd.can_meta_context (n->handles[slot],
                               LIBNBD_CONTEXT_BASE_ALLOCATION) != 1) {
    put_handle (n, slot);
    return extent_add (out, offset, count, 0);
  }
  for (unsigned calls = 0;
       r == 0 && c.pos < c.end && !c.err && !extent_list_full (out) &&
       calls < NBD_EXTENTS_MAX_CALLS;
       calls++) {
    uint64_t before = c.pos;
    uint64_t len = c.end - c.pos < n->chunk ? c.end - c.pos : n->chunk;
    if (libnbd.block_status (
          n->handles[slot], len, c.pos,
          (nbd_extent_callback){ .callback = status_cb, .user_data = &c },
          0) < 0)
      r = command_failed (n, slot, "block status");
    else if (c.pos == before) { /* no progress: report the rest as data */
      r = extent_add (out, c.pos, c.end - c.pos, 0);
      c.pos = c.end;
    }
  }
  put_handle (n, slot);
  return r < 0 ? r : c.err;
}

/* NBD_CMD_CACHE on the remote when it takes it; otherwise nothing (a read
 * here would only move data we drop). */
static int
nbd_node_prefetch (struct node *node, uint64_t count, uint64_t offset)
{
  struct nbd_node *n = (struct nbd_node *) node;
  unsigned slot;
  int r;

  /* Advice past the end (from a corrupt qcow2 entry above us) is
   * ignored: the read that needs it reports the problem. */
  if (!n->can_cache || offset >= node->size)
    return 0;
  if (count > node->size - offset)
    count = node->size - offset;
  r = get_handle (n, &slot);
  if (r < 0)
    return r;
  while (count > 0 && r == 0) {
    uint64_t len = count < n->chunk ? count : n->chunk;
    if (libnbd.cache (n->handles[slot], len, offset, 0) < 0)
      r = nbd_failure (n->uri, "cache");
    offset += len;
    count -= len;
  }
  put_handle (n, slot);
  return r;
}

static void
nbd_node_close (struct node *node)
{
  struct nbd_node *n = (struct nbd_node *) node;

  for (unsigned i = 0; i < n->n_handles; i++)
    if (n->handles[i]) {
      libnbd.shutdown (n->handles[i], 0);
      libnbd.close (n->handles[i]);
    }
  pthread_mutex_destroy (&n->lock);
  pthread_cond_destroy (&n->idle_cond);
  free (n->uri);
  free (node->label);
  free (n);
}

/* NBD has no resize request: the remote's size is what its server said
 * at connect.  node_resize already accepted the size it has. */
static int
nbd_node_resize (struct node *node, uint64_t size)
{
  return error_set (-ENOTSUP,
                    "%s: the payload is a remote NBD export of %llu bytes "
                    "(asked for %llu); NBD has no resize: resize the export on "
                    "its server, then export-remove and export-add it here",
                    node->label, (unsigned long long) node->size,
                    (unsigned long long) size);
}

static const struct node_ops nbd_ops = {
  .name = "nbd",
  .pread = nbd_node_pread,
  .pwrite = nbd_node_pwrite,
  .flush = nbd_node_flush,
  .trim = nbd_node_trim,
  .zero = nbd_node_zero,
  .extents = nbd_node_extents,
  .prefetch = nbd_node_prefetch,
  .resize = nbd_node_resize,
  .close = nbd_node_close,
};

int
node_nbd_open (const char *uri, bool readonly, struct node **out)
{
  struct nbd_node *n;
  struct nbd_handle *h;
  int64_t size, max;
  int r = nbd_api_load ();

  if (r < 0)
    return error_prefix (r, "%s", uri);
  n = calloc (1, sizeof *n);
  if (!n || !(n->uri = strdup (uri)) || !(n->node.label = strdup (uri))) {
    if (n)
      free (n->uri);
    free (n);
    return error_set (-ENOMEM, "out of memory");
  }
  pthread_mutex_init (&n->lock, NULL);
  pthread_cond_init (&n->idle_cond, NULL);
  r = connect_one (n, &h);
  if (r < 0) {
    n->n_handles = 0;
    nbd_node_close (&n->node);
    return r;
  }
  n->handles[0] = h;
  n->n_handles = 1;
  size = libnbd.get_size (h);
  if (size < 0) {
    r = nbd_failure (uri, "size");
    nbd_node_close (&n->node);
    return r;
  }
  if (!readonly && libnbd.is_read_only (h) == 1) {
    nbd_node_close (&n->node);
    return error_set (-EROFS,
                      "%s: the NBD server exports it read-only; "
                      "use readonly=on",
                      uri);
  }
  /* Without multi-conn a flush on one connection need not cover writes
   * made on another: keep to one connection. */
  n->max_handles = libnbd.can_multi_conn (h) == 1 ? NBD_POOL_MAX : 1;
  n->can_fua = libnbd.can_fua (h) == 1;
  n->can_cache = libnbd.can_cache (h) == 1;
  max = libnbd.get_block_size (h, LIBNBD_SIZE_MAXIMUM);
  n->chunk =
    max > 0 && max < NBD_CHUNK_DEFAULT ? (uint64_t) max : NBD_CHUNK_DEFAULT;
  n->node.ops = &nbd_ops;
  n->node.size = (uint64_t) size;
  n->node.block_size = 1;
  n->node.past_end_ok = true; /* a reconnection may find another size */
  n->node.readonly = readonly;
  *out = &n->node;
  return 0;
}
