/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the one API that formats/ uses from crypto/.
 *
 * A header is opened from a read callback (never a file), validated as
 * hostile input, then unlocked with a passphrase into a volume: the volume
 * key plus what is needed to en/decrypt payload sectors.  A volume may be
 * used by many threads at once. */
#ifndef LUKS_NBD_LUKS_H
#define LUKS_NBD_LUKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reads exactly count bytes at offset; 0 or -errno (a short read is an
 * error: the callback says so with a message). */
typedef int (*luks_read_fn) (void *opaque, void *buf, size_t count,
                             uint64_t offset);

/* Writes exactly count bytes at offset; 0 or -errno with a message. */
typedef int (*luks_write_fn) (void *opaque, const void *buf, size_t count,
                              uint64_t offset);
/* Makes the writes so far durable; `done` names what they completed
 * ("key material", "primary header", ...), for messages and tests. */
typedef int (*luks_sync_fn) (void *opaque, const char *done);

struct luks_source {
  luks_read_fn read;
  void *opaque;
  uint64_t size;    /* bytes readable from the source */
  const char *name; /* file name or URI, for messages */
  /* Only for keyslot edits (NULL otherwise). */
  luks_write_fn write;
  luks_sync_fn sync;
};

struct luks_header;
struct luks_volume;

/* The magic both LUKS versions start with (crypto/header.c holds it).
 * True if buf, the first len bytes of a device, starts with it: a header
 * may be there (a probe only; luks_header_open checks the rest). */
#define LUKS_MAGIC_BYTES 6
bool luks_probe (const void *buf, size_t len);

/* Initialise libgcrypt and secure memory; call once before anything else.
 * Passphrases and other secrets the caller holds go in secure memory
 * through crypto/secmem.h, the one secure-memory API. */
int luks_init (void);

/* Reads and validates a LUKS1 or LUKS2 header.  The source must outlive
 * the header (keyslots are read at unlock).  Errors name src->name and
 * the field. */
int luks_header_open (const struct luks_source *src, struct luks_header **out);
void luks_header_free (struct luks_header *hdr);

struct luks_header_info {
  int version; /* 1 or 2 */
  const char *uuid;
  const char *cipher; /* "aes-xts-plain64" */
  size_t key_bytes;
  uint32_t sector_size;    /* encryption sector */
  uint64_t payload_offset; /* bytes into the data device */
  uint64_t payload_size;   /* bytes; 0 = to the end of the device */
  int active_keyslots;
  const char *warning; /* non-NULL if a copy was bad (LUKS2) */
};
void luks_header_info (const struct luks_header *hdr,
                       struct luks_header_info *info);

/* Tries every active keyslot (keyslot < 0) or only the given one.
 * -EPERM "no key slot in NAME accepts this passphrase" on failure. */
int luks_unlock (const struct luks_header *hdr, const void *pass,
                 size_t passlen, int keyslot, struct luks_volume **out);
/* luks_unlock, offered a key unlocked earlier from a header that may be
 * this one (the same file, read before).  The key is reused (a new
 * reference, *reused true, no KDF run) only if this header's metadata and
 * the keyslot that opened it are byte for byte those it was unlocked from,
 * and the passphrase is the one that opened it -- the header as it is now
 * vouches for it; otherwise the passphrase is tried as luks_unlock does.
 * cached may be NULL. */
int luks_unlock_reuse (const struct luks_header *hdr, const void *pass,
                       size_t passlen, int keyslot, struct luks_volume *cached,
                       struct luks_volume **out, bool *reused);
/* 0 if hdr (read after vol was unlocked, perhaps from another version of
 * the file) still vouches for vol: the same data segment (cipher, key
 * size, sector size, offsets) and a digest that vol's key matches (one
 * PBKDF2 run of the digest's cost).  -ESTALE with a message saying which
 * differs, or another -errno. */
int luks_volume_check (const struct luks_header *hdr,
                       const struct luks_volume *vol);
/* Handing an unlocked key to the next daemon (a restart or upgrade under
 * running clients; handover.c).  The blob holds the key, the keyslot
 * that opened it and the binding of that keyslot (a hash of the header
 * metadata and the keyslot's bytes, no secret): secure memory only,
 * never a file.  handover_open takes a blob only if hdr, as it is now,
 * is byte for byte the header the key was unlocked from (metadata and
 * keyslot) and its digest matches the key (one PBKDF2 run of the
 * digest's cost, no keyslot KDF); else -ESTALE (or -EINVAL for a
 * malformed blob) with a message saying which, and the caller unlocks
 * afresh.  A volume from a blob is never shared with other exports. */
size_t luks_volume_handover_size (const struct luks_volume *vol);
int luks_volume_handover_write (const struct luks_volume *vol, uint8_t *out,
                                size_t len);
int luks_volume_handover_open (const struct luks_header *hdr,
                               const uint8_t *blob, size_t len,
                               struct luks_volume **out);
/* Volumes are reference-counted: ref for each extra user, free drops one
 * (the key is wiped with the last). */
void luks_volume_free (struct luks_volume *vol);
struct luks_volume *luks_volume_ref (struct luks_volume *vol);

/* A fingerprint of a passphrase (HMAC-SHA256 under a per-process secret
 * key: see hash_keyed), so that one export may reuse another's unlocked
 * key only when it holds the very same passphrase, while the fingerprint
 * kept in ordinary memory reveals nothing about the passphrase. */
#define LUKS_FINGERPRINT_BYTES 32
int luks_passphrase_fingerprint (const void *pass, size_t len,
                                 uint8_t out[LUKS_FINGERPRINT_BYTES]);
int luks_fingerprint_equal (const uint8_t a[LUKS_FINGERPRINT_BYTES],
                            const uint8_t b[LUKS_FINGERPRINT_BYTES]);

uint32_t luks_volume_sector_size (const struct luks_volume *vol);
uint64_t luks_volume_payload_offset (const struct luks_volume *vol);
uint64_t luks_volume_payload_size (const struct luks_volume *vol);

/* The one en/decrypt direction, of volumes and of crypto/cipher.h's
 * contexts alike. */
enum luks_direction { LUKS_DECRYPT, LUKS_ENCRYPT };

/* En/decrypts len bytes in place: whole encryption sectors, the first of
 * which is sector number `sector` (in sector_size units from the start of
 * the payload area).  Thread-safe. */
int luks_volume_crypt (struct luks_volume *vol, enum luks_direction dir,
                       void *buf, size_t len, uint64_t sector);

/* Keyslots (keyslot_edit.c).  The list needs no secret; the edits need a
 * header opened from a source that can write and sync, and are made in
 * the order that leaves the header valid after a crash at any point
 * (see docs/design.md).  The caller holds the header file's lock. */
struct luks_keyslot_info {
  int id;
  const char *kdf;               /* "pbkdf2", "argon2i", "argon2id" */
  uint32_t iterations;           /* PBKDF2 iterations, or Argon2 time cost */
  uint32_t memory_kib, parallel; /* Argon2 */
  const char *priority;          /* "ignore", "normal", "prefer" */
};
int luks_keyslot_count (const struct luks_header *hdr);
int luks_keyslot_max (const struct luks_header *hdr); /* 8 or 32 */
void luks_keyslot_info (const struct luks_header *hdr, int i,
                        struct luks_keyslot_info *out);

/* How a new keyslot's KDF is chosen; zero fields take cryptsetup's
 * defaults (Argon2id for LUKS2, PBKDF2 for LUKS1, benchmarked to 2 s,
 * Argon2 memory up to 1 GiB, min(4, CPUs) threads). */
struct luks_kdf_choice {
  const char *type;      /* "argon2id", "argon2i", "pbkdf2" or NULL */
  uint32_t iter_time_ms; /* benchmark target */
  uint32_t iterations;   /* forced PBKDF2 iterations / Argon2 time */
  uint32_t memory_kib;   /* Argon2 memory (its cap when benchmarking) */
  uint32_t parallel;     /* Argon2 threads */
};

/* Adds a keyslot (slot, or the first free one if slot < 0; *added says
 * which) that opens to vol's key with pass.  vol must be a key that hdr
 * vouches for (checked: -ESTALE).  Key material first, then metadata. */
int luks_keyslot_add (const struct luks_header *hdr,
                      const struct luks_volume *vol, const void *pass,
                      size_t passlen, int slot,
                      const struct luks_kdf_choice *kdf, int *added);
/* Removes keyslot slot: metadata first, then its key material is
 * overwritten with random bytes.  The last keyslot that opens the
 * volume only with force (-EBUSY otherwise). */
int luks_keyslot_remove (const struct luks_header *hdr, int slot, bool force);

#endif
