/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: keyslot unlock, common to LUKS1 and LUKS2: KDF, decrypt the key
 * material, AF merge, check the digest.  Every secret lives in secure
 * memory and is wiped on every path. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "crypto/afsplit.h"
#include "common/byteorder.h"
#include "common/error_msg.h"
#include "crypto/hash.h"
#include "crypto/secmem.h"
#include "crypto/volume.h"

/* What names a keyslot as the header has it now: the metadata hash, the
 * keyslot id and the SHA-256 of its area bytes.  The vouch and the
 * binding both start from it. */
enum { SLOT_ID_BYTES = 2 * LUKS_META_HASH_BYTES + 4 };
static int
slot_identity (const struct luks_header *hdr, const struct luks_keyslot *ks,
               const uint8_t *area, uint8_t out[SLOT_ID_BYTES])
{
  enum { H = LUKS_META_HASH_BYTES };

  memcpy (out, hdr->meta_hash, H);
  store_be32 (out + H, (uint32_t) ks->id);
  return hash_buffer (GCRY_MD_SHA256, out + H + 4, area,
                      luks_keyslot_material_bytes (hdr, ks));
}

/* What vouches for a key: HMAC-SHA256 (hash_keyed) over the header's metadata hash, the
 * keyslot id, the hash of that keyslot's (encrypted) area bytes and the
 * hash of the passphrase.  The same passphrase over the same bytes always
 * yields the same key, so a header and passphrase with the same vouch
 * open to the same key without a KDF run. */
static int
slot_vouch (const struct luks_header *hdr, const struct luks_keyslot *ks,
            const uint8_t *area, const void *pass, size_t passlen,
            uint8_t out[LUKS_META_HASH_BYTES])
{
  enum { H = LUKS_META_HASH_BYTES };
  uint8_t buf[SLOT_ID_BYTES + H];
  int r = slot_identity (hdr, ks, area, buf);

  if (r == 0)
    r = hash_buffer (GCRY_MD_SHA256, buf + SLOT_ID_BYTES, pass, passlen);
  /* Keyed: the vouch lives in ordinary memory with the volume, and the
   * header's bytes are public, so a plain hash would let a copy of that
   * memory test passphrase guesses at hash speed, skipping the KDF. */
  if (r == 0)
    r = hash_keyed (out, buf, sizeof buf);
  secmem_wipe (buf, sizeof buf);
  return r;
}

/* The binding of a keyslot (volume.h): SHA-256 over the header's
 * metadata hash, the keyslot id and the SHA-256 of its area bytes.  No
 * secret goes in, so it is the same in every process: the next daemon
 * checks a handed-over key against it (handover.c). */
static int
slot_binding (const struct luks_header *hdr, const struct luks_keyslot *ks,
              const uint8_t *area, uint8_t out[LUKS_META_HASH_BYTES])
{
  uint8_t buf[SLOT_ID_BYTES];
  int r = slot_identity (hdr, ks, area, buf);

  if (r == 0)
    r = hash_buffer (GCRY_MD_SHA256, out, buf, sizeof buf);
  return r;
}

int
volume_slot_binding (const struct luks_header *hdr, int slot,
                     uint8_t out[LUKS_META_HASH_BYTES])
{
  const struct luks_keyslot *ks = NULL;
  uint8_t *area;
  int r;

  for (int i = 0; i < hdr->nslots && !ks; i++)
    if (hdr->slots[i].id == slot)
      ks = &hdr->slots[i];
  if (!ks)
    return error_set (-ENOENT, "%s: key slot %d is not active", hdr->src.name,
                      slot);
  area = malloc (luks_keyslot_material_bytes (hdr, ks));
  if (!area)
    return error_set (-ENOMEM, "out of memory");
  r = hdr->src.read (hdr->src.opaque, area,
                     luks_keyslot_material_bytes (hdr, ks), ks->area_offset);
  if (r < 0)
    r = error_prefix (r, "%s: reading keyslot %d", hdr->src.name, ks->id);
  else
    r = slot_binding (hdr, ks, area, out);
  free (area);
  return r;
}

/* 0 and the volume key in `key` if the passphrase opens this slot, -EPERM
 * if not, another -errno on real errors. */
static int
try_keyslot (const struct luks_header *hdr, const struct luks_keyslot *ks,
             const void *pass, size_t passlen, uint8_t *key,
             uint8_t vouch[LUKS_META_HASH_BYTES],
             uint8_t binding[LUKS_META_HASH_BYTES])
{
  size_t area_len = luks_keyslot_material_bytes (hdr, ks);
  uint8_t *derived = secmem_alloc (ks->derived_bytes);
  uint8_t *material = secmem_alloc (area_len);
  uint8_t digest[LUKS_DIGEST_MAX];
  struct kdf_params dp = { .type = KDF_PBKDF2 };
  struct cipher_ctx *ctx = NULL;
  int r = -ENOMEM;

  if (!derived || !material)
    goto out;
  r = kdf_derive (&ks->kdf, pass, passlen, derived, ks->derived_bytes);
  if (r < 0)
    goto out;
  r = hdr->src.read (hdr->src.opaque, material, area_len, ks->area_offset);
  if (r < 0) {
    r = error_prefix (r, "%s: reading keyslot %d", hdr->src.name, ks->id);
    goto out;
  }
  /* From the very bytes that are decrypted below. */
  r = slot_vouch (hdr, ks, material, pass, passlen, vouch);
  if (r == 0)
    r = slot_binding (hdr, ks, material, binding);
  if (r < 0)
    goto out;
  /* Key material is always en/decrypted in 512-byte sectors from IV 0. */
  r = cipher_ctx_new (&ks->area_cipher, derived, &ctx);
  if (r < 0)
    goto out;
  r =
    cipher_ctx_crypt (ctx, LUKS_DECRYPT, material, area_len, LUKS_SECTOR, 0, 1);
  if (r < 0)
    goto out;
  r = af_merge (ks->af_md, material, hdr->key_bytes, ks->stripes, key);
  if (r < 0)
    goto out;
  dp.md_algo = hdr->digest_md;
  dp.iterations = hdr->digest_iterations;
  memcpy (dp.salt, hdr->digest_salt, hdr->digest_salt_len);
  dp.salt_len = hdr->digest_salt_len;
  r = kdf_derive (&dp, key, hdr->key_bytes, digest, hdr->digest_len);
  if (r < 0)
    goto out;
  r = secmem_memcmp (digest, hdr->digest, hdr->digest_len) == 0 ? 0 : -EPERM;

out:
  cipher_ctx_free (ctx);
  secmem_free (derived, ks->derived_bytes);
  secmem_free (material, area_len);
  secmem_wipe (digest, sizeof digest);
  if (r != 0)
    secmem_wipe (key, hdr->key_bytes);
  return r;
}

int
luks_unlock (const struct luks_header *hdr, const void *pass, size_t passlen,
             int keyslot, struct luks_volume **out)
{
  uint8_t *key = secmem_alloc (hdr->key_bytes);
  uint8_t vouch[LUKS_META_HASH_BYTES], binding[LUKS_META_HASH_BYTES];
  bool found = false;
  int r = -EPERM, slot = -1;

  if (!key)
    return -ENOMEM;
  /* High-priority slots first, then normal; "ignore" slots only when
   * named, as cryptsetup does. */
  for (int prio = PRIORITY_HIGH; prio >= PRIORITY_IGNORE && r == -EPERM;
       prio--) {
    for (int i = 0; i < hdr->nslots && r == -EPERM; i++) {
      const struct luks_keyslot *ks = &hdr->slots[i];
      if (keyslot >= 0 ? ks->id != keyslot : (int) ks->priority != prio)
        continue;
      if (keyslot >= 0 && prio != PRIORITY_HIGH)
        continue; /* the named slot is tried once */
      found = true;
      slot = ks->id;
      r = try_keyslot (hdr, ks, pass, passlen, key, vouch, binding);
    }
  }
  if (r == 0)
    r = volume_new (hdr, key, slot, vouch, binding, out);
  else
    secmem_free (key, hdr->key_bytes);
  secmem_wipe (vouch, sizeof vouch); /* it hashes the passphrase too */
  if (r == 0)
    return 0;
  if (keyslot >= 0 && !found)
    return error_set (-ENOENT, "%s: key slot %d is not active", hdr->src.name,
                      keyslot);
  if (r == -EPERM) {
    if (keyslot >= 0)
      return error_set (-EPERM,
                        "%s: key slot %d does not accept this "
                        "passphrase",
                        hdr->src.name, keyslot);
    return error_set (-EPERM, "no key slot in %s accepts this passphrase",
                      hdr->src.name);
  }
  return r;
}

/* True if hdr, as read now, vouches for vol exactly as the header that
 * unlocked it did: same metadata, and the keyslot that opened it still
 * there with the same bytes.  Anything else (a re-encryption, a removed
 * or changed keyslot, any edit at all) is "no": the caller unlocks
 * afresh. */
static bool
header_vouches (const struct luks_header *hdr, const void *pass, size_t passlen,
                int keyslot, const struct luks_volume *vol)
{
  const struct luks_keyslot *ks = NULL;
  uint8_t vouch[LUKS_META_HASH_BYTES];
  uint8_t *area;
  bool same = false;

  if (keyslot >= 0 && keyslot != volume_slot (vol))
    return false;
  for (int i = 0; i < hdr->nslots && !ks; i++)
    if (hdr->slots[i].id == volume_slot (vol))
      ks = &hdr->slots[i];
  if (!ks || !(area = malloc (luks_keyslot_material_bytes (hdr, ks))))
    return false;
  if (hdr->src.read (hdr->src.opaque, area,
                     luks_keyslot_material_bytes (hdr, ks),
                     ks->area_offset) == 0 &&
      slot_vouch (hdr, ks, area, pass, passlen, vouch) == 0)
    same = secmem_memcmp (vouch, volume_vouch (vol), sizeof vouch) == 0;
  secmem_wipe (vouch, sizeof vouch);
  free (area);
  return same;
}

int
luks_unlock_reuse (const struct luks_header *hdr, const void *pass,
                   size_t passlen, int keyslot, struct luks_volume *cached,
                   struct luks_volume **out, bool *reused)
{
  *reused = cached && header_vouches (hdr, pass, passlen, keyslot, cached);
  if (*reused) {
    *out = luks_volume_ref (cached);
    return 0;
  }
  return luks_unlock (hdr, pass, passlen, keyslot, out);
}
