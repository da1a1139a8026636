/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: volume keys kept across a restart in systemd's file
 * descriptor store (--fd-store).  Once an export is unlocked, its key
 * goes into a memfd (memfd_secret(2) where the kernel has it: out of the
 * kernel's direct map; else a sealed memfd) that is handed to systemd
 * with FDSTORE=1 and FDNAME=luks-nbd-key-<hex of the export name>.
 * systemd holds it while the daemon restarts and passes it back in
 * LISTEN_FDS/LISTEN_FDNAMES; the next daemon maps it and offers the key
 * to the export's unlock, which takes it only if the header still
 * vouches for it (crypto/handover.c), else runs the KDF as usual.  The
 * key never reaches a file, argv, the environment or a log.
 *
 * Threads: the passed fds are adopted on the loop thread before any
 * unlock starts; keystore_take and keystore_save run on unlock threads
 * (the lock covers `adopted`). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/internal.h"

#define FDNAME_PREFIX "luks-nbd-key-"
#define FDNAME_MAX 255 /* systemd's limit */
#define BLOB_MAX 4096  /* a key blob is ~100 bytes */

static bool enabled;

/* The fds systemd passed back, by name, until an export takes them. */
static struct adopted {
  struct adopted *next;
  char *fdname;
  int fd;
  bool taken;
} * adopted;
static pthread_mutex_t adopted_lock = PTHREAD_MUTEX_INITIALIZER;

void
keystore_enable (void)
{
  enabled = true;
}

bool
keystore_is_key_fd (const char *fdname)
{
  return strncmp (fdname, FDNAME_PREFIX, strlen (FDNAME_PREFIX)) == 0;
}

/* "luks-nbd-key-" and the name in hex: systemd's names are printable
 * ASCII without ':', export names are any bytes.  -ENAMETOOLONG for
 * names of over 121 bytes (their keys are not kept). */
static int
fdname_of (const char *export_name, char *out, size_t cap)
{
  size_t n = strlen (export_name), p = strlen (FDNAME_PREFIX);

  if (p + 2 * n > FDNAME_MAX || p + 2 * n >= cap)
    return -ENAMETOOLONG;
  memcpy (out, FDNAME_PREFIX, p);
  for (size_t i = 0; i < n; i++)
    snprintf (out + p + 2 * i, 3, "%02x", (unsigned char) export_name[i]);
  out[p + 2 * n] = '\0';
  return 0;
}

void
keystore_adopt (const char *fdname, int fd)
{
  struct adopted *a = calloc (1, sizeof *a);

  /* Passed without it: no child (--run) may inherit a key. */
  fcntl (fd, F_SETFD, FD_CLOEXEC);
  if (!a || !(a->fdname = strdup (fdname))) {
    free (a);
    close (fd);
    return;
  }
  a->fd = fd;
  a->next = adopted;
  adopted = a;
}

/* sd_notify with one fd attached (SCM_RIGHTS), as FDSTORE=1 needs. */
static int
notify_with_fd (const char *state, int fd)
{
  const char *path = getenv ("NOTIFY_SOCKET");
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  union {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } control;
  struct iovec iov = { (void *) state, strlen (state) };
  struct msghdr msg = { .msg_name = &sa, .msg_iov = &iov, .msg_iovlen = 1 };
  int s, r = 0;

  if (!path || !*path)
    return error_set (-ENOTCONN, "--fd-store: NOTIFY_SOCKET is not set (not "
                                 "started by systemd?)");
  if (strlen (path) >= sizeof sa.sun_path)
    return error_set (-EINVAL, "NOTIFY_SOCKET is too long");
  memcpy (sa.sun_path, path, strlen (path));
  if (sa.sun_path[0] == '@')
    sa.sun_path[0] = '\0';
  msg.msg_namelen =
    (socklen_t) (offsetof (struct sockaddr_un, sun_path) + strlen (path));
  if (fd >= 0) {
    struct cmsghdr *c;
    memset (&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    c = CMSG_FIRSTHDR (&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN (sizeof (int));
    memcpy (CMSG_DATA (c), &fd, sizeof fd);
  }
  s = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0)
    return error_set (-errno, "NOTIFY_SOCKET: %s", strerror (errno));
  if (sendmsg (s, &msg, MSG_NOSIGNAL) < 0)
    r = error_set (-errno, "NOTIFY_SOCKET: %s", strerror (errno));
  close (s);
  return r;
}

/* A memfd holding blob: secret memory if the kernel has it (mapped only
 * by whoever maps it, never in the kernel's direct map, never swapped),
 * else an ordinary memfd sealed against every change. */
static int
key_memfd (const uint8_t *blob, size_t len, const char **kind)
{
  int fd = -1;
  bool secret = false;
  void *map;

#ifdef SYS_memfd_secret
  fd = (int) syscall (SYS_memfd_secret, FD_CLOEXEC);
  secret = fd >= 0;
#endif
  if (fd < 0)
    fd = memfd_create ("luks-nbd-key", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return error_set (-errno, "memfd_create: %s", strerror (errno));
  if (ftruncate (fd, (off_t) len) < 0 ||
      (map = mmap (NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) ==
        MAP_FAILED) {
    int e = errno;
    close (fd);
    return error_set (-e, "key memfd: %s", strerror (e));
  }
  memcpy (map, blob, len);
  munmap (map, len);
  if (!secret &&
      fcntl (fd, F_ADD_SEALS,
             F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
    int e = errno;
    close (fd);
    return error_set (-e, "sealing the key memfd: %s", strerror (e));
  }
  *kind = secret ? "memfd_secret" : "sealed memfd";
  return fd;
}

int
keystore_take (const char *export_name, const void **blob, size_t *len)
{
  char fdname[FDNAME_MAX + 1];
  struct adopted *a;
  off_t size;
  void *map;
  int fd = -1;

  *blob = NULL;
  *len = 0;
  if (fdname_of (export_name, fdname, sizeof fdname) < 0)
    return 0;
  pthread_mutex_lock (&adopted_lock);
  for (a = adopted; a; a = a->next)
    if (!a->taken && strcmp (a->fdname, fdname) == 0) {
      a->taken = true;
      fd = a->fd;
      break;
    }
  pthread_mutex_unlock (&adopted_lock);
  if (fd < 0)
    return 0;
  size = lseek (fd, 0, SEEK_END);
  if (size <= 0 || size > BLOB_MAX)
    return error_set (-EINVAL, "the handed-over key fd %s has %lld bytes",
                      fdname, (long long) size);
  /* Shared and read-only: memfd_secret maps only shared, and a sealed
   * memfd refuses writable shared maps. */
  map = mmap (NULL, (size_t) size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    return error_set (-errno, "mapping the handed-over key %s: %s", fdname,
                      strerror (errno));
  madvise (map, (size_t) size, MADV_DONTDUMP);
  *blob = map;
  *len = (size_t) size;
  return 1;
}

void
keystore_release (const void *blob, size_t len)
{
  if (blob)
    munmap ((void *) blob, len);
}

/* Drops what the store holds under fdname (a key the header no longer
 * takes, or an export removed). */
static void
store_remove (const char *fdname)
{
  char state[FDNAME_MAX + 64];

  snprintf (state, sizeof state, "FDSTOREREMOVE=1\nFDNAME=%s", fdname);
  if (notify_with_fd (state, -1) < 0)
    log_warning ("%s", error_message ());
}

int
keystore_save (const char *export_name, struct node *top)
{
  char fdname[FDNAME_MAX + 1], state[FDNAME_MAX + 64];
  const char *kind = NULL;
  uint8_t *blob;
  size_t len;
  int fd, r;

  if (!enabled)
    return 0;
  if (fdname_of (export_name, fdname, sizeof fdname) < 0) {
    log_info ("export '%s': its name is too long for an fd store name; its "
              "key is not kept for a restart",
              export_name);
    return 0;
  }
  struct node_stack_info info;
  node_stack_info (top, &info);
  if (info.key_handed_over)
    return 0; /* the store holds it already */
  r = node_stack_handover_blob (top, &blob, &len);
  if (r < 0)
    return r;
  fd = key_memfd (blob, len, &kind);
  node_stack_handover_free (blob, len);
  if (fd < 0)
    return fd;
  /* One key per name: an older one (refused, or of a changed header)
   * goes first. */
  store_remove (fdname);
  snprintf (state, sizeof state, "FDSTORE=1\nFDNAME=%s", fdname);
  r = notify_with_fd (state, fd);
  close (fd);
  if (r < 0)
    return r;
  log_info ("export '%s': key kept in the service manager's fd store (%s) "
            "for a restart",
            export_name, kind);
  return 0;
}

void
keystore_forget (const char *export_name)
{
  char fdname[FDNAME_MAX + 1];

  if (enabled && fdname_of (export_name, fdname, sizeof fdname) == 0)
    store_remove (fdname);
}

void
keystore_close_untaken (void)
{
  pthread_mutex_lock (&adopted_lock);
  while (adopted) {
    struct adopted *a = adopted;
    adopted = a->next;
    /* A key of an export no longer configured: out of the store too. */
    if (!a->taken && enabled)
      store_remove (a->fdname);
    close (a->fd);
    free (a->fdname);
    free (a);
  }
  pthread_mutex_unlock (&adopted_lock);
}
