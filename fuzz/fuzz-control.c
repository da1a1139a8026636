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
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "internal.h"
#include "mem-node.h"

#define EXPORT_BYTES (64 * 1024)

uv_loop_t *server_loop;

bool
server_stopping (void)
{
  return false;
}

struct client {
  uv_pipe_t pipe;
  uv_write_t write;
  uv_shutdown_t shutdown;
  char drain[65536];
};

static void
on_client_close (uv_handle_t *h)
{}

static void
client_alloc (uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct client *cl = h->data;

  *buf = uv_buf_init (cl->drain, sizeof cl->drain);
}

static void
client_read (uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  if (n < 0) /* the server closed: done */
    uv_close ((uv_handle_t *) s, on_client_close);
}

static void
client_written (uv_write_t *w, int status)
{}

static void
client_shut (uv_shutdown_t *s, int status)
{}

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
  struct client cl = { 0 };
  int sv[2];

  if (!server_loop) {
    server_loop = uv_default_loop ();
    log_set_verbose (getenv ("FUZZ_VERBOSE") ? 2 : -1);
  }
  ensure_export ();
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    abort ();
  if (control_open_fd (server_loop, sv[0]) < 0 ||
      uv_pipe_init (server_loop, &cl.pipe, 0) < 0 ||
      uv_pipe_open (&cl.pipe, sv[1]) < 0)
    abort ();
  cl.pipe.data = &cl;
  char *input = malloc (size ? size : 1);
  if (!input)
    abort ();
  memcpy (input, data, size);
  uv_buf_t b = uv_buf_init (input, (unsigned) size);
  if (uv_write (&cl.write, (uv_stream_t *) &cl.pipe, &b, 1, client_written) <
        0 ||
      uv_shutdown (&cl.shutdown, (uv_stream_t *) &cl.pipe, client_shut) < 0 ||
      uv_read_start ((uv_stream_t *) &cl.pipe, client_alloc, client_read) < 0)
    abort ();
  uv_run (server_loop, UV_RUN_DEFAULT);
  free (input);
  return 0;
}
