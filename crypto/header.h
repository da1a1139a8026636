/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the version-independent model of a parsed LUKS header that
 * luks1.c and luks2*.c fill and unlock.c and volume.c use.  Host order,
 * validated; no secrets. */
#ifndef LUKS_NBD_HEADER_H
#define LUKS_NBD_HEADER_H

#include <stdbool.h>
#include <stdint.h>

#include "crypto/cipher.h"
#include "crypto/kdf.h"
#include "crypto/luks.h"

#define LUKS_KEYSLOTS_MAX 32 /* LUKS2; LUKS1 has 8 */
#define LUKS_DIGEST_MAX 64
#define LUKS_SECTOR 512
#define LUKS_STRIPES_MAX 4000 /* what cryptsetup and qemu write */
#define LUKS_UUID_MAX 40
/* SHA-256 of the metadata a header was parsed from (see meta_hash). */
#define LUKS_META_HASH_BYTES 32

/* "LUKS\xba\xbe": a LUKS1 header and a LUKS2 primary copy start with it. */
extern const uint8_t luks_magic[LUKS_MAGIC_BYTES];

enum keyslot_priority {
  PRIORITY_IGNORE = 0,
  PRIORITY_NORMAL = 1,
  PRIORITY_HIGH = 2
};

struct luks_keyslot {
  int id;
  /* Field names for messages: "keyslots.0.kdf" / "keyslot 0". */
  char kdf_field[40];
  char iter_field[48]; /* "keyslots.0.kdf.iterations" */
  enum keyslot_priority priority;
  struct kdf_params kdf;
  size_t derived_bytes; /* key for the keyslot area cipher */
  struct cipher_spec area_cipher;
  int af_md;
  uint32_t stripes;
  uint64_t area_offset; /* bytes into the header source */
  uint64_t area_size;
};

struct luks_header {
  struct luks_source src;
  int version;
  char uuid[LUKS_UUID_MAX + 1];
  struct cipher_spec cipher; /* data segment */
  size_t key_bytes;          /* volume key */
  uint32_t sector_size;
  uint64_t iv_tweak; /* in 512-byte units */
  uint64_t payload_offset;
  uint64_t payload_size; /* 0 = dynamic */
  struct luks_keyslot slots[LUKS_KEYSLOTS_MAX];
  int nslots;
  /* The digest that verifies the volume key. */
  int digest_md;
  uint32_t digest_iterations;
  char digest_field[40]; /* "mkDigestIterations", "digests.0.iterations" */
  uint8_t digest_salt[KDF_SALT_MAX];
  size_t digest_salt_len;
  uint8_t digest[LUKS_DIGEST_MAX];
  size_t digest_len;
  char warning[256];
  /* SHA-256 of the very metadata bytes parsed (LUKS1: the phdr; LUKS2:
   * the binary header and JSON of the copy used): a cached key is reused
   * only with a header whose metadata hashes the same (unlock.c). */
  uint8_t meta_hash[LUKS_META_HASH_BYTES];
  /* LUKS2, for editing keyslots (keyslot_edit.c): the copy parsed
   * (binary header + JSON, raw_size bytes, malloc'd), the keyslots area
   * and the id of the digest bound to the data segment. */
  uint8_t *raw;
  uint64_t raw_size;
  uint64_t keyslots_start, keyslots_end;
  char digest_id[17];
};

/* luks1.c */
int luks1_parse (const uint8_t *phdr, size_t len, struct luks_header *hdr);

/* LUKS1 keyslot descriptors, for keyslot edits: the layout of slot id
 * (also of a disabled one), and a write of its descriptor, active with
 * p's iterations and salt (32 bytes) or, p NULL, disabled; synced. */
int luks1_slot_layout (const struct luks_header *hdr, int id, bool *active,
                       uint64_t *area_offset, uint32_t *stripes);
int luks1_write_slot (const struct luks_header *hdr, int id,
                      const struct kdf_params *p);
#define LUKS1_KEYSLOTS 8
#define LUKS1_SALT_BYTES 32
#define LUKS1_PHDR_BYTES 592 /* key material lies after it */

/* luks2_disk.c: reads both binary headers, picks the valid newest, then
 * hands its JSON to luks2_json.c. */
int luks2_read (struct luks_header *hdr);

/* Writes json (NUL-terminated) as both LUKS2 copies with the seqid of
 * the copy parsed plus one and fresh checksums: the primary, synced,
 * then the secondary, synced (a crash in between leaves the primary
 * valid and newest). */
int luks2_write_json (const struct luks_header *hdr, const char *json);

/* luks2_json.c: json is NUL-terminated within json_size bytes. */
int luks2_json_parse (const char *json, uint64_t json_size, uint64_t hdr_size,
                      struct luks_header *hdr);

/* Validates a keyslot's area against the header source and the other
 * slots (shared by both versions). */
int luks_check_keyslot_area (const struct luks_header *hdr,
                             const struct luks_keyslot *ks, uint64_t area_start,
                             uint64_t area_end);

/* Bytes of a keyslot's area that hold its key material (whole 512-byte
 * sectors). */
size_t luks_keyslot_material_bytes (const struct luks_header *hdr,
                                    const struct luks_keyslot *ks);

/* Copies a fixed-size on-disk string field, refusing one without a NUL. */
int luks_field_string (char *dst, const uint8_t *field, size_t field_len,
                       const char *src_name, const char *field_name);

#endif
