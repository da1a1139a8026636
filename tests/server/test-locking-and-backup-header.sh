#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves safety between processes and header recovery: a payload served
# read-write is refused to a second luks-nbd and to qemu-img, a payload
# qemu-nbd holds is refused to luks-nbd, locking=off overrides, readers
# share; backup-header= is used (with a warning) when the header is
# missing or broken, and not for a wrong passphrase.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-io qemu-nbd nbdcopy nbdinfo

make_luks2_volume v 2M --sector-size 4096
second () {   # second daemon on the same payload, run while the first serves
  luks_nbd --socket "$TMP/sock" --export "$(spec v "$1")" \
    --run "$top_builddir/server/luks-nbd --socket $TMP/sock2 --export '$(spec v "$2")' --run true 2> $TMP/second.err; echo \$? > $TMP/second.rc"
}
second "" ""
check "a second read-write luks-nbd on the payload exits 1" test "$(cat "$TMP/second.rc")" = 1
check "and names the lock" grep -q "v.payload: in use by another process" "$TMP/second.err"
second "readonly=on" "readonly=on"
check "two read-only servers share the payload" test "$(cat "$TMP/second.rc")" = 0
second "readonly=on" ""
check "a writer is refused while a reader serves" test "$(cat "$TMP/second.rc")" = 1
second "" "locking=off,readonly=on"
check "locking=off overrides" test "$(cat "$TMP/second.rc")" = 0
luks_nbd --socket "$TMP/sock" --export "$(spec v)" \
  --run "qemu-io -f raw -c 'read 0 512' $TMP/v.payload > $TMP/qi.out 2>&1; echo \$? > $TMP/qi.rc"
check "qemu (qemu-io) is refused while luks-nbd writes the payload" test "$(cat "$TMP/qi.rc")" != 0
check "qemu says it is a lock" grep -qi "lock" "$TMP/qi.out"
# --fork returns once qemu-nbd serves (and so holds its locks).
qemu-nbd --fork --pid-file "$TMP/qnbd.pid" -f raw -k "$TMP/qsock" "$TMP/v.payload"
cleanup_hooks="kill \$(cat $TMP/qnbd.pid) 2>/dev/null;"
check_fails_with "luks-nbd is refused while qemu-nbd serves the payload" "in use by another process" \
  luks_nbd --socket "$TMP/sock" --export "$(spec v)" --run true
kill "$(cat "$TMP/qnbd.pid")"

# Backup header.
cp "$TMP/v.hdr" "$TMP/v.backup"
mv "$TMP/v.hdr" "$TMP/v.hdr.moved"
luks_nbd --socket "$TMP/sock" --export "$(spec v backup-header=$TMP/v.backup)" \
  --run "nbdcopy \"\$uri\" $TMP/out" 2> "$TMP/log"
check "a missing header: the backup serves the plaintext" cmp -s "$TMP/out" "$TMP/v.plain"
check "and a warning says so" grep -q "warning: .*using the backup header $TMP/v.backup" "$TMP/log"
head -c 1M /dev/zero > "$TMP/v.hdr"
luks_nbd --socket "$TMP/sock" --export "$(spec v backup-header=$TMP/v.backup)" \
  --run "nbdcopy \"\$uri\" $TMP/out2" 2> "$TMP/log2"
check "a header that fails its checks: the backup serves" cmp -s "$TMP/out2" "$TMP/v.plain"
check "and the warning names the cause" grep -q "not a LUKS header" "$TMP/log2"
cp "$TMP/v.hdr.moved" "$TMP/v.hdr"
printf 'wrong' > "$TMP/wrong"
check_fails_with "a wrong passphrase is not rescued by the backup" "accepts this passphrase" \
  luks_nbd --socket "$TMP/sock" --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,key-file=$TMP/wrong,backup-header=$TMP/v.backup" --run true
done_testing
