/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: export specs ("name=vm1,payload=P,header=H,key-file=K") and
 * the registry of exports.  ",," in a value stands for a literal comma,
 * as in qemu's option syntax. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error_msg.h"
#include "server/internal.h"
#include "crypto/secmem.h"

static struct export **exports;
static size_t n_exports;

enum spec_key {
  KEY_NAME,
  KEY_PAYLOAD,
  KEY_HEADER,
  KEY_KEY_FILE,
  KEY_PASSPHRASE_FILE,
  KEY_KEY_SLOT,
  KEY_READONLY,
  KEY_PAYLOAD_FORMAT,
  KEY_DESCRIPTION,
  KEY_QCOW2_CACHE_SIZE,
  KEY_PAYLOAD_BACKING,
  KEY_DISCARD,
  KEY_CREDENTIAL,
  KEY_LOCKING,
  KEY_BACKUP_HEADER,
  KEY_CACHE,
  KEY_CHECK_PLAINTEXT,
  KEY_ACTIVE,
  N_KEYS
};

static const char *const key_names[N_KEYS] = {
  "name",
  "payload",
  "header",
  "key-file",
  "passphrase-file",
  "key-slot",
  "readonly",
  "payload-format",
  "description",
  "qcow2-cache-size",
  "payload-backing",
  "discard",
  "credential",
  "locking",
  "backup-header",
  "cache",
  "check-plaintext",
  "active",
};

/* The keys whose values are file paths (relative ones are resolved
 * against a directory by export_spec_absolute). */
static const enum spec_key path_keys[] = { KEY_PAYLOAD, KEY_HEADER,
                                           KEY_KEY_FILE, KEY_PASSPHRASE_FILE,
                                           KEY_BACKUP_HEADER };

#define QCOW2_CACHE_MIN (64 * 1024)
#define QCOW2_CACHE_MAX (UINT64_C (1) << 30)

/* A two-valued key: sets *out to whether the value is `yes` (leaves it
 * alone when the key is absent). */
static int
parse_switch (const char *label, enum spec_key k, char *const *values,
              const char *yes, const char *no, bool *out)
{
  const char *v = values[k];

  if (!v)
    return 0;
  if (strcmp (v, yes) != 0 && strcmp (v, no) != 0)
    return error_set (-EINVAL, "%s: %s=%s: expected %s or %s", label,
                      key_names[k], v, yes, no);
  *out = strcmp (v, yes) == 0;
  return 0;
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

/* name= and description= reach logs and NBD replies: at most 4096 bytes
 * (the NBD limit for strings), no control characters (a forged log line,
 * a confused terminal). */
static int
check_text (const char *label, enum spec_key k, const char *v)
{
  if (!v)
    return 0;
  if (strlen (v) > NBD_STRING_MAX)
    return error_set (-EINVAL, "%s: %s= is longer than %d bytes", label,
                      key_names[k], NBD_STRING_MAX);
  for (const unsigned char *p = (const unsigned char *) v; *p; p++)
    if (*p < 0x20 || *p == 0x7f)
      return error_set (-EINVAL, "%s: %s= holds a control character (0x%02x)",
                        label, key_names[k], *p);
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

static bool
is_path_key (const char *key)
{
  for (size_t i = 0; i < sizeof path_keys / sizeof path_keys[0]; i++)
    if (strcmp (key, key_names[path_keys[i]]) == 0)
      return true;
  return false;
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

void
export_free (struct export *e)
{
  if (!e)
    return;
  node_close (e->node);
  pthread_rwlock_destroy (&e->gate);
  secmem_free (e->inline_pass, e->inline_pass_len + 1);
  free (e->label);
  for (size_t i = 0; i < sizeof e->spec_strings / sizeof e->spec_strings[0];
       i++)
    free (e->spec_strings[i]);
  free (e);
}

int
export_set_passphrase (struct export *e, const char *pass, size_t len)
{
  e->inline_pass = secmem_copy (pass, len);
  if (!e->inline_pass)
    return -ENOMEM; /* secmem_copy said why */
  e->inline_pass_len = len;
  e->spec.passphrase = e->inline_pass;
  e->spec.passphrase_len = len;
  return 0;
}

void
export_ref (struct export *e)
{
  assert (e->refs > 0); /* a freed export cannot be held again */
  e->refs++;
}

void
export_unref (struct export *e)
{
  assert (e->refs > 0);
  if (--e->refs == 0) {
    if (e->node && !e->readonly && node_flush (e->node) < 0)
      log_error ("export '%s': flush: %s", e->name, error_message ());
    log_info ("export '%s' closed", e->name);
    export_free (e);
  }
}

/* Writer-preferring: an inactivation is not starved by a stream of I/O. */
static void
init_gate (struct export *e)
{
  pthread_rwlockattr_t a;

  pthread_rwlockattr_init (&a);
  pthread_rwlockattr_setkind_np (&a,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&e->gate, &a);
  pthread_rwlockattr_destroy (&a);
  atomic_init (&e->active, true);
}

int
export_parse (const char *text, const char *origin, bool force_readonly,
              bool inline_passphrase, struct export **out)
{
  struct export *e = calloc (1, sizeof *e);
  char *values[N_KEYS] = { 0 };
  char label[320];
  const char *p = text;
  char *item;
  int r = 0;

  /* The control socket's adds get hints that fit luks-nbd ctl. */
  bool from_control = strcmp (origin, "export-add") == 0;

  if (!e)
    return error_set (-ENOMEM, "out of memory");
  init_gate (e);
  snprintf (label, sizeof label, "%s", origin);
  while (r == 0 && (item = next_item (&p))) {
    char *eq = strchr (item, '=');
    int k;
    if (!eq) {
      r = error_set (-EINVAL, "%s: '%s' is not key=value", label, item);
      free (item);
      break;
    }
    *eq = '\0';
    for (k = 0;
         k < N_KEYS && (!key_names[k] || strcmp (item, key_names[k]) != 0); k++)
      ;
    bool secret = k == N_KEYS &&
                  (strcmp (item, "passphrase") == 0 ||
                   strcmp (item, "key") == 0 || strcmp (item, "password") == 0);
    /* Never echo the value: it is a secret in argv already. */
    if (secret && from_control)
      r = error_set (-EINVAL,
                     "%s: %s= is refused in a spec (it was on a command "
                     "line): send the passphrase apart, with luks-nbd ctl "
                     "export-add SPEC --passphrase-stdin (a \"passphrase\" "
                     "member on the socket), or use key-file=, "
                     "passphrase-file= or credential=",
                     label, item);
    else if (secret)
      r = error_set (-EINVAL,
                     "%s: %s= is refused: every user can read a command "
                     "line; use key-file=, passphrase-file=, credential= or "
                     "the control socket",
                     label, item);
    else if (k == N_KEYS) {
      char known[512];
      size_t len = 0;
      /* The list comes from key_names, so it cannot fall behind. */
      for (size_t i = 0; i < N_KEYS && len < sizeof known; i++)
        len += (size_t) snprintf (known + len, sizeof known - len, "%s%s",
                                  i ? ", " : "", key_names[i]);
      r = error_set (-EINVAL, "%s: unknown key '%s' (expected %s)", label, item,
                     known);
    } else if (values[k])
      r = error_set (-EINVAL, "%s: key '%s' given twice", label, item);
    else if (!(values[k] = strdup (eq + 1)))
      r = error_set (-ENOMEM, "out of memory");
    if (k == KEY_NAME && r == 0) {
      /* A --config line keeps its file and line in every message. */
      if (strncmp (origin, "--config ", 9) == 0)
        snprintf (label, sizeof label, "export '%.40s' (%.256s)", values[k],
                  origin);
      else
        snprintf (label, sizeof label, "export '%.40s'", values[k]);
      for (char *c = label; *c; c++) /* check_text refuses these later */
        if ((unsigned char) *c < 0x20 || *c == 0x7f)
          *c = '?';
    }
    free (item);
  }

  e->spec.key_slot = -1;
  if (r == 0 && !values[KEY_NAME])
    r = error_set (-EINVAL, "%s: name= is required", label);
  if (r == 0 && !values[KEY_PAYLOAD])
    r = error_set (-EINVAL, "%s: payload= is required", label);
  if (r == 0 && values[KEY_NAME] && !values[KEY_NAME][0])
    r = error_set (-EINVAL,
                   "%s: name= is empty (a client asking for the default "
                   "export \"\" gets the first export)",
                   label);
  if (r == 0)
    r = check_text (label, KEY_NAME, values[KEY_NAME]);
  if (r == 0)
    r = check_text (label, KEY_DESCRIPTION, values[KEY_DESCRIPTION]);
  if (r == 0 && inline_passphrase &&
      (values[KEY_KEY_FILE] || values[KEY_PASSPHRASE_FILE] ||
       values[KEY_CREDENTIAL]))
    r = error_set (-EINVAL,
                   "%s: a passphrase is given, and so is %s=: give one", label,
                   values[KEY_KEY_FILE]          ? "key-file"
                   : values[KEY_PASSPHRASE_FILE] ? "passphrase-file"
                                                 : "credential");
  if (r == 0 && values[KEY_CREDENTIAL])
    r = credential_path (label, values, &values[KEY_KEY_FILE]);
  if (r == 0 && !values[KEY_KEY_FILE] && !values[KEY_PASSPHRASE_FILE] &&
      !inline_passphrase)
    r = from_control
          ? error_set (-EINVAL,
                       "%s: no passphrase: give it with luks-nbd ctl "
                       "export-add SPEC --passphrase-stdin (a \"passphrase\" "
                       "member on the socket), or key-file=, "
                       "passphrase-file= or credential= in the spec",
                       label)
          : error_set (-EINVAL,
                       "%s: key-file= or passphrase-file= is required (or "
                       "credential=)",
                       label);
  if (r == 0 && values[KEY_KEY_FILE] && values[KEY_PASSPHRASE_FILE])
    r = error_set (-EINVAL, "%s: give key-file= or passphrase-file=, not both",
                   label);
  if (r == 0 && values[KEY_KEY_SLOT]) {
    char *end;
    long slot = strtol (values[KEY_KEY_SLOT], &end, 10);
    if (*end || end == values[KEY_KEY_SLOT] || slot < 0 || slot > 31 ||
        *values[KEY_KEY_SLOT] < '0' || *values[KEY_KEY_SLOT] > '9')
      r = error_set (-EINVAL, "%s: key-slot=%s: expected 0..31", label,
                     values[KEY_KEY_SLOT]);
    e->spec.key_slot = (int) slot;
  }
  bool readonly = false, locking = true, writeback = true;
  if (r == 0)
    r = parse_switch (label, KEY_READONLY, values, "on", "off", &readonly);
  e->readonly = force_readonly || readonly;
  if (r == 0)
    r = parse_switch (label, KEY_LOCKING, values, "on", "off", &locking);
  e->spec.no_locking = !locking;
  if (r == 0)
    r =
      parse_switch (label, KEY_CACHE, values, "writeback", "none", &writeback);
  e->spec.direct_io = !writeback;
  if (r == 0)
    r = parse_switch (label, KEY_DISCARD, values, "on", "off", &e->discard);
  bool check_plaintext = true;
  if (r == 0)
    r = parse_switch (label, KEY_CHECK_PLAINTEXT, values, "on", "off",
                      &check_plaintext);
  e->spec.no_plaintext_check = !check_plaintext;
  bool active = true;
  if (r == 0)
    r = parse_switch (label, KEY_ACTIVE, values, "on", "off", &active);
  e->spec.inactive = !active;
  atomic_store (&e->active, active);
  if (r == 0)
    r = parse_switch (label, KEY_PAYLOAD_BACKING, values, "on", "off",
                      &e->spec.payload_backing);
  if (r == 0 && values[KEY_QCOW2_CACHE_SIZE]) {
    r = parse_size (values[KEY_QCOW2_CACHE_SIZE], &e->spec.qcow2_cache_bytes);
    if (r < 0 || e->spec.qcow2_cache_bytes < QCOW2_CACHE_MIN ||
        e->spec.qcow2_cache_bytes > QCOW2_CACHE_MAX)
      r = error_set (-EINVAL,
                     "%s: qcow2-cache-size=%s: expected 64K..1G (K, M, G "
                     "suffixes)",
                     label, values[KEY_QCOW2_CACHE_SIZE]);
  }
  /* Files are checked now so the error names the key, not just a path. */
  static const enum spec_key files[] = { KEY_PAYLOAD, KEY_HEADER, KEY_KEY_FILE,
                                         KEY_PASSPHRASE_FILE,
                                         KEY_BACKUP_HEADER };
  for (size_t i = 0; r == 0 && i < sizeof files / sizeof files[0]; i++) {
    const char *path = values[files[i]];
    /* A missing header is what backup-header= is for. */
    if (files[i] == KEY_HEADER && values[KEY_BACKUP_HEADER])
      continue;
    if (!path || node_is_uri (path) || access (path, R_OK) == 0)
      continue;
    if (files[i] == KEY_KEY_FILE && values[KEY_CREDENTIAL])
      r = error_set (-errno,
                     "%s: credential=%s: %s in $CREDENTIALS_DIRECTORY (%s); "
                     "the unit needs LoadCredential=%s:PATH or "
                     "SetCredential=",
                     label, values[KEY_CREDENTIAL], strerror (errno),
                     getenv ("CREDENTIALS_DIRECTORY"), values[KEY_CREDENTIAL]);
    else
      r = error_set (-errno, "%s: %s=%s: %s", label, key_names[files[i]], path,
                     strerror (errno));
  }

  /* The strings now belong to the export. */
  e->name = values[KEY_NAME];
  e->description = values[KEY_DESCRIPTION];
  e->spec.payload = values[KEY_PAYLOAD];
  e->spec.header = values[KEY_HEADER];
  e->spec.key_file = values[KEY_KEY_FILE];
  e->spec.credential = values[KEY_CREDENTIAL];
  e->spec.passphrase_file = values[KEY_PASSPHRASE_FILE];
  e->spec.payload_format = values[KEY_PAYLOAD_FORMAT];
  e->spec.backup_header = values[KEY_BACKUP_HEADER];
  e->spec.readonly = e->readonly;
  /* What formats/ knows: the payload formats, cache=none only on files. */
  if (r == 0 && (r = node_stack_check_spec (&e->spec)) < 0)
    error_prefix (r, "%s", label);
  {
    static const enum spec_key keep[] = {
      KEY_NAME,           KEY_DESCRIPTION,   KEY_PAYLOAD,
      KEY_HEADER,         KEY_KEY_FILE,      KEY_PASSPHRASE_FILE,
      KEY_PAYLOAD_FORMAT, KEY_BACKUP_HEADER, KEY_CREDENTIAL
    };
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
      e->spec_strings[i] = values[keep[i]];
      values[keep[i]] = NULL;
    }
  }
  /* Everything not kept was only parsed (kept ones are NULL by now). */
  for (size_t k = 0; k < N_KEYS; k++)
    free (values[k]);
  if (r < 0) {
    export_free (e);
    return r;
  }
  if (!(e->label = strdup (label))) {
    export_free (e);
    return error_set (-ENOMEM, "out of memory");
  }
  e->refs = 1; /* the registry's, once added */
  *out = e;
  return 0;
}

/* Any thread (the one that closed the last export using the key). */
static void
log_key_wiped (const char *header)
{
  log_info ("kept key for header %s wiped: no export uses it any more", header);
}

/* A key the previous daemon handed over (--fd-store): taken (at -v), or
 * why not. */
static void
log_handover (const struct export *e, const struct node_stack_info *info)
{
  if (info->key_handed_over)
    log_info ("export '%s': key handed over by the previous daemon, "
              "verified against the header %s (no KDF run)",
              e->name, e->spec.header ? e->spec.header : e->spec.payload);
  else if (info->handover_refused)
    log_warning ("export '%s': the handed-over key was refused (%s); "
                 "unlocked with the passphrase instead",
                 e->name, info->handover_refused);
}

int
export_open (struct export *e)
{
  const char *format = "raw";
  const void *blob = NULL;
  size_t blob_len = 0;
  int r;

  node_stack_on_key_wiped (log_key_wiped);
  if (keystore_take (e->name, &blob, &blob_len) < 0)
    log_warning ("export '%s': %s", e->name, error_message ());
  e->spec.handover = blob;
  e->spec.handover_len = blob_len;
  r = node_stack_open (&e->spec, &e->node, &format);
  keystore_release (blob, blob_len);
  e->spec.handover = NULL;
  e->spec.handover_len = 0;

  if (r < 0)
    return error_prefix (r, "%s", e->label);
  struct node_stack_info info;
  node_stack_info (e->node, &info);
  e->size = node_size (e->node);
  log_handover (e, &info);
  if (keystore_save (e->name, e->node) < 0)
    log_warning ("export '%s': its key is not kept for a restart: %s", e->name,
                 error_message ());
  if (info.warning)
    log_warning ("export '%s': %s", e->name, info.warning);
  if (info.key_shared)
    log_info ("export '%s': header %s already unlocked with this passphrase "
              "and unchanged since; sharing its key (no second KDF run)",
              e->name, e->spec.header);
  log_info ("export '%s': %s payload %s, header %s, %llu bytes, %u-byte "
            "sectors, data from byte %llu of the payload%s",
            e->name, format, e->spec.payload,
            e->spec.header ? e->spec.header : "(attached)",
            (unsigned long long) e->size, node_block_size (e->node),
            (unsigned long long) info.data_offset,
            e->readonly ? ", read-only" : "");
  /* Which volume each header belongs to, so a mix-up shows in the log. */
  log_info ("export '%s': serving with the header of UUID %s", e->name,
            info.uuid);
  if (info.backup_uuid)
    log_info ("export '%s': backup-header=%s has UUID %s (the same volume)",
              e->name, e->spec.backup_header, info.backup_uuid);
  return 0;
}

int
exports_add (struct export *e)
{
  struct export **n;

  for (size_t i = 0; i < n_exports; i++)
    if (strcmp (exports[i]->name, e->name) == 0)
      return error_set (-EEXIST, "export '%s' is given twice", e->name);
  n = realloc (exports, (n_exports + 1) * sizeof *n);
  if (!n)
    return error_set (-ENOMEM, "out of memory");
  exports = n;
  exports[n_exports++] = e;
  if (e->node && !e->size) /* added open (export_open sets it too) */
    e->size = node_size (e->node);
  return 0;
}

void
exports_remove (struct export *e)
{
  for (size_t i = 0; i < n_exports; i++)
    if (exports[i] == e) {
      memmove (&exports[i], &exports[i + 1],
               (n_exports - i - 1) * sizeof *exports);
      n_exports--;
      export_unref (e);
      return;
    }
}

/* The export that "" names: the first configured (exports become served
 * in the order their unlocks finish). */
static char *default_name;

int
exports_set_default (const char *name)
{
  free (default_name);
  default_name = strdup (name);
  return default_name ? 0 : error_set (-ENOMEM, "out of memory");
}

struct export *
exports_find (const char *name, size_t len)
{
  if (len == 0 && default_name)
    for (size_t i = 0; i < n_exports; i++)
      if (strcmp (exports[i]->name, default_name) == 0)
        return exports[i];
  if (len == 0)
    return n_exports ? exports[0] : NULL;
  for (size_t i = 0; i < n_exports; i++)
    if (strlen (exports[i]->name) == len &&
        memcmp (exports[i]->name, name, len) == 0)
      return exports[i];
  return NULL;
}

size_t
exports_count (void)
{
  return n_exports;
}

struct export *
exports_get (size_t i)
{
  return i < n_exports ? exports[i] : NULL;
}

void
exports_detach_all (void)
{
  free (exports);
  exports = NULL;
  n_exports = 0;
}

void
exports_close_all (void)
{
  for (size_t i = 0; i < n_exports; i++) {
    struct export *e = exports[i];
    export_unref (e);
  }
  node_stack_forget_keys ();
  free (exports);
  exports = NULL;
  n_exports = 0;
  free (default_name);
  default_name = NULL;
}
