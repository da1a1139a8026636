/* luks-nbd: building an export's node stack from its spec:
 *   luks(payload = raw(file(P)), header = file(H) or the payload itself). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>

#include "error.h"
#include "keyfile.h"
#include "luks.h"
#include "node.h"

#define QCOW2_CACHE_DEFAULT (1024 * 1024)

static const unsigned char qcow2_magic[4] = { 'Q', 'F', 'I', 0xfb };

/* Probes the payload's format (qcow2 magic) unless the spec names it. */
static int
payload_format (struct node *file, const char *want, const char **format)
{
  unsigned char magic[4];
  bool is_qcow2 = false;

  if (want && strcmp (want, "auto") != 0) {
    if (strcmp (want, "raw") != 0 && strcmp (want, "qcow2") != 0)
      return error_set (-EINVAL,
                        "payload-format=%s: expected auto, raw or qcow2", want);
    *format = want; /* named: the payload is not even read */
    return 0;
  }
  if (file->size >= sizeof magic) {
    int r = node_pread (file, magic, sizeof magic, 0);
    if (r < 0)
      return error_prefix (r, "probing the payload format (payload-format=)");
    is_qcow2 = memcmp (magic, qcow2_magic, sizeof magic) == 0;
  }
  *format = is_qcow2 ? "qcow2" : "raw";
  return 0;
}

/* Unlocked keys kept for other exports naming the same header file (by
 * device and inode) with the same key slot choice and the very same
 * passphrase: one KDF run for all of them.  Loop thread at start-up only
 * (exports are opened before anything is served). */
struct shared_key {
  dev_t dev;
  ino_t ino;
  int key_slot;
  uint8_t fingerprint[LUKS_FINGERPRINT_BYTES];
  struct luks_volume *vol; /* one reference held here */
};
static struct shared_key *shared_keys;
static size_t n_shared_keys;
/* Exports added on the control socket are opened in worker threads. */
static pthread_mutex_t shared_keys_lock = PTHREAD_MUTEX_INITIALIZER;

/* Returns a new reference (the caller's), or NULL. */
static struct luks_volume *
find_shared_key (const struct stat *st, int key_slot, const uint8_t *fp)
{
  struct luks_volume *v = NULL;

  pthread_mutex_lock (&shared_keys_lock);
  for (size_t i = 0; i < n_shared_keys && !v; i++) {
    struct shared_key *k = &shared_keys[i];
    if (k->dev == st->st_dev && k->ino == st->st_ino &&
        k->key_slot == key_slot && luks_fingerprint_equal (k->fingerprint, fp))
      v = luks_volume_ref (k->vol);
  }
  pthread_mutex_unlock (&shared_keys_lock);
  return v;
}

static void
remember_key (const struct stat *st, int key_slot, const uint8_t *fp,
              struct luks_volume *vol)
{
  struct shared_key *n;

  pthread_mutex_lock (&shared_keys_lock);
  n = realloc (shared_keys, (n_shared_keys + 1) * sizeof *n);
  if (!n) {
    pthread_mutex_unlock (&shared_keys_lock);
    return; /* only an optimisation: the next export runs its own KDF */
  }
  shared_keys = n;
  n[n_shared_keys].dev = st->st_dev;
  n[n_shared_keys].ino = st->st_ino;
  n[n_shared_keys].key_slot = key_slot;
  memcpy (n[n_shared_keys].fingerprint, fp, LUKS_FINGERPRINT_BYTES);
  n[n_shared_keys].vol = luks_volume_ref (vol);
  n_shared_keys++;
  pthread_mutex_unlock (&shared_keys_lock);
}

void
node_stack_forget_keys (void)
{
  for (size_t i = 0; i < n_shared_keys; i++)
    luks_volume_free (shared_keys[i].vol);
  free (shared_keys);
  shared_keys = NULL;
  n_shared_keys = 0;
}

/* Headers are only read: never written, locked shared. */
static int
open_header (const struct stack_spec *spec, const char *where,
             struct node **out)
{
  int r = node_is_uri (where) ? node_nbd_open (where, true, out)
                              : node_file_open (where, true, out);

  if (r == 0 && !spec->no_locking && !node_is_uri (where) &&
      (r = node_file_lock (*out, false)) < 0) {
    node_close (*out);
    *out = NULL;
  }
  return r;
}

int
node_stack_open (const struct stack_spec *spec, struct node **out,
                 const char **detected_format)
{
  struct node *file = NULL, *payload = NULL, *header = NULL;
  char *pass = NULL;
  size_t passlen = 0, passalloc = 0;
  int r;

  /* Before the first secure allocation (the passphrase). */
  r = luks_init ();
  if (r < 0)
    return r;
  if (spec->passphrase) {
    pass = keyfile_secret_copy (spec->passphrase, spec->passphrase_len);
    passlen = spec->passphrase_len;
    passalloc = passlen + 1;
    r = pass ? 0 : error_set (-ENOMEM, "out of secure memory");
  } else if (spec->key_file)
    r = keyfile_read (spec->key_file, false, &pass, &passlen, &passalloc);
  else if (spec->passphrase_file)
    r = keyfile_read (spec->passphrase_file, true, &pass, &passlen, &passalloc);
  else
    r = error_set (-EINVAL, "no key-file= or passphrase-file= given");
  if (r < 0)
    return r;

  r = node_is_uri (spec->payload)
        ? node_nbd_open (spec->payload, spec->readonly, &file)
        : node_file_open (spec->payload, spec->readonly, &file);
  /* Like qemu's image locking: a writer excludes everyone, readers
   * exclude writers, so a second luks-nbd or a qemu is refused. */
  if (r == 0 && !spec->no_locking && !node_is_uri (spec->payload))
    r = node_file_lock (file, !spec->readonly);
  /* exports.c refuses cache=none on NBD payloads. */
  if (r == 0 && spec->direct_io && !node_is_uri (spec->payload))
    r = node_file_set_direct (file);
  if (r < 0)
    goto out;
  r = payload_format (file, spec->payload_format, detected_format);
  if (r < 0)
    goto out;
  if (strcmp (*detected_format, "qcow2") == 0)
    r = node_qcow2_open (file,
                         spec->qcow2_cache_bytes ? spec->qcow2_cache_bytes
                                                 : QCOW2_CACHE_DEFAULT,
                         spec->payload_backing, &payload);
  else
    r = node_raw_open (file, 0, file->size, &payload);
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
  struct luks_volume *shared = NULL;
  struct stat hst;
  bool can_share = spec->header && !node_is_uri (spec->header) &&
                   stat (spec->header, &hst) == 0 &&
                   luks_passphrase_fingerprint (pass, passlen, fp) == 0;
  if (header) {
    shared = can_share ? find_shared_key (&hst, spec->key_slot, fp) : NULL;
    r =
      node_luks_open (payload, header, pass, passlen, spec->key_slot,
                      spec->header ? spec->header : spec->payload, shared, out);
    luks_volume_free (shared); /* the node holds its own reference */
  }
  if (r == 0 && can_share && !node_luks_key_shared (*out))
    remember_key (&hst, spec->key_slot, fp, node_luks_volume (*out));
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
                          spec->backup_header, NULL, out);
    if (r == 0)
      node_luks_set_warning (*out,
                             "header failed (%s); using the backup "
                             "header %s",
                             why, spec->backup_header);
  }
  if (r == 0)
    payload = header = NULL; /* owned by the luks node now */

out:
  luks_secret_free (pass, passalloc);
  if (header != payload)
    node_close (header);
  node_close (payload);
  node_close (file);
  return r;
}
