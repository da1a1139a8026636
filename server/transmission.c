/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the transmission phase.  The loop thread parses requests and
 * checks them in one place (check_request); node ops run in the libuv
 * thread pool; replies are written on the loop thread as each request
 * finishes, so they may go out of order. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/checked.h"
#include "common/error_msg.h"
#include "server/internal.h"
#include "server/nbd-protocol.h"
#include "server/transmission_rules.h"

/* A WRITE_ZEROES or TRIM runs in steps of at most STEP_BYTES, each
 * queued once the one before is done.  Its work is its length (zeroing
 * encrypts and writes every byte), and with extended headers one request
 * may cover the whole export: queued whole, it would hold every worker
 * for minutes while other clients' requests wait behind it. */
#define STEP_BYTES (256 * 1024 * 1024)

/* The only errno -> NBD error mapping. */
static uint32_t
nbd_errno (int err)
{
  switch (err) {
  case EPERM:
  case EROFS: return NBD_EPERM;
  case EIO: return NBD_EIO;
  case ENOMEM: return NBD_ENOMEM;
  case EINVAL: return NBD_EINVAL;
  case ENOSPC:
  case EDQUOT:
  case EFBIG: return NBD_ENOSPC;
  case EOVERFLOW: return NBD_EOVERFLOW;
  case ENOTSUP: return NBD_ENOTSUP;
  case ESHUTDOWN: return NBD_ESHUTDOWN;
  default: return NBD_EIO;
  }
}

/* For the log: which error a refused request got. */
static const char *
nbd_error_name (uint32_t error)
{
  switch (error) {
  case NBD_EPERM: return "EPERM";
  case NBD_EIO: return "EIO";
  case NBD_ENOMEM: return "ENOMEM";
  case NBD_EINVAL: return "EINVAL";
  case NBD_ENOSPC: return "ENOSPC";
  case NBD_EOVERFLOW: return "EOVERFLOW";
  case NBD_ENOTSUP: return "ENOTSUP";
  case NBD_ESHUTDOWN: return "ESHUTDOWN";
  default: return "error";
  }
}

static const char unknown_command[] = "unknown command";

static const char *
command_name (uint16_t type)
{
  switch (type) {
  case NBD_CMD_READ: return "read";
  case NBD_CMD_WRITE: return "write";
  case NBD_CMD_DISC: return "disconnect";
  case NBD_CMD_FLUSH: return "flush";
  case NBD_CMD_TRIM: return "trim";
  case NBD_CMD_CACHE: return "cache";
  case NBD_CMD_WRITE_ZEROES: return "write zeroes";
  case NBD_CMD_BLOCK_STATUS: return "block status";
  default: return unknown_command;
  }
}

/* The flags each command may carry (FUA is valid on all, as proto.md
 * says, and ignored where nothing is written). */
static uint16_t
allowed_flags (const struct conn *c, uint16_t type)
{
  switch (type) {
  case NBD_CMD_WRITE:
    /* With extended headers a write's length is its payload's, which
     * PAYLOAD_LEN says (payload_bytes).  No other command takes a payload
     * here (NBD_FLAG_BLOCK_STATUS_PAYLOAD is not offered). */
    return NBD_CMD_FLAG_FUA | (c->extended ? NBD_CMD_FLAG_PAYLOAD_LEN : 0);
  case NBD_CMD_READ:
    return NBD_CMD_FLAG_FUA | (c->structured ? NBD_CMD_FLAG_DF : 0);
  case NBD_CMD_WRITE_ZEROES:
    return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
  case NBD_CMD_BLOCK_STATUS: return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
  default: return NBD_CMD_FLAG_FUA;
  }
}

/* check_request's refusal: the rule broken into *why, the error out. */
static uint32_t
broke (const char **why, const char *rule, uint32_t error)
{
  *why = rule;
  return error;
}

/* The one checkpoint: every request's rules, before it goes anywhere.
 * Returns 0, or the NBD error to answer with and in *why the rule the
 * request broke (for the log: nbdkit and QEMU say it too). */
uint32_t
check_request (const struct conn *c, uint16_t type, uint16_t flags,
               uint64_t offset, uint64_t count, const char **why)
{
  const struct export *e = c->exp;
  bool writes = type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES ||
                type == NBD_CMD_TRIM;
  uint64_t end;

  switch (type) {
  case NBD_CMD_FLUSH:
  case NBD_CMD_DISC:
  case NBD_CMD_READ:
  case NBD_CMD_WRITE:
  case NBD_CMD_WRITE_ZEROES:
  case NBD_CMD_TRIM:
  case NBD_CMD_CACHE:
  case NBD_CMD_BLOCK_STATUS: break;
  default: return broke (why, "unknown command", NBD_EINVAL);
  }
  if (flags & ~allowed_flags (c, type))
    return broke (why, "a flag this command does not take", NBD_EINVAL);
  if (type == NBD_CMD_FLUSH || type == NBD_CMD_DISC)
    return 0; /* no range */
  if (type == NBD_CMD_TRIM && !e->discard)
    return broke (why, "trim is not offered (discard=off)", NBD_EINVAL);
  if (type == NBD_CMD_BLOCK_STATUS && !c->base_allocation)
    return broke (why, "no metadata context was selected", NBD_EINVAL);
  if (writes && e->readonly)
    return broke (why, "the export is read-only", NBD_EPERM);
  /* Inactive (live migration): refused here already; do_part decides
   * for a write accepted just before an inactivation. */
  if (writes && !atomic_load (&e->active))
    return broke (why, "the export is inactive (live migration)", NBD_EPERM);
  if (count == 0)
    return broke (why, "length 0", NBD_EINVAL);
  /* Payloads stay within the advertised maximum whatever the header's
   * width; the commands without one (zeroes, trim, cache, block status)
   * may cover more than 4 GiB with extended headers. */
  if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) &&
      count > MAX_REQUEST_BYTES)
    return broke (why, "longer than the 32 MiB maximum", NBD_EOVERFLOW);
  /* A write past the end is ENOSPC; a range that wraps is just invalid. */
  if (ckd_add_u64 (&end, offset, count))
    return broke (why, "offset + length wraps past 2^64", NBD_EINVAL);
  if (!range_within (offset, count, c->size))
    return broke (why, "past the end of the export",
                  writes ? NBD_ENOSPC : NBD_EINVAL);
  return 0;
}

/* Compact (28 bytes) and extended (32) requests share their first 24
 * bytes; only the length's width differs. */
static struct request *
request_new (struct conn *c, const uint8_t *hdr)
{
  struct request *r = calloc (1, sizeof *r);

  if (!r)
    return NULL;
  r->conn = c;
  r->node = c->exp->node;
  r->exp = c->exp;
  r->flags = load_be16 (hdr + 4);
  r->type = load_be16 (hdr + 6);
  r->handle = load_be64 (hdr + 8);
  r->offset = load_be64 (hdr + 16);
  r->count = c->extended ? load_be64 (hdr + 24) : load_be32 (hdr + 24);
  conn_ref (c);
  c->inflight++;
  /* The gate (connection.c's may_parse) parses no request at the limit. */
  assert (c->inflight <= MAX_INFLIGHT_REQUESTS);
  return r;
}

static void
request_free (struct request *r)
{
  struct conn *c = r->conn;

  assert (c->inflight > 0);
  c->inflight--;
  assert (r->unsent <= c->unsent_bytes);
  c->unsent_bytes -= r->unsent;
  conn_release (&c->inflight_bytes, r->charged);
  bufpool_put (r->buf, r->count);
  free (r->status);
  extent_list_free (&r->extents);
  free (r);
  /* Budget freed: parsing resumes from the loop, not from inside this
   * completion (which may run inside a reply flush or a close). */
  conn_wake (c);
  conn_unref (c);
}

static void
after_reply (struct queued_reply *q, int status)
{
  (void) status; /* a reply that failed to go out closed the connection */
  request_free (
    (struct request *) ((char *) q - offsetof (struct request, out)));
}

/* Reply chunk header into buf, the final chunk of its reply: an
 * extended header (with the request's offset and a 64-bit length) if
 * they were negotiated, else a structured one; returns its size. */
static size_t
chunk_header (uint8_t *buf, const struct request *r, uint16_t type,
              uint64_t length)
{
  if (r->conn->extended) {
    store_be32 (buf, NBD_EXTENDED_REPLY_MAGIC);
    store_be16 (buf + 4, NBD_REPLY_FLAG_DONE);
    store_be16 (buf + 6, type);
    store_be64 (buf + 8, r->handle);
    store_be64 (buf + 16, r->offset);
    store_be64 (buf + 24, length);
    return NBD_EXTENDED_REPLY_SIZE;
  }
  store_be32 (buf, NBD_STRUCTURED_REPLY_MAGIC);
  store_be16 (buf + 4, NBD_REPLY_FLAG_DONE);
  store_be16 (buf + 6, type);
  store_be64 (buf + 8, r->handle);
  store_be32 (buf + 16, (uint32_t) length); /* callers keep it small */
  return NBD_STRUCTURED_REPLY_SIZE;
}

/* One block status descriptor: compact (32-bit length and flags) or
 * extended (64-bit each). */
static void
put_descriptor (uint8_t *p, bool extended, uint64_t length, uint32_t flags)
{
  if (extended) {
    store_be64 (p, length);
    store_be64 (p + 8, flags);
  } else {
    store_be32 (p, (uint32_t) length);
    store_be32 (p + 4, flags);
  }
}

/* BLOCK_STATUS reply: context id (and, extended, the descriptor count),
 * then descriptors covering at most the request; REQ_ONE keeps only the
 * first.  A compact descriptor is at most 4 GiB - 4 KiB (the client asks
 * again); an extended one (BLOCK_STATUS_EXT) is as long as the extent. */
size_t
build_status (struct request *r)
{
  const struct extent_list *l = &r->extents;
  bool ext = r->conn->extended;
  size_t hdr = ext ? NBD_EXTENDED_REPLY_SIZE : NBD_STRUCTURED_REPLY_SIZE;
  size_t lead = ext ? 8 : 4, size = ext ? 16 : 8;
  uint64_t end = r->offset + r->count; /* check_request: no overflow */
  size_t n = 0, cap = l->n < MAX_DESCRIPTORS ? l->n : MAX_DESCRIPTORS;
  uint8_t *p;

  r->status = malloc (hdr + lead + size * (cap ? cap : 1));
  if (!r->status)
    return 0;
  p = (uint8_t *) r->status + hdr;
  store_be32 (p, NBD_CONTEXT_ID_BASE_ALLOCATION);
  for (size_t i = 0; i < l->n && n < cap; i++) {
    uint64_t a = l->e[i].offset < r->offset ? r->offset : l->e[i].offset;
    uint64_t b = l->e[i].offset + l->e[i].length;
    b = b > end ? end : b;
    if (a >= b)
      continue;
    uint64_t len = b - a;
    if (!ext && len > UINT32_C (0xfffff000))
      len = UINT32_C (0xfffff000);
    put_descriptor (p + lead + size * n, ext, len, l->e[i].flags & 3);
    n++;
    if ((r->flags & NBD_CMD_FLAG_REQ_ONE) || len < b - a)
      break;
  }
  if (n == 0) { /* nothing known: all data */
    put_descriptor (p + lead, ext, r->count, 0);
    n = 1;
  }
  if (ext)
    store_be32 (p + 4, (uint32_t) n);
  chunk_header ((uint8_t *) r->status, r,
                ext ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT
                    : NBD_REPLY_TYPE_BLOCK_STATUS,
                lead + size * n);
  return hdr + lead + size * n;
}

/* A reply with data (or, with extended headers, every reply) is
 * chunked; the rest are simple replies. */
static void
send_reply (struct request *r)
{
  struct conn *c = r->conn;
  bool structured =
    c->extended || (c->structured && (r->type == NBD_CMD_READ ||
                                      r->type == NBD_CMD_BLOCK_STATUS));
  uv_buf_t *bufs = r->out.bufs;
  unsigned n = 1;

  if (conn_closed (c)) {
    request_free (r);
    return;
  }
  c->exp->requests++;
  if (r->error)
    c->exp->errors++;
  else if (r->type == NBD_CMD_READ)
    c->exp->bytes_read += r->count;
  else if (r->type == NBD_CMD_WRITE)
    c->exp->bytes_written += r->count;
  if (!structured) {
    store_be32 (r->reply, NBD_SIMPLE_REPLY_MAGIC);
    store_be32 (r->reply + 4, r->error);
    store_be64 (r->reply + 8, r->handle);
    bufs[0] = uv_buf_init ((char *) r->reply, NBD_SIMPLE_REPLY_SIZE);
    if (r->type == NBD_CMD_READ && r->error == 0)
      bufs[n++] = uv_buf_init (r->buf, (unsigned) r->count);
  } else if (r->error) {
    size_t h = chunk_header (r->reply, r, NBD_REPLY_TYPE_ERROR, 6);
    store_be32 (r->reply + h, r->error);
    store_be16 (r->reply + h + 4, 0); /* no message */
    bufs[0] = uv_buf_init ((char *) r->reply, (unsigned) h + 6);
  } else if (r->type == NBD_CMD_READ) {
    /* One OFFSET_DATA chunk (so DF is always honoured); never a hole,
     * since we cannot know plaintext is zero without reading it. */
    size_t h =
      chunk_header (r->reply, r, NBD_REPLY_TYPE_OFFSET_DATA, 8 + r->count);
    store_be64 (r->reply + h, r->offset);
    bufs[0] = uv_buf_init ((char *) r->reply, (unsigned) h + 8);
    bufs[n++] = uv_buf_init (r->buf, (unsigned) r->count);
  } else if (r->type == NBD_CMD_BLOCK_STATUS) {
    size_t len = build_status (r);
    if (!len) {
      conn_close (c);
      request_free (r);
      return;
    }
    bufs[0] = uv_buf_init (r->status, (unsigned) len);
  } else { /* extended: success without data is an empty final chunk */
    size_t h = chunk_header (r->reply, r, NBD_REPLY_TYPE_NONE, 0);
    bufs[0] = uv_buf_init ((char *) r->reply, (unsigned) h);
  }
  r->out.n = n;
  r->out.done = after_reply;
  r->unsent = bufs[0].len + (n > 1 ? bufs[1].len : 0);
  c->unsent_bytes += r->unsent; /* the read-ahead gate (may_parse) */
  if (reply_queue_push (c, &r->out) < 0) {
    conn_log (c, LOG_LEVEL_ERROR, "%s", error_message ());
    conn_close (c);
    request_free (r);
  }
}

static void queue_step (struct request *r);

/* Worker thread: the node op of one part. */
static int
run_part (struct request *r, struct part *p)
{
  char *buf = r->buf ? r->buf + (p->offset - r->offset) : NULL;
  int err = 0;

  switch (r->type) {
  case NBD_CMD_READ:
    err = node_pread (r->node, buf, p->count, p->offset);
    break;
  case NBD_CMD_WRITE:
    /* The request owns buf and never reads it again.  Every part of a
     * FUA request carries FUA (a node's FUA covers only its own bytes),
     * so the reply, sent after the last part, covers the whole request. */
    err = node_pwrite (r->node, buf, p->count, p->offset,
                       NODE_MAY_CLOBBER |
                         ((r->flags & NBD_CMD_FLAG_FUA) ? NODE_FUA : 0));
    break;
  case NBD_CMD_FLUSH: err = node_flush (r->node); break;
  case NBD_CMD_WRITE_ZEROES:
    err = node_zero (r->node, p->count, p->offset,
                     (r->flags & NBD_CMD_FLAG_FUA) ? NODE_FUA : 0);
    break;
  case NBD_CMD_TRIM:
    err = node_trim (r->node, p->count, p->offset);
    if (err == 0 && (r->flags & NBD_CMD_FLAG_FUA))
      err = node_flush (r->node);
    break;
  case NBD_CMD_CACHE: err = node_prefetch (r->node, p->count, p->offset); break;
  case NBD_CMD_BLOCK_STATUS:
    err = node_extents (r->node, p->count, p->offset, &r->extents);
    break;
  }
  return err;
}

/* Worker thread: node ops only; no connection state.  Under the
 * export's gate, so an inactivation waits for this part, and a write
 * that arrives after one is refused: an inactive export has handed the
 * payload to another host.  A flush then has nothing left to flush. */
static void
do_part (uv_work_t *w)
{
  struct part *p = w->data;
  struct request *r = p->req;
  bool writes = r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES ||
                r->type == NBD_CMD_TRIM;
  int err = 0;

  pthread_rwlock_rdlock (&r->exp->gate);
  if (atomic_load (&r->exp->active) || r->type == NBD_CMD_READ ||
      r->type == NBD_CMD_CACHE || r->type == NBD_CMD_BLOCK_STATUS)
    err = run_part (r, p);
  else if (writes)
    err = error_set (-EPERM,
                     "export '%s' is inactive (live migration: "
                     "export-activate it first)",
                     r->exp->name);
  pthread_rwlock_unlock (&r->exp->gate);
  if (err < 0) {
    log_error ("%s of %llu bytes at %llu: %s", command_name (r->type),
               (unsigned long long) p->count, (unsigned long long) p->offset,
               error_message ());
    p->error = nbd_errno (-err);
  }
}

static void
after_part (uv_work_t *w, int status)
{
  struct part *p = w->data;
  struct request *r = p->req;
  bool more;

  if (status < 0 && !p->error)
    p->error = NBD_EIO;
  if (p->error && !r->error)
    r->error = p->error;
  assert (r->parts_left > 0);
  if (--r->parts_left > 0)
    return;
  more = r->next - r->offset < r->count;
  /* A stepped request ends early on an error or once its client is
   * gone; at shutdown it fails with ESHUTDOWN (proto.md lets a server
   * speed shutdown up so) instead of holding the daemon for the rest of
   * its range, which with extended headers may be the whole export. */
  if (more && !r->error && server_stopping ())
    r->error = NBD_ESHUTDOWN;
  if (more && !r->error && !conn_closed (r->conn))
    queue_step (r);
  else
    send_reply (r);
}

static unsigned worker_threads = 1;

void
transmission_set_threads (unsigned n)
{
  worker_threads = n ? n : 1;
}

/* Splits into parts of whole blocks, so that for a block-aligned request
 * no encryption sector is shared between parts (each part's
 * read-modify-write stays its own).  An unaligned request's part
 * boundaries fall mid-sector; that stays correct because luks_pwrite
 * takes its lock exclusively for unaligned writes. */
unsigned
request_split (struct request *r, uint64_t offset, uint64_t count)
{
  uint32_t bs = node_block_size (r->node);
  unsigned n = 1;

  if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE ||
      r->type == NBD_CMD_WRITE_ZEROES) {
    uint64_t want = count / SPLIT_MIN_PART;
    n = want < worker_threads ? (unsigned) want : worker_threads;
    if (n > SPLIT_MAX_PARTS)
      n = SPLIT_MAX_PARTS;
    if (n < 1)
      n = 1;
  }
  uint64_t per = (count + n - 1) / n;
  per = (per + bs - 1) / bs * bs;
  uint64_t off = offset, end = offset + count;
  unsigned i = 0;
  /* A flush (count 0) is one part too. */
  for (; i < n && (off < end || i == 0); i++) {
    uint64_t len = end - off < per ? end - off : per;
    r->parts[i] = (struct part){ .req = r, .offset = off, .count = len };
    r->parts[i].work.data = &r->parts[i];
    off += len;
  }
  return i;
}

/* A request's bytes count against the connection's in-flight budget
 * (the gate, connection.c) while it runs: a read's or write's buffer,
 * and the range a write-zeroes or trim works on.  Those carry no data,
 * yet one of 4 GiB encrypts and writes 4 GiB (or walks as many qcow2
 * entries): counted, one client's zeroes run one budget's worth at a
 * time instead of queueing hundreds of GiB of work ahead of every other
 * client's requests.  Their charge stops at the whole budget: one such
 * request fills it alone, so the gate takes nothing more from its
 * connection until it ends, just as its whole range would.  Uncapped,
 * a range may be the whole export (extended headers: up to 2^63 - 1),
 * and three of them on three connections would wrap the daemon-wide sum
 * (conn_hold asserts it never does). */
static void
charge (struct conn *c, struct request *r)
{
  if (r->buf)
    r->charged = r->count;
  else if (r->type == NBD_CMD_WRITE_ZEROES || r->type == NBD_CMD_TRIM)
    r->charged = r->count < MAX_INFLIGHT_BYTES ? r->count : MAX_INFLIGHT_BYTES;
  else
    return;
  conn_hold (&c->inflight_bytes, r->charged);
}

/* The work bounds of CACHE and BLOCK_STATUS (see MAX_CACHE_BYTES), set
 * once the request is known to be valid. */
static void
bound_work (struct request *r)
{
  if (r->type == NBD_CMD_CACHE && r->count > MAX_CACHE_BYTES)
    r->count = MAX_CACHE_BYTES; /* no payload, no buffer: only the range */
  if (r->type == NBD_CMD_BLOCK_STATUS)
    r->extents.max = r->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : MAX_DESCRIPTORS;
}

/* Queues the parts of the request's next step: all of it, or for a
 * WRITE_ZEROES or TRIM at most STEP_BYTES (after_part queues the rest).
 * Steps start on the block size, as request_split's parts do. */
static void
queue_step (struct request *r)
{
  uint64_t off = r->next, len = r->count - (r->next - r->offset);
  unsigned n;

  if ((r->type == NBD_CMD_WRITE_ZEROES || r->type == NBD_CMD_TRIM) &&
      len > STEP_BYTES)
    len = STEP_BYTES;
  n = request_split (r, off, len);
  r->next = off + len;
  r->parts_left = n;
  for (unsigned i = 0; i < n; i++)
    if (uv_queue_work (server_loop, &r->parts[i].work, do_part, after_part) <
        0) {
      r->error = NBD_EIO;
      /* Parts already queued will reply; account for the rest now. */
      r->parts_left -= n - i;
      if (r->parts_left == 0)
        send_reply (r);
      return;
    }
}

/* A READ whose bytes the page cache holds is served here on the loop
 * thread: a 4 KiB read and its decryption cost less than handing it to a
 * worker and back (a futex wake, an eventfd write and two context
 * switches per request or batch, most of the server's time at QD32 on a
 * small machine).  Nothing here waits for the disk (node_pread_cached
 * answers -EAGAIN instead: the request then goes to a worker).  The size
 * bound keeps it to requests whose hand-off costs about as much as their
 * decryption (16 KiB: about 3 us): larger ones are decrypted by the
 * workers in parallel, so the one loop thread never becomes every
 * connection's cipher. */
#define INLINE_READ_MAX (16 * 1024)

static bool
read_inline (struct request *r)
{
  int err;

  if (r->type != NBD_CMD_READ || r->count > INLINE_READ_MAX)
    return false;
  /* Node ops hold the export's gate shared (export_active.c); the loop
   * may not wait for it, so a gate held or wanted exclusive (a live
   * migration handoff in progress) sends the read to a worker. */
  if (pthread_rwlock_tryrdlock (&r->exp->gate) != 0)
    return false;
  err = node_pread_cached (r->node, r->buf, r->count, r->offset);
  pthread_rwlock_unlock (&r->exp->gate);
  if (err < 0)
    return false;
  send_reply (r);
  return true;
}

static void
dispatch (struct request *r)
{
  conn_log (r->conn, LOG_LEVEL_DEBUG, "%s %llu bytes at %llu%s",
            command_name (r->type), (unsigned long long) r->count,
            (unsigned long long) r->offset,
            (r->flags & NBD_CMD_FLAG_FUA) ? " (fua)" : "");
  bound_work (r);
  if (read_inline (r))
    return;
  r->next = r->offset;
  queue_step (r);
}

static void
pending_complete (struct conn *c)
{
  struct request *r = c->pending;

  if (r->filled == r->count) {
    c->pending = NULL;
    dispatch (r);
  }
}

bool
transmission_direct_buffer (struct conn *c, uv_buf_t *buf)
{
  struct request *r = c->pending;

  if (!r || c->discard)
    return false;
  *buf = uv_buf_init (r->buf + r->filled, (unsigned) (r->count - r->filled));
  return true;
}

void
transmission_direct_filled (struct conn *c, size_t n)
{
  /* alloc_cb handed out only the room left in the buffer. */
  assert (n <= c->pending->count - c->pending->filled);
  c->pending->filled += n;
  pending_complete (c);
}

void
transmission_drop_pending (struct conn *c)
{
  struct request *r = c->pending;

  if (r) {
    /* Its data never arrived in full: it was never acknowledged. */
    c->pending = NULL;
    request_free (r);
  }
}

/* Bytes of payload after the header: a write's data, and with extended
 * headers the length of any request flagged PAYLOAD_LEN.  proto.md says
 * an extended write MUST carry the flag, but QEMU's client (10.0) sends
 * writes without it and QEMU's server takes their data all the same:
 * so do we, or the stream would lose its place. */
static uint64_t
payload_bytes (const struct conn *c, const struct request *r)
{
  if (r->type == NBD_CMD_WRITE)
    return r->count;
  return c->extended && (r->flags & NBD_CMD_FLAG_PAYLOAD_LEN) ? r->count : 0;
}

/* The request magic must be the negotiated style's: both sides use only
 * compact or only extended headers (proto.md).  Anything else means we
 * cannot find the next request: close. */
static bool
magic_ok (struct conn *c, const uint8_t *in)
{
  uint32_t magic = load_be32 (in);
  uint32_t want = c->extended ? NBD_EXTENDED_REQUEST_MAGIC : NBD_REQUEST_MAGIC;
  uint32_t other = c->extended ? NBD_REQUEST_MAGIC : NBD_EXTENDED_REQUEST_MAGIC;

  if (magic == want)
    return true;
  conn_log (c, LOG_LEVEL_INFO, "%s; closing",
            magic != other ? "bad request magic"
            : c->extended  ? "compact request after extended headers"
                           : "extended request without extended headers");
  conn_close (c);
  return false;
}

/* Answers r with error at once, saying why in the log, and skips its
 * payload (if it has one) to keep the stream in sync. */
static void
refuse (struct conn *c, struct request *r, uint32_t error, const char *why,
        uint64_t payload)
{
  char name[32];

  if (command_name (r->type) == unknown_command)
    snprintf (name, sizeof name, "command %u", r->type);
  else
    snprintf (name, sizeof name, "%s", command_name (r->type));
  conn_log_refusal (
    c, "%s of %llu bytes at %llu (flags 0x%x) refused with %s: %s", name,
    (unsigned long long) r->count, (unsigned long long) r->offset, r->flags,
    nbd_error_name (error), why);
  c->discard = payload;
  r->error = error;
  send_reply (r);
}

ssize_t
transmission_input (struct conn *c, const uint8_t *in, size_t len)
{
  size_t hsize = c->extended ? NBD_EXTENDED_REQUEST_SIZE : NBD_REQUEST_SIZE;
  struct request *r;
  uint64_t payload;
  uint32_t error;
  const char *why;

  if (c->discard) {
    size_t n = len < c->discard ? len : (size_t) c->discard;
    c->discard -= n;
    return (ssize_t) n;
  }
  if (c->pending) {
    r = c->pending;
    size_t n = r->count - r->filled;
    if (n > len)
      n = len;
    memcpy (r->buf + r->filled, in, n);
    r->filled += n;
    pending_complete (c);
    return (ssize_t) n;
  }
  /* The magic first: a request in the other style may be shorter. */
  if (len < 4)
    return 0;
  if (!magic_ok (c, in))
    return -1;
  if (len < hsize)
    return 0;
  r = request_new (c, in);
  if (!r) {
    conn_close (c);
    return -1;
  }
  payload = payload_bytes (c, r);
  if (c->extended && payload > MAX_REQUEST_BYTES) {
    /* Over the advertised maximum payload (it may say 2^64 bytes):
     * proto.md's hard disconnect, rather than skipping it. */
    conn_log (c, LOG_LEVEL_INFO, "%s with a payload of %llu bytes; closing",
              command_name (r->type), (unsigned long long) payload);
    conn_close (c);
    request_free (r);
    return -1;
  }
  error = check_request (c, r->type, r->flags, r->offset, r->count, &why);
  if (error) {
    refuse (c, r, error, why, payload);
    return (ssize_t) hsize;
  }
  if (r->type == NBD_CMD_WRITE_ZEROES && (r->flags & NBD_CMD_FLAG_FAST_ZERO)) {
    refuse (c, r, NBD_ENOTSUP,
            "fast zero (zeroing writes encrypted zeros: never fast)", payload);
    return (ssize_t) hsize;
  }
  if (r->type == NBD_CMD_DISC) {
    conn_log (c, LOG_LEVEL_INFO, "client disconnects");
    assert (c->inflight > 0);
    c->inflight--; /* DISC has no reply */
    conn_unref (c);
    free (r);
    conn_finish (c);
    return (ssize_t) hsize;
  }
  if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) {
    r->buf = bufpool_get (r->count);
    if (!r->buf) {
      refuse (c, r, NBD_ENOMEM, "out of memory for its buffer", payload);
      return (ssize_t) hsize;
    }
  }
  charge (c, r);
  if (r->type == NBD_CMD_WRITE)
    c->pending = r; /* dispatched once its data is in */
  else
    dispatch (r);
  return (ssize_t) hsize;
}
