/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: one connection's TLS session, shared by tls.c (credentials,
 * session set-up, messages) and tls_io.c (records encrypted and
 * decrypted in the thread pool).
 *
 * Threading: a connection has at most one receive job (the handshake,
 * then decrypting) and one send job (encrypting replies) in the pool at
 * a time, which GnuTLS allows on one session: one receiver and one
 * sender.  Each job owns the fields marked with its name while it runs;
 * the loop touches them only when that job is not running.  Ciphertext
 * received (in) is appended by the loop while the receive job pulls
 * from it: in_lock guards it.  Ciphertext pushed (out) is appended by
 * either job (the receive job only in the handshake, before any send
 * job) and written by the loop: out_lock guards it.  So each
 * connection's records stay in order, and several connections (and the
 * two directions of one) use several cores.
 *
 * GnuTLS's record layer is not safe for a receiver and a sender at the
 * same instant in TLS 1.3: a KeyUpdate the client sends makes the
 * receiver start a new epoch that copies the sending side's sequence
 * number, while the sender goes on counting in the old one; later
 * records reused nonces and the client failed with "Decryption has
 * failed".  So each gnutls_record_* call holds record_lock: the two
 * directions take turns a record at a time. */
#ifndef LUKS_NBD_TLS_SESSION_H
#define LUKS_NBD_TLS_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "server/internal.h"

/* The receive job: the handshake, then records decrypted into dst. */
struct tls_recv_job {
  uv_work_t work;
  uint8_t *dst; /* set by the loop: c->in's free tail */
  size_t dst_cap;
  bool direct;        /* dst is the pending write's buffer, not c->in's */
  size_t got;         /* plaintext bytes in dst */
  int recv_err;       /* 0, a GnuTLS error, or TLS_JOB_EOF */
  int handshake_err;  /* the handshake's failure, or 0 */
  bool handshake_now; /* the handshake completed in this job */
};
#define TLS_JOB_EOF 1 /* the client sent close_notify */

/* Where encrypting stopped: the first reply not wholly encrypted, and
 * how far into it (buffer, offset).  Its buffers up to there are sent. */
struct tls_send_mark {
  struct queued_reply *q;
  unsigned buf;
  size_t off;
};

/* The send job: replies encrypted in order, from `from` on. */
struct tls_send_job {
  uv_work_t work;
  struct queued_reply *send; /* set by the loop */
  struct tls_send_mark from; /* set by the loop: where send resumes */
  size_t bytes;              /* plaintext the job encrypted */
  int fd;                    /* the socket, dup'd for the job, or -1 */
  int err;                   /* 0 or a GnuTLS error */
  struct tls_send_mark stop; /* stop.q: the socket filled up there */
};

struct tls {
  gnutls_session_t session;
  struct conn *conn;   /* for the loop's side of the jobs */
  uint64_t id;         /* its connection's, for messages from a job */
  bool receiving;      /* loop: the receive job is queued or running */
  bool sending;        /* loop: the send job is queued or running */
  bool handshake_done; /* receive job */
  bool established;    /* loop: the handshake is done */
  bool pending;        /* receive job: GnuTLS holds decrypted bytes */
  /* Held around each gnutls_record_* call (see above). */
  pthread_mutex_t record_lock;
  pthread_mutex_t in_lock;
  char *in; /* ciphertext received, not yet pulled (in_lock) */
  size_t in_start, in_len, in_cap;
  size_t rec_left; /* of the record GnuTLS is pulling (in_lock) */
  pthread_mutex_t out_lock;
  char *out; /* ciphertext pushed, not yet written (out_lock) */
  size_t out_len, out_cap;
  int direct_fd;       /* out_lock: the send job writes here, or -1 */
  size_t direct_bytes; /* out_lock: what it wrote there */
  int push_errno;      /* out_lock: why a send to the socket failed */
  struct queued_reply *send, **send_tail; /* loop: waiting for a job */
  struct tls_send_mark resume; /* loop: send's head is encrypted to here */
  /* Loop: a job stopped at a full socket; the next one starts when
   * libuv's queue has drained (after_tls_write), so ciphertext is never
   * made faster than the client takes it. */
  bool blocked;
  struct tls_recv_job recv_job;
  struct tls_send_job send_job;
  /* Loop: what the jobs did, for the -v line at the end. */
  uint64_t jobs, bytes_encrypted, bytes_decrypted;
  uint64_t stops; /* send jobs that stopped at a full socket */
  uint64_t inline_encrypted, inline_decrypted; /* small work, on the loop */
  char psk_identity[64]; /* receive job: the username a PSK client sent */
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
