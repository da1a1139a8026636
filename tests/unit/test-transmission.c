/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Proves the transmission phase's steps that need no socket
 * (server/transmission_rules.h): check_request's rules at their
 * boundaries (length 0, the last byte, one past the end, offset + length
 * wrapping, the 32 MiB payload maximum, 64-bit lengths with extended
 * headers, flags per command and negotiation, read-only, inactive, trim
 * and block status not offered); request_split's parts (contiguous, on
 * block-size multiples, at most the worker threads and SPLIT_MAX_PARTS,
 * none below SPLIT_MIN_PART); build_status's reply chunk (clipped to the
 * request, REQ_ONE, the compact 4 GiB - 4 KiB cap, 64-bit extended
 * descriptors, at most MAX_DESCRIPTORS). */
#include <config.h>

#include <stdlib.h>

#include "common/byteorder.h"
/* The implementer's header: the split test builds a bare node of a given
 * block size, which the server itself (formats/stack.h) cannot. */
#include "formats/node.h"
#include "server/internal.h"
#include "server/nbd-protocol.h"
#include "server/transmission_rules.h"
#include "tests/lib/tap.h"

#define KIB UINT64_C (1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)

/* What main.c defines for the server core it links with. */
uv_loop_t *server_loop;

bool
server_stopping (void)
{
  return false;
}

/* ---- check_request ---------------------------------------------------- */

static struct export exp_;
static struct conn conn_;

/* A connection to a read-write, active export of `size` bytes, with
 * nothing negotiated beyond the defaults. */
static struct conn *
conn_of_size (uint64_t size)
{
  exp_ = (struct export){ .readonly = false, .discard = true };
  atomic_store (&exp_.active, true);
  conn_ = (struct conn){ .exp = &exp_, .size = size };
  return &conn_;
}

/* Refusals that came without a rule to log (each must name one). */
static unsigned refusals_without_rule;

static uint32_t
check (uint16_t type, uint16_t flags, uint64_t offset, uint64_t count)
{
  const char *why = NULL;
  uint32_t err = check_request (&conn_, type, flags, offset, count, &why);

  if (err != 0 && (why == NULL || why[0] == '\0'))
    refusals_without_rule++;
  return err;
}

static void
test_ranges (void)
{
  const uint64_t S = MIB;

  conn_of_size (S);
  ok (check (NBD_CMD_READ, 0, 0, 1) == 0, "read of the first byte");
  ok (check (NBD_CMD_READ, 0, S - 1, 1) == 0, "read of the last byte");
  ok (check (NBD_CMD_READ, 0, 0, S) == 0, "read of the whole export");
  ok (check (NBD_CMD_READ, 0, S - 1, 2) == NBD_EINVAL,
      "read one byte past the end: EINVAL");
  ok (check (NBD_CMD_READ, 0, S, 1) == NBD_EINVAL,
      "read starting at the end: EINVAL");
  ok (check (NBD_CMD_WRITE, 0, S - 1, 1) == 0, "write of the last byte");
  ok (check (NBD_CMD_WRITE, 0, S - 1, 2) == NBD_ENOSPC,
      "write one byte past the end: ENOSPC");
  ok (check (NBD_CMD_WRITE_ZEROES, 0, S, 1) == NBD_ENOSPC,
      "write zeroes starting at the end: ENOSPC");
  ok (check (NBD_CMD_TRIM, 0, S - 4096, 4097) == NBD_ENOSPC,
      "trim one byte past the end: ENOSPC");
  ok (check (NBD_CMD_CACHE, 0, S - 1, 2) == NBD_EINVAL,
      "cache one byte past the end: EINVAL");

  ok (check (NBD_CMD_READ, 0, 0, 0) == NBD_EINVAL, "read of length 0: EINVAL");
  ok (check (NBD_CMD_WRITE, 0, S, 0) == NBD_EINVAL,
      "write of length 0 at the end: EINVAL");
  ok (check (NBD_CMD_WRITE_ZEROES, 0, 0, 0) == NBD_EINVAL,
      "write zeroes of length 0: EINVAL");
  conn_.structured = conn_.base_allocation = true;
  ok (check (NBD_CMD_BLOCK_STATUS, 0, 0, 0) == NBD_EINVAL,
      "block status of length 0: EINVAL");
  ok (check (NBD_CMD_BLOCK_STATUS, 0, S - 1, 1) == 0,
      "block status of the last byte");

  /* offset + length wraps: invalid whatever the command, never ENOSPC. */
  ok (check (NBD_CMD_WRITE, 0, UINT64_MAX, 2) == NBD_EINVAL,
      "write whose offset + length wraps: EINVAL, not ENOSPC");
  ok (check (NBD_CMD_READ, 0, UINT64_MAX - 1, 2) == NBD_EINVAL,
      "read ending exactly at 2^64 (wraps to 0): EINVAL");
  ok (check (NBD_CMD_WRITE_ZEROES, 0, 1, UINT64_MAX) == NBD_EINVAL,
      "write zeroes of 2^64 - 1 bytes at 1 (wraps): EINVAL");
}

static void
test_lengths (void)
{
  conn_of_size (64 * MIB);
  ok (check (NBD_CMD_READ, 0, 0, MAX_REQUEST_BYTES) == 0,
      "read of exactly 32 MiB");
  ok (check (NBD_CMD_READ, 0, 0, MAX_REQUEST_BYTES + 1) == NBD_EOVERFLOW,
      "read of 32 MiB + 1: EOVERFLOW");
  ok (check (NBD_CMD_WRITE, 0, 0, MAX_REQUEST_BYTES + 1) == NBD_EOVERFLOW,
      "write of 32 MiB + 1: EOVERFLOW");
  ok (check (NBD_CMD_WRITE, 0, 64 * MIB - 1, MAX_REQUEST_BYTES + 1) ==
        NBD_EOVERFLOW,
      "the payload maximum is checked before the range");
  ok (check (NBD_CMD_WRITE_ZEROES, 0, 0, 64 * MIB) == 0,
      "write zeroes of 64 MiB: no payload, no 32 MiB maximum");

  /* Extended headers: 64-bit lengths for the commands without payload. */
  conn_of_size (UINT64_MAX);
  conn_.structured = conn_.extended = conn_.base_allocation = true;
  ok (check (NBD_CMD_WRITE_ZEROES, 0, 0, 5 * GIB) == 0,
      "extended: write zeroes of 5 GiB (a length over 32 bits)");
  ok (check (NBD_CMD_TRIM, 0, GIB, UINT64_MAX - GIB) == 0,
      "extended: trim up to the last byte of a 2^64 - 1 byte export");
  ok (check (NBD_CMD_BLOCK_STATUS, 0, 0, UINT64_MAX) == 0,
      "extended: block status of 2^64 - 1 bytes");
  ok (check (NBD_CMD_CACHE, 0, 1, UINT64_MAX) == NBD_EINVAL,
      "extended: cache of 2^64 - 1 bytes at 1 wraps: EINVAL");
  ok (check (NBD_CMD_READ, 0, 0, 4 * GIB) == NBD_EOVERFLOW,
      "extended: read of 4 GiB: EOVERFLOW (payloads keep the maximum)");
  ok (check (NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 0,
             (uint64_t) MAX_REQUEST_BYTES) == 0,
      "extended: write of 32 MiB with PAYLOAD_LEN");
}

static void
test_flags (void)
{
  conn_of_size (MIB);
  ok (check (NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512) == NBD_EINVAL,
      "DF without structured replies: EINVAL");
  ok (check (NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 512) == NBD_EINVAL,
      "PAYLOAD_LEN without extended headers: EINVAL");
  ok (check (NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 512) == NBD_EINVAL,
      "REQ_ONE on a read: EINVAL");
  ok (check (NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 512) == NBD_EINVAL,
      "NO_HOLE on a write (only write zeroes takes it): EINVAL");
  ok (check (NBD_CMD_READ, 0x8000, 0, 512) == NBD_EINVAL,
      "an unknown flag bit: EINVAL");
  ok (check (NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512) == 0,
      "FUA on a read (valid on every command)");
  ok (check (NBD_CMD_WRITE_ZEROES,
             NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
             0, 512) == 0,
      "write zeroes with FUA, NO_HOLE and FAST_ZERO");
  ok (check (NBD_CMD_FLUSH, 0, 0, 0) == 0, "flush (no range)");
  ok (check (NBD_CMD_FLUSH, 0, UINT64_MAX, UINT64_MAX) == 0,
      "flush: its offset and length are not a range");
  ok (check (NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0) == 0, "flush with FUA");
  ok (check (NBD_CMD_FLUSH, NBD_CMD_FLAG_REQ_ONE, 0, 0) == NBD_EINVAL,
      "flush with REQ_ONE: EINVAL");
  ok (check (NBD_CMD_DISC, 0, 0, 0) == 0, "disconnect");
  ok (check (NBD_CMD_DISC, NBD_CMD_FLAG_DF, 0, 0) == NBD_EINVAL,
      "disconnect with DF: EINVAL");
  ok (check (8, 0, 0, 512) == NBD_EINVAL,
      "command 8 (RESIZE, not offered): EINVAL");
  ok (check (UINT16_MAX, 0, 0, 512) == NBD_EINVAL, "command 65535: EINVAL");

  conn_.structured = true;
  ok (check (NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512) == 0,
      "DF with structured replies");
  ok (check (NBD_CMD_BLOCK_STATUS, 0, 0, 512) == NBD_EINVAL,
      "block status with no metadata context selected: EINVAL");
  conn_.base_allocation = true;
  ok (check (NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 512) == 0,
      "block status with REQ_ONE once base:allocation is selected");
  conn_.extended = true;
  ok (check (NBD_CMD_WRITE, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 512) == 0,
      "PAYLOAD_LEN on a write with extended headers");
  ok (check (NBD_CMD_READ, NBD_CMD_FLAG_PAYLOAD_LEN, 0, 512) == NBD_EINVAL,
      "PAYLOAD_LEN on a read: EINVAL");
}

static void
test_export_state (void)
{
  conn_of_size (MIB);
  exp_.discard = false;
  ok (check (NBD_CMD_TRIM, 0, 0, 4096) == NBD_EINVAL,
      "trim with discard=off (not offered): EINVAL");

  conn_of_size (MIB);
  exp_.readonly = true;
  ok (check (NBD_CMD_WRITE, 0, 0, 512) == NBD_EPERM,
      "write to a read-only export: EPERM");
  ok (check (NBD_CMD_WRITE_ZEROES, 0, 0, 512) == NBD_EPERM,
      "write zeroes to a read-only export: EPERM");
  ok (check (NBD_CMD_TRIM, 0, 0, 512) == NBD_EPERM,
      "trim on a read-only export: EPERM");
  ok (check (NBD_CMD_WRITE, 0, MIB, 512) == NBD_EPERM,
      "read-only is answered before the range (EPERM, not ENOSPC)");
  ok (check (NBD_CMD_READ, 0, 0, 512) == 0 &&
        check (NBD_CMD_CACHE, 0, 0, 512) == 0,
      "read and cache on a read-only export");
  ok (check (NBD_CMD_FLUSH, 0, 0, 0) == 0, "flush on a read-only export");

  conn_of_size (MIB);
  atomic_store (&exp_.active, false);
  ok (check (NBD_CMD_WRITE, 0, 0, 512) == NBD_EPERM,
      "write to an inactive export: EPERM");
  ok (check (NBD_CMD_TRIM, 0, 0, 512) == NBD_EPERM,
      "trim on an inactive export: EPERM");
  ok (check (NBD_CMD_READ, 0, 0, 512) == 0, "read from an inactive export");
}

/* ---- request_split ---------------------------------------------------- */

static struct node split_node;

/* Splits a request and checks what every split must give: parts in
 * order, contiguous, covering [offset, offset + count) exactly, each
 * but the last a multiple of the block size, no empty part (but a
 * flush's one); returns the number of parts. */
static unsigned
split_checked (struct request *r, uint16_t type, uint32_t bs, uint64_t offset,
               uint64_t count, const char *what)
{
  bool good = true;
  uint64_t at = offset;
  unsigned n;

  split_node = (struct node){ .block_size = bs };
  *r = (struct request){ .type = type, .node = &split_node };
  n = request_split (r, offset, count);
  good = n >= 1 && n <= SPLIT_MAX_PARTS;
  for (unsigned i = 0; good && i < n; i++) {
    const struct part *p = &r->parts[i];
    good = p->req == r && p->work.data == p && p->offset == at &&
           (p->count > 0 || count == 0) &&
           (i == n - 1 || p->count % (bs ? bs : 1) == 0);
    at += p->count;
  }
  ok (good && at == offset + count, "split %s: %u parts cover it exactly", what,
      n);
  return n;
}

static void
test_split (void)
{
  struct request *r = calloc (1, sizeof *r);
  unsigned n;

  transmission_set_threads (4);
  n = split_checked (r, NBD_CMD_READ, 4096, 0, 32 * MIB, "32 MiB read");
  ok (n == 4 && r->parts[0].count == 8 * MIB,
      "a 32 MiB read on 4 threads: 4 parts of 8 MiB (got %u)", n);
  n = split_checked (r, NBD_CMD_READ, 4096, 0, 2 * SPLIT_MIN_PART - 1,
                     "read of 2 x SPLIT_MIN_PART - 1");
  ok (n == 1, "just under two minimum parts: one part (got %u)", n);
  n = split_checked (r, NBD_CMD_READ, 4096, 0, 2 * SPLIT_MIN_PART,
                     "read of 2 x SPLIT_MIN_PART");
  ok (n == 2, "exactly two minimum parts: two parts (got %u)", n);
  n = split_checked (r, NBD_CMD_WRITE, 4096, 3 * 4096, MIB + 512,
                     "unaligned-length write");
  ok (n == 4 && r->parts[0].count == 65 * 4096 &&
        r->parts[3].count == MIB + 512 - 3 * 65 * 4096,
      "1 MiB + 512 on 4 threads: three parts of 65 sectors, the rest last");
  ok (r->parts[1].offset % 4096 == 0 && r->parts[3].offset % 4096 == 0,
      "an aligned request's parts start on sector boundaries");
  n = split_checked (r, NBD_CMD_WRITE, 512, 100, 3 * SPLIT_MIN_PART + 1,
                     "write at offset 100");
  ok (n == 3, "3 minimum parts + 1 byte: three parts (got %u)", n);
  n = split_checked (r, NBD_CMD_READ, 0, 0, 4 * SPLIT_MIN_PART + 3,
                     "read on a node with block size 0");
  ok (n == 4, "block size 0 counts as 1 (got %u parts)", n);

  transmission_set_threads (1);
  n = split_checked (r, NBD_CMD_READ, 4096, 0, 32 * MIB, "read on 1 thread");
  ok (n == 1, "one worker thread: one part (got %u)", n);
  transmission_set_threads (0);
  n = split_checked (r, NBD_CMD_READ, 4096, 0, 32 * MIB,
                     "read after set_threads(0)");
  ok (n == 1, "set_threads(0) means one thread (got %u)", n);

  transmission_set_threads (64);
  n = split_checked (r, NBD_CMD_READ, 4096, 0, 32 * MIB, "read on 64 threads");
  ok (n == SPLIT_MAX_PARTS, "64 threads: at most SPLIT_MAX_PARTS (got %u)", n);
  n = split_checked (r, NBD_CMD_WRITE_ZEROES, 4096, GIB, 256 * MIB,
                     "256 MiB write zeroes");
  ok (n == SPLIT_MAX_PARTS && r->parts[7].offset == GIB + 224 * MIB,
      "write zeroes splits too: 8 parts of 32 MiB (got %u)", n);
  n = split_checked (r, NBD_CMD_TRIM, 4096, 0, 256 * MIB, "256 MiB trim");
  ok (n == 1, "a trim stays one part (got %u)", n);
  n = split_checked (r, NBD_CMD_CACHE, 4096, 0, 32 * MIB, "32 MiB cache");
  ok (n == 1, "a cache stays one part (got %u)", n);
  n = split_checked (r, NBD_CMD_BLOCK_STATUS, 4096, 0, 4 * GIB,
                     "4 GiB block status");
  ok (n == 1, "a block status stays one part (got %u)", n);
  n = split_checked (r, NBD_CMD_FLUSH, 4096, 0, 0, "flush");
  ok (n == 1 && r->parts[0].count == 0, "a flush is one part of length 0");
  n = split_checked (r, NBD_CMD_READ, 4096, 4096, 1, "one-byte read");
  ok (n == 1 && r->parts[0].count == 1, "a one-byte read is one part");
  free (r);
}

/* ---- build_status ----------------------------------------------------- */

struct status_case {
  bool extended;
  uint16_t flags;
  uint64_t offset, count;
  const struct extent *e;
  size_t n;
};

/* Builds the reply for one case into r (r->status to be freed). */
static size_t
status_of (struct request *r, struct conn *c, const struct status_case *k)
{
  *c = (struct conn){ .structured = true, .extended = k->extended };
  *r = (struct request){ .conn = c,
                         .flags = k->flags,
                         .handle = UINT64_C (0x1122334455667788),
                         .offset = k->offset,
                         .count = k->count };
  r->extents.e = (struct extent *) k->e;
  r->extents.n = r->extents.cap = k->n;
  return build_status (r);
}

/* The descriptors of a reply: count, and each length and flags. */
static size_t
descriptors (const struct request *r, bool ext, uint64_t *len, uint32_t *flags,
             size_t max)
{
  const uint8_t *p = (const uint8_t *) r->status;
  size_t hdr = ext ? NBD_EXTENDED_REPLY_SIZE : NBD_STRUCTURED_REPLY_SIZE;
  uint64_t chunk = ext ? load_be64 (p + 24) : load_be32 (p + 16);
  size_t lead = ext ? 8 : 4, size = ext ? 16 : 8;
  size_t n = (chunk - lead) / size;

  for (size_t i = 0; i < n && i < max; i++) {
    const uint8_t *d = p + hdr + lead + size * i;
    len[i] = ext ? load_be64 (d) : load_be32 (d);
    flags[i] = ext ? (uint32_t) load_be64 (d + 8) : load_be32 (d + 4);
  }
  return n;
}

static void
test_status_headers (void)
{
  static const struct extent e[] = { { 0, MIB, 3 } };
  struct request r;
  struct conn c;
  const uint8_t *p;
  size_t size;

  size =
    status_of (&r, &c, &(struct status_case){ false, 0, 4096, 4096, e, 1 });
  p = (const uint8_t *) r.status;
  ok (size == NBD_STRUCTURED_REPLY_SIZE + 4 + 8 &&
        load_be32 (p) == NBD_STRUCTURED_REPLY_MAGIC &&
        load_be16 (p + 4) == NBD_REPLY_FLAG_DONE &&
        load_be16 (p + 6) == NBD_REPLY_TYPE_BLOCK_STATUS &&
        load_be64 (p + 8) == UINT64_C (0x1122334455667788) &&
        load_be32 (p + 16) == 4 + 8,
      "compact: a structured BLOCK_STATUS chunk, DONE, the handle, length 12");
  ok (load_be32 (p + 20) == NBD_CONTEXT_ID_BASE_ALLOCATION &&
        load_be32 (p + 24) == 4096 && load_be32 (p + 28) == 3,
      "compact: base:allocation, one descriptor clipped to the request");
  free (r.status);

  size = status_of (&r, &c, &(struct status_case){ true, 0, 4096, 4096, e, 1 });
  p = (const uint8_t *) r.status;
  ok (size == NBD_EXTENDED_REPLY_SIZE + 8 + 16 &&
        load_be32 (p) == NBD_EXTENDED_REPLY_MAGIC &&
        load_be16 (p + 6) == NBD_REPLY_TYPE_BLOCK_STATUS_EXT &&
        load_be64 (p + 16) == 4096 && load_be64 (p + 24) == 8 + 16,
      "extended: a BLOCK_STATUS_EXT chunk with the request's offset, "
      "length 24");
  ok (load_be32 (p + 32) == NBD_CONTEXT_ID_BASE_ALLOCATION &&
        load_be32 (p + 36) == 1 && load_be64 (p + 40) == 4096 &&
        load_be64 (p + 48) == 3,
      "extended: base:allocation, descriptor count 1, 64-bit length and "
      "flags");
  free (r.status);
}

static void
test_status_clipping (void)
{
  static const struct extent three[] = { { 0, 4096, 1 },
                                         { 4096, 8192, 0 },
                                         { 12288, 4096, 3 } };
  static const struct extent skip[] = { { 0, 100, 2 }, { 100, 5000, 0xff } };
  static const struct extent edges[] = { { 0, 4096, 1 },
                                         { 4096, 1, 2 },
                                         { 4097, 4096, 0 } };
  uint64_t len[8];
  uint32_t fl[8];
  struct request r;
  struct conn c;
  size_t n;

  for (int ext = 0; ext <= 1; ext++) {
    status_of (&r, &c,
               &(struct status_case){ ext, 0, 2048, 14000 - 2048, three, 3 });
    n = descriptors (&r, ext, len, fl, 8);
    ok (n == 3 && len[0] == 2048 && fl[0] == 1 && len[1] == 8192 &&
          fl[1] == 0 && len[2] == 14000 - 12288 && fl[2] == 3,
        "%s: three extents clipped to [2048, 14000)",
        ext ? "extended" : "compact");
    free (r.status);

    status_of (&r, &c,
               &(struct status_case){ ext, NBD_CMD_FLAG_REQ_ONE, 2048,
                                      14000 - 2048, three, 3 });
    n = descriptors (&r, ext, len, fl, 8);
    ok (n == 1 && len[0] == 2048 && fl[0] == 1,
        "%s: REQ_ONE keeps only the first descriptor",
        ext ? "extended" : "compact");
    free (r.status);
  }

  status_of (&r, &c, &(struct status_case){ false, 0, 200, 1000, skip, 2 });
  n = descriptors (&r, false, len, fl, 8);
  ok (n == 1 && len[0] == 1000 && fl[0] == 3,
      "an extent wholly before the request is skipped; flags keep their "
      "low two bits");
  free (r.status);

  /* The request is [4096, 4097): only the one-byte extent touches it. */
  status_of (&r, &c, &(struct status_case){ false, 0, 4096, 1, edges, 3 });
  n = descriptors (&r, false, len, fl, 8);
  ok (n == 1 && len[0] == 1 && fl[0] == 2,
      "extents ending at the request's start or starting at its end are "
      "left out");
  free (r.status);

  status_of (&r, &c, &(struct status_case){ false, 0, 8192, 4096, NULL, 0 });
  n = descriptors (&r, false, len, fl, 8);
  ok (n == 1 && len[0] == 4096 && fl[0] == 0,
      "no extents known: one descriptor of the whole request, data");
  free (r.status);
  status_of (&r, &c,
             &(struct status_case){ true, 0, 0, 10 * GIB, edges + 2, 0 });
  n = descriptors (&r, true, len, fl, 8);
  ok (n == 1 && len[0] == 10 * GIB && fl[0] == 0,
      "extended, no extents: one 10 GiB descriptor");
  free (r.status);
}

static void
test_status_lengths (void)
{
  static const struct extent big[] = { { 0, 8 * GIB, 1 },
                                       { 8 * GIB, 4096, 0 } };
  static const struct extent at_cap[] = { { 0, UINT32_C (0xfffff000), 1 },
                                          { UINT32_C (0xfffff000), 4096, 2 } };
  struct extent *many = calloc (5000, sizeof *many);
  uint64_t len[4];
  uint32_t fl[4];
  struct request r;
  struct conn c;
  size_t n, size;

  status_of (&r, &c, &(struct status_case){ false, 0, 0, UINT32_MAX, big, 2 });
  n = descriptors (&r, false, len, fl, 4);
  ok (n == 1 && len[0] == UINT32_C (0xfffff000) && fl[0] == 1,
      "compact: a 4 GiB - 1 request over an 8 GiB extent gets one "
      "descriptor of 4 GiB - 4 KiB (the client asks again)");
  free (r.status);

  /* At the cap exactly: nothing is cut, so the next extent follows (the
   * request is 4 GiB - 1, the most a compact one can ask). */
  status_of (&r, &c,
             &(struct status_case){ false, 0, 0, UINT32_MAX, at_cap, 2 });
  n = descriptors (&r, false, len, fl, 4);
  ok (n == 2 && len[0] == UINT32_C (0xfffff000) && len[1] == 4095 && fl[1] == 2,
      "compact: an extent of exactly 4 GiB - 4 KiB is not cut; the next "
      "follows it (got %zu descriptors)",
      n);
  free (r.status);

  status_of (&r, &c,
             &(struct status_case){ true, 0, 0, 8 * GIB + 4096, big, 2 });
  n = descriptors (&r, true, len, fl, 4);
  ok (n == 2 && len[0] == 8 * GIB && fl[0] == 1 && len[1] == 4096,
      "extended: an 8 GiB extent is one 64-bit descriptor");
  free (r.status);

  for (size_t i = 0; i < 5000; i++)
    many[i] = (struct extent){ i * 512, 512, (uint32_t) (i & 1) };
  size = status_of (
    &r, &c, &(struct status_case){ false, 0, 0, 5000 * 512, many, 5000 });
  n = descriptors (&r, false, len, fl, 4);
  ok (n == MAX_DESCRIPTORS &&
        size == NBD_STRUCTURED_REPLY_SIZE + 4 + 8 * (size_t) MAX_DESCRIPTORS,
      "compact: 5000 extents give MAX_DESCRIPTORS descriptors (got %zu)", n);
  free (r.status);
  size = status_of (
    &r, &c, &(struct status_case){ true, 0, 0, 5000 * 512, many, 5000 });
  n = descriptors (&r, true, len, fl, 4);
  ok (n == MAX_DESCRIPTORS &&
        load_be32 ((const uint8_t *) r.status + 36) == MAX_DESCRIPTORS &&
        size == NBD_EXTENDED_REPLY_SIZE + 8 + 16 * (size_t) MAX_DESCRIPTORS,
      "extended: MAX_DESCRIPTORS descriptors, and the count says so");
  free (r.status);
  free (many);
}

int
main (void)
{
  test_ranges ();
  test_lengths ();
  test_flags ();
  test_export_state ();
  ok (refusals_without_rule == 0,
      "every refusal above names the rule it broke");
  test_split ();
  test_status_headers ();
  test_status_clipping ();
  test_status_lengths ();
  return tap_done ();
}
