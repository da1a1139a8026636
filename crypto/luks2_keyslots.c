/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: LUKS2 keyslot edits: the JSON of the copy parsed (hdr->raw),
 * changed as cryptsetup 2.6 changes it, written back as both copies by
 * luks2_disk.c.  A new keyslot takes the first gap in the keyslots area
 * that fits 4000 stripes of the volume key rounded up to 4096 bytes
 * (cryptsetup's LUKS2_find_area_gap), and the af hash and area cipher of
 * the keyslot that the segment's digest names first. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "crypto/base64.h"
#include "common/checked.h"
#include "common/error_msg.h"
#include "crypto/keyslot_edit.h"
#include "crypto/secmem.h"

enum { L2_BINARY_SIZE = 4096, AREA_ALIGN = 4096 };

static json_object *
parse_raw (const struct luks_header *hdr)
{
  json_object *root;

  if (!hdr->raw)
    return NULL;
  root = json_tokener_parse ((const char *) hdr->raw + L2_BINARY_SIZE);
  if (!root)
    error_set (-EINVAL, "%s: LUKS2 JSON does not parse", hdr->src.name);
  return root;
}

static json_object *
member (json_object *o, const char *key)
{
  json_object *v = NULL;

  if (o)
    json_object_object_get_ex (o, key, &v);
  return v;
}

static uint64_t
u64_member (json_object *o, const char *key)
{
  const char *s = json_object_get_string (member (o, key));

  return s ? strtoull (s, NULL, 10) : 0;
}

/* The first gap of `need` bytes in [start, end) among every keyslot's
 * area (bound to the segment or not). */
static int
find_gap (const struct luks_header *hdr, json_object *keyslots, uint64_t need,
          uint64_t *offset)
{
  uint64_t at = hdr->keyslots_start;
  bool moved = true;

  /* Few areas: step past any that overlaps until none does. */
  while (moved) {
    moved = false;
    json_object_object_foreach (keyslots, key, ks)
    {
      json_object *area = member (ks, "area");
      uint64_t o = u64_member (area, "offset"), s = u64_member (area, "size");
      (void) key;
      if (ranges_overlap (at, need, o, s)) {
        at = (o + s + AREA_ALIGN - 1) / AREA_ALIGN * AREA_ALIGN;
        moved = true;
      }
    }
  }
  if (at + need > hdr->keyslots_end)
    return error_set (-ENOSPC,
                      "%s: no room for another keyslot of %" PRIu64
                      " bytes in the keyslots area",
                      hdr->src.name, need);
  *offset = at;
  return 0;
}

static json_object *
kdf_json (const struct kdf_params *p)
{
  json_object *o = json_object_new_object ();
  char salt[base64_encoded_len (KDF_SALT_MAX)];

  base64_encode (p->salt, p->salt_len, salt);
  if (p->type == KDF_PBKDF2) {
    json_object_object_add (o, "type", json_object_new_string ("pbkdf2"));
    json_object_object_add (o, "hash", json_object_new_string ("sha256"));
    json_object_object_add (o, "iterations",
                            json_object_new_int64 (p->iterations));
  } else {
    json_object_object_add (
      o, "type",
      json_object_new_string (p->type == KDF_ARGON2I ? "argon2i" : "argon2id"));
    json_object_object_add (o, "time", json_object_new_int64 (p->iterations));
    json_object_object_add (o, "memory", json_object_new_int64 (p->memory_kib));
    json_object_object_add (o, "cpus", json_object_new_int64 (p->parallel));
  }
  json_object_object_add (o, "salt", json_object_new_string (salt));
  return o;
}

static json_object *
string_u64 (uint64_t v)
{
  char s[24];

  snprintf (s, sizeof s, "%" PRIu64, v);
  return json_object_new_string (s);
}

/* The keyslot object as cryptsetup writes it. */
static json_object *
keyslot_json (const struct luks_header *hdr, const struct luks_keyslot *ks,
              const char *af_hash, const char *encryption)
{
  json_object *o = json_object_new_object ();
  json_object *af = json_object_new_object ();
  json_object *area = json_object_new_object ();

  json_object_object_add (o, "type", json_object_new_string ("luks2"));
  json_object_object_add (o, "key_size",
                          json_object_new_int64 ((int64_t) hdr->key_bytes));
  json_object_object_add (af, "type", json_object_new_string ("luks1"));
  json_object_object_add (af, "stripes", json_object_new_int64 (ks->stripes));
  json_object_object_add (af, "hash", json_object_new_string (af_hash));
  json_object_object_add (o, "af", af);
  json_object_object_add (area, "type", json_object_new_string ("raw"));
  json_object_object_add (area, "offset", string_u64 (ks->area_offset));
  json_object_object_add (area, "size", string_u64 (ks->area_size));
  json_object_object_add (area, "encryption",
                          json_object_new_string (encryption));
  json_object_object_add (area, "key_size",
                          json_object_new_int64 ((int64_t) ks->derived_bytes));
  json_object_object_add (o, "area", area);
  json_object_object_add (o, "kdf", kdf_json (&ks->kdf));
  return o;
}

static int
write_json (const struct luks_header *hdr, json_object *root)
{
  return luks2_write_json (
    hdr, json_object_to_json_string_ext (
           root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
}

int
luks2_keyslot_add (const struct luks_header *hdr, const struct luks_volume *vol,
                   const void *pass, size_t passlen, int slot,
                   const struct luks_kdf_choice *kc, int *added)
{
  json_object *root = parse_raw (hdr), *keyslots, *digest, *tmpl;
  const struct luks_keyslot *model = &hdr->slots[0];
  struct luks_keyslot ks = *model;
  const char *af_hash, *encryption;
  char id[16];
  int r = -EINVAL;

  if (!root)
    return -EINVAL;
  keyslots = member (root, "keyslots");
  digest =
    member (member (member (root, "digests"), hdr->digest_id), "keyslots");
  snprintf (id, sizeof id, "%d", model->id);
  tmpl = member (keyslots, id);
  af_hash = json_object_get_string (member (member (tmpl, "af"), "hash"));
  encryption =
    json_object_get_string (member (member (tmpl, "area"), "encryption"));
  if (!keyslots || !digest || !af_hash || !encryption) {
    r = error_set (-EINVAL, "%s: LUKS2 JSON lacks keyslots or digests",
                   hdr->src.name);
    goto out;
  }
  for (int i = slot < 0 ? 0 : slot; slot < 0 && i < LUKS_KEYSLOTS_MAX; i++) {
    snprintf (id, sizeof id, "%d", i);
    if (!member (keyslots, id))
      slot = i;
  }
  snprintf (id, sizeof id, "%d", slot);
  if (slot < 0 || member (keyslots, id)) {
    r = error_set (slot < 0 ? -ENOSPC : -EEXIST, "%s: %s", hdr->src.name,
                   slot < 0 ? "all 32 keyslots are in use"
                            : "the keyslot is in use");
    goto out;
  }
  ks.id = slot;
  ks.stripes = LUKS_STRIPES_MAX;
  ks.area_size = ((uint64_t) hdr->key_bytes * ks.stripes + AREA_ALIGN - 1) /
                 AREA_ALIGN * AREA_ALIGN;
  if ((r = find_gap (hdr, keyslots, ks.area_size, &ks.area_offset)) < 0 ||
      (r = keyslot_choose_kdf (hdr, kc, ks.derived_bytes, &ks.kdf)) < 0 ||
      (r = keyslot_write_material (hdr, &ks, vol, pass, passlen)) < 0)
    goto out;
  /* Only now does the header name the new keyslot. */
  json_object_object_add (keyslots, id,
                          keyslot_json (hdr, &ks, af_hash, encryption));
  json_object_array_add (digest, json_object_new_string (id));
  r = write_json (hdr, root);
  if (r == 0)
    *added = slot;

out:
  secmem_wipe (&ks.kdf, sizeof ks.kdf);
  json_object_put (root);
  return r;
}

/* Drops id from the "keyslots" array of every object in o (digests,
 * tokens). */
static void
unbind (json_object *o, const char *id)
{
  if (!o)
    return;
  json_object_object_foreach (o, key, v)
  {
    json_object *list = member (v, "keyslots");
    (void) key;
    for (size_t i = 0; list && json_object_is_type (list, json_type_array) &&
                       i < json_object_array_length (list);)
      if (!strcmp (json_object_get_string (json_object_array_get_idx (list, i)),
                   id))
        json_object_array_del_idx (list, i, 1);
      else
        i++;
  }
}

int
luks2_keyslot_remove (const struct luks_header *hdr, int slot)
{
  json_object *root = parse_raw (hdr), *keyslots, *ks, *area;
  uint64_t offset, size;
  char id[16];
  int r;

  if (!root)
    return -EINVAL;
  snprintf (id, sizeof id, "%d", slot);
  keyslots = member (root, "keyslots");
  ks = member (keyslots, id);
  if (!ks) {
    json_object_put (root);
    return error_set (-ENOENT, "%s: keyslot %d is not active", hdr->src.name,
                      slot);
  }
  area = member (ks, "area");
  offset = u64_member (area, "offset");
  size = u64_member (area, "size");
  json_object_object_del (keyslots, id);
  unbind (member (root, "digests"), id);
  unbind (member (root, "tokens"), id);
  /* The header stops naming the keyslot before its material goes: a
   * crash in between leaves no keyslot pointing at random bytes. */
  r = write_json (hdr, root);
  json_object_put (root);
  if (r == 0 && offset >= hdr->keyslots_start && size &&
      offset + size <= hdr->keyslots_end)
    r = keyslot_wipe_area (hdr, offset, size);
  return r;
}
