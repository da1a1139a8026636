#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves a FIFO no one writes cannot hold the daemon: an export-add whose
# header= is a FIFO is refused at once (a header must be a file or block
# device; opening a FIFO for reading used to wait for a writer, holding a
# worker thread, every later request on it and shutdown, for ever), and
# a key-file= FIFO with no writer fails after its bounded wait (30 s),
# naming the file, instead of blocking startup for ever.  A FIFO that is
# written still works (tests/server/test-keyfile-pipes.sh).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3

make_luks2_volume a 2M
mkfifo "$TMP/hdr.fifo" "$TMP/key.fifo"
LN=$top_builddir/server/luks-nbd
cat > "$TMP/session.sh" <<EOS
timeout 20 "$LN" ctl --control "$TMP/ctl" export-add \
  "name=f,payload=$TMP/a.payload,header=$TMP/hdr.fifo,locking=off" \
  --passphrase-stdin < "$TMP/a.key" > "$TMP/add.out" 2> "$TMP/add.err"
echo \$? > "$TMP/add.rc"
EOS
start=$(date +%s)
timeout 60 "$LN" --socket "$TMP/sock" --control "$TMP/ctl" --export "$(spec a)" \
  --run "exec bash $TMP/session.sh" 2> "$TMP/log"
rc=$?
took=$(( $(date +%s) - start ))
check "export-add of a FIFO header is answered (not left waiting for a writer)" \
  test "$(cat "$TMP/add.rc")" = 1
check "and refused, naming the file" grep -q "hdr.fifo: not a regular file or block device" "$TMP/add.err"
check "the daemon then exits 0 at once ($rc, ${took} s)" test "$rc" -eq 0 -a "$took" -lt 20

start=$(date +%s)
check_fails_with "a key-file= FIFO that no one writes fails after its bounded wait" \
  "key.fifo: key file not finished within 30 s" \
  timeout 90 "$LN" --socket "$TMP/sock2" --export "name=a,payload=$TMP/a.payload,header=$TMP/a.hdr,key-file=$TMP/key.fifo"
took=$(( $(date +%s) - start ))
check "within the bound (${took} s)" test "$took" -ge 29 -a "$took" -lt 60
done_testing
