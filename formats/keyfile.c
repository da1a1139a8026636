/* luks-nbd: reading passphrases into secure memory.  key-file= gives the
 * file's exact bytes (like cryptsetup --key-file), up to 8 MiB;
 * passphrase-file= strips one trailing newline, as a file written by
 * `echo` has, and takes up to 512 characters.  Both read to the end of
 * the file, so pipes, FIFOs and /dev/stdin work as files do. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "keyfile.h"
#include "luks.h"

/* cryptsetup's limits: --keyfile-size defaults to 8 MiB, a passphrase
 * to 512 characters. */
#define KEYFILE_MAX (8 * 1024 * 1024)
#define PASSPHRASE_MAX 512
#define READ_CHUNK 4096

/* Moves the n bytes read so far to a larger secure buffer. */
static int
grow (char **buf, size_t n, size_t *alloc, size_t want)
{
  char *b = luks_secret_alloc (want);

  if (!b)
    return -ENOMEM;
  memcpy (b, *buf, n);
  luks_secret_free (*buf, *alloc);
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
  /* A regular file: its size, and a byte more to see its end at once. */
  size_t n = 0, cap = (hint && hint < max ? hint + 1 : READ_CHUNK) + 1;
  char *buf;
  int r = 0;

  if (cap > max + 1)
    cap = max + 1;
  buf = luks_secret_alloc (cap);
  if (!buf)
    return -ENOMEM;
  for (;;) {
    /* Full (one byte is kept for the NUL): grow, up to max + 1. */
    if (n == cap - 1 && n < max &&
        (r = grow (&buf, n, &cap, cap * 2 > max + 1 ? max + 1 : cap * 2)) < 0)
      break;
    if (n == max) { /* one more byte is one too many */
      char extra;
      ssize_t e = read (fd, &extra, 1);
      if (e < 0 && errno == EINTR)
        continue;
      explicit_bzero (&extra, 1);
      if (e != 0)
        r = e > 0 ? error_set (-EFBIG, "%s: %s longer than %zu bytes", path,
                               what, max)
                  : error_set (-errno, "%s: %s", path, strerror (errno));
      break;
    }
    ssize_t got = read (fd, buf + n, cap - 1 - n);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      r = error_set (-errno, "%s: %s", path, strerror (errno));
    if (got <= 0)
      break;
    n += (size_t) got;
  }
  if (r < 0) {
    luks_secret_free (buf, cap);
    return r;
  }
  *out = buf;
  *len = n;
  *alloc = cap;
  return 0;
}

int
keyfile_read (const char *path, bool strip_newline, char **pass, size_t *len,
              size_t *alloc)
{
  /* A passphrase file may end with the newline that echo wrote. */
  size_t max = strip_newline ? PASSPHRASE_MAX + 1 : KEYFILE_MAX;
  const char *what = strip_newline ? "passphrase file" : "key file";
  struct stat st;
  int fd = open (path, O_RDONLY | O_CLOEXEC), r;

  if (fd < 0)
    return error_set (-errno, "%s: %s", path, strerror (errno));
  if (fstat (fd, &st) < 0) {
    r = error_set (-errno, "%s: %s", path, strerror (errno));
    close (fd);
    return r;
  }
  if (S_ISDIR (st.st_mode)) {
    close (fd);
    return error_set (-EISDIR, "%s: a directory, not a %s", path, what);
  }
  /* A regular file's size is known: refuse a large one before reading. */
  if (S_ISREG (st.st_mode) && (uint64_t) st.st_size > max) {
    close (fd);
    return error_set (-EFBIG, "%s: %s longer than %zu bytes", path, what, max);
  }
  r = read_bounded (fd, path, what, max,
                    S_ISREG (st.st_mode) ? (size_t) st.st_size : 0, pass, len,
                    alloc);
  close (fd);
  if (r < 0)
    return r;
  if (strip_newline && *len > 0 && (*pass)[*len - 1] == '\n')
    (*pass)[--*len] = '\0';
  if (strip_newline && *len > PASSPHRASE_MAX) {
    luks_secret_free (*pass, *alloc);
    return error_set (-EFBIG,
                      "%s: passphrase longer than %d characters (key-file= "
                      "takes up to %d bytes)",
                      path, PASSPHRASE_MAX, KEYFILE_MAX);
  }
  return 0;
}

char *
keyfile_secret_copy (const void *p, size_t n)
{
  char *c = luks_init () < 0 ? NULL : luks_secret_alloc (n + 1);

  if (c)
    memcpy (c, p, n);
  return c;
}

void
keyfile_secret_free (char *p, size_t n_plus_1)
{
  luks_secret_free (p, n_plus_1);
}
