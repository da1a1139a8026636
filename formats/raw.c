/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the raw node: an offset/size window on its child (the raw
 * payload format, and the place an attached layout is cut). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/checked.h"
#include "common/error_msg.h"
#include "formats/node.h"

struct raw_node {
  struct node node;
  struct node *child;
  uint64_t offset;
};

static int
raw_pread (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  struct raw_node *r = (struct raw_node *) n;
  return node_pread (r->child, buf, count, r->offset + offset);
}

static int
raw_pread_cached (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  struct raw_node *r = (struct raw_node *) n;
  return node_pread_cached (r->child, buf, count, r->offset + offset);
}

static int
raw_pwrite (struct node *n, const void *buf, uint64_t count, uint64_t offset,
            int flags)
{
  struct raw_node *r = (struct raw_node *) n;
  return node_pwrite (r->child, buf, count, r->offset + offset, flags);
}

static int
raw_flush (struct node *n)
{
  return node_flush (((struct raw_node *) n)->child);
}

static int
raw_trim (struct node *n, uint64_t count, uint64_t offset)
{
  struct raw_node *r = (struct raw_node *) n;
  return node_trim (r->child, count, r->offset + offset);
}

static int
raw_zero (struct node *n, uint64_t count, uint64_t offset, int flags)
{
  struct raw_node *r = (struct raw_node *) n;
  return node_zero (r->child, count, r->offset + offset, flags);
}

static int
raw_extents (struct node *n, uint64_t count, uint64_t offset,
             struct extent_list *out)
{
  struct raw_node *r = (struct raw_node *) n;
  struct extent_list child = extent_list_for_child (out);
  int err = node_extents (r->child, count, r->offset + offset, &child);

  for (size_t i = 0; err == 0 && i < child.n; i++)
    err = extent_add (out, child.e[i].offset - r->offset, child.e[i].length,
                      child.e[i].flags);
  extent_list_free (&child);
  return err;
}

static int
raw_prefetch (struct node *n, uint64_t count, uint64_t offset)
{
  struct raw_node *r = (struct raw_node *) n;
  return node_prefetch (r->child, count, r->offset + offset);
}

/* The window's child grows with it (the raw payload format: offset 0). */
static int
raw_resize (struct node *n, uint64_t size)
{
  struct raw_node *r = (struct raw_node *) n;
  uint64_t end;
  int err;

  if (ckd_add_u64 (&end, r->offset, size))
    return error_set (-EFBIG, "%s: %llu bytes is too large", n->label,
                      (unsigned long long) size);
  err = node_resize (r->child, end);
  if (err == 0)
    n->size = size;
  return err;
}

static int
raw_set_active (struct node *n, bool active)
{
  return node_set_active (((struct raw_node *) n)->child, active);
}

static void
raw_close (struct node *n)
{
  struct raw_node *r = (struct raw_node *) n;
  node_close (r->child);
  free (n->label);
  free (r);
}

static const struct node_ops raw_ops = {
  .name = "raw",
  .pread = raw_pread,
  .pwrite = raw_pwrite,
  .flush = raw_flush,
  .trim = raw_trim,
  .zero = raw_zero,
  .extents = raw_extents,
  .prefetch = raw_prefetch,
  .resize = raw_resize,
  .set_active = raw_set_active,
  .pread_cached = raw_pread_cached,
  .close = raw_close,
};

static int
open_payload (struct node *file, const struct stack_spec *spec,
              struct node **out)
{
  (void) spec;
  return node_raw_open (file, 0, file->size, out);
}

const struct payload_format payload_format_raw = {
  .name = "raw",
  .probe = NULL, /* anything is raw: what no other format's probe takes */
  .open = open_payload,
};

int
node_raw_open (struct node *child, uint64_t offset, uint64_t size,
               struct node **out)
{
  struct raw_node *r;

  if (!range_within (offset, size, child->size))
    return error_set (-EINVAL,
                      "%s: window %llu+%llu is outside the %llu-byte "
                      "file",
                      child->label, (unsigned long long) offset,
                      (unsigned long long) size,
                      (unsigned long long) child->size);
  r = calloc (1, sizeof *r);
  if (!r || asprintf (&r->node.label, "%s", child->label) < 0) {
    free (r);
    return error_set (-ENOMEM, "out of memory");
  }
  r->child = child;
  r->offset = offset;
  r->node.ops = &raw_ops;
  r->node.size = size;
  r->node.block_size = child->block_size;
  r->node.readonly = child->readonly;
  *out = &r->node;
  return 0;
}
