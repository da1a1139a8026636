/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: secure memory for secrets (passphrases, derived keys, AF
 * buffers, volume keys).  Backed by libgcrypt's locked pool; every free
 * wipes first.  The one secure-memory API of the tree: crypto/ uses it for
 * keys, and the layers above (formats/, server/, nbdkit/) for the
 * passphrases they hold; its interface has no libgcrypt types, so they
 * may include it beside crypto/luks.h (tests/test-layering.sh). */
#ifndef LUKS_NBD_SECMEM_H
#define LUKS_NBD_SECMEM_H

#include <stddef.h>

/* Initialise libgcrypt and its secure pool once per process (idempotent,
 * thread-safe).  Returns 0 or -errno with a message. */
int secmem_init (void);

/* Locks the primary pool's pages (again): mlock does not survive
 * fork(2), so a child that keeps the parent's secrets calls this.  0, or
 * -errno with a message if they cannot be locked. */
int secmem_relock (void);

/* Zeroed secure allocation (initialising the pool first if need be);
 * NULL (with a message) if the pool is full. */
void *secmem_alloc (size_t n);

/* A secure copy of n bytes with a NUL after them, n + 1 bytes: free with
 * secmem_free (p, n + 1).  NULL (with a message) if the pool is full. */
char *secmem_copy (const void *p, size_t n);

/* Wipes n bytes and frees; NULL is a no-op. */
void secmem_free (void *p, size_t n);

/* Wipe that the compiler may not elide. */
void secmem_wipe (void *p, size_t n);

/* Constant-time comparison: 0 if equal. */
int secmem_memcmp (const void *a, const void *b, size_t n);

#endif
