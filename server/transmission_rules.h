/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: transmission.c's request and the steps on it that need no
 * socket, loop or worker: the checkpoint (check_request), the split into
 * parts (request_split) and the block status reply (build_status).  For
 * transmission.c and its unit test (tests/unit/test-transmission.c)
 * only; the rest of server/ knows requests through internal.h. */
#ifndef LUKS_NBD_SERVER_TRANSMISSION_RULES_H
#define LUKS_NBD_SERVER_TRANSMISSION_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "server/internal.h"
#include "server/nbd-protocol.h"

/* Large reads and writes are split into parts that workers run in
 * parallel; the reply goes out when the last part is done. */
#define SPLIT_MAX_PARTS 8
#define SPLIT_MIN_PART (256 * 1024)

/* Per-request work bounds for the commands whose length does not bound
 * their work by itself (no payload moves): a CACHE warms at most its
 * first MAX_CACHE_BYTES (it is advice: the rest is still answered with
 * success), and a BLOCK_STATUS reply carries at most MAX_DESCRIPTORS
 * extents, which also stops the nodes' walk (each node bounds its own
 * walk too; the client asks again for the rest). */
#define MAX_CACHE_BYTES MAX_REQUEST_BYTES
#define MAX_DESCRIPTORS 4096

struct request;
struct part {
  uv_work_t work; /* worker: node op on [offset, +count) */
  struct request *req;
  uint64_t offset;
  uint64_t count;
  uint32_t error; /* set by the worker */
};

struct request {
  struct part parts[SPLIT_MAX_PARTS];
  unsigned parts_left;     /* loop thread only */
  uint64_t next;           /* loop: where the next step starts */
  struct queued_reply out; /* loop: the reply, batched */
  uint64_t unsent;         /* its bytes, in c->unsent_bytes until done */
  struct conn *conn;
  struct node *node;
  struct export *exp; /* its gate and active flag (workers read them) */
  uint16_t flags, type;
  uint64_t handle, offset;
  /* 64-bit only with extended headers (a READ's or WRITE's passes
   * check_request only up to 32 MiB). */
  uint64_t count;
  uint32_t error;                             /* NBD error for the reply */
  uint64_t charged;                           /* counted in c->inflight_bytes */
  char *buf;                                  /* read result or write data */
  size_t filled;                              /* write data received so far */
  struct extent_list extents;                 /* BLOCK_STATUS result (worker) */
  char *status;                               /* BLOCK_STATUS reply (loop) */
  uint8_t reply[NBD_EXTENDED_REPLY_SIZE + 8]; /* header (+ offset/error) */
};

/* Returns 0, or the NBD error to answer the request with and in *why the
 * rule it broke. */
uint32_t check_request (const struct conn *c, uint16_t type, uint16_t flags,
                        uint64_t offset, uint64_t count, const char **why);
/* Fills r->parts for [offset, offset + count) (r->node and r->type set);
 * returns how many parts: at most the worker threads and SPLIT_MAX_PARTS,
 * each but the last a multiple of the node's block size. */
unsigned request_split (struct request *r, uint64_t offset, uint64_t count);
/* Builds r->status, the BLOCK_STATUS reply chunk for r->extents; returns
 * its size, 0 if out of memory. */
size_t build_status (struct request *r);

#endif
