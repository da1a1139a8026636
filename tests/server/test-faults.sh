#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Payload faults (EIO, ENOSPC from pread, pwrite and fdatasync, injected
# by an LD_PRELOAD shim while a trigger file exists) reach the client as
# NBD errors, never as success; a failed fdatasync fails every later
# FLUSH; the daemon serves on.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume v 4M
# Each round writes random data at the start, which the next daemon would
# take for another volume's header: check-plaintext=off.
shim=$top_builddir/tests/lib/fault-inject.so
check "the fault shim is built" test -f "$shim"
for fault in "pwrite ENOSPC" "pwrite EIO" "pread EIO" "fdatasync EIO"; do
  set -- $fault
  env LD_PRELOAD="$shim" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    FAULT_PATH="$TMP/v.payload" FAULT_OP=$1 FAULT_ERRNO=$2 FAULT_TRIGGER="$TMP/trigger" \
    "$top_builddir/server/luks-nbd" --socket "$TMP/sock" --export "$(spec v check-plaintext=off)" \
    --run "python3 $top_srcdir/tests/lib/nbd_faults.py $TMP/sock $TMP/trigger $1 $2 > $TMP/py.out 2>&1" \
    2> "$TMP/daemon.log"
  rc=$?
  n=0
  while read -r verdict desc; do
    n=$((n + 1))
    if [ "$verdict" = PASS ]; then ok "$1 $2: $desc"; else not_ok "$1 $2: $verdict $desc"; fi
  done < "$TMP/py.out"
  check "$1 $2: the client ran every step" test "$n" -ge 5
  check "$1 $2: the daemon exits 0 (it never crashed)" test "$rc" -eq 0
  check "$1 $2: the log names the payload and the failed call" grep -q "v.payload: .*$( [ "$1" = pread ] && echo read || { [ "$1" = pwrite ] && echo write || echo fdatasync; } )" "$TMP/daemon.log"
done
done_testing
