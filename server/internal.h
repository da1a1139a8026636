/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the server's internal API, grouped by the file that defines
 * it.  Threading: everything here runs on the libuv loop thread except
 * what transmission.c hands to the thread pool (node ops only). */
#ifndef LUKS_NBD_INTERNAL_H
#define LUKS_NBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "formats/stack.h"

/* Limits. */
#define MAX_REQUEST_BYTES (32 * 1024 * 1024) /* NBD_INFO_BLOCK_SIZE maximum */
#define MAX_OPTION_BYTES (16 * 1024)         /* longer options are refused */
/* Per-connection budgets, checked by one gate (connection.c's may_parse)
 * before any input is parsed, in every state; docs/security.md has the
 * table and the test of each. */
#define MAX_INFLIGHT_REQUESTS 128 /* per connection, then pause */
/* Request buffers plus output queued for the socket (replies, ciphertext). */
#define MAX_INFLIGHT_BYTES (128 * 1024 * 1024)
/* The same bytes summed over every connection (--max-inflight-total): at
 * or over it, only connections with nothing in flight take a request,
 * so the daemon holds at most this plus one request per connection. */
#define MAX_INFLIGHT_TOTAL_BYTES (1024ULL * 1024 * 1024)
/* Read-ahead: once a client is behind (CLIENT_BEHIND_BYTES of replies
 * done on our side wait for its socket, over TLS for encryption or as
 * ciphertext), a connection parses no new request while it holds
 * READ_AHEAD_BYTES of request buffers and queued output.  A client
 * slower than the disk (TLS decryption, a
 * slow link) then gets its data at its own pace, instead of the daemon
 * reading the whole MAX_INFLIGHT_BYTES ahead of it into memory; a client
 * that keeps up, or a slow payload, keeps the deep queue. */
#define CLIENT_BEHIND_BYTES (1024 * 1024)
#define READ_AHEAD_BYTES (4 * 1024 * 1024)
/* Before transmission only option replies and the TLS handshake are
 * queued: a client that reads them needs far less than this. */
#define MAX_HANDSHAKE_OUTPUT_BYTES (256 * 1024)
#define INPUT_BUFFER_BYTES (64 * 1024)
#define NBD_STRING_MAX 4096 /* export names and descriptions */

/* log.c: one line per call on stderr.  Errors and warnings always,
 * info with -v, debug with -vv.  Never data or secrets. */
enum log_level {
  LOG_LEVEL_ERROR,
  LOG_LEVEL_WARNING,
  LOG_LEVEL_INFO,
  LOG_LEVEL_DEBUG,
};
void log_set_verbose (int level);
bool log_enabled (enum log_level level); /* would a line be written? */
void log_error (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void log_warning (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void log_info (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void log_debug (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
/* A line about one client connection: "connection N: " and the message.
 * Safe from any thread (it reads only c->id, fixed at accept). */
struct conn;
void conn_log (const struct conn *c, enum log_level level, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
/* A refused option or request (loop thread): logged with -v, but a
 * client may send them without end, so after a connection's first
 * CONN_REFUSALS_LOGGED (and a line saying so) only with -vv. */
#define CONN_REFUSALS_LOGGED 16
void conn_log_refusal (struct conn *c, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* exports.c: the registry; export_spec.c: the spec syntax. */
#define EXPORT_KEYS_MAX 24
struct export
{
  char *name;
  char *description; /* may be NULL */
  char *label;       /* "export 'vm1'" (and its --config line), for messages */
  bool readonly;
  bool discard;      /* discard=on: NBD_CMD_TRIM reaches the payload */
  struct node *node; /* shared by every connection */
  /* Loop thread only: the size new connections are told (node->size
   * changes on a pool thread during export-resize; each connection keeps
   * the size it was told, conn.size). */
  uint64_t size;
  bool resizing; /* an export-resize runs */
  struct stack_spec spec;
  /* Every key's value as given, by export_spec.c's key (the name
   * first); spec's strings, name and description point into them. */
  char *spec_strings[EXPORT_KEYS_MAX];
  char *inline_pass; /* control socket passphrase (secure memory) */
  size_t inline_pass_len;
  /* Live migration (export_active.c): an inactive export holds no image
   * lock and refuses writes.  Node ops run holding `gate` shared; a
   * change of `active` holds it exclusive, so it waits for the ops in
   * flight and none runs while the stack flushes, drops or reloads. */
  pthread_rwlock_t gate;
  atomic_bool active;
  bool changing; /* loop thread: an activation or inactivation runs */
  /* Loop thread only: lifetime and statistics. */
  unsigned refs;        /* the registry's + one per connection */
  unsigned connections; /* clients serving it now */
  uint64_t total_connections, requests, errors, bytes_read, bytes_written;
};
/* export_spec.c: parses one --export value; errors name the export and
 * the key, or origin ("--export #2", "--config FILE line 7") before the
 * name is known. */
int export_parse (const char *text, const char *origin, bool force_readonly,
                  bool inline_passphrase, struct export **out);
/* Appends "key=value" (value's commas doubled) to a spec being built. */
int export_spec_append (char **spec, size_t *len, const char *key,
                        const char *v);
/* The spec with every relative file path (the keys marked as paths:
 * payload=, header=, key-file=, passphrase-file=, backup-header=; not
 * URIs) made relative to dir: a --config file's directory, or the
 * caller's for luks-nbd ctl. */
int export_spec_absolute (const char *text, const char *dir, char **out);
/* --help's list of keys, one per line with its help. */
void export_keys_usage (FILE *f);
/* exports.c: an export with nothing parsed yet (its gate ready, active,
 * any key slot, the registry's reference), for export_parse. */
struct export *export_new (void);
/* Takes a copy of a passphrase given on the control socket. */
int export_set_passphrase (struct export *e, const char *pass, size_t len);
void export_ref (struct export *e);
void export_unref (struct export *e); /* frees it after the last user */
void exports_remove (struct export *e);
int export_open (struct export *e);
void export_free (struct export *e);
int exports_add (struct export *e); /* refuses duplicate names */
struct export *exports_find (const char *name, size_t len); /* "" = first */
int exports_set_default (const char *name);                 /* what "" names */
void exports_detach_all (void); /* empties the registry (startup.c) */
size_t exports_count (void);
struct export *exports_get (size_t i);
void exports_close_all (void); /* flush and close */

/* export_active.c: export-activate / export-inactivate.  Flushes,
 * drops caches and releases the lock (or takes the lock and reloads) in
 * the pool; done(arg, r) on the loop thread, with the message in msg if
 * r < 0.  -EBUSY at once if a change of this export runs already. */
int export_set_active (struct export *e, bool active,
                       void (*done) (void *arg, int r, const char *msg),
                       void *arg);

/* header_watch.c: logs edits, renames and removals of detached header
 * files while serving, drops the keys kept for them, and re-reads an
 * edited header (in the pool) to say whether it still vouches for the
 * export's key.  Serving never uses the re-read header. */
void header_watch_start (uv_loop_t *loop, const struct export *e);
void header_watch_stop (const char *export_name);
void header_watch_stop_all (void);
/* Our own keyslot edit of the header file at path begins (true) or has
 * ended (false): its events are not someone else's edit (no warning;
 * the settled re-check is logged as ours). */
void header_watch_own_edit (const char *path, bool begin);

/* lines.c: calls fn for each line of a file (newline stripped, NUL
 * terminated); stops at fn's first error.  Messages name option and path. */
typedef int lines_fn (void *opaque, char *line, size_t len, int lineno);
int lines_read (const char *path, const char *option, lines_fn *fn,
                void *opaque);

/* bufpool.c: request buffers, reused (loop thread only). */
void *bufpool_get (size_t size); /* NULL if out of memory or > 32 MiB */
void bufpool_put (void *buf, size_t size);
void bufpool_drain (void);

/* listen.c */
int listen_unix (uv_loop_t *loop, const char *path, unsigned mode);
/* The control socket (same stale/live rules, mode 0600). */
int listen_control (uv_loop_t *loop, const char *path, uv_connection_cb cb,
                    uv_pipe_t **out);
int listen_tcp (uv_loop_t *loop, const char *hostport);
/* --listen's argument: [HOST]:PORT, [IPV6]:PORT, HOST or PORT (an empty
 * port is 10809); host "" means every address. */
int listen_parse (const char *arg, char *host, size_t hostlen, unsigned *port);
int listen_fd (uv_loop_t *loop, int fd); /* an inherited listening socket */
void listen_close_all (void);

/* connection.c */
void conn_set_limits (unsigned max_connections, unsigned handshake_seconds);
void conn_set_inflight_total (uint64_t bytes); /* --max-inflight-total */
struct conn;
void conn_accept (uv_stream_t *server);
/* Serves a connected unix stream socket fd (the NBD server fuzz target). */
int conn_open_fd (uv_loop_t *loop, int fd);
int conn_send (struct conn *c, const void *data, size_t len);
/* uv_write, or through TLS once it is on; cb(req, status) afterwards. */
int conn_write (struct conn *c, uv_write_t *req, const uv_buf_t *bufs,
                unsigned n, uv_write_cb cb);
void conn_close (struct conn *c);
void conn_finish (struct conn *c); /* flush replies, then close */
/* Budget freed or state changed: parse and read again from the loop
 * (never from the completion path that calls this). */
void conn_wake (struct conn *c);
void conn_shutdown_all (void);
unsigned conn_drain_export (const struct export *e); /* finish its clients */
size_t conn_count (void);
/* Clients waiting in the handshake for an export still unlocking parse
 * their option again (it is served now, or failed). */
void conn_wake_awaiting (void);

/* handshake.c: phases before transmission. */
void handshake_start (struct conn *c);
/* Consumes what it can of the input; returns bytes consumed, 0 if it
 * needs more, -1 if the connection was closed. */
ssize_t handshake_input (struct conn *c, const uint8_t *in, size_t len);

/* transmission.c */
void transmission_set_threads (unsigned n); /* splits large requests */
ssize_t transmission_input (struct conn *c, const uint8_t *in, size_t len);
/* The write request still waiting for its data, to read straight into. */
bool transmission_direct_buffer (struct conn *c, uv_buf_t *buf);
void transmission_direct_filled (struct conn *c, size_t n);
/* Drops a write whose data never fully arrived (never acknowledged). */
void transmission_drop_pending (struct conn *c);

/* reply_queue.c: replies finished in one loop iteration go out in one
 * write per connection.  done runs once the reply is written (status 0)
 * or could not be (negative errno; the connection is then closed). */
struct queued_reply {
  uv_write_t write; /* the first reply of a batch carries the batch's */
  struct queued_reply *next;
  uv_buf_t bufs[2];
  unsigned n;
  void (*done) (struct queued_reply *q, int status);
};
int reply_queue_push (struct conn *c, struct queued_reply *q);
void reply_queue_close (void); /* once the loop has ended */

/* tls.c: STARTTLS with GnuTLS; ciphertext moves through buffers, never
 * through GnuTLS's own socket calls.  tls_io.c: the record work runs as
 * each connection's one job in the thread pool (tls_session.h). */
enum tls_mode { TLS_OFF, TLS_ON, TLS_REQUIRE };
int tls_configure (enum tls_mode mode, const char *certs_dir,
                   const char *psk_file, bool verify_peer);
enum tls_mode tls_mode (void);
void tls_global_free (void);
int tls_start (struct conn *c); /* after the STARTTLS ack */
/* tls_ciphers.c: the server's cipher order, the faster AEAD first. */
const char *tls_cipher_order (void);
void tls_free (struct conn *c);
bool tls_active (const struct conn *c);
/* A receive or send job is queued or running. */
bool tls_busy (const struct conn *c);
bool tls_decrypting (const struct conn *c); /* it owns c->in's tail */
/* Ciphertext or decrypted records wait for a job (false while one runs:
 * its end wakes the connection). */
bool tls_has_input (const struct conn *c);
bool tls_input_full (const struct conn *c); /* pause reading */
bool tls_handshake_done (const struct conn *c);
void tls_alloc (struct conn *c, uv_buf_t *buf); /* room for ciphertext */
void tls_received (struct conn *c, size_t n);   /* n bytes landed there */
int tls_feed (struct conn *c, const void *data, size_t len);
/* Decrypts into dst, at most cap bytes: here if what is buffered is a
 * few small records (returns the bytes), else in the connection's
 * receive job (returns 0; its end adds them to c->in_len, or with
 * direct to the pending write (transmission_direct_filled), and wakes
 * the connection), the handshake first.  -1: the session is over
 * (logged). */
ssize_t tls_recv (struct conn *c, uint8_t *dst, size_t cap, bool direct);
/* Replies (chained by next) to encrypt and write in order; each one's
 * done runs once its ciphertext is queued on the socket. */
void tls_send (struct conn *c, struct queued_reply *chain);
int tls_send_copy (struct conn *c, const void *data, size_t len);
void tls_drop_queued (struct conn *c, int status); /* closed: never sent */
void tls_bye (struct conn *c); /* close_notify before shutdown */

/* Connection state shared by the files above (loop thread only).
 * A connection's life, in order: it only moves forward, except that
 * STARTTLS returns to OPTIONS once the TLS handshake is done. */
enum conn_state {
  CONN_GREETING,      /* waiting for the client's flags */
  CONN_OPTIONS,       /* option haggling, in plaintext or over TLS */
  CONN_STARTTLS,      /* STARTTLS acknowledged: the TLS handshake runs */
  CONN_TRANSMISSION,  /* serving requests */
  CONN_FINISHING,     /* no new requests; replies drain (a write's data
                       * still arrives), then SHUTTING_DOWN */
  CONN_SHUTTING_DOWN, /* uv_shutdown issued; on_shutdown closes */
  CONN_CLOSED,        /* uv_close called: nothing more is read or sent */
};
struct request;
struct conn {
  union {
    uv_stream_t stream;
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } h;
  uv_shutdown_t shutdown_req;
  struct conn *prev, *next; /* all connections */
  uint64_t id;
  enum conn_state state;
  bool no_zeroes;
  bool structured;      /* NBD_OPT_STRUCTURED_REPLY negotiated */
  bool extended;        /* NBD_OPT_EXTENDED_HEADERS negotiated (implies
                         * structured): only 32-byte requests and replies */
  bool base_allocation; /* base:allocation selected (SET_META_CONTEXT) */
  bool awaiting_export; /* an option names an export still unlocking:
                         * parsed again once it is served (startup.c) */
  /* Handshake timeout, then (after SIGTERM) the deadline to drain. */
  uv_timer_t timer;
  uint64_t submitted;   /* bytes handed to the socket (conn_stream_write) */
  uint64_t drain_taken; /* FINISHING: bytes the client had taken at the
                         * last tick (submitted less still queued) */
  uint64_t rcvd;        /* bytes read from the socket */
  uint64_t drain_rcvd;  /* FINISHING: rcvd at the last tick */
  bool reading;         /* uv_read_start in effect (I/O, not lifecycle) */
  struct tls *tls;      /* after STARTTLS: every byte goes through it */
  struct export *exp;
  uint64_t size; /* the export's size as told to this client */
  uint8_t *in;   /* unparsed input */
  size_t in_len;
  struct request *pending; /* write waiting for its data */
  uint64_t discard;        /* payload bytes of a refused request to skip */
  unsigned refusals;       /* options and requests refused (log.c) */
  unsigned inflight;       /* requests not yet replied */
  uint64_t inflight_bytes; /* their buffers (and the ranges of zeroes
                            * and trims), until their reply is out */
  uint64_t output_bytes;   /* queued for the socket, owned by no request:
                            * option replies, TLS ciphertext */
  uint64_t unsent_bytes;   /* replies queued, not yet written or encrypted
                            * (CLIENT_BEHIND_BYTES) */
  unsigned refs;           /* handle + each request in flight */
  struct queued_reply *replies, **replies_tail; /* reply_queue.c */
  struct conn *next_waiting;                    /* reply_queue.c */
  bool queued;                                  /* on reply_queue.c's list */
  struct conn *next_woken; /* connection.c's list for conn_wake */
  bool woken;
};
void conn_ref (struct conn *c);
/* uv_write on c's socket, counting the bytes (the drain timer tells a
 * client taking its output from one that is not by them).  Every write
 * to a connection's socket goes through here. */
int conn_stream_write (struct conn *c, uv_write_t *req, const uv_buf_t *bufs,
                       unsigned n, uv_write_cb cb);
void conn_unref (struct conn *c);
/* Every change to a connection's inflight_bytes or output_bytes: the
 * daemon-wide total moves with them.  Releasing below the total's budget
 * wakes the connections it paused. */
void conn_hold (uint64_t *counter, uint64_t n);
void conn_release (uint64_t *counter, uint64_t n);
static inline bool
conn_closed (const struct conn *c)
{
  return c->state == CONN_CLOSED;
}
/* Takes no new request: DISC, ABORT, SIGTERM, export removal, or closed. */
static inline bool
conn_finishing (const struct conn *c)
{
  return c->state >= CONN_FINISHING;
}

/* control.c: --control PATH, JSON lines (the commands: control_commands.c);
 * control_client.c: luks-nbd ctl. */
#define CONTROL_LINE_MAX (64 * 1024) /* longer request lines are refused */
int control_listen (uv_loop_t *loop, const char *path);
/* Serves a connected unix stream socket fd (the control fuzz target). */
int control_open_fd (uv_loop_t *loop, int fd);
void control_close (void);                  /* the listener and every client */
int control_client (int argc, char **argv); /* luks-nbd ctl ... */

/* control.c, for the commands in other files: a client holds a
 * reference per command running off the loop; replies are sent on the
 * loop. */
struct ctl_conn;
void ctl_conn_hold (struct ctl_conn *cc);
void ctl_conn_release (struct ctl_conn *cc);
struct json_object;
struct json_object *ctl_ok (void);
void ctl_send (struct ctl_conn *cc, struct json_object *obj);
void ctl_send_error (struct ctl_conn *cc, const char *msg);

/* The command handlers: 0 once the reply is sent or on its way, or
 * -errno with a message (sent as the error reply).  control.c: */
struct ctl_request;
typedef int ctl_handler (struct ctl_conn *cc, const struct ctl_request *req);
ctl_handler ctl_cmd_export_add, ctl_cmd_export_remove, ctl_cmd_export_list,
  ctl_cmd_query_stats, ctl_cmd_export_activate, ctl_cmd_export_inactivate;
/* control_keyslots.c: keyslot-list, -add, -remove, -change. */
ctl_handler ctl_cmd_keyslot_list, ctl_cmd_keyslot_add, ctl_cmd_keyslot_remove,
  ctl_cmd_keyslot_change;
/* control_resize.c (below). */
ctl_handler ctl_cmd_export_resize;

/* control_commands.c: the commands, one table row each: the handler,
 * what luks-nbd ctl takes (positional arguments, options), which is also
 * what the request may hold, and a line of help.  Dispatch, the member
 * check, the unknown-command error, luks-nbd ctl's parsing and both
 * usage texts come from the table. */
enum ctl_arg {
  CTL_ARG_NONE,
  CTL_ARG_NAME, /* NAME: "name" */
  CTL_ARG_SPEC, /* SPEC: "spec", or the export's keys as members */
  CTL_ARG_SIZE, /* SIZE: "size" (bytes; ctl takes K, M, G, T) */
  CTL_ARG_SLOT, /* SLOT: "slot" */
};
enum ctl_opt {
  CTL_OPT_FORCE = 1 << 0,         /* [--force]: "force":true */
  CTL_OPT_PASS = 1 << 1,          /* [--passphrase-stdin]: "passphrase" */
  CTL_OPT_PASS_REQUIRED = 1 << 2, /* --passphrase-stdin, not optional */
  CTL_OPT_INACTIVE = 1 << 3,      /* [--inactive]: active=off in SPEC */
  CTL_OPT_KEY_SLOT = 1 << 4,      /* [--key-slot N]: "slot" */
  CTL_OPT_KDF = 1 << 5,           /* [KDF]: ctl_kdf_options */
};
struct ctl_command {
  const char *name;
  ctl_handler *run;
  enum ctl_arg arg, arg2; /* luks-nbd ctl's positional arguments */
  unsigned opts;          /* enum ctl_opt */
  const char *help;
};
const struct ctl_command *ctl_command_find (const char *name);
int ctl_dispatch (struct ctl_conn *cc, const struct ctl_request *req);
/* "keyslot-add NAME --passphrase-stdin [--key-slot N] [KDF]" */
void ctl_command_synopsis (const struct ctl_command *c, char *buf, size_t cap);
size_t ctl_command_names (char *buf, size_t cap); /* "export-add, ..." */
void ctl_commands_help (FILE *f); /* each synopsis and its help */
/* Each synopsis on a line of its own, indented, " |" between them. */
void ctl_commands_synopses (FILE *f, size_t indent);
/* New keyslots' KDF: option (--pbkdf-memory), member, value in help. */
struct ctl_kdf_option {
  const char *option, *member, *value;
  bool number;
};
#define CTL_KDF_OPTIONS 5
extern const struct ctl_kdf_option ctl_kdf_options[CTL_KDF_OPTIONS];

/* control_request.c: one request line, a flat JSON object, parsed in
 * place (strings point into the line, which the caller wipes). */
#define CTL_MEMBERS_MAX 32
enum ctl_type { CTL_NULL, CTL_BOOLEAN, CTL_NUMBER, CTL_STRING, CTL_TEXT };
struct ctl_member {
  const char *key;
  enum ctl_type type; /* never CTL_TEXT: a UTF-8 string without NULs */
  const char *text;   /* string (decoded, NUL terminated) or number text */
  size_t len;
  bool boolean;
};
struct ctl_request {
  size_t n;
  struct ctl_member m[CTL_MEMBERS_MAX];
};
int ctl_request_parse (char *line, size_t len, struct ctl_request *req);
/* The one accessor: 1 and *out if key is there with the type, 0 if it is
 * absent and not required, else -EINVAL naming member and type. */
int ctl_member_get (const struct ctl_request *req, const char *key,
                    enum ctl_type type, bool required,
                    const struct ctl_member **out);
/* s as a JSON string literal into out (cap bytes); returns the length it
 * needs, which may be more than cap (then out holds a prefix). */
size_t ctl_json_string (char *out, size_t cap, const char *s, size_t len);

/* control_resize.c: export-resize (ctl_cmd_export_resize, run in the
 * pool), and the SIZE syntax of luks-nbd ctl export-resize: bytes, or a
 * K/M/G/T suffix (powers of 1024, as qemu-img). */
int ctl_parse_size (const char *text, uint64_t *out);

/* systemd.c */
/* fds passed to us (sockets, fd store), or 0; *names (may be NULL) is
 * LISTEN_FDNAMES, to free. */
int systemd_listen_fds (char **names);
int systemd_notify (const char *state);
void systemd_start_watchdog (uv_loop_t *loop);
void systemd_stop_watchdog (void);

/* keystore.c: volume keys kept across a restart in systemd's fd store
 * (--fd-store).  take/save/release run on unlock threads. */
void keystore_enable (void);
bool keystore_is_key_fd (const char *fdname);
void keystore_adopt (const char *fdname, int fd); /* before unlocks */
/* 1 and the export's handed-over key blob (mapped read-only) if the
 * store passed one, 0 if not, -errno. */
int keystore_take (const char *export_name, const void **blob, size_t *len);
void keystore_release (const void *blob, size_t len);
/* Puts an unlocked export's key in the store (not one handed over). */
int keystore_save (const char *export_name, struct node *top);
void keystore_forget (const char *export_name); /* export removed */
void keystore_close_untaken (void);             /* after the start-up unlocks */

/* startup.c: the configured exports unlock on threads of their own
 * while the daemon serves; each is served once unlocked.  done runs on
 * the loop once all are (failed: how many could not be opened). */
int startup_unlock (uv_loop_t *loop, void (*done) (size_t failed));
/* An export still unlocking by that name ("" = the first configured,
 * if it is not served yet). */
bool startup_pending (const char *name, size_t len);
void startup_stop (void); /* SIGTERM: no new unlock starts */
void startup_free (void);

/* run.c: --run CMD, as nbdkit --run: $uri and $unixsocket name the first
 * --socket, else the first --listen, else the first socket systemd
 * passed (passed_fd, or -1).  exit_cb gets the command's status. */
int run_start (uv_loop_t *loop, const char *cmd, const char *socket_path,
               const char *tcp, int passed_fd, void (*exit_cb) (int status));
/* With nothing else to listen on: a socket in a private directory,
 * listening now (owned by --user/--group, who run CMD, if given); removed
 * by run_remove_private_socket. */
int run_private_socket (uv_loop_t *loop, const char *user, const char *group,
                        const char **path);
void run_remove_private_socket (void);

/* usage.c: "  TAG  help" for the --help texts that tables generate: the
 * tag indented, the help wrapped at 79 columns from column col (beside
 * the tag if it fits, else under it). */
void usage_item (FILE *f, size_t indent, size_t col, const char *tag,
                 const char *help);

/* main.c */
extern uv_loop_t *server_loop;
bool server_stopping (void);

#endif
