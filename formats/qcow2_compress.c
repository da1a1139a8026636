/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: compressed qcow2 clusters: raw deflate (qemu's default) and
 * zstd (compression_type=1). */
#include <config.h>

#include <errno.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>

#include "common/error_msg.h"
#include "formats/qcow2.h"

static int
inflate_raw (const void *in, size_t in_len, void *out, size_t out_len)
{
  z_stream z;
  int r;

  memset (&z, 0, sizeof z);
  /* qemu writes raw deflate with a 4 KiB window (windowBits -12). */
  if (inflateInit2 (&z, -12) != Z_OK)
    return error_set (-ENOMEM, "qcow2: inflateInit2 failed");
  z.next_in = (Bytef *) in;
  z.avail_in = (uInt) in_len;
  z.next_out = out;
  z.avail_out = (uInt) out_len;
  r = inflate (&z, Z_FINISH);
  inflateEnd (&z);
  /* The compressed run may be padded; a full cluster is what counts. */
  if ((r != Z_STREAM_END && r != Z_BUF_ERROR) || z.avail_out != 0)
    return error_set (-EIO, "qcow2: corrupt deflate cluster");
  return 0;
}

static int
unzstd (const void *in, size_t in_len, void *out, size_t out_len)
{
  ZSTD_DCtx *d = ZSTD_createDCtx ();
  ZSTD_inBuffer ib = { in, in_len, 0 };
  ZSTD_outBuffer ob = { out, out_len, 0 };
  size_t r;

  if (!d)
    return error_set (-ENOMEM, "qcow2: ZSTD_createDCtx failed");
  do {
    r = ZSTD_decompressStream (d, &ob, &ib);
  } while (!ZSTD_isError (r) && r != 0 && ob.pos < ob.size && ib.pos < ib.size);
  ZSTD_freeDCtx (d);
  if (ZSTD_isError (r) || ob.pos != out_len)
    return error_set (-EIO, "qcow2: corrupt zstd cluster");
  return 0;
}

int
qcow2_decompress (enum qcow2_compression type, const void *in, size_t in_len,
                  void *out, size_t out_len)
{
  return type == QCOW2_ZSTD ? unzstd (in, in_len, out, out_len)
                            : inflate_raw (in, in_len, out, out_len);
}
