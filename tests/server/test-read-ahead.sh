#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the read-ahead gate (server/connection.c's may_parse): a client
# that is behind (its replies wait for its socket, or over TLS for
# encryption) gets only a few MiB read ahead of it, not the 128 MiB
# in-flight budget; once it reads, every reply arrives, right
# (tests/lib/nbd_read_ahead.py, plain and over TLS, 1 MiB reads and,
# over TLS, 8 KiB reads whose replies wait as ciphertext).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup openssl python3

pki=$TMP/pki
make_test_pki "$pki"
make_luks2_volume v 16M --sector-size 4096
luks_nbd --socket "$TMP/sock" --control "$TMP/ctl" --export "$(spec v)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_read_ahead.py $TMP/sock $TMP/ctl $TMP/v.plain > $TMP/plain.out"
check "the daemon exits 0 after the plain client" test $? -eq 0
tap_report "$TMP/plain.out" 2 "the plain client"
luks_nbd --socket "$TMP/tsock" --control "$TMP/tctl" --tls=require --tls-certs "$pki/server" \
  --export "$(spec v)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_read_ahead.py $TMP/tsock $TMP/tctl $TMP/v.plain $pki/ca-cert.pem > $TMP/tls.out"
check "the daemon exits 0 after the TLS client" test $? -eq 0
tap_report "$TMP/tls.out" 2 "the TLS client"
# 8 KiB reads over TLS: each reply is encrypted on the loop at once, so
# only its ciphertext waits for the client (queued output, not an unsent
# reply): that counts as being behind too.
luks_nbd --socket "$TMP/ssock" --control "$TMP/sctl" --tls=require --tls-certs "$pki/server" \
  --export "$(spec v)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_read_ahead.py $TMP/ssock $TMP/sctl $TMP/v.plain $pki/ca-cert.pem 8 > $TMP/small.out"
check "the daemon exits 0 after the TLS client of small reads" test $? -eq 0
tap_report "$TMP/small.out" 2 "the TLS client of small reads"
done_testing
