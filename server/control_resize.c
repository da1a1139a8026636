/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: export-resize on the control socket.
 *   {"cmd":"export-resize","name":"vm1","size":21474836480,"force":false}
 * The rules are checked on the loop; the node stack resizes itself on a
 * pool thread (ftruncate, qcow2 table writes and flushes: short, but
 * not for the loop), while the export keeps serving.  Only then do new
 * connections see the new size: NBD has no way to tell a connected
 * client, so each keeps the size it was told until it reconnects.
 * Shrinking needs "force" and no client connected (one would address
 * what is gone), and only a raw payload can shrink (docs/design.md). */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/checked.h"
#include "common/error_msg.h"
#include "server/internal.h"

struct resize {
  uv_work_t work;
  struct ctl_conn *cc;
  struct export *e; /* referenced until after_resize */
  uint64_t old_size, size;
  int r; /* the pool thread's result, and its message */
  char error[1024];
};

int
ctl_parse_size (const char *text, uint64_t *out)
{
  static const char suffixes[] = "KMGTkmgt";
  char *end;
  uint64_t v, scale = 1;

  if (text[0] < '0' || text[0] > '9')
    return error_set (-EINVAL,
                      "size '%s' is not a number of bytes (with an "
                      "optional K, M, G or T suffix)",
                      text);
  errno = 0;
  v = strtoull (text, &end, 10);
  if (*end && strchr (suffixes, *end) && !end[1]) {
    unsigned shift =
      10 * (unsigned) (1 + (strchr (suffixes, *end) - suffixes) % 4);
    scale = UINT64_C (1) << shift;
  } else if (*end)
    return error_set (-EINVAL,
                      "size '%s' is not a number of bytes (with an "
                      "optional K, M, G or T suffix)",
                      text);
  if (errno == ERANGE || ckd_mul_u64 (out, v, scale) || *out > INT64_MAX)
    return error_set (-EINVAL, "size '%s' is too large (at most 2^63-1 bytes)",
                      text);
  if (*out == 0)
    return error_set (-EINVAL, "size 0: an export needs at least one byte");
  return 0;
}

static void
resize_work (uv_work_t *w)
{
  struct resize *z = w->data;

  /* Shared, as every node op: an activation or inactivation (exclusive)
   * waits for the resize, and an export that went inactive meanwhile is
   * not written (its lock may be another host's now). */
  pthread_rwlock_rdlock (&z->e->gate);
  if (!atomic_load (&z->e->active))
    z->r = error_set (-EPERM, "export '%s' is inactive", z->e->name);
  else
    z->r = node_resize (z->e->node, z->size);
  pthread_rwlock_unlock (&z->e->gate);
  if (z->r < 0)
    snprintf (z->error, sizeof z->error, "export-resize: %s", error_message ());
}

static void
after_resize (uv_work_t *w, int status)
{
  struct resize *z = w->data;
  struct export *e = z->e;

  e->resizing = false;
  if (status < 0 && z->r == 0) {
    z->r = status;
    snprintf (z->error, sizeof z->error, "export-resize: %s",
              uv_strerror (status));
  }
  if (z->r < 0) {
    /* Failed: the export's size as the node has it now, and no more
     * than before (a shrink told new clients less meanwhile). */
    uint64_t now = node_size (e->node);
    e->size = now < z->old_size ? now : z->old_size;
    ctl_send_error (z->cc, z->error);
  } else {
    json_object *o = json_object_new_object ();
    e->size = z->size;
    log_info ("control: export '%s' resized from %" PRIu64 " to %" PRIu64
              " bytes; %u connected client(s) keep the old size until "
              "they reconnect",
              e->name, z->old_size, z->size, e->connections);
    json_object_object_add (o, "ok", json_object_new_boolean (1));
    json_object_object_add (o, "name", json_object_new_string (e->name));
    json_object_object_add (o, "old_size",
                            json_object_new_int64 ((int64_t) z->old_size));
    json_object_object_add (o, "size",
                            json_object_new_int64 ((int64_t) z->size));
    json_object_object_add (o, "connections",
                            json_object_new_int ((int) e->connections));
    ctl_send (z->cc, o);
  }
  export_unref (e);
  ctl_conn_release (z->cc);
  free (z);
}

/* The size member: a JSON number of bytes, or a string with a suffix. */
static int
size_member (const struct ctl_request *req, uint64_t *size)
{
  const struct ctl_member *m;
  enum ctl_type type = CTL_TEXT;
  int r;

  for (size_t i = 0; i < req->n; i++)
    if (!strcmp (req->m[i].key, "size") && req->m[i].type == CTL_NUMBER)
      type = CTL_NUMBER;
  r = ctl_member_get (req, "size", type, true, &m);
  if (r < 0)
    return r;
  /* A number's text points into the line: not NUL terminated. */
  char text[32];
  snprintf (text, sizeof text, "%.*s", (int) m->len, m->text);
  if (m->len >= sizeof text)
    return error_set (-EINVAL, "size '%s...' is too long", text);
  return ctl_parse_size (text, size);
}

/* Loop thread: the shrink policy and what may not run twice. */
static int
check_resize (const struct export *e, uint64_t size, bool force)
{
  if (e->readonly)
    return error_set (-EROFS, "export '%s' is read-only", e->name);
  if (!atomic_load (&e->active))
    return error_set (-EPERM,
                      "export '%s' is inactive (live migration): it may "
                      "not change the payload; export-activate it first",
                      e->name);
  if (e->resizing)
    return error_set (-EBUSY, "export '%s': a resize runs already", e->name);
  if (size % node_block_size (e->node))
    return error_set (-EINVAL,
                      "export '%s': %" PRIu64 " bytes is not a multiple of "
                      "its %u-byte sectors",
                      e->name, size, node_block_size (e->node));
  if (size < e->size && !force)
    return error_set (-EPERM,
                      "export '%s': shrinking from %" PRIu64 " to %" PRIu64
                      " bytes destroys the data past the new end; refused "
                      "without --force (\"force\":true)",
                      e->name, e->size, size);
  if (size < e->size && e->connections)
    return error_set (-EBUSY,
                      "export '%s' has %u connected client(s), which may "
                      "address the bytes a shrink removes; disconnect them "
                      "first",
                      e->name, e->connections);
  return 0;
}

int
ctl_cmd_export_resize (struct ctl_conn *cc, const struct ctl_request *req)
{
  const struct ctl_member *name, *force;
  struct export *e;
  uint64_t size;
  int r = ctl_member_get (req, "name", CTL_TEXT, true, &name);

  if (r >= 0)
    r = ctl_member_get (req, "force", CTL_BOOLEAN, false, &force);
  if (r >= 0)
    r = size_member (req, &size);
  if (r < 0)
    return r;
  e = name->text[0] ? exports_find (name->text, name->len) : NULL;
  if (!e)
    return error_set (-ENOENT, "no export '%s'", name->text);
  r = check_resize (e, size, force && force->boolean);
  if (r < 0)
    return r;
  struct resize *z = calloc (1, sizeof *z);
  if (!z)
    return error_set (-ENOMEM, "out of memory");
  z->work.data = z;
  z->cc = cc;
  z->e = e;
  z->old_size = e->size;
  z->size = size;
  r = uv_queue_work (server_loop, &z->work, resize_work, after_resize);
  if (r < 0) {
    free (z);
    return error_set (r, "cannot queue the resize: %s", uv_strerror (r));
  }
  e->resizing = true;
  /* A shrink: clients that connect while it runs are told the new size,
   * so none addresses the bytes it removes (formats/ asserts that). */
  if (size < e->size)
    e->size = size;
  export_ref (e);
  ctl_conn_hold (cc);
  return 0;
}
