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
# without a wrapper of their own (there were three names for it; server/
# still never touches a cipher).  Only crypto/ calls libgcrypt; only
# server/ calls libuv; nothing below nbdkit/ knows it.
. "$(dirname "$0")/lib.sh"
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
  grep -nE '^\s*#\s*include\s+"[^"/]+"' {common,crypto,formats,server,nbdkit,fuzz,tests,bench}/*.[ch]
}
check "every quoted include names its directory" not bare_includes
check "common/ includes only common/" only_from common common
check "crypto/ includes only crypto/ and common/" only_from crypto crypto common
check "formats/ includes formats/, common/, crypto/luks.h and crypto/secmem.h" \
  only_from formats formats common crypto/luks.h crypto/secmem.h
check "server/ includes server/, formats/, common/ and of crypto/ only crypto/secmem.h" \
  only_from server server formats common crypto/secmem.h
check "nbdkit/ includes nbdkit/, formats/, common/, crypto/luks.h and crypto/secmem.h" \
  only_from nbdkit nbdkit formats common crypto/luks.h crypto/secmem.h

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
