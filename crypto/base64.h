/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: base64 decoding and encoding of LUKS2 JSON salts and digests. */
#ifndef LUKS_NBD_BASE64_H
#define LUKS_NBD_BASE64_H

#include <stddef.h>

/* Decodes standard base64 (with '=' padding) into out (cap bytes).
 * Returns the decoded length, or -EINVAL on bad input or overflow. */
int base64_decode (const char *in, void *out, size_t cap);

/* Encodes len bytes as standard base64 with padding into out, which
 * holds base64_encoded_len(len) bytes (the NUL included). */
#define base64_encoded_len(len) (((len) + 2) / 3 * 4 + 1)
void base64_encode (const void *in, size_t len, char *out);

#endif
