/* luks-nbd: base64 decoding of LUKS2 JSON salts and digests. */
#ifndef LUKS_NBD_BASE64_H
#define LUKS_NBD_BASE64_H

#include <stddef.h>

/* Decodes standard base64 (with '=' padding) into out (cap bytes).
 * Returns the decoded length, or -EINVAL on bad input or overflow. */
int base64_decode (const char *in, void *out, size_t cap);

#endif
