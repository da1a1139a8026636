/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the configured exports unlock one by one while the daemon
 * already listens.  A few threads of their own (not the libuv pool,
 * whose threads serve NBD I/O of the exports already open) take the
 * exports in configuration order and run export_open (the KDF, or the
 * check of a key handed over by the previous daemon); the loop then
 * adds each to the registry, where clients find it, and wakes the
 * clients that asked for it meanwhile (handshake.c waits for an export
 * still unlocking rather than refusing it).  Once every export is open
 * or has failed, done() runs on the loop: READY=1 keeps its meaning.
 * Exports naming the same header file unlock one after the other on one
 * thread, so that the first's key is shared with the rest (stack.c)
 * rather than every one running the same KDF at once.
 *
 * Threads: `taken`, `opened`, `failed`, `busy` and `stop`
 * are under `lock`; the loop alone touches the registry. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/internal.h"

/* KDFs at once: each may take a core and up to a GiB (Argon2). */
#define UNLOCK_THREADS_MAX 4
#define UNLOCK_STACK (8u << 20) /* as libuv gives its pool threads */

struct pending {
  struct export *e;
  size_t group;        /* the first entry sharing a file with it */
  bool taken;          /* by an unlock thread */
  bool opened, failed; /* by the unlock thread */
  bool settled;        /* by the loop: served or freed */
  char error[1024];
};

static struct pending *queue;
static size_t n_queue, busy, n_settled, n_failed;
static bool stop;
static uv_mutex_t lock;
static uv_async_t async;
static uv_thread_t threads[UNLOCK_THREADS_MAX];
static unsigned n_threads;
static void (*done_cb) (size_t failed);

bool
startup_pending (const char *name, size_t len)
{
  if (len == 0) /* "": the first configured, if it is not served yet */
    return n_queue > 0 && !queue[0].settled;
  for (size_t i = 0; i < n_queue; i++) {
    const char *n = queue[i].e ? queue[i].e->name : NULL;
    if (n && !queue[i].settled && strlen (n) == len &&
        memcmp (n, name, len) == 0)
      return true;
  }
  return false;
}

/* The next export no thread has taken, with its whole group; under
 * the lock.  NULL when there is none (or the daemon is stopping). */
static struct pending *
take_group (size_t *group)
{
  for (size_t i = 0; i < n_queue && !stop; i++)
    if (!queue[i].taken) {
      *group = queue[i].group;
      for (size_t j = i; j < n_queue; j++)
        if (queue[j].group == *group)
          queue[j].taken = true;
      return &queue[i];
    }
  return NULL;
}

static void
unlock_thread (void *arg)
{
  size_t group;

  uv_mutex_lock (&lock);
  for (struct pending *p; (p = take_group (&group));) {
    for (size_t i = (size_t) (p - queue); i < n_queue && !stop; i++) {
      if (queue[i].group != group)
        continue;
      busy++;
      uv_mutex_unlock (&lock);
      int r = export_open (queue[i].e);
      if (r < 0)
        snprintf (queue[i].error, sizeof queue[i].error, "%s",
                  error_message ());
      uv_mutex_lock (&lock);
      queue[i].opened = r == 0;
      queue[i].failed = r < 0;
      busy--;
      uv_async_send (&async);
    }
  }
  uv_mutex_unlock (&lock);
}

/* Whether two paths name one file (device and inode, else the same text:
 * a URI). */
static bool
same_file (const char *a, const char *b)
{
  struct stat sa, sb;

  if (!a || !b)
    return false;
  if (strcmp (a, b) == 0)
    return true;
  return stat (a, &sa) == 0 && stat (b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

/* Whether two exports use a file in common (header or payload). */
static bool
share_a_file (const struct export *x, const struct export *y)
{
  const char *fx[] = { x->spec.header, x->spec.payload };
  const char *fy[] = { y->spec.header, y->spec.payload };

  for (size_t i = 0; i < 2; i++)
    for (size_t k = 0; k < 2; k++)
      if (same_file (fx[i], fy[k]))
        return true;
  return false;
}

/* Entries that use a file in common share a group: the index of the first
 * of them.  One thread opens a group in configuration order, so that
 * exports naming one header share its key (one KDF), and so that which
 * export reports a conflict over a file (one export's header given as
 * another's payload, one payload twice) does not depend on which thread
 * got there first: the later export in the configuration always does. */
static void
group_by_files (void)
{
  for (size_t i = 0; i < n_queue; i++) {
    queue[i].group = i;
    for (size_t j = 0; j < i; j++)
      if (share_a_file (queue[i].e, queue[j].e)) {
        queue[i].group = queue[j].group;
        break;
      }
  }
}

/* Loop: serves what has opened, in configuration order of finishing. */
static void
on_unlocked (uv_async_t *h)
{
  bool any = false;

  for (size_t i = 0; i < n_queue; i++) {
    struct pending *p = &queue[i];
    bool opened, failed;
    uv_mutex_lock (&lock);
    opened = p->opened;
    failed = p->failed;
    uv_mutex_unlock (&lock);
    if (p->settled || (!opened && !failed))
      continue;
    p->settled = true;
    n_settled++;
    any = true;
    if (failed || server_stopping () || exports_add (p->e) < 0) {
      if (failed) {
        log_error ("%s", p->error);
        n_failed++;
      }
      export_free (p->e);
    } else {
      header_watch_start (server_loop, p->e);
      log_info ("export '%s': served (%zu of %zu)", p->e->name, n_settled,
                n_queue);
    }
    p->e = NULL;
  }
  if (any)
    conn_wake_awaiting (); /* served now, or gone for good */
  uv_mutex_lock (&lock);
  bool idle = busy == 0;
  uv_mutex_unlock (&lock);
  /* Stopping: the unlocks running finish, the rest never start. */
  if (n_settled < n_queue && !(server_stopping () && idle))
    return;
  for (unsigned i = 0; i < n_threads; i++)
    uv_thread_join (&threads[i]);
  n_threads = 0;
  /* Abandoned at shutdown: never taken by a thread. */
  for (size_t i = 0; i < n_queue; i++)
    if (queue[i].e) {
      export_free (queue[i].e);
      queue[i].e = NULL;
    }
  n_settled = n_queue;
  uv_close ((uv_handle_t *) &async, NULL);
  keystore_close_untaken ();
  done_cb (n_failed);
}

/* Takes every export in the registry (parsed, not open) off it. */
int
startup_unlock (uv_loop_t *loop, void (*done) (size_t failed))
{
  size_t n = exports_count ();
  long cpus = sysconf (_SC_NPROCESSORS_ONLN);
  uv_thread_options_t opt = { UV_THREAD_HAS_STACK_SIZE, UNLOCK_STACK };
  int r;

  done_cb = done;
  queue = calloc (n ? n : 1, sizeof *queue);
  if (!queue)
    return error_set (-ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++)
    queue[i].e = exports_get (i);
  n_queue = n;
  exports_detach_all ();
  group_by_files ();
  if ((r = uv_mutex_init (&lock)) < 0 ||
      (r = uv_async_init (loop, &async, on_unlocked)) < 0)
    return error_set (r, "start-up unlocks: %s", uv_strerror (r));
  n_threads = (unsigned) (cpus < 1 ? 1 : cpus);
  if (n_threads > UNLOCK_THREADS_MAX)
    n_threads = UNLOCK_THREADS_MAX;
  if (n_threads > n)
    n_threads = (unsigned) n;
  for (unsigned i = 0; i < n_threads; i++)
    if ((r = uv_thread_create_ex (&threads[i], &opt, unlock_thread, NULL)) <
        0) {
      n_threads = i;
      break;
    }
  if (n_threads == 0 && n > 0)
    return error_set (r, "start-up unlocks: %s", uv_strerror (r));
  if (n == 0)
    uv_async_send (&async); /* done at once */
  return 0;
}

/* SIGTERM while unlocking: no new unlock starts; those running finish
 * (a KDF cannot be interrupted) and are then closed. */
void
startup_stop (void)
{
  if (!queue)
    return;
  uv_mutex_lock (&lock);
  stop = true;
  uv_mutex_unlock (&lock);
  if (n_settled < n_queue)
    uv_async_send (&async);
}

void
startup_free (void)
{
  free (queue);
  queue = NULL;
  n_queue = 0;
}
