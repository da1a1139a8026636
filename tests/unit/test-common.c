/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Proves the byte-order and checked-arithmetic helpers in common/. */
#include <config.h>

#include <errno.h>
#include <stdint.h>

#include "common/byteorder.h"
#include "common/checked.h"
#include "common/error_msg.h"
#include "tests/lib/tap.h"

int
main (void)
{
  unsigned char b[8];
  uint64_t r;

  store_be64 (b, UINT64_C (0x0102030405060708));
  ok (b[0] == 1 && b[7] == 8, "store_be64 puts the high byte first");
  ok (load_be64 (b) == UINT64_C (0x0102030405060708), "load_be64 round trip");
  ok (load_be32 (b + 4) == 0x05060708, "load_be32");
  ok (load_be16 (b + 6) == 0x0708, "load_be16");
  store_le64 (b, UINT64_C (0x0102030405060708));
  ok (b[0] == 8 && b[7] == 1, "store_le64 puts the low byte first");
  store_le32 (b, 0xa1b2c3d4);
  ok (b[0] == 0xd4 && b[3] == 0xa1, "store_le32");

  ok (!ckd_add_u64 (&r, 1, 2) && r == 3, "ckd_add_u64 adds");
  ok (ckd_add_u64 (&r, UINT64_MAX, 1), "ckd_add_u64 reports overflow");
  ok (ckd_mul_u64 (&r, UINT64_C (1) << 32, UINT64_C (1) << 32),
      "ckd_mul_u64 reports overflow");
  ok (range_within (10, 5, 15) && !range_within (10, 6, 15),
      "range_within checks the end");
  ok (!range_within (UINT64_MAX - 1, 4, UINT64_MAX),
      "range_within refuses a wrapping range");
  ok (ranges_overlap (0, 10, 9, 1) && !ranges_overlap (0, 10, 10, 1),
      "ranges_overlap is half-open");
  ok (is_power_of_2 (4096) && !is_power_of_2 (0) && !is_power_of_2 (1536),
      "is_power_of_2");

  ok (error_set (-EINVAL, "field %s", "x") == -EINVAL &&
        strcmp (error_message (), "field x") == 0,
      "error_set keeps the message");
  error_prefix (-EINVAL, "file %s", "h.img");
  ok (strcmp (error_message (), "file h.img: field x") == 0,
      "error_prefix prepends context");
  ok (error_append (-EINVAL, " (%s)", "hint") == -EINVAL &&
        strcmp (error_message (), "file h.img: field x (hint)") == 0,
      "error_append adds a hint after the cause");
  return tap_done ();
}
