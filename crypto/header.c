/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: opening a header of either version and the checks both share. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/checked.h"
#include "common/error_msg.h"
#include "crypto/header.h"
#include "crypto/secmem.h"

const uint8_t luks_magic[LUKS_MAGIC_BYTES] = { 'L', 'U', 'K', 'S', 0xba, 0xbe };

/* LUKS1's phdr is 592 bytes; LUKS2's binary header 4096. */
enum { PROBE_BYTES = 592 };

bool
luks_probe (const void *buf, size_t len)
{
  return len >= sizeof luks_magic &&
         memcmp (buf, luks_magic, sizeof luks_magic) == 0;
}

int
luks_init (void)
{
  return secmem_init ();
}

int
luks_field_string (char *dst, const uint8_t *field, size_t field_len,
                   const char *src_name, const char *field_name)
{
  const uint8_t *nul = memchr (field, '\0', field_len);

  if (!nul)
    return error_set (-EINVAL, "%s: field %s is not NUL-terminated", src_name,
                      field_name);
  memcpy (dst, field, (size_t) (nul - field) + 1);
  return 0;
}

size_t
luks_keyslot_material_bytes (const struct luks_header *hdr,
                             const struct luks_keyslot *ks)
{
  size_t af_bytes = hdr->key_bytes * ks->stripes;
  return (af_bytes + LUKS_SECTOR - 1) / LUKS_SECTOR * LUKS_SECTOR;
}

int
luks_check_keyslot_area (const struct luks_header *hdr,
                         const struct luks_keyslot *ks, uint64_t area_start,
                         uint64_t area_end)
{
  uint64_t need, end;

  if (ks->stripes == 0 || ks->stripes > LUKS_STRIPES_MAX ||
      ckd_mul_u64 (&need, hdr->key_bytes, ks->stripes))
    return error_set (-EINVAL, "%s: keyslot %d: stripes %u outside 1..%d",
                      hdr->src.name, ks->id, ks->stripes, LUKS_STRIPES_MAX);
  if (ks->area_size < need)
    return error_set (-EINVAL,
                      "%s: keyslot %d: area of %llu bytes is smaller "
                      "than its %llu bytes of key material",
                      hdr->src.name, ks->id, (unsigned long long) ks->area_size,
                      (unsigned long long) need);
  if (ckd_add_u64 (&end, ks->area_offset, ks->area_size) ||
      ks->area_offset < area_start || end > area_end)
    return error_set (
      -EINVAL,
      "%s: keyslot %d: area %llu+%llu lies outside "
      "the keyslots area %llu..%llu",
      hdr->src.name, ks->id, (unsigned long long) ks->area_offset,
      (unsigned long long) ks->area_size, (unsigned long long) area_start,
      (unsigned long long) area_end);
  if (end > hdr->src.size)
    return error_set (
      -EINVAL,
      "%s: keyslot %d: key material at %llu+%llu is "
      "past the end of the header (%llu bytes)",
      hdr->src.name, ks->id, (unsigned long long) ks->area_offset,
      (unsigned long long) ks->area_size, (unsigned long long) hdr->src.size);
  for (int i = 0; i < hdr->nslots; i++) {
    const struct luks_keyslot *o = &hdr->slots[i];
    if (o != ks && ranges_overlap (ks->area_offset, ks->area_size,
                                   o->area_offset, o->area_size))
      return error_set (-EINVAL, "%s: keyslot %d: area overlaps keyslot %d",
                        hdr->src.name, ks->id, o->id);
  }
  return 0;
}

/* The one place every KDF cost of a header is bounded (kdf.h), before
 * any KDF runs: the digest, each keyslot, and all keyslots together. */
static int
check_kdf_costs (const struct luks_header *hdr)
{
  struct kdf_params dp = { .type = KDF_PBKDF2,
                           .md_algo = hdr->digest_md,
                           .iterations = hdr->digest_iterations,
                           .salt_len = hdr->digest_salt_len };
  uint64_t total = 0;
  int r = kdf_check (&dp, KDF_DIGEST_MAX_ITERATIONS, hdr->src.name,
                     hdr->digest_field, hdr->digest_field);

  for (int i = 0; r == 0 && i < hdr->nslots; i++) {
    const struct luks_keyslot *ks = &hdr->slots[i];
    r = kdf_check (&ks->kdf, KDF_PBKDF2_MAX_ITERATIONS, hdr->src.name,
                   ks->iter_field, ks->kdf_field);
    total += kdf_cost_ppm (&ks->kdf);
  }
  if (r == 0 && total > KDF_MAX_TOTAL_SLOTS * UINT64_C (1000000))
    r = error_set (-EINVAL,
                   "%s: the keyslots' KDF costs add up to %llu.%02llu times "
                   "the bound for one keyslot, more than %d (a passphrase "
                   "that opens none tries them all)",
                   hdr->src.name, (unsigned long long) total / 1000000,
                   (unsigned long long) total % 1000000 / 10000,
                   KDF_MAX_TOTAL_SLOTS);
  return r;
}

int
luks_header_open (const struct luks_source *src, struct luks_header **out)
{
  uint8_t probe[PROBE_BYTES];
  struct luks_header *hdr;
  int r;

  if (src->size < PROBE_BYTES)
    return error_set (-EINVAL, "%s: %llu bytes is too small for a LUKS header",
                      src->name, (unsigned long long) src->size);
  r = src->read (src->opaque, probe, sizeof probe, 0);
  if (r < 0)
    return error_prefix (r, "%s: reading the header", src->name);
  hdr = calloc (1, sizeof *hdr);
  if (!hdr)
    return error_set (-ENOMEM, "out of memory");
  hdr->src = *src;

  if (memcmp (probe, luks_magic, sizeof luks_magic) == 0 &&
      load_be16 (probe + 6) == 1)
    r = luks1_parse (probe, sizeof probe, hdr);
  else if (memcmp (probe, luks_magic, sizeof luks_magic) == 0 &&
           load_be16 (probe + 6) != 2)
    r = error_set (-EINVAL, "%s: unsupported LUKS version %u", src->name,
                   load_be16 (probe + 6));
  else {
    /* LUKS2, or a LUKS2 primary so damaged that only the secondary copy
     * can tell; luks2_read says "bad magic" if neither is there. */
    r = luks2_read (hdr);
  }
  if (r == 0)
    r = check_kdf_costs (hdr);
  if (r < 0) {
    luks_header_free (hdr);
    return r;
  }
  *out = hdr;
  return 0;
}

void
luks_header_free (struct luks_header *hdr)
{
  if (hdr)
    free (hdr->raw);
  free (hdr);
}

void
luks_header_info (const struct luks_header *hdr, struct luks_header_info *info)
{
  info->version = hdr->version;
  info->uuid = hdr->uuid;
  info->cipher = hdr->cipher.text;
  info->key_bytes = hdr->key_bytes;
  info->sector_size = hdr->sector_size;
  info->payload_offset = hdr->payload_offset;
  info->payload_size = hdr->payload_size;
  info->active_keyslots = hdr->nslots;
  info->warning = hdr->warning[0] ? hdr->warning : NULL;
}
