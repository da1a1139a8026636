#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# TLS connections in parallel, the record work in the thread pool
# (server/tls_io.c): interleaved writes and reads on four TLS connections
# checked by cryptsetup, clients vanishing mid-transfer, a slow TLS
# reader beside a fast one, the loop thread's share of the CPU, SIGTERM
# with TLS requests in flight (tests/lib/nbd_tls_parallel.py).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup openssl python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

pki=$TMP/pki
make_test_pki "$pki"
check "openssl made a server certificate" test -s "$pki/server/server-cert.pem"

make_luks2_volume v 64M --sector-size 4096
S=$TMP/sock
luks_nbd -v --socket "$S" --tls=require --tls-certs "$pki/server" --export "$(spec v)" \
  2> "$TMP/daemon.log" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_tls_parallel.py $S $TMP/v.plain $pki/client $TMP/model > $TMP/py.out"
check "the daemon exits 0 after SIGTERM with TLS requests in flight" test $? -eq 0
tap_report "$TMP/py.out" 6 "the TLS client script"

# What was written over TLS, decrypted by cryptsetup.
cp "$TMP/v.payload" "$TMP/dec"
cryptsetup reencrypt --decrypt --header "$TMP/v.hdr" --key-file "$TMP/v.key" \
  --force-offline-reencrypt --batch-mode "$TMP/dec"
check "cryptsetup decrypts what four TLS connections wrote" cmp -s "$TMP/dec" "$TMP/model"
# Each connection's jobs say what they encrypted: the four readers of
# step 4 took 96 MiB each (the replies' payload alone).
enc=$(sed -n 's/.*jobs in the thread pool encrypted \([0-9]*\) bytes.*/\1/p' "$TMP/daemon.log" |
  awk '{ if ($1 >= 100663296) n++ } END { print n + 0 }')
check "the pool's jobs encrypted at least 96 MiB on each of 4 connections ($enc)" test "$enc" -ge 4
check "no TLS send error" not grep -q "TLS send" "$TMP/daemon.log"
done_testing
