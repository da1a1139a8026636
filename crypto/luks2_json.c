/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: LUKS2 JSON metadata: parsing and validation into the header
 * model.  Every field is checked for type and range; what we do not
 * implement (reencryption, integrity, extra segments, requirements) is
 * refused by name rather than half-supported. */
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
#include "crypto/hash.h"
#include "crypto/header.h"

/* Real LUKS2 metadata nests 4 deep; anything deeper is hostile. */
#define JSON_MAX_DEPTH 16
/* Real metadata has a few hundred values (32 keyslots of ~20, tokens);
 * json-c spends ~250 bytes per value, so a 4 MiB JSON area of "[[1]]"
 * would cost the daemon ~400 MiB and seconds: count before parsing. */
#define JSON_MAX_VALUES 16384
#define SECTOR_SIZE_MIN 512
#define SECTOR_SIZE_MAX 4096

struct ctx {
  const char *src; /* file name for messages */
  struct luks_header *hdr;
  uint64_t keyslots_start, keyslots_end;
};

static int
missing (const struct ctx *c, const char *path, const char *key,
         const char *type)
{
  return error_set (-EINVAL, "%s: LUKS2 JSON %s.%s is missing or not %s",
                    c->src, path, key, type);
}

static int
get_typed (const struct ctx *c, json_object *o, const char *path,
           const char *key, json_type type, const char *tname,
           json_object **out)
{
  if (!json_object_object_get_ex (o, key, out) ||
      !json_object_is_type (*out, type))
    return missing (c, path, key, tname);
  return 0;
}

static int
get_string (const struct ctx *c, json_object *o, const char *path,
            const char *key, const char **out)
{
  json_object *v;
  int r = get_typed (c, o, path, key, json_type_string, "a string", &v);

  if (r == 0)
    *out = json_object_get_string (v);
  return r;
}

/* LUKS2 stores 64-bit values as decimal strings. */
static int
get_u64 (const struct ctx *c, json_object *o, const char *path, const char *key,
         uint64_t *out)
{
  const char *s;
  uint64_t v = 0;
  int r = get_string (c, o, path, key, &s);

  if (r < 0)
    return r;
  if (!*s)
    goto bad;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9' || ckd_mul_u64 (&v, v, 10) ||
        ckd_add_u64 (&v, v, (uint64_t) (*p - '0')))
      goto bad;
  }
  *out = v;
  return 0;
bad:
  return error_set (-EINVAL,
                    "%s: LUKS2 JSON %s.%s '%.40s' is not an "
                    "unsigned 64-bit number",
                    c->src, path, key, s);
}

static int
get_int (const struct ctx *c, json_object *o, const char *path, const char *key,
         int64_t min, int64_t max, int64_t *out)
{
  json_object *v;
  int r = get_typed (c, o, path, key, json_type_int, "an integer", &v);

  if (r < 0)
    return r;
  errno = 0;
  *out = json_object_get_int64 (v);
  if (errno || *out < min || *out > max)
    return error_set (-EINVAL,
                      "%s: LUKS2 JSON %s.%s %s outside %" PRId64 "..%" PRId64,
                      c->src, path, key, json_object_get_string (v), min, max);
  return 0;
}

static int
get_base64 (const struct ctx *c, json_object *o, const char *path,
            const char *key, uint8_t *out, size_t cap, size_t *len)
{
  const char *s;
  int r = get_string (c, o, path, key, &s);

  if (r < 0)
    return r;
  r = base64_decode (s, out, cap);
  if (r <= 0)
    return error_set (-EINVAL,
                      "%s: LUKS2 JSON %s.%s is not base64 of 1..%zu "
                      "bytes",
                      c->src, path, key, cap);
  *len = (size_t) r;
  return 0;
}

/* config: sizes must match the binary header; requirements refused. */
static int
parse_config (const struct ctx *c, json_object *root, uint64_t json_size,
              uint64_t *keyslots_size)
{
  json_object *config, *req, *mandatory = NULL;
  uint64_t js;
  int r;

  if ((r = get_typed (c, root, "", "config", json_type_object, "an object",
                      &config)) < 0 ||
      (r = get_u64 (c, config, "config", "json_size", &js)) < 0 ||
      (r = get_u64 (c, config, "config", "keyslots_size", keyslots_size)) < 0)
    return r;
  if (js != json_size)
    return error_set (-EINVAL,
                      "%s: LUKS2 config.json_size %" PRIu64 " does "
                      "not match the binary header's %" PRIu64,
                      c->src, js, json_size);
  if (*keyslots_size % 4096)
    return error_set (-EINVAL,
                      "%s: LUKS2 config.keyslots_size %" PRIu64
                      " is not a multiple of 4096",
                      c->src, *keyslots_size);
  if (json_object_object_get_ex (config, "requirements", &req)) {
    if (json_object_is_type (req, json_type_array))
      mandatory = req;
    else if (json_object_is_type (req, json_type_object))
      json_object_object_get_ex (req, "mandatory", &mandatory);
    if (mandatory && !json_object_is_type (mandatory, json_type_array))
      return missing (c, "config.requirements", "mandatory", "an array");
    for (size_t i = 0; mandatory && i < json_object_array_length (mandatory);
         i++) {
      const char *name =
        json_object_get_string (json_object_array_get_idx (mandatory, i));
      if (name && strstr (name, "reencrypt"))
        return error_set (-EBUSY,
                          "%s: LUKS2 requirement '%s': reencryption "
                          "is in progress; finish it with cryptsetup first",
                          c->src, name);
      return error_set (-ENOTSUP,
                        "%s: LUKS2 unknown mandatory requirement "
                        "'%s'",
                        c->src, name ? name : "(null)");
    }
  }
  return 0;
}

/* The one data segment; fills sector size, offsets and iv_tweak.
 * Returns its key ("0") in *seg_key. */
static int
parse_segment (const struct ctx *c, json_object *root, const char **seg_key,
               const char **encryption)
{
  struct luks_header *hdr = c->hdr;
  json_object *segments, *seg = NULL, *tmp;
  const char *type, *size;
  int64_t sector_size;
  uint64_t end;
  int r, n = 0;

  r = get_typed (c, root, "", "segments", json_type_object, "an object",
                 &segments);
  if (r < 0)
    return r;
  json_object_object_foreach (segments, key, val)
  {
    n++;
    *seg_key = key;
    seg = val;
  }
  if (n != 1)
    return error_set (-ENOTSUP,
                      "%s: LUKS2 has %d data segments; only one "
                      "is supported (is a reencryption unfinished?)",
                      c->src, n);
  if (!json_object_is_type (seg, json_type_object))
    return missing (c, "segments", *seg_key, "an object");
  if ((r = get_string (c, seg, "segments.N", "type", &type)) < 0)
    return r;
  if (strcmp (type, "crypt") != 0)
    return error_set (-ENOTSUP,
                      "%s: LUKS2 segment type '%s' is not "
                      "supported (only crypt)",
                      c->src, type);
  if (json_object_object_get_ex (seg, "integrity", &tmp))
    return error_set (-ENOTSUP,
                      "%s: LUKS2 segment with integrity "
                      "(dm-integrity) is not supported",
                      c->src);
  if ((r = get_u64 (c, seg, "segments.N", "offset", &hdr->payload_offset)) <
        0 ||
      (r = get_u64 (c, seg, "segments.N", "iv_tweak", &hdr->iv_tweak)) < 0 ||
      (r = get_string (c, seg, "segments.N", "encryption", encryption)) < 0 ||
      (r = get_string (c, seg, "segments.N", "size", &size)) < 0 ||
      (r = get_int (c, seg, "segments.N", "sector_size", SECTOR_SIZE_MIN,
                    SECTOR_SIZE_MAX, &sector_size)) < 0)
    return r;
  if (!is_power_of_2 ((uint64_t) sector_size))
    return error_set (
      -EINVAL, "%s: LUKS2 segment sector_size %" PRId64 " is not a power of 2",
      c->src, sector_size);
  hdr->sector_size = (uint32_t) sector_size;
  if (strcmp (size, "dynamic") == 0)
    hdr->payload_size = 0;
  else {
    if ((r = get_u64 (c, seg, "segments.N", "size", &hdr->payload_size)) < 0)
      return r;
    if (hdr->payload_size == 0 || hdr->payload_size % hdr->sector_size)
      return error_set (-EINVAL,
                        "%s: LUKS2 segment size %" PRIu64 " is not a "
                        "positive multiple of sector_size",
                        c->src, hdr->payload_size);
  }
  if (hdr->payload_offset % LUKS_SECTOR)
    return error_set (-EINVAL,
                      "%s: LUKS2 segment offset %" PRIu64 " is not "
                      "aligned to 512 bytes",
                      c->src, hdr->payload_offset);
  if (ckd_add_u64 (&end, hdr->payload_offset, hdr->payload_size) ||
      end > INT64_MAX)
    return error_set (-EINVAL, "%s: LUKS2 segment offset+size overflows",
                      c->src);
  /* An attached data segment must not overlap the metadata. */
  if (hdr->payload_offset && hdr->payload_offset < c->keyslots_end)
    return error_set (-EINVAL,
                      "%s: LUKS2 segment offset %" PRIu64 " overlaps "
                      "the header and keyslots area (ends at %" PRIu64 ")",
                      c->src, hdr->payload_offset, c->keyslots_end);
  return 0;
}

static bool
array_has (json_object *arr, const char *s)
{
  for (size_t i = 0; i < json_object_array_length (arr); i++) {
    const char *v = json_object_get_string (json_object_array_get_idx (arr, i));
    if (v && strcmp (v, s) == 0)
      return true;
  }
  return false;
}

/* The pbkdf2 digest bound to the segment; *slots is its keyslot list. */
static int
parse_digest (const struct ctx *c, json_object *root, const char *seg_key,
              json_object **slots)
{
  struct luks_header *hdr = c->hdr;
  json_object *digests, *segs, *dig = NULL;
  const char *type, *hash, *dig_key = NULL;
  int64_t iter;
  int r;

  r =
    get_typed (c, root, "", "digests", json_type_object, "an object", &digests);
  if (r < 0)
    return r;
  json_object_object_foreach (digests, key, val)
  {
    if (json_object_is_type (val, json_type_object) &&
        json_object_object_get_ex (val, "segments", &segs) &&
        json_object_is_type (segs, json_type_array) &&
        array_has (segs, seg_key)) {
      dig = val;
      dig_key = key;
    }
  }
  if (!dig)
    return error_set (-EINVAL, "%s: LUKS2 no digest covers segment %s", c->src,
                      seg_key);
  if ((r = get_string (c, dig, "digests.N", "type", &type)) < 0)
    return r;
  if (strcmp (type, "pbkdf2") != 0)
    return error_set (-ENOTSUP, "%s: LUKS2 digest type '%s' is not supported",
                      c->src, type);
  if ((r = get_typed (c, dig, "digests.N", "keyslots", json_type_array,
                      "an array", slots)) < 0 ||
      (r = get_string (c, dig, "digests.N", "hash", &hash)) < 0 ||
      (r = get_int (c, dig, "digests.N", "iterations", 0, UINT32_MAX, &iter)) <
        0 ||
      (r = get_base64 (c, dig, "digests.N", "salt", hdr->digest_salt,
                       sizeof hdr->digest_salt, &hdr->digest_salt_len)) < 0 ||
      (r = get_base64 (c, dig, "digests.N", "digest", hdr->digest,
                       sizeof hdr->digest, &hdr->digest_len)) < 0)
    return r;
  hdr->digest_md = hash_lookup (hash, "digests.N.hash");
  if (hdr->digest_md < 0)
    return error_prefix (hdr->digest_md, "%s", c->src);
  /* cryptsetup stores the whole hash; a shorter digest would let a wrong
   * passphrase through (1 in 256 for one byte) with a garbage key. */
  if (hdr->digest_len != hash_length (hdr->digest_md))
    return error_set (-EINVAL,
                      "%s: LUKS2 digests.%.16s.digest is %zu bytes, not the "
                      "%zu of its hash %s",
                      c->src, dig_key, hdr->digest_len,
                      hash_length (hdr->digest_md), hash);
  hdr->digest_iterations = (uint32_t) iter;
  snprintf (hdr->digest_id, sizeof hdr->digest_id, "%.16s", dig_key);
  snprintf (hdr->digest_field, sizeof hdr->digest_field,
            "digests.%.16s.iterations", dig_key);
  return 0;
}

static int
parse_kdf (const struct ctx *c, json_object *kdf, const char *path,
           struct kdf_params *p)
{
  const char *type, *hash;
  int64_t v;
  int r;

  if ((r = get_string (c, kdf, path, "type", &type)) < 0 ||
      (r = get_base64 (c, kdf, path, "salt", p->salt, sizeof p->salt,
                       &p->salt_len)) < 0)
    return r;
  if (strcmp (type, "pbkdf2") == 0) {
    p->type = KDF_PBKDF2;
    if ((r = get_string (c, kdf, path, "hash", &hash)) < 0 ||
        (r = get_int (c, kdf, path, "iterations", 0, UINT32_MAX, &v)) < 0)
      return r;
    p->iterations = (uint32_t) v;
    p->md_algo = hash_lookup (hash, "kdf.hash");
    if (p->md_algo < 0)
      return error_prefix (p->md_algo, "%s: %s", c->src, path);
  } else if (strcmp (type, "argon2i") == 0 || strcmp (type, "argon2id") == 0) {
    p->type = type[6] == 'i' && type[7] == 'd' ? KDF_ARGON2ID : KDF_ARGON2I;
    /* Only the type's range here: the bounds are checked with every
     * other KDF's in one place (header.c). */
    if ((r = get_int (c, kdf, path, "time", 0, UINT32_MAX, &v)) < 0)
      return r;
    p->iterations = (uint32_t) v;
    if ((r = get_int (c, kdf, path, "memory", 0, UINT32_MAX, &v)) < 0)
      return r;
    p->memory_kib = (uint32_t) v;
    if ((r = get_int (c, kdf, path, "cpus", 0, UINT32_MAX, &v)) < 0)
      return r;
    p->parallel = (uint32_t) v;
  } else
    return error_set (-ENOTSUP, "%s: LUKS2 %s.type '%s' is not supported",
                      c->src, path, type);
  return 0;
}

static int
parse_keyslot (const struct ctx *c, const char *key, json_object *js,
               int64_t *key_size)
{
  struct luks_header *hdr = c->hdr;
  struct luks_keyslot *ks = &hdr->slots[hdr->nslots];
  json_object *af, *area, *kdf, *prio;
  const char *type, *s;
  char path[48], afp[56], areap[56];
  char *end;
  long id = strtol (key, &end, 10);
  int64_t v;
  int r;

  snprintf (path, sizeof path, "keyslots.%.16s", key);
  snprintf (afp, sizeof afp, "%s.af", path);
  snprintf (areap, sizeof areap, "%s.area", path);
  /* Canonical decimal only ("1", never "01", " 1" or "+1"), so that two
   * keys cannot name the same slot. */
  if (*end || end == key || key[0] < '0' || key[0] > '9' ||
      (key[0] == '0' && key[1]) || id < 0 || id >= LUKS_KEYSLOTS_MAX)
    return error_set (-EINVAL,
                      "%s: LUKS2 keyslot id '%.16s' is not a number 0..%d "
                      "in canonical form",
                      c->src, key, LUKS_KEYSLOTS_MAX - 1);
  memset (ks, 0, sizeof *ks);
  ks->id = (int) id;
  if (!json_object_is_type (js, json_type_object))
    return missing (c, "keyslots", key, "an object");
  if ((r = get_string (c, js, path, "type", &type)) < 0)
    return r;
  if (strcmp (type, "reencrypt") == 0)
    return error_set (-EBUSY,
                      "%s: LUKS2 %s is a reencrypt keyslot: "
                      "reencryption is in progress",
                      c->src, path);
  if (strcmp (type, "luks2") != 0)
    return error_set (-ENOTSUP, "%s: LUKS2 %s.type '%s' is not supported",
                      c->src, path, type);
  if ((r = get_int (c, js, path, "key_size", 1, CIPHER_KEY_MAX, key_size)) < 0)
    return r;
  ks->priority = PRIORITY_NORMAL;
  if (json_object_object_get_ex (js, "priority", &prio)) {
    if ((r = get_int (c, js, path, "priority", 0, 2, &v)) < 0)
      return r;
    ks->priority = (enum keyslot_priority) v;
  }

  /* af */
  if ((r = get_typed (c, js, path, "af", json_type_object, "an object", &af)) <
        0 ||
      (r = get_string (c, af, afp, "type", &type)) < 0)
    return r;
  if (strcmp (type, "luks1") != 0)
    return error_set (-ENOTSUP, "%s: LUKS2 %s.af.type '%s' is not supported",
                      c->src, path, type);
  if ((r = get_int (c, af, afp, "stripes", 1, LUKS_STRIPES_MAX, &v)) < 0 ||
      (r = get_string (c, af, afp, "hash", &s)) < 0)
    return r;
  ks->stripes = (uint32_t) v;
  ks->af_md = hash_lookup (s, "af.hash");
  if (ks->af_md < 0)
    return error_prefix (ks->af_md, "%s: %s", c->src, path);

  /* area */
  if ((r = get_typed (c, js, path, "area", json_type_object, "an object",
                      &area)) < 0 ||
      (r = get_string (c, area, areap, "type", &type)) < 0)
    return r;
  if (strcmp (type, "raw") != 0)
    return error_set (-ENOTSUP, "%s: LUKS2 %s.area.type '%s' is not supported",
                      c->src, path, type);
  if ((r = get_u64 (c, area, areap, "offset", &ks->area_offset)) < 0 ||
      (r = get_u64 (c, area, areap, "size", &ks->area_size)) < 0 ||
      (r = get_string (c, area, areap, "encryption", &s)) < 0 ||
      (r = get_int (c, area, areap, "key_size", 1, CIPHER_KEY_MAX, &v)) < 0)
    return r;
  ks->derived_bytes = (size_t) v;
  r = cipher_spec_parse_joined (s, ks->derived_bytes, "area.encryption",
                                &ks->area_cipher);
  if (r < 0)
    return error_prefix (r, "%s: %s", c->src, path);

  if ((r = get_typed (c, js, path, "kdf", json_type_object, "an object",
                      &kdf)) < 0)
    return r;
  snprintf (path, sizeof path, "keyslots.%.16s.kdf", key);
  snprintf (ks->kdf_field, sizeof ks->kdf_field, "%s", path);
  snprintf (ks->iter_field, sizeof ks->iter_field, "%s.iterations", path);
  return parse_kdf (c, kdf, path, &ks->kdf);
}

static int
parse_keyslots (const struct ctx *c, json_object *root, json_object *bound)
{
  struct luks_header *hdr = c->hdr;
  json_object *keyslots;
  int64_t key_size = 0;
  int r;

  r = get_typed (c, root, "", "keyslots", json_type_object, "an object",
                 &keyslots);
  if (r < 0)
    return r;
  /* Every keyslot the digest names must exist. */
  for (size_t i = 0; i < json_object_array_length (bound); i++) {
    const char *name =
      json_object_get_string (json_object_array_get_idx (bound, i));
    json_object *tmp;
    if (!name || !json_object_object_get_ex (keyslots, name, &tmp))
      return error_set (-EINVAL,
                        "%s: LUKS2 digest names keyslot %s, which "
                        "does not exist",
                        c->src, name ? name : "(null)");
  }
  json_object_object_foreach (keyslots, key, val)
  {
    int64_t ks_size;
    if (hdr->nslots >= LUKS_KEYSLOTS_MAX)
      return error_set (-EINVAL, "%s: LUKS2 more than %d keyslots", c->src,
                        LUKS_KEYSLOTS_MAX);
    r = parse_keyslot (c, key, val, &ks_size);
    if (r < 0)
      return r;
    /* Slots not bound to the segment's digest hold other keys. */
    if (!array_has (bound, key))
      continue;
    if (key_size && ks_size != key_size)
      return error_set (-EINVAL,
                        "%s: LUKS2 keyslots.%s.key_size %" PRId64
                        " differs from the other keyslots' %" PRId64,
                        c->src, key, ks_size, key_size);
    key_size = ks_size;
    hdr->key_bytes = (size_t) key_size;
    r = luks_check_keyslot_area (hdr, &hdr->slots[hdr->nslots],
                                 c->keyslots_start, c->keyslots_end);
    if (r < 0)
      return r;
    hdr->nslots++;
  }
  if (hdr->nslots == 0)
    return error_set (-ENOENT,
                      "%s: LUKS2 header has no keyslot for the data "
                      "segment",
                      c->src);
  return 0;
}

/* An upper bound on the values in json: separators and openers outside
 * strings, plus one. */
static size_t
count_values (const char *json)
{
  size_t n = 1;
  bool in_string = false;

  for (const char *p = json; *p; p++) {
    if (in_string) {
      if (*p == '\\' && p[1])
        p++;
      else if (*p == '"')
        in_string = false;
    } else if (*p == '"')
      in_string = true;
    else if (*p == ',' || *p == '[' || *p == '{')
      n++;
  }
  return n;
}

int
luks2_json_parse (const char *json, uint64_t json_size, uint64_t hdr_size,
                  struct luks_header *hdr)
{
  struct ctx c = { .src = hdr->src.name, .hdr = hdr };
  json_tokener *tok = json_tokener_new_ex (JSON_MAX_DEPTH);
  json_object *root = NULL, *bound;
  const char *seg_key = NULL, *encryption = NULL;
  uint64_t keyslots_size;
  size_t len = strlen (json);
  int r;

  if (!tok)
    return error_set (-ENOMEM, "out of memory");
  if (count_values (json) > JSON_MAX_VALUES) {
    r = error_set (-EINVAL, "%s: LUKS2 JSON has more than %d values", c.src,
                   JSON_MAX_VALUES);
    goto out;
  }
  root = json_tokener_parse_ex (tok, json, (int) len);
  if (!root || json_tokener_get_error (tok) != json_tokener_success) {
    r = error_set (-EINVAL, "%s: LUKS2 JSON does not parse: %s", c.src,
                   json_tokener_error_desc (json_tokener_get_error (tok)));
    goto out;
  }
  if (json_tokener_get_parse_end (tok) != len) {
    r = error_set (-EINVAL,
                   "%s: LUKS2 JSON has trailing bytes after the "
                   "object",
                   c.src);
    goto out;
  }
  if (!json_object_is_type (root, json_type_object)) {
    r = error_set (-EINVAL, "%s: LUKS2 JSON is not an object", c.src);
    goto out;
  }
  if ((r = parse_config (&c, root, json_size, &keyslots_size)) < 0)
    goto out;
  c.keyslots_start = 2 * hdr_size;
  if (ckd_add_u64 (&c.keyslots_end, c.keyslots_start, keyslots_size)) {
    r = error_set (-EINVAL, "%s: LUKS2 keyslots_size overflows", c.src);
    goto out;
  }
  hdr->keyslots_start = c.keyslots_start;
  hdr->keyslots_end = c.keyslots_end;
  if ((r = parse_segment (&c, root, &seg_key, &encryption)) < 0 ||
      (r = parse_digest (&c, root, seg_key, &bound)) < 0 ||
      (r = parse_keyslots (&c, root, bound)) < 0)
    goto out;
  r = cipher_spec_parse_joined (encryption, hdr->key_bytes,
                                "segments.encryption", &hdr->cipher);
  if (r < 0)
    r = error_prefix (r, "%s", c.src);

out:
  json_object_put (root);
  json_tokener_free (tok);
  return r;
}
