/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: LUKS1 phdr parsing (LUKS1 On-Disk Format Specification 1.2.3). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <gcrypt.h>

#include "common/byteorder.h"
#include "common/checked.h"
#include "common/error_msg.h"
#include "crypto/hash.h"
#include "crypto/header.h"

/* Field offsets of the phdr; all integers big-endian. */
enum {
  L1_VERSION = 6,
  L1_CIPHER_NAME = 8,
  L1_CIPHER_MODE = 40,
  L1_HASH_SPEC = 72,
  L1_PAYLOAD_OFFSET = 104,
  L1_KEY_BYTES = 108,
  L1_MK_DIGEST = 112,
  L1_MK_DIGEST_SALT = 132,
  L1_MK_DIGEST_ITER = 164,
  L1_UUID = 168,
  L1_KEYSLOTS = 208,
  L1_KEYSLOT_SIZE = 48,
  L1_KEYSLOT_COUNT = 8,
  L1_PHDR_SIZE = 592,
  L1_STRING = 32,
  L1_DIGEST_SIZE = 20,
  L1_SALT_SIZE = 32,
};

#define L1_KEY_ENABLED 0x00AC71F3u
#define L1_KEY_DISABLED 0x0000DEADu

static int
parse_keyslot (const uint8_t *ks_disk, int i, int md, struct luks_header *hdr)
{
  uint32_t active = load_be32 (ks_disk);
  struct luks_keyslot *ks;
  char field[32];
  uint64_t sectors;
  int r;

  snprintf (field, sizeof field, "keyslot %d", i);
  if (active == L1_KEY_DISABLED)
    return 0;
  if (active != L1_KEY_ENABLED)
    return error_set (-EINVAL,
                      "%s: %s: active field 0x%08x is neither "
                      "enabled nor disabled",
                      hdr->src.name, field, active);
  ks = &hdr->slots[hdr->nslots];
  ks->id = i;
  ks->priority = PRIORITY_NORMAL;
  ks->kdf.type = KDF_PBKDF2;
  ks->kdf.md_algo = md;
  ks->kdf.iterations = load_be32 (ks_disk + 4);
  memcpy (ks->kdf.salt, ks_disk + 8, L1_SALT_SIZE);
  ks->kdf.salt_len = L1_SALT_SIZE;
  snprintf (ks->kdf_field, sizeof ks->kdf_field, "%s", field);
  snprintf (ks->iter_field, sizeof ks->iter_field, "%s passwordIterations",
            field);
  ks->af_md = md;
  ks->stripes = load_be32 (ks_disk + 44);
  ks->area_offset = (uint64_t) load_be32 (ks_disk + 40) * LUKS_SECTOR;
  ks->derived_bytes = hdr->key_bytes;
  ks->area_cipher = hdr->cipher;
  /* Key material occupies whole 512-byte sectors. */
  if (ckd_mul_u64 (&sectors, hdr->key_bytes, ks->stripes))
    return error_set (-EINVAL, "%s: %s: stripes %u overflow", hdr->src.name,
                      field, ks->stripes);
  sectors = (sectors + LUKS_SECTOR - 1) / LUKS_SECTOR;
  ks->area_size = sectors * LUKS_SECTOR;
  r = luks_check_keyslot_area (hdr, ks, L1_PHDR_SIZE, hdr->src.size);
  if (r < 0)
    return r;
  hdr->nslots++;
  return 0;
}

int
luks1_parse (const uint8_t *p, size_t len, struct luks_header *hdr)
{
  char name[L1_STRING], mode[L1_STRING], hash[L1_STRING];
  const char *src = hdr->src.name;
  int md, r;

  if (len < L1_PHDR_SIZE)
    return error_set (-EINVAL, "%s: LUKS1 header truncated", src);
  hdr->version = 1;
  r = hash_buffer (GCRY_MD_SHA256, hdr->meta_hash, p, L1_PHDR_SIZE);
  if (r < 0)
    return r;
  if ((r = luks_field_string (name, p + L1_CIPHER_NAME, L1_STRING, src,
                              "cipherName")) < 0 ||
      (r = luks_field_string (mode, p + L1_CIPHER_MODE, L1_STRING, src,
                              "cipherMode")) < 0 ||
      (r = luks_field_string (hash, p + L1_HASH_SPEC, L1_STRING, src,
                              "hashSpec")) < 0 ||
      (r = luks_field_string (hdr->uuid, p + L1_UUID, LUKS_UUID_MAX, src,
                              "uuid")) < 0)
    return r;
  md = hash_lookup (hash, "hashSpec");
  if (md < 0)
    return error_prefix (md, "%s", src);
  hdr->key_bytes = load_be32 (p + L1_KEY_BYTES);
  r = cipher_spec_parse (name, mode, hdr->key_bytes, "cipherName/keyBytes",
                         &hdr->cipher);
  if (r < 0)
    return error_prefix (r, "%s", src);
  hdr->sector_size = LUKS_SECTOR;
  hdr->iv_tweak = 0;
  hdr->payload_offset =
    (uint64_t) load_be32 (p + L1_PAYLOAD_OFFSET) * LUKS_SECTOR;
  hdr->payload_size = 0;

  hdr->digest_md = md;
  hdr->digest_iterations = load_be32 (p + L1_MK_DIGEST_ITER);
  snprintf (hdr->digest_field, sizeof hdr->digest_field, "mkDigestIterations");
  memcpy (hdr->digest, p + L1_MK_DIGEST, L1_DIGEST_SIZE);
  hdr->digest_len = L1_DIGEST_SIZE;
  memcpy (hdr->digest_salt, p + L1_MK_DIGEST_SALT, L1_SALT_SIZE);
  hdr->digest_salt_len = L1_SALT_SIZE;

  for (int i = 0; i < L1_KEYSLOT_COUNT; i++) {
    r = parse_keyslot (p + L1_KEYSLOTS + i * L1_KEYSLOT_SIZE, i, md, hdr);
    if (r < 0)
      return r;
  }
  /* An attached payload must start after the key material. */
  for (int i = 0; hdr->payload_offset && i < hdr->nslots; i++)
    if (hdr->slots[i].area_offset + hdr->slots[i].area_size >
        hdr->payload_offset)
      return error_set (-EINVAL, "%s: payloadOffset %llu overlaps keyslot %d",
                        src,
                        (unsigned long long) hdr->payload_offset / LUKS_SECTOR,
                        hdr->slots[i].id);
  return 0;
}

static int
read_slot (const struct luks_header *hdr, int id, uint8_t d[L1_KEYSLOT_SIZE])
{
  if (id < 0 || id >= L1_KEYSLOT_COUNT)
    return error_set (-EINVAL, "%s: LUKS1 has key slots 0..%d, not %d",
                      hdr->src.name, L1_KEYSLOT_COUNT - 1, id);
  return hdr->src.read (hdr->src.opaque, d, L1_KEYSLOT_SIZE,
                        L1_KEYSLOTS + (uint64_t) id * L1_KEYSLOT_SIZE);
}

int
luks1_slot_layout (const struct luks_header *hdr, int id, bool *active,
                   uint64_t *area_offset, uint32_t *stripes)
{
  uint8_t d[L1_KEYSLOT_SIZE];
  int r = read_slot (hdr, id, d);

  if (r < 0)
    return r;
  *active = load_be32 (d) == L1_KEY_ENABLED;
  *area_offset = (uint64_t) load_be32 (d + 40) * LUKS_SECTOR;
  *stripes = load_be32 (d + 44);
  return 0;
}

int
luks1_write_slot (const struct luks_header *hdr, int id,
                  const struct kdf_params *p)
{
  uint8_t d[L1_KEYSLOT_SIZE];
  int r = read_slot (hdr, id, d);

  if (r < 0)
    return r;
  /* Offset and stripes stay as luksFormat laid them out. */
  store_be32 (d, p ? L1_KEY_ENABLED : L1_KEY_DISABLED);
  store_be32 (d + 4, p ? p->iterations : 0);
  memset (d + 8, 0, L1_SALT_SIZE);
  if (p)
    memcpy (d + 8, p->salt, L1_SALT_SIZE);
  r = hdr->src.write (hdr->src.opaque, d, sizeof d,
                      L1_KEYSLOTS + (uint64_t) id * L1_KEYSLOT_SIZE);
  if (r == 0)
    r = hdr->src.sync (hdr->src.opaque, "keyslot descriptor");
  return r;
}
