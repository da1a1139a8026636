/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: the luks node: a plaintext view of an encrypted payload.
 *
 * Maps plaintext offset X to payload offset payload_offset + X and
 * en/decrypts whole encryption sectors (512..4096 bytes) with sector
 * number X / sector_size.  Requests that do not cover whole sectors are
 * read-modify-write; those take the node's write lock exclusively, while
 * aligned writes share it, so two overlapping unaligned writes (or an
 * unaligned write racing an aligned one) never lose each other's bytes. */
#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/checked.h"
#include "common/error_msg.h"
#include "crypto/luks.h"
#include "crypto/secmem.h"
#include "formats/node.h"

struct luks_node {
  struct node node;
  struct node *payload, *header; /* the same node if attached */
  struct luks_header *hdr;
  struct luks_volume *vol;
  uint64_t data_offset;       /* bytes into payload */
  uint32_t sector;            /* encryption sector size */
  pthread_rwlock_t rmw;       /* shared: aligned writes; exclusive: RMW */
  bool shared_key;            /* volume key reused from another export */
  bool handed_over;           /* volume key from the previous daemon */
  char handover_refused[512]; /* why a handed-over key was not taken */
  char warning[512];
  char backup_uuid[64];      /* backup-header='s, once read and compared */
  char *header_label;        /* for messages */
  void (*on_close) (void *); /* see node_luks_on_close */
  void *on_close_arg;
};

static int
header_read (void *opaque, void *buf, size_t count, uint64_t offset)
{
  struct node *h = opaque;

  if (offset > h->size || count > h->size - offset)
    return error_set (-EIO, "%s: read of %zu bytes at %llu is past its end",
                      h->label, count, (unsigned long long) offset);
  return node_pread (h, buf, count, offset);
}

/* Reads and decrypts whole sectors [start, start+len) into buf. */
static int
read_sectors (struct luks_node *l, void *buf, uint64_t len, uint64_t start)
{
  int r = node_pread (l->payload, buf, len, l->data_offset + start);

  if (r < 0)
    return r;
  return luks_volume_crypt (l->vol, LUKS_DECRYPT, buf, len, start / l->sector);
}

/* Encrypts buf (whole sectors, clobbered) and writes it at start. */
static int
write_sectors (struct luks_node *l, void *buf, uint64_t len, uint64_t start,
               int flags)
{
  int r = luks_volume_crypt (l->vol, LUKS_ENCRYPT, buf, len, start / l->sector);

  if (r < 0)
    return r;
  return node_pwrite (l->payload, buf, len, l->data_offset + start, flags);
}

static int
luks_pread (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  struct luks_node *l = (struct luks_node *) n;
  uint64_t start = offset / l->sector * l->sector;
  uint64_t end = (offset + count + l->sector - 1) / l->sector * l->sector;
  char *bounce;
  int r;

  if (start == offset && end == offset + count)
    return read_sectors (l, buf, count, offset); /* decrypt in place */
  bounce = malloc (end - start);
  if (!bounce)
    return error_set (-ENOMEM, "out of memory");
  r = read_sectors (l, bounce, end - start, start);
  if (r == 0)
    memcpy (buf, bounce + (offset - start), count);
  free (bounce);
  return r;
}

/* Whole sectors only: a partial one would need a bounce buffer, and
 * such reads are rare enough to leave to the workers. */
static int
luks_pread_cached (struct node *n, void *buf, uint64_t count, uint64_t offset)
{
  struct luks_node *l = (struct luks_node *) n;
  int r;

  if (offset % l->sector || count % l->sector)
    return -EAGAIN;
  r = node_pread_cached (l->payload, buf, count, l->data_offset + offset);
  if (r < 0)
    return r;
  return luks_volume_crypt (l->vol, LUKS_DECRYPT, buf, count,
                            offset / l->sector) < 0
           ? -EAGAIN
           : 0;
}

static int
luks_pwrite (struct node *n, const void *buf, uint64_t count, uint64_t offset,
             int flags)
{
  struct luks_node *l = (struct luks_node *) n;
  uint64_t start = offset / l->sector * l->sector;
  uint64_t end = (offset + count + l->sector - 1) / l->sector * l->sector;
  bool aligned = start == offset && end == offset + count;
  char *bounce;
  int r = 0;

  if (aligned && (flags & NODE_MAY_CLOBBER)) {
    pthread_rwlock_rdlock (&l->rmw);
    r =
      write_sectors (l, (void *) buf, count, offset, flags & ~NODE_MAY_CLOBBER);
    pthread_rwlock_unlock (&l->rmw);
    return r;
  }
  flags &= ~NODE_MAY_CLOBBER;
  bounce = malloc (end - start);
  if (!bounce)
    return error_set (-ENOMEM, "out of memory");
  if (aligned)
    pthread_rwlock_rdlock (&l->rmw);
  else
    pthread_rwlock_wrlock (&l->rmw);
  if (!aligned) {
    /* Only the partial first and last sectors need their old contents. */
    r = read_sectors (l, bounce, l->sector, start);
    if (r == 0 && end - l->sector > start)
      r = read_sectors (l, bounce + (end - start - l->sector), l->sector,
                        end - l->sector);
  }
  if (r == 0) {
    memcpy (bounce + (offset - start), buf, count);
    r = write_sectors (l, bounce, end - start, start, flags);
  }
  pthread_rwlock_unlock (&l->rmw);
  free (bounce);
  return r;
}

static int
luks_flush (struct node *n)
{
  return node_flush (((struct luks_node *) n)->payload);
}

/* Zero plaintext is encrypted zeros, never zero ciphertext: write it, a
 * chunk at a time.  FUA must cover every chunk, not only the last (a
 * remote payload's FUA covers only its own request): several chunks go
 * without it and one flush of the payload follows them. */
static int
luks_zero (struct node *n, uint64_t count, uint64_t offset, int flags)
{
  enum { CHUNK = 1024 * 1024 };
  bool one = count <= CHUNK;
  char *zeros = calloc (1, CHUNK);
  int r = 0;

  if (!zeros)
    return error_set (-ENOMEM, "out of memory");
  for (uint64_t done = 0; r == 0 && done < count; done += CHUNK) {
    uint64_t len = count - done < CHUNK ? count - done : CHUNK;
    r = luks_pwrite (n, zeros, len, offset + done,
                     one ? flags : flags & ~NODE_FUA);
  }
  free (zeros);
  if (r == 0 && !one && (flags & NODE_FUA))
    r = luks_flush (n);
  return r;
}

/* Discards the whole sectors inside the range; their plaintext becomes
 * undefined (as a trim allows). */
static int
luks_trim (struct node *n, uint64_t count, uint64_t offset)
{
  struct luks_node *l = (struct luks_node *) n;
  uint64_t start = (offset + l->sector - 1) / l->sector * l->sector;
  uint64_t end = (offset + count) / l->sector * l->sector;

  if (end <= start)
    return 0;
  return node_trim (l->payload, end - start, l->data_offset + start);
}

/* The payload's extents in plaintext terms: a hole stays a hole (nothing
 * stored), but never reads as zeros (ciphertext zeros decrypt to noise).
 * A sector only partly a hole is data. */
static int
luks_extents (struct node *n, uint64_t count, uint64_t offset,
              struct extent_list *out)
{
  struct luks_node *l = (struct luks_node *) n;
  struct extent_list child = extent_list_for_child (out);
  int r = node_extents (l->payload, count, l->data_offset + offset, &child);

  for (size_t i = 0; r == 0 && i < child.n; i++) {
    uint64_t a = child.e[i].offset - l->data_offset;
    uint64_t b = a + child.e[i].length;
    if (a < offset)
      a = offset;
    if (b > offset + count)
      b = offset + count;
    if (a >= b)
      continue;
    if (!(child.e[i].flags & EXTENT_HOLE)) {
      r = extent_add (out, a, b - a, 0);
      continue;
    }
    uint64_t ha = (a + l->sector - 1) / l->sector * l->sector;
    uint64_t hb = b / l->sector * l->sector;
    if (ha >= hb)
      r = extent_add (out, a, b - a, 0);
    else if ((r = extent_add (out, a, ha - a, 0)) == 0 &&
             (r = extent_add (out, ha, hb - ha, EXTENT_HOLE)) == 0)
      r = extent_add (out, hb, b - hb, 0);
  }
  extent_list_free (&child);
  return r;
}

/* Warms the ciphertext of the whole sectors under the range; nothing is
 * decrypted (the plaintext is never cached here, so decrypting it ahead
 * would be work for nothing). */
static int
luks_prefetch (struct node *n, uint64_t count, uint64_t offset)
{
  struct luks_node *l = (struct luks_node *) n;
  uint64_t start = offset / l->sector * l->sector;
  uint64_t end = (offset + count + l->sector - 1) / l->sector * l->sector;

  return node_prefetch (l->payload, end - start, l->data_offset + start);
}

/* The header only ever takes a shared lock, but an inactive node holds
 * none (as QEMU's): both children follow.  The key stays: activation
 * runs no KDF, so switchover costs no unlock. */
static int
luks_set_active (struct node *n, bool active)
{
  struct luks_node *l = (struct luks_node *) n;
  int r = node_set_active (l->payload, active);

  if (r == 0 && l->header != l->payload &&
      (r = node_set_active (l->header, active)) < 0 && active)
    node_set_active (l->payload, false); /* all or nothing */
  return r;
}

static void
luks_close (struct node *n)
{
  struct luks_node *l = (struct luks_node *) n;

  luks_volume_free (l->vol);
  if (l->on_close)
    l->on_close (l->on_close_arg);
  luks_header_free (l->hdr);
  if (l->header != l->payload)
    node_close (l->header);
  node_close (l->payload);
  pthread_rwlock_destroy (&l->rmw);
  free (l->header_label);
  free (n->label);
  free (l);
}

/* The plaintext size: the payload becomes data offset + size.  LUKS1 has
 * no size field and a LUKS2 segment of size "dynamic" runs to the end of
 * the payload: neither header changes.  A fixed-size LUKS2 segment would
 * need both header copies rewritten: refused by name. */
static int
luks_resize (struct node *n, uint64_t size)
{
  struct luks_node *l = (struct luks_node *) n;
  uint64_t fixed = luks_volume_payload_size (l->vol), end;
  int r;

  if (size % l->sector)
    return error_set (-EINVAL,
                      "%s: %llu bytes is not a multiple of the volume's "
                      "%u-byte encryption sectors",
                      n->label, (unsigned long long) size, l->sector);
  if (fixed)
    return error_set (-ENOTSUP,
                      "%s: the LUKS2 header's data segment has a fixed size "
                      "of %llu bytes, not \"dynamic\"; resizing would need "
                      "the header rewritten, which luks-nbd does not do",
                      n->label, (unsigned long long) fixed);
  if (ckd_add_u64 (&end, l->data_offset, size))
    return error_set (-EFBIG, "%s: %llu bytes is too large", n->label,
                      (unsigned long long) size);
  r = node_resize (l->payload, end);
  if (r == 0)
    n->size = size;
  return r;
}

static const struct node_ops luks_ops = {
  .name = "luks",
  .pread = luks_pread,
  .pwrite = luks_pwrite,
  .flush = luks_flush,
  .trim = luks_trim,
  .zero = luks_zero,
  .extents = luks_extents,
  .prefetch = luks_prefetch,
  .resize = luks_resize,
  .set_active = luks_set_active,
  .pread_cached = luks_pread_cached,
  .close = luks_close,
};

bool
node_is_luks (const struct node *n)
{
  return n->ops == &luks_ops;
}

void
node_luks_set_warning (struct node *n, const char *fmt, ...)
{
  struct luks_node *l = (struct luks_node *) n;
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (l->warning, sizeof l->warning, fmt, ap);
  va_end (ap);
}

const char *
node_luks_warning (const struct node *n)
{
  const struct luks_node *l = (const struct luks_node *) n;
  return l->warning[0] ? l->warning : NULL;
}

const char *
node_luks_uuid (const struct node *n)
{
  struct luks_header_info info;

  luks_header_info (((const struct luks_node *) n)->hdr, &info);
  return info.uuid;
}

const char *
node_luks_backup_uuid (const struct node *n)
{
  const struct luks_node *l = (const struct luks_node *) n;
  return l->backup_uuid[0] ? l->backup_uuid : NULL;
}

void
node_luks_set_backup_uuid (struct node *n, const char *uuid)
{
  struct luks_node *l = (struct luks_node *) n;
  snprintf (l->backup_uuid, sizeof l->backup_uuid, "%s", uuid);
}

int
node_luks_header_uuid (struct node *header, const char *label, char *uuid,
                       size_t len)
{
  struct luks_source src = {
    .read = header_read, .opaque = header, .size = header->size, .name = label
  };
  struct luks_header_info info;
  struct luks_header *hdr;
  int r = luks_header_open (&src, &hdr);

  if (r < 0)
    return r;
  luks_header_info (hdr, &info);
  snprintf (uuid, len, "%s", info.uuid);
  luks_header_free (hdr);
  return 0;
}

int
node_luks_header_unlock (struct node *header, const char *label,
                         const void *pass, size_t passlen, int keyslot,
                         struct luks_volume **out)
{
  struct luks_source src = {
    .read = header_read, .opaque = header, .size = header->size, .name = label
  };
  struct luks_header *hdr;
  int r = luks_header_open (&src, &hdr);

  if (r < 0)
    return r;
  r = luks_unlock (hdr, pass, passlen, keyslot, out);
  luks_header_free (hdr);
  return r;
}

int
node_luks_read_ciphertext (struct node *n, void *buf, uint64_t count,
                           uint64_t offset)
{
  struct luks_node *l = (struct luks_node *) n;
  return node_pread (l->payload, buf, count, l->data_offset + offset);
}

struct luks_volume *
node_luks_volume (struct node *n)
{
  return ((struct luks_node *) n)->vol;
}

bool
node_luks_key_shared (const struct node *n)
{
  return ((const struct luks_node *) n)->shared_key;
}

uint64_t
node_luks_data_offset (const struct node *n)
{
  return ((const struct luks_node *) n)->data_offset;
}

int
node_luks_check_header (struct node *n)
{
  struct luks_node *l = (struct luks_node *) n;
  struct luks_source src = { .read = header_read,
                             .opaque = l->header,
                             .size = l->header->size,
                             .name = l->header_label };
  struct luks_header *hdr;
  int r;

  /* The header node's fd: the file as it is now if edited in place. */
  r = luks_header_open (&src, &hdr);
  if (r < 0)
    return r;
  r = luks_volume_check (hdr, l->vol);
  luks_header_free (hdr);
  return r;
}

struct node *
node_luks_header_node (struct node *n)
{
  return ((struct luks_node *) n)->header;
}

int
node_luks_header_parse (struct node *n, struct luks_header **out)
{
  struct luks_node *l = (struct luks_node *) n;
  struct luks_source src = { .read = header_read,
                             .opaque = l->header,
                             .size = l->header->size,
                             .name = l->header_label };

  return luks_header_open (&src, out);
}

void
node_luks_on_close (struct node *n, void (*fn) (void *), void *arg)
{
  struct luks_node *l = (struct luks_node *) n;

  l->on_close = fn;
  l->on_close_arg = arg;
}

bool
node_luks_key_handed_over (const struct node *n)
{
  return ((const struct luks_node *) n)->handed_over;
}

const char *
node_luks_handover_refused (const struct node *n)
{
  const struct luks_node *l = (const struct luks_node *) n;

  return l->handover_refused[0] ? l->handover_refused : NULL;
}

int
node_luks_handover_blob (struct node *n, uint8_t **blob, size_t *len)
{
  struct luks_node *l = (struct luks_node *) n;
  size_t size = luks_volume_handover_size (l->vol);
  uint8_t *b = secmem_alloc (size);
  int r;

  if (!b)
    return error_set (-ENOMEM, "out of secure memory");
  r = luks_volume_handover_write (l->vol, b, size);
  if (r < 0) {
    secmem_free (b, size);
    return r;
  }
  *blob = b;
  *len = size;
  return 0;
}

void
node_luks_handover_free (uint8_t *blob, size_t len)
{
  secmem_free (blob, len);
}

/* A key handed over by the previous daemon, if the header takes it. */
static void
take_handover (struct luks_node *l, const void *blob, size_t len)
{
  int r = luks_volume_handover_open (l->hdr, blob, len, &l->vol);

  if (r == 0)
    l->handed_over = true;
  else
    snprintf (l->handover_refused, sizeof l->handover_refused, "%s",
              error_message ());
}

int
node_luks_open (struct node *payload, struct node *header, const void *pass,
                size_t passlen, int keyslot, const char *header_label,
                struct luks_volume *shared, const void *handover,
                size_t handover_len, struct node **out)
{
  struct luks_node *l = calloc (1, sizeof *l);
  struct luks_header_info info;
  struct luks_source src;
  uint64_t avail;
  int r;

  if (!l)
    return error_set (-ENOMEM, "out of memory");
  l->payload = payload;
  l->header = header;
  pthread_rwlock_init (&l->rmw, NULL);
  r = luks_init ();
  if (r < 0)
    goto fail;
  l->header_label = strdup (header_label);
  if (!l->header_label) {
    r = error_set (-ENOMEM, "out of memory");
    goto fail;
  }
  src = (struct luks_source){ .read = header_read,
                              .opaque = header,
                              .size = header->size,
                              .name = l->header_label };
  r = luks_header_open (&src, &l->hdr);
  if (r < 0)
    goto fail;
  luks_header_info (l->hdr, &info);
  if (info.warning)
    snprintf (l->warning, sizeof l->warning, "%s", info.warning);
  /* Payload offset 0 marks a detached header (cryptsetup --header, QEMU's
   * blockdev-create with "header").  Attached, the data would start on
   * the header itself: the first write would overwrite the keyslots.
   * QEMU refuses such a volume ("LUKS payload is overlapping with the
   * header"); so do we, naming the field. */
  if (header == payload && info.payload_offset == 0) {
    r = error_set (-EINVAL,
                   "%s: the header's %s is 0, so its data would overlap the "
                   "header: this is a detached header; give the data file "
                   "as payload= and this file as header=",
                   l->header_label,
                   info.version == 1 ? "payloadOffset" : "segment offset");
    goto fail;
  }
  /* The header is read and checked either way; a shared key is reused
   * only if the header as it is now vouches for it (crypto/unlock.c),
   * else this is a full unlock. */
  if (handover)
    take_handover (l, handover, handover_len);
  if (!l->handed_over)
    r = luks_unlock_reuse (l->hdr, pass, passlen, keyslot, shared, &l->vol,
                           &l->shared_key);
  if (r < 0)
    goto fail;
  l->sector = info.sector_size;
  l->data_offset = info.payload_offset;
  if (l->data_offset > payload->size) {
    r = error_set (-EINVAL,
                   "%s: the header's payload offset %llu is past the "
                   "end of the %llu-byte payload",
                   payload->label, (unsigned long long) l->data_offset,
                   (unsigned long long) payload->size);
    goto fail;
  }
  avail = payload->size - l->data_offset;
  if (info.payload_size) {
    if (info.payload_size > avail) {
      r = error_set (-EINVAL,
                     "%s: the header's segment of %llu bytes is "
                     "larger than the payload (%llu bytes)",
                     payload->label, (unsigned long long) info.payload_size,
                     (unsigned long long) avail);
      goto fail;
    }
    avail = info.payload_size;
  }
  l->node.ops = &luks_ops;
  l->node.size = avail / l->sector * l->sector;
  l->node.block_size = l->sector;
  l->node.readonly = payload->readonly;
  if (asprintf (&l->node.label, "luks(%s)", payload->label) < 0) {
    l->node.label = NULL;
    r = error_set (-ENOMEM, "out of memory");
    goto fail;
  }
  *out = &l->node;
  return 0;

fail:
  luks_volume_free (l->vol);
  luks_header_free (l->hdr);
  pthread_rwlock_destroy (&l->rmw);
  free (l->header_label);
  free (l);
  return r;
}
