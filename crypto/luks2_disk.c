/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: LUKS2 binary headers: both copies, checksums, which one wins. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "common/byteorder.h"
#include "common/error_msg.h"
#include "crypto/hash.h"
#include "crypto/header.h"

/* Offsets in the 4096-byte binary header; integers big-endian. */
enum {
  L2_VERSION = 6,
  L2_HDR_SIZE = 8,
  L2_SEQID = 16,
  L2_CSUM_ALG = 72,
  L2_CSUM_ALG_LEN = 32,
  L2_UUID = 168,
  L2_HDR_OFFSET = 256,
  L2_CSUM = 448,
  L2_CSUM_LEN = 64,
  L2_BINARY_SIZE = 4096,
};

/* The primary copy starts with luks_magic (header.c), the secondary with
 * its first four bytes reversed. */
static const uint8_t magic_2nd[] = { 'S', 'K', 'U', 'L', 0xba, 0xbe };

/* The only header sizes (binary + JSON) the specification allows. */
static const uint64_t allowed_hdr_sizes[] = {
  0x4000,  0x8000,   0x10000,  0x20000,  0x40000,
  0x80000, 0x100000, 0x200000, 0x400000,
};
#define N_HDR_SIZES (sizeof allowed_hdr_sizes / sizeof allowed_hdr_sizes[0])

struct copy {
  uint8_t *buf; /* hdr_size bytes, or NULL if invalid */
  uint64_t hdr_size;
  uint64_t seqid;
  char why[160]; /* why it is invalid */
};

static bool
hdr_size_allowed (uint64_t size)
{
  for (size_t i = 0; i < N_HDR_SIZES; i++)
    if (allowed_hdr_sizes[i] == size)
      return true;
  return false;
}

/* Reads and checks one copy at `offset`; on failure copy->why says why. */
static void
read_copy (const struct luks_header *hdr, uint64_t offset,
           const uint8_t magic[LUKS_MAGIC_BYTES], struct copy *c)
{
  uint8_t bin[L2_BINARY_SIZE], sum[L2_CSUM_LEN];
  char alg[L2_CSUM_ALG_LEN];
  int md, r;

  memset (c, 0, sizeof *c);
  if (offset + L2_BINARY_SIZE > hdr->src.size) {
    snprintf (c->why, sizeof c->why, "past the end of the file");
    return;
  }
  r = hdr->src.read (hdr->src.opaque, bin, sizeof bin, offset);
  if (r < 0) {
    snprintf (c->why, sizeof c->why, "read error: %s", error_message ());
    return;
  }
  if (memcmp (bin, magic, 6) != 0) {
    snprintf (c->why, sizeof c->why, "bad magic");
    return;
  }
  if (load_be16 (bin + L2_VERSION) != 2) {
    snprintf (c->why, sizeof c->why, "version %u is not 2",
              load_be16 (bin + L2_VERSION));
    return;
  }
  c->hdr_size = load_be64 (bin + L2_HDR_SIZE);
  if (!hdr_size_allowed (c->hdr_size)) {
    snprintf (c->why, sizeof c->why, "hdr_size %llu is not an allowed size",
              (unsigned long long) c->hdr_size);
    return;
  }
  if (load_be64 (bin + L2_HDR_OFFSET) != offset) {
    snprintf (c->why, sizeof c->why,
              "hdr_offset %llu does not match its "
              "position %llu",
              (unsigned long long) load_be64 (bin + L2_HDR_OFFSET),
              (unsigned long long) offset);
    return;
  }
  if (offset + c->hdr_size > hdr->src.size) {
    snprintf (c->why, sizeof c->why,
              "hdr_size %llu runs past the end of the "
              "file",
              (unsigned long long) c->hdr_size);
    return;
  }
  if (!memchr (bin + L2_CSUM_ALG, '\0', L2_CSUM_ALG_LEN)) {
    snprintf (c->why, sizeof c->why, "csum_alg is not NUL-terminated");
    return;
  }
  memcpy (alg, bin + L2_CSUM_ALG, sizeof alg);
  md = hash_lookup (alg, "csum_alg");
  if (md < 0 || hash_length (md) > L2_CSUM_LEN) {
    snprintf (c->why, sizeof c->why, "unsupported csum_alg '%.32s'", alg);
    return;
  }
  c->buf = malloc (c->hdr_size);
  if (!c->buf) {
    snprintf (c->why, sizeof c->why, "out of memory");
    return;
  }
  memcpy (c->buf, bin, sizeof bin);
  r = hdr->src.read (hdr->src.opaque, c->buf + L2_BINARY_SIZE,
                     c->hdr_size - L2_BINARY_SIZE, offset + L2_BINARY_SIZE);
  if (r < 0) {
    snprintf (c->why, sizeof c->why, "reading the JSON area: %s",
              error_message ());
    goto bad;
  }
  /* The checksum covers binary header and JSON with the csum zeroed. */
  memset (c->buf + L2_CSUM, 0, L2_CSUM_LEN);
  r = hash_buffer (md, sum, c->buf, c->hdr_size);
  memcpy (c->buf + L2_CSUM, bin + L2_CSUM, L2_CSUM_LEN);
  if (r < 0 || memcmp (sum, bin + L2_CSUM, hash_length (md)) != 0) {
    snprintf (c->why, sizeof c->why, "checksum mismatch");
    goto bad;
  }
  c->seqid = load_be64 (bin + L2_SEQID);
  c->why[0] = '\0';
  return;

bad:
  free (c->buf);
  c->buf = NULL;
}

int
luks2_read (struct luks_header *hdr)
{
  struct copy primary, secondary;
  struct copy *use;
  const char *src = hdr->src.name;
  int r;

  read_copy (hdr, 0, luks_magic, &primary);
  if (primary.buf) {
    read_copy (hdr, primary.hdr_size, magic_2nd, &secondary);
    /* Both copies have one size (the keyslots start after two of them):
     * a secondary of another size would put its JSON over the keyslots. */
    if (secondary.buf && secondary.hdr_size != primary.hdr_size) {
      snprintf (secondary.why, sizeof secondary.why,
                "hdr_size %llu differs from the primary's %llu",
                (unsigned long long) secondary.hdr_size,
                (unsigned long long) primary.hdr_size);
      free (secondary.buf);
      secondary.buf = NULL;
    }
  } else {
    /* Without a trustworthy hdr_size, try every allowed secondary offset. */
    memset (&secondary, 0, sizeof secondary);
    snprintf (secondary.why, sizeof secondary.why, "not found");
    for (size_t i = 0; i < N_HDR_SIZES && !secondary.buf; i++)
      read_copy (hdr, allowed_hdr_sizes[i], magic_2nd, &secondary);
    if (!secondary.buf && strcmp (primary.why, "bad magic") == 0)
      return error_set (-EINVAL, "%s: not a LUKS header (bad magic)", src);
  }

  if (!primary.buf && !secondary.buf) {
    r = error_set (-EINVAL,
                   "%s: both LUKS2 header copies are invalid "
                   "(primary: %s; secondary: %s)",
                   src, primary.why, secondary.why);
    goto out;
  }
  if (primary.buf && secondary.buf)
    use = secondary.seqid > primary.seqid ? &secondary : &primary;
  else
    use = primary.buf ? &primary : &secondary;
  if (!primary.buf || !secondary.buf)
    snprintf (hdr->warning, sizeof hdr->warning,
              "%s: LUKS2 %s header is invalid (%s); using the %s copy", src,
              primary.buf ? "secondary" : "primary",
              primary.buf ? secondary.why : primary.why,
              primary.buf ? "primary" : "secondary");

  hdr->version = 2;
  r = hash_buffer (GCRY_MD_SHA256, hdr->meta_hash, use->buf, use->hdr_size);
  if (r < 0)
    goto out;
  r = luks_field_string (hdr->uuid, use->buf + L2_UUID, LUKS_UUID_MAX, src,
                         "uuid");
  if (r < 0)
    goto out;
  {
    uint64_t json_size = use->hdr_size - L2_BINARY_SIZE;
    const char *json = (const char *) use->buf + L2_BINARY_SIZE;
    if (!memchr (json, '\0', json_size)) {
      r = error_set (-EINVAL, "%s: LUKS2 JSON area is not NUL-terminated", src);
      goto out;
    }
    r = luks2_json_parse (json, json_size, use->hdr_size, hdr);
  }
  if (r == 0) { /* kept for keyslot edits */
    hdr->raw = use->buf;
    hdr->raw_size = use->hdr_size;
    use->buf = NULL;
  }

out:
  free (primary.buf);
  free (secondary.buf);
  return r;
}

/* One copy at `offset` from the parsed one (hdr->raw): its magic, offset
 * and seqid, json in the JSON area, a fresh checksum.  The salt of the
 * copy on disk there is kept (cryptsetup gives each copy its own). */
static int
build_copy (const struct luks_header *hdr, const char *json, uint64_t offset,
            const uint8_t magic[LUKS_MAGIC_BYTES], uint64_t seqid, uint8_t *buf)
{
  enum { L2_SALT = 192, L2_SALT_LEN = 64 };
  uint64_t size = hdr->raw_size;
  uint8_t old[L2_BINARY_SIZE];
  char alg[L2_CSUM_ALG_LEN];
  int md, r;

  memcpy (buf, hdr->raw, L2_BINARY_SIZE);
  memset (buf + L2_BINARY_SIZE, 0, size - L2_BINARY_SIZE);
  memcpy (buf + L2_BINARY_SIZE, json, strlen (json));
  memcpy (buf, magic, 6);
  store_be64 (buf + L2_SEQID, seqid);
  store_be64 (buf + L2_HDR_OFFSET, offset);
  if (hdr->src.read (hdr->src.opaque, old, sizeof old, offset) == 0 &&
      memcmp (old, magic, 6) == 0)
    memcpy (buf + L2_SALT, old + L2_SALT, L2_SALT_LEN);
  memcpy (alg, hdr->raw + L2_CSUM_ALG, sizeof alg); /* checked at read */
  md = hash_lookup (alg, "csum_alg");
  if (md < 0)
    return md;
  memset (buf + L2_CSUM, 0, L2_CSUM_LEN);
  r = hash_buffer (md, buf + L2_CSUM, buf, size);
  return r;
}

int
luks2_write_json (const struct luks_header *hdr, const char *json)
{
  const struct luks_source *s = &hdr->src;
  uint64_t size = hdr->raw_size;
  uint64_t seqid = load_be64 (hdr->raw + L2_SEQID) + 1;
  uint8_t *buf;
  int r;

  if (!s->write || !s->sync)
    return error_set (-EROFS, "%s: the header cannot be written", s->name);
  if (strlen (json) >= size - L2_BINARY_SIZE)
    return error_set (-ENOSPC,
                      "%s: the new LUKS2 metadata (%zu bytes) does not fit "
                      "the %llu-byte JSON area",
                      s->name, strlen (json),
                      (unsigned long long) (size - L2_BINARY_SIZE));
  buf = malloc (size);
  if (!buf)
    return error_set (-ENOMEM, "out of memory");
  r = build_copy (hdr, json, 0, luks_magic, seqid, buf);
  if (r == 0)
    r = s->write (s->opaque, buf, size, 0);
  if (r == 0)
    r = s->sync (s->opaque, "primary header");
  if (r == 0)
    r = build_copy (hdr, json, size, magic_2nd, seqid, buf);
  if (r == 0)
    r = s->write (s->opaque, buf, size, size);
  if (r == 0)
    r = s->sync (s->opaque, "secondary header");
  free (buf);
  return r;
}
