/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: qcow2 header parsing and validation (pure: bytes in). */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/checked.h"
#include "common/error_msg.h"
#include "formats/qcow2.h"

/* The one definition of the qcow2 magic ("QFI\xfb"). */
static const uint8_t qcow2_magic[4] = { 'Q', 'F', 'I', 0xfb };

#define EXT_END 0
#define EXT_DATA_FILE 0x44415441u
#define EXT_BACKING_FORMAT 0xe2792acau

/* Checks that [offset, offset+len) lies in the file and is aligned. */
static int
check_table (const char *label, const char *field, uint64_t offset,
             uint64_t len, uint64_t cluster_size, uint64_t file_size)
{
  if (offset % cluster_size)
    return error_set (-EINVAL, "%s: qcow2 %s %llu is not cluster-aligned",
                      label, field, (unsigned long long) offset);
  if (!range_within (offset, len, file_size))
    return error_set (
      -EINVAL, "%s: qcow2 %s at %llu+%llu is past the end of the file", label,
      field, (unsigned long long) offset, (unsigned long long) len);
  return 0;
}

static int
parse_extensions (const uint8_t *buf, size_t len, const char *label,
                  struct qcow2_header *h)
{
  size_t off = h->header_length;

  while (off + 8 <= len) {
    uint32_t type = load_be32 (buf + off);
    uint32_t elen = load_be32 (buf + off + 4);
    if (type == EXT_END)
      return 0;
    if (type == EXT_DATA_FILE)
      h->external_data_file = true;
    if (elen > len - off - 8)
      return error_set (-EINVAL,
                        "%s: qcow2 header extension 0x%x overruns the header "
                        "cluster",
                        label, type);
    if (type == EXT_BACKING_FORMAT && elen < sizeof h->backing_format) {
      memcpy (h->backing_format, buf + off + 8, elen);
      h->backing_format[elen] = '\0';
    }
    off += 8 + ((elen + 7u) & ~7u);
  }
  return 0;
}

bool
qcow2_probe (const uint8_t *buf, size_t len)
{
  return len >= sizeof qcow2_magic &&
         memcmp (buf, qcow2_magic, sizeof qcow2_magic) == 0;
}

int
qcow2_header_parse (const uint8_t *buf, size_t len, uint64_t file_size,
                    const char *label, struct qcow2_header *h)
{
  uint64_t l1_bytes, reftable_bytes;
  int r;

  memset (h, 0, sizeof *h);
  if (len < 72 || !qcow2_probe (buf, len))
    return error_set (-EINVAL, "%s: not a qcow2 image (bad magic)", label);
  h->version = load_be32 (buf + 4);
  if (h->version != 2 && h->version != 3)
    return error_set (-ENOTSUP, "%s: qcow2 version %u is not supported", label,
                      h->version);
  h->backing_offset = load_be64 (buf + 8);
  h->backing_size = load_be32 (buf + 16);
  h->cluster_bits = load_be32 (buf + 20);
  h->size = load_be64 (buf + 24);
  uint32_t crypt = load_be32 (buf + 32);
  h->l1_size = load_be32 (buf + 36);
  h->l1_offset = load_be64 (buf + 40);
  h->reftable_offset = load_be64 (buf + 48);
  h->reftable_clusters = load_be32 (buf + 56);
  h->nb_snapshots = load_be32 (buf + 60);
  h->refcount_order = 4;
  h->header_length = 72;
  if (h->version == 3) {
    if (len < 104)
      return error_set (-EINVAL, "%s: qcow2 v3 header truncated", label);
    h->incompatible = load_be64 (buf + 72);
    h->compatible = load_be64 (buf + 80);
    h->autoclear = load_be64 (buf + 88);
    h->refcount_order = load_be32 (buf + 96);
    h->header_length = load_be32 (buf + 100);
    if (h->header_length < 104 || h->header_length % 8)
      return error_set (-EINVAL, "%s: qcow2 header_length %u is invalid", label,
                        h->header_length);
  }
  if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
      h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
    return error_set (-EINVAL, "%s: qcow2 cluster_bits %u outside %d..%d",
                      label, h->cluster_bits, QCOW2_MIN_CLUSTER_BITS,
                      QCOW2_MAX_CLUSTER_BITS);
  h->cluster_size = UINT64_C (1) << h->cluster_bits;
  if (h->header_length > h->cluster_size || h->header_length > len)
    return error_set (-EINVAL,
                      "%s: qcow2 header_length %u is larger than a cluster",
                      label, h->header_length);
  if (h->header_length > 104)
    h->compression = buf[104];
  if ((h->incompatible & QCOW2_INCOMPAT_COMPRESSION)
        ? h->compression > QCOW2_ZSTD
        : h->compression != 0)
    return error_set (-ENOTSUP, "%s: qcow2 compression type %u is unknown",
                      label, h->compression);
  if (h->size > QCOW2_MAX_VIRTUAL_SIZE)
    return error_set (-EINVAL, "%s: qcow2 size %llu is larger than 2^63", label,
                      (unsigned long long) h->size);
  if (crypt != 0)
    return error_set (-ENOTSUP,
                      "%s: qcow2 built-in encryption (crypt_method %u) is "
                      "not supported; encryption belongs to the LUKS layer",
                      label, crypt);
  if (h->incompatible & ~(uint64_t) QCOW2_INCOMPAT_KNOWN)
    return error_set (-ENOTSUP,
                      "%s: qcow2 unknown incompatible features 0x%llx", label,
                      (unsigned long long) (h->incompatible &
                                            ~(uint64_t) QCOW2_INCOMPAT_KNOWN));
  if (h->incompatible & QCOW2_INCOMPAT_EXTL2)
    return error_set (-ENOTSUP,
                      "%s: qcow2 extended L2 entries (subclusters) "
                      "are not supported",
                      label);
  if (h->refcount_order > 6)
    return error_set (-EINVAL, "%s: qcow2 refcount_order %u outside 0..6",
                      label, h->refcount_order);

  /* The L1 table must cover the virtual size. */
  uint64_t l2_entries = h->cluster_size / 8;
  uint64_t clusters = (h->size + h->cluster_size - 1) >> h->cluster_bits;
  uint64_t need_l1 = (clusters + l2_entries - 1) / l2_entries;
  if (h->l1_size < need_l1)
    return error_set (-EINVAL,
                      "%s: qcow2 l1_size %u is too small for the virtual "
                      "size (needs %llu)",
                      label, h->l1_size, (unsigned long long) need_l1);
  l1_bytes = (uint64_t) h->l1_size * 8;
  if (l1_bytes > QCOW2_MAX_L1_BYTES)
    return error_set (-EINVAL, "%s: qcow2 L1 table of %llu bytes exceeds %d",
                      label, (unsigned long long) l1_bytes, QCOW2_MAX_L1_BYTES);
  reftable_bytes = (uint64_t) h->reftable_clusters << h->cluster_bits;
  if (reftable_bytes > QCOW2_MAX_REFTABLE_BYTES)
    return error_set (
      -EINVAL, "%s: qcow2 refcount table of %llu bytes exceeds %d", label,
      (unsigned long long) reftable_bytes, QCOW2_MAX_REFTABLE_BYTES);
  if ((r = check_table (label, "l1_table_offset", h->l1_offset, l1_bytes,
                        h->cluster_size, file_size)) < 0 ||
      (r = check_table (label, "refcount_table_offset", h->reftable_offset,
                        reftable_bytes, h->cluster_size, file_size)) < 0)
    return r;
  if (h->backing_offset &&
      (h->backing_size == 0 || h->backing_size > QCOW2_MAX_BACKING_NAME ||
       !range_within (h->backing_offset, h->backing_size, h->cluster_size)))
    return error_set (-EINVAL,
                      "%s: qcow2 backing file name lies outside the "
                      "header cluster",
                      label);
  if (h->backing_offset) {
    if (h->backing_offset + h->backing_size > len)
      return error_set (-EINVAL, "%s: qcow2 backing file name is truncated",
                        label);
    memcpy (h->backing_name, buf + h->backing_offset, h->backing_size);
    h->backing_name[h->backing_size] = '\0';
    if (strlen (h->backing_name) != h->backing_size)
      return error_set (-EINVAL, "%s: qcow2 backing file name contains NUL",
                        label);
  }
  return parse_extensions (buf, len < h->cluster_size ? len : h->cluster_size,
                           label, h);
}
