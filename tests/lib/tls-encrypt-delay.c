/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* LD_PRELOAD shim for tests/server/test-tls-key-update.sh: each
 * ChaCha20-Poly1305 encryption (one TLS record's, nettle's function
 * that GnuTLS calls) waits 200 us first.  GnuTLS takes a record's
 * sequence number before it encrypts and counts it after, so the wait
 * holds a sender inside that window most of the time: a KeyUpdate that
 * the receiving thread handles meanwhile copies the sequence number
 * mid-record (a rare interleaving without the shim).  A server that
 * never lets the two directions into GnuTLS at once only runs
 * slower. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

typedef void encrypt_fn (void *ctx, size_t length, uint8_t *dst,
                         const uint8_t *src);

void nettle_chacha_poly1305_encrypt (void *ctx, size_t length, uint8_t *dst,
                                     const uint8_t *src);

void
nettle_chacha_poly1305_encrypt (void *ctx, size_t length, uint8_t *dst,
                                const uint8_t *src)
{
  static encrypt_fn *real;
  struct timespec wait = { 0, 200 * 1000 };

  if (!real)
    real = (encrypt_fn *) dlvsym (RTLD_NEXT, "nettle_chacha_poly1305_encrypt",
                                  "NETTLE_8");
  if (!real)
    abort (); /* nettle is not loaded: the test would prove nothing */
  while (nanosleep (&wait, &wait) != 0)
    ;
  real (ctx, length, dst, src);
}
