/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: `luks-nbd ctl`, the control socket's command-line client:
 * one request, built by hand so that a passphrase from stdin stays in
 * buffers that are wiped (json-c's printbuf is freed unwiped), and the
 * reply printed (to stdout if ok, else stderr; exit status 0 or 1). */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/error_msg.h"
#include "server/internal.h"

/* --passphrase-stdin: longer input is refused, not cut. */
#define CONTROL_PASSPHRASE_MAX 8192
/* The longest reply read. */
#define CONTROL_REPLY_MAX (64 * 1024 * 1024)

/* luks-nbd ctl --control PATH CMD [ARGS]: one request, prints the reply. */
static int
ctl_usage (void)
{
  fprintf (
    stderr,
    "usage: luks-nbd ctl --control PATH export-list | query-stats |\n"
    "         export-remove NAME [--force] |\n"
    "         export-resize NAME SIZE [--force] |\n"
    "         export-add SPEC [--passphrase-stdin] [--inactive] |\n"
    "         export-activate NAME | export-inactivate NAME |\n"
    "         keyslot-list NAME |\n"
    "         keyslot-add NAME --passphrase-stdin [--key-slot N] [KDF] |\n"
    "         keyslot-change NAME SLOT --passphrase-stdin [KDF] |\n"
    "         keyslot-remove NAME SLOT [--force]\n"
    "KDF (new keyslots; cryptsetup's defaults if not given): --pbkdf\n"
    "  argon2id|argon2i|pbkdf2, --pbkdf-memory KiB, --pbkdf-parallel N,\n"
    "  --iter-time MS, --pbkdf-force-iterations N\n"
    "keyslot-add/-change read the new passphrase from stdin; the key\n"
    "comes from the running export (no old passphrase).  keyslot-remove\n"
    "refuses the last keyslot that opens the volume unless --force.\n"
    "SIZE is bytes or has a K, M, G or T suffix (powers of 1024); a resize\n"
    "that shrinks needs --force.\n"
    "(options may come before or after the command; relative paths "
    "in SPEC\nare taken from the current directory)\n");
  return 2;
}

/* What the command line asked for. */
struct ctl_args {
  const char *path; /* --control */
  bool force, passphrase_stdin, inactive;
  const char *cmd, *arg; /* arg: NAME or SPEC */
  const char *size;      /* export-resize's SIZE */
  const char *slot;      /* keyslot-remove/-change SLOT, or --key-slot */
  /* Keyslot KDF options, as given (numbers checked at parse time). */
  const char *pbkdf, *num[4];
};

/* The numeric KDF options: option name and request member. */
static const char *const num_opts[4][2] = {
  { "pbkdf-memory", "pbkdf_memory" },
  { "pbkdf-parallel", "pbkdf_parallel" },
  { "iter-time", "iter_time" },
  { "pbkdf-force-iterations", "pbkdf_force_iterations" },
};

static bool
is_number (const char *s)
{
  size_t n = strspn (s, "0123456789");
  return n > 0 && n < 11 && !s[n];
}

/* Options anywhere (getopt permutes), --control PATH or --control=PATH.
 * 0, or an exit code. */
static int
parse_args (int argc, char **argv, struct ctl_args *a)
{
  enum {
    OPT_CONTROL = 256,
    OPT_FORCE,
    OPT_PASS,
    OPT_INACTIVE,
    OPT_HELP,
    OPT_SLOT,
    OPT_PBKDF,
    OPT_NUM /* + index into num_opts */
  };
  static const struct option opts[] = {
    { "control", required_argument, NULL, OPT_CONTROL },
    { "force", no_argument, NULL, OPT_FORCE },
    { "passphrase-stdin", no_argument, NULL, OPT_PASS },
    { "inactive", no_argument, NULL, OPT_INACTIVE },
    { "help", no_argument, NULL, OPT_HELP },
    { "key-slot", required_argument, NULL, OPT_SLOT },
    { "pbkdf", required_argument, NULL, OPT_PBKDF },
    { "pbkdf-memory", required_argument, NULL, OPT_NUM + 0 },
    { "pbkdf-parallel", required_argument, NULL, OPT_NUM + 1 },
    { "iter-time", required_argument, NULL, OPT_NUM + 2 },
    { "pbkdf-force-iterations", required_argument, NULL, OPT_NUM + 3 },
    { NULL, 0, NULL, 0 },
  };
  bool key_slot = false;
  int c;

  optind = 1;
  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case OPT_CONTROL: a->path = optarg; break;
    case OPT_FORCE: a->force = true; break;
    case OPT_PASS: a->passphrase_stdin = true; break;
    case OPT_INACTIVE: a->inactive = true; break;
    case OPT_HELP: ctl_usage (); return 2;
    case OPT_SLOT: a->slot = optarg, key_slot = true; break;
    case OPT_PBKDF: a->pbkdf = optarg; break;
    default:
      if (c < OPT_NUM || c >= OPT_NUM + 4)
        return ctl_usage ();
      if (!is_number (optarg)) {
        fprintf (stderr, "luks-nbd ctl: --%s takes a number, not '%s'\n",
                 num_opts[c - OPT_NUM][0], optarg);
        return 2;
      }
      a->num[c - OPT_NUM] = optarg;
    }
  }
  if (optind < argc)
    a->cmd = argv[optind++];
  if (optind < argc)
    a->arg = argv[optind++];
  bool resize = a->cmd && !strcmp (a->cmd, "export-resize");
  if (resize && optind < argc)
    a->size = argv[optind++];
  bool two = a->cmd && (!strcmp (a->cmd, "keyslot-remove") ||
                        !strcmp (a->cmd, "keyslot-change"));
  if (two && optind < argc && !key_slot)
    a->slot = argv[optind++];
  if (!a->path) {
    fprintf (stderr, "luks-nbd ctl: --control PATH is required\n");
    return ctl_usage ();
  }
  if (!a->cmd || optind < argc)
    return ctl_usage ();
  /* Commands that take a NAME: remove, activate, inactivate. */
  bool remove = !strcmp (a->cmd, "export-remove") ||
                !strcmp (a->cmd, "export-activate") ||
                !strcmp (a->cmd, "export-inactivate");
  bool add = !strcmp (a->cmd, "export-add");
  bool list =
    !strcmp (a->cmd, "export-list") || !strcmp (a->cmd, "query-stats");
  bool ks_list = !strcmp (a->cmd, "keyslot-list");
  bool ks_add = !strcmp (a->cmd, "keyslot-add");
  bool ks_remove = !strcmp (a->cmd, "keyslot-remove");
  bool ks_new = ks_add || !strcmp (a->cmd, "keyslot-change");
  bool kdf = a->pbkdf || a->num[0] || a->num[1] || a->num[2] || a->num[3];
  if (ks_list || ks_remove || ks_new) {
    if (!a->arg || (two && !a->slot) || (key_slot && !ks_add) ||
        (a->slot && !is_number (a->slot)) || (a->force && !ks_remove) ||
        (kdf && !ks_new) || (ks_new && !a->passphrase_stdin) ||
        (a->passphrase_stdin && !ks_new) || a->inactive)
      return ctl_usage ();
    return 0;
  }
  if ((!remove && !add && !list && !resize) ||
      ((remove || add || resize) && !a->arg) || (resize && !a->size) ||
      (list && a->arg) ||
      (a->force && strcmp (a->cmd, "export-remove") && !resize) ||
      ((a->passphrase_stdin || a->inactive) && !add) || a->slot || kdf)
    return ctl_usage ();
  return 0;
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

/* SPEC with its relative paths made absolute here: the daemon's working
 * directory is not the caller's. */
static int
spec_absolute (const char *spec, char **out)
{
  char *cwd = getcwd (NULL, 0);
  int r;

  if (!cwd) {
    fprintf (stderr, "luks-nbd ctl: the current directory: %s\n",
             strerror (errno));
    return 1;
  }
  r = export_spec_absolute (spec, cwd, out);
  free (cwd);
  if (r < 0) {
    fprintf (stderr, "luks-nbd ctl: %s\n", error_message ());
    return 1;
  }
  return 0;
}

/* The request as one line, built by hand: a passphrase in it stays in
 * buffers that are wiped (json-c's printbuf is not).  0 or an exit code. */
static int
build_request (const struct ctl_args *a, char *line, size_t cap, size_t *len)
{
  char pass[CONTROL_PASSPHRASE_MAX + 1];
  bool ok = line_add (line, cap, len, "{\"cmd\":", a->cmd, strlen (a->cmd));

  if (!strcmp (a->cmd, "export-resize")) {
    uint64_t size;
    char num[32];
    if (ctl_parse_size (a->size, &size) < 0) {
      fprintf (stderr, "luks-nbd ctl: export-resize: %s\n", error_message ());
      return 2;
    }
    snprintf (num, sizeof num, ",\"size\":%" PRIu64, size);
    ok = ok && line_add (line, cap, len, ",\"name\":", a->arg, strlen (a->arg));
    ok = ok && line_add (line, cap, len, num, NULL, 0);
    if (a->force)
      ok = ok && line_add (line, cap, len, ",\"force\":true", NULL, 0);
  } else if (!strncmp (a->cmd, "keyslot-", 8)) {
    ok = ok && line_add (line, cap, len, ",\"name\":", a->arg, strlen (a->arg));
    if (a->slot)
      ok = ok && line_add (line, cap, len, ",\"slot\":", NULL, 0) &&
           line_add (line, cap, len, a->slot, NULL, 0);
    if (a->force)
      ok = ok && line_add (line, cap, len, ",\"force\":true", NULL, 0);
    if (a->pbkdf)
      ok = ok && line_add (line, cap, len, ",\"pbkdf\":", a->pbkdf,
                           strlen (a->pbkdf));
    for (int i = 0; i < 4; i++)
      if (a->num[i]) {
        char key[40];
        snprintf (key, sizeof key, ",\"%s\":", num_opts[i][1]);
        ok = ok && line_add (line, cap, len, key, NULL, 0) &&
             line_add (line, cap, len, a->num[i], NULL, 0);
      }
  } else if (strcmp (a->cmd, "export-add") && a->arg) { /* NAME */
    ok = ok && line_add (line, cap, len, ",\"name\":", a->arg, strlen (a->arg));
    if (a->force)
      ok = ok && line_add (line, cap, len, ",\"force\":true", NULL, 0);
  }
  if (!strcmp (a->cmd, "export-add")) {
    char *spec;
    int rc = spec_absolute (a->arg, &spec);
    if (rc)
      return rc;
    ok = ok && line_add (line, cap, len, ",\"spec\":", spec, strlen (spec));
    free (spec);
    /* --inactive: the spec key, appended inside the JSON string. */
    if (ok && a->inactive && *len > 0 && line[*len - 1] == '"') {
      (*len)--;
      ok = line_add (line, cap, len, ",active=off\"", NULL, 0);
    }
  }
  if (a->passphrase_stdin) {
    ssize_t n = read_passphrase (pass, sizeof pass);
    if (n < 0) {
      explicit_bzero (pass, sizeof pass);
      fprintf (stderr,
               "luks-nbd ctl: cannot read the passphrase from stdin (at "
               "most %d bytes)\n",
               CONTROL_PASSPHRASE_MAX);
      return 1;
    }
    ok = ok && line_add (line, cap, len, ",\"passphrase\":", pass, (size_t) n);
    explicit_bzero (pass, sizeof pass);
  }
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
  struct ctl_args a = { 0 };
  const char *path;
  json_object *reply;
  int fd, rc;

  rc = parse_args (argc, argv, &a);
  if (rc)
    return rc;
  path = a.path;
  rc = build_request (&a, req, sizeof req, &reqlen);
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
  /* Paths as paths: json-c escapes '/' unless told not to. */
  fprintf (rc ? stderr : stdout, "%s\n",
           json_object_to_json_string_ext (
             reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put (reply);
  free (line);
  return rc;
}
