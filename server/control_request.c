/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the control protocol's request line, parsed by us rather than
 * by json-c.  A request is one flat JSON object whose members are strings,
 * numbers, booleans or null (no nesting: no command needs it).  Strings
 * are decoded in place, inside the line itself, so an inline passphrase
 * is never copied into a buffer we cannot wipe (json-c's tokener keeps
 * every string it reads in a printbuf that it reallocs and frees
 * unwiped); the caller wipes the line.  Every member is read through
 * ctl_member_get, which checks its type and names member and type in
 * its error.  Also the JSON string escaper that luks-nbd ctl uses to
 * build a request with a passphrase in it. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/error_msg.h"
#include "server/internal.h"

static const char *const type_names[] = {
  [CTL_NULL] = "null",
  [CTL_BOOLEAN] = "a boolean",
  [CTL_NUMBER] = "a number",
  [CTL_STRING] = "a string",
  [CTL_TEXT] = "a UTF-8 string without NUL bytes",
};

struct cursor {
  char *p, *end, *start;
};

static int
syntax_error (const struct cursor *c, const char *what)
{
  return error_set (-EINVAL, "byte %zu: %s", (size_t) (c->p - c->start) + 1,
                    what);
}

static void
skip_space (struct cursor *c)
{
  while (c->p < c->end &&
         (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
    c->p++;
}

static int
hex4 (const char *s, unsigned *out)
{
  unsigned v = 0;

  for (int i = 0; i < 4; i++) {
    char h = s[i];
    v <<= 4;
    if (h >= '0' && h <= '9')
      v |= (unsigned) (h - '0');
    else if (h >= 'a' && h <= 'f')
      v |= (unsigned) (h - 'a' + 10);
    else if (h >= 'A' && h <= 'F')
      v |= (unsigned) (h - 'A' + 10);
    else
      return -1;
  }
  *out = v;
  return 0;
}

/* A \uXXXX escape (c->p at the 'u'), a surrogate pair as one code point;
 * written as UTF-8 at *w.  Never longer than its escape, so the decoded
 * string fits where the raw one was. */
static int
unicode_escape (struct cursor *c, char **w)
{
  unsigned cp, lo;
  char *o = *w;

  if (c->end - c->p < 5 || hex4 (c->p + 1, &cp) < 0)
    return syntax_error (c, "\\u needs four hex digits");
  c->p += 5;
  if (cp >= 0xdc00 && cp <= 0xdfff)
    return syntax_error (c, "a lone low surrogate");
  if (cp >= 0xd800 && cp <= 0xdbff) {
    if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' ||
        hex4 (c->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
      return syntax_error (c, "a high surrogate without its low half");
    c->p += 6;
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
  }
  if (cp < 0x80)
    *o++ = (char) cp;
  else if (cp < 0x800) {
    *o++ = (char) (0xc0 | (cp >> 6));
    *o++ = (char) (0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    *o++ = (char) (0xe0 | (cp >> 12));
    *o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
    *o++ = (char) (0x80 | (cp & 0x3f));
  } else {
    *o++ = (char) (0xf0 | (cp >> 18));
    *o++ = (char) (0x80 | ((cp >> 12) & 0x3f));
    *o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
    *o++ = (char) (0x80 | (cp & 0x3f));
  }
  *w = o;
  return 0;
}

/* A string (c->p at its opening quote), decoded in place and NUL
 * terminated (the NUL lands at or before the closing quote). */
static int
string (struct cursor *c, const char **out, size_t *len)
{
  char *w = ++c->p, *s = w;
  int r;

  for (;;) {
    if (c->p == c->end)
      return syntax_error (c, "a string is not closed");
    unsigned char ch = (unsigned char) *c->p;
    if (ch == '"')
      break;
    if (ch < 0x20)
      return syntax_error (c, "a control character in a string (escape it)");
    if (ch != '\\') {
      *w++ = *c->p++;
      continue;
    }
    if (c->end - c->p < 2)
      return syntax_error (c, "a string is not closed");
    c->p++;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *e = strchr (from, *c->p);
    if (*c->p == 'u') {
      if ((r = unicode_escape (c, &w)) < 0)
        return r;
    } else if (*c->p && e) {
      *w++ = to[e - from];
      c->p++;
    } else
      return syntax_error (c, "an unknown escape in a string");
  }
  c->p++; /* the closing quote, which w has not passed */
  *w = '\0';
  *out = s;
  *len = (size_t) (w - s);
  return 0;
}

static bool
literal (struct cursor *c, const char *word)
{
  size_t n = strlen (word);

  if ((size_t) (c->end - c->p) < n || memcmp (c->p, word, n) != 0)
    return false;
  c->p += n;
  return true;
}

static size_t
digits (struct cursor *c)
{
  size_t n = 0;

  while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
    c->p++, n++;
  return n;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, kept as text. */
static int
number (struct cursor *c, struct ctl_member *m)
{
  char *s = c->p;

  if (c->p < c->end && *c->p == '-')
    c->p++;
  if (c->p < c->end && *c->p == '0')
    c->p++;
  else if (!digits (c))
    return syntax_error (
      c, "expected a value (string, number, true, false or null)");
  if (c->p < c->end && *c->p == '.' && (c->p++, !digits (c)))
    return syntax_error (c, "digits must follow a decimal point");
  if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
    c->p++;
    if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
      c->p++;
    if (!digits (c))
      return syntax_error (c, "digits must follow an exponent");
  }
  m->type = CTL_NUMBER;
  m->text = s;
  m->len = (size_t) (c->p - s);
  return 0;
}

static int
value (struct cursor *c, struct ctl_member *m)
{
  if (c->p == c->end)
    return syntax_error (c, "a member has no value");
  switch (*c->p) {
  case '"': m->type = CTL_STRING; return string (c, &m->text, &m->len);
  case '{':
  case '[':
    return error_set (-EINVAL,
                      "member \"%s\": values are strings, numbers, booleans "
                      "or null, not objects or arrays",
                      m->key);
  }
  if (literal (c, "true")) {
    m->type = CTL_BOOLEAN;
    m->boolean = true;
    return 0;
  }
  if (literal (c, "false")) {
    m->type = CTL_BOOLEAN;
    m->boolean = false;
    return 0;
  }
  if (literal (c, "null")) {
    m->type = CTL_NULL;
    return 0;
  }
  return number (c, m);
}

/* "key": value, with a key that is unique and NUL-free. */
static int
member (struct cursor *c, struct ctl_request *req)
{
  struct ctl_member *m = &req->m[req->n];
  size_t keylen;
  int r;

  if (c->p == c->end || *c->p != '"')
    return syntax_error (c, "expected a member name in double quotes");
  if (req->n == CTL_MEMBERS_MAX)
    return error_set (-EINVAL, "more than %d members", CTL_MEMBERS_MAX);
  if ((r = string (c, &m->key, &keylen)) < 0)
    return r;
  if (strlen (m->key) != keylen)
    return error_set (-EINVAL, "a member name contains a NUL byte");
  for (size_t i = 0; i < req->n; i++)
    if (strcmp (req->m[i].key, m->key) == 0)
      return error_set (-EINVAL, "member \"%s\" is given twice", m->key);
  skip_space (c);
  if (c->p == c->end || *c->p != ':')
    return syntax_error (c, "expected ':' after a member name");
  c->p++;
  skip_space (c);
  if ((r = value (c, m)) < 0)
    return r;
  req->n++;
  return 0;
}

int
ctl_request_parse (char *line, size_t len, struct ctl_request *req)
{
  struct cursor c = { line, line + len, line };
  int r;

  req->n = 0;
  skip_space (&c);
  if (c.p == c.end || *c.p != '{')
    return syntax_error (&c, "expected one JSON object per line");
  c.p++;
  skip_space (&c);
  if (c.p < c.end && *c.p == '}')
    c.p++;
  else
    for (;;) {
      if ((r = member (&c, req)) < 0)
        return r;
      skip_space (&c);
      if (c.p < c.end && *c.p == '}') {
        c.p++;
        break;
      }
      if (c.p == c.end || *c.p != ',')
        return syntax_error (&c, "expected ',' or '}' after a member");
      c.p++;
      skip_space (&c);
    }
  skip_space (&c);
  if (c.p != c.end)
    return syntax_error (&c, "text after the object (one object per line)");
  return 0;
}

/* Well-formed UTF-8: no overlong forms, surrogates or code points past
 * U+10FFFF (names go into NBD replies, which require UTF-8, and into our
 * JSON replies). */
static bool
utf8_valid (const unsigned char *s, size_t n)
{
  for (size_t i = 0; i < n;) {
    unsigned c = s[i], need, cp, min;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf)
      need = 1, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
      need = 2, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
      need = 3, cp = c & 0x07, min = 0x10000;
    else
      return false;
    if (n - i <= need)
      return false;
    for (unsigned k = 1; k <= need; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += need + 1;
  }
  return true;
}

int
ctl_member_get (const struct ctl_request *req, const char *key,
                enum ctl_type type, bool required,
                const struct ctl_member **out)
{
  const struct ctl_member *m = NULL;

  for (size_t i = 0; i < req->n && !m; i++)
    if (strcmp (req->m[i].key, key) == 0)
      m = &req->m[i];
  *out = m;
  if (!m)
    return required ? error_set (-EINVAL, "member \"%s\" (%s) is required", key,
                                 type_names[type])
                    : 0;
  if (type == CTL_TEXT && m->type == CTL_STRING &&
      memchr (m->text, '\0', m->len))
    return error_set (-EINVAL, "member \"%s\" contains a NUL byte", key);
  if (type == CTL_TEXT && m->type == CTL_STRING &&
      !utf8_valid ((const unsigned char *) m->text, m->len))
    return error_set (-EINVAL, "member \"%s\" is not valid UTF-8", key);
  if (m->type != type && !(type == CTL_TEXT && m->type == CTL_STRING))
    return error_set (-EINVAL, "member \"%s\" must be %s, not %s", key,
                      type_names[type], type_names[m->type]);
  return 1;
}

/* Stores ch at out[*n] if it fits; counts it either way. */
static void
put (char *out, size_t cap, size_t *n, char ch)
{
  if (*n < cap)
    out[*n] = ch;
  (*n)++;
}

size_t
ctl_json_string (char *out, size_t cap, const char *s, size_t len)
{
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;

  put (out, cap, &n, '"');
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char) s[i];
    if (ch == '"' || ch == '\\')
      put (out, cap, &n, '\\');
    if (ch < 0x20) { /* \u00XX */
      const char esc[] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
      for (size_t k = 0; k < sizeof esc; k++)
        put (out, cap, &n, esc[k]);
    } else
      put (out, cap, &n, (char) ch);
  }
  put (out, cap, &n, '"');
  return n;
}
