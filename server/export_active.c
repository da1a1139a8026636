/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: inactive exports, for the live migration handoff (modelled
 * on QEMU 10's inactive block nodes and blockdev-set-active).  The source
 * host's export goes inactive after its guest stopped: every write
 * flushed, nothing of the payload's metadata cached, the image lock
 * released.  The destination's export, added inactive (active=off),
 * then becomes active: it takes the lock and reads the metadata afresh.
 * The change runs in the pool holding the export's gate exclusive, so it
 * waits for the node ops in flight and no op runs while the stack
 * changes. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/error_msg.h"
#include "server/internal.h"

struct change {
  uv_work_t work;
  struct export *e;
  bool active;
  int r;
  char msg[1024];
  void (*done) (void *arg, int r, const char *msg);
  void *arg;
};

/* Pool thread.  Inactivation flushes first: a failed flush keeps the
 * export active (its writes are not known to be durable, so the other
 * host must not take over).  An activation that took the lock but could
 * not reload lets go of the lock again. */
static void
change_work (uv_work_t *w)
{
  struct change *c = w->data;
  struct export *e = c->e;

  pthread_rwlock_wrlock (&e->gate);
  if (atomic_load (&e->active) == c->active)
    c->r = 0;
  else if (!c->active) {
    c->r = e->readonly ? 0 : node_flush (e->node);
    if (c->r == 0) {
      atomic_store (&e->active, false);
      c->r = node_set_active (e->node, false);
    }
  } else {
    c->r = node_set_active (e->node, true);
    if (c->r == 0)
      atomic_store (&e->active, true);
    else {
      snprintf (c->msg, sizeof c->msg, "%s", error_message ());
      node_set_active (e->node, false);
    }
  }
  pthread_rwlock_unlock (&e->gate);
  if (c->r < 0 && !c->msg[0])
    snprintf (c->msg, sizeof c->msg, "%s", error_message ());
}

static void
after_change_work (uv_work_t *w, int status)
{
  struct change *c = w->data;

  if (status < 0 && c->r == 0) {
    c->r = status;
    snprintf (c->msg, sizeof c->msg, "cancelled");
  }
  c->e->changing = false;
  if (c->r == 0)
    log_info ("export '%s': %s", c->e->name,
              c->active ? "active (image lock taken, metadata reloaded)"
                        : "inactive (flushed, caches dropped, image lock "
                          "released)");
  c->done (c->arg, c->r, c->msg);
  export_unref (c->e);
  free (c);
}

int
export_set_active (struct export *e, bool active,
                   void (*done) (void *arg, int r, const char *msg), void *arg)
{
  struct change *c;
  int r;

  if (e->changing)
    return error_set (-EBUSY,
                      "export '%s': an activation or inactivation is "
                      "running; retry when it is done",
                      e->name);
  if (!(c = calloc (1, sizeof *c)))
    return error_set (-ENOMEM, "out of memory");
  c->work.data = c;
  c->e = e;
  c->active = active;
  c->done = done;
  c->arg = arg;
  r = uv_queue_work (server_loop, &c->work, change_work, after_change_work);
  if (r < 0) {
    free (c);
    return error_set (r, "cannot queue the change: %s", uv_strerror (r));
  }
  export_ref (e);
  e->changing = true;
  return 0;
}
