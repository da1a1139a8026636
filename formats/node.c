/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the dispatch of node ops (every call into a node comes
 * through here) and the helpers shared by all node types. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/checked.h"
#include "common/error_msg.h"
#include "formats/node.h"

static void (*log_hook) (const char *fmt, ...);

void
node_set_log_hook (void (*hook) (const char *fmt, ...))
{
  log_hook = hook;
}

void
node_log (const char *fmt, ...)
{
  char line[1024];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  if (log_hook)
    log_hook ("%s", line);
  else
    fprintf (stderr, "luks-nbd: warning: %s\n", line);
}

void
node_close (struct node *n)
{
  if (n)
    n->ops->close (n);
}

uint64_t
node_size (const struct node *n)
{
  return n->size;
}

uint32_t
node_block_size (const struct node *n)
{
  return n->block_size ? n->block_size : 1;
}

const char *
node_label (const struct node *n)
{
  return n->label;
}

uint32_t
node_preferred_block_size (const struct node *n)
{
  uint32_t bs = node_block_size (n);
  return bs > NODE_PREFERRED_BLOCK_MIN ? bs : NODE_PREFERRED_BLOCK_MIN;
}

/* The op contract every caller keeps (formats/stack.h), asserted as
 * nbdkit's backend.c does: a breach is a bug in the caller, never a
 * client's doing -- server/transmission.c's check_request refuses bad
 * requests with errors before any op runs. */
static void
check_range (const struct node *n, uint64_t count, uint64_t offset)
{
  assert (n->past_end_ok || range_within (offset, count, n->size));
}

static void
check_write (const struct node *n, uint64_t count, uint64_t offset)
{
  assert (!n->readonly);
  check_range (n, count, offset);
}

int
node_pread (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  check_range (n, count, offset);
  return n->ops->pread (n, buf, count, offset);
}

int
node_pwrite (struct node *n, const void *buf, uint64_t count, uint64_t offset,
             int flags)
{
  check_write (n, count, offset);
  assert ((flags & ~(NODE_FUA | NODE_MAY_CLOBBER)) == 0);
  return n->ops->pwrite (n, buf, count, offset, flags);
}

int
node_pread_cached (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  check_range (n, count, offset);
  if (!n->ops->pread_cached)
    return -EAGAIN;
  return n->ops->pread_cached (n, buf, count, offset);
}

int
node_flush (struct node *n)
{
  return n->ops->flush (n);
}

int
node_trim (struct node *n, uint64_t count, uint64_t offset)
{
  check_write (n, count, offset);
  if (!n->ops->trim)
    return error_set (-ENOTSUP, "%s: %s node cannot trim", n->label,
                      n->ops->name);
  return n->ops->trim (n, count, offset);
}

int
node_zero (struct node *n, uint64_t count, uint64_t offset, int flags)
{
  check_write (n, count, offset);
  assert ((flags & ~NODE_FUA) == 0);
  if (!n->ops->zero)
    return error_set (-ENOTSUP, "%s: %s node cannot write zeros", n->label,
                      n->ops->name);
  return n->ops->zero (n, count, offset, flags);
}

int
node_extents (struct node *n, uint64_t count, uint64_t offset,
              struct extent_list *out)
{
  check_range (n, count, offset);
  if (!n->ops->extents)
    return extent_add (out, offset, count, 0);
  return n->ops->extents (n, count, offset, out);
}

int
node_prefetch (struct node *n, uint64_t count, uint64_t offset)
{
  check_range (n, count, offset);
  if (!n->ops->prefetch)
    return 0;
  return n->ops->prefetch (n, count, offset);
}

/* The size is whole sectors: the luks node has no partial last one. */
int
node_resize (struct node *n, uint64_t size)
{
  assert (!n->readonly);
  assert (size % node_block_size (n) == 0);
  if (size == n->size)
    return 0;
  if (!n->ops->resize)
    return error_set (-ENOTSUP, "%s: a %s node cannot be resized", n->label,
                      n->ops->name);
  return n->ops->resize (n, size);
}

int
node_set_active (struct node *n, bool active)
{
  if (!n->ops->set_active)
    return 0;
  return n->ops->set_active (n, active);
}

int
extent_add (struct extent_list *l, uint64_t offset, uint64_t length,
            uint32_t flags)
{
  if (length == 0)
    return 0;
  if (l->n && l->e[l->n - 1].flags == flags &&
      l->e[l->n - 1].offset + l->e[l->n - 1].length == offset) {
    l->e[l->n - 1].length += length;
    return 0;
  }
  if (extent_list_full (l))
    return 0; /* dropped: the list ends before it */
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    struct extent *e = realloc (l->e, cap * sizeof *e);
    if (!e)
      return error_set (-ENOMEM, "out of memory");
    l->e = e;
    l->cap = cap;
  }
  l->e[l->n++] = (struct extent){ offset, length, flags };
  return 0;
}

void
extent_list_free (struct extent_list *l)
{
  free (l->e);
  l->e = NULL;
  l->n = l->cap = 0;
}
