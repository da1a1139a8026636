/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: what server/ and nbdkit/ see of formats/ (as QEMU's block.h
 * beside block_int.h): an export's stack of nodes, opened from a spec
 * and used through its top node -- the ops, its size and block size, and
 * what the stack says about itself (warnings, the shared-key fact, the
 * header's UUID).  struct node stays opaque here; implementing a node
 * takes formats/node.h.
 *
 * Every op may be called from several worker threads at once and
 * returns 0 or -errno with a message set through common/error_msg.h.
 * The caller keeps the op contract, asserted in formats/node.c: offset
 * + count within node_size, only the flags an op names, no writes to a
 * read-only node.  Requests from clients are checked (and refused with
 * errors) before they get here. */
#ifndef LUKS_NBD_STACK_H
#define LUKS_NBD_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct node;

/* pwrite, zero: every byte of this call is on stable storage before it
 * returns.  A node that splits the call must not pass FUA to only part of
 * it: FUA on each piece, or a flush after them (docs/design.md,
 * Durability).  flush: every write completed before it is durable. */
#define NODE_FUA 1
/* pwrite: the caller no longer needs the buffer's contents, so a node may
 * transform it in place (the luks node encrypts there: no copy). */
#define NODE_MAY_CLOBBER 2

/* Extents: what a range of a node is made of. */
#define EXTENT_HOLE 1 /* nothing stored (sparse, unallocated) */
#define EXTENT_ZERO 2 /* reads as zeros */

struct extent {
  uint64_t offset, length;
  uint32_t flags;
};

/* Extents describe a prefix of the range asked for: a node stops its walk
 * when the list is full or its own work bound is spent, and the caller
 * asks again from where the list ends (NBD allows a shorter reply). */
struct extent_list {
  struct extent *e;
  size_t n, cap;
  size_t max; /* at most this many extents (0: no limit) */
};
void extent_list_free (struct extent_list *l);

/* The ops (node.c). */
int node_pread (struct node *n, void *buf, uint64_t count, uint64_t offset);
/* flags: NODE_FUA, NODE_MAY_CLOBBER. */
int node_pwrite (struct node *n, const void *buf, uint64_t count,
                 uint64_t offset, int flags);
/* pread, but only if it can finish without waiting for the disk (the
 * bytes are in the page cache), else -EAGAIN with no message and buf's
 * contents undefined.  For the server's loop thread, which must never
 * block; any other error is also -EAGAIN (the worker's pread then
 * reports it). */
int node_pread_cached (struct node *n, void *buf, uint64_t count,
                       uint64_t offset);
int node_flush (struct node *n);
/* -ENOTSUP with a message when a node cannot discard / write zeros.
 * zero's flags: NODE_FUA. */
int node_trim (struct node *n, uint64_t count, uint64_t offset);
int node_zero (struct node *n, uint64_t count, uint64_t offset, int flags);
/* Without an extents op a node is all data.  The list may cover only a
 * prefix of the range (at least one byte of it on success). */
int node_extents (struct node *n, uint64_t count, uint64_t offset,
                  struct extent_list *out);
/* Makes a later read of the range cheaper (page cache, qcow2 tables, the
 * remote's cache); work proportional to the range: bound it first. */
int node_prefetch (struct node *n, uint64_t count, uint64_t offset);
/* Makes the node `size` bytes long (a multiple of its block size).  The
 * caller has decided the shrink policy; no op may address the bytes a
 * shrink removes.  -ENOTSUP naming the node type if it cannot. */
int node_resize (struct node *n, uint64_t size);
/* Live migration handoff (as QEMU's inactive block nodes).  false: the
 * caller has flushed and no op runs meanwhile; caches and image locks
 * are dropped.  true: locks taken again, what another host may have
 * changed reloaded. */
int node_set_active (struct node *n, bool active);
void node_close (struct node *n); /* the whole stack below it */

/* What a node is (node.c).  The size changes only by node_resize. */
uint64_t node_size (const struct node *n);
uint32_t node_block_size (const struct node *n); /* sector size; >= 1 */
const char *node_label (const struct node *n);   /* for messages */
/* The size a server tells clients to prefer (NBD_INFO_BLOCK_SIZE, from
 * the daemon and the nbdkit filter alike): the node's block size, and at
 * least a page (as nbdkit's file plugin says for 4K disks).  The minimum
 * it tells is 1: every node serves any byte range (the luks node by
 * read-modify-write of its sectors). */
#define NODE_PREFERRED_BLOCK_MIN 4096
uint32_t node_preferred_block_size (const struct node *n);

/* Events a node reports on its own (an NBD connection lost and made
 * again): to the hook the server sets, else to stderr.  Any thread. */
void node_set_log_hook (void (*hook) (const char *fmt, ...));
/* True if s names a remote export (nbd://, nbd+unix://, ...), not a
 * file (nbd.c). */
bool node_is_uri (const char *s);

/* stack.c: the whole stack for an export. */
struct stack_spec {
  const char *payload;         /* path */
  const char *header;          /* path, or NULL: attached */
  const char *key_file;        /* exact bytes */
  const char *credential;      /* its name, if key_file is a credential */
  const char *passphrase_file; /* one trailing newline stripped */
  int key_slot;                /* -1: any */
  bool readonly;
  const char *payload_format; /* "auto" or a payload format's name */
  uint64_t qcow2_cache_bytes; /* L2 cache bound; 0: the default */
  bool payload_backing;       /* follow a qcow2 backing chain */
  bool no_locking;            /* locking=off */
  bool direct_io;             /* cache=none: O_DIRECT on the payload */
  bool no_plaintext_check;    /* check-plaintext=off (plaintext_check.c) */
  const char *backup_header;  /* used if the header fails */
  bool inactive;              /* active=off: no lock, no writes yet */
  const char *passphrase;     /* in memory (control socket), or NULL */
  size_t passphrase_len;
  const void *handover; /* a key blob from the previous daemon, or NULL */
  size_t handover_len;
};
/* *detected_format: the payload format's name ("raw", "qcow2"). */
int node_stack_open (const struct stack_spec *spec, struct node **out,
                     const char **detected_format);

/* payload_formats.c: checks a payload-format= value ("auto" or a
 * format's name): 0, or -EINVAL with a message listing the choices. */
int node_stack_check_format (const char *name);
/* The choices, "auto|raw|qcow2" (for usage texts). */
const char *node_stack_format_choices (void);
/* The spec's rules that concern formats/ rather than its syntax (the
 * payload format, cache=none only on files): 0 or -EINVAL saying why,
 * without the export's name.  node_stack_open checks them too. */
int node_stack_check_spec (const struct stack_spec *spec);

/* A stack over a payload node the caller made (the nbdkit filter's
 * plugin), taken over: luks(payload, header = header_path, a file or a
 * URI, read-only and unlocked, or the payload itself if NULL).  label
 * names the header in messages.  shared: as node_stack_unlock_header
 * made it, or NULL. */
struct luks_volume;
int node_stack_open_over (struct node *payload, const char *header_path,
                          const char *label, const void *pass, size_t passlen,
                          int key_slot, struct luks_volume *shared,
                          struct node **out);
/* Reads the header file at path and unlocks it (the KDF runs, every
 * refusal of a stack's header applies) before any payload exists: the
 * key is then offered to node_stack_open_over as `shared`. */
int node_stack_unlock_header (const char *path, const void *pass,
                              size_t passlen, int key_slot,
                              struct luks_volume **out);

/* stack.c: the keys kept for sharing between exports of one header.
 * Stops offering every kept key (at exit). */
void node_stack_forget_keys (void);
/* Stops offering the keys kept for the header file at `path` (it
 * changed); exports using them keep them.  Returns how many. */
size_t node_stack_forget_header (const char *path);
/* fn(header path) runs (on the thread that closed the last export using
 * it) when a kept key is wiped because no export uses it any more. */
void node_stack_on_key_wiped (void (*fn) (const char *header));

/* stack_query.c: what an open stack says about itself, for the log.
 * The strings live as long as the stack (NULL: none). */
struct node_stack_info {
  const char *uuid;             /* of the header that serves */
  const char *backup_uuid;      /* backup-header='s, once found the same */
  const char *warning;          /* to log once at open (a bad copy...) */
  const char *handover_refused; /* why a handed-over key was refused */
  uint64_t data_offset; /* where the data starts in the payload (bytes) */
  bool key_shared;      /* reuses the key another export unlocked */
  bool key_handed_over; /* serves with the previous daemon's key */
};
void node_stack_info (const struct node *top, struct node_stack_info *out);
/* Re-reads the header and checks that it still vouches for the key the
 * stack serves with: 0, -ESTALE with a message saying why not, or
 * another -errno.  Runs a PBKDF2 of the digest's cost: off the loop. */
int node_stack_check_header (struct node *top);
/* The stack's key as a handover blob in secure memory (for the next
 * daemon), freed with node_stack_handover_free. */
int node_stack_handover_blob (struct node *top, uint8_t **blob, size_t *len);
void node_stack_handover_free (uint8_t *blob, size_t len);

/* Keyslots of a served stack's header, edited with the key it serves
 * with.  path is the header's file (the payload file if the header is
 * attached).  Off the loop: the edits run a KDF and fsync. */
struct node_keyslot_info {
  int id;
  const char *kdf; /* "pbkdf2", "argon2i", "argon2id" */
  uint32_t iterations, memory_kib, parallel;
  const char *priority;
};
struct node_kdf_choice {
  const char *type; /* NULL: the LUKS version's default */
  uint32_t iter_time_ms, iterations, memory_kib, parallel; /* 0: default */
};
/* *version is 1 or 2. */
int node_stack_keyslot_list (struct node *top, struct node_keyslot_info *out,
                             int cap, int *n, int *version);
int node_stack_keyslot_add (struct node *top, const char *path,
                            const void *pass, size_t passlen, int slot,
                            const struct node_kdf_choice *kc, int *added);
int node_stack_keyslot_remove (struct node *top, const char *path, int slot,
                               bool force);
/* A new keyslot with pass, then keyslot slot removed; *added: the new. */
int node_stack_keyslot_change (struct node *top, const char *path, int slot,
                               const void *pass, size_t passlen,
                               const struct node_kdf_choice *kc, int *added);

#endif
