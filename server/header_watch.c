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
 * events). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct header_watch {
  uv_fs_event_t handle;
  struct header_watch *next;
  char *export_name, *path;
  bool told_change, told_rename;
};

static struct header_watch *watches;

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
  if ((events & UV_RENAME) && !w->told_rename) {
    w->told_rename = true;
    log_warning ("export '%s': header %s was renamed or removed; serving on "
                 "with the key unlocked at start; its kept key is no longer "
                 "offered to new exports (%zu dropped now)",
                 w->export_name, w->path, dropped);
  } else if ((events & UV_CHANGE) && !w->told_change) {
    w->told_change = true;
    log_warning ("export '%s': header %s was modified; serving on with the "
                 "key unlocked at start (if the volume was re-encrypted, "
                 "remove and re-add the export); its kept key is no longer "
                 "offered to new exports, which unlock with the header as it "
                 "is then (%zu dropped now)",
                 w->export_name, w->path, dropped);
  }
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

  free (w->export_name);
  free (w->path);
  free (w);
}

static void
close_watch (struct header_watch *w)
{
  uv_fs_event_stop (&w->handle);
  uv_close ((uv_handle_t *) &w->handle, free_watch);
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
header_watch_stop_all (void)
{
  while (watches) {
    struct header_watch *w = watches;
    watches = w->next;
    close_watch (w);
  }
}
