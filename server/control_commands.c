/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the control commands, one row each.  A row names the
 * handler and what the command takes on luks-nbd ctl's command line,
 * which is also what its request may hold: NAME is "name", SPEC is
 * "spec" (or the export's keys as members), SIZE "size", SLOT and
 * --key-slot "slot", --force "force", --passphrase-stdin "passphrase",
 * the KDF options their members.  From the table come the dispatch, the
 * member check, the unknown-command error, luks-nbd ctl's parsing and
 * request (control_client.c), and both usage texts (luks-nbd ctl --help
 * and the daemon's --help).  Adding a command is one row and its
 * handler. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/error_msg.h"
#include "server/internal.h"

/* Keyslot KDF options (cryptsetup's names) and their members. */
const struct ctl_kdf_option ctl_kdf_options[CTL_KDF_OPTIONS] = {
  { "pbkdf", "pbkdf", "argon2id|argon2i|pbkdf2", false },
  { "pbkdf-memory", "pbkdf_memory", "KiB", true },
  { "pbkdf-parallel", "pbkdf_parallel", "N", true },
  { "iter-time", "iter_time", "MS", true },
  { "pbkdf-force-iterations", "pbkdf_force_iterations", "N", true },
};

static const struct ctl_command commands[] = {
  { "export-add", ctl_cmd_export_add, CTL_ARG_SPEC, CTL_ARG_NONE,
    CTL_OPT_PASS | CTL_OPT_INACTIVE,
    "add an export: SPEC as --export takes it, its relative paths made "
    "absolute in the current directory; --passphrase-stdin sends the "
    "passphrase apart from the spec; --inactive adds active=off (the "
    "destination of a live migration)" },
  { "export-remove", ctl_cmd_export_remove, CTL_ARG_NAME, CTL_ARG_NONE,
    CTL_OPT_FORCE,
    "stop serving an export; refused while clients are connected, unless "
    "--force, which drains them" },
  { "export-list", ctl_cmd_export_list, CTL_ARG_NONE, CTL_ARG_NONE, 0,
    "every export: name, size, readonly, active, description, connections" },
  { "query-stats", ctl_cmd_query_stats, CTL_ARG_NONE, CTL_ARG_NONE, 0,
    "per export: connections, requests, errors, bytes read and written" },
  { "export-resize", ctl_cmd_export_resize, CTL_ARG_NAME, CTL_ARG_SIZE,
    CTL_OPT_FORCE,
    "grow an export to SIZE bytes of plaintext (a K, M, G or T suffix: "
    "powers of 1024); shrinking needs --force and no client connected" },
  { "export-activate", ctl_cmd_export_activate, CTL_ARG_NAME, CTL_ARG_NONE, 0,
    "make an inactive export active: it takes the image lock and serves "
    "writes (live migration)" },
  { "export-inactivate", ctl_cmd_export_inactivate, CTL_ARG_NAME, CTL_ARG_NONE,
    0,
    "flush an export, drop its caches and release the image lock; writes "
    "are refused until export-activate" },
  { "keyslot-list", ctl_cmd_keyslot_list, CTL_ARG_NAME, CTL_ARG_NONE, 0,
    "the keyslots of the export's header: state, KDF and costs, priority" },
  { "keyslot-add", ctl_cmd_keyslot_add, CTL_ARG_NAME, CTL_ARG_NONE,
    CTL_OPT_PASS_REQUIRED | CTL_OPT_KEY_SLOT | CTL_OPT_KDF,
    "a new keyslot for the passphrase read from stdin, in the first free "
    "slot or --key-slot N; the key comes from the running export (no old "
    "passphrase)" },
  { "keyslot-change", ctl_cmd_keyslot_change, CTL_ARG_NAME, CTL_ARG_SLOT,
    CTL_OPT_PASS_REQUIRED | CTL_OPT_KDF,
    "a new keyslot for the passphrase read from stdin, then SLOT removed "
    "(a crash in between leaves both working)" },
  { "keyslot-remove", ctl_cmd_keyslot_remove, CTL_ARG_NAME, CTL_ARG_SLOT,
    CTL_OPT_FORCE,
    "remove keyslot SLOT; the last one that opens the volume only with "
    "--force" },
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

const struct ctl_command *
ctl_command_find (const char *name)
{
  for (size_t i = 0; i < N_COMMANDS; i++)
    if (strcmp (name, commands[i].name) == 0)
      return &commands[i];
  return NULL;
}

/* The members c's request may hold besides "cmd", in the order luks-nbd
 * ctl documents them; n at most 12. */
static size_t
members (const struct ctl_command *c, const char *out[12])
{
  static const char *const args[] = { [CTL_ARG_NONE] = NULL,
                                      [CTL_ARG_NAME] = "name",
                                      [CTL_ARG_SPEC] = "spec",
                                      [CTL_ARG_SIZE] = "size",
                                      [CTL_ARG_SLOT] = "slot" };
  size_t n = 0;

  if (args[c->arg])
    out[n++] = args[c->arg];
  if (args[c->arg2])
    out[n++] = args[c->arg2];
  if (c->opts & (CTL_OPT_PASS | CTL_OPT_PASS_REQUIRED))
    out[n++] = "passphrase";
  if (c->opts & CTL_OPT_KEY_SLOT)
    out[n++] = "slot";
  for (size_t k = 0; (c->opts & CTL_OPT_KDF) && k < CTL_KDF_OPTIONS; k++)
    out[n++] = ctl_kdf_options[k].member;
  if (c->opts & CTL_OPT_FORCE)
    out[n++] = "force";
  return n;
}

/* export-add takes the export's keys as members, which its parser
 * checks; every other command only the members its row implies. */
static int
check_members (const struct ctl_command *c, const struct ctl_request *req)
{
  const char *known[12];
  size_t n = members (c, known);

  for (size_t i = 0; c->arg != CTL_ARG_SPEC && i < req->n; i++) {
    const char *key = req->m[i].key;
    bool ok = !strcmp (key, "cmd");
    for (size_t k = 0; !ok && k < n; k++)
      ok = !strcmp (key, known[k]);
    if (ok)
      continue;
    char list[256] = "only \"cmd\"";
    size_t len = 0;
    for (size_t k = 0; k < n && len < sizeof list; k++)
      len += (size_t) snprintf (list + len, sizeof list - len, "%s\"%s\"",
                                k ? ", " : "", known[k]);
    return error_set (-EINVAL, "unknown member \"%s\" (it takes %s)", key,
                      list);
  }
  return 0;
}

size_t
ctl_command_names (char *buf, size_t cap)
{
  size_t len = 0;

  buf[0] = '\0';
  for (size_t i = 0; i < N_COMMANDS && len < cap; i++)
    len += (size_t) snprintf (buf + len, cap - len, "%s%s", i ? ", " : "",
                              commands[i].name);
  return len;
}

int
ctl_dispatch (struct ctl_conn *cc, const struct ctl_request *req)
{
  const struct ctl_member *cmd;
  const struct ctl_command *c;
  char names[512];
  int r = ctl_member_get (req, "cmd", CTL_TEXT, true, &cmd);

  if (r < 0)
    return r;
  if (!(c = ctl_command_find (cmd->text))) {
    ctl_command_names (names, sizeof names);
    return error_set (-EINVAL, "unknown cmd \"%.64s\" (expected %s)", cmd->text,
                      names);
  }
  r = check_members (c, req);
  if (r >= 0)
    r = c->run (cc, req);
  return r < 0 ? error_prefix (r, "%s", c->name) : 0;
}

void
ctl_command_synopsis (const struct ctl_command *c, char *buf, size_t cap)
{
  static const char *const args[] = { [CTL_ARG_NONE] = "",
                                      [CTL_ARG_NAME] = " NAME",
                                      [CTL_ARG_SPEC] = " SPEC",
                                      [CTL_ARG_SIZE] = " SIZE",
                                      [CTL_ARG_SLOT] = " SLOT" };
  unsigned o = c->opts;

  snprintf (buf, cap, "%s%s%s%s%s%s%s%s", c->name, args[c->arg], args[c->arg2],
            o & CTL_OPT_PASS_REQUIRED ? " --passphrase-stdin"
            : o & CTL_OPT_PASS        ? " [--passphrase-stdin]"
                                      : "",
            o & CTL_OPT_KEY_SLOT ? " [--key-slot N]" : "",
            o & CTL_OPT_KDF ? " [KDF]" : "",
            o & CTL_OPT_INACTIVE ? " [--inactive]" : "",
            o & CTL_OPT_FORCE ? " [--force]" : "");
}

void
ctl_commands_help (FILE *f)
{
  char synopsis[160];

  for (size_t i = 0; i < N_COMMANDS; i++) {
    ctl_command_synopsis (&commands[i], synopsis, sizeof synopsis);
    usage_item (f, 2, 6, synopsis, commands[i].help);
  }
}

void
ctl_commands_synopses (FILE *f, size_t indent)
{
  char synopsis[160];

  for (size_t i = 0; i < N_COMMANDS; i++) {
    ctl_command_synopsis (&commands[i], synopsis, sizeof synopsis);
    fprintf (f, "%*s%s%s\n", (int) indent, "", synopsis,
             i + 1 < N_COMMANDS ? " |" : "");
  }
}
