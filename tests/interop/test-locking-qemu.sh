#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that luks-nbd's locks speak QEMU's lock-byte protocol
# (block/file-posix.c): a read-only export shares its payload and header
# with QEMU's readers (`qemu-io -r`, `qemu-img compare`, `qemu-nbd -r`),
# and still refuses QEMU's writers; a read-write export refuses QEMU's
# writers and qemu-nbd, and is refused while QEMU writes.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-io qemu-img qemu-nbd nbdcopy

make_luks2_volume v 2M
cp "$TMP/v.payload" "$TMP/v.payload.copy"
cp "$TMP/v.hdr" "$TMP/v.hdr.copy"

# CMD runs while a luks-nbd serves the volume with EXTRA (readonly=on or
# nothing); its exit status lands in $TMP/NAME.rc, its output in .out.
while_served () {
  local extra=$1 name=$2; shift 2
  luks_nbd --socket "$TMP/sock" --export "$(spec v "$extra")" \
    --run "$* > $TMP/$name.out 2>&1; echo \$? > $TMP/$name.rc"
}
rc () { cat "$TMP/$1.rc"; }

while_served readonly=on ro-io "qemu-io -r -f raw -c 'read -P 0 0 0' $TMP/v.payload"
check "a read-only export: qemu-io -r opens the payload" test "$(rc ro-io)" = 0
while_served readonly=on ro-cmp "qemu-img compare -f raw -F raw $TMP/v.payload $TMP/v.payload.copy"
check "a read-only export: qemu-img compare reads the payload" test "$(rc ro-cmp)" = 0
check "and finds it identical" grep -q "Images are identical" "$TMP/ro-cmp.out"
while_served readonly=on ro-hdr "qemu-img compare -f raw -F raw $TMP/v.hdr $TMP/v.hdr.copy"
check "a read-only export: qemu-img compare reads the header" test "$(rc ro-hdr)" = 0
while_served readonly=on ro-both "nbdcopy \"\$uri\" $TMP/out && qemu-io -r -f raw -c 'read 0 4096' $TMP/v.payload"
check "the export serves the plaintext while qemu-io -r reads" test "$(rc ro-both)" = 0
check "the plaintext is right" cmp -s "$TMP/out" "$TMP/v.plain"
while_served readonly=on ro-w "qemu-io -f raw -c 'write 0 512' $TMP/v.payload"
check "a read-only export refuses a qemu writer" test "$(rc ro-w)" != 0
check "qemu names the write lock" grep -q 'Failed to get "write" lock' "$TMP/ro-w.out"
check "the payload is unchanged" cmp -s "$TMP/v.payload" "$TMP/v.payload.copy"
while_served readonly=on ro-hw "qemu-io -f raw -c 'write 0 512' $TMP/v.hdr"
check "a read-only export refuses a qemu writer on the header" test "$(rc ro-hw)" != 0

while_served "" rw-w "qemu-io -f raw -c 'write 0 512' $TMP/v.payload"
check "a read-write export refuses a qemu writer" test "$(rc rw-w)" != 0
while_served "" rw-hdr "qemu-io -r -f raw -c 'read 0 512' $TMP/v.hdr"
check "a read-write export lets qemu-io -r read its header" test "$(rc rw-hdr)" = 0
while_served "" rw-cmp "qemu-img compare -f raw -F raw $TMP/v.payload $TMP/v.payload.copy"
check "a read-write export lets qemu-img compare read the ciphertext (as a QEMU guest disk does)" \
  test "$(rc rw-cmp)" = 0
while_served "" rw-nbd "qemu-nbd -f raw -k $TMP/qsock $TMP/v.payload"
check "a read-write export refuses qemu-nbd" test "$(rc rw-nbd)" != 0
check "qemu-nbd names a lock" grep -qi "lock" "$TMP/rw-nbd.out"
check "the payload is unchanged" cmp -s "$TMP/v.payload" "$TMP/v.payload.copy"

# QEMU first.  --fork returns once qemu-nbd serves (and holds its locks).
qnbd () {
  qemu-nbd --fork --pid-file "$TMP/qnbd.pid" -f raw -k "$TMP/qsock" "$@"
}
cleanup_hooks="kill \$(cat $TMP/qnbd.pid) 2>/dev/null;"
stop_qnbd () {
  local pid
  pid=$(cat "$TMP/qnbd.pid")
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
}
qnbd -r "$TMP/v.payload"
luks_nbd --socket "$TMP/sock" --export "$(spec v readonly=on)" --run "nbdcopy \"\$uri\" $TMP/out2"
check "a read-only export starts while qemu-nbd -r serves the payload" test $? = 0
check "and serves the plaintext" cmp -s "$TMP/out2" "$TMP/v.plain"
check_fails_with "a read-write export is refused while qemu-nbd -r serves" "in use by another process" \
  luks_nbd --socket "$TMP/sock" --export "$(spec v)" --run true
stop_qnbd
qnbd "$TMP/v.payload"
check_fails_with "a read-only export is refused while qemu-nbd writes the payload" "in use by another process" \
  luks_nbd --socket "$TMP/sock" --export "$(spec v readonly=on)" --run true
stop_qnbd
qnbd "$TMP/v.hdr"
check_fails_with "an export is refused while qemu-nbd may write its header" "v.hdr: in use by another process" \
  luks_nbd --socket "$TMP/sock" --export "$(spec v readonly=on)" --run true
stop_qnbd
done_testing
