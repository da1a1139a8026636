#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the live migration handoff with QEMU 10: two luks-nbd daemons
# (the source and destination hosts) share one payload and header; a
# guest with its disk on the source writes numbered blocks with fsync all
# along while QMP migrate moves it to a second qemu (-incoming) whose disk
# is on the destination daemon's inactive export (active=off).  At the
# pre-switchover pause the source export is inactivated (flushed, lock
# released) and the destination's activated; activating it earlier, with
# the source active, is refused.  Afterwards the guest, now on the
# destination, reads back every block it wrote before and after the
# switchover, and cryptsetup decrypts the payload to the same blocks.
# A raw payload, then a qcow2 one (the destination reloads its metadata).
. "$(dirname "$0")/../lib/lib.sh"
need qemu-system-x86_64 qemu-img qemu-io cryptsetup python3 xxd
here=$(cd "$(dirname "$0")/../lib" && pwd)
LN=$top_builddir/server/luks-nbd

if ! python3 "$here/guest/make-guest.py" "$TMP/guest" "$here/guest/migrate-writer.sh" \
     > "$TMP/release" 2> "$TMP/make-guest.err"; then
  echo "1..0 # SKIP no guest: $(cat "$TMP/make-guest.err")"
  exit 0
fi
accel=$(python3 "$here/qemu_vm.py" accel "$TMP/guest" "$TMP")
echo "# $(qemu-system-x86_64 --version | head -n 1); guest kernel $(cat "$TMP/release"); $accel"

# start NAME SPEC: a daemon in the background until its sockets are there.
start () {
  # exec: $! is the daemon's timeout, which passes SIGTERM on.
  ( exec timeout --kill-after=10 900 ${LUKS_NBD_WRAPPER:-} "$LN" -v \
      --socket "$TMP/$1.sock" --control "$TMP/$1.ctl" --export "$2" ) \
    2> "$TMP/$1.log" &
  echo $! > "$TMP/$1.pid"
  cleanup_hooks="kill \$(cat $TMP/$1.pid) 2>/dev/null; $cleanup_hooks"
  for _ in $(seq 600); do
    [ -S "$TMP/$1.sock" ] && [ -S "$TMP/$1.ctl" ] && return 0
    kill -0 "$(cat "$TMP/$1.pid")" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop () { kill "$(cat "$TMP/$1.pid")"; wait "$(cat "$TMP/$1.pid")"; }

# blocks_ok PLAIN COUNT SEED: the first COUNT 4 KiB blocks of PLAIN are
# the guest's numbered blocks.
blocks_ok () {
  python3 - "$@" <<'EOF'
import sys
plain, count, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(plain, "rb").read()
for i in range(count):
    line = ("luks-nbd migration block %d seed %s" % (i, seed)).ljust(63) + "\n"
    if data[i * 4096:(i + 1) * 4096] != (line * 64).encode():
        sys.exit("block %d differs" % i)
EOF
}

migration () { # FORMAT
  local f=$1 seed
  seed=$(head -c 8 /dev/urandom | xxd -p)
  start src "$(spec v)" && start dst "$(spec v active=off)"
  check "$f: both daemons serve, the destination's export inactive" test $? -eq 0
  python3 "$here/nbd_vm_migrate.py" "$TMP/guest" "$TMP" "$accel" v "$seed" \
    "$TMP/src.sock" "$TMP/src.ctl" "$TMP/dst.sock" "$TMP/dst.ctl" > "$TMP/$f.out"
  grep '^#' "$TMP/$f.out"
  grep -E '^(PASS|FAIL) ' "$TMP/$f.out" | sed "s/^\(PASS\|FAIL\) /\1 $f: /" > "$TMP/$f.verdicts"
  tap_report "$TMP/$f.verdicts" 13 "$f: the migration"
  stop src
  check "${f}: the source daemon exits 0 on SIGTERM" test $? -eq 0
  stop dst
  check "${f}: the destination daemon exits 0 on SIGTERM" test $? -eq 0
  check "$f: the source daemon logged its inactivation" \
    grep -q "export 'v': inactive (flushed" "$TMP/src.log"
  count=$(sed -n 's/^COUNT //p' "$TMP/$f.out")
  if [ "$f" = qcow2 ]; then
    check "$f: qemu-img check finds the image consistent" qemu-img check -q -f qcow2 "$TMP/v.payload"
    qemu-img convert -f qcow2 -O raw "$TMP/v.payload" "$TMP/v.raw"
    mv "$TMP/v.raw" "$TMP/v.payload"
  fi
  cp "$TMP/v.hdr" "$TMP/v.hdr-copy"
  cryptsetup reencrypt --decrypt --header "$TMP/v.hdr-copy" --key-file "$TMP/v.key" \
    --force-offline-reencrypt --batch-mode "$TMP/v.payload" > /dev/null
  check "$f: cryptsetup decrypts the payload to the guest's ${count:-0} blocks" \
    blocks_ok "$TMP/v.payload" "${count:-0}" "$seed"
  [ "$tap_failed" -eq 0 ] || sed 's/^/# /' "$TMP/vm-src.log" "$TMP/vm-dst.log" "$TMP/src.log" "$TMP/dst.log"
}

size=$((16 * 1048576))
make_luks2_volume v "$size"
migration raw

# qcow2: the ciphertext in a qcow2 image that qemu-io wrote only the first
# 64 KiB of, so the guest's writes allocate clusters on both hosts.
rm -f "$TMP/v.hdr"
make_luks2_volume v "$size"
head -c 65536 "$TMP/v.payload" > "$TMP/h64"
qemu-img create -f qcow2 "$TMP/v.q" "$size" > /dev/null
qemu-io -f qcow2 -c "write -s $TMP/h64 0 64k" "$TMP/v.q" > /dev/null
mv "$TMP/v.q" "$TMP/v.payload"
migration qcow2
done_testing
