#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# TLS (--tls, --tls-certs, --tls-psk, --tls-verify-peer) against real TLS
# clients: libnbd (nbdinfo, nbdcopy over nbds:// and nbds+unix://),
# qemu-img with tls-creds-x509, and Python's ssl module for STARTTLS
# corner cases.  Certificates come from openssl.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdinfo nbdcopy qemu-img openssl python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

# A CA, a server certificate for localhost, a client certificate; the
# client directory holds what libnbd and qemu look for.
pki=$TMP/pki
mkdir -p "$pki/server" "$pki/client" "$pki/client-nocert"
ossl () { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=luks-nbd test CA" \
  -keyout "$pki/ca-key.pem" -out "$pki/ca-cert.pem" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign"
sign () { # sign NAME CN EXTENSIONS
  ossl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$pki/$1-key.pem" -out "$pki/$1.csr"
  printf '%b' "$3" > "$pki/$1.ext"
  ossl x509 -req -days 2 -in "$pki/$1.csr" -CA "$pki/ca-cert.pem" -CAkey "$pki/ca-key.pem" \
    -CAcreateserial -extfile "$pki/$1.ext" -out "$pki/$1-cert.pem"
}
sign server localhost 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n'
sign client client 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n'
cp "$pki/ca-cert.pem" "$pki/server-cert.pem" "$pki/server-key.pem" "$pki/server/"
cp "$pki/ca-cert.pem" "$pki/client-cert.pem" "$pki/client-key.pem" "$pki/client/"
cp "$pki/ca-cert.pem" "$pki/client-nocert/"
check "openssl made the certificates" test -s "$pki/server/server-cert.pem" -a -s "$pki/client/client-cert.pem"
printf 'alice:%s\n' "$(openssl rand -hex 32)" > "$TMP/psk.keys"
printf 'alice:%s\n' "$(openssl rand -hex 32)" > "$TMP/wrong.keys"

make_luks2_volume v 16M
make_plaintext "$TMP/new.plain" 16M
S=$TMP/sock
U="nbds+unix:///v?socket=$S&tls-certificates=$pki/client"

# X.509 over a unix socket, TLS required.
luks_nbd -v --socket "$S" --tls=require --tls-certs "$pki/server" --export "$(spec v)" 2> "$TMP/x509.log" --run "
  nbdcopy '$U' $TMP/read.out &&
  nbdcopy $TMP/new.plain '$U' &&
  nbdcopy '$U' $TMP/back.out &&
  { nbdinfo --size 'nbd+unix:///v?socket=$S' > $TMP/plain.out 2>&1; echo \$? > $TMP/plain.rc; }"
check "--tls=require: nbdcopy over nbds+unix:// reads the plaintext" cmp -s "$TMP/read.out" "$TMP/v.plain"
check "--tls=require: nbdcopy writes over TLS and reads it back" cmp -s "$TMP/back.out" "$TMP/new.plain"
check "--tls=require: a client without TLS is refused" test "$(cat "$TMP/plain.rc")" -ne 0
cp "$TMP/v.hdr" "$TMP/hdr-copy"
cp "$TMP/v.payload" "$TMP/dec"
cryptsetup reencrypt --decrypt --header "$TMP/hdr-copy" --key-file "$TMP/v.key" \
  --force-offline-reencrypt --batch-mode "$TMP/dec"
check "cryptsetup decrypts what was written over TLS" cmp -s "$TMP/dec" "$TMP/new.plain"

# A client that sends 1.2 GiB of reads over TLS and reads nothing: the
# ciphertext queued for it counts against the in-flight limit (request
# buffers are let go once encrypted).  Not under valgrind, where
# encrypting 1.2 GiB takes minutes.
if [ -z "${LUKS_NBD_WRAPPER:-}" ]; then
  luks_nbd --socket "$S" --tls=require --tls-certs "$pki/server" --export "$(spec v)" \
    --run "exec python3 $top_srcdir/tests/lib/nbd_slow_reader.py $S $TMP/new.plain $(rss_limit_mib) $pki/ca-cert.pem > $TMP/slow.out"
  check "TLS slow reader: the daemon exits 0" test $? -eq 0
  tap_report "$TMP/slow.out" 3 "the TLS slow reader"
fi

# PSK over TCP, TLS optional: plaintext clients are served too.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
luks_nbd -v --listen "127.0.0.1:$port" --tls=on --tls-psk "$TMP/psk.keys" --export "$(spec v)" 2> "$TMP/psk.log" --run "
  nbdcopy 'nbds://alice@localhost:$port/v?tls-psk-file=$TMP/psk.keys' $TMP/psk.out;
  nbdinfo --size 'nbds://alice@localhost:$port/v?tls-psk-file=$TMP/wrong.keys' > /dev/null 2>&1; echo \$? > $TMP/wrong.rc;
  nbdinfo --size 'nbds://bob@localhost:$port/v?tls-psk-file=$TMP/psk.keys' > /dev/null 2>&1; echo \$? > $TMP/bob.rc;
  nbdinfo --size 'nbd://localhost:$port/v' > $TMP/tcp-plain.size"
check "PSK over TCP: nbdcopy reads the volume" cmp -s "$TMP/psk.out" "$TMP/new.plain"
check "PSK: a wrong key is refused" test "$(cat "$TMP/wrong.rc")" -ne 0
check "PSK: an unknown user is refused" test "$(cat "$TMP/bob.rc")" -ne 0
check "--tls=on still serves plaintext clients" test "$(cat "$TMP/tcp-plain.size")" = 16777216
# The server's cipher order puts the faster AEAD first; on a CPU with AES
# instructions that is AES-GCM (GnuTLS's own order gave libnbd
# ChaCha20-Poly1305 here, 17 times slower).  Under a checker such as
# valgrind the daemon runs on the checker's emulated CPU, where either may
# be faster: there only the logging is checked.
if grep -qw aes /proc/cpuinfo && [ -z "${LUKS_NBD_WRAPPER:-}" ]; then
  check "X.509: the session uses AES-GCM on a CPU with AES instructions" \
    grep -q "TLS (TLS1.[23])-.*(AES-[0-9]*-GCM)" "$TMP/x509.log"
  check "PSK: the session uses AES-GCM on a CPU with AES instructions" \
    grep -q "TLS (TLS1.[23])-.*(AES-[0-9]*-GCM)" "$TMP/psk.log"
else
  check "X.509: the session's cipher is logged" grep -q "TLS (TLS1" "$TMP/x509.log"
  check "PSK: the session's cipher is logged" grep -q "TLS (TLS1" "$TMP/psk.log"
fi

# qemu-img with tls-creds-x509 over TCP (checks the host name).
luks_nbd --listen "127.0.0.1:$port" --tls=require --tls-certs "$pki/server" --export "$(spec v)" --run "
  qemu-img convert --object tls-creds-x509,id=tls0,dir=$pki/client-nocert,endpoint=client \
    --image-opts driver=nbd,host=localhost,port=$port,export=v,tls-creds=tls0 -O raw $TMP/qemu.out"
check "qemu-img reads over TLS (tls-creds-x509)" cmp -s "$TMP/qemu.out" "$TMP/new.plain"

# --tls-verify-peer: only clients with a certificate from the CA.
luks_nbd --socket "$S" --tls=require --tls-certs "$pki/server" --tls-verify-peer --export "$(spec v)" --run "
  nbdinfo --size '$U' > $TMP/cert.size;
  nbdinfo --size 'nbds+unix:///v?socket=$S&tls-certificates=$pki/client-nocert' > /dev/null 2>&1; echo \$? > $TMP/nocert.rc" \
  2> "$TMP/verify.log"
check "--tls-verify-peer: a client certificate signed by the CA is accepted" test "$(cat "$TMP/cert.size")" = 16777216
check "--tls-verify-peer: a client without a certificate is refused" test "$(cat "$TMP/nocert.rc")" -ne 0
check "--tls-verify-peer: the refusal is logged without -v, naming the rule" \
  grep -q "client certificate refused (--tls-verify-peer)" "$TMP/verify.log"

# STARTTLS corner cases from a raw client.
declare -A expected=([on]=8 [require]=7 [off]=2)
for mode in on require off; do
  opts=(--tls-certs "$pki/server")
  [ $mode = off ] && opts=()
  luks_nbd --socket "$S" --tls=$mode "${opts[@]}" --export "$(spec v)" \
    --run "python3 $top_srcdir/tests/lib/nbd_starttls.py $mode $S $pki/ca-cert.pem $TMP/new.plain > $TMP/py-$mode.out 2>&1"
  lines=0
  while read -r verdict desc; do
    lines=$((lines + 1))
    if [ "$verdict" = PASS ]; then ok "$desc"; else not_ok "$verdict $desc"; fi
  done < "$TMP/py-$mode.out"
  check "--tls=$mode: the STARTTLS client ran to the end" test "$lines" -eq "${expected[$mode]}"
done

# Configuration errors name the option and the file.
check_fails_with "--tls=on without credentials" "needs one of --tls-certs DIR or --tls-psk FILE" \
  luks_nbd --socket "$S" --tls=on --export "$(spec v)"
check_fails_with "--tls-certs without --tls" "need --tls=on or --tls=require" \
  luks_nbd --socket "$S" --tls-certs "$pki/server" --export "$(spec v)"
check_fails_with "--tls-certs names a directory without a key" "$pki/client-nocert: server-cert.pem/server-key.pem" \
  luks_nbd --socket "$S" --tls=on --tls-certs "$pki/client-nocert" --export "$(spec v)"
printf 'alice=00ff\n' > "$TMP/bad.keys"
check_fails_with "--tls-psk line without a colon" "--tls-psk $TMP/bad.keys: line 1: expected username:hexkey" \
  luks_nbd --socket "$S" --tls=on --tls-psk "$TMP/bad.keys" --export "$(spec v)"
printf 'alice:00zz\n' > "$TMP/bad.keys"
check_fails_with "--tls-psk key that is not hex" "line 1: key is not hexadecimal" \
  luks_nbd --socket "$S" --tls=on --tls-psk "$TMP/bad.keys" --export "$(spec v)"
check_fails_with "--tls=maybe" "--tls maybe: expected off, on or require" \
  luks_nbd --socket "$S" --tls=maybe --export "$(spec v)"
check "no socket left behind by refused configurations" test ! -e "$S"
done_testing
