#!/usr/bin/env bash
# Proves the layering: server -> formats -> crypto -> common, never upward;
# only crypto/ calls libgcrypt; only server/ calls libuv.
. "$(dirname "$0")/lib.sh"
cd "$top_srcdir"

includes () { grep -hoE '#include [<"][^>"]+[>"]' "$1"/*.[ch] | sed -E 's/#include [<"]([^>"]+)[>"]/\1/' | sort -u; }
server_h="internal.h nbd-protocol.h uv.h"
formats_h="node.h keyfile.h"
crypto_h="luks.h header.h cipher.h kdf.h hash.h secmem.h afsplit.h base64.h volume.h keyslot_edit.h gcrypt.h"

has_any () { local dir=$1; shift; local h; for h in "$@"; do includes "$dir" | grep -qx "$h" && { echo "# $dir includes $h"; return 0; }; done; return 1; }

check "common/ includes nothing from crypto/, formats/ or server/" \
  not has_any common $server_h $formats_h $crypto_h
check "crypto/ includes nothing from formats/ or server/" not has_any crypto $server_h $formats_h
check "formats/ includes nothing from server/" not has_any formats $server_h
check "formats/ uses only crypto/luks.h from crypto/" \
  not has_any formats header.h cipher.h kdf.h hash.h secmem.h afsplit.h base64.h volume.h keyslot_edit.h gcrypt.h
check "server/ includes nothing from crypto/" not has_any server $crypto_h
check "only crypto/ calls libgcrypt" not grep -lq 'gcry_' server/*.[ch] formats/*.[ch] common/*.[ch] nbdkit/*.[ch]
# The nbdkit filter (nbdkit/) is a second front door beside server/: it
# uses formats/ (and crypto/luks.h), never the daemon's code, and nothing
# below knows it.
nbdkit_h="next-node.h nbdkit-filter.h nbdkit-plugin.h"
check "nbdkit/ includes nothing from server/" not has_any nbdkit $server_h
check "nbdkit/ uses only crypto/luks.h from crypto/" \
  not has_any nbdkit header.h cipher.h kdf.h hash.h secmem.h afsplit.h base64.h volume.h gcrypt.h
below_uses_nbdkit () { local d; for d in common crypto formats server; do has_any $d $nbdkit_h && return 0; done; return 1; }
check "common/, crypto/, formats/ and server/ include nothing from nbdkit/" not below_uses_nbdkit
check "no byte swapping outside common/byteorder.h" \
  not grep -nE '\b(htonl|ntohl|htons|ntohs|be64toh|htobe64|be32toh|htobe32|__builtin_bswap)' \
  common/*.[ch] crypto/*.[ch] formats/*.[ch] server/*.[ch]
done_testing
