#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A TLS session has a receiver (a job decrypting a write's data) and a
# sender (replies encrypted on the loop or by a send job) in two threads
# at once.  GnuTLS keeps the errno a transport function sets with
# gnutls_transport_set_errno in the session and clears it before every
# push and pull, so the sender could wipe the receiver's EAGAIN: the
# write's connection then died with "Error in the pull function"
# (seen once in 28 TLS nbdcopy writes of 1 GiB).  The shim
# tests/lib/tls-errno-delay.so holds that window open for 2 ms, and
# nbdcopy writes 64 MiB over TLS in 8 KiB requests, 64 at a time, four
# times (replies encrypted on the loop while jobs decrypt the requests
# behind them; before the fix each of 3 runs failed): every write must
# arrive, and cryptsetup must decrypt the payload to what was written.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup openssl nbdcopy
shim=$top_builddir/tests/lib/tls-errno-delay.so
check "the errno-window shim is built" test -f "$shim"

make_test_pki "$TMP/pki"
make_luks2_volume v 64M
make_plaintext "$TMP/new.plain" 64M
S=$TMP/sock
U="nbds+unix:///v?socket=$S&tls-certificates=$TMP/pki/client"
env LD_PRELOAD="$shim" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
  timeout --kill-after=10 600 ${LUKS_NBD_WRAPPER:-} "$top_builddir/server/luks-nbd" -v \
  --socket "$S" --tls=require --tls-certs "$TMP/pki/server" --export "$(spec v)" \
  --run "for pass in 1 2 3 4; do nbdcopy --request-size=8192 --requests=64 $TMP/new.plain '$U' || exit; done" \
  2> "$TMP/daemon.log"
rc=$?
check "nbdcopy writes 64 MiB over TLS in 8 KiB requests, four times, and the daemon exits 0 (exit $rc)" test "$rc" -eq 0
check "no TLS session fails in the pull function" not grep -q "pull function" "$TMP/daemon.log"
check "no connection closes on a TLS error" not grep -q "TLS: .*[Ee]rror" "$TMP/daemon.log"
cryptsetup reencrypt --decrypt --header "$TMP/v.hdr" --key-file "$TMP/v.key" \
  --force-offline-reencrypt --batch-mode "$TMP/v.payload"
check "cryptsetup decrypts the payload to what nbdcopy wrote" cmp -s "$TMP/v.payload" "$TMP/new.plain"
done_testing
