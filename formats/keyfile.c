/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: reading passphrases into secure memory.  key-file= gives the
 * file's exact bytes (like cryptsetup --key-file), up to 8 MiB;
 * passphrase-file= strips one trailing newline, as a file written by
 * `echo` has, and takes up to 512 characters.  Both read to the end of
 * the file, so pipes, FIFOs and /dev/stdin work as files do; a FIFO or
 * pipe gets KEYFILE_WAIT_SECONDS for its writer to finish, so a FIFO
 * nobody writes cannot hold startup, a worker or shutdown for ever. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "crypto/secmem.h"
#include "formats/keyfile.h"

/* cryptsetup's limits: --keyfile-size defaults to 8 MiB, a passphrase
 * to 512 characters. */
#define KEYFILE_MAX (8 * 1024 * 1024)
#define PASSPHRASE_MAX 512
#define READ_CHUNK 4096
#define KEYFILE_WAIT_SECONDS 30

static int64_t
now_ms (void)
{
  struct timespec t;

  clock_gettime (CLOCK_MONOTONIC, &t);
  return (int64_t) t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* read(2) of a descriptor that may be non-blocking (a FIFO or a pipe),
 * after waiting, until deadline_ms, for data or the writer's end.  The
 * wait comes first: a FIFO that no writer has opened yet reads as EOF,
 * but polls as nothing (Linux reports its hang-up only after a writer has
 * come and gone).  -1 with errno ETIMEDOUT when the deadline passes. */
static ssize_t
read_until (int fd, void *buf, size_t len, int64_t deadline_ms)
{
  for (;;) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int64_t left = deadline_ms - now_ms ();
    int ready = left > 0 ? poll (&p, 1, (int) left) : 0;
    if (ready < 0 && errno != EINTR)
      return -1;
    if (ready == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    if (ready < 0)
      continue;
    ssize_t got = read (fd, buf, len);
    if (got >= 0 || (errno != EAGAIN && errno != EINTR))
      return got;
  }
}

/* Moves the n bytes read so far to a larger secure buffer. */
static int
grow (char **buf, size_t n, size_t *alloc, size_t want)
{
  char *b = secmem_alloc (want);

  if (!b)
    return -ENOMEM;
  memcpy (b, *buf, n);
  secmem_free (*buf, *alloc);
  *buf = b;
  *alloc = want;
  return 0;
}

/* Reads fd to its end (a pipe, a FIFO or /dev/stdin has no size to go
 * by), at most max bytes: a (max + 1)th byte is an error, not a cut. */
static int
read_bounded (int fd, const char *path, const char *what, size_t max,
              size_t hint, char **out, size_t *len, size_t *alloc)
{
  int64_t deadline = now_ms () + KEYFILE_WAIT_SECONDS * 1000;
  /* A regular file: its size, and a byte more to see its end at once. */
  size_t n = 0, cap = (hint && hint < max ? hint + 1 : READ_CHUNK) + 1;
  char *buf;
  int r = 0;

  if (cap > max + 1)
    cap = max + 1;
  buf = secmem_alloc (cap);
  if (!buf)
    return -ENOMEM;
  for (;;) {
    /* Full (one byte is kept for the NUL): grow, up to max + 1. */
    if (n == cap - 1 && n < max &&
        (r = grow (&buf, n, &cap, cap * 2 > max + 1 ? max + 1 : cap * 2)) < 0)
      break;
    if (n == max) { /* one more byte is one too many */
      char extra;
      ssize_t e = read_until (fd, &extra, 1, deadline);
      if (e < 0 && errno == EINTR)
        continue;
      explicit_bzero (&extra, 1);
      if (e != 0)
        r = e > 0 ? error_set (-EFBIG, "%s: %s longer than %zu bytes", path,
                               what, max)
                  : error_set (-errno, "%s: %s", path, strerror (errno));
      break;
    }
    ssize_t got = read_until (fd, buf + n, cap - 1 - n, deadline);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0 && errno == ETIMEDOUT)
      r = error_set (-ETIMEDOUT,
                     "%s: %s not finished within %d s (a FIFO or pipe whose "
                     "writer never wrote or closed it)",
                     path, what, KEYFILE_WAIT_SECONDS);
    else if (got < 0)
      r = error_set (-errno, "%s: %s", path, strerror (errno));
    if (got <= 0)
      break;
    n += (size_t) got;
  }
  if (r < 0) {
    secmem_free (buf, cap);
    return r;
  }
  *out = buf;
  *len = n;
  *alloc = cap;
  return 0;
}

int
keyfile_read (const char *path, const char *label, bool strip_newline,
              char **pass, size_t *len, size_t *alloc)
{
  /* A credential is named by its name, not its path. */
  const char *name = label ? label : path;
  /* A passphrase file may end with the newline that echo wrote. */
  size_t max = strip_newline ? PASSPHRASE_MAX + 1 : KEYFILE_MAX;
  const char *what = strip_newline ? "passphrase file" : "key file";
  struct stat st;
  /* Non-blocking: opening a FIFO would otherwise wait for a writer with
   * no bound; reads then wait for it with one (read_until). */
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK), r;

  if (fd < 0)
    return error_set (-errno, "%s: %s", name, strerror (errno));
  if (fstat (fd, &st) < 0) {
    r = error_set (-errno, "%s: %s", name, strerror (errno));
    close (fd);
    return r;
  }
  if (S_ISDIR (st.st_mode)) {
    close (fd);
    return error_set (-EISDIR, "%s: a directory, not a %s", name, what);
  }
  /* A regular file's size is known: refuse a large one before reading. */
  if (S_ISREG (st.st_mode) && (uint64_t) st.st_size > max) {
    close (fd);
    return error_set (-EFBIG, "%s: %s longer than %zu bytes", name, what, max);
  }
  r = read_bounded (fd, name, what, max,
                    S_ISREG (st.st_mode) ? (size_t) st.st_size : 0, pass, len,
                    alloc);
  close (fd);
  if (r < 0)
    return r;
  if (strip_newline && *len > 0 && (*pass)[*len - 1] == '\n')
    (*pass)[--*len] = '\0';
  if (strip_newline && *len > PASSPHRASE_MAX) {
    secmem_free (*pass, *alloc);
    return error_set (-EFBIG,
                      "%s: passphrase longer than %d characters (key-file= "
                      "takes up to %d bytes)",
                      name, PASSPHRASE_MAX, KEYFILE_MAX);
  }
  /* An empty passphrase would reach the KDF, whose complaint (argon2:
   * "Invalid value") names neither the file nor the cause. */
  if (*len == 0) {
    secmem_free (*pass, *alloc);
    return error_set (-EINVAL, "%s: empty %s%s", name, what,
                      strip_newline ? " (nothing but a newline, or nothing)"
                                    : " (0 bytes)");
  }
  return 0;
}
