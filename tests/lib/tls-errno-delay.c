/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* LD_PRELOAD shim for tests/server/test-tls-errno-race.sh: after
 * gnutls_transport_set_errno stores an errno in the session, waits
 * 2 ms before returning it to the transport function that called it.
 * GnuTLS clears that session-wide value before every push and pull, so
 * if the other direction (a sender in another thread) runs meanwhile,
 * GnuTLS later reads the cleared value instead of the EAGAIN the pull
 * meant: the wait turns that rare interleaving into a likely one.  A
 * server that reports would-block through this thread's errno never
 * calls the function, and the shim changes nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

typedef void set_errno_fn (void *session, int err);

void gnutls_transport_set_errno (void *session, int err);

void
gnutls_transport_set_errno (void *session, int err)
{
  static set_errno_fn *real;
  struct timespec wait = { 0, 2 * 1000 * 1000 };

  if (!real)
    real = (set_errno_fn *) dlsym (RTLD_NEXT, "gnutls_transport_set_errno");
  if (!real)
    abort (); /* GnuTLS is not loaded: the test would prove nothing */
  real (session, err);
  while (nanosleep (&wait, &wait) != 0)
    ;
}
