/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: hash name table (see hash.h). */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <gcrypt.h>

#include "common/error_msg.h"
#include "crypto/hash.h"
#include "crypto/secmem.h"

/* Names as cryptsetup and qemu write them in headers. */
static const struct {
  const char *name;
  int algo;
} hashes[] = {
  { "sha1", GCRY_MD_SHA1 },
  { "sha224", GCRY_MD_SHA224 },
  { "sha256", GCRY_MD_SHA256 },
  { "sha384", GCRY_MD_SHA384 },
  { "sha512", GCRY_MD_SHA512 },
  { "ripemd160", GCRY_MD_RMD160 },
  { "whirlpool", GCRY_MD_WHIRLPOOL },
  { "sha3-224", GCRY_MD_SHA3_224 },
  { "sha3-256", GCRY_MD_SHA3_256 },
  { "sha3-384", GCRY_MD_SHA3_384 },
  { "sha3-512", GCRY_MD_SHA3_512 },
  { "sm3", GCRY_MD_SM3 },
  { "stribog256", GCRY_MD_STRIBOG256 },
  { "stribog512", GCRY_MD_STRIBOG512 },
  { "blake2b-512", GCRY_MD_BLAKE2B_512 },
  { "blake2s-256", GCRY_MD_BLAKE2S_256 },
};

int
hash_lookup (const char *name, const char *what)
{
  for (size_t i = 0; i < sizeof hashes / sizeof hashes[0]; i++)
    if (strcasecmp (name, hashes[i].name) == 0) {
      if (gcry_md_test_algo (hashes[i].algo) != 0)
        break;
      return hashes[i].algo;
    }
  return error_set (-ENOTSUP, "%s: unsupported hash '%s'", what, name);
}

size_t
hash_length (int md_algo)
{
  return gcry_md_get_algo_dlen (md_algo);
}

int
hash_buffer (int md_algo, void *out, const void *in, size_t len)
{
  gcry_md_hd_t hd;

  if (gcry_md_open (&hd, md_algo, GCRY_MD_FLAG_SECURE) != 0)
    return error_set (-ENOMEM, "cannot open hash %d", md_algo);
  gcry_md_write (hd, in, len);
  memcpy (out, gcry_md_read (hd, md_algo), hash_length (md_algo));
  gcry_md_close (hd);
  return 0;
}

/* The key of hash_keyed: random, made once per process, in secure memory,
 * never written anywhere. */
#define PROCESS_KEY_BYTES 32
static uint8_t *process_key;
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

static void
make_process_key (void)
{
  process_key = secmem_alloc (PROCESS_KEY_BYTES);
  if (process_key)
    gcry_randomize (process_key, PROCESS_KEY_BYTES, GCRY_STRONG_RANDOM);
}

int
hash_keyed (void *out, const void *in, size_t len)
{
  gcry_md_hd_t hd;

  pthread_once (&process_key_once, make_process_key);
  if (!process_key)
    return error_set (-ENOMEM, "no secure memory for the process key");
  if (gcry_md_open (&hd, GCRY_MD_SHA256,
                    GCRY_MD_FLAG_SECURE | GCRY_MD_FLAG_HMAC) != 0)
    return error_set (-ENOMEM, "cannot open HMAC-SHA256");
  if (gcry_md_setkey (hd, process_key, PROCESS_KEY_BYTES) != 0) {
    gcry_md_close (hd);
    return error_set (-EIO, "cannot key HMAC-SHA256");
  }
  gcry_md_write (hd, in, len);
  memcpy (out, gcry_md_read (hd, GCRY_MD_SHA256), hash_length (GCRY_MD_SHA256));
  gcry_md_close (hd);
  return 0;
}
