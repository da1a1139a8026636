/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: does the payload decrypt to data?  A header of another
 * volume with the same passphrase unlocks, and then decrypts the payload
 * to bytes indistinguishable from random; the first write through it
 * turns that into corruption.  Real disks hold structure (partition
 * tables, superblocks, zeros, text, code): a byte histogram tells it
 * from random with overwhelming odds.
 *
 * Sampled: the first 64 KiB (where partition tables and superblocks
 * live) and blocks spread over the whole volume.  A block whose
 * ciphertext is all zeros is skipped: it was never written through any
 * header (a fresh payload over a zeroed or sparse file, a qcow2 or NBD
 * hole, a trimmed range), and its "plaintext" is noise under the right
 * key too.  The export is refused only if enough blocks were written
 * and every one decrypts to random-looking bytes; one structured
 * block passes, since a wrong key never yields one.  A read that fails
 * leaves the payload unchecked (with a warning), not refused. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/error_msg.h"
#include "crypto/luks.h"
#include "formats/node.h"

#define BLOCK 4096 /* whole sectors of any LUKS sector size */
#define FIRST_BLOCKS 16
#define SPREAD_BLOCKS 16
/* Pearson's chi-square of a block's byte histogram against the uniform
 * one (255 degrees of freedom: mean 255, deviation 22.6).  Random bytes
 * exceed 512 with odds below 1e-18; structured data (a sector of zeros
 * scores 1,044,480, English text tens of thousands) is far above. */
#define CHI2_RANDOM_MAX 512
/* Fewer written blocks than this are not evidence enough to refuse: one
 * guest write of random bytes to a fresh volume (dd of /dev/urandom over
 * a partition table, say) would otherwise keep the export down at its next
 * start.  A wrong header on a used volume meets far more: the first 64 KiB
 * alone are 16 blocks that partitioning, formatting or cryptsetup's
 * reencrypt have written. */
#define MIN_WRITTEN_TO_REFUSE 8

/* The chi-square times the expected count (16), in integers. */
static bool
looks_random (const unsigned char *b)
{
  unsigned counts[256] = { 0 };
  uint64_t sum = 0;

  for (size_t i = 0; i < BLOCK; i++)
    counts[b[i]]++;
  for (size_t v = 0; v < 256; v++) {
    int64_t d = (int64_t) counts[v] - BLOCK / 256;
    sum += (uint64_t) (d * d);
  }
  return sum <= (uint64_t) CHI2_RANDOM_MAX * (BLOCK / 256);
}

static bool
all_zero (const unsigned char *b)
{
  return b[0] == 0 && memcmp (b, b + 1, BLOCK - 1) == 0;
}

/* One sample: *written if its ciphertext is not all zeros, *structured
 * if it then decrypts to something other than random bytes. */
static int
sample (struct node *luks, unsigned char *buf, uint64_t offset, bool *written,
        bool *structured)
{
  struct luks_volume *vol = node_luks_volume (luks);
  int r = node_luks_read_ciphertext (luks, buf, BLOCK, offset);

  if (r < 0)
    return r;
  *written = !all_zero (buf);
  if (!*written)
    return 0;
  r = luks_volume_crypt (vol, LUKS_DECRYPT, buf, BLOCK,
                         offset / luks_volume_sector_size (vol));
  if (r < 0)
    return r;
  *structured = !looks_random (buf);
  return 0;
}

int
node_luks_check_plaintext (struct node *luks, const char *payload,
                           const char *header)
{
  uint64_t blocks = luks->size / BLOCK;
  unsigned written = 0;
  bool structured = false;
  unsigned char *buf;
  int r = 0;

  if (blocks == 0)
    return 0;
  buf = malloc (BLOCK);
  if (!buf)
    return error_set (-ENOMEM, "out of memory");
  for (uint64_t i = 0;
       r == 0 && !structured && i < FIRST_BLOCKS + SPREAD_BLOCKS; i++) {
    /* The first blocks, then blocks at i/16 of the volume past them. */
    uint64_t b =
      i < FIRST_BLOCKS ? i : blocks * (i - FIRST_BLOCKS) / SPREAD_BLOCKS;
    bool w = false;
    if (b >= blocks || (i >= FIRST_BLOCKS && b < FIRST_BLOCKS))
      continue;
    r = sample (luks, buf, b * BLOCK, &w, &structured);
    written += w;
  }
  explicit_bzero (buf, BLOCK); /* plaintext */
  free (buf);
  /* A payload that fails reads now fails the client's reads too, as it
   * did before the check: it is served, with the reason it went
   * unchecked logged. */
  if (r < 0) {
    if (!node_luks_warning (luks))
      node_luks_set_warning (luks, "check-plaintext: not checked: %s",
                             error_message ());
    return 0;
  }
  if (written == 0 || structured)
    return 0;
  if (written < MIN_WRITTEN_TO_REFUSE) {
    if (!node_luks_warning (luks))
      node_luks_set_warning (luks,
                             "check-plaintext: only %u written block(s) "
                             "sampled, all random-looking: too few to tell a "
                             "wrong header from random data written by a "
                             "client; served",
                             written);
    return 0;
  }
  return error_set (-EINVAL,
                    "the payload %s does not decrypt to data with the header "
                    "%s: all %u written blocks sampled decrypt to bytes "
                    "indistinguishable from random, as another volume's "
                    "header with the same passphrase gives; check that "
                    "header= and payload= belong together (a mix-up served "
                    "would be corrupted by the first write).  If the "
                    "contents are meant to look random (a payload filled "
                    "with random data before luksFormat and not written "
                    "since, or random data stored raw), add "
                    "check-plaintext=off",
                    payload, header, written);
}
