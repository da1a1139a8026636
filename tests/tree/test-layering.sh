#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the layering from the include paths themselves: every quoted
# include names its directory ("crypto/luks.h"), and a directory may include
# only from itself and the layers below it:
#   server -> formats -> crypto -> common   (nbdkit/ is a second front door
#   beside server/: it uses formats/, never the daemon's code)
# formats/ and nbdkit/ see crypto/ only through crypto/luks.h, and every
# layer above crypto/ may use crypto/secmem.h, the one secure-memory API:
# formats/, server/ and nbdkit/ hold passphrases (read from files, sent on
# the control socket, typed into nbdkit) and keep them in secure memory
# without a wrapper of their own (server/ still never touches a cipher).
# Users of a stack see formats/ only through its facade (formats/stack.h,
# and formats/keyfile.h for passphrases); formats/node.h, the implementer's
# header, is for node types (formats/, nbdkit/next-node.c).  Only crypto/
# calls libgcrypt; only server/ calls libuv; nothing below nbdkit/ knows it.
. "$(dirname "$0")/../lib/lib.sh"
cd "$top_srcdir"

quoted () { grep -HoE '^\s*#\s*include\s+"[^"]+"' "$1"/*.[ch] | sed -E 's/:\s*#\s*include\s+"([^"]+)"/ \1/'; }
angled () { grep -hoE '^\s*#\s*include\s+<[^>]+>' "$1"/*.[ch] | sed -E 's/.*<([^>]+)>/\1/' | sort -u; }

# Prints "file include" for each quoted include of DIR outside ALLOWED
# (a list of directory names or exact paths); succeeds if there is none.
only_from () {
  local dir=$1; shift
  local bad
  bad=$(quoted "$dir" | while read -r file inc; do
    local ok=
    for a in "$@"; do
      case $inc in "$a"|"$a"/*) ok=1 ;; esac
    done
    [ -n "$ok" ] || echo "# $file includes $inc"
  done)
  [ -z "$bad" ] || { echo "$bad"; return 1; }
}

bare_includes () {
  grep -nE '^\s*#\s*include\s+"[^"/]+"' {common,crypto,formats,server,nbdkit,fuzz,bench}/*.[ch] tests/*/*.[ch]
}
check "every quoted include names its directory" not bare_includes
check "common/ includes only common/" only_from common common
check "crypto/ includes only crypto/ and common/" only_from crypto crypto common
check "formats/ includes formats/, common/, crypto/luks.h and crypto/secmem.h" \
  only_from formats formats common crypto/luks.h crypto/secmem.h
facade="formats/stack.h formats/keyfile.h"
# shellcheck disable=SC2086 # one word per header
check "server/ includes server/, common/, formats/' facade and of crypto/ only crypto/secmem.h" \
  only_from server server common $facade crypto/secmem.h
# shellcheck disable=SC2086
check "nbdkit/ includes nbdkit/, common/, crypto/luks.h, crypto/secmem.h and formats/' facade" \
  only_from nbdkit nbdkit common crypto/luks.h crypto/secmem.h $facade formats/node.h
# Prints "# FILE" for each file of nbdkit/ but next-node.c that includes
# formats/node.h; succeeds if there is one.
node_h_users () {
  local bad
  bad=$(grep -lE '^\s*#\s*include\s+"formats/node.h"' nbdkit/*.[ch] | grep -vx nbdkit/next-node.c)
  [ -n "$bad" ] && echo "# $bad includes formats/node.h"
}
check "in nbdkit/ only next-node.c (a node type) includes formats/node.h" \
  not node_h_users

angled_outside () {
  local lib=$1; shift; local d
  for d in "$@"; do angled "$d" | grep -qx "$lib" && { echo "# $d includes <$lib>"; return 0; }; done
  return 1
}
check "only crypto/ includes <gcrypt.h>" not angled_outside gcrypt.h common formats server nbdkit
check "only server/ includes <uv.h>" not angled_outside uv.h common crypto formats nbdkit
check "nothing below nbdkit/ includes nbdkit's headers" \
  not angled_outside nbdkit-filter.h common crypto formats server
check "only crypto/ calls libgcrypt" not grep -lq 'gcry_' server/*.[ch] formats/*.[ch] common/*.[ch] nbdkit/*.[ch]
check "no byte swapping outside common/byteorder.h" \
  not grep -nE '\b(htonl|ntohl|htons|ntohs|be64toh|htobe64|be32toh|htobe32|__builtin_bswap)' \
  common/*.[ch] crypto/*.[ch] formats/*.[ch] server/*.[ch]
done_testing
