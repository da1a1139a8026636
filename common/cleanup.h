/* luks-nbd: scope-bound cleanup for plain heap memory and fds.
 * Secrets never use these: they go through crypto/secmem.h, which wipes. */
#ifndef LUKS_NBD_CLEANUP_H
#define LUKS_NBD_CLEANUP_H

#include <stdlib.h>
#include <unistd.h>

static inline void
cleanup_free (void *ptr)
{
  free (*(void **) ptr);
}

static inline void
cleanup_close (int *fd)
{
  if (*fd >= 0)
    close (*fd);
}

#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))
#define CLEANUP_CLOSE __attribute__ ((cleanup (cleanup_close)))

#endif
