/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A small, deterministic mutation runner for the fuzz targets, so that
 * make check exercises them without libFuzzer: each seed file, then
 * RUNS mutants of it (bit flips, byte stores, interesting values,
 * truncation), from a fixed-seed xorshift generator.  A crash or
 * sanitizer report fails the test.
 *   fuzz-TARGET RUNS SEED... */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t
next (void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void
mutate (uint8_t *d, size_t *len, size_t hot)
{
  static const uint8_t interesting[] = { 0,   1,   0x7f, 0x80, 0xff, '"', '{',
                                         '}', '[', '0',  '9',  '-',  0x20 };
  /* Most mutations land in the first `hot` bytes (headers, JSON). */
  size_t span = (next () % 4) ? (hot < *len ? hot : *len) : *len;
  unsigned n = 1 + (unsigned) (next () % 4);

  if (!span)
    return;
  for (unsigned i = 0; i < n; i++) {
    size_t at = (size_t) (next () % span);
    switch (next () % 5) {
    case 0: d[at] ^= (uint8_t) (1u << (next () % 8)); break;
    case 1: d[at] = (uint8_t) next (); break;
    case 2: d[at] = interesting[next () % sizeof interesting]; break;
    case 3:
      if (at + 8 <= *len)
        memset (d + at, 0xff, 8);
      break;
    case 4:
      if (next () % 16 == 0)
        *len = at;
      break;
    }
  }
}

int
main (int argc, char **argv)
{
  long runs = argc > 1 ? atol (argv[1]) : 0;
  size_t hot =
    getenv ("FUZZ_HOT") ? (size_t) atol (getenv ("FUZZ_HOT")) : 65536;

  for (int i = 2; i < argc; i++) {
    FILE *f = fopen (argv[i], "rb");
    if (!f) {
      perror (argv[i]);
      return 1;
    }
    fseek (f, 0, SEEK_END);
    size_t size = (size_t) ftell (f);
    rewind (f);
    uint8_t *seed = malloc (size + 1), *d = malloc (size + 1);
    if (!seed || !d || fread (seed, 1, size, f) != size)
      return 1;
    fclose (f);
    LLVMFuzzerTestOneInput (seed, size);
    for (long r = 0; r < runs; r++) {
      size_t len = size;
      memcpy (d, seed, size);
      mutate (d, &len, hot);
      LLVMFuzzerTestOneInput (d, len);
    }
    printf ("%s: seed + %ld mutants, no crash\n", argv[i], runs);
    free (seed);
    free (d);
  }
  return 0;
}
