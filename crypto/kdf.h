/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: key derivation (PBKDF2, Argon2i, Argon2id) with the cost caps
 * cryptsetup applies, so a hostile header cannot make us run for hours or
 * allocate terabytes. */
#ifndef LUKS_NBD_KDF_H
#define LUKS_NBD_KDF_H

#include <stddef.h>
#include <stdint.h>

enum kdf_type { KDF_PBKDF2, KDF_ARGON2I, KDF_ARGON2ID };

/* The one set of KDF cost bounds.  A header's every digest and keyslot is
 * checked against them in one place (luks_header_open, through
 * kdf_check) before any KDF runs.  What cryptsetup 2.6 writes, for scale:
 * digests take ~125 ms of PBKDF2 (0.5-1.2 million iterations on a fast
 * CPU today), keyslots ~2 s (PBKDF2: 4-20 million; Argon2: memory
 * <= 1 GiB by default, 4 GiB at most, time >= 4, cpus <= 4).  Here
 * libgcrypt does ~6 million PBKDF2-SHA256 iterations and ~256 MiB of
 * Argon2 per second on one thread. */
#define KDF_DIGEST_MAX_ITERATIONS (UINT32_C (1) << 22) /* 4x-8x cryptsetup */
#define KDF_PBKDF2_MAX_ITERATIONS (UINT32_C (1) << 27) /* 6x-30x; ~20 s */
#define KDF_ARGON2_MAX_TIME (UINT32_C (1) << 20)
#define KDF_ARGON2_MIN_MEMORY_KIB 8
#define KDF_ARGON2_MAX_MEMORY_KIB                                              \
  (UINT32_C (4) * 1024 * 1024) /* cryptsetup's */
/* time x memory: 32 GiB of memory filled: 8x a default 1 GiB x 4 slot,
 * 2x the heaviest that cryptsetup's 2 s benchmark writes at its 4 GiB
 * memory cap (time 4). */
#define KDF_ARGON2_MAX_WORK_KIB (UINT64_C (1) << 25)
#define KDF_ARGON2_MAX_PARALLEL 4 /* cryptsetup's */
/* A passphrase that opens no slot tries every slot: their costs together
 * may be at most this many of the heaviest keyslot allowed. */
#define KDF_MAX_TOTAL_SLOTS 4
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

/* Checks p against the bounds above, max_iterations being the PBKDF2
 * bound for its use (KDF_DIGEST_MAX_ITERATIONS or
 * KDF_PBKDF2_MAX_ITERATIONS); -EINVAL naming src, the field and the bound.
 * iter_field names PBKDF2's iteration count ("keyslots.0.kdf.iterations",
 * "mkDigestIterations"), kdf_field the object holding Argon2's time,
 * memory and cpus ("keyslots.0.kdf"). */
int kdf_check (const struct kdf_params *p, uint32_t max_iterations,
               const char *src, const char *iter_field, const char *kdf_field);

/* p's cost in millionths of the heaviest keyslot allowed (p checked). */
uint64_t kdf_cost_ppm (const struct kdf_params *p);

/* out (outlen bytes, caller's secure memory) = KDF(pass). */
int kdf_derive (const struct kdf_params *p, const void *pass, size_t passlen,
                void *out, size_t outlen);

/* Sets p's cost so that one derivation of outlen bytes takes about
 * target_ms, as cryptsetup's benchmark does for a new keyslot: PBKDF2
 * iterations (at least 1000); Argon2 keeps p->memory_kib (its cap)
 * while the time cost stays >= 4, else lowers the memory at time 4.
 * p's type, hash, salt and parallel are set. */
int kdf_benchmark (struct kdf_params *p, size_t outlen, uint32_t target_ms);

/* Argon2 with the optional secret and associated data of RFC 9106 (used
 * by the known-answer tests; LUKS passes none). */
int kdf_argon2 (enum kdf_type type, uint32_t time, uint32_t memory_kib,
                uint32_t parallel, const void *pass, size_t passlen,
                const void *salt, size_t saltlen, const void *secret,
                size_t secretlen, const void *ad, size_t adlen, void *out,
                size_t outlen);

#endif
