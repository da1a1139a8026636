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

static bool stopping;
static uv_signal_t sigterm, sigint;
static int run_status;
static int exit_status; /* 1 if an export failed to open at start-up */

/* What to listen on, and what to do once every export is open. */
static struct plan {
  const char **sockets, **tcp;
  size_t n_sockets, n_tcp;
  int *passed; /* listening sockets systemd passed */
  int n_passed;
  unsigned socket_mode;
  const char *run, *user, *group;
  long threads;
  bool listening;
} plan;

bool
server_stopping (void)
{
  return stopping;
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
  if (stopping)
    return;
  stopping = true;
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
  uv_unref ((uv_handle_t *) &sigterm);
  uv_unref ((uv_handle_t *) &sigint);
}

static void
on_signal (uv_signal_t *s, int signum)
{
  if (stopping) {
    log_info ("signal %d: already stopping", signum);
    return;
  }
  log_info ("signal %d: stopping; finishing requests in flight", signum);
  stop_serving ();
}

static void
on_run_exit (int status)
{
  run_status = status;
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

/* The fds systemd passed: listening sockets, and (--fd-store) the keys
 * its fd store kept for us (keystore.c), told apart by LISTEN_FDNAMES. */
static int
split_passed_fds (int n, const char *names)
{
  const char *p = names;

  plan.passed = calloc ((size_t) (n ? n : 1), sizeof *plan.passed);
  if (!plan.passed)
    return error_set (-ENOMEM, "out of memory");
  for (int i = 0; i < n; i++) {
    size_t len = p ? strcspn (p, ":") : 0;
    char name[256];
    snprintf (name, sizeof name, "%.*s", (int) (len < 255 ? len : 255),
              p ? p : "");
    if (keystore_is_key_fd (name))
      keystore_adopt (name, 3 + i);
    else
      plan.passed[plan.n_passed++] = 3 + i;
    if (p)
      p = p[len] ? p + len + 1 : NULL;
  }
  return 0;
}

/* Every listener: the passed sockets, else --socket and --listen (or
 * --run's private socket). */
static int
start_listening (void)
{
  for (int i = 0; i < plan.n_passed; i++)
    if (listen_fd (server_loop, plan.passed[i]) < 0)
      goto fail;
  if (plan.n_passed && (plan.n_sockets || plan.n_tcp))
    log_warning ("--socket and --listen are ignored: serving the %d "
                 "socket(s) systemd passed",
                 plan.n_passed);
  if (plan.n_passed)
    plan.n_sockets = plan.n_tcp = 0;
  for (size_t i = 0; i < plan.n_sockets; i++)
    if (listen_unix (server_loop, plan.sockets[i], plan.socket_mode) < 0)
      goto fail;
  for (size_t i = 0; i < plan.n_tcp; i++)
    if (listen_tcp (server_loop, plan.tcp[i]) < 0)
      goto fail;
  if (plan.run && !plan.n_sockets && !plan.n_tcp && !plan.n_passed) {
    if (run_private_socket (server_loop, plan.user, plan.group,
                            &plan.sockets[0]) < 0)
      goto fail;
    plan.n_sockets = 1;
  }
  plan.listening = true;
  return 0;
fail:
  listen_close_all ();
  return -1;
}

/* Every configured export is served, or one failed (the daemon stops,
 * as it did when it unlocked before listening). */
static void
on_started (size_t failed)
{
  if (stopping)
    return;
  if (failed) {
    exit_status = 1;
    stop_serving ();
    return;
  }
  if (!plan.listening && start_listening () < 0) {
    log_error ("%s", error_message ());
    exit_status = 1;
    stop_serving ();
    return;
  }
  if ((plan.user || plan.group) &&
      drop_privileges (plan.user, plan.group) < 0) {
    log_error ("%s", error_message ());
    exit_status = 1;
    stop_serving ();
    return;
  }
  log_info ("ready: %zu export(s), %ld worker threads", exports_count (),
            plan.threads);
  {
    char status[128];
    snprintf (status, sizeof status, "READY=1\nSTATUS=serving %zu export(s)",
              exports_count ());
    if (systemd_notify (status) < 0)
      log_warning ("%s", error_message ());
    systemd_start_watchdog (server_loop);
  }
  if (plan.run &&
      run_start (server_loop, plan.run, plan.n_sockets ? plan.sockets[0] : NULL,
                 plan.n_tcp ? plan.tcp[0] : NULL,
                 plan.n_passed ? plan.passed[0] : -1, on_run_exit) < 0) {
    log_error ("%s", error_message ());
    run_status = 1;
    stop_serving ();
  }
}

int
main (int argc, char **argv)
{
  /* At most argc of each; on the stack, so early exits leak nothing. */
  const char *sockets[argc], *tcp[argc];
  size_t n_sockets = 0, n_tcp = 0;
  int passed_fds;
  unsigned socket_mode = 0600;
  long threads = sysconf (_SC_NPROCESSORS_ONLN);
  bool threads_given = false;
  bool readonly = false;
  const char *run = NULL, *control = NULL, *user = NULL, *group = NULL;
  const char *tls_certs = NULL, *tls_psk = NULL, *empty_config = NULL;
  enum tls_mode tls = TLS_OFF;
  bool tls_verify_peer = false;
  unsigned max_connections = 100, handshake_timeout = 10;
  uint64_t inflight_total = MAX_INFLIGHT_TOTAL_BYTES;
  int verbose = 0, c;
  char *end;

  if (argc > 1 && strcmp (argv[1], "ctl") == 0)
    return control_client (argc - 1, argv + 1);
  while ((c = getopt_long (argc, argv, "v", long_options, NULL)) != -1) {
    switch (c) {
    case OPT_SOCKET: sockets[n_sockets++] = optarg; break;
    case OPT_LISTEN: {
      char host[256];
      unsigned port;
      /* Refused before any export is unlocked. */
      if (listen_parse (optarg, host, sizeof host, &port) < 0) {
        fprintf (stderr, "luks-nbd: %s\n", error_message ());
        return 1;
      }
      tcp[n_tcp++] = optarg;
      break;
    }
    case OPT_EXPORT: {
      static unsigned n_export_options;
      char origin[32];
      snprintf (origin, sizeof origin, "--export #%u", ++n_export_options);
      if (add_spec (optarg, origin) < 0)
        return 1;
      break;
    }
    case OPT_CONFIG: {
      size_t n = 0;
      if (read_config (optarg, &n) < 0) {
        fprintf (stderr, "luks-nbd: %s\n", error_message ());
        return 1;
      }
      if (n == 0)
        empty_config = optarg;
      break;
    }
    case OPT_READONLY: readonly = true; break;
    case OPT_RUN: run = optarg; break;
    case OPT_CONTROL: control = optarg; break;
    case OPT_USER: user = optarg; break;
    case OPT_GROUP: group = optarg; break;
    case OPT_TLS:
      if (strcmp (optarg, "off") == 0)
        tls = TLS_OFF;
      else if (strcmp (optarg, "on") == 0)
        tls = TLS_ON;
      else if (strcmp (optarg, "require") == 0)
        tls = TLS_REQUIRE;
      else {
        fprintf (stderr, "luks-nbd: --tls %s: expected off, on or require\n",
                 optarg);
        return 1;
      }
      break;
    case OPT_TLS_CERTS: tls_certs = optarg; break;
    case OPT_TLS_PSK: tls_psk = optarg; break;
    case OPT_TLS_VERIFY_PEER: tls_verify_peer = true; break;
    case OPT_FD_STORE: keystore_enable (); break;
    case OPT_MAX_CONNECTIONS:
    case OPT_HANDSHAKE_TIMEOUT: {
      long v = strtol (optarg, &end, 10);
      bool maxc = c == OPT_MAX_CONNECTIONS;
      if (*end || end == optarg || v < (maxc ? 1 : 0) || v > 100000) {
        fprintf (stderr, "luks-nbd: --%s %s: expected %d..100000\n",
                 maxc ? "max-connections" : "handshake-timeout", optarg,
                 maxc ? 1 : 0);
        return 1;
      }
      if (maxc)
        max_connections = (unsigned) v;
      else
        handshake_timeout = (unsigned) v;
      break;
    }
    case OPT_MAX_INFLIGHT_TOTAL: {
      long v = strtol (optarg, &end, 10);
      if (*end || end == optarg || v < 1 || v > 1048576) {
        fprintf (stderr,
                 "luks-nbd: --max-inflight-total %s: expected 1..1048576 "
                 "(MiB)\n",
                 optarg);
        return 1;
      }
      inflight_total = (uint64_t) v * 1024 * 1024;
      break;
    }
    case 'v': verbose++; break;
    case OPT_SOCKET_MODE:
      socket_mode = (unsigned) strtoul (optarg, &end, 8);
      if (*end || end == optarg || socket_mode > 0777) {
        fprintf (stderr, "luks-nbd: --socket-mode %s: expected an octal mode\n",
                 optarg);
        return 1;
      }
      break;
    case OPT_THREADS:
      threads = strtol (optarg, &end, 10);
      threads_given = true;
      if (*end || end == optarg || threads < 1 || threads > MAX_THREADS) {
        fprintf (stderr, "luks-nbd: --threads %s: expected 1..%d\n", optarg,
                 MAX_THREADS);
        return 1;
      }
      break;
    case OPT_HELP: usage (stdout); return 0;
    case OPT_VERSION:
      printf ("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
      return 0;
    default: usage (stderr); return 1;
    }
  }
  if (optind < argc) {
    fprintf (stderr, "luks-nbd: unexpected argument '%s'\n", argv[optind]);
    usage (stderr);
    return 1;
  }
  log_set_verbose (verbose);
  node_set_log_hook (log_warning); /* e.g. a remote payload reconnected */
  conn_set_limits (max_connections, handshake_timeout);
  conn_set_inflight_total (inflight_total);
  if (n_specs == 0 && !control && empty_config) {
    fprintf (stderr,
             "luks-nbd: --config %s holds no export spec (only blank lines "
             "and comments): write one --export SPEC per line, or give "
             "--control to add exports later\n",
             empty_config);
    return 1;
  }
  if (n_specs == 0 && !control) {
    fprintf (stderr, "luks-nbd: no --export given\n");
    usage (stderr);
    return 1;
  }
  /* Unknown names fail before anything is opened or listens. */
  if (user && !getpwnam (user)) {
    fprintf (stderr, "luks-nbd: --user %s: no such user\n", user);
    return 1;
  }
  if (group && !getgrnam (group)) {
    fprintf (stderr, "luks-nbd: --group %s: no such group\n", group);
    return 1;
  }
  if (tls_configure (tls, tls_certs, tls_psk, tls_verify_peer) < 0) {
    fprintf (stderr, "luks-nbd: %s\n", error_message ());
    return 1;
  }
  {
    char *names = NULL;
    passed_fds = systemd_listen_fds (&names);
    if (passed_fds < 0) {
      fprintf (stderr, "luks-nbd: %s\n", error_message ());
      return 1;
    }
    if (split_passed_fds (passed_fds, names) < 0) {
      free (names);
      fprintf (stderr, "luks-nbd: %s\n", error_message ());
      return 1;
    }
    free (names);
  }
  if (n_sockets == 0 && n_tcp == 0 && plan.n_passed == 0 && !run) {
    fprintf (stderr, "luks-nbd: nothing to listen on: give --socket or "
                     "--listen (or --run), or start under socket "
                     "activation\n");
    return 1;
  }

  /* Keys must not reach core dumps; writes to a gone client must not
   * kill the daemon. */
  prctl (PR_SET_DUMPABLE, 0, 0, 0, 0);
  signal (SIGPIPE, SIG_IGN);

  /* Parse everything first: a spec error stops the daemon before
   * anything listens or unlocks. */
  for (size_t i = 0; i < n_specs; i++) {
    struct export *e;
    if (export_parse (specs[i].text, specs[i].origin, readonly, false, &e) < 0)
      return fail (error_message ());
    if (exports_add (e) < 0) {
      export_free (e);
      return fail (error_message ());
    }
    if (i == 0 && exports_set_default (e->name) < 0)
      return fail (error_message ());
  }
  /* With cache=none every request waits for the device: more workers
   * keep more of them in flight. */
  for (size_t i = 0; !threads_given && i < exports_count (); i++)
    if (exports_get (i)->spec.direct_io && threads < DIRECT_IO_THREADS)
      threads = DIRECT_IO_THREADS;
  if (threads < 1)
    threads = 1;
  {
    char n[16];
    snprintf (n, sizeof n, "%ld", threads);
    setenv ("UV_THREADPOOL_SIZE", n, 1); /* before the pool starts */
    transmission_set_threads ((unsigned) threads);
  }

  plan.sockets = sockets;
  plan.tcp = tcp;
  plan.n_sockets = n_sockets;
  plan.n_tcp = n_tcp;
  plan.socket_mode = socket_mode;
  plan.run = run;
  plan.user = user;
  plan.group = group;
  plan.threads = threads;
  server_loop = uv_default_loop ();
  uv_signal_init (server_loop, &sigterm);
  uv_signal_init (server_loop, &sigint);
  uv_signal_start (&sigterm, on_signal, SIGTERM);
  uv_signal_start (&sigint, on_signal, SIGINT);
  if (control && control_listen (server_loop, control) < 0)
    return fail (error_message ());
  /* Serving while the other exports unlock needs no privilege beyond
   * what the daemon keeps; with --user/--group the unlocks (and the
   * header watches, which need read access once) run as root, so
   * nothing is served before the drop. */
  if (!user && !group && start_listening () < 0) {
    control_close ();
    return fail (error_message ());
  }
  if (startup_unlock (server_loop, on_started) < 0) {
    listen_close_all ();
    control_close ();
    return fail (error_message ());
  }

  uv_run (server_loop, UV_RUN_DEFAULT);
  reply_queue_close ();
  uv_run (server_loop, UV_RUN_DEFAULT); /* runs its close callbacks */
  run_remove_private_socket ();
  startup_free ();
  free (plan.passed);

  /* The signal handles stay open until exit, so the loop is not closed:
   * closing them would restore the default action, and a late SIGTERM
   * (systemd-socket-activate's or timeout's process-group kill arrives
   * twice) would kill the daemon in the middle of closing its exports. */
  exports_close_all ();
  tls_global_free ();
  bufpool_drain ();
  log_info ("stopped");
  return exit_status ? exit_status : run ? run_status : 0;
}
