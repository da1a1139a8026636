/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the control socket (--control PATH, mode 0600): one JSON
 * object per line in, one per line out.
 *   {"cmd":"export-remove","name":"vm2","force":false}
 * Which commands there are, and the members each takes, is
 * control_commands.c's table, which dispatches; the export-add,
 * -remove, -list, query-stats and -(in)activate handlers are here
 * (export_active.c does the activation), export-resize is
 * control_resize.c's, the keyslot commands control_keyslots.c's.
 * Replies: {"ok":true,...} or {"ok":false,"error":"..."}.  Requests are
 * parsed in place by control_request.c (never by json-c, whose buffers
 * would keep an inline passphrase) and every member is read through its
 * typed accessor; the line is wiped, the passphrase goes to secure
 * memory.  Unlocking runs on a thread of its own per export-add (not
 * the libuv pool, whose threads serve NBD I/O: a KDF at the accepted
 * maximum runs for a minute), so the loop and NBD clients keep being
 * served while it runs.  A client that does not read its replies stops
 * being read; shutdown closes every client and abandons running
 * unlocks: the loop does not wait for them. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/error_msg.h"
#include "server/internal.h"

/* Replies a client has not read yet: beyond this, its lines wait. */
#define CONTROL_OUTPUT_MAX (1024 * 1024)
/* Unlocks (KDF runs, up to a GiB of Argon2 memory each, and a core) at
 * once, from all clients. */
#define CONTROL_ADDS_MAX 2
/* As libuv gives its pool threads: the KDFs run on this stack. */
#define CONTROL_ADD_STACK (8u << 20)
/* Clients at once: each holds a line buffer and a file descriptor. */
#define CONTROL_CLIENTS_MAX 32

static uv_pipe_t *control_pipe;

/* Loop thread only. */
struct ctl_conn {
  uv_pipe_t pipe;
  struct ctl_conn *prev, *next; /* every open client, for shutdown */
  char buf[CONTROL_LINE_MAX];   /* wiped: lines may hold a passphrase */
  size_t len;
  unsigned refs; /* the handle's + one per export-add running */
  bool closed;
  bool reading;
};

static struct ctl_conn *ctl_conns;
static unsigned n_ctl_conns;
static unsigned adds_in_flight;

/* One export-add.  Its unlock thread owns e, r and error until it puts
 * the add on adds_done (under adds_lock); the loop owns the rest. */
struct ctl_add {
  uv_thread_t thread;
  struct ctl_conn *cc;
  struct ctl_add *prev, *next; /* adds_running: every add not yet done */
  struct ctl_add *done_next;   /* adds_done (adds_lock) */
  struct export *e;
  int r;
  char error[1024];
};

/* Unlock threads report to the loop through adds_async only. */
static uv_async_t adds_async;
static bool adds_async_open;
static uv_mutex_t adds_lock;
static struct ctl_add *adds_done;    /* adds_lock */
static bool adds_abandoned;          /* adds_lock: the daemon is stopping */
static struct ctl_add *adds_running; /* loop thread */

static void ctl_process (struct ctl_conn *cc);
static void ctl_alloc (uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void ctl_read (uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

void
ctl_conn_release (struct ctl_conn *cc)
{
  assert (cc->refs > 0);
  if (--cc->refs == 0) {
    explicit_bzero (cc->buf, sizeof cc->buf);
    free (cc);
  }
}

void
ctl_conn_hold (struct ctl_conn *cc)
{
  cc->refs++;
}

static void
ctl_on_close (uv_handle_t *h)
{
  ctl_conn_release (h->data);
}

static void
ctl_close (struct ctl_conn *cc)
{
  if (cc->closed)
    return;
  cc->closed = true;
  n_ctl_conns--;
  if (cc->prev)
    cc->prev->next = cc->next;
  else
    ctl_conns = cc->next;
  if (cc->next)
    cc->next->prev = cc->prev;
  uv_close ((uv_handle_t *) &cc->pipe, ctl_on_close);
}

static size_t
ctl_output_bytes (struct ctl_conn *cc)
{
  return uv_stream_get_write_queue_size ((uv_stream_t *) &cc->pipe);
}

static void
after_ctl_send (uv_write_t *w, int status)
{
  struct ctl_conn *cc = w->handle->data;

  free (w);
  /* Lines held back while the client was not reading its replies. */
  if (!cc->closed && !cc->reading && ctl_output_bytes (cc) < CONTROL_OUTPUT_MAX)
    ctl_process (cc);
}

/* Sends obj as one line and drops the reference to it. */
void
ctl_send (struct ctl_conn *cc, json_object *obj)
{
  const char *text = json_object_to_json_string_ext (
    obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  size_t n = strlen (text);
  uv_write_t *w = cc->closed ? NULL : malloc (sizeof *w + n + 1);

  if (w) {
    char *line = (char *) (w + 1);
    memcpy (line, text, n);
    line[n] = '\n';
    uv_buf_t b = uv_buf_init (line, (unsigned) n + 1);
    if (uv_write (w, (uv_stream_t *) &cc->pipe, &b, 1, after_ctl_send) < 0) {
      free (w);
      ctl_close (cc);
    }
  }
  json_object_put (obj);
}

void
ctl_send_error (struct ctl_conn *cc, const char *msg)
{
  json_object *o = json_object_new_object ();
  char shown[512];
  size_t i;

  json_object_object_add (o, "ok", json_object_new_boolean (0));
  json_object_object_add (o, "error", json_object_new_string (msg));
  /* Names in messages come from the client: no control characters (a
   * forged log line) reach the log. */
  for (i = 0; msg[i] && i < sizeof shown - 1; i++)
    shown[i] = (unsigned char) msg[i] < 0x20 || msg[i] == 0x7f ? '?' : msg[i];
  shown[i] = '\0';
  log_info ("control: %s", shown);
  ctl_send (cc, o);
}

json_object *
ctl_ok (void)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "ok", json_object_new_boolean (1));
  return o;
}

/* The --export syntax from JSON members: every member but cmd and
 * passphrase is an export key with a string value. */
static int
spec_from_members (const struct ctl_request *req, char **out)
{
  size_t len = 0;
  char *spec = NULL;
  int r = 0;

  for (size_t i = 0; r >= 0 && i < req->n; i++) {
    const char *key = req->m[i].key;
    const struct ctl_member *m;
    if (!strcmp (key, "cmd") || !strcmp (key, "passphrase"))
      continue;
    if (!key[0] || strpbrk (key, ",="))
      r = error_set (-EINVAL, "member \"%s\" is not an export key", key);
    else if ((r = ctl_member_get (req, key, CTL_TEXT, true, &m)) >= 0)
      r = export_spec_append (&spec, &len, key, m->text);
  }
  if (r >= 0 && !spec)
    r = error_set (-EINVAL, "give \"spec\" or the export's keys as members");
  if (r < 0) {
    free (spec);
    return r;
  }
  *out = spec;
  return 0;
}

/* "spec" or the keys as members, not both: a member beside "spec" would
 * be silently ignored otherwise. */
static int
spec_text (const struct ctl_request *req, char **out)
{
  const struct ctl_member *spec;
  int r = ctl_member_get (req, "spec", CTL_TEXT, false, &spec);

  if (r <= 0)
    return r < 0 ? r : spec_from_members (req, out);
  for (size_t i = 0; i < req->n; i++)
    if (strcmp (req->m[i].key, "cmd") && strcmp (req->m[i].key, "spec") &&
        strcmp (req->m[i].key, "passphrase"))
      return error_set (-EINVAL,
                        "member \"%s\" beside \"spec\" (give the spec or "
                        "its keys as members, not both)",
                        req->m[i].key);
  *out = strdup (spec->text);
  return *out ? 0 : error_set (-ENOMEM, "out of memory");
}

/* The unlock thread: the KDF runs here, never in the libuv pool. */
static void
add_thread (void *arg)
{
  struct ctl_add *a = arg;

  a->r = export_open (a->e);
  if (a->r < 0)
    snprintf (a->error, sizeof a->error, "%s", error_message ());
  uv_mutex_lock (&adds_lock);
  if (adds_abandoned) {
    /* The loop has stopped waiting (or has ended): nobody else will
     * free this export's key and passphrase. */
    uv_mutex_unlock (&adds_lock);
    export_free (a->e);
    free (a);
    return;
  }
  a->done_next = adds_done;
  adds_done = a;
  /* Under the lock: control_close cannot close the handle in between. */
  uv_async_send (&adds_async);
  uv_mutex_unlock (&adds_lock);
}

static void
add_done (struct ctl_add *a)
{
  uv_thread_join (&a->thread); /* it has returned or is returning */
  /* The async handle keeps the loop alive only while adds run. */
  if (--adds_in_flight == 0)
    uv_unref ((uv_handle_t *) &adds_async);
  if (a->prev)
    a->prev->next = a->next;
  else
    adds_running = a->next;
  if (a->next)
    a->next->prev = a->prev;
  /* SIGTERM came while the key was derived: the registry is closing. */
  if (a->r == 0 && server_stopping ()) {
    a->r = -ECANCELED;
    snprintf (a->error, sizeof a->error, "export '%s': the daemon is stopping",
              a->e->name);
  }
  if (a->r == 0 && exports_add (a->e) < 0) {
    a->r = -EEXIST;
    snprintf (a->error, sizeof a->error, "%s", error_message ());
  }
  if (a->r < 0) {
    ctl_send_error (a->cc, a->error);
    export_free (a->e);
  } else {
    json_object *o = ctl_ok ();
    json_object_object_add (o, "name", json_object_new_string (a->e->name));
    json_object_object_add (o, "size",
                            json_object_new_int64 ((int64_t) a->e->size));
    log_info ("control: export '%s' added", a->e->name);
    header_watch_start (server_loop, a->e);
    ctl_send (a->cc, o);
  }
  ctl_conn_release (a->cc);
  free (a);
}

static void
adds_on_async (uv_async_t *h)
{
  struct ctl_add *a;

  uv_mutex_lock (&adds_lock);
  a = adds_done;
  adds_done = NULL;
  uv_mutex_unlock (&adds_lock);
  while (a) {
    struct ctl_add *next = a->done_next;
    add_done (a);
    a = next;
  }
}

/* The first export-add sets up the way its thread reports back. */
static int
adds_async_start (void)
{
  int r;

  if (adds_async_open)
    return 0;
  r = uv_mutex_init (&adds_lock);
  if (r == 0 &&
      (r = uv_async_init (server_loop, &adds_async, adds_on_async)) < 0)
    uv_mutex_destroy (&adds_lock);
  if (r == 0)
    uv_unref ((uv_handle_t *) &adds_async); /* referenced while adds run */
  if (r < 0)
    return error_set (r, "cannot start an unlock: %s", uv_strerror (r));
  adds_async_open = true;
  return 0;
}

/* Shutdown: unlocks still running are abandoned (their threads free
 * what they hold and nothing else); the loop no longer waits for them,
 * so the daemon stops in time even with a minute-long KDF running.  A
 * thread still running at exit dies with the process. */
static void
adds_abandon (void)
{
  struct ctl_add *done;

  if (!adds_async_open)
    return;
  /* A running thread frees its add once it sees adds_abandoned: the
   * list is walked before it can. */
  uv_mutex_lock (&adds_lock);
  adds_abandoned = true;
  for (struct ctl_add *a = adds_running; a; a = a->next)
    ctl_conn_release (a->cc);
  adds_running = NULL;
  done = adds_done;
  adds_done = NULL;
  uv_mutex_unlock (&adds_lock);
  /* Done but not yet reported: nobody will read the reply. */
  while (done) {
    struct ctl_add *next = done->done_next;
    uv_thread_join (&done->thread);
    export_free (done->e);
    free (done);
    done = next;
  }
  adds_in_flight = 0;
  uv_close ((uv_handle_t *) &adds_async, NULL);
  adds_async_open = false;
}

/* Parses and checks the export now; unlocks it on a thread of its own. */
int
ctl_cmd_export_add (struct ctl_conn *cc, const struct ctl_request *req)
{
  const struct ctl_member *pass;
  struct export *e = NULL;
  char *spec = NULL;
  int r = ctl_member_get (req, "passphrase", CTL_STRING, false, &pass);

  if (r >= 0 && adds_in_flight >= CONTROL_ADDS_MAX)
    r = error_set (-EBUSY,
                   "%u unlocks are running already; retry when one is done",
                   adds_in_flight);
  if (r >= 0)
    r = adds_async_start ();
  if (r >= 0)
    r = spec_text (req, &spec);
  if (r >= 0)
    r = export_parse (spec, "export-add", false, pass != NULL, &e);
  free (spec);
  if (r >= 0 && exports_find (e->name, strlen (e->name)) && e->name[0])
    r = error_set (-EEXIST, "export '%s' exists already", e->name);
  if (r >= 0 && pass)
    r = export_set_passphrase (e, pass->text, pass->len);
  struct ctl_add *a = r < 0 ? NULL : calloc (1, sizeof *a);
  if (r >= 0 && !a)
    r = error_set (-ENOMEM, "out of memory");
  if (r < 0) {
    export_free (e);
    return r;
  }
  a->cc = cc;
  a->e = e;
  uv_thread_options_t opt = { UV_THREAD_HAS_STACK_SIZE, CONTROL_ADD_STACK };
  r = uv_thread_create_ex (&a->thread, &opt, add_thread, a);
  if (r < 0) {
    export_free (e);
    free (a);
    return error_set (r, "cannot start the unlock: %s", uv_strerror (r));
  }
  cc->refs++;
  if (adds_in_flight++ == 0)
    uv_ref ((uv_handle_t *) &adds_async);
  a->next = adds_running;
  if (adds_running)
    adds_running->prev = a;
  adds_running = a;
  return 0;
}

int
ctl_cmd_export_remove (struct ctl_conn *cc, const struct ctl_request *req)
{
  const struct ctl_member *name, *force;
  struct export *e;
  int r = ctl_member_get (req, "name", CTL_TEXT, true, &name);

  if (r >= 0)
    r = ctl_member_get (req, "force", CTL_BOOLEAN, false, &force);
  if (r < 0)
    return r;
  const char *n = name->text;
  e = n[0] ? exports_find (n, name->len) : NULL; /* "" is not a name here */
  if (!e)
    return error_set (-ENOENT, "no export '%s'", n);
  if (e->connections && !(force && force->boolean))
    return error_set (-EBUSY,
                      "export '%s' has %u connected client(s); to drain "
                      "them, luks-nbd ctl export-remove --force (\"force\":"
                      "true in the request)",
                      n, e->connections);
  json_object *o = ctl_ok ();
  json_object_object_add (o, "name", json_object_new_string (n));
  json_object_object_add (o, "drained",
                          json_object_new_int ((int) conn_drain_export (e)));
  log_info ("control: export '%s' removed", e->name);
  ctl_send (cc, o);
  header_watch_stop (e->name);
  keystore_forget (e->name);
  exports_remove (e);
  return 0;
}

/* The reply to export-activate / export-inactivate, once the pool has
 * flushed and unlocked or locked and reloaded. */
struct ctl_change {
  struct ctl_conn *cc;
  char *name;
  bool active;
};

static void
change_active_done (void *arg, int r, const char *msg)
{
  struct ctl_change *ch = arg;

  if (r < 0) {
    char line[1200];
    snprintf (line, sizeof line, "%s: %s",
              ch->active ? "export-activate" : "export-inactivate", msg);
    ctl_send_error (ch->cc, line);
  } else {
    json_object *o = ctl_ok ();
    json_object_object_add (o, "name", json_object_new_string (ch->name));
    json_object_object_add (o, "active", json_object_new_boolean (ch->active));
    ctl_send (ch->cc, o);
  }
  ctl_conn_release (ch->cc);
  free (ch->name);
  free (ch);
}

static int
change_active (struct ctl_conn *cc, const struct ctl_request *req, bool active)
{
  const struct ctl_member *name;
  struct ctl_change *ch;
  struct export *e;
  int r = ctl_member_get (req, "name", CTL_TEXT, true, &name);

  if (r < 0)
    return r;
  e = name->text[0] ? exports_find (name->text, name->len) : NULL;
  if (!e)
    return error_set (-ENOENT, "no export '%s'", name->text);
  if (!(ch = calloc (1, sizeof *ch)) || !(ch->name = strdup (e->name))) {
    free (ch);
    return error_set (-ENOMEM, "out of memory");
  }
  ch->cc = cc;
  ch->active = active;
  r = export_set_active (e, active, change_active_done, ch);
  if (r < 0) {
    free (ch->name);
    free (ch);
    return r;
  }
  ctl_conn_hold (cc);
  return 0;
}

int
ctl_cmd_export_activate (struct ctl_conn *cc, const struct ctl_request *req)
{
  return change_active (cc, req, true);
}

int
ctl_cmd_export_inactivate (struct ctl_conn *cc, const struct ctl_request *req)
{
  return change_active (cc, req, false);
}

static void
export_list (struct ctl_conn *cc, bool stats)
{
  json_object *o = ctl_ok ();
  json_object *list =
    stats ? json_object_new_object () : json_object_new_array ();

  for (size_t i = 0; i < exports_count (); i++) {
    const struct export *e = exports_get (i);
    json_object *x = json_object_new_object ();
    if (!stats) {
      json_object_object_add (x, "name", json_object_new_string (e->name));
      json_object_object_add (x, "size",
                              json_object_new_int64 ((int64_t) e->size));
      json_object_object_add (x, "readonly",
                              json_object_new_boolean (e->readonly));
      json_object_object_add (
        x, "active", json_object_new_boolean (atomic_load (&e->active)));
      if (e->description)
        json_object_object_add (x, "description",
                                json_object_new_string (e->description));
    }
    json_object_object_add (x, "connections",
                            json_object_new_int ((int) e->connections));
    if (stats) {
      json_object_object_add (
        x, "total_connections",
        json_object_new_int64 ((int64_t) e->total_connections));
      json_object_object_add (x, "requests",
                              json_object_new_int64 ((int64_t) e->requests));
      json_object_object_add (x, "errors",
                              json_object_new_int64 ((int64_t) e->errors));
      json_object_object_add (x, "bytes_read",
                              json_object_new_int64 ((int64_t) e->bytes_read));
      json_object_object_add (
        x, "bytes_written", json_object_new_int64 ((int64_t) e->bytes_written));
      json_object_object_add (list, e->name, x);
    } else
      json_object_array_add (list, x);
  }
  json_object_object_add (o, stats ? "stats" : "exports", list);
  ctl_send (cc, o);
}

int
ctl_cmd_export_list (struct ctl_conn *cc, const struct ctl_request *req)
{
  export_list (cc, false);
  return 0;
}

int
ctl_cmd_query_stats (struct ctl_conn *cc, const struct ctl_request *req)
{
  export_list (cc, true);
  return 0;
}

/* One request line; it is parsed in place and wiped afterwards (it may
 * hold a passphrase, and no copy of it is made elsewhere). */
static void
ctl_line (struct ctl_conn *cc, char *line, size_t len)
{
  struct ctl_request req;
  int r = ctl_request_parse (line, len, &req);

  if (r >= 0)
    r = ctl_dispatch (cc, &req);
  if (r < 0)
    ctl_send_error (cc, error_message ());
  explicit_bzero (line, len);
}

/* Runs the complete lines buffered, while the client reads its replies;
 * reads more once it does. */
static void
ctl_process (struct ctl_conn *cc)
{
  char *nl;

  while (!cc->closed && ctl_output_bytes (cc) < CONTROL_OUTPUT_MAX &&
         (nl = memchr (cc->buf, '\n', cc->len))) {
    size_t n = (size_t) (nl - cc->buf);
    ctl_line (cc, cc->buf, n);
    memmove (cc->buf, nl + 1, cc->len - n - 1);
    cc->len -= n + 1;
    /* The moved tail's old copy. */
    explicit_bzero (cc->buf + cc->len, n + 1);
  }
  if (cc->closed)
    return;
  bool want = ctl_output_bytes (cc) < CONTROL_OUTPUT_MAX;
  if (want && cc->len == sizeof cc->buf) {
    ctl_send_error (cc, "line too long");
    ctl_close (cc);
  } else if (want != cc->reading) {
    int r = want
              ? uv_read_start ((uv_stream_t *) &cc->pipe, ctl_alloc, ctl_read)
              : uv_read_stop ((uv_stream_t *) &cc->pipe);
    if (r < 0)
      ctl_close (cc);
    cc->reading = want;
  }
}

static void
ctl_alloc (uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct ctl_conn *cc = h->data;

  *buf = uv_buf_init (cc->buf + cc->len, (unsigned) (sizeof cc->buf - cc->len));
}

static void
ctl_read (uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
  struct ctl_conn *cc = s->data;

  if (nread < 0) {
    ctl_close (cc);
    return;
  }
  cc->len += (size_t) nread;
  ctl_process (cc);
}

/* A new client: cc->pipe is initialised; starts reading it. */
static int
ctl_start (struct ctl_conn *cc)
{
  cc->pipe.data = cc;
  cc->refs = 1;
  cc->next = ctl_conns;
  if (ctl_conns)
    ctl_conns->prev = cc;
  ctl_conns = cc;
  if (++n_ctl_conns > CONTROL_CLIENTS_MAX) {
    static const char busy[] =
      "{\"ok\":false,\"error\":\"too many control clients\"}\n";
    uv_buf_t b = uv_buf_init ((char *) busy, sizeof busy - 1);
    log_warning ("control: more than %d clients; refusing one",
                 CONTROL_CLIENTS_MAX);
    uv_try_write ((uv_stream_t *) &cc->pipe, &b, 1);
    ctl_close (cc);
    return error_set (-EMFILE, "more than %d control clients",
                      CONTROL_CLIENTS_MAX);
  }
  ctl_process (cc);
  return cc->closed ? error_set (-EIO, "control client closed at once") : 0;
}

static void
ctl_accept (uv_stream_t *server, int status)
{
  struct ctl_conn *cc = calloc (1, sizeof *cc);

  if (status < 0 || !cc) {
    free (cc);
    return;
  }
  uv_pipe_init (server->loop, &cc->pipe, 0);
  if (uv_accept (server, (uv_stream_t *) &cc->pipe) < 0) {
    cc->pipe.data = cc;
    cc->refs = 1;
    cc->closed = true;
    uv_close ((uv_handle_t *) &cc->pipe, ctl_on_close);
    return;
  }
  ctl_start (cc);
}

int
control_open_fd (uv_loop_t *loop, int fd)
{
  struct ctl_conn *cc = calloc (1, sizeof *cc);
  int r;

  if (!cc)
    return error_set (-ENOMEM, "out of memory");
  uv_pipe_init (loop, &cc->pipe, 0);
  r = uv_pipe_open (&cc->pipe, fd);
  if (r < 0) {
    cc->pipe.data = cc;
    cc->refs = 1;
    cc->closed = true;
    uv_close ((uv_handle_t *) &cc->pipe, ctl_on_close);
    return error_set (r, "control fd %d: %s", fd, uv_strerror (r));
  }
  return ctl_start (cc);
}

int
control_listen (uv_loop_t *loop, const char *path)
{
  return listen_control (loop, path, ctl_accept, &control_pipe);
}

void
control_close (void)
{
  if (control_pipe) {
    char path[256];
    size_t len = sizeof path;
    if (uv_pipe_getsockname (control_pipe, path, &len) == 0 &&
        len < sizeof path) {
      path[len] = '\0';
      unlink (path);
    }
    uv_close ((uv_handle_t *) control_pipe, (uv_close_cb) free);
    control_pipe = NULL;
  }
  /* Idle clients would keep the loop, and so the daemon, alive. */
  while (ctl_conns)
    ctl_close (ctl_conns);
  adds_abandon ();
}
