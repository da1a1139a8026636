#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the live migration handoff between two daemons that share one
# payload and header (source and destination hosts), without a VM: the
# destination's export starts inactive (active=off) although the source
# holds the image lock, serves reads, refuses writes, and cannot become
# active while the source is; after export-inactivate on the source (which
# then refuses writes) export-activate on the destination takes the lock,
# and a client that connected while it was inactive writes through it.
# Every byte is checked by cryptsetup decrypting the payload.  The same
# for a qcow2 payload, whose metadata the destination must reload (the
# source allocated clusters after the destination opened the image).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdsh nbdcopy qemu-img qemu-io

LN=$top_builddir/server/luks-nbd
ctl () { local c=$1; shift; "$LN" ctl --control "$TMP/$c.ctl" "$@"; }
uri () { echo "nbd+unix:///v?socket=$TMP/$1.sock"; }

# start NAME SPEC: a daemon in the background, until its control socket
# and NBD socket are there and its export is unlocked.
start () {
  # exec: $! is the daemon's timeout, which passes SIGTERM on.
  ( exec timeout --kill-after=10 600 ${LUKS_NBD_WRAPPER:-} "$LN" -v \
      --socket "$TMP/$1.sock" --control "$TMP/$1.ctl" --export "$2" ) \
    2> "$TMP/$1.log" &
  echo $! > "$TMP/$1.pid"
  cleanup_hooks="kill \$(cat $TMP/$1.pid) 2>/dev/null; $cleanup_hooks"
  for _ in $(seq 600); do
    # Sockets come first; exports are served as they unlock, and "ready"
    # is logged once all have (READY=1's meaning).
    [ -S "$TMP/$1.sock" ] && [ -S "$TMP/$1.ctl" ] &&
      grep -q 'ready: ' "$TMP/$1.log" && return 0
    kill -0 "$(cat "$TMP/$1.pid")" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop () {
  kill "$(cat "$TMP/$1.pid")"
  wait "$(cat "$TMP/$1.pid")"
}
# write URI FILE OFFSET: FILE's bytes at OFFSET through NBD.
write () {
  nbdsh -u "$1" -c "h.pwrite(open('$2','rb').read(), $3); h.flush()"
}
# read_to URI OUT OFFSET LENGTH
read_to () {
  nbdsh -u "$1" -c "import sys; sys.stdout.buffer.write(h.pread($4, $3))" > "$2"
}
pattern () { python3 -c "import sys; sys.stdout.buffer.write(b''.join(b'%s block %06d\n' % (b'$1', i) for i in range($2))[:$2*64].ljust($2*64, b'.'))"; }

# decrypt OUT: cryptsetup's plaintext of the payload (raw).
decrypt () {
  cp "$TMP/v.payload" "$1"
  cp "$TMP/v.hdr" "$TMP/v.hdr-copy"
  cryptsetup reencrypt --decrypt --header "$TMP/v.hdr-copy" --key-file "$TMP/v.key" \
    --force-offline-reencrypt --batch-mode "$1" > /dev/null
}

handoff () { # FORMAT: the whole sequence for one payload format
  local f=$1
  start src "$(spec v)" || { not_ok "$f: the source daemon starts"; return; }
  start dst "$(spec v active=off)"
  check "$f: the destination starts inactive while the source holds the lock" test $? -eq 0
  ctl dst export-list > "$TMP/list"
  check "$f: export-list says active false" grep -q '"active":false' "$TMP/list"

  pattern src1 1024 > "$TMP/p1" # 64 KiB
  check "$f: the source writes" write "$(uri src)" "$TMP/p1" 65536
  read_to "$(uri dst)" "$TMP/r1" 65536 65536
  check "$f: the inactive destination reads what the source wrote" cmp -s "$TMP/p1" "$TMP/r1"
  nbdsh -u "$(uri dst)" -c "h.pwrite(b'x' * 4096, 0)" 2> "$TMP/w.err"
  check "$f: a write to the inactive export fails" test $? -ne 0
  check "$f: with EPERM" grep -q "Operation not permitted" "$TMP/w.err"

  ctl dst export-activate v > "$TMP/act.out" 2> "$TMP/act.err"
  check "$f: export-activate is refused while the source is active" test $? -ne 0
  check "$f: naming the lock" grep -q "in use by another process" "$TMP/act.err"
  check_fails_with "$f: so two active writers are refused" "Operation not permitted" \
    nbdsh -u "$(uri dst)" -c "h.pwrite(b'x' * 4096, 0)"

  # A client of the destination connected before the handoff (as the
  # destination QEMU is): writable, refused, then served after it.
  rm -f "$TMP/go"
  nbdsh -u "$(uri dst)" -c "
import errno, os, time, sys
assert not h.is_read_only()
try:
    h.pwrite(b'y' * 4096, 0); sys.exit('written while inactive')
except nbd.Error as e:
    assert 'EPERM' in str(e), e
for _ in range(1200):
    if os.path.exists('$TMP/go'): break
    time.sleep(0.05)
h.pwrite(open('$TMP/p2', 'rb').read(), 131072)
h.flush()
" 2> "$TMP/early.err" &
  # (its output names the failure, if any)
  local early=$!
  pattern dst2 1024 > "$TMP/p2"

  pattern src3 1024 > "$TMP/p3"
  write "$(uri src)" "$TMP/p3" 196608
  ctl src export-inactivate v > "$TMP/inact.out"
  check "$f: export-inactivate on the source" grep -q '"active":false' "$TMP/inact.out"
  check_fails_with "$f: the inactive source refuses writes" "Operation not permitted" \
    nbdsh -u "$(uri src)" -c "h.pwrite(b'z' * 4096, 0)"
  ctl dst export-activate v > "$TMP/act2.out"
  check "$f: export-activate on the destination after the handoff" grep -q '"active":true' "$TMP/act2.out"
  check "$f: the destination holds the image lock now" not qemu-io -f "$f" -c 'read 0 512' "$TMP/v.payload"
  touch "$TMP/go"
  wait "$early"
  check "$f: the client connected while inactive wrote after activation" test $? -eq 0
  cat "$TMP/early.err"
  read_to "$(uri dst)" "$TMP/r3" 196608 65536
  check "$f: the destination reads what the source wrote last (reloaded)" cmp -s "$TMP/p3" "$TMP/r3"
  ctl src export-activate v 2> "$TMP/back.err"
  check "$f: the source cannot take the payload back while the destination is active" test $? -ne 0
  stop src
  check "${f}: the source daemon exits 0 on SIGTERM" test $? -eq 0
  stop dst
  check "${f}: the destination daemon exits 0 on SIGTERM" test $? -eq 0
  check "$f: logs say inactive and active" \
    grep -q "export 'v': active (image lock taken" "$TMP/dst.log"
}

make_luks2_volume v 4M --sector-size 4096
handoff raw
decrypt "$TMP/plain"
ok=true
cmp -s <(dd if="$TMP/plain" bs=64K skip=1 count=1 status=none) "$TMP/p1" || ok=false
cmp -s <(dd if="$TMP/plain" bs=64K skip=2 count=1 status=none) "$TMP/p2" || ok=false
cmp -s <(dd if="$TMP/plain" bs=64K skip=3 count=1 status=none) "$TMP/p3" || ok=false
check "raw: cryptsetup decrypts the payload to what both hosts wrote" $ok

# qcow2: the ciphertext in a qcow2 image made by qemu-io, LUKS header
# detached; only the first 64 KiB allocated, so the source's writes
# allocate clusters (L2 entries, refcounts) after the destination read
# the image's metadata: activation must read it again.
head -c 65536 "$TMP/v.payload" > "$TMP/h64"
qemu-img create -f qcow2 "$TMP/v.q" 4M > /dev/null
qemu-io -f qcow2 -c "write -s $TMP/h64 0 64k" "$TMP/v.q" > /dev/null
mv "$TMP/v.q" "$TMP/v.payload"
handoff qcow2
check "qcow2: qemu-img check finds the image consistent" qemu-img check -q -f qcow2 "$TMP/v.payload"
qemu-img convert -f qcow2 -O raw "$TMP/v.payload" "$TMP/v.raw"
mv "$TMP/v.raw" "$TMP/v.payload"
decrypt "$TMP/plain"
ok=true
cmp -s <(dd if="$TMP/plain" bs=64K skip=1 count=1 status=none) "$TMP/p1" || ok=false
cmp -s <(dd if="$TMP/plain" bs=64K skip=2 count=1 status=none) "$TMP/p2" || ok=false
cmp -s <(dd if="$TMP/plain" bs=64K skip=3 count=1 status=none) "$TMP/p3" || ok=false
check "qcow2: cryptsetup decrypts the payload to what both hosts wrote" $ok
done_testing
