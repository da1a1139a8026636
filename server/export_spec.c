/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: export specs ("name=vm1,payload=P,header=H,key-file=K"), as
 * --export, --config lines and export-add give them.  ",," in a value
 * stands for a literal comma, as in qemu's option syntax.  The keys are
 * one table: a row names the key, its value's syntax, the function that
 * checks the value and stores it in the export, and a line of help.
 * Parsing, the unknown-key error, --help's list of keys and which keys
 * are paths (made absolute for --config and luks-nbd ctl) come from it;
 * tests/test-man-page.sh checks the man page's list against --help.
 * The rules between keys (one passphrase source, cache=none on a file,
 * files that exist) are check_spec's. */
#include <config.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/internal.h"

enum key_id {
  KEY_NAME, /* first: spec_strings[0] is the name (fuzz-control.c) */
  KEY_PAYLOAD,
  KEY_HEADER,
  KEY_KEY_FILE,
  KEY_PASSPHRASE_FILE,
  KEY_KEY_SLOT,
  KEY_READONLY,
  KEY_PAYLOAD_FORMAT,
  KEY_PAYLOAD_BACKING,
  KEY_QCOW2_CACHE_SIZE,
  KEY_DISCARD,
  KEY_CACHE,
  KEY_CHECK_PLAINTEXT,
  KEY_ACTIVE,
  KEY_DESCRIPTION,
  KEY_LOCKING,
  KEY_BACKUP_HEADER,
  KEY_CREDENTIAL,
  N_KEYS
};
_Static_assert(N_KEYS <= EXPORT_KEYS_MAX, "struct export's spec_strings");

enum {
  KEY_REQUIRED = 1 << 0, /* refused without it */
  KEY_PATH = 1 << 1,     /* a file path (or URI): relative ones resolved */
  KEY_NEGATED = 1 << 2,  /* a switch whose field means "no" (no_locking) */
};

struct spec_key;
/* Checks v and stores it at field, the key's member of the export;
 * errors start with label and name key and value. */
typedef int key_parse_fn (const struct spec_key *k, const char *label,
                          const char *v, void *field);

struct spec_key {
  const char *name;
  const char *value; /* --help's name=VALUE; a switch's "yes|no" */
  key_parse_fn *parse;
  size_t field; /* offsetof (struct export, ...) */
  unsigned flags;
  const char *help;
};

static key_parse_fn parse_string, parse_text, parse_name, parse_switch,
  parse_key_slot, parse_payload_format, parse_qcow2_cache;

#define AT(member) offsetof (struct export, member)

/* In the man page's order (tests/test-man-page.sh checks it). */
static const struct spec_key keys[N_KEYS] = {
  [KEY_NAME] = { "name", "NAME", parse_name, AT (name), KEY_REQUIRED,
                 "the export's name (required)" },
  [KEY_PAYLOAD] = { "payload", "PATH|URI", parse_string, AT (spec.payload),
                    KEY_REQUIRED | KEY_PATH,
                    "the ciphertext (required): a file, a block device or "
                    "an NBD URI" },
  [KEY_HEADER] = { "header", "PATH|URI", parse_string, AT (spec.header),
                   KEY_PATH,
                   "the detached LUKS header (default: at the start of the "
                   "payload)" },
  [KEY_KEY_FILE] = { "key-file", "PATH", parse_string, AT (spec.key_file),
                     KEY_PATH, "the passphrase: the file's exact bytes" },
  [KEY_PASSPHRASE_FILE] = { "passphrase-file", "PATH", parse_string,
                            AT (spec.passphrase_file), KEY_PATH,
                            "the passphrase: the file, one trailing "
                            "newline removed" },
  [KEY_KEY_SLOT] = { "key-slot", "N", parse_key_slot, AT (spec.key_slot), 0,
                     "try only key slot N, 0..31 (default: every slot)" },
  [KEY_READONLY] = { "readonly", "on|off", parse_switch, AT (readonly), 0,
                     "refuse writes (default off)" },
  /* Its value list comes from formats' table (export_keys_usage). */
  [KEY_PAYLOAD_FORMAT] = { "payload-format", NULL, parse_payload_format,
                           AT (spec.payload_format), 0,
                           "how the payload is stored (default auto: "
                           "probed)" },
  [KEY_PAYLOAD_BACKING] = { "payload-backing", "on|off", parse_switch,
                            AT (spec.payload_backing), 0,
                            "follow a qcow2 backing chain (default off)" },
  [KEY_QCOW2_CACHE_SIZE] = { "qcow2-cache-size", "SIZE", parse_qcow2_cache,
                             AT (spec.qcow2_cache_bytes), 0,
                             "memory for qcow2 L2 tables, 64K..1G (default "
                             "1M)" },
  [KEY_DISCARD] = { "discard", "on|off", parse_switch, AT (discard), 0,
                    "pass trims to the payload (default off)" },
  [KEY_CACHE] = { "cache", "writeback|none", parse_switch, AT (spec.direct_io),
                  KEY_NEGATED,
                  "none: O_DIRECT, no page cache (default writeback)" },
  [KEY_CHECK_PLAINTEXT] = { "check-plaintext", "on|off", parse_switch,
                            AT (spec.no_plaintext_check), KEY_NEGATED,
                            "refuse a payload that does not decrypt to "
                            "data (default on)" },
  [KEY_ACTIVE] = { "active", "on|off", parse_switch, AT (spec.inactive),
                   KEY_NEGATED,
                   "off: start inactive, as a live migration's destination "
                   "(see export-activate; default on)" },
  [KEY_DESCRIPTION] = { "description", "TEXT", parse_text, AT (description), 0,
                        "shown by NBD_OPT_LIST (nbdinfo --list)" },
  [KEY_LOCKING] = { "locking", "on|off", parse_switch, AT (spec.no_locking),
                    KEY_NEGATED, "take QEMU's image locks (default on)" },
  [KEY_BACKUP_HEADER] = { "backup-header", "PATH|URI", parse_string,
                          AT (spec.backup_header), KEY_PATH,
                          "a copy of the header, used if the header fails" },
  [KEY_CREDENTIAL] = { "credential", "NAME", parse_string, AT (spec.credential),
                       0,
                       "the passphrase: the systemd credential NAME "
                       "($CREDENTIALS_DIRECTORY/NAME)" },
};

#define QCOW2_CACHE_MIN (64 * 1024)
#define QCOW2_CACHE_MAX (UINT64_C (1) << 30)

void
export_keys_usage (FILE *f)
{
  char tag[64];

  for (size_t k = 0; k < N_KEYS; k++) {
    snprintf (tag, sizeof tag, "%s=%s", keys[k].name,
              keys[k].value ? keys[k].value : node_stack_format_choices ());
    usage_item (f, 4, 28, tag, keys[k].help);
  }
}

static int
parse_string (const struct spec_key *k, const char *label, const char *v,
              void *field)
{
  *(const char **) field = v;
  return 0;
}

/* name= and description= reach logs and NBD replies: at most 4096 bytes
 * (the NBD limit for strings), no control characters (a forged log line,
 * a confused terminal). */
static int
parse_text (const struct spec_key *k, const char *label, const char *v,
            void *field)
{
  if (strlen (v) > NBD_STRING_MAX)
    return error_set (-EINVAL, "%s: %s= is longer than %d bytes", label,
                      k->name, NBD_STRING_MAX);
  for (const unsigned char *p = (const unsigned char *) v; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return error_set (-EINVAL, "%s: %s= holds a control character (0x%02x)",
                        label, k->name, *p);
  return parse_string (k, label, v, field);
}

static int
parse_name (const struct spec_key *k, const char *label, const char *v,
            void *field)
{
  if (!v[0])
    return error_set (-EINVAL,
                      "%s: name= is empty (a client asking for the default "
                      "export \"\" gets the first export)",
                      label);
  return parse_text (k, label, v, field);
}

/* A two-valued key: k->value is "yes|no". */
static int
parse_switch (const struct spec_key *k, const char *label, const char *v,
              void *field)
{
  const char *no = strchr (k->value, '|') + 1;
  size_t yes_len = (size_t) (no - 1 - k->value);
  bool yes = strlen (v) == yes_len && strncmp (v, k->value, yes_len) == 0;

  if (!yes && strcmp (v, no) != 0)
    return error_set (-EINVAL, "%s: %s=%s: expected %.*s or %s", label, k->name,
                      v, (int) yes_len, k->value, no);
  *(bool *) field = (k->flags & KEY_NEGATED) ? !yes : yes;
  return 0;
}

static int
parse_key_slot (const struct spec_key *k, const char *label, const char *v,
                void *field)
{
  char *end;
  long slot = strtol (v, &end, 10);

  if (*end || end == v || slot < 0 || slot > 31 || *v < '0' || *v > '9')
    return error_set (-EINVAL, "%s: key-slot=%s: expected 0..31", label, v);
  *(int *) field = (int) slot;
  return 0;
}

/* The payload formats the stack opens (formats/' table says which). */
static int
parse_payload_format (const struct spec_key *k, const char *label,
                      const char *v, void *field)
{
  int r = node_stack_check_format (v);

  if (r < 0)
    return error_prefix (r, "%s", label);
  return parse_string (k, label, v, field);
}

/* "128K", "4M", "1G" or plain bytes. */
static int
parse_size (const char *s, uint64_t *out)
{
  char *end;
  unsigned long long v = strtoull (s, &end, 10);
  int shift = 0;

  /* strtoull would take a sign ("-1" wraps) and leading blanks. */
  if (end == s || *s < '0' || *s > '9')
    return -EINVAL;
  switch (*end) {
  case 'k':
  case 'K':
    shift = 10;
    end++;
    break;
  case 'm':
  case 'M':
    shift = 20;
    end++;
    break;
  case 'g':
  case 'G':
    shift = 30;
    end++;
    break;
  }
  if (*end || v > (UINT64_MAX >> shift))
    return -EINVAL;
  *out = (uint64_t) v << shift;
  return 0;
}

static int
parse_qcow2_cache (const struct spec_key *k, const char *label, const char *v,
                   void *field)
{
  uint64_t *bytes = field;

  if (parse_size (v, bytes) < 0 || *bytes < QCOW2_CACHE_MIN ||
      *bytes > QCOW2_CACHE_MAX)
    return error_set (-EINVAL,
                      "%s: qcow2-cache-size=%s: expected 64K..1G (K, M, G "
                      "suffixes)",
                      label, v);
  return 0;
}

/* Splits the next "key=value" off *p, undoing ",," escapes; NULL at end. */
static char *
next_item (const char **p)
{
  const char *s = *p;
  char *out, *o;

  if (!*s)
    return NULL;
  out = o = malloc (strlen (s) + 1);
  if (!out)
    return NULL;
  while (*s) {
    if (*s == ',' && s[1] == ',') {
      *o++ = ',';
      s += 2;
    } else if (*s == ',') {
      s++;
      break;
    } else
      *o++ = *s++;
  }
  *o = '\0';
  *p = s;
  return out;
}

int
export_spec_append (char **spec, size_t *len, const char *key, const char *v)
{
  size_t need = *len + strlen (key) + 2 * strlen (v) + 3;
  char *n = realloc (*spec, need);

  if (!n)
    return error_set (-ENOMEM, "out of memory");
  *spec = n;
  *len += (size_t) sprintf (n + *len, "%s%s=", *len ? "," : "", key);
  for (const char *p = v; *p; p++) {
    n[(*len)++] = *p;
    if (*p == ',')
      n[(*len)++] = ',';
  }
  n[*len] = '\0';
  return 0;
}

/* The key's row, or N_KEYS. */
static enum key_id
find_key (const char *name)
{
  enum key_id k = 0;

  while (k < N_KEYS && strcmp (name, keys[k].name) != 0)
    k++;
  return k;
}

static bool
is_path_key (const char *key)
{
  enum key_id k = find_key (key);

  return k < N_KEYS && (keys[k].flags & KEY_PATH);
}

int
export_spec_absolute (const char *text, const char *dir, char **out)
{
  const char *p = text;
  char *spec = NULL, *item, *joined;
  size_t len = 0;
  int r = 0;

  while (r == 0 && (item = next_item (&p))) {
    char *eq = strchr (item, '='), *v = eq ? eq + 1 : NULL;
    joined = NULL;
    if (!eq) { /* not key=value: left as it is, for export_parse to refuse */
      free (item);
      r = 1;
      break;
    }
    *eq = '\0';
    if (is_path_key (item) && v[0] && v[0] != '/' && !node_is_uri (v) &&
        asprintf (&joined, "%s/%s", dir, v) < 0) {
      joined = NULL;
      r = error_set (-ENOMEM, "out of memory");
    }
    if (r == 0)
      r = export_spec_append (&spec, &len, item, joined ? joined : v);
    free (joined);
    free (item);
  }
  if (r == 1 || (r == 0 && !spec)) {
    free (spec);
    spec = strdup (text);
    r = spec ? 0 : error_set (-ENOMEM, "out of memory");
  }
  if (r < 0) {
    free (spec);
    return r;
  }
  *out = spec;
  return 0;
}

/* One spec being parsed. */
struct spec_parse {
  const char *origin;
  bool from_control; /* export-add: hints that fit luks-nbd ctl */
  bool inline_passphrase;
  char label[320]; /* origin, then "export 'NAME'" once it is known */
  char *values[N_KEYS];
};

/* A key that holds a passphrase is refused: the spec was on a command
 * line, or would be logged.  The value is never echoed. */
static int
refuse_secret (const struct spec_parse *p, const char *key)
{
  if (p->from_control)
    return error_set (-EINVAL,
                      "%s: %s= is refused in a spec (it was on a command "
                      "line): send the passphrase apart, with luks-nbd ctl "
                      "export-add SPEC --passphrase-stdin (a \"passphrase\" "
                      "member on the socket), or use key-file=, "
                      "passphrase-file= or credential=",
                      p->label, key);
  return error_set (-EINVAL,
                    "%s: %s= is refused: every user can read a command "
                    "line; use key-file=, passphrase-file=, credential= or "
                    "the control socket",
                    p->label, key);
}

static int
unknown_key (const struct spec_parse *p, const char *key)
{
  char known[512];
  size_t len = 0;

  for (size_t i = 0; i < N_KEYS && len < sizeof known; i++)
    len += (size_t) snprintf (known + len, sizeof known - len, "%s%s",
                              i ? ", " : "", keys[i].name);
  return error_set (-EINVAL, "%s: unknown key '%s' (expected %s)", p->label,
                    key, known);
}

/* name= known: every later message names the export (a --config line
 * keeps its file and line too). */
static void
set_label (struct spec_parse *p, const char *name)
{
  if (strncmp (p->origin, "--config ", 9) == 0)
    snprintf (p->label, sizeof p->label, "export '%.40s' (%.256s)", name,
              p->origin);
  else
    snprintf (p->label, sizeof p->label, "export '%.40s'", name);
  for (char *c = p->label; *c; c++) /* parse_text refuses these later */
    if ((unsigned char) *c < 0x20 || *c == 0x7f)
      *c = '?';
}

/* Every key=value into p->values, by key; nothing is checked but the
 * syntax, so that every value's message can name the export. */
static int
split_spec (const char *text, struct spec_parse *p)
{
  char *item;
  int r = 0;

  while (r == 0 && (item = next_item (&text))) {
    char *eq = strchr (item, '=');
    enum key_id k;
    if (!eq) {
      r = error_set (-EINVAL, "%s: '%s' is not key=value", p->label, item);
      free (item);
      break;
    }
    *eq = '\0';
    k = find_key (item);
    if (k == N_KEYS && (!strcmp (item, "passphrase") || !strcmp (item, "key") ||
                        !strcmp (item, "password")))
      r = refuse_secret (p, item);
    else if (k == N_KEYS)
      r = unknown_key (p, item);
    else if (p->values[k])
      r = error_set (-EINVAL, "%s: key '%s' given twice", p->label, item);
    else if (!(p->values[k] = strdup (eq + 1)))
      r = error_set (-ENOMEM, "out of memory");
    if (r == 0 && k == KEY_NAME)
      set_label (p, p->values[k]);
    free (item);
  }
  return r;
}

/* Each value given, checked and stored by its row. */
static int
parse_values (struct export *e, struct spec_parse *p)
{
  for (size_t k = 0; k < N_KEYS; k++)
    if ((keys[k].flags & KEY_REQUIRED) && !p->values[k])
      return error_set (-EINVAL, "%s: %s= is required", p->label, keys[k].name);
  for (size_t k = 0; k < N_KEYS; k++) {
    int r;
    if (!p->values[k])
      continue;
    r = keys[k].parse (&keys[k], p->label, p->values[k],
                       (char *) e + keys[k].field);
    if (r < 0)
      return r;
  }
  return 0;
}

/* credential=NAME: $CREDENTIALS_DIRECTORY/NAME, read as a key file. */
static int
credential_path (const char *label, char *const *values, char **out)
{
  const char *dir = getenv ("CREDENTIALS_DIRECTORY");
  const char *name = values[KEY_CREDENTIAL];

  if (values[KEY_KEY_FILE] || values[KEY_PASSPHRASE_FILE])
    return error_set (-EINVAL,
                      "%s: credential= replaces key-file= and "
                      "passphrase-file=",
                      label);
  if (!dir)
    return error_set (-EINVAL,
                      "%s: credential=%s: $CREDENTIALS_DIRECTORY is "
                      "not set (use LoadCredential= in the unit)",
                      label, name);
  /* An empty or relative directory would read from / or the cwd. */
  if (dir[0] != '/')
    return error_set (-EINVAL,
                      "%s: credential=%s: $CREDENTIALS_DIRECTORY=%s is not "
                      "an absolute path",
                      label, name, dir);
  if (!name[0] || strchr (name, '/') || !strcmp (name, ".") ||
      !strcmp (name, ".."))
    return error_set (-EINVAL, "%s: credential=%s: a name, not a path", label,
                      name);
  if (asprintf (out, "%s/%s", dir, name) < 0)
    return error_set (-ENOMEM, "out of memory");
  return 0;
}

/* Exactly one passphrase source: key-file=, passphrase-file=,
 * credential= (which becomes the key file) or the control socket's. */
static int
check_passphrase_source (struct export *e, struct spec_parse *p)
{
  char **v = p->values;
  int r;

  if (p->inline_passphrase &&
      (v[KEY_KEY_FILE] || v[KEY_PASSPHRASE_FILE] || v[KEY_CREDENTIAL]))
    return error_set (
      -EINVAL, "%s: a passphrase is given, and so is %s=: give one", p->label,
      v[KEY_KEY_FILE]          ? "key-file"
      : v[KEY_PASSPHRASE_FILE] ? "passphrase-file"
                               : "credential");
  if (v[KEY_CREDENTIAL]) {
    if ((r = credential_path (p->label, v, &v[KEY_KEY_FILE])) < 0)
      return r;
    e->spec.key_file = v[KEY_KEY_FILE];
  }
  if (!v[KEY_KEY_FILE] && !v[KEY_PASSPHRASE_FILE] && !p->inline_passphrase)
    return p->from_control
             ? error_set (-EINVAL,
                          "%s: no passphrase: give it with luks-nbd ctl "
                          "export-add SPEC --passphrase-stdin (a "
                          "\"passphrase\" member on the socket), or "
                          "key-file=, passphrase-file= or credential= in "
                          "the spec",
                          p->label)
             : error_set (-EINVAL,
                          "%s: key-file= or passphrase-file= is required (or "
                          "credential=)",
                          p->label);
  if (v[KEY_KEY_FILE] && v[KEY_PASSPHRASE_FILE])
    return error_set (
      -EINVAL, "%s: give key-file= or passphrase-file=, not both", p->label);
  return 0;
}

/* Files are checked now so the error names the key, not just a path. */
static int
check_files (struct spec_parse *p)
{
  char **v = p->values;

  for (size_t k = 0; k < N_KEYS; k++) {
    const char *path = v[k];
    if (!(keys[k].flags & KEY_PATH))
      continue;
    /* A missing header is what backup-header= is for. */
    if (k == KEY_HEADER && v[KEY_BACKUP_HEADER])
      continue;
    if (!path || node_is_uri (path) || access (path, R_OK) == 0)
      continue;
    if (k == KEY_KEY_FILE && v[KEY_CREDENTIAL])
      return error_set (-errno,
                        "%s: credential=%s: %s in $CREDENTIALS_DIRECTORY "
                        "(%s); the unit needs LoadCredential=%s:PATH or "
                        "SetCredential=",
                        p->label, v[KEY_CREDENTIAL], strerror (errno),
                        getenv ("CREDENTIALS_DIRECTORY"), v[KEY_CREDENTIAL]);
    return error_set (-errno, "%s: %s=%s: %s", p->label, keys[k].name, path,
                      strerror (errno));
  }
  return 0;
}

/* The rules between keys. */
static int
check_spec (struct export *e, struct spec_parse *p)
{
  int r = check_passphrase_source (e, p);

  /* What formats/ knows: the payload formats, cache=none only on files. */
  if (r == 0 && (r = node_stack_check_spec (&e->spec)) < 0)
    error_prefix (r, "%s", p->label);
  if (r == 0)
    r = check_files (p);
  return r;
}

int
export_parse (const char *text, const char *origin, bool force_readonly,
              bool inline_passphrase, struct export **out)
{
  struct spec_parse p = {
    .origin = origin,
    .from_control = strcmp (origin, "export-add") == 0,
    .inline_passphrase = inline_passphrase,
  };
  struct export *e = export_new ();
  int r;

  if (!e)
    return error_set (-ENOMEM, "out of memory");
  snprintf (p.label, sizeof p.label, "%s", origin);
  r = split_spec (text, &p);
  if (r == 0)
    r = parse_values (e, &p);
  if (r == 0)
    r = check_spec (e, &p);
  /* The values now belong to the export (the fields point into them). */
  memcpy (e->spec_strings, p.values, sizeof p.values);
  if (r < 0) {
    export_free (e);
    return r;
  }
  e->readonly = e->readonly || force_readonly;
  e->spec.readonly = e->readonly;
  atomic_store (&e->active, !e->spec.inactive);
  if (!(e->label = strdup (p.label))) {
    export_free (e);
    return error_set (-ENOMEM, "out of memory");
  }
  *out = e;
  return 0;
}
