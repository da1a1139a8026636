/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Proves that hostile headers are refused with a clear error and never
 * crash: a table of broken headers, each made by changing one field of a
 * good cryptsetup-made LUKS1 or LUKS2 header (argv[1], argv[2]; argv[3] is
 * the passphrase).  LUKS2 JSON edits get their checksums recomputed (both
 * copies), as cryptsetup's own fuzzer does, so they reach the JSON checks.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gcrypt.h>

#include "common/byteorder.h"
#include "common/error_msg.h"
#include "crypto/luks.h"
#include "tests/lib/tap.h"

struct image {
  unsigned char *buf;
  size_t len;
};

static int
mem_read (void *opaque, void *buf, size_t count, uint64_t offset)
{
  const struct image *img = opaque;

  if (offset > img->len || count > img->len - offset)
    return error_set (-EIO, "short read");
  memcpy (buf, img->buf + offset, count);
  return 0;
}

static struct image
load (const char *path)
{
  struct image img = { 0 };
  struct stat st;
  int fd = open (path, O_RDONLY);

  if (fd < 0 || fstat (fd, &st) < 0) {
    printf ("Bail out! cannot open %s\n", path);
    exit (1);
  }
  img.len = (size_t) st.st_size;
  img.buf = malloc (img.len);
  if (!img.buf || read (fd, img.buf, img.len) != (ssize_t) img.len) {
    printf ("Bail out! cannot read %s\n", path);
    exit (1);
  }
  close (fd);
  return img;
}

static struct image
copy (const struct image *src)
{
  struct image img = { malloc (src->len), src->len };
  memcpy (img.buf, src->buf, src->len);
  return img;
}

/* --- LUKS2 editing -------------------------------------------------- */

static void
luks2_rechecksum (unsigned char *hdr)
{
  uint64_t size = load_be64 (hdr + 8);
  memset (hdr + 448, 0, 64);
  gcry_md_hash_buffer (GCRY_MD_SHA256, hdr + 448, hdr, size);
}

/* MANY: `from` becomes an array of 100000 ones (for the value count). */
enum edit { FIRST, ALL, WHOLE, APPEND, FILL, MANY };

/* Edits the JSON of both copies and fixes their checksums. */
static void
luks2_edit_json (struct image *img, enum edit how, const char *from,
                 const char *to)
{
  uint64_t hdr_size = load_be64 (img->buf + 8);

  for (int copy_no = 0; copy_no < 2; copy_no++) {
    unsigned char *h = img->buf + copy_no * hdr_size;
    char *json = (char *) h + 4096;
    size_t area = hdr_size - 4096;
    char *out = calloc (1, area + 1);
    char *p = json;

    switch (how) {
    case WHOLE: strcpy (out, to); break;
    case APPEND:
      strcpy (out, json);
      strcat (out, to);
      break;
    case FILL: memset (out, 'a', area); break;
    case MANY: {
      char *hit = strstr (json, from), *o = out;
      if (!hit || strlen (json) + 200010 > area)
        break;
      memcpy (o, json, (size_t) (hit - json));
      o += hit - json;
      *o++ = '[';
      for (int i = 0; i < 100000; i++) {
        if (i)
          *o++ = ',';
        *o++ = '1';
      }
      *o++ = ']';
      strcpy (o, hit + strlen (from));
      break;
    }
    case FIRST:
    case ALL:
      for (char *hit; (hit = strstr (p, from));) {
        strncat (out, p, (size_t) (hit - p));
        strcat (out, to);
        p = hit + strlen (from);
        if (how == FIRST)
          break;
      }
      strcat (out, p);
      break;
    }
    memcpy (json, out, area);
    free (out);
    luks2_rechecksum (h);
  }
}

/* --- the table ------------------------------------------------------ */

struct row {
  const char *name;
  int version; /* 1, 2, or 3: LUKS2 with nine keyslots */
  void (*luks1_edit) (unsigned char *phdr);
  enum edit how;
  const char *from, *to; /* LUKS2 JSON edit */
  const char *expect;    /* substring of the error (or warning) */
};

static void
l1_magic (unsigned char *p)
{
  p[0] = 'X';
}
static void
l1_version (unsigned char *p)
{
  store_be16 (p + 6, 3);
}
static void
l1_cipher_unterminated (unsigned char *p)
{
  memset (p + 8, 'a', 32);
}
static void
l1_cipher_unknown (unsigned char *p)
{
  memset (p + 8, 0, 32);
  strcpy ((char *) p + 8, "rot13");
}
static void
l1_ivgen_unknown (unsigned char *p)
{
  memset (p + 40, 0, 32);
  strcpy ((char *) p + 40, "xts-lmk");
}
static void
l1_hash_unknown (unsigned char *p)
{
  memset (p + 72, 0, 32);
  strcpy ((char *) p + 72, "md4");
}
static void
l1_cipher_null (unsigned char *p)
{
  memset (p + 8, 0, 64);
  strcpy ((char *) p + 8, "cipher_null");
  strcpy ((char *) p + 40, "ecb");
}
static void
l1_key_33 (unsigned char *p)
{
  store_be32 (p + 108, 33);
}
static void
l1_key_huge (unsigned char *p)
{
  store_be32 (p + 108, 4096);
}
static void
l1_mk_iter_0 (unsigned char *p)
{
  store_be32 (p + 164, 0);
}
static void
l1_mk_iter_max (unsigned char *p)
{
  store_be32 (p + 164, 0xffffffff);
}
static void
l1_mk_iter_above (unsigned char *p)
{
  store_be32 (p + 164, (1u << 22) + 1);
}
static void
l1_iter_max (unsigned char *p)
{
  store_be32 (p + 208 + 4, 0xffffffff);
}
static void
l1_active_garbage (unsigned char *p)
{
  store_be32 (p + 208, 0x12345678);
}
static void
l1_iter_0 (unsigned char *p)
{
  store_be32 (p + 208 + 4, 0);
}
static void
l1_stripes_0 (unsigned char *p)
{
  store_be32 (p + 208 + 44, 0);
}
static void
l1_stripes_huge (unsigned char *p)
{
  store_be32 (p + 208 + 44, 0xffffffff);
}
static void
l1_material_past_eof (unsigned char *p)
{
  store_be32 (p + 208 + 40, 0x00ffffff);
}
static void
l1_slots_overlap (unsigned char *p)
{
  memcpy (p + 208 + 48, p + 208, 48);
}
static void
l1_payload_overlaps (unsigned char *p)
{
  store_be32 (p + 104, 1);
}

static const struct row rows[] = {
  { "LUKS1 bad magic", 1, l1_magic, 0, 0, 0, "not a LUKS header (bad magic)" },
  { "LUKS1 version 3", 1, l1_version, 0, 0, 0, "unsupported LUKS version 3" },
  { "LUKS1 cipherName unterminated", 1, l1_cipher_unterminated, 0, 0, 0,
    "field cipherName is not NUL-terminated" },
  { "LUKS1 unknown cipher", 1, l1_cipher_unknown, 0, 0, 0,
    "unsupported cipher 'rot13'" },
  { "LUKS1 unknown IV generator", 1, l1_ivgen_unknown, 0, 0, 0,
    "unsupported IV generator 'lmk'" },
  { "LUKS1 unknown hash", 1, l1_hash_unknown, 0, 0, 0,
    "unsupported hash 'md4'" },
  { "LUKS1 cipher_null", 1, l1_cipher_null, 0, 0, 0, "cipher_null is refused" },
  { "LUKS1 key size 33", 1, l1_key_33, 0, 0, 0,
    "xts needs an even key size, not 33 bytes" },
  { "LUKS1 key size 4096", 1, l1_key_huge, 0, 0, 0,
    "key size 4096 bytes outside 1..512" },
  { "LUKS1 mkDigestIterations 0", 1, l1_mk_iter_0, 0, 0, 0,
    "hdr: mkDigestIterations 0 is below 1" },
  { "LUKS1 mkDigestIterations 2^32-1 refused, never run", 1, l1_mk_iter_max, 0,
    0, 0, "hdr: mkDigestIterations 4294967295 exceeds 4194304" },
  { "LUKS1 mkDigestIterations just above the bound", 1, l1_mk_iter_above, 0, 0,
    0, "hdr: mkDigestIterations 4194305 exceeds 4194304" },
  { "LUKS1 keyslot active garbage", 1, l1_active_garbage, 0, 0, 0,
    "keyslot 0: active field 0x12345678" },
  { "LUKS1 keyslot iterations 0", 1, l1_iter_0, 0, 0, 0,
    "hdr: keyslot 0 passwordIterations 0 is below 1" },
  { "LUKS1 keyslot iterations 2^32-1 refused, never run", 1, l1_iter_max, 0, 0,
    0, "hdr: keyslot 0 passwordIterations 4294967295 exceeds 134217728" },
  { "LUKS1 keyslot stripes 0", 1, l1_stripes_0, 0, 0, 0,
    "keyslot 0: stripes 0 outside 1..4000" },
  { "LUKS1 keyslot stripes 2^32-1", 1, l1_stripes_huge, 0, 0, 0,
    "keyslot 0: stripes 4294967295 outside 1..4000" },
  { "LUKS1 key material past EOF", 1, l1_material_past_eof, 0, 0, 0,
    "keyslot 0: area 8589934080+256000 lies outside the keyslots area" },
  { "LUKS1 keyslots overlap", 1, l1_slots_overlap, 0, 0, 0,
    "keyslot 1: area overlaps keyslot 0" },
  { "LUKS1 payloadOffset inside keyslots", 1, l1_payload_overlaps, 0, 0, 0,
    "payloadOffset 1 overlaps keyslot 0" },

  { "LUKS2 JSON not an object", 2, 0, WHOLE, 0, "[1,2,3]",
    "LUKS2 JSON is not an object" },
  { "LUKS2 JSON trailing bytes", 2, 0, APPEND, 0, " []", "trailing bytes" },
  { "LUKS2 JSON not NUL-terminated", 2, 0, FILL, 0, 0,
    "JSON area is not NUL-terminated" },
  { "LUKS2 JSON nested 100 deep", 2, 0, WHOLE, 0,
    "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
    "[[[[[[[[[[[[[[[[[[[[[[[[[[1"
    "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
    "]]]]]]]]]]]]]]]]]]]]]]}",
    "LUKS2 JSON does not parse" },
  { "LUKS2 uint64 string overflows", 2, 0, FIRST, "\"offset\":\"0\"",
    "\"offset\":\"99999999999999999999\"",
    "segments.N.offset '99999999999999999999' is not an unsigned 64-bit "
    "number" },
  { "LUKS2 uint64 string negative", 2, 0, FIRST, "\"iv_tweak\":\"0\"",
    "\"iv_tweak\":\"-1\"",
    "segments.N.iv_tweak '-1' is not an unsigned 64-bit number" },
  { "LUKS2 segment offset+size overflows", 2, 0, FIRST, "\"size\":\"dynamic\"",
    "\"size\":\"18446744073709547520\"", "segment offset+size overflows" },
  { "LUKS2 segment overlaps the metadata", 2, 0, FIRST, "\"offset\":\"0\"",
    "\"offset\":\"4096\"", "overlaps the header and keyslots area" },
  { "LUKS2 unknown segment cipher", 2, 0, FIRST,
    "\"encryption\":\"aes-xts-plain64\",\"sector_size\"",
    "\"encryption\":\"rot13-xts-plain64\",\"sector_size\"",
    "unsupported cipher 'rot13'" },
  { "LUKS2 cipher_null segment", 2, 0, FIRST,
    "\"encryption\":\"aes-xts-plain64\",\"sector_size\"",
    "\"encryption\":\"cipher_null-ecb\",\"sector_size\"",
    "cipher_null is refused" },
  { "LUKS2 sector_size 8192", 2, 0, FIRST, "\"sector_size\":4096",
    "\"sector_size\":8192", "sector_size 8192 outside 512..4096" },
  { "LUKS2 key size 33", 2, 0, ALL, "\"key_size\":64", "\"key_size\":33",
    "xts needs an even key size, not 33 bytes" },
  { "LUKS2 stripes 0", 2, 0, FIRST, "\"stripes\":4000", "\"stripes\":0",
    "stripes 0 outside 1..4000" },
  { "LUKS2 kdf iterations 0", 2, 0, FIRST, "\"iterations\":1000,\"salt\"",
    "\"iterations\":0,\"salt\"",
    "hdr: keyslots.0.kdf.iterations 0 is below 1" },
  { "LUKS2 pbkdf2 iterations 2^32-1 refused, never run", 2, 0, FIRST,
    "\"iterations\":1000,\"salt\"", "\"iterations\":4294967295,\"salt\"",
    "hdr: keyslots.0.kdf.iterations 4294967295 exceeds 134217728" },
  { "LUKS2 pbkdf2 iterations 2^32 is not even a uint32", 2, 0, FIRST,
    "\"iterations\":1000,\"salt\"", "\"iterations\":4294967296,\"salt\"",
    "keyslots.0.kdf.iterations 4294967296 outside 0..4294967295" },
  { "LUKS2 digest iterations 2^32-1 refused, never run", 2, 0, FIRST,
    "\"segments\":[\"0\"],\"hash\":\"sha256\",\"iterations\":1000,",
    "\"segments\":[\"0\"],\"hash\":\"sha256\",\"iterations\":4294967295,",
    "hdr: digests.0.iterations 4294967295 exceeds 4194304" },
  { "LUKS2 argon2 time 2^32-1", 2, 0, FIRST,
    "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,",
    "\"kdf\":{\"type\":\"argon2id\",\"time\":4294967295,\"memory\":8,"
    "\"cpus\":1,",
    "hdr: keyslots.0.kdf.time 4294967295 exceeds 1048576" },
  { "LUKS2 argon2 time x memory above the bound", 2, 0, FIRST,
    "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,",
    "\"kdf\":{\"type\":\"argon2id\",\"time\":1000,\"memory\":4194304,"
    "\"cpus\":4,",
    "hdr: keyslots.0.kdf.time x memory 4194304000 KiB exceeds 33554432" },
  { "LUKS2 argon2 memory 0", 2, 0, FIRST,
    "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,",
    "\"kdf\":{\"type\":\"argon2i\",\"time\":4,\"memory\":0,\"cpus\":1,",
    "hdr: keyslots.0.kdf.memory 0 KiB is below 8" },
  { "LUKS2 nine keyslots each at the pbkdf2 bound", 3, 0, ALL,
    "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,",
    "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":"
    "134217728,",
    "hdr: the keyslots' KDF costs add up to 9.00 times the bound for one "
    "keyslot, more than 4" },
  { "LUKS2 argon2 memory above the cap", 2, 0, FIRST,
    "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,",
    "\"kdf\":{\"type\":\"argon2id\",\"time\":4,\"memory\":5000000,\"cpus\":1,",
    "hdr: keyslots.0.kdf.memory 5000000 KiB exceeds 4194304" },
  { "LUKS2 argon2 cpus 64", 2, 0, FIRST,
    "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,",
    "\"kdf\":{\"type\":\"argon2id\",\"time\":4,\"memory\":65536,\"cpus\":64,",
    "hdr: keyslots.0.kdf.cpus 64 exceeds 4" },
  { "LUKS2 keyslot areas overlap", 2, 0, FIRST, "\"offset\":\"290816\"",
    "\"offset\":\"32768\"", "area overlaps keyslot 0" },
  { "LUKS2 keyslot area outside keyslots_size", 2, 0, FIRST,
    "\"offset\":\"290816\"", "\"offset\":\"999999488\"",
    "lies outside the keyslots area" },
  { "LUKS2 digest names a missing keyslot", 2, 0, FIRST,
    "\"keyslots\":[\"0\",\"1\"]", "\"keyslots\":[\"0\",\"1\",\"7\"]",
    "digest names keyslot 7, which does not exist" },
  { "LUKS2 online-reencrypt requirement", 2, 0, FIRST, "\"config\":{",
    "\"config\":{\"requirements\":{\"mandatory\":[\"online-reencrypt-v2\"]},",
    "reencryption is in progress" },
  { "LUKS2 unknown mandatory requirement", 2, 0, FIRST, "\"config\":{",
    "\"config\":{\"requirements\":{\"mandatory\":[\"fancy-feature\"]},",
    "unknown mandatory requirement 'fancy-feature'" },
  { "LUKS2 reencrypt keyslot", 2, 0, FIRST, "\"type\":\"luks2\"",
    "\"type\":\"reencrypt\"", "is a reencrypt keyslot" },
  { "LUKS2 two data segments", 2, 0, FIRST, "\"segments\":{\"0\":{",
    "\"segments\":{\"1\":{\"type\":\"linear\",\"offset\":\"0\",\"size\":"
    "\"dynamic\"},\"0\":{",
    "has 2 data segments" },
  { "LUKS2 integrity segment", 2, 0, FIRST, "\"sector_size\":4096}",
    "\"sector_size\":4096,\"integrity\":{\"type\":\"hmac(sha256)\"}}",
    "integrity (dm-integrity) is not supported" },
  { "LUKS2 JSON with 100000 values", 3, 0, MANY, "{}", 0,
    "LUKS2 JSON has more than 16384 values" },
  /* Slot 1 renamed everywhere ("1" is only its key and in the digest's
   * list): e8be15f read either as slot 1. */
  { "LUKS2 keyslot id '01' (two keys could name one slot)", 2, 0, ALL, "\"1\"",
    "\"01\"", "LUKS2 keyslot id '01' is not a number 0..31 in canonical form" },
  { "LUKS2 keyslot id '+1'", 2, 0, ALL, "\"1\"", "\"+1\"",
    "LUKS2 keyslot id '+1' is not a number 0..31 in canonical form" },
  { "LUKS2 digest of 1 byte (a wrong passphrase would pass 1 in 256)", 2, 0,
    FIRST, "\"digest\":\"", "\"digest\":\"AA==\",\"x\":\"",
    "LUKS2 digests.0.digest is 1 bytes, not the 32 of its hash sha256" },
  { "LUKS2 json_size disagrees", 2, 0, FIRST, "\"json_size\":\"12288\"",
    "\"json_size\":\"4096\"", "config.json_size 4096 does not match" },
};

static void
luks2_binary_edit (struct image *img, const char *name)
{
  uint64_t hdr_size = load_be64 (img->buf + 8);

  if (strcmp (name, "primary") == 0)
    img->buf[hdr_size - 1] ^= 1; /* inside the primary's JSON padding */
  else if (strcmp (name, "secondary") == 0)
    img->buf[2 * hdr_size - 1] ^= 1;
  else if (strcmp (name, "both") == 0) {
    img->buf[hdr_size - 1] ^= 1;
    img->buf[2 * hdr_size - 1] ^= 1;
  } else if (strcmp (name, "secondary_size") == 0) {
    store_be64 (img->buf + hdr_size + 8, 2 * hdr_size);
    luks2_rechecksum (img->buf + hdr_size);
  } else if (strcmp (name, "hdr_size") == 0) {
    store_be64 (img->buf + 8, 12345);
    store_be64 (img->buf + hdr_size + 8, 12345);
  }
}

static int
try_open (struct image *img, struct luks_header **hdr)
{
  struct luks_source src = {
    .read = mem_read, .opaque = img, .size = img->len, .name = "hdr"
  };
  error_clear ();
  return luks_header_open (&src, hdr);
}

static void
expect_refused (struct image *img, const char *name, const char *expect)
{
  struct luks_header *hdr = NULL;
  int r = try_open (img, &hdr);

  ok (r < 0 && strstr (error_message (), expect), "%s: refused", name);
  if (r == 0 || !strstr (error_message (), expect))
    printf ("#   r=%d message: %s\n#   expected: %s\n", r, error_message (),
            expect);
  luks_header_free (hdr);
}

static void
expect_opens_with_warning (struct image *img, const char *name,
                           const char *expect, const char *pass, size_t plen)
{
  struct luks_header *hdr = NULL;
  struct luks_header_info info;
  struct luks_volume *vol = NULL;
  int r = try_open (img, &hdr);

  ok (r == 0, "%s: opens (%s)", name, r ? error_message () : "");
  if (r)
    return;
  luks_header_info (hdr, &info);
  ok (info.warning && strstr (info.warning, expect), "%s: warns '%s'", name,
      info.warning ? info.warning : "(none)");
  ok (luks_unlock (hdr, pass, plen, -1, &vol) == 0, "%s: still unlocks", name);
  luks_volume_free (vol);
  luks_header_free (hdr);
}

/* Byte offset of keyslot 0's key material. */
static size_t
slot0_area (const struct image *img)
{
  if (load_be16 (img->buf + 6) == 1)
    return (size_t) load_be32 (img->buf + 208 + 40) * 512;
  const char *a = strstr ((char *) img->buf + 4096, "\"area\":{");
  const char *o = a ? strstr (a, "\"offset\":\"") : NULL;
  return o ? strtoul (o + 10, NULL, 10) : 0;
}

/* A key unlocked before is reused only while the header and passphrase
 * vouch for it: same metadata, same keyslot bytes, same passphrase. */
static void
check_reuse (const struct image *good, int v, const struct image *key)
{
  struct image img = copy (good);
  struct luks_header *hdr = NULL;
  struct luks_volume *vol = NULL, *again = NULL;
  bool reused = false;
  int r;

  if (try_open (&img, &hdr) < 0 ||
      luks_unlock (hdr, key->buf, key->len, -1, &vol) < 0) {
    printf ("Bail out! LUKS%d good header: %s\n", v, error_message ());
    exit (1);
  }
  r = luks_unlock_reuse (hdr, key->buf, key->len, -1, vol, &again, &reused);
  ok (r == 0 && reused && again == vol,
      "LUKS%d unchanged header: the cached key is reused", v);
  luks_volume_free (again);
  r = luks_unlock_reuse (hdr, "wrong", 5, -1, vol, &again, &reused);
  ok (r == -EPERM && !reused,
      "LUKS%d another passphrase never gets the cached key", v);
  luks_header_free (hdr);

  /* Metadata edited (the uuid, or the LUKS2 label), key still valid:
   * a full unlock, not the cached key. */
  if (v == 1)
    img.buf[168] ^= 1;
  else {
    uint64_t hs = load_be64 (img.buf + 8);
    img.buf[24] = img.buf[hs + 24] = 'x';
    luks2_rechecksum (img.buf);
    luks2_rechecksum (img.buf + hs);
  }
  r = try_open (&img, &hdr);
  if (r == 0)
    r = luks_unlock_reuse (hdr, key->buf, key->len, -1, vol, &again, &reused);
  ok (r == 0 && !reused && again != vol,
      "LUKS%d edited metadata: unlocked afresh, not from the cache (%s)", v,
      r ? error_message () : "");
  luks_volume_free (again);
  luks_header_free (hdr);
  free (img.buf);

  /* The keyslot's material changed under unchanged metadata: refused. */
  img = copy (good);
  img.buf[slot0_area (&img) + 100] ^= 1;
  r = try_open (&img, &hdr);
  if (r == 0)
    r = luks_unlock_reuse (hdr, key->buf, key->len, -1, vol, &again, &reused);
  ok (r == -EPERM && !reused,
      "LUKS%d changed keyslot material: the cached key is refused", v);
  luks_header_free (hdr);
  free (img.buf);
  luks_volume_free (vol);
}

int
main (int argc, char **argv)
{
  if (argc != 5 || luks_init () < 0) {
    printf ("Bail out! usage: test-bad-headers LUKS1 LUKS2 KEYFILE "
            "LUKS2-9-SLOTS\n");
    return 1;
  }
  /* good[3]: LUKS2 with nine keyslots (version 3 in the table). */
  struct image good[4] = {
    { 0 }, load (argv[1]), load (argv[2]), load (argv[4])
  };
  struct image key = load (argv[3]);
  struct luks_header *hdr;

  for (int v = 1; v <= 2; v++) {
    struct image img = copy (&good[v]);
    struct luks_volume *vol = NULL;
    ok (try_open (&img, &hdr) == 0, "LUKS%d good header opens", v);
    ok (luks_unlock (hdr, key.buf, key.len, -1, &vol) == 0,
        "LUKS%d good header unlocks", v);
    luks_volume_free (vol);
    ok (
      luks_unlock (hdr, "wrong", 5, -1, &vol) == -EPERM &&
        strstr (error_message (), "no key slot in hdr accepts this passphrase"),
      "LUKS%d wrong passphrase: one clear error", v);
    luks_header_free (hdr);
    free (img.buf);
  }

  check_reuse (&good[1], 1, &key);
  check_reuse (&good[2], 2, &key);

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const struct row *row = &rows[i];
    struct image img = copy (&good[row->version]);
    if (row->luks1_edit)
      row->luks1_edit (img.buf);
    else
      luks2_edit_json (&img, row->how, row->from, row->to);
    expect_refused (&img, row->name, row->expect);
    free (img.buf);
  }

  {
    struct image img = copy (&good[1]);
    img.len = 100;
    expect_refused (&img, "LUKS1 truncated to 100 bytes",
                    "too small for a LUKS header");
    free (img.buf);
  }
  static const struct {
    const char *edit, *name, *expect;
    bool opens;
  } bin[] = {
    { "primary", "LUKS2 primary checksum bad",
      "primary header is invalid (checksum mismatch); using the secondary copy",
      true },
    { "secondary", "LUKS2 secondary checksum bad",
      "secondary header is invalid (checksum mismatch); using the primary copy",
      true },
    { "both", "LUKS2 both checksums bad",
      "both LUKS2 header copies are invalid", false },
    { "secondary_size", "LUKS2 secondary of another (allowed) size",
      "secondary header is invalid (hdr_size 32768 differs from the "
      "primary's 16384); using the primary copy",
      true },
    { "hdr_size", "LUKS2 hdr_size not allowed",
      "hdr_size 12345 is not an allowed size", false },
  };
  for (size_t i = 0; i < sizeof bin / sizeof bin[0]; i++) {
    struct image img = copy (&good[2]);
    luks2_binary_edit (&img, bin[i].edit);
    if (bin[i].opens)
      expect_opens_with_warning (&img, bin[i].name, bin[i].expect,
                                 (char *) key.buf, key.len);
    else
      expect_refused (&img, bin[i].name, bin[i].expect);
    free (img.buf);
  }
  free (good[1].buf);
  free (good[2].buf);
  free (good[3].buf);
  free (key.buf);
  return tap_done ();
}
