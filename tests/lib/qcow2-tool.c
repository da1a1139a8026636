/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Test helper: drives the qcow2 node directly, so tests can compare it
 * with qemu-img on images whose content is compressible (ciphertext never
 * is, so compressed clusters cannot be made through the luks stack).
 *   qcow2-tool read IMAGE OUT          whole virtual disk to OUT
 *   qcow2-tool write IMAGE OFFSET DATA DATA's bytes at OFFSET
 *   qcow2-tool trim IMAGE OFFSET LENGTH discard, then flush
 *   qcow2-tool direct-write FILE OFFSET DATA  no qcow2: DATA's bytes at
 *     OFFSET of FILE through a cache=none (O_DIRECT) file node
 *   qcow2-tool resize IMAGE SIZE       grow the virtual size (export-resize)
 *   qcow2-tool open-rw IMAGE           just open read-write */
#include <config.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "formats/node.h"

static int
die (const char *what)
{
  fprintf (stderr, "qcow2-tool: %s: %s\n", what, error_message ());
  return 1;
}

/* Reads FILE whole into a new buffer; its size in *len. */
static char *
slurp (const char *path, size_t *len)
{
  struct stat st;
  int fd = open (path, O_RDONLY);
  char *buf = NULL;

  if (fd >= 0 && fstat (fd, &st) == 0 &&
      (buf = malloc ((size_t) st.st_size + 1)) &&
      read (fd, buf, (size_t) st.st_size) != st.st_size) {
    free (buf);
    buf = NULL;
  }
  if (fd >= 0)
    close (fd);
  *len = buf ? (size_t) st.st_size : 0;
  return buf;
}

static int
direct_write (struct node *file, int argc, char **argv)
{
  size_t len;
  char *buf = argc == 5 ? slurp (argv[4], &len) : NULL;
  int r = buf && node_file_set_direct (file) == 0 &&
          node_pwrite (file, buf, len, strtoull (argv[3], NULL, 0), 0) == 0;

  free (buf);
  node_close (file);
  return r ? 0 : die ("direct-write");
}

int
main (int argc, char **argv)
{
  struct node *file, *q;
  bool rw = argc > 1 && strcmp (argv[1], "read") != 0 &&
            strcmp (argv[1], "read-range") != 0;

  if (argc < 3)
    return 2;
  if (node_file_open (argv[2], !rw, &file) < 0)
    return die ("open");
  if (strcmp (argv[1], "direct-write") == 0)
    return direct_write (file, argc, argv);
  if (node_qcow2_open (file, 256 * 1024, false, &q) < 0) {
    node_close (file);
    return die ("qcow2");
  }
  if (strcmp (argv[1], "read") == 0 && argc == 4) {
    FILE *out = fopen (argv[3], "wb");
    char *buf = malloc (1 << 20);
    for (uint64_t off = 0; out && buf && off < q->size; off += 1 << 20) {
      uint64_t n = q->size - off < (1 << 20) ? q->size - off : (1 << 20);
      if (node_pread (q, buf, n, off) < 0)
        return die ("read");
      fwrite (buf, 1, n, out);
    }
    fclose (out);
    free (buf);
  } else if (strcmp (argv[1], "read-range") == 0 && argc == 5) {
    uint64_t len = strtoull (argv[4], NULL, 0);
    char *buf = malloc (len ? len : 1);
    if (!buf || node_pread (q, buf, len, strtoull (argv[3], NULL, 0)) < 0)
      return die ("read-range");
    free (buf);
  } else if (strcmp (argv[1], "write") == 0 && argc == 5) {
    struct stat st;
    int fd = open (argv[4], O_RDONLY);
    if (fd < 0 || fstat (fd, &st) < 0)
      return 1;
    char *buf = malloc ((size_t) st.st_size + 1);
    if (!buf || read (fd, buf, (size_t) st.st_size) != st.st_size)
      return 1;
    if (node_pwrite (q, buf, (uint64_t) st.st_size, strtoull (argv[3], NULL, 0),
                     0) < 0 ||
        node_flush (q) < 0)
      return die ("write");
    free (buf);
    close (fd);
  } else if (strcmp (argv[1], "trim") == 0 && argc == 5) {
    if (node_trim (q, strtoull (argv[4], NULL, 0),
                   strtoull (argv[3], NULL, 0)) < 0 ||
        node_flush (q) < 0)
      return die ("trim");
  } else if (strcmp (argv[1], "resize") == 0 && argc == 4) {
    if (node_resize (q, strtoull (argv[3], NULL, 0)) < 0)
      return die ("resize");
  } else if (strcmp (argv[1], "open-rw") != 0)
    return 2;
  node_close (q);
  return 0;
}
