#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# SIGTERM while a client owes the data of a write whose header the
# daemon took: the write counts as in flight and nothing is queued for
# the client, so the drain timer (connection.c's on_timer) used to wait
# for it for ever and the daemon never exited.  Now a client that sends
# nothing of what it owes for a --handshake-timeout period is dropped
# like one that reads nothing (tests/lib/nbd_half_write.py), and the
# daemon exits 0, in plain and over TLS (where the half write's data is
# decrypted straight into its buffer).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup openssl python3

pki=$TMP/pki
make_test_pki "$pki"
make_luks2_volume v 16M

# run_case NAME [CA_CERT]: a daemon in the background, the client, then
# the daemon's exit within a bounded wait.
run_case () {
  local name=$1 ca=${2:-} pid rc i tls=()
  [ -n "$ca" ] && tls=(--tls=require --tls-certs "$pki/server")
  rm -f "$TMP/$name.sock"
  # timeout(1) as luks_nbd runs it, but as the background job itself:
  # its pid is the one SIGTERM goes to, and it passes SIGTERM on.
  timeout --kill-after=10 120 ${LUKS_NBD_WRAPPER:-} "$top_builddir/server/luks-nbd" --socket "$TMP/$name.sock" --handshake-timeout 1 "${tls[@]}" \
    --export "$(spec v)" 2> "$TMP/$name.err" &
  pid=$!
  for i in $(seq 600); do [ -S "$TMP/$name.sock" ] && break; sleep 0.05; done
  python3 "$top_srcdir/tests/lib/nbd_half_write.py" "$TMP/$name.sock" "$pid" 1 $ca > "$TMP/$name.out"
  tap_report "$TMP/$name.out" 2 "the $name client"
  for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    not_ok "the daemon ($name) exits within 30 s of SIGTERM"
    kill -KILL "$pid"
    wait "$pid"
  else
    wait "$pid"; rc=$?
    check "the daemon ($name) exits 0 after SIGTERM" test "$rc" -eq 0
  fi
}
run_case plain
run_case tls "$pki/ca-cert.pem"
done_testing
