/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: construction of an unlocked volume (used by unlock.c). */
#ifndef LUKS_NBD_VOLUME_H
#define LUKS_NBD_VOLUME_H

#include "crypto/header.h"

/* Takes ownership of key (secure memory, hdr->key_bytes long), which
 * keyslot `slot` opened; `vouch` fingerprints the header metadata and that
 * keyslot's bytes as they were read, with the passphrase (unlock.c), and
 * `binding` the same without the passphrase and unkeyed (the same in
 * every process: handover.c).  vouch NULL: never shared (all zeros). */
int volume_new (const struct luks_header *hdr, uint8_t *key, int slot,
                const uint8_t vouch[LUKS_META_HASH_BYTES],
                const uint8_t binding[LUKS_META_HASH_BYTES],
                struct luks_volume **out);

/* The binding of keyslot `slot` of hdr as it is now (reads its area):
 * SHA-256 of the metadata hash, the slot id and the SHA-256 of the
 * slot's area.  -ENOENT if the slot is gone. */
int volume_slot_binding (const struct luks_header *hdr, int slot,
                         uint8_t out[LUKS_META_HASH_BYTES]);

/* What volume_new was given, for checking a reuse against a header. */
int volume_slot (const struct luks_volume *vol);
const uint8_t *volume_vouch (const struct luks_volume *vol);
const uint8_t *volume_binding (const struct luks_volume *vol);
/* The volume key, *bytes long: for a new keyslot (keyslot_edit.c) and
 * for the key handed to the next daemon (handover.c). */
const uint8_t *volume_key (const struct luks_volume *vol, size_t *bytes);

#endif
