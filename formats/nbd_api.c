/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* luks-nbd: libnbd, loaded on first use.  Linked, it brings libxml2, ICU
 * and libstdc++ into every daemon, about 2 MiB of its 9.6 MiB idle RSS,
 * while most volumes are files: a host that runs one daemon per volume
 * paid that a hundred times.  So libnbd is opened when the first nbd
 * node does, and its calls go through a table. */
#include <config.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/error_msg.h"
#include "formats/nbd_api.h"

/* libnbd's soname: its ABI is stable across 1.x. */
#define LIBNBD_SONAME "libnbd.so.0"

struct nbd_api libnbd;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int load_result;
static char load_error[256];

struct symbol {
  const char *name;
  size_t offset; /* of its pointer in struct nbd_api */
};

#define SYMBOL(f)                                                              \
  {                                                                            \
    "nbd_" #f, offsetof (struct nbd_api, f)                                    \
  }
static const struct symbol symbols[] = {
  SYMBOL (create),
  SYMBOL (close),
  SYMBOL (shutdown),
  SYMBOL (get_errno),
  SYMBOL (get_error),
  SYMBOL (add_meta_context),
  SYMBOL (connect_uri),
  SYMBOL (aio_get_fd),
  SYMBOL (aio_is_dead),
  SYMBOL (aio_is_closed),
  SYMBOL (get_size),
  SYMBOL (get_block_size),
  SYMBOL (is_read_only),
  SYMBOL (can_multi_conn),
  SYMBOL (can_fua),
  SYMBOL (can_cache),
  SYMBOL (can_meta_context),
  SYMBOL (pread),
  SYMBOL (pwrite),
  SYMBOL (flush),
  SYMBOL (trim),
  SYMBOL (zero),
  SYMBOL (cache),
  SYMBOL (block_status),
};
#undef SYMBOL

static void
load (void)
{
  void *lib = dlopen (LIBNBD_SONAME, RTLD_NOW | RTLD_LOCAL);
  struct nbd_api api;

  if (!lib) {
    snprintf (load_error, sizeof load_error, "cannot load %s: %s",
              LIBNBD_SONAME, dlerror ());
    load_result = -ENOENT;
    return;
  }
  for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
    void *f = dlsym (lib, symbols[i].name);
    if (!f) {
      snprintf (load_error, sizeof load_error, "%s has no %s (libnbd >= 1.10)",
                LIBNBD_SONAME, symbols[i].name);
      load_result = -ENOTSUP;
      return; /* lib stays open: the loader may not like a close here */
    }
    memcpy ((char *) &api + symbols[i].offset, &f, sizeof f);
  }
  libnbd = api;
}

int
nbd_api_load (void)
{
  pthread_once (&once, load);
  if (load_result < 0)
    return error_set (load_result, "%s", load_error);
  return 0;
}
