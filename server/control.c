/* luks-nbd: the control socket (--control PATH, mode 0600): one JSON
 * object per line in, one per line out.
 *   {"cmd":"export-add","spec":"name=vm2,payload=...,header=...",
 *    "passphrase":"..."}            (or every --export key as a member)
 *   {"cmd":"export-remove","name":"vm2","force":false}
 *   {"cmd":"export-list"}
 *   {"cmd":"query-stats"}
 * Replies: {"ok":true,...} or {"ok":false,"error":"..."}.  Unlocking runs
 * in the thread pool, so the loop keeps serving while a KDF runs.  An
 * inline passphrase goes to secure memory and its JSON copy is wiped. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "error.h"
#include "internal.h"

#define CONTROL_LINE_MAX (64 * 1024)

static uv_pipe_t *control_pipe;

struct ctl_conn {
  uv_pipe_t pipe;
  char buf[CONTROL_LINE_MAX];
  size_t len;
  unsigned refs; /* the handle's + one per export-add in the pool */
  bool closed;
};

struct ctl_add {
  uv_work_t work;
  struct ctl_conn *cc;
  struct export *e;
  int r;
  char error[1024];
};

static void
ctl_unref (struct ctl_conn *cc)
{
  if (--cc->refs == 0)
    free (cc);
}

static void
ctl_on_close (uv_handle_t *h)
{
  ctl_unref (h->data);
}

static void
ctl_close (struct ctl_conn *cc)
{
  if (!cc->closed) {
    cc->closed = true;
    uv_close ((uv_handle_t *) &cc->pipe, ctl_on_close);
  }
}

static void
after_send (uv_write_t *w, int status)
{
  free (w);
}

/* Sends obj as one line and drops the reference to it. */
static void
ctl_reply (struct ctl_conn *cc, json_object *obj)
{
  const char *text =
    json_object_to_json_string_ext (obj, JSON_C_TO_STRING_PLAIN);
  size_t n = strlen (text);
  uv_write_t *w = cc->closed ? NULL : malloc (sizeof *w + n + 1);

  if (w) {
    char *line = (char *) (w + 1);
    memcpy (line, text, n);
    line[n] = '\n';
    uv_buf_t b = uv_buf_init (line, (unsigned) n + 1);
    if (uv_write (w, (uv_stream_t *) &cc->pipe, &b, 1, after_send) < 0) {
      free (w);
      ctl_close (cc);
    }
  }
  json_object_put (obj);
}

static void
ctl_error (struct ctl_conn *cc, const char *msg)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "ok", json_object_new_boolean (0));
  json_object_object_add (o, "error", json_object_new_string (msg));
  log_info ("control: %s", msg);
  ctl_reply (cc, o);
}

static json_object *
ctl_ok (void)
{
  json_object *o = json_object_new_object ();

  json_object_object_add (o, "ok", json_object_new_boolean (1));
  return o;
}

/* The --export syntax from JSON members (values' commas doubled). */
static char *
spec_from_members (json_object *req)
{
  size_t cap = 1024, len = 0;
  char *spec = malloc (cap);

  if (!spec)
    return NULL;
  spec[0] = '\0';
  json_object_object_foreach (req, key, val)
  {
    if (!strcmp (key, "cmd") || !strcmp (key, "passphrase") ||
        !strcmp (key, "spec"))
      continue;
    const char *v = json_object_get_string (val);
    size_t need = len + strlen (key) + 2 * strlen (v) + 3;
    if (need > cap) {
      char *n = realloc (spec, cap = need * 2);
      if (!n) {
        free (spec);
        return NULL;
      }
      spec = n;
    }
    len += (size_t) sprintf (spec + len, "%s%s=", len ? "," : "", key);
    for (const char *p = v; *p; p++) {
      spec[len++] = *p;
      if (*p == ',')
        spec[len++] = ',';
    }
    spec[len] = '\0';
  }
  return spec;
}

static void
add_work (uv_work_t *w)
{
  struct ctl_add *a = w->data;

  a->r = export_open (a->e);
  if (a->r < 0)
    snprintf (a->error, sizeof a->error, "%s", error_message ());
}

static void
add_done (uv_work_t *w, int status)
{
  struct ctl_add *a = w->data;

  if (a->r == 0 && exports_add (a->e) < 0) {
    a->r = -EEXIST;
    snprintf (a->error, sizeof a->error, "%s", error_message ());
  }
  if (a->r < 0) {
    ctl_error (a->cc, a->error);
    export_free (a->e);
  } else {
    json_object *o = ctl_ok ();
    json_object_object_add (o, "name", json_object_new_string (a->e->name));
    json_object_object_add (o, "size",
                            json_object_new_int64 ((int64_t) a->e->node->size));
    log_info ("control: export '%s' added", a->e->name);
    header_watch_start (server_loop, a->e);
    ctl_reply (a->cc, o);
  }
  ctl_unref (a->cc);
  free (a);
}

static void
cmd_export_add (struct ctl_conn *cc, json_object *req)
{
  json_object *spec_obj, *pass_obj;
  bool has_pass = json_object_object_get_ex (req, "passphrase", &pass_obj) &&
                  json_object_is_type (pass_obj, json_type_string);
  char *spec = json_object_object_get_ex (req, "spec", &spec_obj)
                 ? strdup (json_object_get_string (spec_obj))
                 : spec_from_members (req);
  struct ctl_add *a = calloc (1, sizeof *a);
  struct export *e = NULL;

  if (!spec || !a) {
    free (spec);
    free (a);
    ctl_error (cc, "out of memory");
    return;
  }
  int r = export_parse (spec, (int) exports_count () + 1, false, has_pass, &e);
  free (spec);
  if (r == 0 && exports_find (e->name, strlen (e->name)) && e->name[0])
    r = error_set (-EEXIST, "export '%s' exists already", e->name);
  if (r == 0 && has_pass)
    r = export_set_passphrase (e, json_object_get_string (pass_obj),
                               (size_t) json_object_get_string_len (pass_obj));
  if (r < 0) {
    export_free (e);
    free (a);
    ctl_error (cc, error_message ());
    return;
  }
  a->cc = cc;
  a->e = e;
  a->work.data = a;
  cc->refs++;
  if (uv_queue_work (uv_default_loop (), &a->work, add_work, add_done) < 0) {
    cc->refs--;
    export_free (e);
    free (a);
    ctl_error (cc, "cannot queue the unlock");
  }
}

static void
cmd_export_remove (struct ctl_conn *cc, json_object *req)
{
  json_object *name, *force;
  struct export *e;
  char msg[512];

  if (!json_object_object_get_ex (req, "name", &name)) {
    ctl_error (cc, "export-remove needs \"name\"");
    return;
  }
  const char *n = json_object_get_string (name);
  e = exports_find (n, strlen (n));
  if (!e || !n[0]) {
    snprintf (msg, sizeof msg, "no export '%s'", n);
    ctl_error (cc, msg);
    return;
  }
  bool f = json_object_object_get_ex (req, "force", &force) &&
           json_object_get_boolean (force);
  if (e->connections && !f) {
    snprintf (msg, sizeof msg,
              "export '%s' has %u connected client(s); use \"force\":true "
              "to drain them",
              n, e->connections);
    ctl_error (cc, msg);
    return;
  }
  json_object *o = ctl_ok ();
  json_object_object_add (o, "name", json_object_new_string (n));
  json_object_object_add (o, "drained",
                          json_object_new_int ((int) conn_drain_export (e)));
  log_info ("control: export '%s' removed", n);
  ctl_reply (cc, o); /* before the unref: the name lives in e */
  header_watch_stop (e->name);
  exports_remove (e);
}

static void
cmd_export_list (struct ctl_conn *cc, bool stats)
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
                              json_object_new_int64 ((int64_t) e->node->size));
      json_object_object_add (x, "readonly",
                              json_object_new_boolean (e->readonly));
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
  ctl_reply (cc, o);
}

/* Wipes every string member called "passphrase" in place. */
static void
wipe_passphrase (json_object *req)
{
  json_object *p;

  if (json_object_object_get_ex (req, "passphrase", &p) &&
      json_object_is_type (p, json_type_string))
    memset ((char *) json_object_get_string (p), 0,
            (size_t) json_object_get_string_len (p));
}

static void
ctl_line (struct ctl_conn *cc, char *line, size_t len)
{
  json_tokener *tok = json_tokener_new_ex (8);
  json_object *req = tok ? json_tokener_parse_ex (tok, line, (int) len) : NULL;
  json_object *cmd;

  if (!req || json_tokener_get_error (tok) != json_tokener_success ||
      !json_object_is_type (req, json_type_object) ||
      !json_object_object_get_ex (req, "cmd", &cmd))
    ctl_error (cc, "expected one JSON object with \"cmd\" per line");
  else {
    const char *c = json_object_get_string (cmd);
    if (!strcmp (c, "export-add"))
      cmd_export_add (cc, req);
    else if (!strcmp (c, "export-remove"))
      cmd_export_remove (cc, req);
    else if (!strcmp (c, "export-list"))
      cmd_export_list (cc, false);
    else if (!strcmp (c, "query-stats"))
      cmd_export_list (cc, true);
    else
      ctl_error (cc, "unknown cmd (expected export-add, export-remove, "
                     "export-list, query-stats)");
  }
  if (req)
    wipe_passphrase (req);
  memset (line, 0, len); /* the raw line may hold a passphrase too */
  json_object_put (req);
  if (tok)
    json_tokener_free (tok);
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
  char *nl;

  if (nread < 0) {
    ctl_close (cc);
    return;
  }
  cc->len += (size_t) nread;
  while (!cc->closed && (nl = memchr (cc->buf, '\n', cc->len))) {
    size_t n = (size_t) (nl - cc->buf);
    ctl_line (cc, cc->buf, n);
    memmove (cc->buf, nl + 1, cc->len - n - 1);
    cc->len -= n + 1;
  }
  if (cc->len == sizeof cc->buf) {
    ctl_error (cc, "line too long");
    ctl_close (cc);
  }
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
  cc->pipe.data = cc;
  cc->refs = 1;
  if (uv_accept (server, (uv_stream_t *) &cc->pipe) < 0 ||
      uv_read_start ((uv_stream_t *) &cc->pipe, ctl_alloc, ctl_read) < 0)
    ctl_close (cc);
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
}

/* luks-nbd ctl --control PATH CMD [ARGS]: one request, prints the reply. */
static int
ctl_usage (void)
{
  fprintf (stderr,
           "usage: luks-nbd ctl --control PATH export-list | query-stats |\n"
           "         export-remove NAME [--force] |\n"
           "         export-add SPEC [--passphrase-stdin]\n");
  return 2;
}

int
control_client (int argc, char **argv)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  json_object *req = json_object_new_object (), *reply;
  char pass[4096], line[CONTROL_LINE_MAX];
  size_t passlen = 0, got = 0;
  const char *path = NULL;
  int i = 1, fd, rc;

  if (argc > 2 && !strcmp (argv[1], "--control")) {
    path = argv[2];
    i = 3;
  }
  if (!path || i >= argc)
    return ctl_usage ();
  const char *cmd = argv[i++];
  json_object_object_add (req, "cmd", json_object_new_string (cmd));
  if (!strcmp (cmd, "export-remove") && i < argc) {
    json_object_object_add (req, "name", json_object_new_string (argv[i++]));
    if (i < argc && !strcmp (argv[i], "--force"))
      json_object_object_add (req, "force", json_object_new_boolean (1)), i++;
  } else if (!strcmp (cmd, "export-add") && i < argc) {
    json_object_object_add (req, "spec", json_object_new_string (argv[i++]));
    if (i < argc && !strcmp (argv[i], "--passphrase-stdin")) {
      /* The passphrase never touches argv: stdin, one trailing newline
       * stripped, as passphrase-file= does. */
      passlen = fread (pass, 1, sizeof pass, stdin);
      if (passlen && pass[passlen - 1] == '\n')
        passlen--;
      json_object_object_add (req, "passphrase",
                              json_object_new_string_len (pass, (int) passlen));
      memset (pass, 0, sizeof pass);
      i++;
    }
  } else if (strcmp (cmd, "export-list") && strcmp (cmd, "query-stats"))
    return ctl_usage ();
  if (i != argc)
    return ctl_usage ();

  snprintf (sa.sun_path, sizeof sa.sun_path, "%s", path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect (fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
    fprintf (stderr, "luks-nbd ctl: %s: %s\n", path, strerror (errno));
    return 1;
  }
  const char *text =
    json_object_to_json_string_ext (req, JSON_C_TO_STRING_PLAIN);
  size_t tl = strlen (text);
  bool sent = write (fd, text, tl) == (ssize_t) tl && write (fd, "\n", 1) == 1;
  wipe_passphrase (req);
  json_object_put (req);
  while (sent && got < sizeof line - 1) {
    ssize_t n = read (fd, line + got, sizeof line - 1 - got);
    if (n <= 0)
      break;
    got += (size_t) n;
    if (memchr (line, '\n', got))
      break;
  }
  close (fd);
  line[got] = '\0';
  reply = json_tokener_parse (line);
  json_object *ok;
  if (!reply || !json_object_object_get_ex (reply, "ok", &ok)) {
    fprintf (stderr, "luks-nbd ctl: no reply from %s\n", path);
    json_object_put (reply);
    return 1;
  }
  rc = json_object_get_boolean (ok) ? 0 : 1;
  fputs (line, rc ? stderr : stdout);
  json_object_put (reply);
  return rc;
}
