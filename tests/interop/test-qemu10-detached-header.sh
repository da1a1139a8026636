#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves interop with QEMU >= 10's own detached LUKS headers, both ways:
# headers QEMU makes (QMP blockdev-create through qemu-storage-daemon, as
# QEMU's iotest luks-detached-header does; the seed's `qemu-img create
# -o detached-header=true` is tried and its answer asserted), for a raw
# payload and a qcow2 one (luks -> qcow2 -> file, header -> raw -> file):
# luks-nbd serves them; what nbdcopy writes through luks-nbd reads back
# through QEMU's luks driver (json: with "header"); what qemu-io and
# qemu-img convert write through QEMU's driver reads back through
# luks-nbd; qemu-img check finds the qcow2 payload clean; cryptsetup
# accepts the passphrase with --header and decrypts a copy to the same
# plaintext.
. "$(dirname "$0")/../lib/lib.sh"
need qemu-img qemu-io qemu-storage-daemon nbdcopy cryptsetup cmp python3
need_qemu 10
here=$(cd "$(dirname "$0")/../lib" && pwd)
size=$((4 * 1024 * 1024))
printf 'qemu ten secret' > "$TMP/key"
make_plaintext "$TMP/plain" "$size"
sock=$TMP/s.sock
uri="nbd+unix:///v?socket=$sock"

# The seed's own command (docs/devel/luks-detached-header.rst).  QEMU
# 10.0.2 refuses it; if a later QEMU accepts it, that is asserted too.
if qemu-img create -f luks --object "secret,id=s0,file=$TMP/key" \
     -o key-secret=s0,detached-header=true "$TMP/seed.hdr" > "$TMP/seed.out" 2>&1; then
  check "qemu-img create -o detached-header=true: a LUKS header" \
    grep -qx version=1 <("$CRYPT_TOOL" info "$TMP/seed.hdr")
else
  check "qemu-img create -o detached-header=true fails as in QEMU 10.0 (so QMP it is)" \
    grep -qF "Parameter 'detached-header' is unexpected" "$TMP/seed.out"
fi

# qemu_json FMT HDR PAYLOAD: QEMU's luks driver on the pair, as json:.
qemu_json () {
  local file="{\"driver\":\"file\",\"filename\":\"$3\"}"
  [ "$1" = qcow2 ] && file="{\"driver\":\"qcow2\",\"file\":$file}"
  echo "json:{\"driver\":\"luks\",\"key-secret\":\"s0\",\"file\":$file,\"header\":{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"$2\"}}}"
}
serve () {   # serve HDR PAYLOAD CMD: luks-nbd while CMD runs
  luks_nbd --socket "$sock" --export "name=v,payload=$2,header=$1,key-file=$TMP/key" \
    --run "$3"
}

for fmt in raw qcow2; do
  h=$TMP/$fmt.hdr p=$TMP/$fmt.payload
  : > "$h"
  if [ "$fmt" = qcow2 ]; then qemu-img create -q -f qcow2 "$p" "$size"; else : > "$p"; fi
  check "$fmt: QMP blockdev-create with a detached header" \
    python3 "$here/qmp_luks.py" "$TMP/key" "$h" "$p" "$fmt" "$size"
  j=$(qemu_json "$fmt" "$h" "$p")
  qemu-img info --output=json --object "secret,id=s0,file=$TMP/key" "$j" > "$TMP/info.json"
  check "$fmt: QEMU calls the header detached" \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["format-specific"]["data"]; sys.exit(d["detached-header"] is not True)' "$TMP/info.json"
  check "$fmt: QEMU's header has payload offset 0" \
    grep -qx payload_offset=0 <("$CRYPT_TOOL" info "$h")

  # luks-nbd writes, QEMU reads.
  check "$fmt: nbdcopy writes the plaintext through luks-nbd" \
    serve "$h" "$p" "nbdcopy $TMP/plain $uri"
  rm -f "$TMP/q.out"
  qemu-img convert --object "secret,id=s0,file=$TMP/key" -O raw "$j" "$TMP/q.out"
  check "$fmt: QEMU's luks driver reads luks-nbd's writes" cmp -s "$TMP/q.out" "$TMP/plain"

  # QEMU writes, luks-nbd reads.
  make_plaintext "$TMP/plain2" "$size"
  qemu-img convert -n -f raw -O luks --object "secret,id=s0,file=$TMP/key" \
    "$TMP/plain2" "$j"
  qemu-io --object "secret,id=s0,file=$TMP/key" -c "write -P 0x5a 1M 65536" \
    -c "write -P 0xa5 3145728 512" "$j" > "$TMP/qemu-io.out"
  python3 - "$TMP/plain2" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(1 << 20); f.write(b"\x5a" * 65536)
    f.seek(3 << 20); f.write(b"\xa5" * 512)
PY
  rm -f "$TMP/n.out"
  serve "$h" "$p" "nbdcopy $uri $TMP/n.out"
  check "$fmt: luks-nbd reads what qemu-img convert and qemu-io wrote" \
    cmp -s "$TMP/n.out" "$TMP/plain2"
  if [ "$fmt" = qcow2 ]; then
    check "qcow2: qemu-img check finds the payload clean" qemu-img check -q "$p"
    qemu-img convert -f qcow2 -O raw "$p" "$TMP/ct"   # the ciphertext cryptsetup sees
  else
    cp "$p" "$TMP/ct"
  fi

  # cryptsetup agrees: the passphrase opens the header, and a decrypted
  # copy (the header converted to LUKS2, which offline reencrypt needs)
  # is the plaintext.
  check "$fmt: cryptsetup open --test-passphrase --header" \
    cryptsetup open --test-passphrase --header "$h" --key-file "$TMP/key" "$TMP/ct"
  cp "$h" "$TMP/h2"
  cryptsetup convert --type luks2 --header "$TMP/h2" --batch-mode "$TMP/ct" &&
    cryptsetup reencrypt --decrypt --header "$TMP/h2" --key-file "$TMP/key" \
      --force-offline-reencrypt --batch-mode "$TMP/ct" > /dev/null
  check "$fmt: cryptsetup decrypts a copy to the same plaintext" cmp -s "$TMP/ct" "$TMP/plain2"
done
done_testing
