/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: a tiny TAP producer for the C unit tests.  Each check prints
 * "ok N - what" or "not ok N - what" with file, line and values. */
#ifndef LUKS_NBD_TAP_H
#define LUKS_NBD_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_count, tap_failures;

static void __attribute__ ((format (printf, 4, 5)))
tap_ok (int pass, const char *file, int line, const char *fmt, ...)
{
  va_list ap;

  printf ("%s %d - ", pass ? "ok" : "not ok", ++tap_count);
  va_start (ap, fmt);
  vprintf (fmt, ap);
  va_end (ap);
  printf ("\n");
  if (!pass) {
    tap_failures++;
    printf ("#   failed at %s:%d\n", file, line);
  }
  fflush (stdout);
}

#define ok(cond, ...) tap_ok (!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* Equality of two byte strings, printing both in hex on failure. */
#define ok_mem(a, b, n, ...)                                                   \
  do {                                                                         \
    int eq_ = memcmp ((a), (b), (n)) == 0;                                     \
    tap_ok (eq_, __FILE__, __LINE__, __VA_ARGS__);                             \
    if (!eq_) {                                                                \
      printf ("#   got:      ");                                               \
      for (size_t i_ = 0; i_ < (size_t) (n); i_++)                             \
        printf ("%02x", ((const unsigned char *) (a))[i_]);                    \
      printf ("\n#   expected: ");                                             \
      for (size_t i_ = 0; i_ < (size_t) (n); i_++)                             \
        printf ("%02x", ((const unsigned char *) (b))[i_]);                    \
      printf ("\n");                                                           \
    }                                                                          \
  } while (0)

static inline int
tap_done (void)
{
  printf ("1..%d\n", tap_count);
  return tap_failures ? 1 : 0;
}

/* Hex string -> bytes; returns the length. */
static inline size_t
unhex (const char *hex, unsigned char *out)
{
  size_t n = 0;
  for (; hex[0] && hex[1]; hex += 2) {
    unsigned v;
    sscanf (hex, "%2x", &v);
    out[n++] = (unsigned char) v;
  }
  return n;
}

#endif
