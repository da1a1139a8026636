/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd fuzzing: a client that sends one input and drops the replies
 * (see stream-client.h). */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz/stream-client.h"

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

void
fuzz_stream_run (uv_loop_t *loop, int (*open_fd) (uv_loop_t *, int),
                 const uint8_t *data, size_t size)
{
  struct client cl = { 0 };
  char *input = malloc (size ? size : 1); /* uv_write wants it writable */
  int sv[2];

  if (!input || socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    abort ();
  if (open_fd (loop, sv[0]) < 0 || uv_pipe_init (loop, &cl.pipe, 0) < 0 ||
      uv_pipe_open (&cl.pipe, sv[1]) < 0)
    abort ();
  cl.pipe.data = &cl;
  memcpy (input, data, size);
  uv_buf_t b = uv_buf_init (input, (unsigned) size);
  if (uv_write (&cl.write, (uv_stream_t *) &cl.pipe, &b, 1, client_written) <
        0 ||
      uv_shutdown (&cl.shutdown, (uv_stream_t *) &cl.pipe, client_shut) < 0 ||
      uv_read_start ((uv_stream_t *) &cl.pipe, client_alloc, client_read) < 0)
    abort ();
  uv_run (loop, UV_RUN_DEFAULT);
  free (input);
}
