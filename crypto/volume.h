/* luks-nbd: construction of an unlocked volume (used by unlock.c). */
#ifndef LUKS_NBD_VOLUME_H
#define LUKS_NBD_VOLUME_H

#include "header.h"

/* Takes ownership of key (secure memory, hdr->key_bytes long), which
 * keyslot `slot` opened; `vouch` fingerprints the header metadata and that
 * keyslot's bytes as they were read (unlock.c). */
int volume_new (const struct luks_header *hdr, uint8_t *key, int slot,
                const uint8_t vouch[LUKS_META_HASH_BYTES],
                struct luks_volume **out);

/* What volume_new was given, for checking a reuse against a header. */
int volume_slot (const struct luks_volume *vol);
const uint8_t *volume_vouch (const struct luks_volume *vol);
/* The volume key (hdr->key_bytes), for writing a new keyslot. */
const uint8_t *volume_key (const struct luks_volume *vol);

#endif
