#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves discard on a qcow2 payload (discard=on): trims from nbdsh, an
# fstrim-like run of trims and qemu-io's discard unmap every cluster they
# cover whole, as qemu does (zero flag on v3, unallocated on v2), free it
# (qemu-img map shrinks, the file's blocks go back, later writes reuse
# the clusters instead of growing the file) and leave partial clusters
# and every untouched byte alone; qemu-img check stays clean, also after
# a random mix of writes, trims and rewrites.  Through the luks node a
# trimmed range reads as the decryption of zeros, stable, and is reported
# as a hole that is not zero.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-img qemu-io nbdcopy nbdsh python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

M=1048576
C=65536
printf 'qcow2 discard' > "$TMP/key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/q.hdr" --key-file "$TMP/key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 512 --batch-mode "$TMP/dummy"
make_plaintext "$TMP/data" 8M
# allocated IMAGE: bytes qemu-img map says hold data.
allocated () {
  qemu-img map -f qcow2 --output=json "$1" |
    python3 -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))'
}
# serve IMAGE CMD: the volume on IMAGE with discard=on while CMD runs.
serve () {
  luks_nbd --socket "$TMP/sock" \
    --export "name=q,payload=$1,header=$TMP/q.hdr,key-file=$TMP/key,discard=on" --run "$2"
}
u="nbd+unix:///q?socket=$TMP/sock"

for compat in 1.1 0.10; do
  img=$TMP/q-$compat.qcow2
  qemu-img create -q -f qcow2 -o compat=$compat "$img" 32M
  serve "$img" "nbdcopy $TMP/data '$u'"
  before=$(allocated "$img")
  blocks_before=$(stat -c %b "$img")
  size_before=$(stat -c %s "$img")
  # Trims: one not cluster-aligned (clusters 17..32 covered whole), an fstrim-like
  # run of 256K every 512K over [3M, 5M), qemu-io's discard of [6M, 7M),
  # and one inside a single cluster (covers none).
  serve "$img" "nbdsh -u '$u' -c '
assert h.can_trim()
h.trim($M + 70144, $M + 1024)
for off in range(3 * $M, 5 * $M, $M // 2):
    h.trim($M // 4, off)
h.trim(32768, 7 * $M + 4096)
' && qemu-io -d unmap -f raw '$u' -c 'discard 6M 1M' >/dev/null &&
    nbdcopy '$u' $TMP/back1 && nbdcopy '$u' $TMP/back2 &&
    nbdsh --base-allocation -u '$u' -c 'ext = []' \
      -c 'h.block_status(8 * $M, 0, lambda ctx, off, e, err: ext.extend(zip(e[0::2], e[1::2])))' \
      -c 'print(\" \".join(f\"{l}:{f}\" for l, f in ext))' > $TMP/status-$compat"
  check "v$compat: nbdsh trims, an fstrim-like run and qemu-io discard succeed" test $? -eq 0
  qemu-img check -q "$img"
  check "v$compat: qemu-img check is clean after the trims (no errors, no leaks)" test $? -eq 0
  after=$(allocated "$img")
  check "v$compat: qemu-img map: exactly the 48 covered clusters are gone ($before -> $after)" \
    test "$after" -eq $((before - 48 * C))
  blocks_after=$(stat -c %b "$img")
  # (give or take a few blocks of the file system's extent tree)
  check "v$compat: the file's blocks went back ($blocks_before -> $blocks_after)" \
    test "$blocks_after" -le $((blocks_before - 48 * C / 512 + 64))
  # The expected read-back: the data, except clusters covered whole.
  python3 - "$TMP/data" "$TMP/back1" "$TMP/back2" $C <<'EOF' > "$TMP/cmp-$compat"
import sys
data, b1, b2 = (open(f, "rb").read() for f in sys.argv[1:4])
C, M = int(sys.argv[4]), 1 << 20
freed = set(range(17, 33)) | {c for o in range(3 * M, 5 * M, M // 2)
                              for c in range(o // C, (o + M // 4) // C)} | \
    set(range(6 * M // C, 7 * M // C))
kept = [c for c in range(8 * M // C) if c not in freed]
print("untouched", all(b1[c * C:(c + 1) * C] == data[c * C:(c + 1) * C] for c in kept))
print("changed", all(b1[c * C:(c + 1) * C] != data[c * C:(c + 1) * C] for c in freed))
print("stable", b1 == b2)
EOF
  check "v$compat: every cluster not covered whole reads as before (nbdcopy)" \
    grep -qx "untouched True" "$TMP/cmp-$compat"
  check "v$compat: the trimmed clusters no longer hold the data" \
    grep -qx "changed True" "$TMP/cmp-$compat"
  check "v$compat: a trimmed range reads the same twice" grep -qx "stable True" "$TMP/cmp-$compat"
  # base:allocation of [1M, 2M + 64K): clusters 17..32 a hole (1), never zero.
  check "v$compat: BLOCK_STATUS reports the trimmed clusters as a hole, not zero" \
    grep -q " $((16 * C)):1 " "$TMP/status-$compat"
  check "v$compat: no extent is reported as zero" not grep -qE ":(2|3)( |$)" "$TMP/status-$compat"

  # Freed clusters are reused: 2 MiB of new data does not grow the file.
  head -c $((2 * M)) /dev/urandom > "$TMP/more"
  serve "$img" "nbdsh -u '$u' -c 'h.pwrite(open(\"$TMP/more\", \"rb\").read(), 16 * $M)' &&
    nbdcopy '$u' $TMP/back3"
  check "v$compat: new writes reuse the freed clusters (file size $size_before -> $(stat -c %s "$img"))" \
    test "$(stat -c %s "$img")" -le "$size_before"
  check "v$compat: the new data reads back" cmp -s -i $((16 * M)):0 -n $((2 * M)) "$TMP/back3" "$TMP/more"
  check "v$compat: the untouched data still reads back" cmp -s -n $M "$TMP/back3" "$TMP/data"
  qemu-img check -q "$img"
  check "v$compat: qemu-img check is clean after the reuse" test $? -eq 0

  # A random mix of writes, trims and rewrites, several in flight.
  serve "$img" "exec python3 $top_srcdir/tests/lib/nbd_trim_mix.py $TMP/sock q $((24 * M)) 13 150 > $TMP/mix-$compat"
  check "v$compat: the mix ran" test $? -eq 0
  tap_report "$TMP/mix-$compat" 3 "v$compat: the mix"
  qemu-img check -q "$img"
  check "v$compat: qemu-img check is clean after the mix" test $? -eq 0
done

# A backing file shows through a v2 trim but not a v3 one (as in qemu):
# either way the overlay stays clean and the base untouched.  (The mix
# above left random data everywhere: check-plaintext=off.)
cp "$TMP/q-1.1.qcow2" "$TMP/base.qcow2"
cp "$TMP/base.qcow2" "$TMP/base.orig"
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$TMP/over.qcow2"
luks_nbd --socket "$TMP/sock" \
  --export "name=q,payload=$TMP/over.qcow2,header=$TMP/q.hdr,key-file=$TMP/key,discard=on,payload-backing=on,check-plaintext=off" \
  --run "nbdcopy '$u' $TMP/o.before && nbdsh -u '$u' -c 'h.trim(4 * $C, 0)' && nbdcopy '$u' $TMP/o.after"
check "backing chain: the trim succeeds" test $? -eq 0
check "backing chain, v3 overlay: the trimmed clusters hide the backing data" \
  not cmp -s -n $((4 * C)) "$TMP/o.before" "$TMP/o.after"
check "backing chain: the rest reads as before" cmp -s -i $((4 * C)) "$TMP/o.before" "$TMP/o.after"
qemu-img check -q "$TMP/over.qcow2"
check "backing chain: qemu-img check of the overlay is clean" test $? -eq 0
check "backing chain: the base is never written" cmp -s "$TMP/base.qcow2" "$TMP/base.orig"

# The search for a free cluster stops where the refcount table ends: a
# file longer than the table covers (512-byte clusters: one table
# cluster covers 8 MiB) is refused cleanly, never read past the table.
qemu-img create -q -f qcow2 -o cluster_size=512 "$TMP/short.qcow2" 16M
truncate -s 9M "$TMP/short.qcow2"
head -c 262144 /dev/urandom > "$TMP/256k"
check_fails_with "a file longer than its refcount table: allocation fails cleanly" \
  "refcount table is full" "$top_builddir/tests/lib/qcow2-tool" write "$TMP/short.qcow2" 0 "$TMP/256k"
done_testing
