/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: which TLS cipher the server prefers, measured rather than
 * assumed.  GnuTLS's NORMAL order puts ChaCha20-Poly1305 first when it
 * believes the CPU lacks AES instructions, and it believed so on a
 * virtual machine whose AES-GCM ran at 4.9 GB/s against ChaCha20's
 * 0.29 GB/s: TLS reads crawled at 180 MiB/s.  So at start the two AEADs
 * encrypt the same buffer, and the faster one leads the server's order
 * (%SERVER_PRECEDENCE: the server's order wins over the client's). */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "server/internal.h"

#define PROBE_BYTES (64 * 1024)
#define PROBE_ROUNDS 3

/* Seconds for one AEAD encryption of PROBE_BYTES (best of a few), or a
 * huge value if the cipher is unavailable. */
static double
aead_seconds (gnutls_cipher_algorithm_t alg, unsigned char *buf)
{
  static const unsigned char key_bytes[32] = { 1 }, nonce[12] = { 2 };
  gnutls_datum_t key = { (unsigned char *) key_bytes,
                         (unsigned) gnutls_cipher_get_key_size (alg) };
  gnutls_aead_cipher_hd_t h;
  double best = 1e9;

  if (gnutls_aead_cipher_init (&h, alg, &key) < 0)
    return best;
  for (int i = 0; i < PROBE_ROUNDS; i++) {
    struct timespec a, b;
    size_t out_len = PROBE_BYTES + 16;
    clock_gettime (CLOCK_MONOTONIC, &a);
    int r =
      gnutls_aead_cipher_encrypt (h, nonce, sizeof nonce, NULL, 0, 16, buf,
                                  PROBE_BYTES, buf + PROBE_BYTES, &out_len);
    clock_gettime (CLOCK_MONOTONIC, &b);
    double s = (double) (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    if (r == 0 && s < best)
      best = s;
  }
  gnutls_aead_cipher_deinit (h);
  return best;
}

const char *
tls_cipher_order (void)
{
  static const char *order;
  unsigned char *buf;

  if (order)
    return order;
  order = "-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
          "+AES-128-CCM:+AES-256-CCM:+AES-128-CBC:+AES-256-CBC:"
          "%SERVER_PRECEDENCE";
  buf = calloc (1, 2 * PROBE_BYTES + 16);
  if (!buf)
    return order; /* AES first: the common case */
  if (aead_seconds (GNUTLS_CIPHER_CHACHA20_POLY1305, buf) <
      aead_seconds (GNUTLS_CIPHER_AES_128_GCM, buf))
    order = "-CIPHER-ALL:+CHACHA20-POLY1305:+AES-128-GCM:+AES-256-GCM:"
            "+AES-128-CCM:+AES-256-CCM:+AES-128-CBC:+AES-256-CBC:"
            "%SERVER_PRECEDENCE";
  free (buf);
  return order;
}
