/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the files this process holds image locks on (file_locks.h).
 * Export opens run on several threads (export-add): one mutex. */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error_msg.h"
#include "formats/file_locks.h"

struct held {
  struct held *next;
  const void *owner;
  dev_t dev;
  ino_t ino;
  char *label;
};

static struct held *held;
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;

int
file_locks_add (const void *owner, dev_t dev, ino_t ino, const char *label)
{
  struct held *h = calloc (1, sizeof *h);

  if (!h || !(h->label = strdup (label))) {
    free (h);
    return error_set (-ENOMEM, "out of memory");
  }
  h->owner = owner;
  h->dev = dev;
  h->ino = ino;
  pthread_mutex_lock (&held_lock);
  h->next = held;
  held = h;
  pthread_mutex_unlock (&held_lock);
  return 0;
}

void
file_locks_remove (const void *owner)
{
  pthread_mutex_lock (&held_lock);
  for (struct held **p = &held; *p; p = &(*p)->next)
    if ((*p)->owner == owner) {
      struct held *h = *p;
      *p = h->next;
      free (h->label);
      free (h);
      break;
    }
  pthread_mutex_unlock (&held_lock);
}

bool
file_locks_holder (dev_t dev, ino_t ino, char *buf, size_t len)
{
  bool found = false;

  pthread_mutex_lock (&held_lock);
  for (struct held *h = held; h && !found; h = h->next)
    if (h->dev == dev && h->ino == ino) {
      snprintf (buf, len, "%s", h->label);
      found = true;
    }
  pthread_mutex_unlock (&held_lock);
  return found;
}
