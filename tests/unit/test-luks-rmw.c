/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Proves the luks node's read-modify-write (formats/luks.c) over an
 * in-memory payload (fuzz/mem-node.c): writes that start or end inside a
 * 4096-byte encryption sector leave exactly the plaintext a byte array
 * (the model) holds after the same writes; bytes next to a write keep
 * their plaintext, sectors it does not touch keep their ciphertext byte
 * for byte, and the caller's buffer is left as it was.  Unaligned writes
 * from two threads into the same sectors lose no byte (the RMW lock).
 *
 * Usage: test-luks-rmw HEADER PAYLOAD KEYFILE PLAIN OUT-PAYLOAD OUT-PLAIN.
 * HEADER and PAYLOAD are a detached-header volume cryptsetup made from
 * PLAIN (tests/unit/test-luks-rmw.sh); the final ciphertext and model
 * are written out for cryptsetup to decrypt and compare. */
#include <config.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error_msg.h"
#include "formats/node.h"
#include "fuzz/mem-node.h"
#include "tests/lib/tap.h"

#define SECTOR 4096

static struct node *luks, *payload;
static uint8_t *model;
static uint64_t size;
/* Scratch, each the volume's size. */
static uint8_t *got, *cipher_before, *cipher_after;

static uint8_t *
slurp (const char *path, size_t *len)
{
  FILE *f = fopen (path, "rb");
  uint8_t *buf = NULL;
  long n;

  if (!f || fseek (f, 0, SEEK_END) < 0 || (n = ftell (f)) < 0 ||
      fseek (f, 0, SEEK_SET) < 0 || !(buf = malloc (n ? (size_t) n : 1)) ||
      fread (buf, 1, (size_t) n, f) != (size_t) n) {
    fprintf (stderr, "test-luks-rmw: cannot read %s\n", path);
    exit (1);
  }
  fclose (f);
  *len = (size_t) n;
  return buf;
}

static void
spill (const char *path, const uint8_t *buf, size_t len)
{
  FILE *f = fopen (path, "wb");

  if (!f || fwrite (buf, 1, len, f) != len || fclose (f) != 0) {
    fprintf (stderr, "test-luks-rmw: cannot write %s\n", path);
    exit (1);
  }
}

/* A deterministic byte stream (xorshift): the same writes every run. */
static uint64_t seed = UINT64_C (0x9e3779b97f4a7c15);

static uint64_t
next_random (void)
{
  seed ^= seed << 13;
  seed ^= seed >> 7;
  seed ^= seed << 17;
  return seed;
}

static void
fill_random (uint8_t *buf, size_t len)
{
  for (size_t i = 0; i < len; i++)
    buf[i] = (uint8_t) next_random ();
}

static int
read_ciphertext (uint8_t *buf)
{
  return node_pread (payload, buf, size, node_luks_data_offset (luks));
}

static bool
volume_matches_model (void)
{
  return node_pread (luks, got, size, 0) == 0 && memcmp (got, model, size) == 0;
}

/* The first sector whose ciphertext differs from before outside the
 * sectors [first, last] a write touched, or -1 if none. */
static long
untouched_sector_changed (uint64_t first, uint64_t last)
{
  for (uint64_t s = 0; s < size / SECTOR; s++)
    if ((s < first || s > last) &&
        memcmp (cipher_before + s * SECTOR, cipher_after + s * SECTOR,
                SECTOR) != 0)
      return (long) s;
  return -1;
}

/* One write of len random bytes at off through the luks node, applied to
 * the model too, and its checks; quiet (only counts) when `what` is
 * NULL, for the random runs.  Returns true if all held. */
static bool
write_case (uint64_t off, uint64_t len, int flags, const char *what)
{
  uint8_t *data = malloc (len), *copy = malloc (len);
  uint64_t first = off / SECTOR, last = (off + len - 1) / SECTOR;
  bool written, same_buf, matches, kept, changed;
  long moved;

  fill_random (data, len);
  memcpy (copy, data, len);
  if (read_ciphertext (cipher_before) < 0)
    abort ();
  written = node_pwrite (luks, data, len, off, flags) == 0;
  same_buf = (flags & NODE_MAY_CLOBBER) || memcmp (data, copy, len) == 0;
  memcpy (model + off, copy, len);
  matches = volume_matches_model ();
  if (read_ciphertext (cipher_after) < 0)
    abort ();
  moved = untouched_sector_changed (first, last);
  kept = moved < 0;
  changed = memcmp (cipher_before + first * SECTOR,
                    cipher_after + first * SECTOR, SECTOR) != 0 &&
            memcmp (cipher_before + last * SECTOR, cipher_after + last * SECTOR,
                    SECTOR) != 0;
  if (what) {
    ok (written, "%s: the write succeeds", what);
    ok (same_buf, "%s: the caller's buffer is left as it was", what);
    ok (matches, "%s: the whole volume reads as the model", what);
    ok (kept, "%s: sectors outside %llu..%llu keep their ciphertext%s", what,
        (unsigned long long) first, (unsigned long long) last,
        moved < 0 ? "" : " (one did not)");
    ok (changed, "%s: its first and last sector are encrypted anew", what);
  }
  free (data);
  free (copy);
  return written && same_buf && matches && kept && changed;
}

static void
test_edges (void)
{
  write_case (0, 1, 0, "1 byte at 0");
  write_case (size - 1, 1, 0, "the last byte");
  write_case (SECTOR - 1, 2, 0, "2 bytes across the first sector boundary");
  write_case (SECTOR + 1, SECTOR - 2, 0,
              "a sector but its first and last byte");
  write_case (3 * SECTOR + 100, 2 * SECTOR, 0,
              "two sectors' worth from mid-sector, over three sectors");
  write_case (5 * SECTOR, SECTOR + 7, 0, "aligned start, unaligned end");
  write_case (7 * SECTOR - 7, SECTOR + 7, 0, "unaligned start, aligned end");
  write_case (9 * SECTOR + 5, 5 * SECTOR, 0,
              "partial first and last sector around four whole ones");
  write_case (11 * SECTOR, 2 * SECTOR, 0, "two whole sectors (no RMW)");
  write_case (13 * SECTOR, SECTOR, NODE_MAY_CLOBBER,
              "a whole sector, encrypted in the caller's buffer");
  write_case (1, size - 2, 0, "all but the first and last byte");
  write_case (size - SECTOR - 1, SECTOR + 1, 0,
              "the last sector and the byte before it");
}

static void
test_random (void)
{
  unsigned bad = 0, n = 300;

  for (unsigned i = 0; i < n; i++) {
    uint64_t len = 1 + next_random () % (3 * SECTOR);
    uint64_t off = next_random () % (size - len + 1);
    bad += !write_case (off, len, 0, NULL);
  }
  ok (bad == 0, "%u random writes of 1..12288 bytes: %u broke a check", n, bad);
}

/* Two threads each write single bytes into the same four sectors, one
 * the even offsets and the other the odd: with each partial-sector write
 * read, modified and written back under the RMW lock, none is lost. */
struct racer {
  uint64_t parity;
  uint8_t value;
  int errors;
};

#define RACE_START (20 * SECTOR)
#define RACE_BYTES (4 * SECTOR)

static void *
race (void *arg)
{
  struct racer *r = arg;

  for (uint64_t b = r->parity; b < RACE_BYTES; b += 2)
    if (node_pwrite (luks, &r->value, 1, RACE_START + b, 0) < 0)
      r->errors++;
  return NULL;
}

static void
test_race (void)
{
  struct racer even = { 0, 0x11, 0 }, odd = { 1, 0xee, 0 };
  pthread_t a, b;

  if (pthread_create (&a, NULL, race, &even) != 0 ||
      pthread_create (&b, NULL, race, &odd) != 0)
    abort ();
  pthread_join (a, NULL);
  pthread_join (b, NULL);
  for (uint64_t i = 0; i < RACE_BYTES; i++)
    model[RACE_START + i] = i % 2 ? odd.value : even.value;
  ok (even.errors == 0 && odd.errors == 0 && volume_matches_model (),
      "two threads' interleaved 1-byte writes into the same 4 sectors: "
      "no byte lost, nothing else changed");
}

int
main (int argc, char **argv)
{
  size_t hlen, plen, klen, mlen;
  uint8_t *hdr, *pay, *key;
  struct node *header;

  if (argc != 7) {
    fprintf (stderr, "usage: test-luks-rmw HEADER PAYLOAD KEYFILE PLAIN "
                     "OUT-PAYLOAD OUT-PLAIN\n");
    return 2;
  }
  hdr = slurp (argv[1], &hlen);
  pay = slurp (argv[2], &plen);
  key = slurp (argv[3], &klen);
  model = slurp (argv[4], &mlen);
  header = mem_node_new (hdr, hlen, 0, "header");
  payload = mem_node_new (pay, plen, 0, "payload");
  free (hdr);
  free (pay);
  if (!header || !payload ||
      node_luks_open (payload, header, key, klen, -1, argv[1], NULL, NULL, 0,
                      &luks) < 0) {
    fprintf (stderr, "test-luks-rmw: %s\n", error_message ());
    return 1;
  }
  size = luks->size;
  ok (luks->block_size == SECTOR && size == mlen && size >= 32 * SECTOR,
      "the volume has 4096-byte sectors and the plaintext's size (%llu)",
      (unsigned long long) size);
  got = malloc (size);
  cipher_before = malloc (size);
  cipher_after = malloc (size);
  ok (volume_matches_model (), "it reads as the plaintext cryptsetup "
                               "encrypted");
  test_edges ();
  test_random ();
  test_race ();
  uint8_t *whole = malloc (payload->size);
  if (!whole || node_pread (payload, whole, payload->size, 0) < 0)
    abort ();
  spill (argv[5], whole, payload->size);
  spill (argv[6], model, size);
  free (whole);
  node_close (luks);
  free (key);
  free (model);
  free (got);
  free (cipher_before);
  free (cipher_after);
  return tap_done ();
}
