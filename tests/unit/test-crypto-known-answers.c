/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Proves crypto/ against published vectors: IEEE 1619 XTS-AES, RFC 6070
 * PBKDF2, RFC 9106 Argon2, and ESSIV/benbi/plain IVs as dm-crypt defines
 * them (ESSIV expectations computed with `openssl dgst -sha256` and
 * `openssl enc -aes-256-ecb -nopad`). */
#include <config.h>

#include <stdint.h>
#include <stdlib.h>

#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/kdf.h"
#include "crypto/luks.h"
#include "tests/lib/tap.h"

static void
xts_vector (const char *key_hex, uint64_t sector, const char *pt_hex,
            size_t len, size_t cmp_off, const char *ct_hex, const char *what)
{
  unsigned char key[64], buf[512], expect[512], orig[512];
  struct cipher_spec spec;
  struct cipher_ctx *ctx;
  size_t klen = unhex (key_hex, key);

  if (pt_hex)
    unhex (pt_hex, buf);
  else
    for (size_t i = 0; i < len; i++)
      buf[i] = (unsigned char) i;
  memcpy (orig, buf, len);
  size_t elen = unhex (ct_hex, expect);
  ok (cipher_spec_parse ("aes", "xts-plain64", klen, "test", &spec) == 0 &&
        cipher_ctx_new (&spec, key, &ctx) == 0,
      "%s: key accepted", what);
  ok (cipher_ctx_crypt (ctx, LUKS_ENCRYPT, buf, len, len, sector, 1) == 0,
      "%s: encrypt runs", what);
  ok_mem (buf + cmp_off, expect, elen, "%s: ciphertext", what);
  cipher_ctx_crypt (ctx, LUKS_DECRYPT, buf, len, len, sector, 1);
  ok_mem (buf, orig, len, "%s: decrypt restores the plaintext", what);
  cipher_ctx_free (ctx);
}

static void
pbkdf2_vector (const char *pass, size_t plen, const char *salt, size_t slen,
               uint32_t iter, const char *dk_hex, const char *what)
{
  struct kdf_params p = { .type = KDF_PBKDF2, .iterations = iter };
  unsigned char dk[64], expect[64];
  size_t n = unhex (dk_hex, expect);

  p.md_algo = hash_lookup ("sha1", "test");
  memcpy (p.salt, salt, slen);
  p.salt_len = slen;
  ok (kdf_derive (&p, pass, plen, dk, n) == 0, "%s: derive runs", what);
  ok_mem (dk, expect, n, "%s", what);
}

static void
argon2_vector (enum kdf_type type, const char *tag_hex, const char *what)
{
  unsigned char pass[32], salt[16], secret[8], ad[12], tag[32], expect[32];

  memset (pass, 1, sizeof pass);
  memset (salt, 2, sizeof salt);
  memset (secret, 3, sizeof secret);
  memset (ad, 4, sizeof ad);
  unhex (tag_hex, expect);
  ok (kdf_argon2 (type, 3, 32, 4, pass, sizeof pass, salt, sizeof salt, secret,
                  sizeof secret, ad, sizeof ad, tag, sizeof tag) == 0,
      "%s: derive runs", what);
  ok_mem (tag, expect, sizeof tag, "%s", what);
}

static void
iv_vector (const char *mode, size_t key_bytes, uint64_t sector,
           const char *iv_hex, const char *what)
{
  unsigned char key[64], iv[CIPHER_BLOCK_MAX], expect[CIPHER_BLOCK_MAX];
  struct cipher_spec spec;
  struct cipher_ctx *ctx;

  for (size_t i = 0; i < sizeof key; i++)
    key[i] = (unsigned char) i;
  size_t n = unhex (iv_hex, expect);
  ok (cipher_spec_parse ("aes", mode, key_bytes, "test", &spec) == 0 &&
        cipher_ctx_new (&spec, key, &ctx) == 0,
      "%s: spec accepted", what);
  cipher_ctx_iv (ctx, sector, iv);
  ok_mem (iv, expect, n, "%s", what);
  cipher_ctx_free (ctx);
}

int
main (void)
{
  if (luks_init () < 0) {
    printf ("Bail out! luks_init failed\n");
    return 1;
  }

  /* IEEE 1619-2007 Annex B. */
  xts_vector (
    "1111111111111111111111111111111122222222222222222222222222222222",
    UINT64_C (0x3333333333),
    "4444444444444444444444444444444444444444444444444444444444444444", 32, 0,
    "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0",
    "XTS-AES-128 vector 2");
  xts_vector (
    "2718281828459045235360287471352631415926535897932384626433832795", 0, NULL,
    512, 0, "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89c",
    "XTS-AES-128 vector 4, first blocks of a 512-byte sector");
  xts_vector (
    "2718281828459045235360287471352631415926535897932384626433832795", 0, NULL,
    512, 480,
    "eb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568",
    "XTS-AES-128 vector 4, last blocks of a 512-byte sector");

  /* RFC 6070. */
  pbkdf2_vector ("password", 8, "salt", 4, 1,
                 "0c60c80f961f0e71f3a9b524af6012062fe037a6", "PBKDF2-SHA1 c=1");
  pbkdf2_vector ("password", 8, "salt", 4, 2,
                 "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957", "PBKDF2-SHA1 c=2");
  pbkdf2_vector ("password", 8, "salt", 4, 4096,
                 "4b007901b765489abead49d926f721d065a429c1",
                 "PBKDF2-SHA1 c=4096");
  pbkdf2_vector ("passwordPASSWORDpassword", 24,
                 "saltSALTsaltSALTsaltSALTsaltSALTsalt", 36, 4096,
                 "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038",
                 "PBKDF2-SHA1 long password, 25-byte key");
  pbkdf2_vector ("pass\0word", 9, "sa\0lt", 5, 4096,
                 "56fa6aa75548099dcc37d7f03425e0c3",
                 "PBKDF2-SHA1 embedded NULs");

  /* RFC 9106 sections 5.2 and 5.3. */
  argon2_vector (
    KDF_ARGON2I,
    "c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8",
    "Argon2i RFC 9106");
  argon2_vector (
    KDF_ARGON2ID,
    "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659",
    "Argon2id RFC 9106");

  /* IV generators (key = 00 01 .. 3f). */
  iv_vector ("cbc-essiv:sha256", 32, 5, "1d3cc413699a46f844afd0adc387f14e",
             "ESSIV sha256 sector 5");
  iv_vector ("cbc-essiv:sha256", 32, UINT64_C (0x000123456789ab00),
             "9b9b9c238bb8afbcc9f1e9ece48ba72a", "ESSIV sha256 large sector");
  iv_vector ("cbc-benbi", 32, 0, "00000000000000000000000000000001",
             "benbi sector 0 is block 1");
  iv_vector ("cbc-benbi", 32, 1, "00000000000000000000000000000021",
             "benbi counts 32 blocks per sector");
  iv_vector ("cbc-plain", 32, UINT64_C (0x100000005),
             "05000000000000000000000000000000", "plain truncates to 32 bits");
  iv_vector ("cbc-plain64", 32, UINT64_C (0x100000005),
             "05000000010000000000000000000000", "plain64 is little-endian");
  iv_vector ("cbc-plain64be", 32, UINT64_C (0x0102),
             "00000000000000000000000000000102", "plain64be at the end");
  iv_vector ("cbc-null", 32, 77, "00000000000000000000000000000000", "null IV");
  return tap_done ();
}
