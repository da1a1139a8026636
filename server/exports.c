/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the registry of exports, and an export's life: made empty
 * (export_spec.c parses its spec into it), opened (its node stack,
 * unlocked), referenced by connections, closed. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/internal.h"
#include "crypto/secmem.h"

static struct export **exports;
static size_t n_exports;

void
export_free (struct export *e)
{
  if (!e)
    return;
  node_close (e->node);
  pthread_rwlock_destroy (&e->gate);
  secmem_free (e->inline_pass, e->inline_pass_len + 1);
  free (e->label);
  for (size_t i = 0; i < sizeof e->spec_strings / sizeof e->spec_strings[0];
       i++)
    free (e->spec_strings[i]);
  free (e);
}

int
export_set_passphrase (struct export *e, const char *pass, size_t len)
{
  e->inline_pass = secmem_copy (pass, len);
  if (!e->inline_pass)
    return -ENOMEM; /* secmem_copy said why */
  e->inline_pass_len = len;
  e->spec.passphrase = e->inline_pass;
  e->spec.passphrase_len = len;
  return 0;
}

void
export_ref (struct export *e)
{
  assert (e->refs > 0); /* a freed export cannot be held again */
  e->refs++;
}

void
export_unref (struct export *e)
{
  assert (e->refs > 0);
  if (--e->refs == 0) {
    if (e->node && !e->readonly && node_flush (e->node) < 0)
      log_error ("export '%s': flush: %s", e->name, error_message ());
    log_info ("export '%s' closed", e->name);
    export_free (e);
  }
}

/* Writer-preferring: an inactivation is not starved by a stream of I/O. */
static void
init_gate (struct export *e)
{
  pthread_rwlockattr_t a;

  pthread_rwlockattr_init (&a);
  pthread_rwlockattr_setkind_np (&a,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&e->gate, &a);
  pthread_rwlockattr_destroy (&a);
  atomic_init (&e->active, true);
}

struct export *
export_new (void)
{
  struct export *e = calloc (1, sizeof *e);

  if (!e)
    return NULL;
  init_gate (e);
  e->spec.key_slot = -1;
  e->refs = 1; /* the registry's, once added */
  return e;
}

/* Any thread (the one that closed the last export using the key). */
static void
log_key_wiped (const char *header)
{
  log_info ("kept key for header %s wiped: no export uses it any more", header);
}

/* A key the previous daemon handed over (--fd-store): taken (at -v), or
 * why not. */
static void
log_handover (const struct export *e, const struct node_stack_info *info)
{
  if (info->key_handed_over)
    log_info ("export '%s': key handed over by the previous daemon, "
              "verified against the header %s (no KDF run)",
              e->name, e->spec.header ? e->spec.header : e->spec.payload);
  else if (info->handover_refused)
    log_warning ("export '%s': the handed-over key was refused (%s); "
                 "unlocked with the passphrase instead",
                 e->name, info->handover_refused);
}

int
export_open (struct export *e)
{
  const char *format = "raw";
  const void *blob = NULL;
  size_t blob_len = 0;
  int r;

  node_stack_on_key_wiped (log_key_wiped);
  if (keystore_take (e->name, &blob, &blob_len) < 0)
    log_warning ("export '%s': %s", e->name, error_message ());
  e->spec.handover = blob;
  e->spec.handover_len = blob_len;
  r = node_stack_open (&e->spec, &e->node, &format);
  keystore_release (blob, blob_len);
  e->spec.handover = NULL;
  e->spec.handover_len = 0;

  if (r < 0)
    return error_prefix (r, "%s", e->label);
  struct node_stack_info info;
  node_stack_info (e->node, &info);
  e->size = node_size (e->node);
  log_handover (e, &info);
  if (keystore_save (e->name, e->node) < 0)
    log_warning ("export '%s': its key is not kept for a restart: %s", e->name,
                 error_message ());
  if (info.warning)
    log_warning ("export '%s': %s", e->name, info.warning);
  if (info.key_shared)
    log_info ("export '%s': header %s already unlocked with this passphrase "
              "and unchanged since; sharing its key (no second KDF run)",
              e->name, e->spec.header);
  log_info ("export '%s': %s payload %s, header %s, %llu bytes, %u-byte "
            "sectors, data from byte %llu of the payload%s",
            e->name, format, e->spec.payload,
            e->spec.header ? e->spec.header : "(attached)",
            (unsigned long long) e->size, node_block_size (e->node),
            (unsigned long long) info.data_offset,
            e->readonly ? ", read-only" : "");
  /* Which volume each header belongs to, so a mix-up shows in the log. */
  log_info ("export '%s': serving with the header of UUID %s", e->name,
            info.uuid);
  if (info.backup_uuid)
    log_info ("export '%s': backup-header=%s has UUID %s (the same volume)",
              e->name, e->spec.backup_header, info.backup_uuid);
  return 0;
}

int
exports_add (struct export *e)
{
  struct export **n;

  for (size_t i = 0; i < n_exports; i++)
    if (strcmp (exports[i]->name, e->name) == 0)
      return error_set (-EEXIST, "export '%s' is given twice", e->name);
  n = realloc (exports, (n_exports + 1) * sizeof *n);
  if (!n)
    return error_set (-ENOMEM, "out of memory");
  exports = n;
  exports[n_exports++] = e;
  if (e->node && !e->size) /* added open (export_open sets it too) */
    e->size = node_size (e->node);
  return 0;
}

void
exports_remove (struct export *e)
{
  for (size_t i = 0; i < n_exports; i++)
    if (exports[i] == e) {
      memmove (&exports[i], &exports[i + 1],
               (n_exports - i - 1) * sizeof *exports);
      n_exports--;
      export_unref (e);
      return;
    }
}

/* The export that "" names: the first configured (exports become served
 * in the order their unlocks finish). */
static char *default_name;

int
exports_set_default (const char *name)
{
  free (default_name);
  default_name = strdup (name);
  return default_name ? 0 : error_set (-ENOMEM, "out of memory");
}

struct export *
exports_find (const char *name, size_t len)
{
  if (len == 0 && default_name)
    for (size_t i = 0; i < n_exports; i++)
      if (strcmp (exports[i]->name, default_name) == 0)
        return exports[i];
  if (len == 0)
    return n_exports ? exports[0] : NULL;
  for (size_t i = 0; i < n_exports; i++)
    if (strlen (exports[i]->name) == len &&
        memcmp (exports[i]->name, name, len) == 0)
      return exports[i];
  return NULL;
}

size_t
exports_count (void)
{
  return n_exports;
}

struct export *
exports_get (size_t i)
{
  return i < n_exports ? exports[i] : NULL;
}

void
exports_detach_all (void)
{
  free (exports);
  exports = NULL;
  n_exports = 0;
}

void
exports_close_all (void)
{
  for (size_t i = 0; i < n_exports; i++) {
    struct export *e = exports[i];
    export_unref (e);
  }
  node_stack_forget_keys ();
  free (exports);
  exports = NULL;
  n_exports = 0;
  free (default_name);
  default_name = NULL;
}
