/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: anti-forensic split and merge (LUKS1 section 2.4, also LUKS2 "luks1" af). */
#ifndef LUKS_NBD_AFSPLIT_H
#define LUKS_NBD_AFSPLIT_H

#include <stddef.h>
#include <stdint.h>

/* key (key_len bytes) = AFmerge(material of key_len * stripes bytes). */
int af_merge (int md_algo, const uint8_t *material, size_t key_len,
              uint32_t stripes, uint8_t *key);

/* material (key_len * stripes bytes) = AFsplit(key): stripes - 1 random
 * stripes and the last one such that af_merge gives key back. */
int af_split (int md_algo, const uint8_t *key, size_t key_len, uint32_t stripes,
              uint8_t *material);

#endif
