#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves NBD extended headers (NBD_OPT_EXTENDED_HEADERS: 32-byte requests
# and replies, 64-bit lengths) with QEMU 10's own NBD client, which
# negotiates them (QEMU >= 8.2), in plaintext and over TLS: the daemon's
# log and QEMU's trace events show the negotiation, data written through
# qemu-io reads back through libnbd (compact headers) and through QEMU's
# luks driver on the payload and detached header, and qemu-img map asks
# for block status over more than 4 GiB in one request.  A raw client
# (nbd_extended_headers.py) covers what QEMU never sends: bad lengths,
# the two header styles mixed, STARTTLS forgetting them, write zeroes and
# trim over more than 4 GiB in one request, and the per-connection budget;
# and a zero of 8 GiB runs in steps that let another client's read pass
# and that SIGTERM ends.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-img qemu-io nbdinfo nbdcopy nbdkit python3 openssl truncate stat
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

GIB=1073741824
S=$TMP/sock
# LUKS1 volumes (QEMU's luks driver, the second implementation this test
# checks ours against, reads no LUKS2) with detached headers: 'v' of
# 16 MiB, and 'big' of 10 GiB whose payload is sparse (cryptsetup formats
# only the header, so no payload byte is written).
volume () { # NAME SIZE
  truncate -s "$2" "$TMP/$1.payload"
  printf 'pass for %s' "$1" > "$TMP/$1.key"
  cryptsetup luksFormat --type luks1 --header "$TMP/$1.hdr" --key-file "$TMP/$1.key" \
    --pbkdf-force-iterations 1000 --batch-mode "$TMP/$1.payload"
}
volume v 16M
volume big $((10 * GIB))
check "cryptsetup formatted a detached header for a sparse 10 GiB payload" \
  test -s "$TMP/big.hdr" -a "$(stat -c %b "$TMP/big.payload")" -eq 0
exports=(--export "$(spec v)" --export "$(spec big discard=on)")
qopts () { echo "driver=nbd,server.type=unix,server.path=$S,export=$1${2:+,$2}"; }
# QEMU's own LUKS driver over the payload and the detached header: a
# second implementation of the decryption to check ours against.
qluks () {
  echo "json:{\"driver\":\"luks\",\"key-secret\":\"k\",\"file\":{\"driver\":\"file\",\"filename\":\"$TMP/$1.payload\"},\"header\":{\"driver\":\"file\",\"filename\":\"$TMP/$1.hdr\"}}"
}

# QEMU 10 negotiates extended headers; data written through them is
# what libnbd (compact headers) and QEMU's luks driver read.
head -c 65536 /dev/urandom > "$TMP/pattern"
luks_nbd -vv --socket "$S" "${exports[@]}" 2> "$TMP/qemu.log" --run "
  qemu-io --trace 'nbd_receive_option_reply' --trace 'nbd_receive_reply_chunk_header' \
    --image-opts '$(qopts v)' -c 'write -s $TMP/pattern 1048576 65536' \
    -c 'write -P 0x5a 2097152 4096' -c 'read -P 0x5a 2097152 4096' \
    > $TMP/qio.out 2> $TMP/qio.trace &&
  nbdcopy 'nbd+unix:///v?socket=$S' $TMP/v.after &&
  qemu-img --trace 'nbd_send_request' --trace 'nbd_receive_reply_chunk_header' \
    map --output=json --image-opts '$(qopts big)' > $TMP/map.json 2> $TMP/map.trace &&
  nbdinfo --map 'nbd+unix:///big?socket=$S' > $TMP/nbdinfo.map &&
  { qemu-io --trace 'nbd_send_request' --image-opts '$(qopts big)' \
      -c 'write -z -n 1048576 $((4 * GIB + 65536))' > $TMP/fastzero.out 2>&1; true; }"
check "qemu-io, nbdcopy, qemu-img map and nbdinfo ran" test $? -eq 0
check "the daemon logs that extended headers were negotiated" \
  grep -q "connection [0-9]*: extended headers negotiated" "$TMP/qemu.log"
check "QEMU's trace: NBD_OPT_EXTENDED_HEADERS acknowledged" \
  grep -q "Received option reply 11 (extended headers), type 1 (ack)" "$TMP/qio.trace"
check "qemu-io read back its pattern through extended headers" \
  not grep -q "Pattern verification failed" "$TMP/qio.out"
check "QEMU got an empty final chunk for a write (no simple reply)" \
  grep -q "type = 0 (none)" "$TMP/qio.trace"
check "nbdcopy (libnbd, compact headers) reads what qemu-io wrote" \
  cmp -s <(tail -c +$((1048576 + 1)) "$TMP/v.after" | head -c 65536) "$TMP/pattern"
qemu-img convert --object "secret,id=k,file=$TMP/v.key" -O raw "$(qluks v)" "$TMP/v.qemu"
check "QEMU's luks driver on payload + detached header reads the same volume" \
  cmp -s "$TMP/v.qemu" "$TMP/v.after"
check "qemu-img map asked for block status over more than 4 GiB in one request" \
  grep -qE "len = ([5-9][0-9]{9}|[1-9][0-9]{10,}), .*type = 7 \(block status\)" "$TMP/map.trace"
check "and got BLOCK_STATUS_EXT replies" grep -q "type = 6 (block status (64-bit))" "$TMP/map.trace"
check "the daemon took one block status request of 10 GiB" \
  grep -q "block status $((10 * GIB)) bytes at 0" "$TMP/qemu.log"
check "qemu-img map: one hole over the whole sparse volume" \
  python3 -c "import json,sys; m=json.load(open('$TMP/map.json')); sys.exit(0 if len(m)==1 and m[0]['length']==$((10 * GIB)) and not m[0]['data'] and not m[0]['zero'] else 1)"
check "nbdinfo --map (compact, 32-bit extents) covers the same hole" \
  python3 -c "import sys; t=sum(int(l.split()[1]) for l in open('$TMP/nbdinfo.map') if 'hole' in l); sys.exit(0 if t==$((10 * GIB)) else 1)"
check "qemu-io write -z -n over 4 GiB goes out as one 64-bit request" \
  grep -q "from = 1048576, .len = $((4 * GIB + 65536)), .* (write zeroes)" "$TMP/fastzero.out"
check "and is refused fast (zeroing encrypts: never fast)" \
  grep -q "Operation not supported" "$TMP/fastzero.out"

# The per-connection budget holds for extended requests.
limit=$(rss_limit_mib)
luks_nbd --socket "$S" "${exports[@]}" --run \
  "exec python3 $top_srcdir/tests/lib/nbd_extended_headers.py $S budget $TMP/v.after $limit > $TMP/budget.out"
check "the budget client ran" test $? -eq 0
tap_report "$TMP/budget.out" 3 "the budget client"
# Over TLS: QEMU negotiates extended headers after STARTTLS; the raw
# client's TLS cases.
mkdir -p "$TMP/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" -keyout "$TMP/pki/server-key.pem" \
  -out "$TMP/pki/server-cert.pem" 2>/dev/null
cp "$TMP/pki/server-cert.pem" "$TMP/pki/ca-cert.pem"
luks_nbd -v --socket "$S" --tls=on --tls-certs "$TMP/pki" "${exports[@]}" 2> "$TMP/tls.log" --run "
  qemu-io --trace 'nbd_receive_option_reply' --object tls-creds-x509,id=tls0,dir=$TMP/pki,endpoint=client \
    --image-opts '$(qopts v tls-creds=tls0,tls-hostname=localhost)' \
    -c 'read -P 0x5a 2097152 4096' > $TMP/tls-qio.out 2> $TMP/tls-qio.trace &&
  exec python3 $top_srcdir/tests/lib/nbd_extended_headers.py $S tls $TMP/pki/server-cert.pem $TMP/v.after > $TMP/tls.out"
check "qemu-io and the raw client ran over TLS" test $? -eq 0
check "over TLS, QEMU negotiated extended headers" \
  grep -q "Received option reply 11 (extended headers), type 1 (ack)" "$TMP/tls-qio.trace"
check "over TLS, qemu-io read its pattern back" grep -q "^read 4096/4096" "$TMP/tls-qio.out"
tap_report "$TMP/tls.out" 5 "the raw TLS client"

# The raw client's protocol cases.
luks_nbd --socket "$S" "${exports[@]}" --run \
  "exec python3 $top_srcdir/tests/lib/nbd_extended_headers.py $S proto $TMP/v.after > $TMP/proto.out"
check "the raw protocol client ran" test $? -eq 0
tap_report "$TMP/proto.out" 28 "the raw protocol client"

# Write zeroes over more than 4 GiB in one request, checked through
# QEMU's luks driver (encrypted zeros on both sides of the 4 GiB mark),
# then trim over 8 GiB in one request, checked on the payload's blocks.
zoff=1048576 zlen=$((4 * GIB + 1048576))
luks_nbd -vv --socket "$S" "${exports[@]}" 2> "$TMP/zero.log" --run \
  "exec python3 $top_srcdir/tests/lib/nbd_extended_headers.py $S zero $zoff $zlen > $TMP/zero.out"
check "the write zeroes client ran" test $? -eq 0
tap_report "$TMP/zero.out" 1 "the write zeroes client"
check "the daemon took it as one request" grep -q "write zeroes $zlen bytes at $zoff" "$TMP/zero.log"
qemu-io -r --object "secret,id=k,file=$TMP/big.key" "$(qluks big)" \
  -c "read -P 0 $zoff 65536" -c "read -P 0 $((4 * GIB - 32768)) 65536" \
  -c "read -P 0 $((zoff + zlen - 65536)) 65536" -c "read -v $((zoff + zlen)) 16" \
  > "$TMP/zero.check" 2>&1
check "QEMU's luks driver reads zeros at its start, across 4 GiB and at its end" \
  test "$(grep -c "^read 65536/65536" "$TMP/zero.check")" -eq 3 -a \
  "$(grep -c "Pattern verification failed" "$TMP/zero.check")" -eq 0
noise_after () { # the 16 bytes past the range: read, and not zeros
  grep -E "^[0-9a-f]+:  " "$TMP/zero.check" | grep -qv ":  \(00 \)\{15\}00 "
}
check "and not past its end (ciphertext zeros decrypt to noise there)" noise_after
blocks=$(stat -c %b "$TMP/big.payload")
check "the zeros were written (encrypted) to the payload" test "$blocks" -ge $((4 * GIB / 512))
luks_nbd -vv --socket "$S" "${exports[@]}" 2> "$TMP/trim.log" --run \
  "exec python3 $top_srcdir/tests/lib/nbd_extended_headers.py $S trim 0 $((8 * GIB)) > $TMP/trim.out"
check "the trim client ran" test $? -eq 0
tap_report "$TMP/trim.out" 1 "the trim client"
check "the daemon took one trim of 8 GiB" grep -q "trim $((8 * GIB)) bytes at 0" "$TMP/trim.log"
check "the payload's blocks were punched" test "$(stat -c %b "$TMP/big.payload")" -lt $((GIB / 512))


# A zero of 8 GiB in one request (on nbdkit's null plugin: writes are
# dropped, so only the daemon's encryption is measured) runs in steps of
# 256 MiB: another client's read, sent right after it, is answered
# within a step, not after the whole zero.
timeout 600 nbdkit -U - null 16G \
  --run "timeout 600 $top_builddir/server/luks-nbd --socket $S \
           --export 'name=z,payload='\"\$uri\"',header=$TMP/big.hdr,key-file=$TMP/big.key' \
           --run 'python3 $top_srcdir/tests/lib/nbd_extended_headers.py $S fair z $((8 * GIB)) > $TMP/fair.out'"
check "the daemon on nbdkit's null plugin served both clients" test $? -eq 0
tap_report "$TMP/fair.out" 3 "the fairness client"
# SIGTERM while a zero of 64 GiB runs: it ends at its step with
# ESHUTDOWN, so shutdown is not held for the rest of it.
timeout 600 nbdkit -U - null 64G \
  --run "timeout 600 $top_builddir/server/luks-nbd --socket $S \
           --export 'name=z,payload='\"\$uri\"',header=$TMP/big.hdr,key-file=$TMP/big.key' \
           --run 'exec python3 $top_srcdir/tests/lib/nbd_extended_headers.py $S stop z $((64 * GIB)) > $TMP/stop.out'"
tap_report "$TMP/stop.out" 1 "the SIGTERM client"
done_testing
