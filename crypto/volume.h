/* luks-nbd: construction of an unlocked volume (used by unlock.c). */
#ifndef LUKS_NBD_VOLUME_H
#define LUKS_NBD_VOLUME_H

#include "header.h"

/* Takes ownership of key (secure memory, hdr->key_bytes long). */
int volume_new (const struct luks_header *hdr, uint8_t *key,
                struct luks_volume **out);

#endif
