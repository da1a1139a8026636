#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the seed use case: a LUKS volume whose payload is a qcow2 image
# (holding ciphertext only) and whose header is a separate file.  Data
# written through luks-nbd is what `qemu-img convert -O raw` of the
# payload decrypts to with cryptsetup; `qemu-img check` stays clean; an
# existing encrypted raw disk converted to qcow2 by qemu-img reads back.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-img nbdcopy

printf 'qcow2 seed' > "$TMP/key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/vm1.hdr" --key-file "$TMP/key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 4096 --batch-mode "$TMP/dummy"
qemu-img create -q -f qcow2 "$TMP/payload.qcow2" 64M
make_plaintext "$TMP/data" 8M
luks_nbd --socket "$TMP/sock" -v \
  --export "name=vm1,payload=$TMP/payload.qcow2,header=$TMP/vm1.hdr,key-file=$TMP/key,qcow2-cache-size=128K" \
  --run "nbdcopy $TMP/data \"\$uri\" && nbdcopy \"\$uri\" $TMP/back" 2> "$TMP/log"
check "nbdcopy wrote and read through a qcow2 payload" test $? -eq 0
check "payload-format=auto detected qcow2 (logged with -v)" grep -q "qcow2 payload" "$TMP/log"
check "read back equals the data (first 8 MiB)" cmp -s -n 8388608 "$TMP/back" "$TMP/data"
check "the unwritten rest reads as the decryption of zeros, not as zeros" \
  not cmp -s -i 8388608 -n 4096 "$TMP/back" /dev/zero
check "the qcow2 payload grew with the writes only" \
  test "$(stat -c %s "$TMP/payload.qcow2")" -lt 20000000
qemu-img check -q "$TMP/payload.qcow2"
check "qemu-img check: no errors, no leaks" test $? -eq 0
qemu-img convert -f qcow2 -O raw "$TMP/payload.qcow2" "$TMP/cipher.raw"
check "the payload holds ciphertext, not the data" not cmp -s -n 8388608 "$TMP/cipher.raw" "$TMP/data"
cp "$TMP/vm1.hdr" "$TMP/vm1.hdr-copy"
cryptsetup reencrypt --decrypt --header "$TMP/vm1.hdr-copy" --key-file "$TMP/key" \
  --force-offline-reencrypt --batch-mode "$TMP/cipher.raw"
check "cryptsetup decrypts the converted payload to the data" cmp -s -n 8388608 "$TMP/cipher.raw" "$TMP/data"

make_luks2_volume r 4M --sector-size 512
for opts in "-o compat=0.10" "-o cluster_size=4096"; do
  qemu-img convert -f raw -O qcow2 $opts "$TMP/r.payload" "$TMP/r.qcow2"
  luks_nbd --socket "$TMP/sock" \
    --export "name=r,payload=$TMP/r.qcow2,header=$TMP/r.hdr,key-file=$TMP/r.key,payload-format=qcow2" \
    --run "nbdcopy \"\$uri\" $TMP/r.out"
  check "encrypted raw disk converted to qcow2 ($opts) reads as the plaintext" \
    cmp -s "$TMP/r.out" "$TMP/r.plain"
done
# A backing chain (payload-backing=on): the base holds the ciphertext, the
# overlay takes the writes; the base is never written.
cp "$TMP/r.payload" "$TMP/base.raw"
cp "$TMP/r.payload" "$TMP/base.orig"
qemu-img create -q -f qcow2 -b base.raw -F raw "$TMP/overlay.qcow2"
check_fails_with "a backing file is refused by default" "payload-backing=on" \
  luks_nbd --socket "$TMP/sock" --export "name=o,payload=$TMP/overlay.qcow2,header=$TMP/r.hdr,key-file=$TMP/r.key" --run true
head -c 1048576 /dev/urandom > "$TMP/patch"
luks_nbd --socket "$TMP/sock" \
  --export "name=o,payload=$TMP/overlay.qcow2,header=$TMP/r.hdr,key-file=$TMP/r.key,payload-backing=on" \
  --run "nbdcopy \"\$uri\" $TMP/o.before && nbdsh -u \"\$uri\" -c 'h.pwrite(open(\"$TMP/patch\",\"rb\").read(), 1000448)' && nbdcopy \"\$uri\" $TMP/o.after"
check "payload-backing=on: reads fall through to the backing file" cmp -s "$TMP/o.before" "$TMP/r.plain"
python3 -c "import sys; d=bytearray(open(sys.argv[1],'rb').read()); p=open(sys.argv[2],'rb').read(); d[1000448:1000448+len(p)]=p; open(sys.argv[3],'wb').write(d)" "$TMP/r.plain" "$TMP/patch" "$TMP/o.expect"
check "payload-backing=on: writes land in the overlay (copy-on-write)" cmp -s "$TMP/o.after" "$TMP/o.expect"
check "the backing file is never written" cmp -s "$TMP/base.raw" "$TMP/base.orig"
qemu-img check -q "$TMP/overlay.qcow2"
check "qemu-img check of the overlay is clean" test $? -eq 0
done_testing
