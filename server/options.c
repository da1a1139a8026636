/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the daemon's command line: one function per option into
 * struct options (server/options.h), --export and --config lines into
 * the list of specs, --help, and the checks of what the options ask for
 * before anything is opened or listens. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/internal.h"
#include "server/options.h"

#define MAX_THREADS 1024 /* libuv's own limit */

/* The defaults, before the command line. */
struct options opt = {
  .socket_mode = 0600,
  .tls = TLS_OFF,
  .max_connections = 100,
  .handshake_timeout = 10,
  .inflight_total = MAX_INFLIGHT_TOTAL_BYTES,
};

struct spec_text *specs;
size_t n_specs;

static int
add_spec (const char *text, const char *origin)
{
  struct spec_text *n = realloc (specs, (n_specs + 1) * sizeof *n);

  if (!n)
    return error_set (-ENOMEM, "out of memory");
  specs = n;
  n[n_specs].text = strdup (text);
  n[n_specs].origin = strdup (origin);
  if (!n[n_specs].text || !n[n_specs].origin) {
    free (n[n_specs].text);
    free (n[n_specs].origin);
    return error_set (-ENOMEM, "out of memory");
  }
  n_specs++;
  return 0;
}

/* --config FILE: one export spec per line (the --export syntax).  A #
 * at the start of a line or after a blank starts a comment that runs to
 * the end of the line (a # inside a value, as in disk#2.img, is kept);
 * blank lines are skipped.  Relative paths are taken from the file's
 * directory, so the file means the same whatever the daemon's working
 * directory. */
struct config_file {
  const char *path;
  char *dir; /* absolute */
  size_t specs;
};

static int
config_line (void *opaque, char *line, size_t len, int lineno)
{
  struct config_file *cf = opaque;
  char *p = line, *e = line + len, origin[300], *spec;
  int r;

  for (char *c = p; c < e; c++)
    if (*c == '#' && (c == p || c[-1] == ' ' || c[-1] == '\t')) {
      e = c;
      break;
    }
  while (p < e && (*p == ' ' || *p == '\t'))
    p++;
  while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
    e--;
  *e = '\0';
  if (*p == '\0')
    return 0;
  snprintf (origin, sizeof origin, "--config %.256s line %d", cf->path, lineno);
  r = export_spec_absolute (p, cf->dir, &spec);
  if (r < 0)
    return r;
  r = add_spec (spec, origin);
  free (spec);
  cf->specs++;
  return r;
}

/* The absolute directory of path (which need not be absolute). */
static char *
directory_of (const char *path)
{
  const char *slash = strrchr (path, '/');
  char *cwd = NULL, *dir = NULL;

  if (slash == path)
    return strdup ("/");
  if (path[0] == '/')
    return strndup (path, (size_t) (slash - path));
  if (!(cwd = getcwd (NULL, 0)))
    return NULL;
  if (asprintf (&dir, "%s%s%.*s", cwd, slash ? "/" : "",
                slash ? (int) (slash - path) : 0, path) < 0)
    dir = NULL;
  free (cwd);
  return dir;
}

/* 0, or -errno with the file (and line) in the message; *n_found is
 * how many export specs the file held. */
static int
read_config (const char *path, size_t *n_found)
{
  struct config_file cf = { .path = path, .dir = directory_of (path) };
  int r;

  if (!cf.dir)
    return error_set (-errno, "--config %s: %s", path, strerror (errno));
  r = lines_read (path, "--config", config_line, &cf);
  if (r < 0 && strncmp (error_message (), "--config", 8) != 0)
    error_prefix (r, "--config %s", path);
  free (cf.dir);
  *n_found = cf.specs;
  return r;
}

static void
usage (FILE *f)
{
  char names[512], control[640];

  fputs (
    "Usage: luks-nbd [OPTION]... --export SPEC [--export SPEC]...\n"
    "       luks-nbd [OPTION]... --config FILE | --control PATH\n"
    "\n"
    "Serves LUKS-encrypted volumes (detached or attached headers) as plain\n"
    "block devices over NBD.\n"
    "\n",
    f);
  usage_item (f, 2, 22, "--export SPEC",
              "an export, as comma-separated KEY=VALUE (',,' is a literal "
              "comma); name=, payload= and one of key-file=, "
              "passphrase-file= and credential= are required.  Keys:");
  export_keys_usage (f);
  fputs (
    "  --socket PATH       listen on a unix socket (mode 0600)\n"
    "  --socket-mode MODE  octal mode of the unix sockets\n"
    "  --listen [HOST]:PORT  listen on TCP: HOST:PORT, [IPV6]:PORT, :PORT "
    "(every\n"
    "                      address) or PORT; the port defaults to 10809\n"
    "  --config FILE       one --export SPEC per line (# comments; relative\n"
    "                      paths from the file's directory)\n",
    f);
  ctl_command_names (names, sizeof names);
  snprintf (control, sizeof control,
            "control socket (JSON lines): %s (see luks-nbd ctl --help)", names);
  usage_item (f, 2, 22, "--control PATH", control);
  fputs (
    "  --threads N         worker threads (default: number of CPUs; 16 with\n"
    "                      cache=none)\n"
    "  --max-connections N refuse clients beyond N (default 100)\n"
    "  --max-inflight-total MIB  request buffers and queued output of all\n"
    "                      clients together, then only idle ones are read\n"
    "                      (default 1024)\n"
    "  --handshake-timeout S  drop clients that choose no export in S\n"
    "                      seconds (default 10; 0: never)\n"
    "  --tls=off|on|require  offer TLS (STARTTLS); require: refuse clients\n"
    "                      that do not start it (default off)\n"
    "  --tls-certs DIR     X.509: DIR/server-cert.pem, server-key.pem and\n"
    "                      ca-cert.pem (or --tls-psk, not both)\n"
    "  --tls-psk FILE      pre-shared keys, lines username:hexkey (psktool;\n"
    "                      mode 0600)\n"
    "  --tls-verify-peer   clients must show a certificate signed by\n"
    "                      DIR/ca-cert.pem\n"
    "  --fd-store          keep unlocked keys in systemd's file descriptor\n"
    "                      store, so a restart needs no KDF (the unit needs\n"
    "                      FileDescriptorStoreMax=)\n"
    "  --readonly          serve every export read-only\n"
    "  --user U, --group G drop to this user/group once sockets and files are\n"
    "                      open\n"
    "  --run CMD           run CMD (sh -c, as --user if given) once serving,\n"
    "                      with $uri and $unixsocket set (a private socket\n"
    "                      without --socket/--listen); stop when it exits,\n"
    "                      with its status\n"
    "  -v, --verbose       log connections (-vv: every request)\n"
    "  --help              print this and exit\n"
    "  --version           print the version and exit\n",
    f);
  fputs ("\n       luks-nbd ctl --control PATH COMMAND, where COMMAND is\n", f);
  ctl_commands_synopses (f, 9);
}

enum {
  OPT_SOCKET = 256,
  OPT_SOCKET_MODE,
  OPT_LISTEN,
  OPT_THREADS,
  OPT_READONLY,
  OPT_EXPORT,
  OPT_RUN,
  OPT_HELP,
  OPT_VERSION,
  OPT_MAX_CONNECTIONS,
  OPT_MAX_INFLIGHT_TOTAL,
  OPT_HANDSHAKE_TIMEOUT,
  OPT_CONFIG,
  OPT_CONTROL,
  OPT_USER,
  OPT_GROUP,
  OPT_TLS,
  OPT_TLS_CERTS,
  OPT_TLS_PSK,
  OPT_TLS_VERIFY_PEER,
  OPT_FD_STORE
};

static const struct option long_options[] = {
  { "socket", required_argument, NULL, OPT_SOCKET },
  { "socket-mode", required_argument, NULL, OPT_SOCKET_MODE },
  { "listen", required_argument, NULL, OPT_LISTEN },
  { "threads", required_argument, NULL, OPT_THREADS },
  { "readonly", no_argument, NULL, OPT_READONLY },
  { "read-only", no_argument, NULL, OPT_READONLY },
  { "export", required_argument, NULL, OPT_EXPORT },
  { "run", required_argument, NULL, OPT_RUN },
  { "config", required_argument, NULL, OPT_CONFIG },
  { "control", required_argument, NULL, OPT_CONTROL },
  { "user", required_argument, NULL, OPT_USER },
  { "group", required_argument, NULL, OPT_GROUP },
  { "tls", required_argument, NULL, OPT_TLS },
  { "tls-certs", required_argument, NULL, OPT_TLS_CERTS },
  { "tls-psk", required_argument, NULL, OPT_TLS_PSK },
  { "tls-verify-peer", no_argument, NULL, OPT_TLS_VERIFY_PEER },
  { "fd-store", no_argument, NULL, OPT_FD_STORE },
  { "max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS },
  { "max-inflight-total", required_argument, NULL, OPT_MAX_INFLIGHT_TOTAL },
  { "handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT },
  { "verbose", no_argument, NULL, 'v' },
  { "help", no_argument, NULL, OPT_HELP },
  { "version", no_argument, NULL, OPT_VERSION },
  { NULL, 0, NULL, 0 },
};

/* --NAME ARG as a number in min..max: false (said on stderr) if it is
 * not one; unit follows the range in the message. */
static bool
number_option (const char *name, const char *arg, long min, long max,
               const char *unit, long *out)
{
  char *end;
  long v = strtol (arg, &end, 10);

  if (*end || end == arg || v < min || v > max) {
    fprintf (stderr, "luks-nbd: --%s %s: expected %ld..%ld%s\n", name, arg, min,
             max, unit);
    return false;
  }
  *out = v;
  return true;
}

static bool
tls_option (const char *arg)
{
  if (strcmp (arg, "off") == 0)
    opt.tls = TLS_OFF;
  else if (strcmp (arg, "on") == 0)
    opt.tls = TLS_ON;
  else if (strcmp (arg, "require") == 0)
    opt.tls = TLS_REQUIRE;
  else {
    fprintf (stderr, "luks-nbd: --tls %s: expected off, on or require\n", arg);
    return false;
  }
  return true;
}

static bool
socket_mode_option (const char *arg)
{
  char *end;

  opt.socket_mode = (unsigned) strtoul (arg, &end, 8);
  if (*end || end == arg || opt.socket_mode > 0777) {
    fprintf (stderr, "luks-nbd: --socket-mode %s: expected an octal mode\n",
             arg);
    return false;
  }
  return true;
}

/* --listen is refused before any export is unlocked. */
static bool
listen_option (const char *arg)
{
  char host[256];
  unsigned port;

  if (listen_parse (arg, host, sizeof host, &port) < 0) {
    fprintf (stderr, "luks-nbd: %s\n", error_message ());
    return false;
  }
  opt.tcp[opt.n_tcp++] = arg;
  return true;
}

static bool
export_option (const char *arg)
{
  static unsigned n_export_options;
  char origin[32];

  snprintf (origin, sizeof origin, "--export #%u", ++n_export_options);
  return add_spec (arg, origin) == 0;
}

static bool
config_option (const char *arg)
{
  size_t n = 0;

  if (read_config (arg, &n) < 0) {
    fprintf (stderr, "luks-nbd: %s\n", error_message ());
    return false;
  }
  if (n == 0)
    opt.empty_config = arg;
  return true;
}

/* One option into opt: true, or false once the error is said. */
static bool
parse_option (int c, const char *arg)
{
  long v;

  switch (c) {
  case OPT_SOCKET: opt.sockets[opt.n_sockets++] = arg; return true;
  case OPT_SOCKET_MODE: return socket_mode_option (arg);
  case OPT_LISTEN: return listen_option (arg);
  case OPT_EXPORT: return export_option (arg);
  case OPT_CONFIG: return config_option (arg);
  case OPT_READONLY: opt.readonly = true; return true;
  case OPT_RUN: opt.run = arg; return true;
  case OPT_CONTROL: opt.control = arg; return true;
  case OPT_USER: opt.user = arg; return true;
  case OPT_GROUP: opt.group = arg; return true;
  case OPT_TLS: return tls_option (arg);
  case OPT_TLS_CERTS: opt.tls_certs = arg; return true;
  case OPT_TLS_PSK: opt.tls_psk = arg; return true;
  case OPT_TLS_VERIFY_PEER: opt.tls_verify_peer = true; return true;
  case OPT_FD_STORE: keystore_enable (); return true;
  case OPT_MAX_CONNECTIONS:
    if (!number_option ("max-connections", arg, 1, 100000, "", &v))
      return false;
    opt.max_connections = (unsigned) v;
    return true;
  case OPT_HANDSHAKE_TIMEOUT:
    if (!number_option ("handshake-timeout", arg, 0, 100000, "", &v))
      return false;
    opt.handshake_timeout = (unsigned) v;
    return true;
  case OPT_MAX_INFLIGHT_TOTAL:
    if (!number_option ("max-inflight-total", arg, 1, 1048576, " (MiB)", &v))
      return false;
    opt.inflight_total = (uint64_t) v * 1024 * 1024;
    return true;
  case OPT_THREADS:
    opt.threads_given = true;
    return number_option ("threads", arg, 1, MAX_THREADS, "", &opt.threads);
  case 'v': opt.verbose++; return true;
  }
  usage (stderr);
  return false;
}

int
parse_command_line (int argc, char **argv)
{
  int c;

  opt.threads = sysconf (_SC_NPROCESSORS_ONLN);
  while ((c = getopt_long (argc, argv, "v", long_options, NULL)) != -1) {
    if (c == OPT_HELP) {
      usage (stdout);
      return 0;
    }
    if (c == OPT_VERSION) {
      printf ("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
      return 0;
    }
    if (!parse_option (c, optarg))
      return 1;
  }
  if (optind < argc) {
    fprintf (stderr, "luks-nbd: unexpected argument '%s'\n", argv[optind]);
    usage (stderr);
    return 1;
  }
  return -1;
}

int
options_validate (void)
{
  log_set_verbose (opt.verbose);
  node_set_log_hook (log_warning); /* e.g. a remote payload reconnected */
  conn_set_limits (opt.max_connections, opt.handshake_timeout);
  conn_set_inflight_total (opt.inflight_total);
  if (n_specs == 0 && !opt.control && opt.empty_config) {
    fprintf (stderr,
             "luks-nbd: --config %s holds no export spec (only blank lines "
             "and comments): write one --export SPEC per line, or give "
             "--control to add exports later\n",
             opt.empty_config);
    return -1;
  }
  if (n_specs == 0 && !opt.control) {
    fprintf (stderr, "luks-nbd: no --export given\n");
    usage (stderr);
    return -1;
  }
  /* Unknown names fail before anything is opened or listens. */
  if (opt.user && !getpwnam (opt.user)) {
    fprintf (stderr, "luks-nbd: --user %s: no such user\n", opt.user);
    return -1;
  }
  if (opt.group && !getgrnam (opt.group)) {
    fprintf (stderr, "luks-nbd: --group %s: no such group\n", opt.group);
    return -1;
  }
  if (tls_configure (opt.tls, opt.tls_certs, opt.tls_psk, opt.tls_verify_peer) <
      0) {
    fprintf (stderr, "luks-nbd: %s\n", error_message ());
    return -1;
  }
  return 0;
}

int
options_validate_listeners (int n_passed)
{
  if (opt.n_sockets == 0 && opt.n_tcp == 0 && n_passed == 0 && !opt.run) {
    fprintf (stderr, "luks-nbd: nothing to listen on: give --socket or "
                     "--listen (or --run), or start under socket "
                     "activation\n");
    return -1;
  }
  return 0;
}
