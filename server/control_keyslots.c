/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the control socket's keyslot commands on a served export:
 *   {"cmd":"keyslot-list","name":"vm1"}
 *   {"cmd":"keyslot-add","name":"vm1","passphrase":"...","slot":3,
 *    "pbkdf":"argon2id","pbkdf_memory":65536,"pbkdf_parallel":2,
 *    "iter_time":2000,"pbkdf_force_iterations":4}   (all but name and
 *    passphrase optional)
 *   {"cmd":"keyslot-remove","name":"vm1","slot":1,"force":false}
 *   {"cmd":"keyslot-change","name":"vm1","slot":1,"passphrase":"..."}
 *    (and keyslot-add's KDF members)
 * The volume key is the one the export serves with: no old passphrase.
 * Each command runs on a thread of its own (a KDF of seconds, fsyncs),
 * never on the loop or in the libuv pool that serves NBD I/O; the
 * passphrase is copied into secure memory (the request line is wiped by
 * control.c) and freed, wiped, when the job ends.  The export is
 * referenced while the job runs; shutdown waits for a running job (the
 * loop runs while its async handle is open), so a header is never left
 * half-written by a SIGTERM. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/error_msg.h"
#include "server/internal.h"
#include "crypto/secmem.h"

enum ks_op { KS_LIST, KS_ADD, KS_REMOVE, KS_CHANGE };

#define KS_LIST_MAX 32

struct ks_job {
  uv_thread_t thread;
  uv_async_t done;
  struct ctl_conn *cc;
  struct export *e; /* referenced */
  enum ks_op op;
  int slot; /* -1: any (add) */
  bool force;
  char *pass; /* secure memory, pass_len + 1 bytes */
  size_t pass_len;
  char pbkdf[16];
  struct node_kdf_choice kdf;
  /* Results (the thread's until it signals done). */
  int r, added, n, version;
  struct node_keyslot_info info[KS_LIST_MAX];
  char error[1024];
};

static const char *
header_path (const struct export *e)
{
  return e->spec.header ? e->spec.header : e->spec.payload;
}

static void
job_thread (void *arg)
{
  struct ks_job *j = arg;
  struct node *n = j->e->node;
  const char *path = header_path (j->e);

  switch (j->op) {
  case KS_LIST:
    j->r =
      node_stack_keyslot_list (n, j->info, KS_LIST_MAX, &j->n, &j->version);
    break;
  case KS_ADD:
    j->r = node_stack_keyslot_add (n, path, j->pass, j->pass_len, j->slot,
                                   &j->kdf, &j->added);
    break;
  case KS_REMOVE:
    j->r = node_stack_keyslot_remove (n, path, j->slot, j->force);
    break;
  case KS_CHANGE:
    j->r = node_stack_keyslot_change (n, path, j->slot, j->pass, j->pass_len,
                                      &j->kdf, &j->added);
    break;
  }
  if (j->r < 0)
    snprintf (j->error, sizeof j->error, "%s", error_message ());
  secmem_free (j->pass, j->pass_len + 1);
  j->pass = NULL;
  uv_async_send (&j->done);
}

static json_object *
list_json (const struct ks_job *j)
{
  json_object *list = json_object_new_array ();

  for (int i = 0; i < j->n; i++) {
    const struct node_keyslot_info *k = &j->info[i];
    json_object *x = json_object_new_object ();
    json_object_object_add (x, "slot", json_object_new_int (k->id));
    json_object_object_add (x, "state", json_object_new_string ("active"));
    json_object_object_add (x, "kdf", json_object_new_string (k->kdf));
    if (!strcmp (k->kdf, "pbkdf2"))
      json_object_object_add (x, "iterations",
                              json_object_new_int64 (k->iterations));
    else {
      json_object_object_add (x, "time", json_object_new_int64 (k->iterations));
      json_object_object_add (x, "memory",
                              json_object_new_int64 (k->memory_kib));
      json_object_object_add (x, "cpus", json_object_new_int64 (k->parallel));
    }
    json_object_object_add (x, "priority",
                            json_object_new_string (k->priority));
    json_object_array_add (list, x);
  }
  return list;
}

static void
job_free (uv_handle_t *h)
{
  struct ks_job *j = h->data;

  free (j);
}

static void
job_done (uv_async_t *h)
{
  struct ks_job *j = h->data;
  static const char *const verb[] = { "listed", "added", "removed", "changed" };

  uv_thread_join (&j->thread);
  if (j->op != KS_LIST)
    header_watch_own_edit (header_path (j->e), false);
  if (j->r < 0)
    ctl_send_error (j->cc, j->error);
  else {
    json_object *o = ctl_ok ();
    json_object_object_add (o, "name", json_object_new_string (j->e->name));
    if (j->op == KS_LIST) {
      json_object_object_add (o, "luks", json_object_new_int (j->version));
      json_object_object_add (o, "keyslots", list_json (j));
    }
    if (j->op == KS_ADD || j->op == KS_CHANGE)
      json_object_object_add (o, "slot", json_object_new_int (j->added));
    if (j->op == KS_REMOVE || j->op == KS_CHANGE)
      json_object_object_add (o, "removed", json_object_new_int (j->slot));
    if (j->op != KS_LIST)
      log_info ("control: export '%s': keyslot %s (%s %d)", j->e->name,
                verb[j->op], j->op == KS_REMOVE ? "slot" : "new slot",
                j->op == KS_REMOVE ? j->slot : j->added);
    ctl_send (j->cc, o);
  }
  ctl_conn_release (j->cc);
  export_unref (j->e);
  uv_close ((uv_handle_t *) &j->done, job_free);
}

/* A number member as a uint32 in [min, max]; 0 if absent. */
static int
member_u32 (const struct ctl_request *req, const char *key, uint32_t min,
            uint32_t max, bool required, uint32_t *out)
{
  const struct ctl_member *m;
  int r = ctl_member_get (req, key, CTL_NUMBER, required, &m);
  char buf[24], *end;

  *out = 0;
  if (r <= 0)
    return r;
  if (m->len >= sizeof buf)
    return error_set (-EINVAL, "member \"%s\" is out of range", key);
  memcpy (buf, m->text, m->len);
  buf[m->len] = '\0';
  unsigned long long v = strtoull (buf, &end, 10);
  if (*end || buf[0] == '-' || v < min || v > max)
    return error_set (-EINVAL, "member \"%s\" must be an integer %u..%u", key,
                      min, max);
  *out = (uint32_t) v;
  return 1;
}

static int
kdf_members (const struct ctl_request *req, struct ks_job *j)
{
  const struct ctl_member *m;
  int r = ctl_member_get (req, "pbkdf", CTL_TEXT, false, &m);

  if (r > 0) {
    if (strcmp (m->text, "argon2id") && strcmp (m->text, "argon2i") &&
        strcmp (m->text, "pbkdf2"))
      return error_set (-EINVAL,
                        "member \"pbkdf\" must be argon2id, argon2i or "
                        "pbkdf2");
    snprintf (j->pbkdf, sizeof j->pbkdf, "%s", m->text);
    j->kdf.type = j->pbkdf;
  }
  if (r >= 0)
    r =
      member_u32 (req, "pbkdf_memory", 8, 4u << 20, false, &j->kdf.memory_kib);
  if (r >= 0)
    r = member_u32 (req, "pbkdf_parallel", 1, 4, false, &j->kdf.parallel);
  if (r >= 0)
    r = member_u32 (req, "iter_time", 1, 60000, false, &j->kdf.iter_time_ms);
  if (r >= 0)
    r = member_u32 (req, "pbkdf_force_iterations", 1, UINT32_MAX, false,
                    &j->kdf.iterations);
  return r < 0 ? r : 0;
}

static int
start_job (struct ctl_conn *cc, const struct ctl_request *req, enum ks_op op)
{
  const struct ctl_member *name, *pass = NULL, *force;
  struct ks_job *j = calloc (1, sizeof *j);
  struct export *e = NULL;
  uint32_t slot = 0;
  int r = j ? 0 : error_set (-ENOMEM, "out of memory"), has_slot = 0;

  if (r == 0)
    r = ctl_member_get (req, "name", CTL_TEXT, true, &name);
  if (r >= 0 && !(e = exports_find (name->text, name->len)))
    r = error_set (-ENOENT, "no export '%s'", name->text);
  if (r >= 0 && !e->node)
    r = error_set (-ENOENT, "export '%s' is not open", name->text);
  if (r >= 0 && (op == KS_ADD || op == KS_CHANGE))
    r = ctl_member_get (req, "passphrase", CTL_STRING, true, &pass);
  if (r >= 0 && op != KS_LIST)
    r = has_slot = member_u32 (req, "slot", 0, 31, op != KS_ADD, &slot);
  if (r >= 0 && op == KS_REMOVE) {
    r = ctl_member_get (req, "force", CTL_BOOLEAN, false, &force);
    j->force = r > 0 && force->boolean;
  }
  if (r >= 0 && (op == KS_ADD || op == KS_CHANGE))
    r = kdf_members (req, j);
  if (r >= 0 && pass) {
    j->pass = secmem_copy (pass->text, pass->len);
    j->pass_len = pass->len;
    if (!j->pass)
      r = error_prefix (-ENOMEM, "the passphrase");
  }
  if (r < 0) {
    if (j)
      secmem_free (j->pass, j->pass_len + 1);
    free (j);
    return r;
  }
  j->op = op;
  j->slot = has_slot ? (int) slot : -1;
  j->cc = cc;
  j->e = e;
  j->done.data = j;
  uv_async_init (server_loop, &j->done, job_done);
  export_ref (e);
  ctl_conn_hold (cc);
  if (op != KS_LIST) /* from before the first write on */
    header_watch_own_edit (header_path (e), true);
  r = uv_thread_create (&j->thread, job_thread, j);
  if (r < 0) {
    if (op != KS_LIST)
      header_watch_own_edit (header_path (e), false);
    secmem_free (j->pass, j->pass_len + 1);
    export_unref (e);
    ctl_conn_release (cc);
    uv_close ((uv_handle_t *) &j->done, job_free);
    return error_set (r, "cannot start the job: %s", uv_strerror (r));
  }
  return 0;
}

int
ctl_cmd_keyslot_list (struct ctl_conn *cc, const struct ctl_request *req)
{
  return start_job (cc, req, KS_LIST);
}

int
ctl_cmd_keyslot_add (struct ctl_conn *cc, const struct ctl_request *req)
{
  return start_job (cc, req, KS_ADD);
}

int
ctl_cmd_keyslot_remove (struct ctl_conn *cc, const struct ctl_request *req)
{
  return start_job (cc, req, KS_REMOVE);
}

int
ctl_cmd_keyslot_change (struct ctl_conn *cc, const struct ctl_request *req)
{
  return start_job (cc, req, KS_CHANGE);
}
