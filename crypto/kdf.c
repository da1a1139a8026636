/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: KDFs through libgcrypt (see kdf.h). */
#include <config.h>

#include <errno.h>
#include <time.h>

#include <gcrypt.h>

#include "common/error_msg.h"
#include "crypto/kdf.h"

static int
check_range (uint64_t v, uint64_t min, uint64_t max, const char *src,
             const char *field, const char *sub, const char *unit)
{
  if (v < min)
    return error_set (-EINVAL, "%s: %s%s %llu%s is below %llu", src, field, sub,
                      (unsigned long long) v, unit, (unsigned long long) min);
  if (v > max)
    return error_set (-EINVAL, "%s: %s%s %llu%s exceeds %llu", src, field, sub,
                      (unsigned long long) v, unit, (unsigned long long) max);
  return 0;
}

int
kdf_check (const struct kdf_params *p, uint32_t max_iterations, const char *src,
           const char *iter_field, const char *kdf_field)
{
  int r;

  switch (p->type) {
  case KDF_PBKDF2:
    r = check_range (p->iterations, 1, max_iterations, src, iter_field, "", "");
    break;
  case KDF_ARGON2I:
  case KDF_ARGON2ID:
    if ((r = check_range (p->iterations, 1, KDF_ARGON2_MAX_TIME, src, kdf_field,
                          ".time", "")) < 0 ||
        (r = check_range (p->memory_kib, KDF_ARGON2_MIN_MEMORY_KIB,
                          KDF_ARGON2_MAX_MEMORY_KIB, src, kdf_field, ".memory",
                          " KiB")) < 0 ||
        (r = check_range (p->parallel, 1, KDF_ARGON2_MAX_PARALLEL, src,
                          kdf_field, ".cpus", "")) < 0 ||
        (r = check_range ((uint64_t) p->iterations * p->memory_kib, 0,
                          KDF_ARGON2_MAX_WORK_KIB, src, kdf_field,
                          ".time x memory", " KiB")) < 0)
      break;
    /* Argon2 needs at least 8 KiB per lane. */
    if (p->memory_kib < 8 * p->parallel)
      r = error_set (-EINVAL, "%s: %s.memory %u KiB is below 8 KiB per cpu",
                     src, kdf_field, p->memory_kib);
    break;
  default: r = error_set (-ENOTSUP, "%s: %s: unknown kdf", src, kdf_field);
  }
  if (r == 0 && p->salt_len == 0)
    r = error_set (-EINVAL, "%s: %s: empty kdf salt", src, kdf_field);
  return r;
}

uint64_t
kdf_cost_ppm (const struct kdf_params *p)
{
  if (p->type == KDF_PBKDF2)
    return (uint64_t) p->iterations * 1000000 / KDF_PBKDF2_MAX_ITERATIONS;
  return (uint64_t) p->iterations * p->memory_kib * 1000000 /
         KDF_ARGON2_MAX_WORK_KIB;
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

/* Milliseconds one derivation with p takes (at least 1). */
static int
time_derive (const struct kdf_params *p, void *out, size_t outlen, uint64_t *ms)
{
  static const char probe[] = "benchmark";
  struct timespec a, b;
  int r;

  clock_gettime (CLOCK_MONOTONIC, &a);
  r = kdf_derive (p, probe, sizeof probe - 1, out, outlen);
  clock_gettime (CLOCK_MONOTONIC, &b);
  *ms = (uint64_t) (b.tv_sec - a.tv_sec) * 1000 +
        (uint64_t) (b.tv_nsec / 1000000) - (uint64_t) (a.tv_nsec / 1000000);
  if (*ms == 0)
    *ms = 1;
  return r;
}

/* Benchmark runs: long enough to measure, short enough to wait for. */
enum { BENCH_MIN_MS = 50, BENCH_ARGON2_KIB = 64 * 1024 };

int
kdf_benchmark (struct kdf_params *p, size_t outlen, uint32_t target_ms)
{
  struct kdf_params t = *p;
  uint8_t out[64];
  uint64_t ms, v;
  int r;

  if (outlen > sizeof out)
    outlen = sizeof out;
  if (p->type == KDF_PBKDF2) {
    t.iterations = 1u << 14;
    while ((r = time_derive (&t, out, outlen, &ms)) == 0 && ms < BENCH_MIN_MS &&
           t.iterations < (1u << 26))
      t.iterations *= 4;
    v = (uint64_t) t.iterations * target_ms / ms;
    p->iterations =
      (uint32_t) (v < 1000                        ? 1000
                  : v > KDF_PBKDF2_MAX_ITERATIONS ? KDF_PBKDF2_MAX_ITERATIONS
                                                  : v);
    return r;
  }
  /* Argon2's cost is about linear in time x memory. */
  t.iterations = 1;
  t.memory_kib =
    p->memory_kib < BENCH_ARGON2_KIB ? p->memory_kib : BENCH_ARGON2_KIB;
  r = time_derive (&t, out, outlen, &ms);
  if (r < 0)
    return r;
  uint64_t work = (uint64_t) t.memory_kib * target_ms / ms; /* KiB x passes */
  if (work > KDF_ARGON2_MAX_WORK_KIB)
    work = KDF_ARGON2_MAX_WORK_KIB;
  if (work / p->memory_kib >= 4)
    p->iterations = (uint32_t) (work / p->memory_kib);
  else {
    uint64_t min = 8 * (uint64_t) p->parallel < 32 ? 32 : 8 * p->parallel;
    p->iterations = 4;
    p->memory_kib = (uint32_t) (work / 4 < min ? min : work / 4);
  }
  return 0;
}
