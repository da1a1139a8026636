#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves cache=none (qemu-nbd's --cache=none): payload data moves with
# O_DIRECT, bypassing the page cache; what is written is what cryptsetup
# decrypts; transfers direct I/O cannot take as they are (partial sectors,
# qcow2 metadata) still land, bounced; bad values and NBD payloads are refused by name.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy qemu-io qemu-img fincore

# resident FILE: bytes of FILE in the page cache.
resident () { fincore --bytes --noheadings --output RES "$1" | tr -d ' '; }
# drop_cache FILE: its clean pages out of the page cache.
drop_cache () {
  sync "$1"
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"
}
# decrypt VOLUME OUT: cryptsetup's plaintext of the volume's payload.
decrypt () {
  cp "$TMP/$1.payload" "$2"
  cp "$TMP/$1.hdr" "$TMP/$1.hdr-copy"
  cryptsetup reencrypt --decrypt --header "$TMP/$1.hdr-copy" --key-file "$TMP/$1.key" \
    --force-offline-reencrypt --batch-mode "$2"
}

make_luks2_volume d 8M --sector-size 4096
make_plaintext "$TMP/new" 8M
drop_cache "$TMP/d.payload"
luks_nbd --socket "$TMP/sock" --export "$(spec d cache=none)" \
  --run "nbdcopy $TMP/new \"\$uri\" && nbdcopy \"\$uri\" $TMP/back"
check "cache=none: nbdcopy wrote and read back" test $? -eq 0
check "cache=none: read back equals what was written" cmp -s "$TMP/back" "$TMP/new"
res=$(resident "$TMP/d.payload")
check "cache=none: the payload stayed out of the page cache ($res bytes resident)" \
  test "$res" -lt 1048576
decrypt d "$TMP/d.plain-out"
check "cache=none: cryptsetup decrypts the payload to the data written" \
  cmp -s "$TMP/d.plain-out" "$TMP/new"

# The same run without cache=none fills the page cache: the check above
# can fail.
drop_cache "$TMP/d.payload"
luks_nbd --socket "$TMP/sock" --export "$(spec d cache=writeback)" \
  --run "nbdcopy $TMP/new \"\$uri\" && nbdcopy \"\$uri\" $TMP/back"
res=$(resident "$TMP/d.payload")
check "cache=writeback: the payload is in the page cache ($res bytes)" \
  test "$res" -ge 4194304

# Partial sectors: luks-nbd reads, patches and rewrites the 4096-byte
# sector; the pieces still go where they belong.
luks_nbd --socket "$TMP/sock" --export "$(spec d cache=none)" \
  --run "qemu-io -f raw \"\$uri\" -c 'write -P 0xab 1000 3000' -c 'write -P 0xcd 8190 20' \
         -c 'write -P 0xef 65536 512' >/dev/null && \
         qemu-io -f raw \"\$uri\" -c 'read -P 0xab 1000 3000' -c 'read -P 0xcd 8190 20' \
         -c 'read -P 0xef 65536 512' | grep -c 'read' > $TMP/reads"
check "cache=none: partial-sector writes read back" test "$(cat "$TMP/reads")" -eq 3
decrypt d "$TMP/d.plain-out2"
cp "$TMP/new" "$TMP/expect"
printf '\253%.0s' $(seq 3000) | dd of="$TMP/expect" bs=1 seek=1000 conv=notrunc status=none
printf '\315%.0s' $(seq 20) | dd of="$TMP/expect" bs=1 seek=8190 conv=notrunc status=none
printf '\357%.0s' $(seq 512) | dd of="$TMP/expect" bs=1 seek=65536 conv=notrunc status=none
check "cache=none: cryptsetup sees the patched sectors and the untouched rest" \
  cmp -s "$TMP/d.plain-out2" "$TMP/expect"

# qcow2 payload: data clusters direct, metadata (L2 entries, refcounts)
# bounced through aligned memory, also direct.
printf 'qcow2 key' > "$TMP/q.key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/q.hdr" --key-file "$TMP/q.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 4096 --batch-mode "$TMP/dummy"
qemu-img create -q -f qcow2 "$TMP/q.qcow2" 32M
luks_nbd --socket "$TMP/sock" \
  --export "name=q,payload=$TMP/q.qcow2,header=$TMP/q.hdr,key-file=$TMP/q.key,cache=none" \
  --run "nbdcopy $TMP/new \"\$uri\" && nbdcopy \"\$uri\" $TMP/qback"
check "cache=none, qcow2 payload: nbdcopy wrote and read back" test $? -eq 0
check "cache=none, qcow2 payload: read back equals the data" \
  cmp -s -n 8388608 "$TMP/qback" "$TMP/new"
qemu-img check -q "$TMP/q.qcow2"
check "cache=none, qcow2 payload: qemu-img check is clean" test $? -eq 0

check_fails_with "cache=maybe is refused by name" \
  "cache=maybe: expected writeback or none" \
  luks_nbd --socket "$TMP/sock" --export "$(spec d cache=maybe)" --run true
check_fails_with "cache=none on an NBD payload is refused" \
  "cache=none applies to files and block devices" \
  luks_nbd --socket "$TMP/sock" \
  --export "name=n,payload=nbd+unix:///?socket=$TMP/nowhere,header=$TMP/d.hdr,key-file=$TMP/d.key,cache=none" \
  --run true
check "no socket left behind after refusals" test ! -e "$TMP/sock"
done_testing
