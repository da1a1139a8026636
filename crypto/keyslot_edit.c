/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: adding and removing keyslots of a header (see luks.h), common
 * to both versions, and LUKS1's fixed slots; LUKS2's JSON edits are in
 * luks2_keyslots.c.  A new keyslot is made as unlock.c opens one, in
 * reverse: KDF over the new passphrase, AF split of the volume key,
 * encryption of the split material with the derived key. */
#include <config.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <gcrypt.h>

#include "crypto/afsplit.h"
#include "common/error_msg.h"
#include "crypto/keyslot_edit.h"
#include "crypto/secmem.h"
#include "crypto/volume.h"

/* cryptsetup's defaults for a new keyslot (lib/libcryptsetup.h,
 * DEFAULT_LUKS2_*). */
enum {
  DEFAULT_ITER_TIME_MS = 2000,
  DEFAULT_ARGON2_MEMORY_KIB = 1024 * 1024,
  DEFAULT_ARGON2_PARALLEL = 4,
  NEW_SALT_BYTES = 32,
};

static const char *
kdf_name (enum kdf_type t)
{
  return t == KDF_PBKDF2 ? "pbkdf2" : t == KDF_ARGON2I ? "argon2i" : "argon2id";
}

int
luks_keyslot_count (const struct luks_header *hdr)
{
  return hdr->nslots;
}

int
luks_keyslot_max (const struct luks_header *hdr)
{
  return hdr->version == 1 ? LUKS1_KEYSLOTS : LUKS_KEYSLOTS_MAX;
}

void
luks_keyslot_info (const struct luks_header *hdr, int i,
                   struct luks_keyslot_info *out)
{
  static const char *const prio[] = { "ignore", "normal", "prefer" };
  const struct luks_keyslot *ks = &hdr->slots[i];

  out->id = ks->id;
  out->kdf = kdf_name (ks->kdf.type);
  out->iterations = ks->kdf.iterations;
  out->memory_kib = ks->kdf.memory_kib;
  out->parallel = ks->kdf.parallel;
  out->priority = prio[ks->priority];
}

/* p for a new keyslot of hdr, from the operator's choice. */
int
keyslot_choose_kdf (const struct luks_header *hdr,
                    const struct luks_kdf_choice *kc, size_t outlen,
                    struct kdf_params *p)
{
  const char *type = kc->type            ? kc->type
                     : hdr->version == 1 ? "pbkdf2"
                                         : "argon2id";
  long cpus = sysconf (_SC_NPROCESSORS_ONLN);
  uint64_t total = 0;
  int r;

  memset (p, 0, sizeof *p);
  if (!strcmp (type, "pbkdf2"))
    p->type = KDF_PBKDF2;
  else if (!strcmp (type, "argon2id") || !strcmp (type, "argon2i"))
    p->type = type[6] ? KDF_ARGON2ID : KDF_ARGON2I;
  else
    return error_set (-EINVAL, "unknown KDF '%s' (argon2id, argon2i or pbkdf2)",
                      type);
  if (hdr->version == 1 && p->type != KDF_PBKDF2)
    return error_set (-EINVAL, "%s: LUKS1 keyslots use pbkdf2, not %s",
                      hdr->src.name, type);
  /* LUKS1 slots use the header's hashSpec; LUKS2's pbkdf2, sha256. */
  p->md_algo = hdr->version == 1 ? hdr->digest_md : GCRY_MD_SHA256;
  p->salt_len = NEW_SALT_BYTES;
  gcry_randomize (p->salt, p->salt_len, GCRY_STRONG_RANDOM);
  if (p->type != KDF_PBKDF2) {
    p->parallel = kc->parallel                     ? kc->parallel
                  : cpus < 1                       ? 1
                  : cpus > DEFAULT_ARGON2_PARALLEL ? DEFAULT_ARGON2_PARALLEL
                                                   : (uint32_t) cpus;
    p->memory_kib = kc->memory_kib ? kc->memory_kib : DEFAULT_ARGON2_MEMORY_KIB;
  }
  if (kc->iterations)
    p->iterations = kc->iterations;
  else if ((r = kdf_benchmark (p, outlen,
                               kc->iter_time_ms ? kc->iter_time_ms
                                                : DEFAULT_ITER_TIME_MS)) < 0)
    return r;
  r = kdf_check (p, KDF_PBKDF2_MAX_ITERATIONS, "new keyslot", "iterations",
                 "kdf");
  if (r < 0)
    return r;
  /* The header must still open here afterwards (header.c's bound). */
  for (int i = 0; i < hdr->nslots; i++)
    total += kdf_cost_ppm (&hdr->slots[i].kdf);
  total += kdf_cost_ppm (p);
  if (total > KDF_MAX_TOTAL_SLOTS * UINT64_C (1000000))
    return error_set (-EINVAL,
                      "%s: with this keyslot the keyslots' KDF costs would "
                      "add up to more than %d times the bound for one "
                      "keyslot; choose a lower cost",
                      hdr->src.name, KDF_MAX_TOTAL_SLOTS);
  return 0;
}

int
keyslot_write_material (const struct luks_header *hdr,
                        const struct luks_keyslot *ks,
                        const struct luks_volume *vol, const void *pass,
                        size_t passlen)
{
  size_t len = luks_keyslot_material_bytes (hdr, ks);
  uint8_t *derived = secmem_alloc (ks->derived_bytes);
  uint8_t *material = secmem_alloc (len);
  struct cipher_ctx *ctx = NULL;
  int r = -ENOMEM;

  if (!derived || !material)
    goto out;
  r = kdf_derive (&ks->kdf, pass, passlen, derived, ks->derived_bytes);
  size_t key_bytes;
  const uint8_t *key = volume_key (vol, &key_bytes);
  if (r == 0 && key_bytes != hdr->key_bytes)
    r = error_set (-EINVAL, "the volume key is %zu bytes, the header's %u",
                   key_bytes, (unsigned) hdr->key_bytes);
  if (r == 0)
    r = af_split (ks->af_md, key, key_bytes, ks->stripes, material);
  if (r == 0)
    r = cipher_ctx_new (&ks->area_cipher, derived, &ctx);
  /* As unlock.c decrypts it: 512-byte sectors from IV 0. */
  if (r == 0)
    r = cipher_ctx_crypt (ctx, LUKS_ENCRYPT, material, len, LUKS_SECTOR, 0, 1);
  if (r == 0)
    r = hdr->src.write (hdr->src.opaque, material, len, ks->area_offset);
  if (r == 0)
    r = hdr->src.sync (hdr->src.opaque, "key material");
out:
  cipher_ctx_free (ctx);
  secmem_free (derived, ks->derived_bytes);
  secmem_free (material, len);
  return r;
}

int
keyslot_wipe_area (const struct luks_header *hdr, uint64_t offset,
                   uint64_t size)
{
  enum { CHUNK = 64 * 1024 };
  uint8_t buf[CHUNK];
  int r = 0;

  for (uint64_t done = 0; r == 0 && done < size; done += CHUNK) {
    size_t n = size - done < CHUNK ? (size_t) (size - done) : CHUNK;
    gcry_create_nonce (buf, n);
    r = hdr->src.write (hdr->src.opaque, buf, n, offset + done);
  }
  if (r == 0)
    r = hdr->src.sync (hdr->src.opaque, "wiped key material");
  return r;
}

static int
luks1_add (const struct luks_header *hdr, const struct luks_volume *vol,
           const void *pass, size_t passlen, int slot,
           const struct luks_kdf_choice *kc, int *added)
{
  struct luks_keyslot ks = { 0 };
  bool active = true;
  int r = 0;

  if (slot >= 0) {
    r = luks1_slot_layout (hdr, slot, &active, &ks.area_offset, &ks.stripes);
    if (r == 0 && active)
      return error_set (-EEXIST, "%s: key slot %d is in use", hdr->src.name,
                        slot);
  } else {
    for (int i = 0; r == 0 && slot < 0 && i < LUKS1_KEYSLOTS; i++) {
      r = luks1_slot_layout (hdr, i, &active, &ks.area_offset, &ks.stripes);
      if (r == 0 && !active)
        slot = i;
    }
    if (r == 0 && slot < 0)
      return error_set (-ENOSPC, "%s: all %d key slots are in use",
                        hdr->src.name, LUKS1_KEYSLOTS);
  }
  if (r < 0)
    return r;
  ks.id = slot;
  ks.derived_bytes = hdr->key_bytes;
  ks.area_cipher = hdr->cipher;
  ks.af_md = hdr->digest_md;
  ks.area_size = luks_keyslot_material_bytes (hdr, &ks);
  r = luks_check_keyslot_area (hdr, &ks, LUKS1_PHDR_BYTES, hdr->src.size);
  if (r == 0)
    r = keyslot_choose_kdf (hdr, kc, ks.derived_bytes, &ks.kdf);
  if (r == 0)
    r = keyslot_write_material (hdr, &ks, vol, pass, passlen);
  if (r == 0)
    r = luks1_write_slot (hdr, ks.id, &ks.kdf);
  secmem_wipe (&ks.kdf, sizeof ks.kdf);
  if (r == 0)
    *added = ks.id;
  return r;
}

static int
luks1_remove (const struct luks_header *hdr, int slot)
{
  struct luks_keyslot ks = { .id = slot };
  bool active;
  int r = luks1_slot_layout (hdr, slot, &active, &ks.area_offset, &ks.stripes);

  if (r < 0)
    return r;
  if (!active)
    return error_set (-ENOENT, "%s: key slot %d is not active", hdr->src.name,
                      slot);
  r = luks1_write_slot (hdr, slot, NULL);
  if (r == 0)
    r = keyslot_wipe_area (hdr, ks.area_offset,
                           luks_keyslot_material_bytes (hdr, &ks));
  return r;
}

int
luks_keyslot_add (const struct luks_header *hdr, const struct luks_volume *vol,
                  const void *pass, size_t passlen, int slot,
                  const struct luks_kdf_choice *kc, int *added)
{
  int r;

  if (!hdr->src.write || !hdr->src.sync)
    return error_set (-EROFS, "%s: the header cannot be written",
                      hdr->src.name);
  /* A key the header no longer vouches for (re-encrypted since) would
   * make a keyslot that opens to garbage. */
  r = luks_volume_check (hdr, vol);
  if (r < 0)
    return r;
  if (slot >= luks_keyslot_max (hdr))
    return error_set (-EINVAL, "%s: key slots are 0..%d, not %d", hdr->src.name,
                      luks_keyslot_max (hdr) - 1, slot);
  if (hdr->version == 1)
    return luks1_add (hdr, vol, pass, passlen, slot, kc, added);
  return luks2_keyslot_add (hdr, vol, pass, passlen, slot, kc, added);
}

int
luks_keyslot_remove (const struct luks_header *hdr, int slot, bool force)
{
  bool found = false;

  if (!hdr->src.write || !hdr->src.sync)
    return error_set (-EROFS, "%s: the header cannot be written",
                      hdr->src.name);
  for (int i = 0; i < hdr->nslots; i++)
    found |= hdr->slots[i].id == slot;
  if (found && hdr->nslots == 1 && !force)
    return error_set (-EBUSY,
                      "%s: key slot %d is the last one that opens the "
                      "volume: without it no passphrase opens it again "
                      "(luks-nbd ctl keyslot-remove --force removes it anyway)",
                      hdr->src.name, slot);
  return hdr->version == 1 ? luks1_remove (hdr, slot)
                           : luks2_keyslot_remove (hdr, slot);
}
