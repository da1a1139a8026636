/* luks-nbd: reading passphrases into secure memory.  key-file= gives the
 * file's exact bytes (like cryptsetup --key-file); passphrase-file= strips
 * one trailing newline, as a file written by `echo` has. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "keyfile.h"
#include "luks.h"

/* cryptsetup's default key file size limit. */
#define KEYFILE_MAX (8 * 1024 * 1024)

int
keyfile_read (const char *path, bool strip_newline, char **pass, size_t *len,
              size_t *alloc)
{
  struct stat st;
  char *buf;
  size_t n = 0;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    return error_set (-errno, "%s: %s", path, strerror (errno));
  if (fstat (fd, &st) < 0) {
    int e = errno;
    close (fd);
    return error_set (-e, "%s: %s", path, strerror (e));
  }
  if (st.st_size > KEYFILE_MAX) {
    close (fd);
    return error_set (-EFBIG, "%s: key file larger than %d bytes", path,
                      KEYFILE_MAX);
  }
  *alloc = (size_t) st.st_size + 1;
  buf = luks_secret_alloc (*alloc);
  if (!buf) {
    close (fd);
    return -ENOMEM;
  }
  while (n < (size_t) st.st_size) {
    ssize_t r = read (fd, buf + n, (size_t) st.st_size - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t) r;
  }
  close (fd);
  if (n != (size_t) st.st_size) {
    luks_secret_free (buf, *alloc);
    return error_set (-EIO, "%s: short read of the key file", path);
  }
  if (strip_newline && n > 0 && buf[n - 1] == '\n')
    buf[--n] = '\0';
  *pass = buf;
  *len = n;
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
