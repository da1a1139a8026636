/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: command line, start-up (listen at once, serve each export
 * as its unlock finishes: startup.c; with --user/--group, unlock every
 * export before anything listens, as root), the loop, and orderly
 * shutdown on SIGTERM/SIGINT. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/internal.h"

#define MAX_THREADS 1024 /* libuv's own limit */
#define DIRECT_IO_THREADS 16

uv_loop_t *server_loop;

/* Every export spec, from --export and --config, and where it came from
 * for messages (reachable until exit). */
static struct spec_text {
  char *text;
  char *origin;
} * specs;
static size_t n_specs;

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

/* What the command line asked for.  start_listening may change the
 * listeners: the sockets systemd passed replace --socket and --listen,
 * --run without either gets a private socket. */
static struct options {
  const char **sockets, **tcp; /* main's, at most argc of each */
  size_t n_sockets, n_tcp;
  unsigned socket_mode;
  long threads;
  bool threads_given, readonly;
  const char *run, *control, *user, *group;
  const char *tls_certs, *tls_psk;
  enum tls_mode tls;
  bool tls_verify_peer;
  unsigned max_connections, handshake_timeout;
  uint64_t inflight_total;
  int verbose;
  const char *empty_config; /* a --config file without a spec */
} opt = {
  .socket_mode = 0600,
  .tls = TLS_OFF,
  .max_connections = 100,
  .handshake_timeout = 10,
  .inflight_total = MAX_INFLIGHT_TOTAL_BYTES,
};

/* The daemon's run state (loop thread). */
static struct {
  int *passed; /* listening sockets systemd passed */
  int n_passed;
  bool listening;
  bool stopping;
  uv_signal_t sigterm, sigint;
  int run_status;  /* --run's command's */
  int exit_status; /* 1 if an export failed to open at start-up */
} state;

bool
server_stopping (void)
{
  return state.stopping;
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

static void
stop_serving (void)
{
  if (state.stopping)
    return;
  state.stopping = true;
  systemd_notify ("STOPPING=1\nSTATUS=finishing requests in flight");
  systemd_stop_watchdog ();
  startup_stop ();
  listen_close_all ();
  control_close ();
  header_watch_stop_all ();
  conn_shutdown_all ();
  /* Still caught, but no longer keeping the loop alive: a second SIGTERM
   * (an impatient admin, a process-group kill) must not turn a graceful
   * stop into death by the default action with writes in flight.
   * SIGKILL remains for that. */
  uv_unref ((uv_handle_t *) &state.sigterm);
  uv_unref ((uv_handle_t *) &state.sigint);
}

static void
on_signal (uv_signal_t *s, int signum)
{
  if (state.stopping) {
    log_info ("signal %d: already stopping", signum);
    return;
  }
  log_info ("signal %d: stopping; finishing requests in flight", signum);
  stop_serving ();
}

static void
on_run_exit (int status)
{
  state.run_status = status;
  stop_serving ();
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

/* The command line into opt: -1 to go on, else the exit status (--help,
 * --version, or an error, said on stderr). */
static int
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

/* The fds systemd passed: listening sockets, and (--fd-store) the keys
 * its fd store kept for us (keystore.c), told apart by LISTEN_FDNAMES. */
static int
split_passed_fds (int n, const char *names)
{
  const char *p = names;

  state.passed = calloc ((size_t) (n ? n : 1), sizeof *state.passed);
  if (!state.passed)
    return error_set (-ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    size_t len = p ? strcspn (p, ":") : 0;
    char name[256];
    snprintf (name, sizeof name, "%.*s", (int) (len < 255 ? len : 255),
              p ? p : "");
    if (keystore_is_key_fd (name))
      keystore_adopt (name, 3 + i);
    else
      state.passed[state.n_passed++] = 3 + i;
    if (p)
      p = p[len] ? p + len + 1 : NULL;
  }
  return 0;
}

static int
take_passed_fds (void)
{
  char *names = NULL;
  int n = systemd_listen_fds (&names), r;

  r = n < 0 ? n : split_passed_fds (n, names);
  free (names);
  return r;
}

/* What the options ask for is possible, checked before anything is
 * opened or listens; the settings are handed to the modules.  0, or -1
 * once the error is said. */
static int
validate (void)
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
        0 ||
      take_passed_fds () < 0) {
    fprintf (stderr, "luks-nbd: %s\n", error_message ());
    return -1;
  }
  if (opt.n_sockets == 0 && opt.n_tcp == 0 && state.n_passed == 0 && !opt.run) {
    fprintf (stderr, "luks-nbd: nothing to listen on: give --socket or "
                     "--listen (or --run), or start under socket "
                     "activation\n");
    return -1;
  }
  return 0;
}

/* --user/--group: drop root once every socket and file is open.  Changing
 * credentials resets the dumpable flag, so it is cleared again. */
static int
drop_privileges (const char *user, const char *group)
{
  uid_t uid = getuid ();
  gid_t gid = getgid ();

  if (user) {
    struct passwd *pw = getpwnam (user);
    if (!pw)
      return error_set (-ENOENT, "--user %s: no such user", user);
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  if (group) {
    struct group *gr = getgrnam (group);
    if (!gr)
      return error_set (-ENOENT, "--group %s: no such group", group);
    gid = gr->gr_gid;
  }
  if (setgroups (1, &gid) < 0 || setgid (gid) < 0 || (user && setuid (uid) < 0))
    return error_set (-errno, "dropping privileges: %s", strerror (errno));
  if (user && (getuid () != uid || geteuid () != uid))
    return error_set (-EPERM, "dropping privileges: still uid %u",
                      (unsigned) geteuid ());
  prctl (PR_SET_DUMPABLE, 0, 0, 0, 0);
  log_info ("running as uid %u gid %u", (unsigned) getuid (),
            (unsigned) getgid ());
  return 0;
}

static int
fail (const char *what)
{
  log_error ("%s", what);
  exports_close_all ();
  return 1;
}

/* With cache=none every request waits for the device: more workers
 * keep more of them in flight.  Set before the pool starts. */
static void
size_thread_pool (void)
{
  char n[16];

  for (size_t i = 0; !opt.threads_given && i < exports_count (); i++)
    if (exports_get (i)->spec.direct_io && opt.threads < DIRECT_IO_THREADS)
      opt.threads = DIRECT_IO_THREADS;
  if (opt.threads < 1)
    opt.threads = 1;
  snprintf (n, sizeof n, "%ld", opt.threads);
  setenv ("UV_THREADPOOL_SIZE", n, 1);
  transmission_set_threads ((unsigned) opt.threads);
}

/* Every spec into the registry, parsed and checked but not unlocked: a
 * spec error stops the daemon before anything listens or unlocks. */
static int
open_exports (void)
{
  for (size_t i = 0; i < n_specs; i++) {
    struct export *e;
    if (export_parse (specs[i].text, specs[i].origin, opt.readonly, false, &e) <
        0)
      return -1;
    if (exports_add (e) < 0) {
      export_free (e);
      return -1;
    }
    if (i == 0 && exports_set_default (e->name) < 0)
      return -1;
  }
  size_thread_pool ();
  return 0;
}

/* Every listener: the passed sockets, else --socket and --listen (or
 * --run's private socket). */
static int
start_listening (void)
{
  for (int i = 0; i < state.n_passed; i++)
    if (listen_fd (server_loop, state.passed[i]) < 0)
      goto fail;
  if (state.n_passed && (opt.n_sockets || opt.n_tcp))
    log_warning ("--socket and --listen are ignored: serving the %d "
                 "socket(s) systemd passed",
                 state.n_passed);
  if (state.n_passed)
    opt.n_sockets = opt.n_tcp = 0;
  for (size_t i = 0; i < opt.n_sockets; i++)
    if (listen_unix (server_loop, opt.sockets[i], opt.socket_mode) < 0)
      goto fail;
  for (size_t i = 0; i < opt.n_tcp; i++)
    if (listen_tcp (server_loop, opt.tcp[i]) < 0)
      goto fail;
  if (opt.run && !opt.n_sockets && !opt.n_tcp && !state.n_passed) {
    if (run_private_socket (server_loop, opt.user, opt.group, &opt.sockets[0]) <
        0)
      goto fail;
    opt.n_sockets = 1;
  }
  state.listening = true;
  return 0;
fail:
  listen_close_all ();
  return -1;
}

/* A start-up step failed once the loop runs: the daemon stops. */
static void
stop_failed (void)
{
  log_error ("%s", error_message ());
  state.exit_status = 1;
  stop_serving ();
}

/* Every configured export is served, or one failed (the daemon stops,
 * as it did when it unlocked before listening). */
static void
on_started (size_t failed)
{
  char status[128];

  if (state.stopping)
    return;
  if (failed) {
    state.exit_status = 1;
    stop_serving ();
    return;
  }
  if (!state.listening && start_listening () < 0) {
    stop_failed ();
    return;
  }
  if ((opt.user || opt.group) && drop_privileges (opt.user, opt.group) < 0) {
    stop_failed ();
    return;
  }
  log_info ("ready: %zu export(s), %ld worker threads", exports_count (),
            opt.threads);
  snprintf (status, sizeof status, "READY=1\nSTATUS=serving %zu export(s)",
            exports_count ());
  if (systemd_notify (status) < 0)
    log_warning ("%s", error_message ());
  systemd_start_watchdog (server_loop);
  if (opt.run &&
      run_start (server_loop, opt.run, opt.n_sockets ? opt.sockets[0] : NULL,
                 opt.n_tcp ? opt.tcp[0] : NULL,
                 state.n_passed ? state.passed[0] : -1, on_run_exit) < 0) {
    log_error ("%s", error_message ());
    state.run_status = 1;
    stop_serving ();
  }
}

/* The loop, the signals, the control socket, the listeners (at once,
 * unless --user/--group), and the unlocks, which on_started follows. */
static int
start_serving (void)
{
  server_loop = uv_default_loop ();
  uv_signal_init (server_loop, &state.sigterm);
  uv_signal_init (server_loop, &state.sigint);
  uv_signal_start (&state.sigterm, on_signal, SIGTERM);
  uv_signal_start (&state.sigint, on_signal, SIGINT);
  if (opt.control && control_listen (server_loop, opt.control) < 0)
    return -1;
  /* Serving while the other exports unlock needs no privilege beyond
   * what the daemon keeps; with --user/--group the unlocks (and the
   * header watches, which need read access once) run as root, so
   * nothing is served before the drop. */
  if (!opt.user && !opt.group && start_listening () < 0) {
    control_close ();
    return -1;
  }
  if (startup_unlock (server_loop, on_started) < 0) {
    listen_close_all ();
    control_close ();
    return -1;
  }
  return 0;
}

/* Once the loop has ended: close what is left; the exit status. */
static int
shut_down (void)
{
  reply_queue_close ();
  uv_run (server_loop, UV_RUN_DEFAULT); /* runs its close callbacks */
  run_remove_private_socket ();
  startup_free ();
  free (state.passed);

  /* The signal handles stay open until exit, so the loop is not closed:
   * closing them would restore the default action, and a late SIGTERM
   * (systemd-socket-activate's or timeout's process-group kill arrives
   * twice) would kill the daemon in the middle of closing its exports. */
  exports_close_all ();
  tls_global_free ();
  bufpool_drain ();
  log_info ("stopped");
  if (state.exit_status)
    return state.exit_status;
  return opt.run ? state.run_status : 0;
}

int
main (int argc, char **argv)
{
  /* At most argc of each; on the stack, so early exits leak nothing. */
  const char *sockets[argc], *tcp[argc];
  int r;

  if (argc > 1 && strcmp (argv[1], "ctl") == 0)
    return control_client (argc - 1, argv + 1);
  opt.sockets = sockets;
  opt.tcp = tcp;
  r = parse_command_line (argc, argv);
  if (r >= 0)
    return r;
  if (validate () < 0)
    return 1;
  /* Keys must not reach core dumps; writes to a gone client must not
   * kill the daemon. */
  prctl (PR_SET_DUMPABLE, 0, 0, 0, 0);
  signal (SIGPIPE, SIG_IGN);
  if (open_exports () < 0 || start_serving () < 0)
    return fail (error_message ());
  uv_run (server_loop, UV_RUN_DEFAULT);
  return shut_down ();
}
