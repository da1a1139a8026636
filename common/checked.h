/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: checked arithmetic.  Every offset + count and every size
 * derived from untrusted input goes through these, so overflow is a
 * reported error instead of a wrapped value. */
#ifndef LUKS_NBD_CHECKED_H
#define LUKS_NBD_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

/* Returns true if a + b overflowed; *r is then unspecified. */
static inline bool
ckd_add_u64 (uint64_t *r, uint64_t a, uint64_t b)
{
  return __builtin_add_overflow (a, b, r);
}

static inline bool
ckd_mul_u64 (uint64_t *r, uint64_t a, uint64_t b)
{
  return __builtin_mul_overflow (a, b, r);
}

/* True if [offset, offset+count) lies inside [0, limit). */
static inline bool
range_within (uint64_t offset, uint64_t count, uint64_t limit)
{
  uint64_t end;
  return !ckd_add_u64 (&end, offset, count) && end <= limit;
}

/* True if [a, a+alen) and [b, b+blen) overlap; both ranges must already
 * be known not to overflow. */
static inline bool
ranges_overlap (uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
  return a < b + blen && b < a + alen;
}

static inline bool
is_power_of_2 (uint64_t v)
{
  return v && !(v & (v - 1));
}

#endif
