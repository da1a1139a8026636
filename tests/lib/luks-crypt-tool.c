/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Test helper: drives crypto/ over files so shell tests can compare our
 * output with cryptsetup's and qemu-img's.
 *   luks-crypt-tool info HEADER
 *   luks-crypt-tool decrypt|encrypt HEADER DATA KEYFILE [KEYSLOT]
 * decrypt streams the data area of DATA (from the header's payload offset)
 * through the volume to stdout; encrypt streams plaintext DATA from 0. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "crypto/luks.h"
#include "crypto/secmem.h"

static int
file_read (void *opaque, void *buf, size_t count, uint64_t offset)
{
  int fd = *(int *) opaque;
  ssize_t n = pread (fd, buf, count, (off_t) offset);

  if (n < 0)
    return error_set (-errno, "pread: %s", strerror (errno));
  if ((size_t) n != count)
    return error_set (-EIO, "short read at %llu", (unsigned long long) offset);
  return 0;
}

static void
die (const char *what)
{
  fprintf (stderr, "luks-crypt-tool: %s: %s\n", what, error_message ());
  exit (1);
}

int
main (int argc, char **argv)
{
  struct luks_header *hdr;
  struct luks_header_info info;
  struct luks_source src;
  struct stat st;
  int hfd;

  if (argc < 3) {
    fprintf (stderr, "usage: luks-crypt-tool info|decrypt|encrypt HEADER [DATA "
                     "KEYFILE [SLOT]]\n");
    return 2;
  }
  if (luks_init () < 0)
    die ("init");
  hfd = open (argv[2], O_RDONLY);
  if (hfd < 0 || fstat (hfd, &st) < 0) {
    perror (argv[2]);
    return 1;
  }
  src = (struct luks_source){ .read = file_read,
                              .opaque = &hfd,
                              .size = (uint64_t) st.st_size,
                              .name = argv[2] };
  if (luks_header_open (&src, &hdr) < 0)
    die ("open");
  luks_header_info (hdr, &info);
  if (strcmp (argv[1], "info") == 0) {
    printf ("version=%d\ncipher=%s\nkey_bits=%zu\nsector_size=%u\n"
            "payload_offset=%llu\npayload_size=%llu\nkeyslots=%d\nuuid=%s\n",
            info.version, info.cipher, info.key_bytes * 8, info.sector_size,
            (unsigned long long) info.payload_offset,
            (unsigned long long) info.payload_size, info.active_keyslots,
            info.uuid);
    if (info.warning)
      printf ("warning=%s\n", info.warning);
    luks_header_free (hdr);
    return 0;
  }
  if (argc < 5)
    return 2;

  /* Key file: its exact bytes, like cryptsetup --key-file. */
  int kfd = open (argv[4], O_RDONLY);
  struct stat kst;
  if (kfd < 0 || fstat (kfd, &kst) < 0) {
    perror (argv[4]);
    return 1;
  }
  size_t klen = (size_t) kst.st_size;
  char *pass = secmem_alloc (klen + 1);
  if (!pass || read (kfd, pass, klen) != (ssize_t) klen)
    die ("key file");
  close (kfd);

  struct luks_volume *vol;
  if (luks_unlock (hdr, pass, klen, argc > 5 ? atoi (argv[5]) : -1, &vol) < 0)
    die ("unlock");
  secmem_free (pass, klen + 1);

  int dfd = open (argv[3], O_RDONLY);
  if (dfd < 0 || fstat (dfd, &st) < 0) {
    perror (argv[3]);
    return 1;
  }
  enum luks_direction dir =
    strcmp (argv[1], "encrypt") == 0 ? LUKS_ENCRYPT : LUKS_DECRYPT;
  /* Ciphertext starts at the payload offset; plaintext at 0. */
  uint64_t off = dir == LUKS_DECRYPT ? luks_volume_payload_offset (vol) : 0;
  uint64_t size = luks_volume_payload_size (vol);
  if (!size || dir == LUKS_ENCRYPT)
    size = (uint64_t) st.st_size - off;
  uint32_t ss = luks_volume_sector_size (vol);
  size_t chunk = 1 << 20;
  char *buf = malloc (chunk);
  for (uint64_t done = 0; done < size;) {
    size_t n = size - done < chunk ? (size_t) (size - done) : chunk;
    n -= n % ss;
    if (n == 0)
      break;
    if (file_read (&dfd, buf, n, off + done) < 0)
      die ("read data");
    if (luks_volume_crypt (vol, dir, buf, n, done / ss) < 0)
      die ("crypt");
    if (fwrite (buf, 1, n, stdout) != n)
      die ("write");
    done += n;
  }
  free (buf);
  luks_volume_free (vol);
  luks_header_free (hdr);
  return 0;
}
