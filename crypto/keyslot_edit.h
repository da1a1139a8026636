/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: what keyslot_edit.c and luks2_keyslots.c share. */
#ifndef LUKS_NBD_KEYSLOT_EDIT_H
#define LUKS_NBD_KEYSLOT_EDIT_H

#include "crypto/header.h"

/* p (salt, type, costs) for a new keyslot of hdr deriving outlen bytes:
 * benchmarked unless kc forces the iterations; checked against kdf.h's
 * bounds, alone and with hdr's other keyslots. */
int keyslot_choose_kdf (const struct luks_header *hdr,
                        const struct luks_kdf_choice *kc, size_t outlen,
                        struct kdf_params *p);
/* Makes ks's key material (vol's key under pass) and writes it to
 * ks->area_offset, synced. */
int keyslot_write_material (const struct luks_header *hdr,
                            const struct luks_keyslot *ks,
                            const struct luks_volume *vol, const void *pass,
                            size_t passlen);
/* Overwrites size bytes at offset with random bytes, synced. */
int keyslot_wipe_area (const struct luks_header *hdr, uint64_t offset,
                       uint64_t size);

/* luks2_keyslots.c */
int luks2_keyslot_add (const struct luks_header *hdr,
                       const struct luks_volume *vol, const void *pass,
                       size_t passlen, int slot,
                       const struct luks_kdf_choice *kc, int *added);
int luks2_keyslot_remove (const struct luks_header *hdr, int slot);

#endif
