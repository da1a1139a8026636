/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: cipher specs ("aes-xts-plain64") and keyed cipher contexts that
 * en/decrypt runs of sectors with dm-crypt's IV generators. */
#ifndef LUKS_NBD_CIPHER_H
#define LUKS_NBD_CIPHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/luks.h" /* enum luks_direction */

#define CIPHER_SPEC_MAX 96
#define CIPHER_BLOCK_MAX 16
#define CIPHER_KEY_MAX 512 /* bytes; LUKS key sizes above this are refused */

enum ivgen_type {
  IVGEN_NONE, /* ecb */
  IVGEN_NULL,
  IVGEN_PLAIN,
  IVGEN_PLAIN64,
  IVGEN_PLAIN64BE,
  IVGEN_ESSIV,
  IVGEN_BENBI,
};

struct cipher_spec {
  char text[CIPHER_SPEC_MAX]; /* "aes-xts-plain64", for messages */
  int algo;                   /* gcry cipher */
  int mode;                   /* gcry mode */
  enum ivgen_type ivgen;
  int essiv_md;     /* ESSIV hash */
  int essiv_algo;   /* ESSIV cipher: same family, key = hash size */
  size_t key_bytes; /* whole key as LUKS stores it */
  size_t block_bytes;
};

/* Parses cipher name ("aes") and mode ("xts-plain64") for a key of
 * key_bytes; `what` names the header field in messages.  -ENOTSUP for
 * what libgcrypt or we do not do, -EINVAL for malformed specs. */
int cipher_spec_parse (const char *name, const char *mode, size_t key_bytes,
                       const char *what, struct cipher_spec *spec);

/* Same, for LUKS2's one-string form "aes-xts-plain64". */
int cipher_spec_parse_joined (const char *joined, size_t key_bytes,
                              const char *what, struct cipher_spec *spec);

struct cipher_ctx;

/* A context keyed once; not thread-safe (one per thread at a time). */
int cipher_ctx_new (const struct cipher_spec *spec, const uint8_t *key,
                    struct cipher_ctx **out);
void cipher_ctx_free (struct cipher_ctx *ctx);

/* En/decrypts len bytes (a multiple of sector_bytes) in place.  Sector k
 * of the run uses IV number iv_first + k * iv_step. */
int cipher_ctx_crypt (struct cipher_ctx *ctx, enum luks_direction dir,
                      uint8_t *buf, size_t len, size_t sector_bytes,
                      uint64_t iv_first, uint64_t iv_step);

/* The IV for a sector number (exposed for the known-answer tests). */
int cipher_ctx_iv (struct cipher_ctx *ctx, uint64_t sector,
                   uint8_t iv[CIPHER_BLOCK_MAX]);

/* Free-list link for pools of contexts (crypto/volume.c). */
struct cipher_ctx **cipher_ctx_next (struct cipher_ctx *ctx);

#endif
