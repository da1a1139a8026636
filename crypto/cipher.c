/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: cipher spec parsing and keyed contexts (see cipher.h). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <gcrypt.h>

#include "common/byteorder.h"
#include "crypto/cipher.h"
#include "common/error_msg.h"
#include "crypto/hash.h"
#include "crypto/secmem.h"

/* Cipher families by the name LUKS headers use, with the libgcrypt
 * algorithm for each key length. */
static const struct {
  const char *name;
  size_t key_bytes;
  int algo;
} algos[] = {
  { "aes", 16, GCRY_CIPHER_AES128 },
  { "aes", 24, GCRY_CIPHER_AES192 },
  { "aes", 32, GCRY_CIPHER_AES256 },
  { "serpent", 16, GCRY_CIPHER_SERPENT128 },
  { "serpent", 24, GCRY_CIPHER_SERPENT192 },
  { "serpent", 32, GCRY_CIPHER_SERPENT256 },
  { "twofish", 16, GCRY_CIPHER_TWOFISH128 },
  { "twofish", 32, GCRY_CIPHER_TWOFISH },
  { "cast5", 16, GCRY_CIPHER_CAST5 },
  { "camellia", 16, GCRY_CIPHER_CAMELLIA128 },
  { "camellia", 24, GCRY_CIPHER_CAMELLIA192 },
  { "camellia", 32, GCRY_CIPHER_CAMELLIA256 },
};

static const struct {
  const char *name;
  int mode;
} modes[] = {
  { "xts", GCRY_CIPHER_MODE_XTS },
  { "cbc", GCRY_CIPHER_MODE_CBC },
  { "ecb", GCRY_CIPHER_MODE_ECB },
  { "ctr", GCRY_CIPHER_MODE_CTR },
};

static const struct {
  const char *name;
  enum ivgen_type type;
} ivgens[] = {
  { "null", IVGEN_NULL },       { "plain", IVGEN_PLAIN },
  { "plain64", IVGEN_PLAIN64 }, { "plain64be", IVGEN_PLAIN64BE },
  { "benbi", IVGEN_BENBI },
};

struct cipher_ctx {
  const struct cipher_spec *spec;
  gcry_cipher_hd_t hd;
  gcry_cipher_hd_t essiv;  /* ECB under hash(key); NULL unless ESSIV */
  struct cipher_ctx *next; /* owner's free list */
};

static int
algo_lookup (const char *name, size_t key_bytes, const char *what)
{
  bool known = false;

  for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++) {
    if (strcmp (name, algos[i].name) != 0)
      continue;
    known = true;
    if (algos[i].key_bytes == key_bytes)
      return algos[i].algo;
  }
  if (known)
    return error_set (-EINVAL, "%s: %s does not take a %zu-bit key", what, name,
                      key_bytes * 8);
  return error_set (-ENOTSUP, "%s: unsupported cipher '%s'", what, name);
}

static int
ivgen_parse (const char *iv, struct cipher_spec *spec, const char *what)
{
  if (strncmp (iv, "essiv:", 6) == 0) {
    int md = hash_lookup (iv + 6, what);
    if (md < 0)
      return md;
    spec->ivgen = IVGEN_ESSIV;
    spec->essiv_md = md;
    return 0;
  }
  for (size_t i = 0; i < sizeof ivgens / sizeof ivgens[0]; i++)
    if (strcmp (iv, ivgens[i].name) == 0) {
      spec->ivgen = ivgens[i].type;
      return 0;
    }
  return error_set (-ENOTSUP, "%s: unsupported IV generator '%s'", what, iv);
}

int
cipher_spec_parse (const char *name, const char *mode, size_t key_bytes,
                   const char *what, struct cipher_spec *spec)
{
  char chain[16];
  const char *dash = strchr (mode, '-');
  size_t chain_len = dash ? (size_t) (dash - mode) : strlen (mode);
  size_t cipher_key;
  int r, algo;

  memset (spec, 0, sizeof *spec);
  if (strcmp (name, "cipher_null") == 0 || strcmp (mode, "null") == 0)
    /* A header whose segment or keyslot uses cipher_null accepts any
     * passphrase and serves plaintext: a known attack on detached headers. */
    return error_set (-EPERM,
                      "%s: cipher_null is refused (it would serve "
                      "plaintext to any passphrase)",
                      what);
  if (strncmp (name, "capi:", 5) == 0)
    return error_set (-ENOTSUP,
                      "%s: kernel crypto API specs ('%s') are not "
                      "supported",
                      what, name);
  if (snprintf (spec->text, sizeof spec->text, "%s-%s", name, mode) >=
      (int) sizeof spec->text)
    return error_set (-EINVAL, "%s: cipher spec too long", what);
  if (key_bytes == 0 || key_bytes > CIPHER_KEY_MAX)
    return error_set (-EINVAL, "%s: key size %zu bytes outside 1..%d", what,
                      key_bytes, CIPHER_KEY_MAX);
  if (chain_len >= sizeof chain)
    return error_set (-ENOTSUP, "%s: unsupported cipher mode '%s'", what, mode);
  memcpy (chain, mode, chain_len);
  chain[chain_len] = '\0';

  spec->mode = -1;
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
    if (strcmp (chain, modes[i].name) == 0)
      spec->mode = modes[i].mode;
  if (spec->mode < 0)
    return error_set (-ENOTSUP, "%s: unsupported cipher mode '%s'", what,
                      chain);

  if (spec->mode == GCRY_CIPHER_MODE_ECB) {
    /* qemu-img writes "ecb-plain" etc. for cipher-mode=ecb; dm-crypt
     * ("Selected cipher does not support IVs") and QEMU ignore an IV
     * generator with ecb.  So do we, once its name is known. */
    if (dash && (r = ivgen_parse (dash + 1, spec, what)) < 0)
      return r;
    spec->ivgen = IVGEN_NONE;
  } else {
    if (!dash || !dash[1])
      return error_set (-EINVAL, "%s: mode '%s' needs an IV generator", what,
                        mode);
    r = ivgen_parse (dash + 1, spec, what);
    if (r < 0)
      return r;
  }

  cipher_key = key_bytes;
  if (spec->mode == GCRY_CIPHER_MODE_XTS) {
    if (key_bytes % 2)
      return error_set (-EINVAL,
                        "%s: xts needs an even key size, not %zu "
                        "bytes",
                        what, key_bytes);
    cipher_key = key_bytes / 2;
  }
  algo = algo_lookup (name, cipher_key, what);
  if (algo < 0)
    return algo;
  spec->algo = algo;
  spec->key_bytes = key_bytes;
  spec->block_bytes = gcry_cipher_get_algo_blklen (algo);
  if (spec->block_bytes == 0 || spec->block_bytes > CIPHER_BLOCK_MAX)
    return error_set (-ENOTSUP, "%s: cipher '%s' unavailable in libgcrypt",
                      what, name);
  if (spec->mode == GCRY_CIPHER_MODE_XTS && spec->block_bytes != 16)
    return error_set (-EINVAL, "%s: xts needs a 128-bit block cipher, not %s",
                      what, name);
  if (spec->ivgen == IVGEN_ESSIV) {
    r = algo_lookup (name, hash_length (spec->essiv_md), what);
    if (r < 0)
      return error_prefix (r, "%s: essiv hash does not fit the cipher", what);
    spec->essiv_algo = r;
  }
  return 0;
}

int
cipher_spec_parse_joined (const char *joined, size_t key_bytes,
                          const char *what, struct cipher_spec *spec)
{
  char name[CIPHER_SPEC_MAX];
  const char *dash = strchr (joined, '-');
  size_t n;

  if (strcmp (joined, "cipher_null-ecb") == 0 ||
      strcmp (joined, "cipher_null") == 0)
    return cipher_spec_parse ("cipher_null", "ecb", key_bytes, what, spec);
  if (!dash)
    return error_set (-EINVAL, "%s: cipher spec '%s' has no mode", what,
                      joined);
  n = (size_t) (dash - joined);
  if (n >= sizeof name)
    return error_set (-EINVAL, "%s: cipher name too long", what);
  memcpy (name, joined, n);
  name[n] = '\0';
  return cipher_spec_parse (name, dash + 1, key_bytes, what, spec);
}

struct cipher_ctx **
cipher_ctx_next (struct cipher_ctx *ctx)
{
  return &ctx->next;
}

void
cipher_ctx_free (struct cipher_ctx *ctx)
{
  if (!ctx)
    return;
  gcry_cipher_close (ctx->hd);
  gcry_cipher_close (ctx->essiv);
  free (ctx);
}

int
cipher_ctx_new (const struct cipher_spec *spec, const uint8_t *key,
                struct cipher_ctx **out)
{
  struct cipher_ctx *ctx = calloc (1, sizeof *ctx);
  gcry_error_t e;
  int r = -EINVAL;

  if (!ctx)
    return error_set (-ENOMEM, "out of memory");
  ctx->spec = spec;
  /* GCRY_CIPHER_SECURE keeps the key schedule in secure memory. */
  e = gcry_cipher_open (&ctx->hd, spec->algo, spec->mode, GCRY_CIPHER_SECURE);
  if (e) {
    r = error_set (-ENOTSUP, "%s: %s", spec->text, gcry_strerror (e));
    goto fail;
  }
  e = gcry_cipher_setkey (ctx->hd, key, spec->key_bytes);
  if (e) {
    r = error_set (-EINVAL, "%s: setting a %zu-byte key: %s", spec->text,
                   spec->key_bytes, gcry_strerror (e));
    goto fail;
  }
  if (spec->ivgen == IVGEN_ESSIV) {
    size_t dlen = hash_length (spec->essiv_md);
    uint8_t *salt = secmem_alloc (dlen);
    if (!salt) {
      r = -ENOMEM;
      goto fail;
    }
    r = hash_buffer (spec->essiv_md, salt, key, spec->key_bytes);
    e = r < 0 ? 0
              : gcry_cipher_open (&ctx->essiv, spec->essiv_algo,
                                  GCRY_CIPHER_MODE_ECB, GCRY_CIPHER_SECURE);
    if (r == 0 && !e)
      e = gcry_cipher_setkey (ctx->essiv, salt, dlen);
    secmem_free (salt, dlen);
    if (r < 0)
      goto fail;
    if (e) {
      r = error_set (-EINVAL, "%s: essiv: %s", spec->text, gcry_strerror (e));
      goto fail;
    }
  }
  *out = ctx;
  return 0;

fail:
  cipher_ctx_free (ctx);
  return r;
}

int
cipher_ctx_iv (struct cipher_ctx *ctx, uint64_t sector,
               uint8_t iv[CIPHER_BLOCK_MAX])
{
  size_t bs = ctx->spec->block_bytes;

  memset (iv, 0, CIPHER_BLOCK_MAX);
  switch (ctx->spec->ivgen) {
  case IVGEN_NONE:
  case IVGEN_NULL: break;
  case IVGEN_PLAIN: store_le32 (iv, (uint32_t) sector); break;
  case IVGEN_PLAIN64: store_le64 (iv, sector); break;
  case IVGEN_PLAIN64BE: store_be64 (iv + bs - 8, sector); break;
  case IVGEN_BENBI: {
    /* dm-crypt: big-endian count of cipher blocks, starting at 1. */
    unsigned shift = 9 - (unsigned) __builtin_ctz ((unsigned) bs);
    store_be64 (iv + bs - 8, (sector << shift) + 1);
    break;
  }
  case IVGEN_ESSIV:
    store_le64 (iv, sector);
    if (gcry_cipher_encrypt (ctx->essiv, iv, bs, NULL, 0) != 0)
      return error_set (-EIO, "%s: essiv encryption failed", ctx->spec->text);
    break;
  }
  return 0;
}

int
cipher_ctx_crypt (struct cipher_ctx *ctx, enum luks_direction dir, uint8_t *buf,
                  size_t len, size_t sector_bytes, uint64_t iv_first,
                  uint64_t iv_step)
{
  const struct cipher_spec *spec = ctx->spec;
  uint8_t iv[CIPHER_BLOCK_MAX];
  uint64_t ivno = iv_first;
  gcry_error_t e = 0;

  if (sector_bytes == 0 || len % sector_bytes)
    return error_set (-EINVAL,
                      "%s: %zu bytes is not a whole number of "
                      "%zu-byte sectors",
                      spec->text, len, sector_bytes);
  for (size_t off = 0; off < len; off += sector_bytes, ivno += iv_step) {
    if (spec->ivgen != IVGEN_NONE) {
      int r = cipher_ctx_iv (ctx, ivno, iv);
      if (r < 0)
        return r;
      e = spec->mode == GCRY_CIPHER_MODE_CTR
            ? gcry_cipher_setctr (ctx->hd, iv, spec->block_bytes)
            : gcry_cipher_setiv (ctx->hd, iv, spec->block_bytes);
      if (e)
        break;
    }
    e = dir == LUKS_ENCRYPT
          ? gcry_cipher_encrypt (ctx->hd, buf + off, sector_bytes, NULL, 0)
          : gcry_cipher_decrypt (ctx->hd, buf + off, sector_bytes, NULL, 0);
    if (e)
      break;
  }
  if (e)
    return error_set (-EIO, "%s: %s", spec->text, gcry_strerror (e));
  return 0;
}
