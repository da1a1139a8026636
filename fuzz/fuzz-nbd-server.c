/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the NBD server side.  Each input is the byte stream a
 * client sends (handshake, options, requests, write data); it is written
 * into one end of a socketpair whose other end is served by the real
 * connection code (connection.c, handshake.c, transmission.c) with an
 * export on an in-memory node.  Replies are read and dropped; the loop
 * runs until the server has closed the connection. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "server/internal.h"
#include "fuzz/mem-node.h"
#include "fuzz/stream-client.h"

#define EXPORT_BYTES (1024 * 1024)

uv_loop_t *server_loop;

bool
server_stopping (void)
{
  return false;
}

static void
setup_once (void)
{
  static bool done;
  struct export *e;

  if (done)
    return;
  done = true;
  server_loop = uv_default_loop ();
  log_set_verbose (getenv ("FUZZ_VERBOSE") ? 2 : -1);
  conn_set_limits (100, 0); /* no handshake timer: the input decides */
  transmission_set_threads (2);
  e = calloc (1, sizeof *e);
  uint8_t *zeros = calloc (1, EXPORT_BYTES);
  if (!e || !zeros || !(e->name = strdup ("v")) ||
      !(e->node = mem_node_new (zeros, EXPORT_BYTES, 0, "fuzz-export")))
    abort ();
  free (zeros);
  e->discard = true;
  e->refs = 1;
  if (exports_add (e) < 0)
    abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  setup_once ();
  fuzz_stream_run (server_loop, conn_open_fd, data, size);
  return 0;
}
