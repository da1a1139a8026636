/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: a whole LUKS1 or LUKS2 header file (binary headers, both
 * copies, JSON, keyslot areas) through luks_header_open.  For LUKS2 the
 * checksums are recomputed first, as cryptsetup's fuzzer does, so that
 * mutations reach the JSON parser instead of dying at the checksum. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "common/byteorder.h"
#include "common/error_msg.h"
#include "fuzz/fuzz.h"
#include "crypto/luks.h"

struct mem {
  const uint8_t *d;
  size_t n;
};

static int
mem_read (void *opaque, void *buf, size_t count, uint64_t offset)
{
  const struct mem *m = opaque;

  if (offset > m->n || count > m->n - offset)
    return error_set (-EIO, "short read");
  memcpy (buf, m->d + offset, count);
  return 0;
}

static void
fix_checksum (uint8_t *d, size_t n, uint64_t at)
{
  if (at + 4096 > n)
    return;
  uint64_t size = load_be64 (d + at + 8);
  if (size < 4096 || size > n - at || size > (4u << 20))
    return;
  memset (d + at + 448, 0, 64);
  gcry_md_hash_buffer (GCRY_MD_SHA256, d + at + 448, d + at, size);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  uint8_t *d = malloc (size + 1);
  struct luks_header *hdr = NULL;

  if (!d || luks_init () < 0)
    abort ();
  memcpy (d, data, size);
  if (size >= 4096 && load_be16 (d + 6) == 2) {
    uint64_t hs = load_be64 (d + 8);
    fix_checksum (d, size, 0);
    fix_checksum (d, size, hs);
  }
  struct mem m = { d, size };
  struct luks_source src = {
    .read = mem_read, .opaque = &m, .size = size, .name = "fuzz"
  };
  if (luks_header_open (&src, &hdr) == 0) {
    struct luks_header_info info;
    luks_header_info (hdr, &info);
    luks_header_free (hdr);
  }
  free (d);
  return 0;
}
