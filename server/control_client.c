/* luks-nbd: `luks-nbd ctl`, the control socket's command-line client:
 * one request, built by hand so that a passphrase from stdin stays in
 * buffers that are wiped (json-c's printbuf is freed unwiped), and the
 * reply printed (to stdout if ok, else stderr; exit status 0 or 1). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "internal.h"

/* --passphrase-stdin: longer input is refused, not cut. */
#define CONTROL_PASSPHRASE_MAX 8192
/* The longest reply read. */
#define CONTROL_REPLY_MAX (64 * 1024 * 1024)

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

/* Appends s as a JSON string to the request line being built; false if
 * it does not fit. */
static bool
line_add (char *line, size_t cap, size_t *len, const char *raw, const char *s,
          size_t slen)
{
  size_t n = strlen (raw);

  if (n > cap - *len)
    return false;
  memcpy (line + *len, raw, n);
  *len += n;
  if (s) {
    n = ctl_json_string (line + *len, cap - *len, s, slen);
    if (n > cap - *len)
      return false;
    *len += n;
  }
  return true;
}

/* The passphrase from stdin, one trailing newline stripped, as
 * passphrase-file= does; read(2), so no stdio buffer keeps a copy. */
static ssize_t
read_passphrase (char *pass, size_t cap)
{
  size_t n = 0;
  ssize_t r;

  while ((r = read (0, pass + n, cap - n)) != 0) {
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -1;
    n += (size_t) r;
    if (n == cap)
      return -1; /* more than cap - 1 bytes: refused, not cut */
  }
  if (n && pass[n - 1] == '\n')
    n--;
  return (ssize_t) n;
}

/* The request as one line, built by hand: a passphrase in it stays in
 * buffers that are wiped (json-c's printbuf is not).  0 or an exit code. */
static int
build_request (int argc, char **argv, int i, char *line, size_t cap,
               size_t *len)
{
  const char *cmd = argv[i++];
  char pass[CONTROL_PASSPHRASE_MAX + 1];
  bool ok = line_add (line, cap, len, "{\"cmd\":", cmd, strlen (cmd));

  if (!strcmp (cmd, "export-remove") && i < argc) {
    ok =
      ok && line_add (line, cap, len, ",\"name\":", argv[i], strlen (argv[i]));
    i++;
    if (i < argc && !strcmp (argv[i], "--force"))
      ok = ok && line_add (line, cap, len, ",\"force\":true", NULL, 0), i++;
  } else if (!strcmp (cmd, "export-add") && i < argc) {
    ok =
      ok && line_add (line, cap, len, ",\"spec\":", argv[i], strlen (argv[i]));
    i++;
    if (i < argc && !strcmp (argv[i], "--passphrase-stdin")) {
      ssize_t n = read_passphrase (pass, sizeof pass);
      if (n < 0) {
        explicit_bzero (pass, sizeof pass);
        fprintf (stderr,
                 "luks-nbd ctl: cannot read the passphrase from stdin (at "
                 "most %d bytes)\n",
                 CONTROL_PASSPHRASE_MAX);
        return 1;
      }
      ok =
        ok && line_add (line, cap, len, ",\"passphrase\":", pass, (size_t) n);
      explicit_bzero (pass, sizeof pass);
      i++;
    }
  } else if (strcmp (cmd, "export-list") && strcmp (cmd, "query-stats"))
    return ctl_usage ();
  if (i != argc)
    return ctl_usage ();
  if (!(ok && line_add (line, cap, len, "}\n", NULL, 0))) {
    fprintf (stderr, "luks-nbd ctl: the request is longer than %d bytes\n",
             CONTROL_LINE_MAX);
    return 1;
  }
  return 0;
}

/* The reply line, however long (export-list of many exports), up to a
 * bound; NUL terminated, newline kept.  NULL if none came. */
static char *
read_reply (int fd)
{
  size_t cap = 4096, got = 0;
  char *line = malloc (cap), *n;

  while (line) {
    if (got == cap - 1) {
      if (cap >= CONTROL_REPLY_MAX || !(n = realloc (line, cap * 2)))
        break;
      line = n;
      cap *= 2;
    }
    ssize_t r = read (fd, line + got, cap - 1 - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    line[got + (size_t) r] = '\0';
    if (memchr (line + got, '\n', (size_t) r))
      return line;
    got += (size_t) r;
  }
  free (line);
  return NULL;
}

int
control_client (int argc, char **argv)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  char req[CONTROL_LINE_MAX];
  size_t reqlen = 0;
  const char *path = NULL;
  json_object *reply;
  int i = 1, fd, rc;

  if (argc > 2 && !strcmp (argv[1], "--control")) {
    path = argv[2];
    i = 3;
  }
  if (!path || i >= argc)
    return ctl_usage ();
  rc = build_request (argc, argv, i, req, sizeof req, &reqlen);
  if (rc) {
    explicit_bzero (req, sizeof req);
    return rc;
  }
  if (strlen (path) >= sizeof sa.sun_path) { /* not cut to another path */
    explicit_bzero (req, sizeof req);
    fprintf (stderr, "luks-nbd ctl: %s: path too long\n", path);
    return 1;
  }
  memcpy (sa.sun_path, path, strlen (path));
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect (fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
    explicit_bzero (req, sizeof req);
    fprintf (stderr, "luks-nbd ctl: %s: %s\n", path, strerror (errno));
    return 1;
  }
  bool sent = write (fd, req, reqlen) == (ssize_t) reqlen;
  explicit_bzero (req, sizeof req);
  char *line = sent ? read_reply (fd) : NULL;
  close (fd);
  reply = line ? json_tokener_parse (line) : NULL;
  json_object *ok;
  if (!reply || !json_object_object_get_ex (reply, "ok", &ok) ||
      !json_object_is_type (ok, json_type_boolean)) {
    fprintf (stderr, "luks-nbd ctl: no reply from %s\n", path);
    json_object_put (reply);
    free (line);
    return 1;
  }
  rc = json_object_get_boolean (ok) ? 0 : 1;
  fputs (line, rc ? stderr : stdout);
  json_object_put (reply);
  free (line);
  return rc;
}
