/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd fuzz targets: each file defines LLVMFuzzerTestOneInput, so it
 * links with libFuzzer (make fuzz) or with driver.c, the bounded mutation
 * runner that make check uses. */
#ifndef LUKS_NBD_FUZZ_H
#define LUKS_NBD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#endif
