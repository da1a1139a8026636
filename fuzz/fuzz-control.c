/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target: the control socket.  Each input is the byte stream a
 * management client sends (JSON lines); it is written into one end of a
 * socketpair whose other end is served by the real control code
 * (control.c, control_request.c: line splitting, the request parser,
 * every command) with one export on an in-memory node.  Replies are read
 * and dropped; the loop runs until the server has closed the connection
 * and every export-add in the pool has finished. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "server/internal.h"
#include "fuzz/mem-node.h"
#include "fuzz/stream-client.h"

#define EXPORT_BYTES (64 * 1024)

uv_loop_t *server_loop;

bool
server_stopping (void)
{
  return false;
}

/* Export "v" for export-list, query-stats and export-remove to find; an
 * input that removed it gets a new one next time. */
static void
ensure_export (void)
{
  struct export *e;

  if (exports_find ("v", 1))
    return;
  e = calloc (1, sizeof *e);
  uint8_t *zeros = calloc (1, EXPORT_BYTES);
  if (!e || !zeros || !(e->name = strdup ("v")) ||
      !(e->node = mem_node_new (zeros, EXPORT_BYTES, 0, "fuzz-export")))
    abort ();
  free (zeros);
  e->spec_strings[0] = e->name; /* export_free frees it there */
  e->refs = 1;
  if (exports_add (e) < 0)
    abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (!server_loop) {
    server_loop = uv_default_loop ();
    log_set_verbose (getenv ("FUZZ_VERBOSE") ? 2 : -1);
  }
  ensure_export ();
  fuzz_stream_run (server_loop, control_open_fd, data, size);
  return 0;
}
