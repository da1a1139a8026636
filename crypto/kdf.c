/* luks-nbd: KDFs through libgcrypt (see kdf.h). */
#include <config.h>

#include <errno.h>

#include <gcrypt.h>

#include "error.h"
#include "kdf.h"

int
kdf_check (const struct kdf_params *p, const char *what)
{
  switch (p->type) {
  case KDF_PBKDF2:
    if (p->iterations == 0 || p->iterations > KDF_PBKDF2_MAX_ITERATIONS)
      return error_set (-EINVAL, "%s: pbkdf2 iterations %u outside 1..%u", what,
                        p->iterations, KDF_PBKDF2_MAX_ITERATIONS);
    break;
  case KDF_ARGON2I:
  case KDF_ARGON2ID:
    if (p->iterations == 0 || p->iterations > KDF_ARGON2_MAX_TIME)
      return error_set (-EINVAL, "%s: argon2 time %u outside 1..%u", what,
                        p->iterations, KDF_ARGON2_MAX_TIME);
    if (p->memory_kib < KDF_ARGON2_MIN_MEMORY_KIB ||
        p->memory_kib > KDF_ARGON2_MAX_MEMORY_KIB)
      return error_set (-EINVAL, "%s: argon2 memory %u KiB outside %u..%u",
                        what, p->memory_kib, KDF_ARGON2_MIN_MEMORY_KIB,
                        KDF_ARGON2_MAX_MEMORY_KIB);
    if (p->parallel == 0 || p->parallel > KDF_ARGON2_MAX_PARALLEL)
      return error_set (-EINVAL, "%s: argon2 cpus %u outside 1..%u", what,
                        p->parallel, KDF_ARGON2_MAX_PARALLEL);
    /* Argon2 needs at least 8 KiB per lane. */
    if (p->memory_kib < 8 * p->parallel)
      return error_set (-EINVAL, "%s: argon2 memory %u KiB below 8 KiB per cpu",
                        what, p->memory_kib);
    break;
  default: return error_set (-ENOTSUP, "%s: unknown kdf", what);
  }
  if (p->salt_len == 0)
    return error_set (-EINVAL, "%s: empty kdf salt", what);
  return 0;
}

int
kdf_argon2 (enum kdf_type type, uint32_t time, uint32_t memory_kib,
            uint32_t parallel, const void *pass, size_t passlen,
            const void *salt, size_t saltlen, const void *secret,
            size_t secretlen, const void *ad, size_t adlen, void *out,
            size_t outlen)
{
  unsigned long param[4] = { outlen, time, memory_kib, parallel };
  gcry_kdf_hd_t hd;
  gcry_error_t e;
  int sub = type == KDF_ARGON2I ? GCRY_KDF_ARGON2I : GCRY_KDF_ARGON2ID;

  e = gcry_kdf_open (&hd, GCRY_KDF_ARGON2, sub, param, 4, pass, passlen, salt,
                     saltlen, secret, secretlen, ad, adlen);
  if (e)
    return error_set (-EINVAL, "argon2: %s", gcry_strerror (e));
  e = gcry_kdf_compute (hd, NULL);
  if (!e)
    e = gcry_kdf_final (hd, outlen, out);
  gcry_kdf_close (hd);
  if (e)
    return error_set (-ENOMEM, "argon2 (%u KiB): %s", memory_kib,
                      gcry_strerror (e));
  return 0;
}

int
kdf_derive (const struct kdf_params *p, const void *pass, size_t passlen,
            void *out, size_t outlen)
{
  gcry_error_t e;

  if (p->type == KDF_PBKDF2) {
    /* libgcrypt refuses an empty passphrase; cryptsetup allows one with
     * --key-file of an empty file, and so does PBKDF2 itself. */
    static const char empty[1];
    e = gcry_kdf_derive (passlen ? pass : empty, passlen, GCRY_KDF_PBKDF2,
                         p->md_algo, p->salt, p->salt_len, p->iterations,
                         outlen, out);
    if (e)
      return error_set (-EINVAL, "pbkdf2: %s", gcry_strerror (e));
    return 0;
  }
  return kdf_argon2 (p->type, p->iterations, p->memory_kib, p->parallel, pass,
                     passlen, p->salt, p->salt_len, NULL, 0, NULL, 0, out,
                     outlen);
}
