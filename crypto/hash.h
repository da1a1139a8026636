/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: LUKS hash names (as cryptsetup writes them) -> libgcrypt. */
#ifndef LUKS_NBD_HASH_H
#define LUKS_NBD_HASH_H

#include <stddef.h>

/* Returns the libgcrypt MD algorithm for a LUKS hash name ("sha256",
 * "ripemd160", ...), or -ENOTSUP with a message naming `what`. */
int hash_lookup (const char *name, const char *what);

/* Digest length in bytes of a looked-up algorithm. */
size_t hash_length (int md_algo);

/* out = hash(in); out has hash_length(md_algo) bytes. Secure memory. */
int hash_buffer (int md_algo, void *out, const void *in, size_t len);

/* out (32 bytes) = HMAC-SHA256 of in under a random key made once per
 * process and kept in secure memory: equal inputs give equal outputs
 * within this process, yet a copy of out in ordinary memory (a core, a
 * swapped page) cannot be searched for its input offline, as a plain
 * hash of a passphrase could. */
int hash_keyed (void *out, const void *in, size_t len);

#endif
