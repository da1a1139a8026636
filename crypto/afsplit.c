/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: AF split and merge (see afsplit.h). */
#include <config.h>

#include <errno.h>
#include <string.h>

#include <gcrypt.h>

#include "crypto/afsplit.h"
#include "common/byteorder.h"
#include "common/error_msg.h"
#include "crypto/hash.h"
#include "crypto/secmem.h"

/* buf = H(0||buf[0..d)) || H(1||buf[d..2d)) || ..., the last block
 * truncated: the diffusion step of the LUKS AF splitter. */
static int
diffuse (int md_algo, uint8_t *buf, size_t len)
{
  size_t dlen = hash_length (md_algo);
  gcry_md_hd_t hd;
  uint8_t iv[4];

  if (gcry_md_open (&hd, md_algo, GCRY_MD_FLAG_SECURE) != 0)
    return error_set (-ENOMEM, "af: cannot open hash");
  for (size_t off = 0, i = 0; off < len; off += dlen, i++) {
    size_t n = len - off < dlen ? len - off : dlen;
    store_be32 (iv, (uint32_t) i);
    gcry_md_reset (hd);
    gcry_md_write (hd, iv, sizeof iv);
    gcry_md_write (hd, buf + off, n);
    memcpy (buf + off, gcry_md_read (hd, md_algo), n);
  }
  gcry_md_close (hd);
  return 0;
}

int
af_merge (int md_algo, const uint8_t *material, size_t key_len,
          uint32_t stripes, uint8_t *key)
{
  int r = 0;

  if (stripes == 0)
    return error_set (-EINVAL, "af: stripes is 0");
  memset (key, 0, key_len);
  for (uint32_t s = 0; s + 1 < stripes; s++) {
    const uint8_t *stripe = material + (size_t) s * key_len;
    for (size_t i = 0; i < key_len; i++)
      key[i] ^= stripe[i];
    r = diffuse (md_algo, key, key_len);
    if (r < 0)
      return r;
  }
  const uint8_t *last = material + (size_t) (stripes - 1) * key_len;
  for (size_t i = 0; i < key_len; i++)
    key[i] ^= last[i];
  return 0;
}

int
af_split (int md_algo, const uint8_t *key, size_t key_len, uint32_t stripes,
          uint8_t *material)
{
  uint8_t *d = secmem_alloc (key_len);
  int r = 0;

  if (!d)
    return -ENOMEM;
  if (stripes == 0)
    r = error_set (-EINVAL, "af: stripes is 0");
  /* d runs through the same steps as af_merge's key does. */
  for (uint32_t s = 0; r == 0 && s + 1 < stripes; s++) {
    uint8_t *stripe = material + (size_t) s * key_len;
    gcry_randomize (stripe, key_len, GCRY_STRONG_RANDOM);
    for (size_t i = 0; i < key_len; i++)
      d[i] ^= stripe[i];
    r = diffuse (md_algo, d, key_len);
  }
  if (r == 0) {
    uint8_t *last = material + (size_t) (stripes - 1) * key_len;
    for (size_t i = 0; i < key_len; i++)
      last[i] = d[i] ^ key[i];
  }
  secmem_free (d, key_len);
  return r;
}
