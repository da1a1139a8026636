/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: what an open stack says about itself, and the edits of its
 * header, asked of its top node (formats/stack.h).  The luks node is
 * found here, so that server/ never names it. */
#include <config.h>

#include <assert.h>

#include "formats/node.h"

/* Every stack node_stack_open and node_stack_open_over build has the
 * luks node on top. */
static struct node *
luks_of (const struct node *top)
{
  assert (node_is_luks (top));
  return (struct node *) top;
}

void
node_stack_info (const struct node *top, struct node_stack_info *out)
{
  const struct node *l = luks_of (top);

  *out = (struct node_stack_info){
    .uuid = node_luks_uuid (l),
    .backup_uuid = node_luks_backup_uuid (l),
    .warning = node_luks_warning (l),
    .handover_refused = node_luks_handover_refused (l),
    .data_offset = node_luks_data_offset (l),
    .key_shared = node_luks_key_shared (l),
    .key_handed_over = node_luks_key_handed_over (l),
  };
}

int
node_stack_check_header (struct node *top)
{
  return node_luks_check_header (luks_of (top));
}

int
node_stack_handover_blob (struct node *top, uint8_t **blob, size_t *len)
{
  return node_luks_handover_blob (luks_of (top), blob, len);
}

void
node_stack_handover_free (uint8_t *blob, size_t len)
{
  node_luks_handover_free (blob, len);
}

int
node_stack_keyslot_list (struct node *top, struct node_keyslot_info *out,
                         int cap, int *n, int *version)
{
  return node_luks_keyslot_list (luks_of (top), out, cap, n, version);
}

int
node_stack_keyslot_add (struct node *top, const char *path, const void *pass,
                        size_t passlen, int slot,
                        const struct node_kdf_choice *kc, int *added)
{
  return node_luks_keyslot_add (luks_of (top), path, pass, passlen, slot, kc,
                                added);
}

int
node_stack_keyslot_remove (struct node *top, const char *path, int slot,
                           bool force)
{
  return node_luks_keyslot_remove (luks_of (top), path, slot, force);
}

int
node_stack_keyslot_change (struct node *top, const char *path, int slot,
                           const void *pass, size_t passlen,
                           const struct node_kdf_choice *kc, int *added)
{
  return node_luks_keyslot_change (luks_of (top), path, slot, pass, passlen, kc,
                                   added);
}
