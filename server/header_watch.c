/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: watching detached header files while serving (loop thread).
 *
 * An export validated its header and took the volume key when it was
 * opened and never reads the header again, so an edited, replaced or
 * deleted header changes nothing for the running export.  But the key
 * kept for other exports of that header must not outlive what the header
 * vouches for: every change stops offering it (the next export on the
 * header is checked against the header as it is then, and unlocks afresh
 * if it differs; formats/stack.c and crypto/unlock.c check that anyway,
 * this only drops the key early).  A change may mean an operator's
 * mistake or an attack (a re-encryption or a revoked passphrase), so it
 * is logged (once per export and kind of change: a rewrite fires many
 * events), and once the file has been quiet for SETTLE_MS the header is
 * re-read in the pool and checked against the export's own key: the log
 * then says whether it still vouches for it (an added passphrase) or not
 * (a re-encryption: writes would corrupt the volume).  Our own keyslot
 * edits (control_keyslots.c) are announced: their events, while the edit
 * runs and for SETTLE_MS after (the loop may see the events after the
 * edit's end), drop the kept keys as any change does but are not
 * warned about as someone else's. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error_msg.h"
#include "server/internal.h"

/* A rewrite (cryptsetup reencrypt) fires events for seconds: the header
 * is re-checked once no event came for this long. */
enum { SETTLE_MS = 250 };

struct header_watch;

/* One re-check in the thread pool (a PBKDF2 of the digest's cost). */
struct header_check {
  uv_work_t req;
  struct header_watch *w; /* NULL once the watch is closed */
  struct export *e;       /* a reference, for the node and the names */
  int r;
  char why[512];
};

struct header_watch {
  uv_fs_event_t handle;
  uv_timer_t settle;
  int open_handles; /* freed when both handles are closed */
  struct header_watch *next;
  char *export_name, *path;
  bool told_change, told_rename;
  struct header_check *check; /* in flight, or NULL */
  bool recheck;               /* events came while it ran */
  unsigned own_edits;         /* our keyslot edits running */
  uint64_t own_until;         /* uv_now: events before this are ours */
  bool own_change;            /* the change to re-check was ours */
};

static struct header_watch *watches;

static void on_settled (uv_timer_t *t);

/* Worker thread. */
static void
check_work (uv_work_t *req)
{
  struct header_check *c = req->data;

  c->r = node_stack_check_header (c->e->node);
  if (c->r < 0)
    snprintf (c->why, sizeof c->why, "%s", error_message ());
}

static void
check_done (uv_work_t *req, int status)
{
  struct header_check *c = req->data;
  struct export *e = c->e;

  bool own = c->w && c->w->own_change;

  if (c->w)
    c->w->own_change = false;
  if (status < 0)
    ; /* cancelled at shutdown */
  else if (c->r == 0 && own)
    log_info ("export '%s': header %s, re-read after our own keyslot edit, "
              "vouches for the key this export serves with",
              e->name, e->spec.header);
  else if (c->r == 0)
    log_info ("export '%s': header %s, re-read after the change, still "
              "vouches for the key this export serves with",
              e->name, e->spec.header);
  else if (c->r == -ESTALE)
    log_error ("export '%s': header %s no longer vouches for the key this "
               "export serves with (%s); it serves on with that key: reads "
               "give the old key's plaintext and writes would corrupt the "
               "volume: remove the export and add it again",
               e->name, e->spec.header, c->why);
  else
    log_warning ("export '%s': header %s changed and cannot be checked now: "
                 "%s",
                 e->name, e->spec.header, c->why);
  if (c->w) {
    c->w->check = NULL;
    if (c->w->recheck) {
      c->w->recheck = false;
      uv_timer_start (&c->w->settle, on_settled, SETTLE_MS, 0);
    }
  }
  export_unref (e);
  free (c);
}

/* The header has been quiet for SETTLE_MS: check it in the pool. */
static void
on_settled (uv_timer_t *t)
{
  struct header_watch *w = t->data;
  struct export *e = exports_find (w->export_name, strlen (w->export_name));
  struct header_check *c;

  if (w->check) {
    w->recheck = true;
    return;
  }
  if (!e || !e->node || !(c = calloc (1, sizeof *c)))
    return;
  c->req.data = c;
  c->w = w;
  c->e = e;
  export_ref (e);
  if (uv_queue_work (t->loop, &c->req, check_work, check_done) < 0) {
    export_unref (e);
    free (c);
    return;
  }
  w->check = c;
}

static void
on_header_event (uv_fs_event_t *h, const char *file, int events, int status)
{
  struct header_watch *w = h->data;

  if (status < 0) {
    log_warning ("export '%s': watching header %s: %s", w->export_name, w->path,
                 uv_strerror (status));
    return;
  }
  /* On every event: a key kept after the last one may be stale again. */
  size_t dropped = node_stack_forget_header (w->path);
  bool own = w->own_edits > 0 || uv_now (h->loop) <= w->own_until;
  if (own && (events & UV_CHANGE))
    w->own_change = true;
  else if ((events & UV_RENAME) && !w->told_rename) {
    w->told_rename = true;
    log_warning ("export '%s': header %s was renamed or removed; serving on "
                 "with the key unlocked at start; its kept key is no longer "
                 "offered to new exports (%zu dropped now)",
                 w->export_name, w->path, dropped);
  } else if ((events & UV_CHANGE) && !w->told_change) {
    w->told_change = true;
    log_warning ("export '%s': header %s was modified; serving on with the "
                 "key unlocked at start (re-checked against the header once "
                 "it settles); its kept key is no longer offered to new "
                 "exports, which unlock with the header as it is then "
                 "(%zu dropped now)",
                 w->export_name, w->path, dropped);
  }
  if (events & UV_CHANGE)
    uv_timer_start (&w->settle, on_settled, SETTLE_MS, 0);
}

void
header_watch_start (uv_loop_t *loop, const struct export *e)
{
  struct header_watch *w;
  int r;

  /* Local detached headers only: URIs and attached headers have no file
   * of their own to watch. */
  if (!e->spec.header || strstr (e->spec.header, "://"))
    return;
  w = calloc (1, sizeof *w);
  if (!w || !(w->export_name = strdup (e->name)) ||
      !(w->path = strdup (e->spec.header))) {
    if (w)
      free (w->export_name);
    free (w);
    log_warning ("export '%s': not watching the header: out of memory",
                 e->name);
    return;
  }
  uv_fs_event_init (loop, &w->handle);
  w->handle.data = w;
  uv_timer_init (loop, &w->settle);
  w->settle.data = w;
  w->open_handles = 2;
  r = uv_fs_event_start (&w->handle, on_header_event, w->path, 0);
  if (r < 0)
    log_warning ("export '%s': not watching header %s: %s", e->name, w->path,
                 uv_strerror (r));
  w->next = watches;
  watches = w;
}

static void
free_watch (uv_handle_t *h)
{
  struct header_watch *w = h->data;

  if (--w->open_handles > 0)
    return;
  free (w->export_name);
  free (w->path);
  free (w);
}

static void
close_watch (struct header_watch *w)
{
  if (w->check)
    w->check->w = NULL; /* it finishes on its own */
  uv_fs_event_stop (&w->handle);
  uv_close ((uv_handle_t *) &w->handle, free_watch);
  uv_close ((uv_handle_t *) &w->settle, free_watch);
}

void
header_watch_stop (const char *export_name)
{
  for (struct header_watch **p = &watches; *p;)
    if (strcmp ((*p)->export_name, export_name) == 0) {
      struct header_watch *w = *p;
      *p = w->next;
      close_watch (w);
    } else
      p = &(*p)->next;
}

void
header_watch_own_edit (const char *path, bool begin)
{
  for (struct header_watch *w = watches; w; w = w->next) {
    if (strcmp (w->path, path) != 0)
      continue;
    if (begin)
      w->own_edits++;
    else {
      w->own_edits--;
      w->own_until = uv_now (w->handle.loop) + SETTLE_MS;
    }
  }
}

void
header_watch_stop_all (void)
{
  while (watches) {
    struct header_watch *w = watches;
    watches = w->next;
    close_watch (w);
  }
}
