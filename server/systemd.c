/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: systemd integration without libsystemd: sockets passed by
 * socket activation (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES) and the
 * sd_notify protocol (READY=1, STATUS=, STOPPING=1, WATCHDOG=1). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/internal.h"

#define SD_LISTEN_FDS_START 3

static uv_timer_t watchdog;

int
systemd_listen_fds (char **names)
{
  const char *pid = getenv ("LISTEN_PID"), *fds = getenv ("LISTEN_FDS");
  const char *fdnames = getenv ("LISTEN_FDNAMES");
  char *end;
  long n;

  if (names)
    *names = NULL;
  if (!pid || !fds || strtol (pid, &end, 10) != (long) getpid () || *end)
    return 0;
  n = strtol (fds, &end, 10);
  /* The fd store may add a key per export to the sockets. */
  if (*end || n < 0 || n > 4096)
    return error_set (-EINVAL, "LISTEN_FDS=%s is not a count", fds);
  if (names && fdnames && !(*names = strdup (fdnames)))
    return error_set (-ENOMEM, "out of memory");
  /* Not for our children (--run). */
  unsetenv ("LISTEN_PID");
  unsetenv ("LISTEN_FDS");
  unsetenv ("LISTEN_FDNAMES");
  return (int) n;
}

int
systemd_notify (const char *state)
{
  const char *path = getenv ("NOTIFY_SOCKET");
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  socklen_t len;
  int fd, r = 0;

  if (!path || !*path)
    return 0;
  if (strlen (path) >= sizeof sa.sun_path)
    return error_set (-EINVAL, "NOTIFY_SOCKET is too long");
  memcpy (sa.sun_path, path, strlen (path));
  if (sa.sun_path[0] == '@') /* abstract namespace */
    sa.sun_path[0] = '\0';
  len = (socklen_t) (offsetof (struct sockaddr_un, sun_path) + strlen (path));
  fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return error_set (-errno, "NOTIFY_SOCKET: %s", strerror (errno));
  if (sendto (fd, state, strlen (state), MSG_NOSIGNAL, (struct sockaddr *) &sa,
              len) < 0)
    r = error_set (-errno, "NOTIFY_SOCKET: %s", strerror (errno));
  close (fd);
  return r;
}

static void
on_watchdog (uv_timer_t *t)
{
  systemd_notify ("WATCHDOG=1");
}

void
systemd_start_watchdog (uv_loop_t *loop)
{
  const char *usec = getenv ("WATCHDOG_USEC"), *pid = getenv ("WATCHDOG_PID");
  unsigned long long us;

  if (!usec || (pid && atol (pid) != (long) getpid ()))
    return;
  us = strtoull (usec, NULL, 10);
  if (us < 2000)
    return;
  /* Ping at half the interval, as sd_watchdog_enabled(3) advises. */
  uv_timer_init (loop, &watchdog);
  uv_timer_start (&watchdog, on_watchdog, us / 2000, us / 2000);
  uv_unref ((uv_handle_t *) &watchdog);
}

void
systemd_stop_watchdog (void)
{
  if (uv_is_active ((uv_handle_t *) &watchdog))
    uv_close ((uv_handle_t *) &watchdog, NULL);
}
