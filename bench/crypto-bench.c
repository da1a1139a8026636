/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd benchmark: sector decryption through crypto/'s API against a
 * bare libgcrypt loop on the same buffer, and its scaling with threads.
 *   crypto-bench HEADER KEYFILE [ROUNDS]
 * HEADER is an aes-xts-plain64 LUKS header with 512-byte sectors made by
 * cryptsetup; prints MiB/s medians and ratios. */
#include <config.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gcrypt.h>

#include "common/error_msg.h"
#include "crypto/luks.h"

#define BUF_BYTES (4 << 20)
#define SECTOR 512
#define PASSES 40 /* per measurement: 160 MiB */

static struct luks_volume *vol;

static double
now (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
file_read (void *opaque, void *buf, size_t count, uint64_t offset)
{
  return pread (*(int *) opaque, buf, count, (off_t) offset) == (ssize_t) count
           ? 0
           : -5;
}

static double
bare_gcrypt (unsigned char *buf)
{
  gcry_cipher_hd_t hd;
  unsigned char key[64], iv[16] = { 0 };
  double t;

  for (int i = 0; i < 64; i++)
    key[i] = (unsigned char) (i * 7 + 1);
  gcry_cipher_open (&hd, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_XTS, 0);
  gcry_cipher_setkey (hd, key, sizeof key);
  t = now ();
  for (int p = 0; p < PASSES; p++)
    for (uint64_t s = 0; s < BUF_BYTES / SECTOR; s++) {
      memcpy (iv, &s, sizeof s);
      gcry_cipher_setiv (hd, iv, sizeof iv);
      gcry_cipher_decrypt (hd, buf + s * SECTOR, SECTOR, NULL, 0);
    }
  t = now () - t;
  gcry_cipher_close (hd);
  return (double) PASSES * BUF_BYTES / (1 << 20) / t;
}

static void *
ours_thread (void *arg)
{
  unsigned char *buf = arg;
  for (int p = 0; p < PASSES; p++)
    luks_volume_crypt (vol, LUKS_DECRYPT, buf, BUF_BYTES, 0);
  return NULL;
}

static double
ours (unsigned char **bufs, int threads)
{
  pthread_t th[8];
  double t = now ();

  for (int i = 0; i < threads; i++)
    pthread_create (&th[i], NULL, ours_thread, bufs[i]);
  for (int i = 0; i < threads; i++)
    pthread_join (th[i], NULL);
  t = now () - t;
  return (double) threads * PASSES * BUF_BYTES / (1 << 20) / t;
}

static int
cmp (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static double
median (double *v, int n)
{
  qsort (v, (size_t) n, sizeof *v, cmp);
  return v[n / 2];
}

int
main (int argc, char **argv)
{
  int rounds = argc > 3 ? atoi (argv[3]) : 5;
  double bare[32], one[32], two[32];
  unsigned char *bufs[2];
  struct luks_header *hdr;
  struct stat st;
  char pass[256];

  if (argc < 3 || rounds < 1 || rounds > 32 || luks_init () < 0)
    return 2;
  int fd = open (argv[1], O_RDONLY);
  if (fd < 0 || fstat (fd, &st) < 0)
    return 1;
  struct luks_source src = { .read = file_read,
                             .opaque = &fd,
                             .size = (uint64_t) st.st_size,
                             .name = argv[1] };
  int kfd = open (argv[2], O_RDONLY);
  ssize_t plen = kfd < 0 ? -1 : read (kfd, pass, sizeof pass);
  if (plen < 0 || luks_header_open (&src, &hdr) < 0 ||
      luks_unlock (hdr, pass, (size_t) plen, -1, &vol) < 0) {
    fprintf (stderr, "crypto-bench: %s\n", error_message ());
    return 1;
  }
  for (int i = 0; i < 2; i++) {
    bufs[i] = malloc (BUF_BYTES);
    memset (bufs[i], 0x5a, BUF_BYTES);
  }
  /* Alternate the three measurements round by round. */
  for (int r = 0; r < rounds; r++) {
    bare[r] = bare_gcrypt (bufs[0]);
    one[r] = ours (bufs, 1);
    two[r] = ours (bufs, 2);
  }
  double b = median (bare, rounds), o = median (one, rounds),
         t = median (two, rounds);
  printf ("aes-xts-plain64, 512-byte sectors, %d rounds, medians:\n", rounds);
  printf ("  bare libgcrypt loop, 1 thread   %8.0f MiB/s\n", b);
  printf (
    "  luks_volume_crypt, 1 thread     %8.0f MiB/s   ratio to bare: %.2f\n", o,
    o / b);
  printf ("  luks_volume_crypt, 2 threads    %8.0f MiB/s   scaling: %.2fx\n", t,
          t / o);
  luks_volume_free (vol);
  luks_header_free (hdr);
  return 0;
}
