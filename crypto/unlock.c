/* luks-nbd: keyslot unlock, common to LUKS1 and LUKS2: KDF, decrypt the key
 * material, AF merge, check the digest.  Every secret lives in secure
 * memory and is wiped on every path. */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "afsplit.h"
#include "error.h"
#include "secmem.h"
#include "volume.h"

/* 0 and the volume key in `key` if the passphrase opens this slot, -EPERM
 * if not, another -errno on real errors. */
static int
try_keyslot (const struct luks_header *hdr, const struct luks_keyslot *ks,
             const void *pass, size_t passlen, uint8_t *key)
{
  size_t af_bytes = hdr->key_bytes * ks->stripes;
  size_t area_bytes = (af_bytes + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
  uint8_t *derived = secmem_alloc (ks->derived_bytes);
  uint8_t *material = secmem_alloc (area_bytes);
  uint8_t digest[LUKS_DIGEST_MAX];
  struct kdf_params dp = { .type = KDF_PBKDF2 };
  struct cipher_ctx *ctx = NULL;
  int r = -ENOMEM;

  if (!derived || !material)
    goto out;
  r = kdf_derive (&ks->kdf, pass, passlen, derived, ks->derived_bytes);
  if (r < 0)
    goto out;
  r = hdr->src.read (hdr->src.opaque, material, area_bytes, ks->area_offset);
  if (r < 0) {
    r = error_prefix (r, "%s: reading keyslot %d", hdr->src.name, ks->id);
    goto out;
  }
  /* Key material is always en/decrypted in 512-byte sectors from IV 0. */
  r = cipher_ctx_new (&ks->area_cipher, derived, &ctx);
  if (r < 0)
    goto out;
  r = cipher_ctx_crypt (ctx, CRYPT_DECRYPT, material, area_bytes, LUKS_SECTOR,
                        0, 1);
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
  secmem_free (material, area_bytes);
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
  bool found = false;
  int r = -EPERM;

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
      r = try_keyslot (hdr, ks, pass, passlen, key);
    }
  }
  if (r == 0)
    return volume_new (hdr, key, out);
  secmem_free (key, hdr->key_bytes);
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
