/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the files this process holds image locks on, so that a lock
 * refused because of ourselves (one payload in two exports) says so
 * instead of blaming another program.  OFD locks conflict between two
 * opens of one file in one process as between two processes. */
#ifndef LUKS_NBD_FILE_LOCKS_H
#define LUKS_NBD_FILE_LOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* owner (a node) locked the file dev/ino; label names it in messages. */
int file_locks_add (const void *owner, dev_t dev, ino_t ino, const char *label);
void file_locks_remove (const void *owner); /* no-op if not held */
/* True (and label, truncated, in buf) if this process holds a lock on
 * dev/ino. */
bool file_locks_holder (dev_t dev, ino_t ino, char *buf, size_t len);

#endif
