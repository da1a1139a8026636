/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: TLS for NBD (STARTTLS) with GnuTLS: credentials (X.509 or
 * PSK), a connection's session, and its messages.  The records move in
 * tls_io.c, in the thread pool. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <gnutls/gnutls.h>

#include "common/error_msg.h"
#include "server/tls_session.h"

/* PSK needs the PSK key exchanges, which GnuTLS leaves out of NORMAL;
 * both modes then take tls_cipher_order()'s ciphers. */
#define PSK_KEY_EXCHANGES "+ECDHE-PSK:+DHE-PSK:+PSK"

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

/* GnuTLS asks for the key of the identity a client sent (in the
 * handshake, in the connection's job); noted for the messages. */
static int
psk_key (gnutls_session_t session, const char *username, gnutls_datum_t *key)
{
  struct tls *t = gnutls_transport_get_ptr (session);

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

int
tls_start (struct conn *c)
{
  struct tls *t = calloc (1, sizeof *t);
  int r;

  if (!t)
    return -ENOMEM;
  c->tls = t;
  t->conn = c;
  t->id = c->id;
  r = gnutls_init (&t->session, GNUTLS_SERVER | GNUTLS_NONBLOCK);
  if (r < 0) {
    t->session = NULL;
    goto fail;
  }
  if (tls_io_init (t) < 0) {
    gnutls_deinit (t->session);
    t->session = NULL;
    r = GNUTLS_E_MEMORY_ERROR;
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
  if (t->jobs || t->inline_encrypted || t->inline_decrypted)
    conn_log (
      c, LOG_LEVEL_INFO,
      "TLS: %llu jobs in the thread pool encrypted "
      "%llu bytes and decrypted %llu; the loop, in small batches, "
      "%llu and %llu; %llu waits for a full socket",
      (unsigned long long) t->jobs, (unsigned long long) t->bytes_encrypted,
      (unsigned long long) t->bytes_decrypted,
      (unsigned long long) t->inline_encrypted,
      (unsigned long long) t->inline_decrypted, (unsigned long long) t->stops);
  if (t->session) {
    tls_io_free (t);
    gnutls_deinit (t->session);
  }
  free (t);
  c->tls = NULL;
}

bool
tls_active (const struct conn *c)
{
  return c->tls != NULL;
}

void
tls_log_peer (struct tls *t)
{
  const char *user =
    psk_creds ? gnutls_psk_server_get_username (t->session) : NULL;
  char *desc = gnutls_session_get_desc (t->session);

  conn_log (t->conn, LOG_LEVEL_INFO, "TLS %s%s%s", desc ? desc : "",
            user ? ", PSK user " : "", user ? user : "");
  gnutls_free (desc);
}

/* A PSK client's identity and what most likely went wrong: GnuTLS says
 * only "An illegal parameter has been received" for a wrong key. */
void
tls_log_handshake_failure (struct tls *t, int r)
{
  struct conn *c = t->conn; /* conn_log reads only its id */

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

/* On the loop, once no job runs (begin_shutdown waits for that). */
void
tls_bye (struct conn *c)
{
  if (c->tls && !tls_busy (c) && c->tls->established) {
    pthread_mutex_lock (&c->tls->record_lock); /* tls_session.h */
    gnutls_bye (c->tls->session, GNUTLS_SHUT_WR);
    pthread_mutex_unlock (&c->tls->record_lock);
    tls_flush (c);
  }
}
