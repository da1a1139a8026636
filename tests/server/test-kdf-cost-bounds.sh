#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that a header cannot keep the daemon in a KDF for minutes: a
# LUKS1 header (made by cryptsetup) with one cost field set to 2^32-1 is
# refused at once, the error naming the file, the field and the bound,
# before any KDF runs.  A header at the bound passes the check (its KDFs
# run; the edited digest then no longer matches the key).  (Every field and
# LUKS2 are in the broken-header table, tests/unit/test-bad-headers.c.)
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup

printf 'pass' > "$TMP/key"
truncate -s 1M "$TMP/data"
cryptsetup luksFormat --type luks1 --header "$TMP/good.hdr" --key-file "$TMP/key" \
  --pbkdf-force-iterations 1000 --batch-mode "$TMP/data"
# set_be32 FILE OFFSET VALUE: one big-endian field of the phdr.
set_be32 () {
  cp "$TMP/good.hdr" "$1"
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($3 >> 24 & 255)) $(($3 >> 16 & 255)) \
    $(($3 >> 8 & 255)) $(($3 & 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
set_be32 "$TMP/digest.hdr" 164 4294967295   # mkDigestIterations
set_be32 "$TMP/slot.hdr" 212 4294967295     # keyslot 0 passwordIterations
set_be32 "$TMP/bound.hdr" 164 4194304       # mkDigestIterations at the bound
exp () { echo "name=v,payload=$TMP/data,header=$TMP/$1,key-file=$TMP/key,readonly=on"; }
# A bound of 60 s, where e8be15f spends ~10 minutes in PBKDF2.
quick () { timeout 60 "$top_builddir/server/luks-nbd" "$@"; }

start=$(date +%s)
check_fails_with "mkDigestIterations 2^32-1 is refused, naming the file, field and bound" \
  "$TMP/digest.hdr: mkDigestIterations 4294967295 exceeds 4194304" \
  quick --socket "$TMP/sock" --export "$(exp digest.hdr)" --run true
check_fails_with "keyslot iterations 2^32-1 is refused, naming the file, field and bound" \
  "$TMP/slot.hdr: keyslot 0 passwordIterations 4294967295 exceeds 134217728" \
  quick --socket "$TMP/sock" --export "$(exp slot.hdr)" --run true
check "both refusals took under 10 s together (no KDF ran)" test $(($(date +%s) - start)) -lt 10
check_fails_with "mkDigestIterations at the bound is accepted: the KDFs run" \
  "no key slot in $TMP/bound.hdr accepts this passphrase" \
  quick --socket "$TMP/sock" --export "$(exp bound.hdr)" --run true
cryptsetup luksDump "$TMP/digest.hdr" > "$TMP/dump" 2>&1
check "cryptsetup reads the edited header too (only the one field differs)" \
  grep -q "MK iterations:.*4294967295" "$TMP/dump"
done_testing
