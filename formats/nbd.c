/* luks-nbd: the nbd node: a remote export through libnbd, so ciphertext
 * (or a header) can live on any NBD server (nbdkit, qemu-nbd, rbd-nbd,
 * another luks-nbd).  Workers share a small pool of connections: one per
 * concurrent request when the server allows multi-conn, else one. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "error.h"
#include "node.h"

#define NBD_POOL_MAX 8
#define NBD_CHUNK_DEFAULT (32 * 1024 * 1024)
/* Block status round trips per extents call: the reply to our own client
 * may cover less, and it asks again. */
#define NBD_EXTENTS_MAX_CALLS 16

struct nbd_node {
  struct node node;
  char *uri;
  pthread_mutex_t lock;
  pthread_cond_t idle_cond;
  struct nbd_handle *handles[NBD_POOL_MAX];
  bool busy[NBD_POOL_MAX];
  unsigned n_handles, max_handles;
  uint64_t chunk; /* largest request the server takes */
  bool can_fua;
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
  int e = nbd_get_errno ();

  return error_set (e ? -e : -EIO, "%s: %s: %s", uri, what, nbd_get_error ());
}

static int
connect_one (struct nbd_node *n, struct nbd_handle **out)
{
  struct nbd_handle *h = nbd_create ();

  if (!h)
    return nbd_failure (n->uri, "nbd_create");
  /* Ask for allocation status, for extents (ignored if unsupported). */
  if (nbd_add_meta_context (h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
      nbd_connect_uri (h, n->uri) < 0) {
    int r = nbd_failure (n->uri, "connect");
    nbd_close (h);
    return r;
  }
  *out = h;
  return 0;
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

static void
put_handle (struct nbd_node *n, unsigned slot)
{
  pthread_mutex_lock (&n->lock);
  n->busy[slot] = false;
  pthread_cond_signal (&n->idle_cond);
  pthread_mutex_unlock (&n->lock);
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
  while (count > 0 && r == 0) {
    uint64_t len = count < n->chunk ? count : n->chunk;
    uint32_t f = write && (flags & NODE_FUA) && n->can_fua && len == count
                   ? LIBNBD_CMD_FLAG_FUA
                   : 0;
    if ((write ? nbd_pwrite (h, buf, len, offset, f)
               : nbd_pread (h, buf, len, offset, 0)) < 0)
      r = nbd_failure (n->uri, write ? "write" : "read");
    buf = (char *) buf + len;
    offset += len;
    count -= len;
  }
  if (r == 0 && write && (flags & NODE_FUA) && !n->can_fua &&
      nbd_flush (h, 0) < 0)
    r = nbd_failure (n->uri, "flush");
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
  /* With multi-conn (or a single connection) one flush covers all. */
  if (nbd_flush (n->handles[slot], 0) < 0)
    r = nbd_failure (n->uri, "flush");
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
  if (nbd_trim (n->handles[slot], count, offset, 0) < 0)
    r = nbd_failure (n->uri, "trim");
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
  if (nbd_zero (n->handles[slot], count, offset,
                (flags & NODE_FUA) && n->can_fua ? LIBNBD_CMD_FLAG_FUA : 0) < 0)
    r = nbd_failure (n->uri, "zero");
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
  if (nbd_can_meta_context (n->handles[slot], LIBNBD_CONTEXT_BASE_ALLOCATION) !=
      1) {
    put_handle (n, slot);
    return extent_add (out, offset, count, 0);
  }
  for (unsigned calls = 0;
       r == 0 && c.pos < c.end && !c.err && !extent_list_full (out) &&
       calls < NBD_EXTENTS_MAX_CALLS;
       calls++) {
    uint64_t before = c.pos;
    uint64_t len = c.end - c.pos < n->chunk ? c.end - c.pos : n->chunk;
    if (nbd_block_status (
          n->handles[slot], len, c.pos,
          (nbd_extent_callback){ .callback = status_cb, .user_data = &c },
          0) < 0)
      r = nbd_failure (n->uri, "block status");
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
    if (nbd_cache (n->handles[slot], len, offset, 0) < 0)
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

  for (unsigned i = 0; i < n->n_handles; i++) {
    nbd_shutdown (n->handles[i], 0);
    nbd_close (n->handles[i]);
  }
  pthread_mutex_destroy (&n->lock);
  pthread_cond_destroy (&n->idle_cond);
  free (n->uri);
  free (node->label);
  free (n);
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
  .close = nbd_node_close,
};

int
node_nbd_open (const char *uri, bool readonly, struct node **out)
{
  struct nbd_node *n = calloc (1, sizeof *n);
  struct nbd_handle *h;
  int64_t size, max;
  int r;

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
  size = nbd_get_size (h);
  if (size < 0) {
    r = nbd_failure (uri, "size");
    nbd_node_close (&n->node);
    return r;
  }
  if (!readonly && nbd_is_read_only (h) == 1) {
    nbd_node_close (&n->node);
    return error_set (-EROFS,
                      "%s: the NBD server exports it read-only; "
                      "use readonly=on",
                      uri);
  }
  /* Without multi-conn a flush on one connection need not cover writes
   * made on another: keep to one connection. */
  n->max_handles = nbd_can_multi_conn (h) == 1 ? NBD_POOL_MAX : 1;
  n->can_fua = nbd_can_fua (h) == 1;
  n->can_cache = nbd_can_cache (h) == 1;
  max = nbd_get_block_size (h, LIBNBD_SIZE_MAXIMUM);
  n->chunk =
    max > 0 && max < NBD_CHUNK_DEFAULT ? (uint64_t) max : NBD_CHUNK_DEFAULT;
  n->node.ops = &nbd_ops;
  n->node.size = (uint64_t) size;
  n->node.block_size = 1;
  n->node.readonly = readonly;
  *out = &n->node;
  return 0;
}
