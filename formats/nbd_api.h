/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: libnbd, loaded when the first nbd node opens (nbd_api.c). */
#ifndef LUKS_NBD_NBD_API_H
#define LUKS_NBD_NBD_API_H

#include <libnbd.h>

/* The libnbd calls formats/nbd.c makes, typed by libnbd.h itself. */
struct nbd_api {
  __typeof__ (nbd_create) *create;
  __typeof__ (nbd_close) *close;
  __typeof__ (nbd_shutdown) *shutdown;
  __typeof__ (nbd_get_errno) *get_errno;
  __typeof__ (nbd_get_error) *get_error;
  __typeof__ (nbd_add_meta_context) *add_meta_context;
  __typeof__ (nbd_connect_uri) *connect_uri;
  __typeof__ (nbd_aio_get_fd) *aio_get_fd;
  __typeof__ (nbd_aio_is_dead) *aio_is_dead;
  __typeof__ (nbd_aio_is_closed) *aio_is_closed;
  __typeof__ (nbd_get_size) *get_size;
  __typeof__ (nbd_get_block_size) *get_block_size;
  __typeof__ (nbd_is_read_only) *is_read_only;
  __typeof__ (nbd_can_multi_conn) *can_multi_conn;
  __typeof__ (nbd_can_fua) *can_fua;
  __typeof__ (nbd_can_cache) *can_cache;
  __typeof__ (nbd_can_meta_context) *can_meta_context;
  __typeof__ (nbd_pread) *pread;
  __typeof__ (nbd_pwrite) *pwrite;
  __typeof__ (nbd_flush) *flush;
  __typeof__ (nbd_trim) *trim;
  __typeof__ (nbd_zero) *zero;
  __typeof__ (nbd_cache) *cache;
  __typeof__ (nbd_block_status) *block_status;
};

/* Filled by nbd_api_load; read only after it returned 0. */
extern struct nbd_api libnbd;

/* Loads libnbd once (thread-safe); 0 or -errno with a message. */
int nbd_api_load (void);

#endif
