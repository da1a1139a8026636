/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: listening sockets: unix (replacing a stale socket file,
 * refusing a live one) and TCP. */
#include <config.h>

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/internal.h"

#define NBD_DEFAULT_PORT 10809
#define LISTEN_BACKLOG 128
#define MAX_LISTENERS 16

static uv_stream_t *listeners[MAX_LISTENERS];
static size_t n_listeners;

static void
on_connection (uv_stream_t *server, int status)
{
  if (status < 0) {
    log_error ("accept: %s", uv_strerror (status));
    return;
  }
  conn_accept (server);
}

/* True if something accepts connections on the unix socket at path. */
static bool
unix_socket_live (const char *path)
{
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool live;

  if (fd < 0)
    return false;
  snprintf (sa.sun_path, sizeof sa.sun_path, "%s", path);
  live = connect (fd, (struct sockaddr *) &sa, sizeof sa) == 0;
  close (fd);
  return live;
}

static int
add_listener (uv_stream_t *s)
{
  if (n_listeners == MAX_LISTENERS)
    return error_set (-EMFILE, "more than %d listening sockets", MAX_LISTENERS);
  listeners[n_listeners++] = s;
  return 0;
}

/* libuv reports a missing directory as EACCES ("permission denied"):
 * name the real cause first. */
static int
check_directory (const char *what, const char *path)
{
  const char *slash = strrchr (path, '/');
  char dir[sizeof ((struct sockaddr_un *) 0)->sun_path];
  struct stat st;

  if (!slash)
    return 0; /* the working directory */
  snprintf (dir, sizeof dir, "%.*s", slash == path ? 1 : (int) (slash - path),
            path);
  if (stat (dir, &st) < 0)
    return error_set (-errno, "%s %s: directory %s: %s", what, path, dir,
                      errno == ENOENT ? "does not exist" : strerror (errno));
  if (!S_ISDIR (st.st_mode))
    return error_set (-ENOTDIR, "%s %s: %s is not a directory", what, path,
                      dir);
  return 0;
}

/* A unix listening socket; `what` names the option in messages.  NBD
 * sockets join the listener list; the control socket is returned. */
static int
bind_unix (uv_loop_t *loop, const char *what, const char *path, unsigned mode,
           uv_connection_cb cb, uv_pipe_t **out)
{
  uv_pipe_t *p;
  struct stat st;
  int r;

  if (strlen (path) >= sizeof ((struct sockaddr_un *) 0)->sun_path)
    return error_set (-ENAMETOOLONG, "%s %s: path too long", what, path);
  r = check_directory (what, path);
  if (r < 0)
    return r;
  if (lstat (path, &st) == 0) {
    if (!S_ISSOCK (st.st_mode))
      return error_set (-EEXIST, "%s %s: exists and is not a socket", what,
                        path);
    if (unix_socket_live (path))
      return error_set (-EADDRINUSE, "%s %s: another server is listening on it",
                        what, path);
    unlink (path); /* stale: left by a server that died */
  }
  p = calloc (1, sizeof *p);
  if (!p)
    return error_set (-ENOMEM, "out of memory");
  uv_pipe_init (loop, p, 0);
  /* Create it private, then widen to the requested mode. */
  mode_t old = umask (0177);
  r = uv_pipe_bind (p, path);
  umask (old);
  if (r == 0 && chmod (path, mode) < 0)
    r = -errno;
  if (r == 0)
    r = uv_listen ((uv_stream_t *) p, LISTEN_BACKLOG, cb);
  if (r == 0 && !out)
    r = add_listener ((uv_stream_t *) p);
  if (r < 0) {
    uv_close ((uv_handle_t *) p, (uv_close_cb) free);
    return error_set (r, "%s %s: %s", what, path, uv_strerror (r));
  }
  if (out)
    *out = p;
  log_info ("listening on unix socket %s", path);
  return 0;
}

int
listen_unix (uv_loop_t *loop, const char *path, unsigned mode)
{
  return bind_unix (loop, "--socket", path, mode, on_connection, NULL);
}

int
listen_control (uv_loop_t *loop, const char *path, uv_connection_cb cb,
                uv_pipe_t **out)
{
  return bind_unix (loop, "--control", path, 0600, cb, out);
}

/* A port: digits only, 1..65535 (getaddrinfo would take 99999 and
 * listen on 99999 mod 65536). */
static int
parse_port (const char *arg, const char *s, unsigned *port)
{
  size_t len = strlen (s);
  unsigned long v = len && len <= 5 && strspn (s, "0123456789") == len
                      ? strtoul (s, NULL, 10)
                      : 0;

  if (len == 0)
    v = NBD_DEFAULT_PORT;
  if (v < 1 || v > 65535)
    return error_set (-EINVAL, "--listen %s: port '%s': expected 1..65535", arg,
                      s);
  *port = (unsigned) v;
  return 0;
}

int
listen_parse (const char *arg, char *host, size_t hostlen, unsigned *port)
{
  const char *colon = strrchr (arg, ':'), *hs = arg, *he;

  /* A bare number is a port, as nbdkit -p and qemu-nbd -p take it (as a
   * host it would be the IPv4 address 0.0.42.57). */
  if (strspn (arg, "0123456789") == strlen (arg)) {
    host[0] = '\0';
    return parse_port (arg, arg, port);
  }
  if (arg[0] == '[') { /* [IPv6]:PORT or [IPv6] */
    const char *close = strchr (arg, ']');
    if (!close || (close[1] != '\0' && close[1] != ':'))
      return error_set (-EINVAL,
                        "--listen %s: expected [IPV6-ADDRESS]:PORT, e.g. "
                        "[::1]:10809",
                        arg);
    hs = arg + 1;
    he = close;
    colon = close[1] == ':' ? close + 1 : NULL;
  } else if (colon && strchr (arg, ':') != colon)
    return error_set (-EINVAL,
                      "--listen %s: an IPv6 address goes in brackets: "
                      "[ADDRESS]:PORT, e.g. [::1]:10809",
                      arg);
  else
    he = colon ? colon : arg + strlen (arg);
  if ((size_t) (he - hs) >= hostlen)
    return error_set (-EINVAL, "--listen %s: host too long", arg);
  memcpy (host, hs, (size_t) (he - hs));
  host[he - hs] = '\0';
  return parse_port (arg, colon ? colon + 1 : "", port);
}

int
listen_tcp (uv_loop_t *loop, const char *hostport)
{
  char host[256], port[8];
  unsigned portnum;
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
  struct addrinfo *ai, *a;
  int r, bound = 0;

  r = listen_parse (hostport, host, sizeof host, &portnum);
  if (r < 0)
    return r;
  snprintf (port, sizeof port, "%u", portnum);
  r = getaddrinfo (host[0] ? host : NULL, port, &hints, &ai);
  if (r != 0)
    return error_set (-EINVAL, "--listen %s: %s", hostport, gai_strerror (r));
  for (a = ai; a; a = a->ai_next) {
    uv_tcp_t *t = calloc (1, sizeof *t);
    if (!t) {
      freeaddrinfo (ai);
      return error_set (-ENOMEM, "out of memory");
    }
    uv_tcp_init (loop, t);
    r = uv_tcp_bind (t, a->ai_addr,
                     a->ai_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
    if (r == 0)
      r = uv_listen ((uv_stream_t *) t, LISTEN_BACKLOG, on_connection);
    if (r == 0)
      r = add_listener ((uv_stream_t *) t);
    if (r < 0) {
      uv_close ((uv_handle_t *) t, (uv_close_cb) free);
      freeaddrinfo (ai);
      return error_set (r, "--listen %s: %s", hostport, uv_strerror (r));
    }
    bound++;
  }
  freeaddrinfo (ai);
  if (!bound)
    return error_set (-EADDRNOTAVAIL, "--listen %s: no address", hostport);
  log_info ("listening on TCP %s port %s", host[0] ? host : "(every address)",
            port);
  return 0;
}

int
listen_fd (uv_loop_t *loop, int fd)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  uv_stream_t *s;
  int r;

  int listening = 0;
  socklen_t ll = sizeof listening;

  if (getsockname (fd, (struct sockaddr *) &ss, &len) < 0)
    return error_set (-errno, "passed fd %d: %s", fd, strerror (errno));
  /* Accept=yes passes a connection, not a listener. */
  if (getsockopt (fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 ||
      !listening)
    return error_set (-EINVAL,
                      "passed fd %d: not a listening socket (the .socket "
                      "unit must have Accept=no)",
                      fd);
  if (ss.ss_family == AF_UNIX) {
    uv_pipe_t *p = calloc (1, sizeof *p);
    if (!p)
      return error_set (-ENOMEM, "out of memory");
    uv_pipe_init (loop, p, 0);
    r = uv_pipe_open (p, fd);
    s = (uv_stream_t *) p;
  } else {
    uv_tcp_t *t = calloc (1, sizeof *t);
    if (!t)
      return error_set (-ENOMEM, "out of memory");
    uv_tcp_init (loop, t);
    r = uv_tcp_open (t, fd);
    s = (uv_stream_t *) t;
  }
  if (r == 0)
    r = uv_listen (s, LISTEN_BACKLOG, on_connection);
  if (r == 0)
    r = add_listener (s);
  if (r < 0) {
    uv_close ((uv_handle_t *) s, (uv_close_cb) free);
    return error_set (r, "passed fd %d: %s", fd, uv_strerror (r));
  }
  /* A passed unix socket belongs to systemd: never unlink it. */
  s->data = (void *) 1;
  log_info ("listening on a socket passed by systemd (fd %d)", fd);
  return 0;
}

void
listen_close_all (void)
{
  for (size_t i = 0; i < n_listeners; i++) {
    uv_handle_t *h = (uv_handle_t *) listeners[i];
    /* Remove the socket file so no client finds a dead socket. */
    if (h->type == UV_NAMED_PIPE && !h->data) {
      char path[256];
      size_t len = sizeof path;
      if (uv_pipe_getsockname ((uv_pipe_t *) h, path, &len) == 0 &&
          len < sizeof path) {
        path[len] = '\0';
        unlink (path);
      }
    }
    uv_close (h, (uv_close_cb) free);
  }
  n_listeners = 0;
}
