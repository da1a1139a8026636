/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: `luks-nbd ctl`, the control socket's command-line client:
 * one request, built by hand so that a passphrase from stdin stays in
 * buffers that are wiped (json-c's printbuf is freed unwiped), and the
 * reply printed (to stdout if ok, else stderr; exit status 0 or 1). */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <stdarg.h>
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

/* luks-nbd ctl --help: the commands come from control_commands.c. */
static void
ctl_usage (FILE *f)
{
  char kdf[256];
  size_t len = 0;

  fprintf (f, "usage: luks-nbd ctl --control PATH COMMAND [ARGUMENT]... "
              "[OPTION]...\n"
              "Sends one request to luks-nbd's control socket and prints "
              "the reply (stdout\n"
              "and exit status 0 if ok, else stderr and 1).  Options may "
              "come before or\n"
              "after the command; --control=PATH works too.  Commands:\n");
  ctl_commands_help (f);
  for (size_t k = 0; k < CTL_KDF_OPTIONS && len < sizeof kdf; k++)
    len += (size_t) snprintf (kdf + len, sizeof kdf - len, "%s--%s %s",
                              k ? ", " : "", ctl_kdf_options[k].option,
                              ctl_kdf_options[k].value);
  usage_item (f, 0, 2,
              "KDF, for new keyslots (cryptsetup's defaults if not "
              "given):",
              kdf);
}

/* The whole usage, for a command line that names no known command. */
static int
usage_error (void)
{
  ctl_usage (stderr);
  return 2;
}

/* What the command line asked for. */
struct ctl_args {
  const char *path; /* --control */
  const struct ctl_command *cmd;
  const char *arg;  /* NAME or SPEC */
  const char *arg2; /* SIZE or SLOT */
  const char *key_slot;
  bool force, passphrase_stdin, inactive;
  /* Keyslot KDF options, as given (numbers checked at parse time). */
  const char *kdf[CTL_KDF_OPTIONS];
};

static bool
is_number (const char *s)
{
  size_t n = strspn (s, "0123456789");
  return n > 0 && n < 11 && !s[n];
}

/* A command given what it does not take: why, and its synopsis. */
static int misuse (const struct ctl_command *c, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
static int
misuse (const struct ctl_command *c, const char *fmt, ...)
{
  char synopsis[160];
  va_list ap;

  ctl_command_synopsis (c, synopsis, sizeof synopsis);
  fprintf (stderr, "luks-nbd ctl: %s: ", c->name);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nusage: luks-nbd ctl --control PATH %s\n", synopsis);
  return 2;
}

/* The command's row says what it takes: 0, or an exit code. */
static int
check_args (const struct ctl_args *a, const char *extra)
{
  static const char *const arg_names[] = { "", "NAME", "SPEC", "SIZE", "SLOT" };
  const struct ctl_command *c = a->cmd;
  unsigned o = c->opts;
  bool kdf = false;

  for (size_t k = 0; k < CTL_KDF_OPTIONS; k++)
    kdf = kdf || a->kdf[k];
  if (extra)
    return misuse (c, "unexpected argument '%s'", extra);
  if (c->arg && !a->arg)
    return misuse (c, "%s is missing", arg_names[c->arg]);
  if (c->arg2 && !a->arg2)
    return misuse (c, "%s is missing", arg_names[c->arg2]);
  if (c->arg2 == CTL_ARG_SLOT && !is_number (a->arg2))
    return misuse (c, "SLOT is a number, not '%s'", a->arg2);
  if (a->key_slot && !(o & CTL_OPT_KEY_SLOT))
    return misuse (c, "%s does not apply", "--key-slot");
  if (a->key_slot && !is_number (a->key_slot))
    return misuse (c, "--key-slot takes a number, not '%s'", a->key_slot);
  if (a->force && !(o & CTL_OPT_FORCE))
    return misuse (c, "%s does not apply", "--force");
  if (a->inactive && !(o & CTL_OPT_INACTIVE))
    return misuse (c, "%s does not apply", "--inactive");
  if (kdf && !(o & CTL_OPT_KDF))
    return misuse (c, "%s do not apply", "the KDF options");
  if (a->passphrase_stdin && !(o & (CTL_OPT_PASS | CTL_OPT_PASS_REQUIRED)))
    return misuse (c, "%s does not apply", "--passphrase-stdin");
  if (!a->passphrase_stdin && (o & CTL_OPT_PASS_REQUIRED))
    return misuse (c, "%s is required (the new passphrase comes from stdin)",
                   "--passphrase-stdin");
  return 0;
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
    OPT_KDF /* + index into ctl_kdf_options */
  };
  struct option opts[6 + CTL_KDF_OPTIONS + 1] = {
    { "control", required_argument, NULL, OPT_CONTROL },
    { "force", no_argument, NULL, OPT_FORCE },
    { "passphrase-stdin", no_argument, NULL, OPT_PASS },
    { "inactive", no_argument, NULL, OPT_INACTIVE },
    { "help", no_argument, NULL, OPT_HELP },
    { "key-slot", required_argument, NULL, OPT_SLOT },
  };
  char names[512];
  int c;

  for (int k = 0; k < CTL_KDF_OPTIONS; k++)
    opts[6 + k] = (struct option){ ctl_kdf_options[k].option, required_argument,
                                   NULL, OPT_KDF + k };
  optind = 1;
  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case OPT_CONTROL: a->path = optarg; break;
    case OPT_FORCE: a->force = true; break;
    case OPT_PASS: a->passphrase_stdin = true; break;
    case OPT_INACTIVE: a->inactive = true; break;
    case OPT_HELP: ctl_usage (stdout); return -1;
    case OPT_SLOT: a->key_slot = optarg; break;
    default:
      if (c < OPT_KDF || c >= OPT_KDF + CTL_KDF_OPTIONS)
        return usage_error ();
      if (ctl_kdf_options[c - OPT_KDF].number && !is_number (optarg)) {
        fprintf (stderr, "luks-nbd ctl: --%s takes a number, not '%s'\n",
                 ctl_kdf_options[c - OPT_KDF].option, optarg);
        return 2;
      }
      a->kdf[c - OPT_KDF] = optarg;
    }
  }
  if (!a->path) {
    fprintf (stderr, "luks-nbd ctl: --control PATH is required\n");
    return usage_error ();
  }
  if (optind == argc)
    return usage_error ();
  if (!(a->cmd = ctl_command_find (argv[optind]))) {
    ctl_command_names (names, sizeof names);
    fprintf (stderr, "luks-nbd ctl: unknown command '%s' (expected %s)\n",
             argv[optind], names);
    return 2;
  }
  optind++;
  if (a->cmd->arg && optind < argc)
    a->arg = argv[optind++];
  if (a->cmd->arg2 && optind < argc)
    a->arg2 = argv[optind++];
  return check_args (a, optind < argc ? argv[optind] : NULL);
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

/* ,"size":BYTES from SIZE (K, M, G, T suffixes); false if it is not a
 * size (said on stderr). */
static bool
size_member (const char *text, char *out, size_t cap)
{
  uint64_t size;

  if (ctl_parse_size (text, &size) < 0) {
    fprintf (stderr, "luks-nbd ctl: export-resize: %s\n", error_message ());
    return false;
  }
  snprintf (out, cap, ",\"size\":%" PRIu64, size);
  return true;
}

/* ,"spec":"SPEC" with SPEC's relative paths made absolute, and
 * active=off for --inactive.  0 or an exit code. */
static int
spec_member (const struct ctl_args *a, char *line, size_t cap, size_t *len,
             bool *ok)
{
  char *spec;
  int rc = spec_absolute (a->arg, &spec);

  if (rc)
    return rc;
  *ok = *ok && line_add (line, cap, len, ",\"spec\":", spec, strlen (spec));
  free (spec);
  /* --inactive: the spec key, appended inside the JSON string. */
  if (*ok && a->inactive && *len > 0 && line[*len - 1] == '"') {
    (*len)--;
    *ok = line_add (line, cap, len, ",active=off\"", NULL, 0);
  }
  return 0;
}

/* The request as one line, built by hand from the command's row: a
 * passphrase in it stays in buffers that are wiped (json-c's printbuf is
 * not).  0 or an exit code. */
static int
build_request (const struct ctl_args *a, char *line, size_t cap, size_t *len)
{
  const struct ctl_command *c = a->cmd;
  char pass[CONTROL_PASSPHRASE_MAX + 1], num[48];
  bool ok = line_add (line, cap, len, "{\"cmd\":", c->name, strlen (c->name));
  int rc;

  if (c->arg == CTL_ARG_NAME)
    ok = ok && line_add (line, cap, len, ",\"name\":", a->arg, strlen (a->arg));
  if (c->arg == CTL_ARG_SPEC && (rc = spec_member (a, line, cap, len, &ok)))
    return rc;
  if (c->arg2 == CTL_ARG_SIZE) {
    if (!size_member (a->arg2, num, sizeof num))
      return 2;
    ok = ok && line_add (line, cap, len, num, NULL, 0);
  }
  if (c->arg2 == CTL_ARG_SLOT || a->key_slot)
    ok =
      ok && line_add (line, cap, len, ",\"slot\":", NULL, 0) &&
      line_add (line, cap, len, a->key_slot ? a->key_slot : a->arg2, NULL, 0);
  if (a->force)
    ok = ok && line_add (line, cap, len, ",\"force\":true", NULL, 0);
  for (int k = 0; k < CTL_KDF_OPTIONS; k++) {
    const char *v = a->kdf[k];
    if (!v)
      continue;
    snprintf (num, sizeof num, ",\"%s\":", ctl_kdf_options[k].member);
    if (ctl_kdf_options[k].number) /* digits, checked: as they are */
      ok = ok && line_add (line, cap, len, num, NULL, 0) &&
           line_add (line, cap, len, v, NULL, 0);
    else
      ok = ok && line_add (line, cap, len, num, v, strlen (v));
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
    return rc < 0 ? 0 : rc; /* -1: --help */
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
