/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: building an export's node stack from its spec:
 *   luks(payload = raw(file(P)), header = file(H) or the payload itself). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>

#include "common/error_msg.h"
#include "formats/keyfile.h"
#include "crypto/luks.h"
#include "crypto/secmem.h"
#include "formats/node.h"

/* Unlocked keys kept for other exports naming the same header file (by
 * device and inode) with the same key slot choice and the very same
 * passphrase: one KDF run for all of them.  A kept key is only offered:
 * crypto/ reuses it only if the header as it is now vouches for it.
 *
 * An entry lives while a luks node uses its key (`users`, plus a pin
 * while an open is deciding) and is wiped with the last.  It is unlisted
 * -- never offered again, while its users keep their key -- when a fresh
 * unlock of its header replaces it, when the header changes
 * (node_stack_forget_header) and at exit.  Exports are opened on the loop
 * thread and in worker threads (control socket) and closed on any of
 * them: the lock covers the list and every entry's users and listed. */
struct shared_key {
  struct shared_key *next; /* while listed */
  bool listed;
  unsigned users;
  char *path; /* the header as the spec names it */
  dev_t dev;
  ino_t ino;
  int key_slot;
  uint8_t fingerprint[LUKS_FINGERPRINT_BYTES];
  struct luks_volume *vol; /* one reference held here */
};
static struct shared_key *shared_keys;
static pthread_mutex_t shared_keys_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*key_wiped_cb) (const char *header); /* under the lock */

void
node_stack_on_key_wiped (void (*fn) (const char *header))
{
  pthread_mutex_lock (&shared_keys_lock);
  key_wiped_cb = fn;
  pthread_mutex_unlock (&shared_keys_lock);
}

/* Lock held. */
static void
unlist (struct shared_key *k)
{
  for (struct shared_key **p = &shared_keys; *p; p = &(*p)->next)
    if (*p == k) {
      *p = k->next;
      break;
    }
  k->listed = false;
  k->next = NULL;
}

/* Drops one user (a node closing, or an open's pin); the last wipes. */
static void
release_key (void *opaque)
{
  struct shared_key *k = opaque;
  void (*cb) (const char *) = NULL;
  bool last;

  pthread_mutex_lock (&shared_keys_lock);
  last = --k->users == 0;
  if (last && k->listed)
    unlist (k);
  if (last)
    cb = key_wiped_cb;
  pthread_mutex_unlock (&shared_keys_lock);
  if (!last)
    return;
  if (cb)
    cb (k->path);
  luks_volume_free (k->vol);
  free (k->path);
  free (k);
}

/* The listed entry for this header, slot and passphrase, pinned (one
 * more user, for release_key), or NULL. */
static struct shared_key *
find_shared_key (const struct stat *st, int key_slot, const uint8_t *fp)
{
  struct shared_key *k;

  pthread_mutex_lock (&shared_keys_lock);
  for (k = shared_keys; k; k = k->next)
    if (k->dev == st->st_dev && k->ino == st->st_ino &&
        k->key_slot == key_slot && luks_fingerprint_equal (k->fingerprint, fp))
      break;
  if (k)
    k->users++;
  pthread_mutex_unlock (&shared_keys_lock);
  return k;
}

/* Keeps the key of a luks node freshly unlocked, for the next exports;
 * the node is its first user.  Only an optimisation: on failure the next
 * export runs its own KDF. */
static void
remember_key (const char *path, const struct stat *st, int key_slot,
              const uint8_t *fp, struct node *luks)
{
  struct shared_key *k = calloc (1, sizeof *k);

  if (!k || !(k->path = strdup (path))) {
    free (k);
    return;
  }
  k->dev = st->st_dev;
  k->ino = st->st_ino;
  k->key_slot = key_slot;
  memcpy (k->fingerprint, fp, LUKS_FINGERPRINT_BYTES);
  k->vol = luks_volume_ref (node_luks_volume (luks));
  k->users = 1;
  k->listed = true;
  pthread_mutex_lock (&shared_keys_lock);
  k->next = shared_keys;
  shared_keys = k;
  pthread_mutex_unlock (&shared_keys_lock);
  node_luks_on_close (luks, release_key, k);
}

/* After an open that was offered k: a node that reused the key becomes
 * one of k's users (the pin passes to it).  Otherwise the header no
 * longer vouches for k's key (or the open failed, perhaps for that
 * reason): k is not offered again. */
static void
settle_offer (struct shared_key *k, int r, struct node *luks)
{
  if (r == 0 && node_luks_key_shared (luks)) {
    node_luks_on_close (luks, release_key, k);
    return;
  }
  pthread_mutex_lock (&shared_keys_lock);
  if (k->listed)
    unlist (k);
  pthread_mutex_unlock (&shared_keys_lock);
  release_key (k);
}

size_t
node_stack_forget_header (const char *path)
{
  struct stat st;
  bool have_st = stat (path, &st) == 0;
  size_t n = 0;

  pthread_mutex_lock (&shared_keys_lock);
  for (struct shared_key *k = shared_keys, *next; k; k = next) {
    next = k->next;
    if (strcmp (k->path, path) == 0 ||
        (have_st && k->dev == st.st_dev && k->ino == st.st_ino)) {
      unlist (k);
      n++;
    }
  }
  pthread_mutex_unlock (&shared_keys_lock);
  return n;
}

void
node_stack_forget_keys (void)
{
  pthread_mutex_lock (&shared_keys_lock);
  while (shared_keys)
    unlist (shared_keys);
  pthread_mutex_unlock (&shared_keys_lock);
}

/* header= naming the payload file itself: an attached header, for which
 * header= is omitted (its lock would collide with the payload's). */
static int
header_is_payload (const struct stack_spec *spec, const char *where)
{
  struct stat h, p;

  if (spec->no_locking || node_is_uri (where) || node_is_uri (spec->payload) ||
      stat (where, &h) < 0 || stat (spec->payload, &p) < 0 ||
      h.st_dev != p.st_dev || h.st_ino != p.st_ino)
    return 0;
  return error_set (-EINVAL,
                    "header %s is the payload file %s itself: a detached "
                    "header lives in a file of its own; for a header at "
                    "the start of the payload, omit header=",
                    where, spec->payload);
}

/* Headers are only read: never written, locked shared. */
static int
open_header (const struct stack_spec *spec, const char *where,
             struct node **out)
{
  int r = header_is_payload (spec, where);

  if (r < 0)
    return r;
  r = node_is_uri (where) ? node_nbd_open (where, true, out)
                          : node_file_open (where, true, out);

  if (r == 0 && !spec->no_locking && !node_is_uri (where) && spec->inactive)
    node_file_lock_later (*out, false);
  else if (r == 0 && !spec->no_locking && !node_is_uri (where) &&
           (r = node_file_lock (*out, false)) < 0) {
    node_close (*out);
    *out = NULL;
  }
  return r;
}

/* A backup header must be a copy of the header: the same volume (UUID).
 * Another volume's, taken when the header fails, would decrypt the
 * payload to garbage that the first write makes corruption.  An
 * unreadable backup is only noted. */
static int
check_backup_uuid (const struct stack_spec *spec, struct node *luks)
{
  const char *main_label = spec->header ? spec->header : spec->payload;
  const char *uuid = node_luks_uuid (luks);
  struct node *backup = NULL;
  char buuid[64];
  int r = open_header (spec, spec->backup_header, &backup);

  if (r == 0)
    r =
      node_luks_header_uuid (backup, spec->backup_header, buuid, sizeof buuid);
  node_close (backup);
  if (r < 0) {
    if (!node_luks_warning (luks))
      node_luks_set_warning (luks,
                             "backup-header=%s cannot stand in for the "
                             "header: %s",
                             spec->backup_header, error_message ());
    return 0;
  }
  if (strcmp (buuid, uuid) == 0) {
    node_luks_set_backup_uuid (luks, buuid);
    return 0;
  }
  r = error_set (-EINVAL,
                 "backup-header=%s (UUID %s) belongs to another volume than "
                 "the header %s (UUID %s): a backup must be a copy of this "
                 "volume's header (cryptsetup luksHeaderBackup)",
                 spec->backup_header, buuid, main_label, uuid);
  return r;
}

/* Unlocked: is it the right header for this payload?  The backup
 * header's UUID (unless it is the one serving), then the plaintext. */
static int
check_pairing (const struct stack_spec *spec, struct node *luks,
               bool used_backup)
{
  const char *header = used_backup    ? spec->backup_header
                       : spec->header ? spec->header
                                      : "(attached)";
  int r = 0;

  if (spec->backup_header && !used_backup)
    r = check_backup_uuid (spec, luks);
  if (r == 0 && !spec->no_plaintext_check)
    r = node_luks_check_plaintext (luks, spec->payload, header);
  return r;
}

/* True if the payload starts with something other than LUKS magic: no
 * attached header can be there.  The current error message is kept. */
static bool
lacks_luks_magic (struct node *payload)
{
  unsigned char probe[LUKS_MAGIC_BYTES];
  char why[1024];
  bool read;

  if (payload->size < sizeof probe)
    return true;
  snprintf (why, sizeof why, "%s", error_message ());
  read = node_pread (payload, probe, sizeof probe, 0) == 0;
  error_set (-EINVAL, "%s", why);
  return read && !luks_probe (probe, sizeof probe);
}

/* After a refused passphrase read from a key file that ends in a
 * newline: the likely cause, and what to write instead. */
static void
newline_hint (const struct stack_spec *spec)
{
  if (spec->credential)
    error_append (-EPERM,
                  "; the credential %s ends in a newline, which is part of "
                  "the passphrase (credential= takes its exact bytes, like "
                  "key-file=): write it without one (printf '%%s', or "
                  "truncate -s -1 FILE)",
                  spec->credential);
  else
    error_append (-EPERM,
                  "; the key file %s ends in a newline, which key-file= "
                  "takes as part of the passphrase (a file written by "
                  "echo): use passphrase-file=%s, which strips one "
                  "trailing newline",
                  spec->key_file, spec->key_file);
}

/* The nbdkit filter's header: read-only, no lock (nbdkit's plugin may be
 * the file, and the filter runs in one process for all connections). */
static int
open_plain_header (const char *path, struct node **out)
{
  return node_is_uri (path) ? node_nbd_open (path, true, out)
                            : node_file_open (path, true, out);
}

int
node_stack_open_over (struct node *payload, const char *header_path,
                      const char *label, const void *pass, size_t passlen,
                      int key_slot, struct luks_volume *shared,
                      struct node **out)
{
  struct node *header = payload;
  int r = header_path ? open_plain_header (header_path, &header) : 0;

  if (r == 0)
    r = node_luks_open (payload, header, pass, passlen, key_slot, label, shared,
                        NULL, 0, out);
  if (r == 0)
    return 0;
  if (header != payload)
    node_close (header);
  node_close (payload);
  return r;
}

int
node_stack_unlock_header (const char *path, const void *pass, size_t passlen,
                          int key_slot, struct luks_volume **out)
{
  struct node *header;
  int r = node_file_open (path, true, &header);

  if (r < 0)
    return r;
  r = node_luks_header_unlock (header, path, pass, passlen, key_slot, out);
  node_close (header);
  return r;
}

int
node_stack_check_spec (const struct stack_spec *spec)
{
  int r = node_stack_check_format (spec->payload_format);

  if (r == 0 && spec->direct_io && spec->payload && node_is_uri (spec->payload))
    r = error_set (-EINVAL, "cache=none applies to files and block devices, "
                            "not to NBD payloads");
  return r;
}

int
node_stack_open (const struct stack_spec *spec, struct node **out,
                 const char **detected_format)
{
  struct node *file = NULL, *payload = NULL, *header = NULL;
  const struct payload_format *format;
  char *pass = NULL;
  size_t passlen = 0, passalloc = 0;
  int r = node_stack_check_spec (spec);

  if (r < 0)
    return r;
  /* Before the first secure allocation (the passphrase). */
  r = luks_init ();
  if (r < 0)
    return r;
  if (spec->passphrase) {
    pass = secmem_copy (spec->passphrase, spec->passphrase_len);
    passlen = spec->passphrase_len;
    passalloc = passlen + 1;
    r = pass ? 0 : -ENOMEM;
  } else if (spec->key_file) {
    char label[300];
    if (spec->credential)
      snprintf (label, sizeof label, "credential=%s", spec->credential);
    r = keyfile_read (spec->key_file, spec->credential ? label : NULL, false,
                      &pass, &passlen, &passalloc);
  } else if (spec->passphrase_file)
    r = keyfile_read (spec->passphrase_file, NULL, true, &pass, &passlen,
                      &passalloc);
  else
    r = error_set (-EINVAL, "no key-file= or passphrase-file= given");
  if (r < 0)
    return r;
  /* A key file written by echo: its newline is part of the passphrase. */
  bool ends_in_newline = !spec->passphrase && spec->key_file && passlen > 0 &&
                         pass[passlen - 1] == '\n';

  r = node_is_uri (spec->payload)
        ? node_nbd_open (spec->payload, spec->readonly, &file)
        : node_file_open (spec->payload, spec->readonly, &file);
  /* Like qemu's image locking: a writer excludes everyone, readers
   * exclude writers, so a second luks-nbd or a qemu is refused. */
  if (r == 0 && !spec->no_locking && !node_is_uri (spec->payload)) {
    if (spec->inactive)
      node_file_lock_later (file, !spec->readonly);
    else
      r = node_file_lock (file, !spec->readonly);
  }
  /* node_stack_check_spec refused cache=none on NBD payloads. */
  if (r == 0 && spec->direct_io)
    r = node_file_set_direct (file);
  if (r < 0)
    goto out;
  r = payload_format_choose (file, spec->payload_format, &format);
  if (r < 0)
    goto out;
  *detected_format = format->name;
  r = format->open (file, spec, &payload);
  if (r < 0)
    goto out;
  file = NULL;
  if (spec->header) {
    r = open_header (spec, spec->header, &header);
    if (r < 0 && !spec->backup_header)
      goto out;
  } else
    header = payload;
  uint8_t fp[LUKS_FINGERPRINT_BYTES];
  struct shared_key *offer = NULL;
  bool used_backup = false;
  struct stat hst;
  bool can_share = spec->header && !node_is_uri (spec->header) &&
                   stat (spec->header, &hst) == 0 &&
                   luks_passphrase_fingerprint (pass, passlen, fp) == 0;
  if (header) {
    offer = can_share ? find_shared_key (&hst, spec->key_slot, fp) : NULL;
    r = node_luks_open (payload, header, pass, passlen, spec->key_slot,
                        spec->header ? spec->header : spec->payload,
                        offer ? offer->vol : NULL, spec->handover,
                        spec->handover_len, out);
    if (offer)
      settle_offer (offer, r, r == 0 ? *out : NULL);
    /* A handed-over key has no vouch to share it by. */
    if (r == 0 && can_share && !node_luks_key_shared (*out) &&
        !node_luks_key_handed_over (*out))
      remember_key (spec->header, &hst, spec->key_slot, fp, *out);
  }
  /* The backup header, when the header is missing or fails its checks (a
   * wrong passphrase is no reason: the backup has the same keyslots). */
  if (r < 0 && r != -EPERM && spec->backup_header) {
    char why[512];
    snprintf (why, sizeof why, "%s", error_message ());
    if (header != payload)
      node_close (header);
    header = NULL;
    r = open_header (spec, spec->backup_header, &header);
    if (r == 0)
      r = node_luks_open (payload, header, pass, passlen, spec->key_slot,
                          spec->backup_header, NULL, NULL, 0, out);
    if (r == 0)
      node_luks_set_warning (*out,
                             "header failed (%s); using the backup "
                             "header %s",
                             why, spec->backup_header);
    used_backup = true;
  }
  /* active=off: the nodes know it too (qcow2 then caches no table). */
  if (r == 0 && ((spec->inactive && (r = node_set_active (*out, false)) < 0) ||
                 (r = check_pairing (spec, *out, used_backup)) < 0)) {
    node_close (*out); /* with the payload and header it owns */
    *out = NULL;
    payload = header = NULL;
  }
  if (r == -EPERM && ends_in_newline)
    newline_hint (spec);
  if (r < 0 && r != -EPERM && !spec->header && payload &&
      lacks_luks_magic (payload))
    error_append (r, " (without header= the header is read from the start "
                     "of the payload; a detached header needs header=PATH)");
  if (r == 0)
    payload = header = NULL; /* owned by the luks node now */

out:
  secmem_free (pass, passalloc);
  if (header != payload)
    node_close (header);
  node_close (payload);
  node_close (file);
  return r;
}
