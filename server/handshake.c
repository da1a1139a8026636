/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: fixed newstyle negotiation, one function per option. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/byteorder.h"
#include "server/internal.h"
#include "server/nbd-protocol.h"

static uint16_t
transmission_flags (const struct conn *c, const struct export *e)
{
  /* Every connection shares the export's node stack and writes complete
   * before they are acknowledged, so a flush on any connection persists
   * the writes of all: multi-conn is safe.  Zeroing writes encrypted
   * zeros, so it is never fast: FAST_ZERO requests fail at once. */
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
               NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_WRITE_ZEROES |
               NBD_FLAG_SEND_FAST_ZERO | NBD_FLAG_SEND_CACHE;
  if (e->readonly)
    f |= NBD_FLAG_READ_ONLY;
  if (e->discard)
    f |= NBD_FLAG_SEND_TRIM;
  if (c->structured) /* extended headers set it too */
    f |= NBD_FLAG_SEND_DF;
  return f;
}

void
handshake_start (struct conn *c)
{
  uint8_t hello[18];

  store_be64 (hello, NBD_MAGIC);
  store_be64 (hello + 8, NBD_IHAVEOPT);
  store_be16 (hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  c->state = CONN_GREETING;
  conn_send (c, hello, sizeof hello);
}

/* One option reply: magic, option, type, length, data. */
static int
option_reply (struct conn *c, uint32_t option, uint32_t type, const void *data,
              size_t len)
{
  uint8_t *buf = malloc (20 + len);
  int r;

  if (!buf)
    return -ENOMEM;
  store_be64 (buf, NBD_REP_MAGIC);
  store_be32 (buf + 8, option);
  store_be32 (buf + 12, type);
  store_be32 (buf + 16, (uint32_t) len);
  if (len)
    memcpy (buf + 20, data, len);
  r = conn_send (c, buf, 20 + len);
  free (buf);
  return r;
}

static int
option_reply_error (struct conn *c, uint32_t option, uint32_t type,
                    const char *msg)
{
  conn_log_refusal (c, "option %u refused: %s", option, msg);
  return option_reply (c, option, type, msg, strlen (msg));
}

static void
enter_transmission (struct conn *c, struct export *e)
{
  c->exp = e;
  c->size = e->size; /* kept until it reconnects (export-resize) */
  export_ref (e);
  e->connections++;
  e->total_connections++;
  c->state = CONN_TRANSMISSION;
  uv_timer_stop (&c->timer);
  conn_log (c, LOG_LEVEL_INFO, "serving export '%s'", e->name);
}

static void
opt_export_name (struct conn *c, const uint8_t *data, uint32_t len)
{
  struct export *e = exports_find ((const char *) data, len);
  uint8_t buf[10 + 124] = { 0 };

  if (c->extended) {
    /* proto.md: a client that negotiated extended headers MUST NOT use
     * this option, and it has no error reply: close. */
    conn_log (c, LOG_LEVEL_INFO,
              "NBD_OPT_EXPORT_NAME after extended headers; "
              "closing");
    conn_close (c);
    return;
  }
  if (!e) {
    /* This option has no error reply: the protocol says to close. */
    conn_log (c, LOG_LEVEL_INFO, "NBD_OPT_EXPORT_NAME: no export '%.*s'",
              (int) (len > 64 ? 64 : len), data);
    conn_close (c);
    return;
  }
  store_be64 (buf, e->size);
  store_be16 (buf + 8, transmission_flags (c, e));
  conn_send (c, buf, c->no_zeroes ? 10 : sizeof buf);
  enter_transmission (c, e);
}

static void
opt_list (struct conn *c, uint32_t len)
{
  if (len != 0) {
    option_reply_error (c, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
                        "NBD_OPT_LIST takes no data");
    return;
  }
  for (size_t i = 0; i < exports_count (); i++) {
    const struct export *e = exports_get (i);
    size_t nl = strlen (e->name),
           dl = e->description ? strlen (e->description) : 0;
    uint8_t *buf = malloc (4 + nl + dl);
    if (!buf) {
      conn_close (c);
      return;
    }
    store_be32 (buf, (uint32_t) nl);
    memcpy (buf + 4, e->name, nl);
    if (dl)
      memcpy (buf + 4 + nl, e->description, dl);
    option_reply (c, NBD_OPT_LIST, NBD_REP_SERVER, buf, 4 + nl + dl);
    free (buf);
  }
  option_reply (c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static void
info_string (struct conn *c, uint32_t option, uint16_t type, const char *s)
{
  size_t n = strlen (s);
  uint8_t *buf = malloc (2 + n);

  if (!buf)
    return;
  store_be16 (buf, type);
  memcpy (buf + 2, s, n);
  option_reply (c, option, NBD_REP_INFO, buf, 2 + n);
  free (buf);
}

/* NBD_OPT_INFO and NBD_OPT_GO share their request and replies; GO then
 * enters transmission. */
static void
opt_info_go (struct conn *c, uint32_t option, const uint8_t *data, uint32_t len)
{
  uint32_t namelen;
  uint16_t nreq;
  bool want_name = false, want_desc = false;
  struct export *e;
  uint8_t buf[14];

  if (len < 6 || (namelen = load_be32 (data)) > len - 6 ||
      (nreq = load_be16 (data + 4 + namelen),
       (uint64_t) 6 + namelen + 2 * (uint64_t) nreq != len)) {
    option_reply_error (c, option, NBD_REP_ERR_INVALID,
                        "malformed NBD_OPT_INFO/GO: lengths do not add up");
    return;
  }
  for (uint16_t i = 0; i < nreq; i++) {
    uint16_t t = load_be16 (data + 6 + namelen + 2 * i);
    want_name |= t == NBD_INFO_NAME;
    want_desc |= t == NBD_INFO_DESCRIPTION;
  }
  e = exports_find ((const char *) data + 4, namelen);
  if (!e) {
    option_reply_error (c, option, NBD_REP_ERR_UNKNOWN, "no such export");
    return;
  }
  store_be16 (buf, NBD_INFO_EXPORT);
  store_be64 (buf + 2, e->size);
  store_be16 (buf + 10, transmission_flags (c, e));
  option_reply (c, option, NBD_REP_INFO, buf, 12);
  if (want_name)
    info_string (c, option, NBD_INFO_NAME, e->name);
  if (want_desc && e->description)
    info_string (c, option, NBD_INFO_DESCRIPTION, e->description);
  /* Sent even unasked.  The minimum is 1: every node serves any byte
   * range (the luks node by read-modify-write of its sectors), and a
   * client that honours a larger minimum refuses the tail of a file whose
   * size is not a multiple of it.  The sector size is what is efficient:
   * the preferred size (as nbdkit's file plugin says for 4K disks). */
  store_be16 (buf, NBD_INFO_BLOCK_SIZE);
  store_be32 (buf + 2, 1);
  store_be32 (buf + 6, node_preferred_block_size (e->node));
  store_be32 (buf + 10, MAX_REQUEST_BYTES);
  option_reply (c, option, NBD_REP_INFO, buf, 14);
  option_reply (c, option, NBD_REP_ACK, NULL, 0);
  if (option == NBD_OPT_GO)
    enter_transmission (c, e);
}

static void
opt_structured_reply (struct conn *c, uint32_t len)
{
  if (len != 0) {
    option_reply_error (c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                        "NBD_OPT_STRUCTURED_REPLY takes no data");
    return;
  }
  if (c->extended) {
    /* Extended headers take precedence: no going back to compact ones. */
    option_reply_error (c, NBD_OPT_STRUCTURED_REPLY,
                        NBD_REP_ERR_EXT_HEADER_REQD,
                        "extended headers are already negotiated");
    return;
  }
  c->structured = true;
  option_reply (c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_EXTENDED_HEADERS: 32-byte requests and replies with 64-bit
 * lengths.  They carry structured replies' semantics (chunked reads,
 * block status, DF), so they imply them, whether or not
 * NBD_OPT_STRUCTURED_REPLY came first. */
static void
opt_extended_headers (struct conn *c, uint32_t len)
{
  if (len != 0) {
    option_reply_error (c, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_INVALID,
                        "NBD_OPT_EXTENDED_HEADERS takes no data");
    return;
  }
  if (c->extended) {
    option_reply_error (c, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_INVALID,
                        "extended headers are already negotiated");
    return;
  }
  if (option_reply (c, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK, NULL, 0) < 0)
    return;
  c->extended = true;
  c->structured = true;
  conn_log (c, LOG_LEVEL_INFO, "extended headers negotiated");
}

/* LIST_META_CONTEXT and SET_META_CONTEXT: export name, then queries.
 * We serve base:allocation only; "base:" selects it too. */
static void
opt_meta_context (struct conn *c, uint32_t option, const uint8_t *data,
                  uint32_t len)
{
  static const char ctx[] = NBD_CONTEXT_BASE_ALLOCATION;
  bool set = option == NBD_OPT_SET_META_CONTEXT, match = false;
  uint32_t namelen, nq, off;

  if (!c->structured) {
    option_reply_error (c, option, NBD_REP_ERR_INVALID,
                        "negotiate structured replies first");
    return;
  }
  if (len < 8 || (namelen = load_be32 (data)) > len - 8) {
    option_reply_error (c, option, NBD_REP_ERR_INVALID,
                        "malformed meta context");
    return;
  }
  if (!exports_find ((const char *) data + 4, namelen)) {
    option_reply_error (c, option, NBD_REP_ERR_UNKNOWN, "no such export");
    return;
  }
  nq = load_be32 (data + 4 + namelen);
  off = 8 + namelen;
  match = nq == 0 && !set; /* LIST with no query: everything */
  for (uint32_t i = 0; i < nq; i++) {
    uint32_t ql;
    if (len - off < 4 || (ql = load_be32 (data + off)) > len - off - 4) {
      option_reply_error (c, option, NBD_REP_ERR_INVALID,
                          "malformed meta context");
      return;
    }
    const char *q = (const char *) data + off + 4;
    if ((ql == sizeof ctx - 1 && memcmp (q, ctx, ql) == 0) ||
        (ql == 5 && memcmp (q, "base:", 5) == 0))
      match = true;
    off += 4 + ql;
  }
  if (off != len) {
    option_reply_error (c, option, NBD_REP_ERR_INVALID, "meta context length");
    return;
  }
  if (set)
    c->base_allocation = match;
  if (match) {
    uint8_t buf[4 + sizeof ctx - 1];
    store_be32 (buf, set ? NBD_CONTEXT_ID_BASE_ALLOCATION : 0);
    memcpy (buf + 4, ctx, sizeof ctx - 1);
    option_reply (c, option, NBD_REP_META_CONTEXT, buf, sizeof buf);
  }
  option_reply (c, option, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_STARTTLS: acknowledged in plaintext, then everything is TLS
 * and whatever was negotiated before is forgotten (a man in the middle
 * may have chosen it). */
static void
opt_starttls (struct conn *c, uint32_t len)
{
  if (tls_mode () == TLS_OFF) {
    option_reply_error (c, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP,
                        "TLS is not enabled on this server (--tls)");
    return;
  }
  if (len != 0) {
    option_reply_error (c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
                        "NBD_OPT_STARTTLS takes no data");
    return;
  }
  if (tls_active (c)) {
    option_reply_error (c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
                        "TLS is already on");
    return;
  }
  if (option_reply (c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0) < 0)
    return;
  c->structured = false;
  c->extended = false;
  c->base_allocation = false;
  if (tls_start (c) < 0) {
    conn_close (c);
    return;
  }
  /* The parser stops here; what follows is ciphertext (connection.c). */
  c->state = CONN_STARTTLS;
}

/* With --tls=require only STARTTLS and ABORT are served in plaintext. */
static bool
refused_without_tls (struct conn *c, uint32_t option)
{
  if (tls_mode () != TLS_REQUIRE || tls_active (c) ||
      option == NBD_OPT_STARTTLS || option == NBD_OPT_ABORT)
    return false;
  if (option == NBD_OPT_EXPORT_NAME) {
    /* No error reply exists for this option: close. */
    conn_log (c, LOG_LEVEL_INFO, "NBD_OPT_EXPORT_NAME without TLS; closing");
    conn_close (c);
  } else
    option_reply_error (c, option, NBD_REP_ERR_TLS_REQD,
                        "TLS is required: send NBD_OPT_STARTTLS first");
  return true;
}

/* The export an option names, if it is one still unlocking at start-up:
 * the option then waits (unparsed, the connection not read) until the
 * export is served or has failed, bounded by the handshake timeout.  A
 * client with a reconnect delay (qemu) so reaches its export as soon as
 * it can, instead of an error it would have to retry. */
static bool
awaits_export (struct conn *c, uint32_t option, const uint8_t *data,
               uint32_t len)
{
  uint32_t namelen;

  switch (option) {
  case NBD_OPT_EXPORT_NAME: return startup_pending ((const char *) data, len);
  case NBD_OPT_INFO:
  case NBD_OPT_GO:
  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT:
    if (len < 4 || (namelen = load_be32 (data)) > len - 4)
      return false; /* malformed: refused as usual */
    return startup_pending ((const char *) data + 4, namelen);
  default: return false;
  }
}

static void
handle_option (struct conn *c, uint32_t option, const uint8_t *data,
               uint32_t len)
{
  conn_log (c, LOG_LEVEL_DEBUG, "option %u, %u bytes", option, len);
  if (server_stopping ()) {
    option_reply_error (c, option, NBD_REP_ERR_SHUTDOWN,
                        "server is shutting down");
    conn_finish (c);
    return;
  }
  if (refused_without_tls (c, option))
    return;
  switch (option) {
  case NBD_OPT_STARTTLS: opt_starttls (c, len); break;
  case NBD_OPT_EXPORT_NAME: opt_export_name (c, data, len); break;
  case NBD_OPT_ABORT:
    option_reply (c, option, NBD_REP_ACK, NULL, 0);
    conn_finish (c);
    break;
  case NBD_OPT_LIST: opt_list (c, len); break;
  case NBD_OPT_INFO:
  case NBD_OPT_GO: opt_info_go (c, option, data, len); break;
  case NBD_OPT_STRUCTURED_REPLY: opt_structured_reply (c, len); break;
  case NBD_OPT_EXTENDED_HEADERS: opt_extended_headers (c, len); break;
  case NBD_OPT_LIST_META_CONTEXT:
  case NBD_OPT_SET_META_CONTEXT: opt_meta_context (c, option, data, len); break;
  default:
    option_reply_error (c, option, NBD_REP_ERR_UNSUP, "option not supported");
    break;
  }
}

ssize_t
handshake_input (struct conn *c, const uint8_t *in, size_t len)
{
  if (c->state == CONN_GREETING) {
    if (len < 4)
      return 0;
    uint32_t flags = load_be32 (in);
    if (!(flags & NBD_FLAG_FIXED_NEWSTYLE) ||
        (flags & ~(uint32_t) (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES))) {
      conn_log (c, LOG_LEVEL_INFO, "unsupported client flags 0x%x", flags);
      conn_close (c);
      return -1;
    }
    c->no_zeroes = flags & NBD_FLAG_NO_ZEROES;
    c->state = CONN_OPTIONS;
    return 4;
  }
  if (len < NBD_OPTION_HEADER_SIZE)
    return 0;
  if (load_be64 (in) != NBD_IHAVEOPT) {
    conn_log (c, LOG_LEVEL_INFO, "bad option magic");
    conn_close (c);
    return -1;
  }
  uint32_t option = load_be32 (in + 8), optlen = load_be32 (in + 12);
  if (optlen > MAX_OPTION_BYTES) {
    /* Refused without reading it: the data may be 4 GB. */
    option_reply_error (c, option, NBD_REP_ERR_TOO_BIG, "option too long");
    conn_finish (c);
    return -1;
  }
  if (len < NBD_OPTION_HEADER_SIZE + (size_t) optlen)
    return 0;
  if (!server_stopping () && !(tls_mode () == TLS_REQUIRE && !tls_active (c)) &&
      awaits_export (c, option, in + NBD_OPTION_HEADER_SIZE, optlen)) {
    if (!c->awaiting_export)
      conn_log (c, LOG_LEVEL_INFO, "waiting for its export to be unlocked");
    c->awaiting_export = true;
    return 0;
  }
  handle_option (c, option, in + NBD_OPTION_HEADER_SIZE, optlen);
  return conn_closed (c) ? -1 : (ssize_t) (NBD_OPTION_HEADER_SIZE + optlen);
}
