/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the nbdkit filter's lower node: the plugin below the filter,
 * reached through the nbdkit_next of the request being served. */
#ifndef LUKS_NBD_NEXT_NODE_H
#define LUKS_NBD_NEXT_NODE_H

#include <nbdkit-filter.h>

#include "formats/stack.h"

/* The node's ops call whatever next the calling thread entered last.  One
 * luks node (one key, one read-modify-write lock) serves every connection,
 * while each request reaches the plugin through its own connection's
 * context, as the plugin's thread model expects: nbdkit runs a request on
 * one thread from the filter's callback to its return, and the luks node
 * calls its children synchronously on that thread. */
void next_node_enter (nbdkit_next *next);

/* A node of `size` bytes over the plugin (the size it had at unlock). */
int next_node_open (uint64_t size, const char *label, struct node **out);

#endif
