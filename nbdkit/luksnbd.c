/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: nbdkit-luksnbd-filter, the luks node of formats/ as an nbdkit
 * filter: the plugin below holds the ciphertext (and the header, unless
 * header= names a file), clients see the plaintext.
 *
 * A header file is unlocked in .get_ready, before nbdkit forks (into the
 * background, or for --run), so that a wrong passphrase or a refused
 * header is nbdkit's exit status in every mode.  mlock does not survive
 * fork, so .after_fork locks the secure memory again in the process that
 * serves, then makes the luks node through a context of the plugin's own
 * opened for that, offered the key unlocked before (no second KDF).  An
 * attached header, read through the plugin (which may open only after its
 * own .after_fork), is unlocked there.  Every connection then shares the
 * one luks node and its key.  Requests reach the plugin through their own
 * connection's context (next-node.h). */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "common/error_msg.h"
#include "formats/keyfile.h"
#include "crypto/luks.h"
#include "crypto/secmem.h"
#include "nbdkit/next-node.h"
#include "formats/stack.h"

/* The daemon's NBD_INFO_BLOCK_SIZE maximum (server/internal.h). */
#define MAX_REQUEST_BYTES (32 * 1024 * 1024)

/* Parameters, set in .config (the main thread, before any connection). */
static char *header_path;     /* NULL: the header is attached */
static char *passphrase_file; /* passphrase=+FILE: one newline stripped */
static char *key_file;        /* key-file=FILE: exact bytes */
static char *typed;           /* passphrase=- or -FD, read by nbdkit */
static int key_slot = -1;

/* From .get_ready to .after_fork: the passphrase (secure memory), the key
 * unlocked from a header file, and whether the secure pool could be
 * locked before the fork (so must be again after it). */
static char *pass;
static size_t passlen, passalloc;
static struct luks_volume *early;
static bool pool_locked;

/* Set in .after_fork, read by every connection, closed in .cleanup. */
static struct node *volume;
static uint64_t payload_size; /* the plugin's size at unlock */

static void
forget_typed (void)
{
  /* nbdkit_read_password's ordinary memory: wiped once copied. */
  if (typed) {
    explicit_bzero (typed, strlen (typed));
    free (typed);
    typed = NULL;
  }
}

static void
forget_pass (void)
{
  secmem_free (pass, passalloc);
  pass = NULL;
  luks_volume_free (early);
  early = NULL;
}

static void
luksnbd_unload (void)
{
  forget_pass ();
  forget_typed ();
  free (header_path);
  free (passphrase_file);
  free (key_file);
}

static int
set_path (char **dst, const char *key, const char *value)
{
  if (*dst) {
    nbdkit_error ("%s= given twice", key);
    return -1;
  }
  *dst = nbdkit_absolute_path (value);
  return *dst ? 0 : -1;
}

/* passphrase=+FILE, - (the terminal) or -FD, as nbdkit_read_password
 * takes them; never the passphrase itself, which every user could read in
 * the process list. */
static int
config_passphrase (const char *value)
{
  if (passphrase_file || typed) {
    nbdkit_error ("passphrase= given twice");
    return -1;
  }
  if (value[0] == '+')
    return set_path (&passphrase_file, "passphrase", value + 1);
  if (value[0] == '-')
    return nbdkit_read_password (value, &typed);
  nbdkit_error ("passphrase=: give +FILE, - (read from the terminal) or "
                "-FD (read from a file descriptor); a passphrase on the "
                "command line is visible to every user of this machine");
  return -1;
}

static int
luksnbd_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
                const char *key, const char *value)
{
  if (strcmp (key, "header") == 0) {
    if (header_path) {
      nbdkit_error ("header= given twice");
      return -1;
    }
    if (value[0] == '\0')
      return 0; /* attached, as without header= */
    if (node_is_uri (value)) {
      header_path = strdup (value);
      if (!header_path)
        nbdkit_error ("strdup: %m");
      return header_path ? 0 : -1;
    }
    return set_path (&header_path, key, value);
  }
  if (strcmp (key, "passphrase") == 0)
    return config_passphrase (value);
  if (strcmp (key, "key-file") == 0)
    return set_path (&key_file, key, value);
  if (strcmp (key, "key-slot") == 0) {
    if (nbdkit_parse_int ("key-slot", value, &key_slot) == -1)
      return -1;
    if (key_slot < 0 || key_slot > 31) {
      nbdkit_error ("key-slot=%s: expected 0 to 31", value);
      return -1;
    }
    return 0;
  }
  return next (nxdata, key, value);
}

static int
luksnbd_config_complete (nbdkit_next_config_complete *next,
                         nbdkit_backend *nxdata)
{
  int given = !!(passphrase_file || typed) + !!key_file;

  if (given != 1) {
    nbdkit_error (given ? "give passphrase= or key-file=, not both"
                        : "passphrase= or key-file= is required");
    return -1;
  }
  return next (nxdata);
}

#define luksnbd_config_help                                                    \
  "header=<FILE|URI>      Detached LUKS header (absent or empty: attached).\n" \
  "passphrase=+FILE|-|-FD The passphrase (or key-file=).\n"                    \
  "key-file=FILE          Key file: its exact bytes.\n"                        \
  "key-slot=N             Try only this key slot."

static int
luksnbd_thread_model (void)
{
  return NBDKIT_THREAD_MODEL_PARALLEL;
}

/* The passphrase in secure memory (initialised in this process first). */
static int
read_secret (void)
{
  int r = luks_init ();

  if (r < 0)
    return r;
  if (key_file)
    return keyfile_read (key_file, NULL, false, &pass, &passlen, &passalloc);
  if (passphrase_file)
    return keyfile_read (passphrase_file, NULL, true, &pass, &passlen,
                         &passalloc);
  passlen = strlen (typed);
  passalloc = passlen + 1;
  pass = secmem_copy (typed, passlen);
  forget_typed ();
  return pass ? 0 : -ENOMEM; /* secmem_copy said why */
}

/* The luks node over the plugin context `ctx`, which is entered. */
static int
unlock (nbdkit_next *ctx)
{
  struct node *payload = NULL;
  int64_t size = ctx->get_size (ctx);
  int r;

  if (size < 0)
    return error_set (-EIO, "the plugin could not tell its size");
  payload_size = (uint64_t) size;
  r = next_node_open (payload_size, "the plugin", &payload);
  if (r == 0)
    r = node_stack_open_over (payload, header_path,
                              header_path ? header_path : "the plugin", pass,
                              passlen, key_slot, early, &volume);
  if (r == 0) {
    struct node_stack_info info;
    node_stack_info (volume, &info);
    if (info.warning)
      nbdkit_error ("warning: %s", info.warning);
  }
  return r;
}

static void
log_hook (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  nbdkit_vdebug (fmt, ap);
  va_end (ap);
}

/* A header file (not an NBD URI: no connection is carried over a fork)
 * is checked and unlocked now, before nbdkit forks. */
static int
unlock_early (void)
{
  if (!header_path || node_is_uri (header_path))
    return 0;
  return node_stack_unlock_header (header_path, pass, passlen, key_slot,
                                   &early);
}

static int
luksnbd_get_ready (int thread_model)
{
  int r;

  node_set_log_hook (log_hook);
  r = read_secret ();
  if (r == 0)
    r = unlock_early ();
  if (r < 0) {
    nbdkit_error ("%s", error_message ());
    forget_pass ();
    return -1;
  }
  /* libgcrypt locked its pool if it could (RLIMIT_MEMLOCK); if it could
   * not, the serving process cannot either, and runs as the daemon does
   * then: secrets kept apart and wiped, not locked. */
  pool_locked = secmem_relock () == 0;
  if (!pool_locked)
    nbdkit_debug ("luksnbd: %s", error_message ());
  return 0;
}

static int
luksnbd_after_fork (nbdkit_backend *backend)
{
  nbdkit_next *ctx;
  int r;

  /* The key and passphrase are in the pool: lock it before anything. */
  if (pool_locked && secmem_relock () < 0) {
    nbdkit_error ("luksnbd: after nbdkit forked: %s", error_message ());
    forget_pass ();
    return -1;
  }
  /* Shared: outside any connection, read-only (the header and the size
   * are all it reads), closed once the key is unlocked. */
  ctx = nbdkit_next_context_open (backend, 1, "", 1);
  if (!ctx || ctx->prepare (ctx) == -1) {
    forget_pass ();
    if (ctx)
      nbdkit_next_context_close (ctx);
    nbdkit_error ("luksnbd: could not open the plugin to unlock the volume");
    return -1;
  }
  next_node_enter (ctx);
  r = unlock (ctx);
  next_node_enter (NULL);
  forget_pass ();
  ctx->finalize (ctx);
  nbdkit_next_context_close (ctx);
  if (r < 0) {
    nbdkit_error ("%s", error_message ());
    return -1;
  }
  struct node_stack_info info;
  node_stack_info (volume, &info);
  nbdkit_debug ("luksnbd: unlocked %s: %llu bytes of plaintext%s",
                node_label (volume), (unsigned long long) node_size (volume),
                info.key_shared ? " (key unlocked before fork)" : "");
  return 0;
}

static void
luksnbd_cleanup (nbdkit_backend *backend)
{
  node_close (volume); /* wipes the key */
  volume = NULL;
}

static void *
luksnbd_open (nbdkit_next_open *next, nbdkit_context *context, int readonly,
              const char *exportname, int is_tls)
{
  if (next (context, readonly, exportname) == -1)
    return NULL;
  return NBDKIT_HANDLE_NOT_NEEDED;
}

/* One volume per nbdkit: a plugin export of another size (another export
 * name, a file that changed size) is not the volume that was unlocked. */
static int
luksnbd_prepare (nbdkit_next *next, void *handle, int readonly)
{
  int64_t size = next->get_size (next);

  if (size < 0)
    return -1;
  if ((uint64_t) size != payload_size) {
    nbdkit_error ("luksnbd: the plugin's export is %lld bytes, but the "
                  "volume was unlocked from %llu bytes",
                  (long long) size, (unsigned long long) payload_size);
    return -1;
  }
  return 0;
}

static int64_t
luksnbd_get_size (nbdkit_next *next, void *handle)
{
  return (int64_t) node_size (volume);
}

/* As the daemon's NBD_INFO_BLOCK_SIZE (server/handshake.c), and no more
 * than the plugin takes in one request. */
static int
luksnbd_block_size (nbdkit_next *next, void *handle, uint32_t *minimum,
                    uint32_t *preferred, uint32_t *maximum)
{
  uint32_t pmin, ppref, pmax;

  if (next->block_size (next, &pmin, &ppref, &pmax) == -1)
    return -1;
  *minimum = 1;
  *preferred = node_preferred_block_size (volume);
  *maximum = MAX_REQUEST_BYTES;
  if (pmax && pmax < *maximum)
    *maximum = pmax / node_block_size (volume) * node_block_size (volume);
  if (*maximum < *preferred)
    *maximum = *preferred;
  return 0;
}

/* Zeroing writes encrypted zeros (zero ciphertext would read as noise):
 * the filter does it, whatever the plugin can, and it is never fast. */
static int
luksnbd_can_zero (nbdkit_next *next, void *handle)
{
  return NBDKIT_ZERO_NATIVE;
}

static int
luksnbd_can_fast_zero (nbdkit_next *next, void *handle)
{
  return 0;
}

/* Prefetch warms the plugin's cache if it has one, else is a no-op:
 * never a read that decrypts for nothing. */
static int
luksnbd_can_cache (nbdkit_next *next, void *handle)
{
  return NBDKIT_CACHE_NATIVE;
}

static int
failed (int r, int *err)
{
  nbdkit_error ("%s", error_message ());
  *err = -r;
  return -1;
}

static int
luksnbd_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
               uint64_t offset, uint32_t flags, int *err)
{
  int r;

  next_node_enter (next);
  r = node_pread (volume, buf, count, offset);
  next_node_enter (NULL);
  return r < 0 ? failed (r, err) : 0;
}

/* The buffer is nbdkit's (or a filter's above): encrypted in a copy. */
static int
luksnbd_pwrite (nbdkit_next *next, void *handle, const void *buf,
                uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  int r;

  next_node_enter (next);
  r = node_pwrite (volume, buf, count, offset,
                   (flags & NBDKIT_FLAG_FUA) ? NODE_FUA : 0);
  next_node_enter (NULL);
  return r < 0 ? failed (r, err) : 0;
}

static int
luksnbd_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  int r;

  next_node_enter (next);
  r = node_flush (volume);
  next_node_enter (NULL);
  return r < 0 ? failed (r, err) : 0;
}

/* As the daemon: FUA on a trim is a flush after it. */
static int
luksnbd_trim (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
              uint32_t flags, int *err)
{
  int r;

  next_node_enter (next);
  r = node_trim (volume, count, offset);
  if (r == 0 && (flags & NBDKIT_FLAG_FUA))
    r = node_flush (volume);
  next_node_enter (NULL);
  return r < 0 ? failed (r, err) : 0;
}

static int
luksnbd_zero (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
              uint32_t flags, int *err)
{
  int r;

  if (flags & NBDKIT_FLAG_FAST_ZERO) {
    *err = ENOTSUP;
    return -1;
  }
  next_node_enter (next);
  r =
    node_zero (volume, count, offset, (flags & NBDKIT_FLAG_FUA) ? NODE_FUA : 0);
  next_node_enter (NULL);
  return r < 0 ? failed (r, err) : 0;
}

/* The luks node's extents: holes stay holes, nothing reads as zeros. */
static int
luksnbd_extents (nbdkit_next *next, void *handle, uint32_t count,
                 uint64_t offset, uint32_t flags,
                 struct nbdkit_extents *extents, int *err)
{
  struct extent_list out = { .max = (flags & NBDKIT_FLAG_REQ_ONE) ? 1 : 0 };
  int r;

  next_node_enter (next);
  r = node_extents (volume, count, offset, &out);
  next_node_enter (NULL);
  for (size_t i = 0; r == 0 && i < out.n; i++) {
    uint32_t type = ((out.e[i].flags & EXTENT_HOLE) ? NBDKIT_EXTENT_HOLE : 0) |
                    ((out.e[i].flags & EXTENT_ZERO) ? NBDKIT_EXTENT_ZERO : 0);
    if (nbdkit_add_extent (extents, out.e[i].offset, out.e[i].length, type) ==
        -1)
      r = error_set (errno ? -errno : -EIO, "luksnbd: adding an extent failed");
  }
  extent_list_free (&out);
  return r < 0 ? failed (r, err) : 0;
}

static int
luksnbd_cache (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
               uint32_t flags, int *err)
{
  int r;

  next_node_enter (next);
  r = node_prefetch (volume, count, offset);
  next_node_enter (NULL);
  return r < 0 ? failed (r, err) : 0;
}

static struct nbdkit_filter filter = {
  .name = "luksnbd",
  .longname = "nbdkit luks-nbd filter",
  .description = "LUKS1 and LUKS2 volumes, attached or detached headers",
  .unload = luksnbd_unload,
  .config = luksnbd_config,
  .config_complete = luksnbd_config_complete,
  .config_help = luksnbd_config_help,
  .thread_model = luksnbd_thread_model,
  .get_ready = luksnbd_get_ready,
  .after_fork = luksnbd_after_fork,
  .cleanup = luksnbd_cleanup,
  .open = luksnbd_open,
  .prepare = luksnbd_prepare,
  .get_size = luksnbd_get_size,
  .block_size = luksnbd_block_size,
  .can_zero = luksnbd_can_zero,
  .can_fast_zero = luksnbd_can_fast_zero,
  .can_cache = luksnbd_can_cache,
  .pread = luksnbd_pread,
  .pwrite = luksnbd_pwrite,
  .flush = luksnbd_flush,
  .trim = luksnbd_trim,
  .zero = luksnbd_zero,
  .extents = luksnbd_extents,
  .cache = luksnbd_cache,
};

NBDKIT_REGISTER_FILTER (filter)
