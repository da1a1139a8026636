/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the implementer's header of formats/ (as QEMU's block_int.h
 * beside block.h): struct node and its ops, helpers for writing a node,
 * the constructors of the node types and what stack.c needs of the luks
 * node.  An export is a small stack of nodes (luks over raw over file);
 * every op may be called from several worker threads at once, and a node
 * with mutable state locks it itself.  Ops return 0 or -errno with a
 * message set through common/error_msg.h.  Users of a stack (server/,
 * nbdkit/luksnbd.c) include formats/stack.h only. */
#ifndef LUKS_NBD_NODE_H
#define LUKS_NBD_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/stack.h"

/* Appends, merging with the previous extent when the flags match.  When
 * the list is full a new extent is dropped (so the list stays one
 * contiguous prefix); walkers check extent_list_full to stop early. */
int extent_add (struct extent_list *l, uint64_t offset, uint64_t length,
                uint32_t flags);

static inline bool
extent_list_full (const struct extent_list *l)
{
  return l->max && l->n >= l->max;
}

/* An empty list for a child node's extents that will be mapped into
 * `out`: no more extents than out can still take (one if it is full,
 * which may still merge into its last). */
static inline struct extent_list
extent_list_for_child (const struct extent_list *out)
{
  size_t room = out->n < out->max ? out->max - out->n : 1;
  return (struct extent_list){ .max = out->max ? room : 0 };
}

struct node_ops {
  const char *name; /* "file", "raw", "qcow2", "nbd", "luks" */
  int (*pread) (struct node *, void *buf, uint64_t count, uint64_t offset);
  int (*pwrite) (struct node *, const void *buf, uint64_t count,
                 uint64_t offset, int flags);
  int (*flush) (struct node *);
  /* Optional (NULL: -ENOTSUP): discard, write zeros, describe a range. */
  int (*trim) (struct node *, uint64_t count, uint64_t offset);
  int (*zero) (struct node *, uint64_t count, uint64_t offset, int flags);
  int (*extents) (struct node *, uint64_t count, uint64_t offset,
                  struct extent_list *out);
  /* Optional (NULL: nothing to warm): make a later read of the range
   * cheaper (page cache, qcow2 tables, the remote's cache) without
   * transforming any data.  Work proportional to the range: the server
   * bounds the range first. */
  int (*prefetch) (struct node *, uint64_t count, uint64_t offset);
  /* Optional (NULL: -ENOTSUP): makes the node `size` bytes long, growing
   * (or, if the caller allowed it, shrinking) what it stores on.  Runs on
   * a pool thread while other ops may run: a node guards its own tables;
   * node.size changes last.  The caller has decided the shrink policy. */
  int (*resize) (struct node *, uint64_t size);
  /* Optional (NULL: nothing to do but ask the children): live migration
   * handoff, as QEMU's inactive block nodes.  false: the caller has
   * flushed and no op runs meanwhile; drop every cached table and
   * release image locks.  true: take the locks again and reload what
   * another host may have changed (qcow2 metadata, the file's size). */
  int (*set_active) (struct node *, bool active);
  /* Optional (NULL: -EAGAIN): pread, but only if it can finish without
   * waiting for the disk (the bytes are in the page cache), else -EAGAIN
   * with no message and buf's contents undefined.  For the server's loop
   * thread, which must never block; any other error is also -EAGAIN (the
   * worker's pread then reports it). */
  int (*pread_cached) (struct node *, void *buf, uint64_t count,
                       uint64_t offset);
  void (*close) (struct node *);
};

struct node {
  const struct node_ops *ops;
  uint64_t size;       /* bytes */
  uint32_t block_size; /* smallest efficient I/O (sector size) */
  bool readonly;
  /* Ops may address bytes past size, and the node answers those with
   * errors (not the dispatch with asserts): a file or remote export,
   * whose size is only what it was when last looked at (another process
   * may truncate it), and a node its parent extends by writing past its
   * end (qcow2 allocates clusters there). */
  bool past_end_ok;
  char *label; /* file name or "luks(...)", for messages */
};

/* Events a node reports on its own, to the hook node_set_log_hook set. */
void node_log (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* A payload format: its name in payload-format=, whether a payload's
 * first bytes (at most PAYLOAD_PROBE_BYTES, fewer if the payload is
 * shorter) are its own (raw has no probe: it is what no probe takes),
 * and how to open it on the payload's file or nbd node, taken over on
 * success.  Adding a format: its file defines one, payload_formats.c
 * lists it.  The probe reads only as much as the longest magic (qcow2's
 * 4 bytes): on a remote nbd payload it is a round trip at every open, and
 * tests/server/test-cache-bounded-work.sh counts the bytes read. */
#define PAYLOAD_PROBE_BYTES 4
struct payload_format {
  const char *name;
  bool (*probe) (const uint8_t *buf, size_t len);
  int (*open) (struct node *file, const struct stack_spec *spec,
               struct node **out);
};
extern const struct payload_format payload_format_qcow2; /* qcow2.c */
extern const struct payload_format payload_format_raw;   /* raw.c */
/* payload_formats.c: the format `want` names, or ("auto" or NULL) the
 * first in the table whose probe takes file's first bytes, else raw;
 * -EINVAL for an unknown name. */
int payload_format_choose (struct node *file, const char *want,
                           const struct payload_format **out);

/* file.c */
int node_file_open (const char *path, bool readonly, struct node **out);
/* cache=none: aligned transfers bypass the page cache (O_DIRECT). */
int node_file_set_direct (struct node *file);
/* QEMU-compatible OFD locks: a writer (exclusive) or a reader; refused
 * (-EBUSY) if another process's locks conflict. */
int node_file_lock (struct node *file, bool exclusive);
/* The lock node_file_lock would take, taken only when the node becomes
 * active (an export that starts inactive: the source host holds it). */
void node_file_lock_later (struct node *file, bool exclusive);
/* The node's size as the file's is now (another host grew it); a no-op
 * for block devices and for nodes that are not files. */
int node_file_refresh_size (struct node *n);

/* nbd.c: a remote export (any libnbd URI: nbd://, nbd+unix://, ...). */
int node_nbd_open (const char *uri, bool readonly, struct node **out);

/* raw.c: a window [offset, offset+size) of child; takes ownership. */
int node_raw_open (struct node *child, uint64_t offset, uint64_t size,
                   struct node **out);

/* qcow2.c: a qcow2 image on `file` (taken over on success), with an L2
 * cache of at most cache_bytes. */
int node_qcow2_open (struct node *file, uint64_t cache_bytes,
                     bool allow_backing, struct node **out);

/* luks.c: plaintext view of payload, unlocked with the header read from
 * `header` (which may be the payload itself for an attached header).
 * Takes ownership of both children (once each if they are the same).
 * `shared` is a key unlocked before from what may be the same header:
 * only an offer, taken if the header as read now vouches for it.
 * `handover` (may be NULL) is a key blob from the previous daemon
 * (luks_volume_handover_open): taken if the header as it is now is the
 * one it was unlocked from and its digest matches, else refused (see
 * node_luks_handover_refused) and the passphrase unlocks as usual. */
int node_luks_open (struct node *payload, struct node *header, const void *pass,
                    size_t passlen, int keyslot, const char *header_label,
                    struct luks_volume *shared, const void *handover,
                    size_t handover_len, struct node **out);
/* True if n is a luks node (the top of every stack node_stack_open
 * builds). */
bool node_is_luks (const struct node *n);
/* True if the node serves with the key handed over (no KDF run). */
bool node_luks_key_handed_over (const struct node *luks);
/* Why a handed-over key was refused, or NULL if none was or it was
 * taken. */
const char *node_luks_handover_refused (const struct node *luks);
/* The node's key as a handover blob in secure memory (for the next
 * daemon), freed with node_luks_handover_free. */
int node_luks_handover_blob (struct node *luks, uint8_t **blob, size_t *len);
void node_luks_handover_free (uint8_t *blob, size_t len);
struct luks_volume *node_luks_volume (struct node *luks);
/* True if this export reuses the key another export unlocked. */
bool node_luks_key_shared (const struct node *luks);
/* Where the data starts in the payload: the header's payloadOffset
 * (LUKS1) or segment offset (LUKS2), in bytes, detached or not, as
 * cryptsetup and QEMU read it (docs/design.md). */
uint64_t node_luks_data_offset (const struct node *luks);
/* Re-reads the header and checks that it still vouches for the key the
 * node serves with (luks_volume_check): 0, -ESTALE with a message saying
 * why not, or another -errno (unreadable, invalid).  Runs a PBKDF2 of the
 * digest's cost: call it off the loop. */
int node_luks_check_header (struct node *luks);
/* The header node, and the header as read from it now (luks.h; free
 * with luks_header_free). */
struct node *node_luks_header_node (struct node *luks);
struct luks_header;
int node_luks_header_parse (struct node *luks, struct luks_header **out);

/* luks_keyslots.c: the keyslot edits behind node_stack_keyslot_*. */
int node_luks_keyslot_list (struct node *luks, struct node_keyslot_info *out,
                            int cap, int *n, int *version);
int node_luks_keyslot_add (struct node *luks, const char *path,
                           const void *pass, size_t passlen, int slot,
                           const struct node_kdf_choice *kc, int *added);
int node_luks_keyslot_remove (struct node *luks, const char *path, int slot,
                              bool force);
int node_luks_keyslot_change (struct node *luks, const char *path, int slot,
                              const void *pass, size_t passlen,
                              const struct node_kdf_choice *kc, int *added);

/* fn(arg) runs when the node closes, after it let go of its key. */
void node_luks_on_close (struct node *luks, void (*fn) (void *), void *arg);

/* The UUID of the header that serves, and of a backup header once it
 * was read and found to be the same volume's (else NULL). */
const char *node_luks_uuid (const struct node *luks);
const char *node_luks_backup_uuid (const struct node *luks);
void node_luks_set_backup_uuid (struct node *luks, const char *uuid);
/* The payload's ciphertext under plaintext [offset, offset+count): whole
 * sectors, not decrypted. */
int node_luks_read_ciphertext (struct node *luks, void *buf, uint64_t count,
                               uint64_t offset);
/* plaintext_check.c: -EINVAL with a message if the payload's written
 * blocks all decrypt to random-looking bytes (a header of another
 * volume); 0 if some sample is structured, nothing was written, or the
 * samples could not be read (then with a node warning). */
int node_luks_check_plaintext (struct node *luks, const char *payload,
                               const char *header);
/* Reads the LUKS header on `header` for its UUID only (no unlock). */
int node_luks_header_uuid (struct node *header, const char *label, char *uuid,
                           size_t len);

/* Reads the LUKS header on `header` and unlocks it (the KDF runs, every
 * refusal of node_luks_open's header applies) before any payload exists:
 * the key is then offered to node_luks_open as `shared`. */
int node_luks_header_unlock (struct node *header, const char *label,
                             const void *pass, size_t passlen, int keyslot,
                             struct luks_volume **out);
/* Messages a node wants logged once at open (e.g. a bad header copy). */
const char *node_luks_warning (const struct node *luks);
void node_luks_set_warning (struct node *luks, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

#endif
