/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: an unlocked volume: the volume key and a pool of keyed cipher
 * contexts, so that any number of worker threads en/decrypt at once
 * without sharing a gcry handle and without a setkey per request. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "common/error_msg.h"
#include "crypto/hash.h"
#include "crypto/secmem.h"
#include "crypto/volume.h"

struct luks_volume {
  struct cipher_spec spec;
  uint8_t *key; /* secure memory */
  size_t key_bytes;
  uint32_t sector_size;
  unsigned iv_shift; /* IVs count 512-byte units (dm-crypt) */
  uint64_t iv_tweak;
  uint64_t payload_offset, payload_size;
  int slot;                            /* the keyslot that opened it */
  uint8_t vouch[LUKS_META_HASH_BYTES]; /* see volume_new */
  uint8_t binding[LUKS_META_HASH_BYTES];
  unsigned refs;           /* exports sharing this key (atomic) */
  pthread_mutex_t lock;    /* protects idle */
  struct cipher_ctx *idle; /* contexts not in use by any thread */
};

int
volume_new (const struct luks_header *hdr, uint8_t *key, int slot,
            const uint8_t vouch[LUKS_META_HASH_BYTES],
            const uint8_t binding[LUKS_META_HASH_BYTES],
            struct luks_volume **out)
{
  struct luks_volume *v = calloc (1, sizeof *v);
  struct cipher_ctx *ctx;
  int r;

  if (!v) {
    secmem_free (key, hdr->key_bytes);
    return error_set (-ENOMEM, "out of memory");
  }
  v->refs = 1;
  v->spec = hdr->cipher;
  v->key = key;
  v->key_bytes = hdr->key_bytes;
  v->sector_size = hdr->sector_size;
  v->iv_shift = (unsigned) __builtin_ctz (hdr->sector_size / LUKS_SECTOR);
  v->iv_tweak = hdr->iv_tweak;
  v->payload_offset = hdr->payload_offset;
  v->payload_size = hdr->payload_size;
  v->slot = slot;
  if (vouch)
    memcpy (v->vouch, vouch, sizeof v->vouch);
  memcpy (v->binding, binding, sizeof v->binding);
  pthread_mutex_init (&v->lock, NULL);
  /* Key one context now, so that a key the cipher refuses fails here. */
  r = cipher_ctx_new (&v->spec, v->key, &ctx);
  if (r < 0) {
    luks_volume_free (v);
    return r;
  }
  v->idle = ctx;
  *out = v;
  return 0;
}

void
luks_volume_free (struct luks_volume *v)
{
  unsigned before;

  if (!v)
    return;
  before = __atomic_fetch_sub (&v->refs, 1, __ATOMIC_ACQ_REL);
  assert (before > 0); /* more frees than references */
  if (before > 1)
    return;
  while (v->idle) {
    struct cipher_ctx *next = *cipher_ctx_next (v->idle);
    cipher_ctx_free (v->idle);
    v->idle = next;
  }
  secmem_free (v->key, v->key_bytes);
  secmem_wipe (v->vouch, sizeof v->vouch);
  pthread_mutex_destroy (&v->lock);
  free (v);
}

int
luks_volume_check (const struct luks_header *hdr, const struct luks_volume *v)
{
  struct kdf_params dp = { .type = KDF_PBKDF2,
                           .md_algo = hdr->digest_md,
                           .iterations = hdr->digest_iterations,
                           .salt_len = hdr->digest_salt_len };
  uint8_t digest[LUKS_DIGEST_MAX];
  int r;

  if (strcmp (hdr->cipher.text, v->spec.text) != 0 ||
      hdr->key_bytes != v->key_bytes || hdr->sector_size != v->sector_size ||
      hdr->iv_tweak != v->iv_tweak ||
      hdr->payload_offset != v->payload_offset ||
      hdr->payload_size != v->payload_size)
    return error_set (-ESTALE,
                      "%s: its data segment (cipher, key size, sector size or "
                      "offsets) is no longer the one this key was unlocked "
                      "for",
                      hdr->src.name);
  memcpy (dp.salt, hdr->digest_salt, hdr->digest_salt_len);
  r = kdf_derive (&dp, v->key, v->key_bytes, digest, hdr->digest_len);
  if (r == 0 && secmem_memcmp (digest, hdr->digest, hdr->digest_len) != 0)
    r = error_set (-ESTALE,
                   "%s: its digest no longer matches this key (the volume "
                   "key changed: re-encrypted?)",
                   hdr->src.name);
  secmem_wipe (digest, sizeof digest);
  return r;
}

int
volume_slot (const struct luks_volume *v)
{
  return v->slot;
}

const uint8_t *
volume_vouch (const struct luks_volume *v)
{
  return v->vouch;
}

const uint8_t *
volume_binding (const struct luks_volume *v)
{
  return v->binding;
}

const uint8_t *
volume_key (const struct luks_volume *v, size_t *bytes)
{
  *bytes = v->key_bytes;
  return v->key;
}

struct luks_volume *
luks_volume_ref (struct luks_volume *v)
{
  unsigned before = __atomic_fetch_add (&v->refs, 1, __ATOMIC_RELAXED);

  assert (before > 0 && before < UINT_MAX); /* alive, and no wrap */
  return v;
}

int
luks_passphrase_fingerprint (const void *pass, size_t len,
                             uint8_t out[LUKS_FINGERPRINT_BYTES])
{
  return hash_keyed (out, pass, len);
}

int
luks_fingerprint_equal (const uint8_t a[LUKS_FINGERPRINT_BYTES],
                        const uint8_t b[LUKS_FINGERPRINT_BYTES])
{
  return secmem_memcmp (a, b, LUKS_FINGERPRINT_BYTES) == 0;
}

uint32_t
luks_volume_sector_size (const struct luks_volume *v)
{
  return v->sector_size;
}

uint64_t
luks_volume_payload_offset (const struct luks_volume *v)
{
  return v->payload_offset;
}

uint64_t
luks_volume_payload_size (const struct luks_volume *v)
{
  return v->payload_size;
}

static struct cipher_ctx *
ctx_get (struct luks_volume *v)
{
  struct cipher_ctx *ctx;

  pthread_mutex_lock (&v->lock);
  ctx = v->idle;
  if (ctx)
    v->idle = *cipher_ctx_next (ctx);
  pthread_mutex_unlock (&v->lock);
  if (!ctx && cipher_ctx_new (&v->spec, v->key, &ctx) < 0)
    return NULL;
  return ctx;
}

static void
ctx_put (struct luks_volume *v, struct cipher_ctx *ctx)
{
  pthread_mutex_lock (&v->lock);
  *cipher_ctx_next (ctx) = v->idle;
  v->idle = ctx;
  pthread_mutex_unlock (&v->lock);
}

/* The caller (formats/luks.c) maps requests to whole sectors before it
 * calls: a partial sector here is a bug in that mapping, never input. */
int
luks_volume_crypt (struct luks_volume *v, enum luks_direction dir, void *buf,
                   size_t len, uint64_t sector)
{
  struct cipher_ctx *ctx;
  int r;

  assert (len % v->sector_size == 0);
  /* Sector numbers in IV units (sector << iv_shift) must not wrap. */
  assert (sector <= UINT64_MAX >> v->iv_shift);
  ctx = ctx_get (v);
  if (!ctx)
    return -ENOMEM;
  r = cipher_ctx_crypt (ctx, dir, buf, len, v->sector_size,
                        v->iv_tweak + (sector << v->iv_shift),
                        UINT64_C (1) << v->iv_shift);
  ctx_put (v, ctx);
  return r;
}
