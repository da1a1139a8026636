/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A TLS 1.3 NBD client that asks for key updates in the middle of its
 * traffic (python's ssl cannot send a KeyUpdate; libnbd never does).
 *
 *   tls-keyupdate-client SOCKET EXPORT CA-CERT MODE PLAIN-FILE ROUNDS
 *
 * MODE read: reads the export in 256 KiB requests, eight in flight,
 * ROUNDS times over, sending a KeyUpdate that asks the server to update
 * its keys too (GNUTLS_KU_PEER) every 3rd reply and a plain one every
 * 7th (at most 8 a second: GnuTLS refuses more).  Every reply must match
 * PLAIN-FILE.  MODE write: writes PLAIN-FILE the same way (four in
 * flight), then reads it back and compares.  MODE pairs: ROUNDS times,
 * a KeyUpdate and a 4 KiB read request in one write (so the server
 * reads both records at once), then that read's reply within 20 s
 * (GnuTLS answers AGAIN after the KeyUpdate: a server that stopped there
 * left the request unread).  Exits 0 if all matched, 1 on a mismatch,
 * a protocol error or a missing reply (a message on stderr says which). */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define REQ 262144
#define QD_READ 8
#define QD_WRITE 4

static gnutls_session_t tls;
static int fd;
static unsigned updates;
static struct timespec last_update;

static void
die (const char *what)
{
  fprintf (stderr, "tls-keyupdate-client: %s\n", what);
  exit (1);
}

static void
raw_all (void *p, size_t n, int w)
{
  while (n) {
    ssize_t r = w ? write (fd, p, n) : read (fd, p, n);
    if (r <= 0)
      die (w ? "write failed" : "read failed or EOF");
    p = (char *) p + r;
    n -= (size_t) r;
  }
}

/* pairs mode: records are gathered here while batching, then written
 * with one write. */
static unsigned char batch[4096];
static size_t batched;
static int batching;

static ssize_t
push (gnutls_transport_ptr_t ptr, const void *p, size_t n)
{
  (void) ptr;
  if (!batching) {
    raw_all ((void *) p, n, 1);
    return (ssize_t) n;
  }
  if (n > sizeof batch - batched)
    die ("batch overflow");
  memcpy (batch + batched, p, n);
  batched += n;
  return (ssize_t) n;
}

static ssize_t
pull (gnutls_transport_ptr_t ptr, void *p, size_t n)
{
  (void) ptr;
  return read (fd, p, n);
}

static void
on_alarm (int sig)
{
  (void) sig;
  die ("no reply within 20 s of a KeyUpdate and a request sent together");
}

static void
tls_all (void *p, size_t n, int w)
{
  while (n) {
    ssize_t r =
      w ? gnutls_record_send (tls, p, n) : gnutls_record_recv (tls, p, n);
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
      continue;
    if (r <= 0) {
      fprintf (stderr, "tls-keyupdate-client: TLS %s: %s\n",
               w ? "send" : "recv", r ? gnutls_strerror ((int) r) : "EOF");
      exit (1);
    }
    p = (char *) p + r;
    n -= (size_t) r;
  }
}

static void
put32 (unsigned char *p, uint32_t v)
{
  for (int i = 3; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char) v;
}

static void
put64 (unsigned char *p, uint64_t v)
{
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (unsigned char) v;
}

static uint64_t
get (const unsigned char *p, int n)
{
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = v << 8 | p[i];
  return v;
}

static void
option (uint32_t opt, const void *data, uint32_t len, int over_tls)
{
  unsigned char h[16];
  memcpy (h, "IHAVEOPT", 8);
  put32 (h + 8, opt);
  put32 (h + 12, len);
  (over_tls ? tls_all : raw_all) (h, 16, 1);
  if (len)
    (over_tls ? tls_all : raw_all) ((void *) data, len, 1);
}

/* An option reply: its type; its data (up to 64 bytes) into buf. */
static uint32_t
option_reply (unsigned char *buf, uint32_t *len, int over_tls)
{
  unsigned char h[20], skip[256];
  (over_tls ? tls_all : raw_all) (h, 20, 0);
  if (get (h, 8) != 0x3e889045565a9ULL)
    die ("bad option reply magic");
  *len = (uint32_t) get (h + 16, 4);
  if (*len > sizeof skip)
    die ("option reply too long");
  (over_tls ? tls_all : raw_all) (skip, *len, 0);
  memcpy (buf, skip, *len < 64 ? *len : 64);
  return (uint32_t) get (h + 12, 4);
}

/* KU_ONLY=peer or KU_ONLY=plain in the environment: only that kind. */
static unsigned
ku_flags (unsigned n)
{
  const char *only = getenv ("KU_ONLY");

  if (only && strcmp (only, "peer") == 0)
    return GNUTLS_KU_PEER;
  if (only && strcmp (only, "plain") == 0)
    return 0;
  return n % 3 == 0 ? GNUTLS_KU_PEER : 0;
}

/* At most 8 a second, GnuTLS's limit for the peer. */
static void
maybe_key_update (unsigned n)
{
  struct timespec now;
  int r;

  if (n % 3 && n % 7)
    return;
  clock_gettime (CLOCK_MONOTONIC, &now);
  if ((now.tv_sec - last_update.tv_sec) * 1000000000L + now.tv_nsec -
        last_update.tv_nsec <
      200000000L)
    return;
  last_update = now;
  do
    r = gnutls_session_key_update (tls, ku_flags (n));
  while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
  if (r < 0) {
    fprintf (stderr, "key update: %s\n", gnutls_strerror (r));
    exit (1);
  }
  updates++;
}

static void
request (uint16_t type, uint64_t handle, uint64_t off, uint32_t len,
         const void *data)
{
  unsigned char h[28];
  put32 (h, 0x25609513);
  h[4] = h[5] = 0;
  h[6] = 0;
  h[7] = (unsigned char) type;
  put64 (h + 8, handle);
  put64 (h + 16, off);
  put32 (h + 24, len);
  tls_all (h, 28, 1);
  if (data)
    tls_all ((void *) data, len, 1);
}

/* One simple reply; its data (len bytes) into buf if a read. */
static uint64_t
reply (void *buf, size_t len)
{
  unsigned char h[16];
  tls_all (h, 16, 0);
  if (get (h, 4) != 0x67446698)
    die ("bad reply magic");
  if (get (h + 4, 4))
    die ("the server returned an error");
  if (buf)
    tls_all (buf, len, 0);
  return get (h + 8, 8);
}

int
main (int argc, char **argv)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  gnutls_certificate_credentials_t cred;
  unsigned char h[64], *plain, *buf;
  uint32_t len, flags = 0;
  uint64_t size = 0, nreq, sent = 0, got = 0;
  int writing, rounds, qd, pf;
  struct stat st;

  if (argc != 7)
    die ("usage: SOCKET EXPORT CA-CERT read|write|pairs PLAIN-FILE ROUNDS");
  signal (SIGPIPE, SIG_IGN); /* the server may close before our bye */
  writing = strcmp (argv[4], "write") == 0;
  rounds = atoi (argv[6]);
  qd = writing ? QD_WRITE : QD_READ;
  pf = open (argv[5], O_RDONLY);
  if (pf < 0 || fstat (pf, &st) < 0)
    die ("cannot open the plaintext file");
  plain = malloc ((size_t) st.st_size);
  buf = malloc (REQ);
  if (!plain || !buf ||
      read (pf, plain, (size_t) st.st_size) != (ssize_t) st.st_size)
    die ("cannot read the plaintext file");

  fd = socket (AF_UNIX, SOCK_STREAM, 0);
  snprintf (sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
  if (connect (fd, (struct sockaddr *) &sa, sizeof sa) < 0)
    die ("connect failed");
  raw_all (h, 18, 0);
  if (memcmp (h, "NBDMAGICIHAVEOPT", 16) != 0)
    die ("not an NBD newstyle server");
  put32 (h, 1); /* NBD_FLAG_C_FIXED_NEWSTYLE */
  raw_all (h, 4, 1);
  option (5, NULL, 0, 0); /* NBD_OPT_STARTTLS */
  if (option_reply (h, &len, 0) != 1)
    die ("STARTTLS refused");

  if (gnutls_certificate_allocate_credentials (&cred) < 0 ||
      gnutls_certificate_set_x509_trust_file (cred, argv[3],
                                              GNUTLS_X509_FMT_PEM) < 0 ||
      gnutls_init (&tls, GNUTLS_CLIENT) < 0 ||
      gnutls_priority_set_direct (tls,
                                  "NORMAL:-VERS-ALL:+VERS-TLS1.3:"
                                  "-CIPHER-ALL:+CHACHA20-POLY1305",
                                  NULL) < 0 ||
      gnutls_credentials_set (tls, GNUTLS_CRD_CERTIFICATE, cred) < 0)
    die ("GnuTLS set-up failed");
  gnutls_transport_set_push_function (tls, push);
  gnutls_transport_set_pull_function (tls, pull);
  for (int r;;) {
    r = gnutls_handshake (tls);
    if (r == 0)
      break;
    if (gnutls_error_is_fatal (r)) {
      fprintf (stderr, "handshake: %s\n", gnutls_strerror (r));
      return 1;
    }
  }

  {
    size_t n = strlen (argv[2]);
    unsigned char go[256];
    put32 (go, (uint32_t) n);
    memcpy (go + 4, argv[2], n);
    go[4 + n] = go[5 + n] = 0;
    option (7, go, (uint32_t) n + 6, 1); /* NBD_OPT_GO */
  }
  for (;;) {
    uint32_t t = option_reply (h, &len, 1);
    if (t == 1)
      break;
    if (t != 3)
      die ("NBD_OPT_GO refused");
    if (len >= 12 && get (h, 2) == 0) {
      size = get (h + 2, 8);
      flags = (uint32_t) get (h + 10, 2);
    }
  }
  (void) flags;
  if (size < (uint64_t) st.st_size || st.st_size % REQ)
    die ("the export is smaller than the file, or not in whole requests");
  nreq = (uint64_t) st.st_size / REQ;

  if (strcmp (argv[4], "pairs") == 0) {
    signal (SIGALRM, on_alarm);
    for (int i = 0; i < rounds; i++) {
      /* GnuTLS takes at most 8 key updates a second from a peer. */
      struct timespec pace = { 0, 150 * 1000 * 1000 };
      while (nanosleep (&pace, &pace) != 0)
        ;
      batching = 1;
      int r = gnutls_session_key_update (tls, 0);
      if (r < 0)
        die ("key update failed");
      updates++;
      request (0, (uint64_t) i, (uint64_t) i * 4096, 4096, NULL);
      batching = 0;
      raw_all (batch, batched, 1);
      batched = 0;
      alarm (20);
      uint64_t hd = reply (buf, 4096);
      alarm (0);
      if (hd != (uint64_t) i ||
          memcmp (buf, plain + (uint64_t) i * 4096, 4096) != 0)
        die ("a read after a KeyUpdate returned the wrong data");
    }
    rounds = 0; /* nothing else to do */
  }

  for (int round = 0; round < (writing ? 1 : rounds); round++) {
    sent = got = 0;
    while (got < nreq) {
      while (sent < nreq && sent - got < (uint64_t) qd) {
        request (writing ? 1 : 0, sent, sent * REQ, REQ,
                 writing ? plain + sent * REQ : NULL);
        sent++;
      }
      uint64_t hd = reply (writing ? NULL : buf, REQ);
      if (hd >= nreq)
        die ("reply with an unknown handle");
      if (!writing && memcmp (buf, plain + hd * REQ, REQ) != 0) {
        fprintf (stderr, "mismatch at offset %llu (round %d)\n",
                 (unsigned long long) (hd * REQ), round);
        return 1;
      }
      got++;
      maybe_key_update ((unsigned) got);
    }
  }
  if (writing) {                /* read it all back */
    request (3, 0, 0, 0, NULL); /* NBD_CMD_FLUSH */
    reply (NULL, 0);
    for (uint64_t i = 0; i < nreq; i++) {
      request (0, i, i * REQ, REQ, NULL);
      reply (buf, REQ);
      if (memcmp (buf, plain + i * REQ, REQ) != 0) {
        fprintf (stderr, "read back mismatch at %llu\n",
                 (unsigned long long) (i * REQ));
        return 1;
      }
      maybe_key_update ((unsigned) i + 1);
    }
  }
  gnutls_bye (tls, GNUTLS_SHUT_WR); /* no NBD_CMD_DISC: the server's
                                       close could race our bye */
  fprintf (stderr, "tls-keyupdate-client: %s ok, %u key updates\n", argv[4],
           updates);
  gnutls_deinit (tls); /* nothing left for a leak checker */
  gnutls_certificate_free_credentials (cred);
  free (plain);
  free (buf);
  close (fd);
  close (pf);
  return 0;
}
