/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the daemon's command line (options.c): what it asked for,
 * the export specs it named (--export, --config), and the checks made
 * before anything is opened or listens.  main.c's steps use it. */
#ifndef LUKS_NBD_SERVER_OPTIONS_H
#define LUKS_NBD_SERVER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/internal.h"

/* What the command line asked for.  start_listening may change the
 * listeners: the sockets systemd passed replace --socket and --listen,
 * --run without either gets a private socket. */
struct options {
  const char **sockets, **tcp; /* main's, at most argc of each */
  size_t n_sockets, n_tcp;
  unsigned socket_mode;
  long threads;
  bool threads_given, readonly;
  const char *run, *control, *user, *group;
  const char *tls_certs, *tls_psk;
  enum tls_mode tls;
  bool tls_verify_peer;
  unsigned max_connections, handshake_timeout;
  uint64_t inflight_total;
  int verbose;
  const char *empty_config; /* a --config file without a spec */
};
extern struct options opt;

/* Every export spec, from --export and --config, and where it came from
 * for messages (reachable until exit). */
struct spec_text {
  char *text;
  char *origin;
};
extern struct spec_text *specs;
extern size_t n_specs;

/* The command line into opt: -1 to go on, else the exit status (--help,
 * --version, or an error, said on stderr). */
int parse_command_line (int argc, char **argv);
/* What the options ask for is possible, checked before anything is
 * opened or listens; the settings are handed to the modules.  0, or -1
 * once the error is said.  options_validate_listeners follows once the
 * fds systemd passed are taken: n_passed listening sockets. */
int options_validate (void);
int options_validate_listeners (int n_passed);

#endif
