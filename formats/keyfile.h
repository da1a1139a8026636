/* luks-nbd: passphrase sources (see keyfile.c). */
#ifndef LUKS_NBD_KEYFILE_H
#define LUKS_NBD_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

/* *pass is secure memory of *alloc bytes; free with luks_secret_free. */
int keyfile_read (const char *path, bool strip_newline, char **pass,
                  size_t *len, size_t *alloc);

#endif
