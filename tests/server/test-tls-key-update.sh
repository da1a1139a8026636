#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A TLS 1.3 client may send a KeyUpdate at any time.  The daemon handles
# it in the connection's receiver while its sender (a send job in
# another thread) encrypts replies; GnuTLS's receiver then starts a new
# epoch with a copy of the sender's sequence number taken mid-record,
# records reused nonces, and the client failed with "Decryption has
# failed" (without the shim: 8 of 11 runs of 25 reads of 64 MiB).  The
# shim tests/lib/tls-encrypt-delay.so slows each ChaCha20-Poly1305
# record encryption by 200 us, holding the sender in that window (before
# the fix every run failed).  tests/lib/tls-keyupdate-client (GnuTLS:
# python's ssl and libnbd never send a KeyUpdate) reads 64 MiB three
# times, then writes it, asking for key updates every few replies (both
# kinds: with and without GNUTLS_KU_PEER); every byte must match what
# cryptsetup decrypts (reads) and what was written (writes).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup openssl
shim=$top_builddir/tests/lib/tls-encrypt-delay.so
client=$top_builddir/tests/lib/tls-keyupdate-client
check "the encryption-delay shim is built" test -f "$shim"
check "the key-update client is built" test -x "$client"

make_test_pki "$TMP/pki"
make_luks2_volume v 64M
make_plaintext "$TMP/new.plain" 64M
S=$TMP/sock
run () {
  env LD_PRELOAD="$shim" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    timeout --kill-after=10 600 ${LUKS_NBD_WRAPPER:-} "$top_builddir/server/luks-nbd" -v \
    --socket "$S" --tls=require --tls-certs "$TMP/pki/server" --export "$(spec v)" \
    --run "$client $S v $TMP/pki/ca-cert.pem $1 $2 ${3:-3}" 2> "$TMP/$1.log"
}
# (The client inherits the shim too; it only slows its own requests.)
run read "$TMP/v.plain"
rc=$?
check "three reads of 64 MiB with key updates match what cryptsetup encrypted (exit $rc)" test "$rc" -eq 0
check "the client asked for key updates while reading" grep -qE "read ok, [1-9][0-9]* key updates" "$TMP/read.log"
# A KeyUpdate and a request in one write: GnuTLS answers AGAIN after the
# KeyUpdate, and the daemon stopped there, leaving the request unread
# until the client sent more (it waits for its reply: a hang; 20 s bound).
run pairs "$TMP/v.plain" 30
rc=$?
check "30 reads each sent with a KeyUpdate in one write are answered, right (exit $rc)" test "$rc" -eq 0
check "the client sent those key updates" grep -qE "pairs ok, 30 key updates" "$TMP/pairs.log"
run write "$TMP/new.plain"
rc=$?
check "a write of 64 MiB with key updates reads back (exit $rc)" test "$rc" -eq 0
check "the client asked for key updates while writing" grep -qE "write ok, [1-9][0-9]* key updates" "$TMP/write.log"
check "no connection closes on a TLS error" not grep -q "TLS: .*[Ee]rror" "$TMP/read.log" "$TMP/pairs.log" "$TMP/write.log"
cryptsetup reencrypt --decrypt --header "$TMP/v.hdr" --key-file "$TMP/v.key" \
  --force-offline-reencrypt --batch-mode "$TMP/v.payload"
check "cryptsetup decrypts the payload to what the client wrote" cmp -s "$TMP/v.payload" "$TMP/new.plain"
done_testing
