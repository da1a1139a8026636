/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: TLS for NBD (STARTTLS) with GnuTLS under libuv.
 *
 * GnuTLS never touches the socket: its pull function reads ciphertext
 * that read_cb stored in the connection's cipher buffer, and its push
 * function appends ciphertext to an output buffer that tls_flush hands
 * to one uv_write.  So the loop thread stays non-blocking, and a reply of
 * many records still costs one write. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <gnutls/gnutls.h>

#include "common/error_msg.h"
#include "server/internal.h"

#define CIPHER_READ_BYTES (64 * 1024)
/* PSK needs the PSK key exchanges, which GnuTLS leaves out of NORMAL;
 * both modes then take tls_cipher_order()'s ciphers. */
#define PSK_KEY_EXCHANGES "+ECDHE-PSK:+DHE-PSK:+PSK"

struct tls {
  gnutls_session_t session;
  bool handshake_done;
  char *in; /* ciphertext received, not yet pulled */
  size_t in_start, in_len, in_cap;
  char *out; /* ciphertext pushed, not yet written */
  size_t out_len, out_cap;
  char psk_identity[64]; /* the username a PSK client sent, for messages */
  bool psk_unknown;      /* ... and not in --tls-psk's file */
};

static enum tls_mode mode = TLS_OFF;
static gnutls_certificate_credentials_t x509_creds;
static gnutls_psk_server_credentials_t psk_creds;
static bool verify_peer;
/* --tls-psk's keys, read once at start: GnuTLS's own file credentials
 * read the file at every handshake, which fails once --user dropped the
 * right to read it, and never tell which identity a client sent. */
struct psk_user {
  char *name;
  gnutls_datum_t key; /* wiped before it is freed */
};
static struct psk_user *psk_users;
static size_t n_psk_users;
static const char *psk_path;

enum tls_mode
tls_mode (void)
{
  return mode;
}

static int
gnutls_fail (int err, const char *what, const char *path)
{
  return error_set (-EINVAL, "%s %s: %s", what, path, gnutls_strerror (err));
}

/* --tls-certs DIR holds server-cert.pem and server-key.pem, and
 * ca-cert.pem (needed with --tls-verify-peer), as under nbdkit and qemu. */
static int
load_x509 (const char *dir)
{
  char cert[4096], key[4096], ca[4096];
  struct stat st;
  int r;

  if (snprintf (cert, sizeof cert, "%s/server-cert.pem", dir) >=
        (int) sizeof cert ||
      snprintf (key, sizeof key, "%s/server-key.pem", dir) >=
        (int) sizeof key ||
      snprintf (ca, sizeof ca, "%s/ca-cert.pem", dir) >= (int) sizeof ca)
    return error_set (-ENAMETOOLONG, "--tls-certs %s: path too long", dir);
  if (stat (dir, &st) < 0)
    return error_set (-errno, "--tls-certs %s: %s", dir, strerror (errno));
  r = gnutls_certificate_allocate_credentials (&x509_creds);
  if (r < 0)
    return gnutls_fail (r, "--tls-certs", dir);
  if (stat (ca, &st) == 0) {
    r = gnutls_certificate_set_x509_trust_file (x509_creds, ca,
                                                GNUTLS_X509_FMT_PEM);
    if (r < 0)
      return gnutls_fail (r, "--tls-certs: CA certificate", ca);
  } else if (verify_peer)
    return error_set (-ENOENT,
                      "--tls-verify-peer: %s: no CA certificate to "
                      "verify clients with",
                      ca);
  r = gnutls_certificate_set_x509_key_file (x509_creds, cert, key,
                                            GNUTLS_X509_FMT_PEM);
  if (r < 0)
    return error_set (-EINVAL,
                      "--tls-certs %s: server-cert.pem/"
                      "server-key.pem: %s",
                      dir, gnutls_strerror (r));
  r = gnutls_certificate_set_known_dh_params (x509_creds,
                                              GNUTLS_SEC_PARAM_MEDIUM);
  if (r < 0)
    return gnutls_fail (r, "--tls-certs", dir);
  return 0;
}

/* --tls-psk FILE: lines "username:hexkey" (psktool's format).  GnuTLS
 * reads the file only during a handshake, so it is checked here first:
 * a typo must stop the daemon, not every client. */
struct psk_check {
  const char *path;
  int users;
};

static int
psk_line (void *opaque, char *line, size_t len, int lineno)
{
  struct psk_check *pc = opaque;
  char *colon = strchr (line, ':');
  struct psk_user *n;

  if (len == 0)
    return 0;
  if (!colon || colon == line || colon[1] == '\0')
    return error_set (-EINVAL,
                      "--tls-psk %s: line %d: expected username:hexkey",
                      pc->path, lineno);
  for (char *p = colon + 1; *p; p++)
    if (!isxdigit ((unsigned char) *p))
      return error_set (-EINVAL,
                        "--tls-psk %s: line %d: key is not hexadecimal",
                        pc->path, lineno);
  n = realloc (psk_users, (n_psk_users + 1) * sizeof *n);
  if (!n)
    return error_set (-ENOMEM, "out of memory");
  psk_users = n;
  n += n_psk_users;
  gnutls_datum_t hex = { (unsigned char *) colon + 1,
                         (unsigned) strlen (colon + 1) };
  n->name = strndup (line, (size_t) (colon - line));
  if (!n->name)
    return error_set (-ENOMEM, "out of memory");
  if (gnutls_hex_decode2 (&hex, &n->key) < 0) {
    free (n->name);
    return error_set (-EINVAL,
                      "--tls-psk %s: line %d: key is not hexadecimal "
                      "(an odd number of digits?)",
                      pc->path, lineno);
  }
  n_psk_users++;
  pc->users++;
  return 0;
}

static void
free_psk_users (void)
{
  for (size_t i = 0; i < n_psk_users; i++) {
    free (psk_users[i].name);
    explicit_bzero (psk_users[i].key.data, psk_users[i].key.size);
    gnutls_free (psk_users[i].key.data);
  }
  free (psk_users);
  psk_users = NULL;
  n_psk_users = 0;
}

/* GnuTLS asks for the key of the identity a client sent (on the loop
 * thread, in the handshake); noted for the messages. */
static int
psk_key (gnutls_session_t session, const char *username, gnutls_datum_t *key)
{
  struct tls *t = ((struct conn *) gnutls_transport_get_ptr (session))->tls;

  snprintf (t->psk_identity, sizeof t->psk_identity, "%s", username);
  for (size_t i = 0; i < n_psk_users; i++)
    if (strcmp (psk_users[i].name, username) == 0) {
      key->data = gnutls_malloc (psk_users[i].key.size);
      if (!key->data)
        return -1;
      memcpy (key->data, psk_users[i].key.data, psk_users[i].key.size);
      key->size = psk_users[i].key.size;
      return 0;
    }
  t->psk_unknown = true;
  return -1;
}

/* The man page asks for 0600: the file holds every client's key. */
static void
warn_if_readable (const char *path)
{
  struct stat st;

  if (stat (path, &st) == 0 && (st.st_mode & 077))
    log_warning ("--tls-psk %s: readable by group or others (mode %04o): "
                 "the keys let anyone read and write every export; "
                 "chmod 600 it",
                 path, (unsigned) (st.st_mode & 07777));
}

static int
load_psk (const char *path)
{
  struct psk_check pc = { path, 0 };
  int r = lines_read (path, "--tls-psk", psk_line, &pc);

  if (r == 0 && pc.users == 0)
    r = error_set (-EINVAL, "--tls-psk %s: no username:hexkey line", path);
  if (r < 0)
    return r;
  warn_if_readable (path);
  psk_path = path;
  r = gnutls_psk_allocate_server_credentials (&psk_creds);
  if (r >= 0)
    gnutls_psk_set_server_credentials_function (psk_creds, psk_key);
  if (r >= 0)
    r = gnutls_psk_set_server_known_dh_params (psk_creds,
                                               GNUTLS_SEC_PARAM_MEDIUM);
  return r < 0 ? gnutls_fail (r, "--tls-psk", path) : 0;
}

int
tls_configure (enum tls_mode m, const char *certs_dir, const char *psk_file,
               bool verify)
{
  int r;

  if (m == TLS_OFF) {
    if (certs_dir || psk_file || verify)
      return error_set (-EINVAL,
                        "--tls-certs, --tls-psk and "
                        "--tls-verify-peer need --tls=on or --tls=require");
    return 0;
  }
  if (certs_dir && psk_file)
    return error_set (-EINVAL,
                      "--tls-certs and --tls-psk: choose one (a daemon "
                      "serves either X.509 or PSK clients)");
  if (!certs_dir && !psk_file)
    return error_set (-EINVAL,
                      "--tls=%s needs one of --tls-certs DIR or "
                      "--tls-psk FILE",
                      m == TLS_ON ? "on" : "require");
  if (verify && !certs_dir)
    return error_set (-EINVAL, "--tls-verify-peer needs --tls-certs");
  verify_peer = verify;
  r = certs_dir ? load_x509 (certs_dir) : load_psk (psk_file);
  if (r < 0) {
    tls_global_free ();
    return r;
  }
  mode = m;
  (void) tls_cipher_order (); /* measured now, not on the first client */
  return 0;
}

void
tls_global_free (void)
{
  if (x509_creds)
    gnutls_certificate_free_credentials (x509_creds);
  if (psk_creds)
    gnutls_psk_free_server_credentials (psk_creds);
  x509_creds = NULL;
  psk_creds = NULL;
  free_psk_users ();
  mode = TLS_OFF;
}

/* Makes room for `more` bytes of ciphertext.  Buffers come from the
 * request buffer pool (warm, reused pages): growing a fresh heap buffer by
 * doubling while a 256 KiB reply was encrypted copied it several times and
 * faulted in new pages on every reply. */
static int
reserve (struct tls *t, size_t more)
{
  size_t cap = t->out_cap ? t->out_cap : 16384;
  char *n;

  if (t->out_len + more <= t->out_cap)
    return 0;
  while (cap < t->out_len + more)
    cap *= 2;
  n = bufpool_get (cap);
  if (!n && cap > MAX_REQUEST_BYTES)
    n = malloc (cap); /* over the pool's largest class */
  if (!n)
    return -ENOMEM;
  if (t->out_len)
    memcpy (n, t->out, t->out_len);
  bufpool_put (t->out, t->out_cap);
  t->out = n;
  t->out_cap = cap;
  return 0;
}

static ssize_t
transport_push (gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
  struct tls *t = ((struct conn *) ptr)->tls;

  if (len == 0)
    return 0;
  if (reserve (t, len) < 0) {
    gnutls_transport_set_errno (t->session, ENOMEM);
    return -1;
  }
  memcpy (t->out + t->out_len, data, len);
  t->out_len += len;
  return (ssize_t) len;
}

static ssize_t
transport_pull (gnutls_transport_ptr_t ptr, void *data, size_t len)
{
  struct tls *t = ((struct conn *) ptr)->tls;

  if (t->in_len == 0) {
    gnutls_transport_set_errno (t->session, EAGAIN);
    return -1;
  }
  if (len > t->in_len)
    len = t->in_len;
  memcpy (data, t->in + t->in_start, len);
  t->in_start += len;
  t->in_len -= len;
  return (ssize_t) len;
}

/* Never waits: there is data or there is not (the loop calls again). */
static int
transport_pull_timeout (gnutls_transport_ptr_t ptr, unsigned ms)
{
  return ((struct conn *) ptr)->tls->in_len > 0;
}

struct tls_write {
  uv_write_t w;
  struct conn *c;
  uv_write_t *req; /* the caller's, completed with ours (or NULL) */
  uv_write_cb cb;
  char *data;
  size_t cap;  /* data's size, for the pool */
  size_t held; /* counted in c->output_bytes until written */
};

static void
after_tls_write (uv_write_t *w, int status)
{
  struct tls_write *tw = w->data;

  struct conn *c = tw->c; /* it outlives its handle's write callbacks */

  conn_release (&c->output_bytes, tw->held);
  bufpool_put (tw->data, tw->cap);
  if (tw->cb)
    tw->cb (tw->req, status);
  free (tw);
  conn_wake (c); /* output budget freed: parsing may resume */
}

/* Writes out what GnuTLS pushed; req/cb (if any) complete with it. */
static int
tls_flush (struct conn *c, uv_write_t *req, uv_write_cb cb)
{
  struct tls *t = c->tls;
  struct tls_write *tw;
  uv_buf_t b;
  int r;

  if (t->out_len == 0 && !cb)
    return 0;
  tw = malloc (sizeof *tw);
  if (!tw)
    return -ENOMEM;
  tw->w.data = tw;
  tw->c = c;
  tw->req = req;
  tw->cb = cb;
  tw->data = t->out;
  tw->cap = t->out_cap;
  /* What it holds, not what it says: an option reply of 40 bytes
   * sits in a 16 KiB buffer until the client reads it. */
  tw->held = sizeof *tw + t->out_cap;
  b = uv_buf_init (t->out, (unsigned) t->out_len);
  t->out = NULL;
  t->out_len = t->out_cap = 0;
  r = conn_stream_write (c, &tw->w, &b, 1, after_tls_write);
  if (r < 0) {
    bufpool_put (tw->data, tw->cap);
    free (tw);
    return r;
  }
  conn_hold (&c->output_bytes, tw->held); /* the gate counts it */
  return 0;
}

int
tls_start (struct conn *c)
{
  struct tls *t = calloc (1, sizeof *t);
  int r;

  if (!t)
    return -ENOMEM;
  c->tls = t;
  r = gnutls_init (&t->session, GNUTLS_SERVER | GNUTLS_NONBLOCK);
  if (r < 0) {
    t->session = NULL;
    goto fail;
  }
  if (psk_creds) {
    char prio[512];
    snprintf (prio, sizeof prio, "NORMAL:%s:%s", PSK_KEY_EXCHANGES,
              tls_cipher_order ());
    r = gnutls_priority_set_direct (t->session, prio, NULL);
    if (r >= 0)
      r = gnutls_credentials_set (t->session, GNUTLS_CRD_PSK, psk_creds);
  } else {
    r = gnutls_set_default_priority_append (t->session, tls_cipher_order (),
                                            NULL, 0);
    if (r >= 0)
      r =
        gnutls_credentials_set (t->session, GNUTLS_CRD_CERTIFICATE, x509_creds);
    if (r >= 0 && verify_peer) {
      gnutls_certificate_server_set_request (t->session, GNUTLS_CERT_REQUIRE);
      gnutls_session_set_verify_cert (t->session, NULL, 0);
    }
  }
  if (r < 0)
    goto fail;
  /* The connection's handshake timer bounds the TLS handshake too. */
  gnutls_handshake_set_timeout (t->session, 0);
  gnutls_transport_set_ptr (t->session, c);
  gnutls_transport_set_push_function (t->session, transport_push);
  gnutls_transport_set_pull_function (t->session, transport_pull);
  gnutls_transport_set_pull_timeout_function (t->session,
                                              transport_pull_timeout);
  return 0;
fail:
  conn_log (c, LOG_LEVEL_ERROR, "TLS session: %s", gnutls_strerror (r));
  tls_free (c);
  return -EIO;
}

void
tls_free (struct conn *c)
{
  struct tls *t = c->tls;

  if (!t)
    return;
  if (t->session)
    gnutls_deinit (t->session);
  free (t->in);
  bufpool_put (t->out, t->out_cap);
  free (t);
  c->tls = NULL;
}

/* Whether tls_recv could yield anything without a new read: ciphertext
 * stored but not pulled, or records GnuTLS decrypted but not handed out
 * (and, before the handshake is done, always: it drives the handshake). */
bool
tls_has_input (const struct conn *c)
{
  const struct tls *t = c->tls;

  return t && (!t->handshake_done || t->in_len > 0 ||
               gnutls_record_check_pending (t->session) > 0);
}

bool
tls_handshake_done (const struct conn *c)
{
  return c->tls && c->tls->handshake_done;
}

bool
tls_active (const struct conn *c)
{
  return c->tls != NULL;
}

void
tls_alloc (struct conn *c, uv_buf_t *buf)
{
  struct tls *t = c->tls;

  if (t->in_start && t->in_len == 0)
    t->in_start = 0;
  if (t->in_start + t->in_len + CIPHER_READ_BYTES > t->in_cap) {
    /* Compact, then grow only if still short (t->in is NULL at first). */
    if (t->in_len)
      memmove (t->in, t->in + t->in_start, t->in_len);
    t->in_start = 0;
    if (t->in_len + CIPHER_READ_BYTES > t->in_cap) {
      char *n = realloc (t->in, t->in_len + CIPHER_READ_BYTES);
      if (!n) {
        *buf = uv_buf_init (NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
      }
      t->in = n;
      t->in_cap = t->in_len + CIPHER_READ_BYTES;
    }
  }
  *buf = uv_buf_init (t->in + t->in_start + t->in_len,
                      (unsigned) (t->in_cap - t->in_start - t->in_len));
}

void
tls_received (struct conn *c, size_t n)
{
  c->tls->in_len += n;
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

static void
log_peer (struct conn *c)
{
  const char *user =
    psk_creds ? gnutls_psk_server_get_username (c->tls->session) : NULL;
  char *desc = gnutls_session_get_desc (c->tls->session);

  conn_log (c, LOG_LEVEL_INFO, "TLS %s%s%s", desc ? desc : "",
            user ? ", PSK user " : "", user ? user : "");
  gnutls_free (desc);
}

/* A PSK client's identity and what most likely went wrong: GnuTLS says
 * only "An illegal parameter has been received" for a wrong key. */
static void
log_handshake_failure (struct conn *c, int r)
{
  struct tls *t = c->tls;

  if (verify_peer &&
      (r == GNUTLS_E_NO_CERTIFICATE_FOUND ||
       r == GNUTLS_E_CERTIFICATE_REQUIRED || r == GNUTLS_E_CERTIFICATE_ERROR ||
       r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR))
    /* Refused by our rule, not a network hiccup: said without -v, as a
     * refused PSK client is. */
    conn_log (c, LOG_LEVEL_WARNING,
              "TLS handshake failed: client certificate refused "
              "(--tls-verify-peer): %s",
              gnutls_strerror (r));
  else if (!psk_creds || !t->psk_identity[0])
    conn_log (c, LOG_LEVEL_INFO, "TLS handshake failed: %s",
              gnutls_strerror (r));
  else if (t->psk_unknown)
    conn_log (c, LOG_LEVEL_WARNING,
              "TLS handshake failed: PSK identity '%s': wrong key or unknown "
              "identity (no such user in --tls-psk %s)",
              t->psk_identity, psk_path);
  else if (r == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER ||
           r == GNUTLS_E_DECRYPTION_FAILED ||
           r == GNUTLS_E_ERROR_IN_FINISHED_PACKET)
    conn_log (
      c, LOG_LEVEL_WARNING,
      "TLS handshake failed: PSK identity '%s': wrong key or unknown identity "
      "(the client's key for it is not the one in --tls-psk %s; GnuTLS: %s)",
      t->psk_identity, psk_path, gnutls_strerror (r));
  else
    conn_log (c, LOG_LEVEL_INFO, "TLS handshake failed: PSK identity '%s': %s",
              t->psk_identity, gnutls_strerror (r));
}

ssize_t
tls_recv (struct conn *c, uint8_t *buf, size_t len)
{
  struct tls *t = c->tls;
  ssize_t n;
  int r;

  if (!t->handshake_done) {
    do
      r = gnutls_handshake (t->session);
    while (r == GNUTLS_E_INTERRUPTED);
    if (tls_flush (c, NULL, NULL) < 0)
      return -1;
    if (r == GNUTLS_E_AGAIN)
      return 0;
    if (r < 0) {
      log_handshake_failure (c, r);
      return -1;
    }
    t->handshake_done = true;
    log_peer (c);
  }
  if (len == 0)
    return 0;
  /* Non-fatal errors (alerts, a renegotiation request) consume records;
   * a bound keeps a misbehaving peer from holding the loop. */
  for (unsigned tries = 0; tries < 64; tries++) {
    n = gnutls_record_recv (t->session, buf, len);
    if (tls_flush (c, NULL, NULL) < 0)
      return -1;
    if (n > 0)
      return n;
    if (n == GNUTLS_E_AGAIN)
      return 0;
    if (n == 0) {
      conn_log (c, LOG_LEVEL_INFO, "client ended TLS");
      return -1;
    }
    if (gnutls_error_is_fatal ((int) n)) {
      conn_log (c, LOG_LEVEL_INFO, "TLS: %s", gnutls_strerror ((int) n));
      return -1;
    }
  }
  conn_log (c, LOG_LEVEL_INFO, "TLS: too many non-fatal errors; closing");
  return -1;
}

int
tls_write (struct conn *c, uv_write_t *req, const uv_buf_t *bufs, unsigned n,
           uv_write_cb cb)
{
  struct tls *t = c->tls;

  if (!t->handshake_done)
    return -ENOTCONN;
  /* Room for all of it at once: each record of at most 16 KiB adds a
   * header, a tag and padding, well under 256 bytes. */
  size_t total = 0;
  for (unsigned i = 0; i < n; i++)
    total += bufs[i].len;
  if (reserve (t, total + (total / 16384 + n + 1) * 256) < 0)
    return -ENOMEM;
  for (unsigned i = 0; i < n; i++) {
    size_t off = 0;
    unsigned retries = 0;
    while (off < bufs[i].len) {
      ssize_t s =
        gnutls_record_send (t->session, bufs[i].base + off, bufs[i].len - off);
      /* transport_push never blocks: these only ask to call again. */
      if ((s == GNUTLS_E_INTERRUPTED || s == GNUTLS_E_AGAIN) && ++retries < 16)
        continue;
      if (s < 0) {
        conn_log (c, LOG_LEVEL_INFO, "TLS send: %s", gnutls_strerror ((int) s));
        return -EIO;
      }
      off += (size_t) s;
    }
  }
  return tls_flush (c, req, cb);
}

void
tls_bye (struct conn *c)
{
  if (c->tls && c->tls->handshake_done) {
    gnutls_bye (c->tls->session, GNUTLS_SHUT_WR);
    tls_flush (c, NULL, NULL);
  }
}
