#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that cache=none never goes through the page cache, not even for
# what O_DIRECT cannot take as it is (write zeroes and partial sectors,
# which luks-nbd bounces; qcow2 metadata): such transfers are bounced
# through aligned memory, still with O_DIRECT.  A buffered write racing a
# direct one within a page leaves a dirty page the kernel cannot
# invalidate, whose writeback undoes the direct write: on a block device
# (a loop device, as root) e8be15f lost writes that way and its flushes
# then failed with EIO.  Checked against a model, then read independently
# by a second daemon with cache=writeback and by cryptsetup.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy qemu-img fincore python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

M=1048576
SPAN=$((4 * M))
resident () { fincore --bytes --noheadings --output RES "$1" | tr -d ' '; }
drop_cache () {
  sync "$1"
  python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"
}
# mixed PAYLOAD WHAT SEED: the mixed-alignment client through cache=none,
# then the payload read back by a second daemon with cache=writeback.
mixed () {
  luks_nbd --socket "$TMP/sock" --export "name=d,payload=$1,header=$TMP/d.hdr,key-file=$TMP/d.key,cache=none" \
    --run "exec python3 $top_srcdir/tests/lib/nbd_mixed_alignment.py $TMP/sock d $SPAN 12 $3 $TMP/model '$2' > $TMP/mixed.out"
  check "$2: the mixed-alignment client ran" test $? -eq 0
  tap_report "$TMP/mixed.out" 3 "$2: the mixed-alignment client"
  luks_nbd --socket "$TMP/sock" --export "name=d,payload=$1,header=$TMP/d.hdr,key-file=$TMP/d.key,cache=writeback" \
    --run "nbdcopy \"\$uri\" $TMP/back"
  check "$2: a second daemon (cache=writeback) reads what the model holds" \
    cmp -s -n $SPAN "$TMP/back" "$TMP/model"
  check "$2: and the untouched rest as it was" cmp -s -i $SPAN "$TMP/back" "$TMP/d.plain"
}

make_luks2_volume d 8M --sector-size 512
cp "$TMP/d.payload" "$TMP/d.orig"
drop_cache "$TMP/d.payload"
mixed "$TMP/d.payload" "file" 1
# (the second daemon used the page cache: measure the first run alone)
drop_cache "$TMP/d.payload"
luks_nbd --socket "$TMP/sock" --export "$(spec d cache=none)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_mixed_alignment.py $TMP/sock d $SPAN 3 2 $TMP/model2 file > /dev/null"
res=$(resident "$TMP/d.payload")
check "file: bounced transfers stayed out of the page cache too ($res bytes resident)" \
  test "$res" -eq 0
cp "$TMP/d.payload" "$TMP/d.copy"
cp "$TMP/d.hdr" "$TMP/d.hdr-copy"
cryptsetup reencrypt --decrypt --header "$TMP/d.hdr-copy" --key-file "$TMP/d.key" \
  --force-offline-reencrypt --batch-mode "$TMP/d.copy"
# (The clients wrote random data over the start: check-plaintext=off.)
luks_nbd --socket "$TMP/sock" --export "$(spec d check-plaintext=off)" --run "nbdcopy \"\$uri\" $TMP/back2"
check "file: cryptsetup decrypts the payload to what the daemon serves" cmp -s "$TMP/d.copy" "$TMP/back2"

# qcow2 metadata (8-byte L2 entries, 2-byte refcounts) is bounced too.
printf 'qcow2 key' > "$TMP/q.key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/q.hdr" --key-file "$TMP/q.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --batch-mode "$TMP/dummy"
qemu-img create -q -f qcow2 -o cluster_size=4096 "$TMP/q.qcow2" 16M
drop_cache "$TMP/q.qcow2"
luks_nbd --socket "$TMP/sock" \
  --export "name=q,payload=$TMP/q.qcow2,header=$TMP/q.hdr,key-file=$TMP/q.key,cache=none" \
  --run "nbdcopy $TMP/d.plain \"\$uri\" && nbdcopy \"\$uri\" $TMP/qback"
check "qcow2 payload: written and read back" cmp -s -n $((8 * M)) "$TMP/qback" "$TMP/d.plain"
res=$(resident "$TMP/q.qcow2")
check "qcow2 payload: its metadata stayed out of the page cache too ($res bytes resident)" \
  test "$res" -eq 0
qemu-img check -q "$TMP/q.qcow2"
check "qcow2 payload: qemu-img check is clean" test $? -eq 0

# Partial blocks through the file node itself: patched in place, and a
# write past a file's unaligned end leaves the file ending where the
# write did (not at the block's end).
head -c 1000 /dev/urandom > "$TMP/f"
cp "$TMP/f" "$TMP/f.expect"
for w in "3 10" "300 700" "1000 100"; do
  set -- $w
  head -c "$2" /dev/urandom > "$TMP/piece"
  "$top_builddir/tests/lib/qcow2-tool" direct-write "$TMP/f" "$1" "$TMP/piece" ||
    echo "direct-write $1 $2 failed" >&2
  dd if="$TMP/piece" of="$TMP/f.expect" bs=1 seek="$1" conv=notrunc status=none
done
check "file node, cache=none: partial-block writes land, the file ends at 1100" \
  cmp "$TMP/f" "$TMP/f.expect"

# A block device: nothing serialises buffered and direct writes there.
# Root only (a loop device); where none can be made (a container without
# /dev/loop*) the reason is printed and the file cases above stand alone.
cp "$TMP/d.orig" "$TMP/d.blk"
if [ "$(id -u)" != 0 ]; then
  echo "# not root: the block-device case (a loop device) does not run"
elif ! loop=$(losetup -f --show "$TMP/d.blk" 2>"$TMP/losetup.err"); then
  echo "# no loop device: $(cat "$TMP/losetup.err")"
else
  cleanup_hooks="losetup -d $loop; $cleanup_hooks"
  mixed "$loop" "block device" 3
fi
done_testing
