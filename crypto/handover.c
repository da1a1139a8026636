/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: an unlocked volume key as a blob for the next daemon, and
 * the checks that a blob handed over still belongs to the header.
 *
 * Layout (big endian):
 *   0  "LNBDKEY1"      magic and version
 *   8  be32 slot       the keyslot that opened the key
 *  12  be32 key_bytes
 *  16  binding[32]     volume_slot_binding() of that keyslot then
 *  48  key[key_bytes]
 * The blob is as secret as the key: the caller keeps it in secure memory
 * and in a memfd (server/keystore.c), never in a file. */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/error_msg.h"
#include "crypto/secmem.h"
#include "crypto/volume.h"

#define MAGIC "LNBDKEY1"
#define MAGIC_BYTES 8
#define FIXED_BYTES (MAGIC_BYTES + 8 + LUKS_META_HASH_BYTES)

size_t
luks_volume_handover_size (const struct luks_volume *vol)
{
  size_t key_bytes;

  volume_key (vol, &key_bytes);
  return FIXED_BYTES + key_bytes;
}

int
luks_volume_handover_write (const struct luks_volume *vol, uint8_t *out,
                            size_t len)
{
  size_t key_bytes;
  const uint8_t *key = volume_key (vol, &key_bytes);

  if (len != FIXED_BYTES + key_bytes)
    return error_set (-EINVAL, "handover blob: %zu bytes, expected %zu", len,
                      FIXED_BYTES + key_bytes);
  memcpy (out, MAGIC, MAGIC_BYTES);
  store_be32 (out + MAGIC_BYTES, (uint32_t) volume_slot (vol));
  store_be32 (out + MAGIC_BYTES + 4, (uint32_t) key_bytes);
  memcpy (out + MAGIC_BYTES + 8, volume_binding (vol), LUKS_META_HASH_BYTES);
  memcpy (out + FIXED_BYTES, key, key_bytes);
  return 0;
}

/* The header as it is now has the keyslot with the bytes and metadata
 * the key was unlocked from. */
static int
check_binding (const struct luks_header *hdr, int slot, const uint8_t *binding)
{
  uint8_t now[LUKS_META_HASH_BYTES];
  int r = volume_slot_binding (hdr, slot, now);

  if (r == -ENOENT)
    return error_set (-ESTALE,
                      "%s: key slot %d, which opened the handed-over key, "
                      "is gone",
                      hdr->src.name, slot);
  if (r < 0)
    return r;
  if (secmem_memcmp (now, binding, sizeof now) != 0)
    return error_set (-ESTALE,
                      "%s: the header's metadata or key slot %d changed "
                      "since the handed-over key was unlocked from it",
                      hdr->src.name, slot);
  return 0;
}

int
luks_volume_handover_open (const struct luks_header *hdr, const uint8_t *blob,
                           size_t len, struct luks_volume **out)
{
  uint32_t slot, key_bytes;
  uint8_t *key;
  struct luks_volume *vol;
  int r;

  if (len < FIXED_BYTES || memcmp (blob, MAGIC, MAGIC_BYTES) != 0)
    return error_set (-EINVAL, "the handed-over key is not a luks-nbd key "
                               "blob (magic or size)");
  slot = load_be32 (blob + MAGIC_BYTES);
  key_bytes = load_be32 (blob + MAGIC_BYTES + 4);
  if (len - FIXED_BYTES != key_bytes || slot > INT32_MAX)
    return error_set (-EINVAL, "the handed-over key blob is malformed "
                               "(slot or key size)");
  if (key_bytes != hdr->key_bytes)
    return error_set (-ESTALE,
                      "%s: the handed-over key has %u bytes, the header's "
                      "volume key %zu",
                      hdr->src.name, key_bytes, hdr->key_bytes);
  r = check_binding (hdr, (int) slot, blob + MAGIC_BYTES + 8);
  if (r < 0)
    return r;
  key = secmem_alloc (key_bytes);
  if (!key)
    return -ENOMEM;
  memcpy (key, blob + FIXED_BYTES, key_bytes);
  /* No vouch: a handed-over key is never offered to other exports. */
  r = volume_new (hdr, key, (int) slot, NULL, blob + MAGIC_BYTES + 8, &vol);
  if (r < 0)
    return r;
  /* The LUKS digest: the key itself must be the header's volume key. */
  r = luks_volume_check (hdr, vol);
  if (r < 0) {
    luks_volume_free (vol);
    return r;
  }
  *out = vol;
  return 0;
}
