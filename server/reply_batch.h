/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: reply_queue.c's batching rule, for reply_queue.c and its
 * unit test (tests/unit/test-reply-batch.c) only. */
#ifndef LUKS_NBD_SERVER_REPLY_BATCH_H
#define LUKS_NBD_SERVER_REPLY_BATCH_H

#include "server/internal.h"

/* Replies per write: at most two buffers each, well under IOV_MAX.  A
 * batch also ends once it holds BATCH_BYTES: every buffer in a batch is
 * held until the whole batch is written, and large replies gain nothing
 * from sharing a syscall (on sequential reads, batching them raised peak
 * memory by half). */
#define BATCH_MAX 128
#define BATCH_BYTES (256 * 1024)

/* Takes up to BATCH_MAX replies off the connection's queue (fewer once
 * they hold BATCH_BYTES); returns the first, its chain ending in NULL,
 * and their buffers in bufs (room for 2 * BATCH_MAX). */
struct queued_reply *reply_queue_take_batch (struct conn *c, uv_buf_t *bufs,
                                             unsigned *nbufs);

#endif
