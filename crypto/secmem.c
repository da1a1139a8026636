/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: secure memory (see secmem.h).  This file, like the rest of
 * crypto/, is allowed to call gcry_*; nothing above crypto/ does. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gcrypt.h>

#include "common/error_msg.h"
#include "crypto/secmem.h"

/* Room for a few volume keys, a 4000-stripe AF buffer of a 512-bit key
 * (256000 bytes) and passphrases; the pool grows on demand beyond it.
 * libgcrypt never makes an expansion pool larger than the size set here,
 * so it must hold the largest single secret: a key file of up to 8 MiB,
 * cryptsetup's limit (formats/keyfile.c).  Expansion pools are not
 * locked, and their pages are touched only when used. */
enum { SECMEM_POOL_BYTES = 1024 * 1024, SECMEM_EXPAND_BYTES = 9 * 1024 * 1024 };

#define GCRYPT_MIN_VERSION "1.10.0" /* first with Argon2 */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;
/* Why initialisation failed: error_set's message is the initialising
 * thread's, and every later caller (any thread) gets it again. */
static char init_error[256];
/* The first allocation from the primary pool, freed at once: its page is
 * the start of the pool libgcrypt mapped (secmem_relock). */
static uintptr_t pool_first;

static void
do_init (void)
{
  if (!gcry_check_version (GCRYPT_MIN_VERSION)) {
    init_result = -ENOTSUP;
    snprintf (init_error, sizeof init_error, "libgcrypt %s is older than %s",
              gcry_check_version (NULL), GCRYPT_MIN_VERSION);
    return;
  }
  /* Without CAP_IPC_LOCK or enough RLIMIT_MEMLOCK the pool is not
   * locked; libgcrypt then still keeps secrets apart and wipes them, and
   * the daemon's README says how to raise LimitMEMLOCK. */
  gcry_control (GCRYCTL_DISABLE_SECMEM_WARN);
  gcry_control (GCRYCTL_SUSPEND_SECMEM_WARN);
  /* Auto-expansion must be set before the pool exists. */
  gcry_control (GCRYCTL_AUTO_EXPAND_SECMEM, SECMEM_EXPAND_BYTES);
  if (gcry_control (GCRYCTL_INIT_SECMEM, SECMEM_POOL_BYTES, 0) != 0) {
    init_result = -ENOMEM;
    snprintf (init_error, sizeof init_error,
              "cannot initialise libgcrypt secure memory");
    return;
  }
  void *first = gcry_malloc_secure (1);
  pool_first = (uintptr_t) first;
  gcry_free (first);
  gcry_control (GCRYCTL_RESUME_SECMEM_WARN);
  gcry_control (GCRYCTL_INITIALIZATION_FINISHED, 0);
  init_result = 0;
}

int
secmem_init (void)
{
  pthread_once (&init_once, do_init);
  if (init_result < 0)
    return error_set (init_result, "%s", init_error);
  return 0;
}

/* libgcrypt mmaps the primary pool page-aligned, SECMEM_POOL_BYTES (a
 * multiple of the page size) long, and hands out its first block a block
 * header past its start. */
int
secmem_relock (void)
{
  uintptr_t page = (uintptr_t) sysconf (_SC_PAGESIZE);
  uintptr_t start = pool_first / page * page;

  if (!pool_first)
    return error_set (-EINVAL, "libgcrypt's secure memory is not set up");
  if (mlock ((void *) start, SECMEM_POOL_BYTES) != 0)
    return error_set (-errno,
                      "cannot lock libgcrypt's secure memory (%d KiB): %s "
                      "(raise RLIMIT_MEMLOCK, e.g. ulimit -l or LimitMEMLOCK=)",
                      SECMEM_POOL_BYTES / 1024, strerror (errno));
  return 0;
}

/* Initialised first: a secure allocation before the pool exists would
 * make libgcrypt set one up implicitly, without our sizes. */
void *
secmem_alloc (size_t n)
{
  void *p;

  if (secmem_init () < 0)
    return NULL;
  p = gcry_calloc_secure (1, n ? n : 1);
  if (!p)
    error_set (-ENOMEM, "out of secure memory allocating %zu bytes", n);
  return p;
}

char *
secmem_copy (const void *p, size_t n)
{
  char *c;

  if (n == SIZE_MAX) {
    error_set (-EOVERFLOW, "a secret of %zu bytes", n);
    return NULL;
  }
  c = secmem_alloc (n + 1);
  if (c)
    memcpy (c, p, n); /* the NUL: secmem_alloc zeroes */
  return c;
}

void
secmem_wipe (void *p, size_t n)
{
  if (p && n) {
    memset (p, 0, n);
    /* Keep the stores: the buffer escapes through this asm. */
    __asm__ __volatile__("" : : "r"(p) : "memory");
  }
}

void
secmem_free (void *p, size_t n)
{
  if (!p)
    return;
  secmem_wipe (p, n);
  gcry_free (p);
}

int
secmem_memcmp (const void *a, const void *b, size_t n)
{
  const volatile unsigned char *x = a, *y = b;
  unsigned char diff = 0;

  for (size_t i = 0; i < n; i++)
    diff |= x[i] ^ y[i];
  return diff != 0;
}
