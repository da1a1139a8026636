#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that no NBD client can hold up shutdown: after SIGTERM the
# daemon exits 0 promptly with a client idle in the handshake, idle in
# transmission (plaintext and TLS), idle just after STARTTLS's
# acknowledgement (no TLS handshake sent), or one that sent reads and
# reads none of the replies (dropped after --handshake-timeout periods
# in which it took nothing), while one that reads slowly gets every
# reply.  (The control socket's idle client is
# tests/server/test-control-socket.sh's.)
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup openssl python3 nbdkit
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

mkdir -p "$TMP/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" -keyout "$TMP/pki/server-key.pem" \
  -out "$TMP/pki/server-cert.pem" 2>/dev/null
check "openssl made a server certificate" test -s "$TMP/pki/server-cert.pem"

make_luks2_volume v 16M
S=$TMP/sock
daemon="${LUKS_NBD_WRAPPER:-} $top_builddir/server/luks-nbd --socket $S --tls=on --tls-certs $TMP/pki --export $(spec v)"
# Idle clients: closed at SIGTERM, long before their handshake timeout.
for case in handshake transmission starttls tls-transmission; do
  rm -f "$S"
  # shellcheck disable=SC2086
  timeout 120 python3 "$top_srcdir/tests/lib/nbd_idle_at_sigterm.py" $case "$S" \
    "$TMP/pki/server-cert.pem" 10 -- $daemon --handshake-timeout 300 > "$TMP/$case.out"
  tap_report "$TMP/$case.out" 1 "the $case case"
done
# A client that reads nothing: two periods of 2 s without progress.
rm -f "$S"
# shellcheck disable=SC2086
timeout 120 python3 "$top_srcdir/tests/lib/nbd_idle_at_sigterm.py" nonreader "$S" \
  "$TMP/pki/server-cert.pem" 20 -- $daemon --handshake-timeout 2 > "$TMP/nonreader.out"
tap_report "$TMP/nonreader.out" 1 "the nonreader case"
# A client that reads, slowly, replies whose requests were still running
# when SIGTERM came (the payload is behind nbdkit's delay filter, 1.5 s a
# read): it is making progress, so it gets every reply, though its queue
# grows between the 1 s drain ticks.
# check-plaintext=off and payload-format=raw: the 32 sample reads and the
# format probe would take 50 s here before READY=1 (the client connects
# after it: nbd_idle_at_sigterm.py listens on NOTIFY_SOCKET).
nbdkit -U "$TMP/r.sock" -P "$TMP/r.pid" --filter=delay file "$TMP/v.payload" delay-read=1500ms
cleanup_hooks="kill \$(cat $TMP/r.pid) 2>/dev/null; $cleanup_hooks"
rm -f "$S"
# shellcheck disable=SC2086
timeout 120 python3 "$top_srcdir/tests/lib/nbd_idle_at_sigterm.py" slowreader "$S" \
  "$TMP/pki/server-cert.pem" 60 -- ${LUKS_NBD_WRAPPER:-} $top_builddir/server/luks-nbd --socket $S \
  --export "name=v,payload=nbd+unix:///?socket=$TMP/r.sock,header=$TMP/v.hdr,key-file=$TMP/v.key,check-plaintext=off,payload-format=raw" \
  --handshake-timeout 1 > "$TMP/slowreader.out"
tap_report "$TMP/slowreader.out" 2 "the slowreader case"
done_testing
