/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the nbdkit filter's lower node (see next-node.h).  Every op
 * forwards to the entered nbdkit_next; nbdkit's ops take 32-bit counts,
 * so larger ranges go down in pieces (FUA on each piece, which covers the
 * whole call). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error_msg.h"
#include "formats/node.h"
#include "nbdkit/next-node.h"

#define PIECE_MAX (1u << 30)

static __thread nbdkit_next *current;

void
next_node_enter (nbdkit_next *next)
{
  current = next;
}

/* The entered context, or NULL with a message (a request that reached the
 * node without one is a bug in the filter, never a client's doing). */
static nbdkit_next *
entered (const struct node *n)
{
  if (!current)
    error_set (-EIO, "%s: no plugin context on this thread", n->label);
  return current;
}

static int
failed (const struct node *n, const char *what, int err, uint64_t count,
        uint64_t offset)
{
  if (err <= 0)
    err = EIO;
  return error_set (-err, "%s: %s of %llu bytes at %llu: %s", n->label, what,
                    (unsigned long long) count, (unsigned long long) offset,
                    strerror (err));
}

static uint32_t
piece (uint64_t left)
{
  return left < PIECE_MAX ? (uint32_t) left : PIECE_MAX;
}

static int
next_pread (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  nbdkit_next *next = entered (n);
  int err = 0;

  if (!next)
    return -EIO;
  for (uint64_t done = 0; done < count;) {
    uint32_t len = piece (count - done);
    if (next->pread (next, (char *) buf + done, len, offset + done, 0, &err) <
        0)
      return failed (n, "read", err, len, offset + done);
    done += len;
  }
  return 0;
}

static int
next_pwrite (struct node *n, const void *buf, uint64_t count, uint64_t offset,
             int flags)
{
  nbdkit_next *next = entered (n);
  uint32_t f = (flags & NODE_FUA) ? NBDKIT_FLAG_FUA : 0;
  int err = 0;

  if (!next)
    return -EIO;
  for (uint64_t done = 0; done < count;) {
    uint32_t len = piece (count - done);
    if (next->pwrite (next, (const char *) buf + done, len, offset + done, f,
                      &err) < 0)
      return failed (n, "write", err, len, offset + done);
    done += len;
  }
  return 0;
}

static int
next_flush (struct node *n)
{
  nbdkit_next *next = entered (n);
  int err = 0;

  if (!next)
    return -EIO;
  if (next->flush (next, 0, &err) < 0)
    return failed (n, "flush", err, 0, 0);
  return 0;
}

static int
next_trim (struct node *n, uint64_t count, uint64_t offset)
{
  nbdkit_next *next = entered (n);
  int err = 0;

  if (!next)
    return -EIO;
  if (next->can_trim (next) != 1)
    return error_set (-ENOTSUP, "%s: the plugin cannot trim", n->label);
  for (uint64_t done = 0; done < count;) {
    uint32_t len = piece (count - done);
    if (next->trim (next, len, offset + done, 0, &err) < 0)
      return failed (n, "trim", err, len, offset + done);
    done += len;
  }
  return 0;
}

/* The plugin's extents for a prefix of the range, as node extents. */
static int
next_extents (struct node *n, uint64_t count, uint64_t offset,
              struct extent_list *out)
{
  nbdkit_next *next = entered (n);
  uint32_t len = piece (count);
  struct nbdkit_extents *ex;
  int err = 0, r = 0;

  if (!next)
    return -EIO;
  if (next->can_extents (next) != 1)
    return extent_add (out, offset, count, 0); /* all data */
  ex = nbdkit_extents_new (offset, offset + len);
  if (!ex)
    return error_set (-ENOMEM, "%s: out of memory", n->label);
  if (next->extents (next, len, offset, 0, ex, &err) < 0)
    r = failed (n, "block status", err, len, offset);
  for (size_t i = 0; r == 0 && i < nbdkit_extents_count (ex); i++) {
    struct nbdkit_extent e = nbdkit_get_extent (ex, i);
    uint32_t flags = ((e.type & NBDKIT_EXTENT_HOLE) ? EXTENT_HOLE : 0) |
                     ((e.type & NBDKIT_EXTENT_ZERO) ? EXTENT_ZERO : 0);
    r = extent_add (out, e.offset, e.length, flags);
  }
  nbdkit_extents_free (ex);
  return r;
}

/* The plugin's cache, if it has one (its emulation reads the ciphertext,
 * which warms what a later read reads); without, nothing to warm. */
static int
next_prefetch (struct node *n, uint64_t count, uint64_t offset)
{
  nbdkit_next *next = entered (n);
  int err = 0;

  if (!next)
    return -EIO;
  if (next->can_cache (next) <= NBDKIT_CACHE_NONE)
    return 0;
  for (uint64_t done = 0; done < count;) {
    uint32_t len = piece (count - done);
    if (next->cache (next, len, offset + done, 0, &err) < 0)
      return failed (n, "cache", err, len, offset + done);
    done += len;
  }
  return 0;
}

static void
next_close (struct node *n)
{
  free (n->label);
  free (n);
}

static const struct node_ops next_ops = {
  .name = "nbdkit",
  .pread = next_pread,
  .pwrite = next_pwrite,
  .flush = next_flush,
  .trim = next_trim,
  .extents = next_extents,
  .prefetch = next_prefetch,
  .close = next_close,
};

int
next_node_open (uint64_t size, const char *label, struct node **out)
{
  struct node *n = calloc (1, sizeof *n);

  if (!n || !(n->label = strdup (label))) {
    free (n);
    return error_set (-ENOMEM, "out of memory");
  }
  n->ops = &next_ops;
  n->size = size;
  n->block_size = 1;
  *out = n;
  return 0;
}
