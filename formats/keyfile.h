/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: passphrase sources (see keyfile.c). */
#ifndef LUKS_NBD_KEYFILE_H
#define LUKS_NBD_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

/* *pass is secure memory of *alloc bytes; free with secmem_free.
 * Messages name `label` (e.g. "credential=vm1.key"), or path if NULL.
 * An empty passphrase is refused. */
int keyfile_read (const char *path, const char *label, bool strip_newline,
                  char **pass, size_t *len, size_t *alloc);

#endif
