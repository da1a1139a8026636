/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: main's steps: the command line (options.c), start-up
 * (listen at once, serve each export as its unlock finishes: startup.c;
 * with --user/--group, unlock every export before anything listens, as
 * root), the loop, and orderly shutdown on SIGTERM/SIGINT. */
#include <config.h>

#include <errno.h>
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
#include "server/options.h"

#define DIRECT_IO_THREADS 16

uv_loop_t *server_loop;

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

/* What the options ask for is possible (options.c), with the fds systemd
 * passed taken in between, checked before anything is opened or
 * listens.  0, or -1 once the error is said. */
static int
validate (void)
{
  if (options_validate () < 0)
    return -1;
  if (take_passed_fds () < 0) {
    fprintf (stderr, "luks-nbd: %s\n", error_message ());
    return -1;
  }
  return options_validate_listeners (state.n_passed);
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
