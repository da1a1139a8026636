/* luks-nbd: one connection's TLS session, shared by tls.c (credentials,
 * session set-up, messages) and tls_io.c (records encrypted and
 * decrypted in the thread pool).
 *
 * Threading: a connection has at most one job in the pool at a time
 * (busy).  While it runs, the job alone touches the session, out and
 * the fields marked "job"; the loop touches them only when no job runs.
 * Ciphertext received (in) is appended by the loop while a job may pull
 * from it: in_lock guards it.  So GnuTLS never sees two threads on one
 * session, each connection's records stay in order, and several
 * connections encrypt on several cores. */
#ifndef LUKS_NBD_TLS_SESSION_H
#define LUKS_NBD_TLS_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "internal.h"

/* The job a connection has in the pool: replies to encrypt, room for
 * plaintext to decrypt, or both. */
struct tls_job {
  uv_work_t work;
  /* Set by the loop before it queues the job. */
  struct queued_reply *send; /* encrypted in order, then written */
  size_t send_bytes;
  uint8_t *dst; /* decrypted records go here (c->in's free tail) */
  size_t dst_cap;
  /* Set by the job, read by the loop once it is done. */
  size_t got;         /* plaintext bytes in dst */
  int recv_err;       /* 0, a GnuTLS error, or TLS_JOB_EOF */
  int send_err;       /* 0 or a GnuTLS error */
  int handshake_err;  /* the handshake's failure, or 0 */
  bool handshake_now; /* the handshake completed in this job */
};
#define TLS_JOB_EOF 1 /* the client sent close_notify */

struct tls {
  gnutls_session_t session;
  struct conn *conn;   /* the transport pointer's owner (messages, stats) */
  uint64_t id;         /* its connection's, for messages from the job */
  bool busy;           /* loop: a job is queued or running */
  bool handshake_done; /* job (then loop once it is done) */
  bool pending;        /* job: GnuTLS holds decrypted bytes not handed out */
  pthread_mutex_t in_lock;
  char *in; /* ciphertext received, not yet pulled (in_lock) */
  size_t in_start, in_len, in_cap;
  char *out; /* ciphertext pushed, not yet written (job, else loop) */
  size_t out_len, out_cap;
  struct queued_reply *send, **send_tail; /* loop: waiting for a job */
  size_t send_bytes;
  struct tls_job job;
  /* Loop: what the jobs did, for the -v line at the end. */
  uint64_t jobs, bytes_encrypted, bytes_decrypted;
  char psk_identity[64]; /* job: the username a PSK client sent */
  bool psk_unknown;      /* ... and not in --tls-psk's file */
};

/* tls.c */
void tls_log_peer (struct tls *t);                     /* from the job */
void tls_log_handshake_failure (struct tls *t, int r); /* on the loop */

/* tls_io.c */
int tls_io_init (struct tls *t); /* transport functions and the lock */
void tls_io_free (struct tls *t);
/* Writes out what GnuTLS pushed (loop, no job running). */
int tls_flush (struct conn *c);

#endif
