/* luks-nbd: key derivation (PBKDF2, Argon2i, Argon2id) with the cost caps
 * cryptsetup applies, so a hostile header cannot make us run for hours or
 * allocate terabytes. */
#ifndef LUKS_NBD_KDF_H
#define LUKS_NBD_KDF_H

#include <stddef.h>
#include <stdint.h>

enum kdf_type { KDF_PBKDF2, KDF_ARGON2I, KDF_ARGON2ID };

/* Named limits (cryptsetup: Argon2 memory <= 4 GiB, parallel <= 4). */
#define KDF_PBKDF2_MAX_ITERATIONS (UINT32_C (1) << 30)
#define KDF_ARGON2_MAX_MEMORY_KIB (UINT32_C (4) * 1024 * 1024)
#define KDF_ARGON2_MIN_MEMORY_KIB 8
#define KDF_ARGON2_MAX_PARALLEL 4
#define KDF_ARGON2_MAX_TIME (UINT32_C (1) << 20)
#define KDF_SALT_MAX 64

struct kdf_params {
  enum kdf_type type;
  int md_algo;         /* PBKDF2 */
  uint32_t iterations; /* PBKDF2 iterations, or Argon2 time cost */
  uint32_t memory_kib; /* Argon2 */
  uint32_t parallel;   /* Argon2 */
  uint8_t salt[KDF_SALT_MAX];
  size_t salt_len;
};

/* Checks the costs against the caps; -EINVAL with a message naming `what`. */
int kdf_check (const struct kdf_params *p, const char *what);

/* out (outlen bytes, caller's secure memory) = KDF(pass). */
int kdf_derive (const struct kdf_params *p, const void *pass, size_t passlen,
                void *out, size_t outlen);

/* Argon2 with the optional secret and associated data of RFC 9106 (used
 * by the known-answer tests; LUKS passes none). */
int kdf_argon2 (enum kdf_type type, uint32_t time, uint32_t memory_kib,
                uint32_t parallel, const void *pass, size_t passlen,
                const void *salt, size_t saltlen, const void *secret,
                size_t secretlen, const void *ad, size_t adlen, void *out,
                size_t outlen);

#endif
