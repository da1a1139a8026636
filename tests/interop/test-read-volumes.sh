#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that nbdcopy reads, through luks-nbd, exactly the plaintext of
# volumes made by cryptsetup (LUKS2 detached, 512 and 4096 sectors,
# pbkdf2 and argon2id; LUKS1 converted) and qemu-img (LUKS1 attached with
# no header=, and the same split into a detached pair).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-img nbdcopy
need_qemu 10

make_luks2_volume l2-512 3M --sector-size 512
make_luks2_volume l2-4096 3M --sector-size 4096 --pbkdf argon2id --pbkdf-memory 32768
make_luks2_volume l1 2M --sector-size 512 --hash sha1
cryptsetup convert --type luks1 --header "$TMP/l1.hdr" --batch-mode "$TMP/l1.payload"
make_plaintext "$TMP/qemu.plain" 2M
printf 'qemu pass' > "$TMP/qemu.key"
qemu_luks "$TMP/qemu.plain" "$TMP/qemu.img" "$TMP/qemu.key" \
  cipher-alg=serpent-256,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha256
split_detached "$TMP/qemu.img" "$TMP/qsplit.hdr" "$TMP/qsplit.payload"
cp "$TMP/qemu.key" "$TMP/qsplit.key"

luks_nbd --socket "$TMP/sock" \
  --export "$(spec l2-512)" --export "$(spec l2-4096)" --export "$(spec l1)" \
  --export "name=attached,payload=$TMP/qemu.img,key-file=$TMP/qemu.key" \
  --export "$(spec qsplit)" \
  --run "for e in l2-512 l2-4096 l1 attached qsplit; do
           nbdcopy \"nbd+unix:///\$e?socket=\$unixsocket\" $TMP/\$e.out || exit 1
         done"
check "daemon served all reads" test $? -eq 0
check "LUKS2 512-byte sectors: plaintext" cmp -s "$TMP/l2-512.out" "$TMP/l2-512.plain"
check "LUKS2 4096-byte sectors, argon2id: plaintext" cmp -s "$TMP/l2-4096.out" "$TMP/l2-4096.plain"
check "LUKS1 (cryptsetup convert) detached: plaintext" cmp -s "$TMP/l1.out" "$TMP/l1.plain"
check "qemu-img LUKS1 attached (no header=): plaintext" cmp -s "$TMP/attached.out" "$TMP/qemu.plain"
check "qemu-img LUKS1 split into a detached pair: plaintext" cmp -s "$TMP/qsplit.out" "$TMP/qemu.plain"
done_testing
