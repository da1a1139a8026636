#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that every connection is held to its budgets in every phase
# (docs/security.md has the table): option floods before transmission
# (NBD_OPT_INFO, NBD_OPT_LIST, refusals under --tls=require, options over
# TLS) stop being read once the replies are unread, and a TLS client that
# puts each request in its own record is held to the in-flight limit as
# a plaintext one is.  The daemon's peak RSS (VmHWM) stays under
# rss_limit_mib; every reply still arrives, right.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup openssl python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

# A self-signed server certificate; the Python clients trust it directly.
mkdir -p "$TMP/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" -keyout "$TMP/pki/server-key.pem" \
  -out "$TMP/pki/server-cert.pem" 2>/dev/null
check "openssl made a server certificate" test -s "$TMP/pki/server-cert.pem"
ca=$TMP/pki/server-cert.pem

make_luks2_volume v 16M
limit=$(rss_limit_mib)
S=$TMP/sock
# The handshake timeout is long: the floods must be stopped by the
# budget, not by the timer.
for kind in info list; do
  luks_nbd --socket "$S" --handshake-timeout 300 --export "$(spec v)" \
    --run "exec python3 $top_srcdir/tests/lib/nbd_option_flood.py $S $limit $kind > $TMP/$kind.out"
  check "$kind flood: the daemon exits 0" test $? -eq 0
  tap_report "$TMP/$kind.out" 4 "the $kind flood"
done
luks_nbd --socket "$S" --handshake-timeout 300 --tls=require --tls-certs "$TMP/pki" \
  --export "$(spec v)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_option_flood.py $S $limit tlsreqd $ca > $TMP/tlsreqd.out"
check "ERR_TLS_REQD flood: the daemon exits 0" test $? -eq 0
tap_report "$TMP/tlsreqd.out" 4 "the ERR_TLS_REQD flood"
luks_nbd --socket "$S" --handshake-timeout 300 --tls=require --tls-certs "$TMP/pki" \
  --export "$(spec v)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_option_flood.py $S $limit tls-info $ca > $TMP/tls-info.out"
check "option flood over TLS: the daemon exits 0" test $? -eq 0
tap_report "$TMP/tls-info.out" 4 "the option flood over TLS"

# 16 MiB reads, each in its own TLS record, twice the RSS limit in all
# (at most 64: under TSan, whose limit is 4 GB for its shadow memory,
# reading 8 GiB back would take many minutes).  e8be15f parsed one
# request per record before checking its limits, so all were taken.  Not
# under valgrind, where encrypting a GiB takes minutes (as in
# test-tls.sh).
if [ -z "${LUKS_NBD_WRAPPER:-}" ]; then
  count=$((2 * limit / 16))
  [ "$count" -le 64 ] || count=64
  luks_nbd --socket "$S" --tls=require --tls-certs "$TMP/pki" --export "$(spec v)" \
    --run "exec python3 $top_srcdir/tests/lib/nbd_slow_reader.py $S $TMP/v.plain $limit $ca $count 16 > $TMP/records.out"
  check "TLS record flood: the daemon exits 0" test $? -eq 0
  tap_report "$TMP/records.out" 3 "the TLS record flood"
fi
done_testing
