#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves orderly shutdown (SIGTERM with requests in flight: all complete,
# writes persist, exit 0; a second SIGTERM does not cut that short) and
# serving over TCP (--listen).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdinfo nbdcopy python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume v 8M --sector-size 4096
# The clients write random data over the start, and each step restarts
# the daemon: check-plaintext=off.
luks_nbd --socket "$TMP/sock" --export "$(spec v check-plaintext=off)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_sigterm.py $TMP/sock $TMP/v.plain $TMP/written > $TMP/py.out"
rc=$?
tap_report "$TMP/py.out" 2 "the client script"
check "daemon exits 0 after SIGTERM" test "$rc" -eq 0
luks_nbd --socket "$TMP/sock" --export "$(spec v check-plaintext=off)" --run "nbdcopy \"\$uri\" $TMP/after"
check "the write acknowledged just before shutdown persisted" cmp -s -n 2097152 "$TMP/after" "$TMP/written"

luks_nbd --socket "$TMP/sock" --export "$(spec v check-plaintext=off)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_double_sigterm.py $TMP/sock $TMP/written2 > $TMP/py2.out"
rc=$?
tap_report "$TMP/py2.out" 2 "the double-SIGTERM script"
check "daemon exits 0 after a second SIGTERM" test "$rc" -eq 0
luks_nbd --socket "$TMP/sock" --export "$(spec v check-plaintext=off)" --run "nbdcopy \"\$uri\" $TMP/after2"
check "the write finished after the second SIGTERM persisted" \
  cmp -s -n 65536 "$TMP/after2" "$TMP/written2"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
luks_nbd --listen "127.0.0.1:$port" --export "$(spec v check-plaintext=off)" \
  --run "nbdinfo --size nbd://127.0.0.1:$port/v > $TMP/tcp.size && nbdcopy nbd://127.0.0.1:$port/v $TMP/tcp.out"
check "--listen serves over TCP (nbdinfo)" test "$(cat "$TMP/tcp.size")" = 8388608
check "--listen serves over TCP (nbdcopy reads the volume)" cmp -s "$TMP/tcp.out" "$TMP/after2"
done_testing
