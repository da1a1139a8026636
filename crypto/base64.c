/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: base64 decoding (see base64.h). */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "crypto/base64.h"

static int
sextet (char c)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

int
base64_decode (const char *in, void *out, size_t cap)
{
  size_t len = strlen (in), n = 0;
  uint8_t *o = out;

  if (len % 4 != 0)
    return -EINVAL;
  for (size_t i = 0; i < len; i += 4) {
    int v[4], pad = 0;
    for (int j = 0; j < 4; j++) {
      if (in[i + j] == '=' && i + 4 == len && j >= 2) {
        v[j] = 0;
        pad++;
        continue;
      }
      if (pad) /* data after '=' */
        return -EINVAL;
      v[j] = sextet (in[i + j]);
      if (v[j] < 0)
        return -EINVAL;
    }
    uint32_t w = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 |
                 (uint32_t) v[2] << 6 | (uint32_t) v[3];
    size_t bytes = 3 - (size_t) pad;
    if (n + bytes > cap)
      return -EINVAL;
    for (size_t k = 0; k < bytes; k++)
      o[n++] = (uint8_t) (w >> (16 - 8 * k));
  }
  return (int) n;
}

void
base64_encode (const void *in, size_t len, char *out)
{
  static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const uint8_t *p = in;
  size_t o = 0;

  for (size_t i = 0; i < len; i += 3) {
    size_t n = len - i < 3 ? len - i : 3;
    uint32_t w = (uint32_t) p[i] << 16;
    if (n > 1)
      w |= (uint32_t) p[i + 1] << 8;
    if (n > 2)
      w |= p[i + 2];
    for (size_t k = 0; k < 4; k++)
      out[o++] = k <= n ? alphabet[(w >> (18 - 6 * k)) & 63] : '=';
  }
  out[o] = '\0';
}
