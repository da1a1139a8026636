/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd fuzzing: one input as the byte stream of a client of a server
 * socket (NBD or control), shared by the server fuzz targets. */
#ifndef LUKS_NBD_FUZZ_STREAM_CLIENT_H
#define LUKS_NBD_FUZZ_STREAM_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Makes a socketpair, hands one end to open_fd (conn_open_fd,
 * control_open_fd), writes data into the other end and shuts it down,
 * drops every reply, and runs loop until nothing is left to do (the
 * server has closed the connection and its work has finished).  Aborts
 * if the harness itself cannot be set up. */
void fuzz_stream_run (uv_loop_t *loop, int (*open_fd) (uv_loop_t *, int),
                      const uint8_t *data, size_t size);

#endif
