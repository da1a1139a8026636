/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: --run CMD, as nbdkit --run: the command's $uri and
 * $unixsocket, its environment, and the private socket made for it when
 * nothing else is to be listened on. */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/byteorder.h"
#include "common/error_msg.h"
#include "server/internal.h"

static uv_process_t run_process;
static void (*run_exit_cb) (int status);
static char private_dir[64], private_socket[80];

static void
on_process_exit (uv_process_t *p, int64_t status, int signum)
{
  int st = signum ? 128 + signum : (int) status;

  log_info ("--run command exited with status %d; stopping", st);
  uv_close ((uv_handle_t *) p, NULL);
  run_exit_cb (st);
}

/* "nbd" or, under --tls=require, "nbds": a client that does not start TLS
 * is refused there, and libnbd starts it only for nbds URIs. */
static const char *
scheme (void)
{
  return tls_mode () == TLS_REQUIRE ? "nbds" : "nbd";
}

/* A unix socket's URI, percent-encoding what a query value may not hold. */
static char *
unix_uri (const char *path)
{
  size_t n;
  char *out = malloc (32 + 3 * strlen (path));

  if (!out)
    return NULL;
  n = (size_t) sprintf (out, "%s+unix:///?socket=", scheme ());
  for (const unsigned char *p = (const unsigned char *) path; *p; p++)
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
        (*p >= '0' && *p <= '9') || strchr ("-._~/", *p))
      out[n++] = (char) *p;
    else
      n += (size_t) sprintf (out + n, "%%%02X", *p);
  out[n] = '\0';
  return out;
}

/* A TCP URI: an IPv6 literal in brackets, the port always written out.
 * No host (every address of both families) is localhost; a wildcard
 * address is the loopback address of its family. */
static char *
tcp_uri (const char *host, unsigned port)
{
  char *uri;

  if (!*host)
    host = "localhost";
  else if (strcmp (host, "0.0.0.0") == 0)
    host = "127.0.0.1";
  else if (strcmp (host, "::") == 0)
    host = "::1";
  bool v6 = strchr (host, ':') != NULL;
  if (asprintf (&uri, "%s://%s%s%s:%u/", scheme (), v6 ? "[" : "", host,
                v6 ? "]" : "", port) < 0)
    return NULL;
  return uri;
}

/* $uri (and $unixsocket) for a socket systemd passed us: its own address,
 * with a wildcard TCP address replaced by loopback. */
static int
passed_socket_uri (int fd, char **uri, char **sock)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char host[INET6_ADDRSTRLEN];

  if (getsockname (fd, (struct sockaddr *) &ss, &len) < 0)
    return error_set (-errno, "--run: passed fd %d: %s", fd, strerror (errno));
  if (ss.ss_family == AF_UNIX) {
    struct sockaddr_un *sa = (struct sockaddr_un *) &ss;
    size_t pl = len - offsetof (struct sockaddr_un, sun_path);
    if (len <= offsetof (struct sockaddr_un, sun_path) || !sa->sun_path[0] ||
        pl >= sizeof sa->sun_path)
      return error_set (-EINVAL,
                        "--run: the socket systemd passed is an abstract or "
                        "unnamed unix socket, which no NBD URI can name");
    sa->sun_path[pl] = '\0';
    *uri = unix_uri (sa->sun_path);
    *sock = strdup (sa->sun_path);
  } else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    bool v6 = ss.ss_family == AF_INET6;
    struct sockaddr_in *in = (struct sockaddr_in *) &ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
    inet_ntop (ss.ss_family, v6 ? (void *) &in6->sin6_addr : &in->sin_addr,
               host, sizeof host);
    *uri = tcp_uri (
      host, load_be16 ((uint8_t *) (v6 ? &in6->sin6_port : &in->sin_port)));
  } else
    return error_set (-EAFNOSUPPORT,
                      "--run: the socket systemd passed is neither a unix nor "
                      "a TCP socket");
  if (!*uri || (ss.ss_family == AF_UNIX && !*sock))
    return error_set (-ENOMEM, "out of memory");
  return 0;
}

/* The --run command's environment: ours without what systemd gave the
 * daemon alone: with NOTIFY_SOCKET the command could say READY=1 or
 * STOPPING=1 for us (systemd takes notifications from any process of the
 * service under NotifyAccess=all), and the watchdog is ours to feed.
 * (LISTEN_* are gone already: systemd_listen_fds.)  The array is freed by
 * the caller, the strings are environ's. */
static char **
run_environment (void)
{
  static const char *const drop[] = { "NOTIFY_SOCKET=", "WATCHDOG_USEC=",
                                      "WATCHDOG_PID=" };
  extern char **environ;
  size_t n = 0, k = 0;

  while (environ[n])
    n++;
  char **env = calloc (n + 1, sizeof *env);
  for (size_t i = 0; env && i < n; i++) {
    bool keep = true;
    for (size_t d = 0; d < sizeof drop / sizeof drop[0]; d++)
      keep = keep && strncmp (environ[i], drop[d], strlen (drop[d])) != 0;
    if (keep)
      env[k++] = environ[i];
  }
  return env;
}

static int
run_uri (const char *socket_path, const char *tcp, int passed_fd, char **uri,
         char **sock)
{
  char host[256];
  unsigned port;

  if (socket_path) {
    *uri = unix_uri (socket_path);
    *sock = strdup (socket_path);
    return *uri && *sock ? 0 : error_set (-ENOMEM, "out of memory");
  }
  if (tcp) {
    if (listen_parse (tcp, host, sizeof host, &port) < 0)
      return -EINVAL; /* listen_tcp took it already */
    *uri = tcp_uri (host, port);
    return *uri ? 0 : error_set (-ENOMEM, "out of memory");
  }
  if (passed_fd >= 0)
    return passed_socket_uri (passed_fd, uri, sock);
  return error_set (-EINVAL, "--run: no socket to give the command");
}

int
run_start (uv_loop_t *loop, const char *cmd, const char *socket_path,
           const char *tcp, int passed_fd, void (*exit_cb) (int status))
{
  char *uri = NULL, *sock = NULL;
  char *args[] = { "/bin/sh", "-c", (char *) cmd, NULL };
  uv_process_options_t o = { 0 };
  int r = run_uri (socket_path, tcp, passed_fd, &uri, &sock);

  if (r < 0) {
    free (uri);
    free (sock);
    return r;
  }
  setenv ("uri", uri, 1);
  if (sock)
    setenv ("unixsocket", sock, 1);
  free (uri);
  free (sock);
  run_exit_cb = exit_cb;
  o.file = args[0];
  o.args = args;
  o.exit_cb = on_process_exit;
  o.stdio_count = 3;
  uv_stdio_container_t stdio[3] = {
    { .flags = UV_INHERIT_FD, .data.fd = 0 },
    { .flags = UV_INHERIT_FD, .data.fd = 1 },
    { .flags = UV_INHERIT_FD, .data.fd = 2 },
  };
  o.stdio = stdio;
  o.env = run_environment ();
  if (!o.env)
    return error_set (-ENOMEM, "out of memory");
  r = uv_spawn (loop, &run_process, &o);
  free (o.env);
  if (r < 0)
    return error_set (r, "--run: %s", uv_strerror (r));
  return 0;
}

/* As nbdkit --run does without -U or -p: nobody else can reach the
 * socket, and nothing is left behind. */
int
run_private_socket (uv_loop_t *loop, const char *user, const char *group,
                    const char **path)
{
  const char *tmp = getenv ("TMPDIR");
  struct passwd *pw = user ? getpwnam (user) : NULL;
  struct group *gr = group ? getgrnam (group) : NULL;
  uid_t uid = pw ? pw->pw_uid : (uid_t) -1;
  gid_t gid = gr ? gr->gr_gid : pw ? pw->pw_gid : (gid_t) -1;
  int r;

  if (!tmp || *tmp != '/' || strlen (tmp) > 40)
    tmp = "/tmp";
  snprintf (private_dir, sizeof private_dir, "%s/luks-nbdXXXXXX", tmp);
  if (!mkdtemp (private_dir)) {
    r = error_set (-errno, "--run: making a private socket directory in %s: %s",
                   tmp, strerror (errno));
    private_dir[0] = '\0';
    return r;
  }
  snprintf (private_socket, sizeof private_socket, "%s/socket", private_dir);
  r = listen_unix (loop, private_socket, 0600);
  /* --user runs the command: it must reach the socket, and the daemon
   * (as --user) removes both at exit. */
  if (r == 0 && (pw || gr) &&
      (chown (private_dir, uid, gid) < 0 ||
       chown (private_socket, uid, gid) < 0))
    r =
      error_set (-errno, "--run: chown %s: %s", private_dir, strerror (errno));
  if (r < 0) {
    run_remove_private_socket ();
    return r;
  }
  *path = private_socket;
  return 0;
}

void
run_remove_private_socket (void)
{
  if (!private_dir[0])
    return;
  unlink (private_socket); /* if the listener did not */
  if (rmdir (private_dir) < 0)
    log_warning ("--run: removing %s: %s", private_dir, strerror (errno));
  private_dir[0] = '\0';
}
