#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that no power cut leaves a qcow2 payload corrupt: the copy-on-write
# of compressed clusters (down to the one whose host cluster's refcount
# drops to 0), discards of compressed and normal clusters, writes that
# reuse freed clusters, and allocations that need new L2 tables and
# refcount blocks.  tests/lib/write-log.so records each write and flush the
# qcow2 node makes; tests/lib/crash_states.py rebuilds every state the disk
# could hold after a cut (all flushed writes, plus any subset of those
# since the last flush) and runs qemu-img check on it: an L2 entry on a
# cluster with refcount 0 is corruption (exit 2); leaks are allowed, as
# in qemu.  Also growing the virtual size and the L1 table (export-resize).
. "$(dirname "$0")/../lib/lib.sh"
need qemu-img python3

TOOL=$top_builddir/tests/lib/qcow2-tool
SHIM=$top_builddir/tests/lib/write-log.so
C=65536
# logged IMAGE CMD ARGS...: qcow2-tool CMD IMAGE ARGS, its writes to
# IMAGE appended to $TMP/log.
logged () {
  local img=$1 cmd=$2; shift 2
  LD_PRELOAD=$SHIM WRITE_LOG_PATH=$(realpath "$img") WRITE_LOG=$TMP/log \
    ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0 "$TOOL" "$cmd" "$img" "$@"
}
# crash_check ORIGINAL WHAT: every crash state of what the log recorded.
crash_check () {
  python3 "$top_srcdir/tests/lib/crash_states.py" "$1" "$TMP/log" "$TMP/state.qcow2" "$2" \
    >> "$TMP/results"
  rm -f "$TMP/log"
}
# pattern FILE SIZE BYTE: SIZE bytes of BYTE.
pattern () { head -c "$2" /dev/zero | tr '\0' "$3" > "$1"; }

# Three compressible clusters (0, 1 and 5), which qemu-img packs into one
# host cluster: its refcount is 3.
python3 - "$TMP/raw" <<'EOF'
import sys
C = 65536
d = bytearray(1 << 20)
for c in (0, 1, 5):
    d[c * C:(c + 1) * C] = (b"luks-nbd crash order %d " % c * 4000)[:C]
open(sys.argv[1], "wb").write(d)
EOF
qemu-img convert -c -f raw -O qcow2 "$TMP/raw" "$TMP/c.qcow2"
check "qemu-img made three compressed clusters" \
  sh -c "qemu-img check '$TMP/c.qcow2' | grep -q '100.00% compressed'"

# Copy-on-write of each compressed cluster in turn: refcount 3 -> 2 -> 1 -> 0.
cp "$TMP/c.qcow2" "$TMP/a.qcow2"
pattern "$TMP/p4k" 4096 '\252'
logged "$TMP/a.qcow2" write 4096 "$TMP/p4k" &&
  logged "$TMP/a.qcow2" write $((C + 512)) "$TMP/p4k" &&
  logged "$TMP/a.qcow2" write $((5 * C + 8192)) "$TMP/p4k"
check "copy-on-write of the three compressed clusters ran" test $? -eq 0
crash_check "$TMP/c.qcow2" "copy-on-write of compressed clusters"
"$TOOL" read "$TMP/a.qcow2" "$TMP/a.out"
python3 - "$TMP/raw" "$TMP/p4k" <<'EOF' > "$TMP/a.expect"
import sys
C = 65536
d = bytearray(open(sys.argv[1], "rb").read())
p = open(sys.argv[2], "rb").read()
for off in (4096, C + 512, 5 * C + 8192):
    d[off:off + len(p)] = p
sys.stdout.buffer.write(d)
EOF
check "after the copy-on-writes the disk holds the old data and the patches" \
  cmp -s "$TMP/a.out" "$TMP/a.expect"
qemu-img check -q "$TMP/a.qcow2"
check "qemu-img check of the final image is clean (the host cluster was freed)" test $? -eq 0

# Discards: two compressed clusters (refcount 3 -> 1), normal clusters
# written first, then the last compressed one (-> 0); then writes that
# reuse the freed clusters.
cp "$TMP/c.qcow2" "$TMP/b.qcow2"
pattern "$TMP/p128k" $((2 * C)) '\125'
"$TOOL" write "$TMP/b.qcow2" $((8 * C)) "$TMP/p128k"
cp "$TMP/b.qcow2" "$TMP/b.orig"
logged "$TMP/b.qcow2" trim 0 $((2 * C)) &&
  logged "$TMP/b.qcow2" trim $((5 * C)) $((5 * C)) &&
  logged "$TMP/b.qcow2" write $((12 * C)) "$TMP/p128k" &&
  logged "$TMP/b.qcow2" write $((3 * C)) "$TMP/p4k"
check "discards and reusing writes ran" test $? -eq 0
crash_check "$TMP/b.orig" "discards and writes that reuse freed clusters"
qemu-img check -q "$TMP/b.qcow2"
check "qemu-img check of the final image is clean" test $? -eq 0
check "the reusing writes did not grow the file" \
  test "$(stat -c %s "$TMP/b.qcow2")" -le "$(stat -c %s "$TMP/b.orig")"

# 512-byte clusters: a write that needs new L2 tables and new refcount
# blocks (one covers 256 clusters), each step flushed before it is linked.
qemu-img create -q -f qcow2 -o cluster_size=512 "$TMP/s.qcow2" 4M
cp "$TMP/s.qcow2" "$TMP/s.orig"
pattern "$TMP/p24k" $((24 * 1024)) '\063'
logged "$TMP/s.qcow2" write $((3 * 1048576)) "$TMP/p24k" &&
  logged "$TMP/s.qcow2" trim $((3 * 1048576)) 2048 &&
  logged "$TMP/s.qcow2" write 0 "$TMP/p24k"
check "allocations with new L2 tables and refcount blocks ran" test $? -eq 0
crash_check "$TMP/s.orig" "allocations with new L2 tables and refcount blocks"

# Growing the virtual size (export-resize): first within the L1 table
# (the header's size only), then past it, with 1 KiB clusters so the new
# L1 table spans two clusters: new table counted, written and flushed,
# the header switched to it in one write and flushed, the old table
# freed, then the size.
qemu-img create -q -f qcow2 -o cluster_size=1024 "$TMP/g.qcow2" 2M
"$TOOL" write "$TMP/g.qcow2" 0 "$TMP/p24k" &&
  "$TOOL" write "$TMP/g.qcow2" $((2 * 1048576 - 24 * 1024)) "$TMP/p24k"
cp "$TMP/g.qcow2" "$TMP/g.orig"
logged "$TMP/g.qcow2" resize $((3 * 1048576)) &&
  logged "$TMP/g.qcow2" resize $((32 * 1048576)) &&
  logged "$TMP/g.qcow2" write $((32 * 1048576 - 24 * 1024)) "$TMP/p24k"
check "growing the virtual size within and past the L1 table ran" test $? -eq 0
crash_check "$TMP/g.orig" "growing a qcow2 image's virtual size and L1 table"
qemu-img check -q "$TMP/g.qcow2"
check "qemu-img check of the grown image is clean (the old L1 table was freed)" test $? -eq 0
check "qemu-img info shows the new virtual size" \
  sh -c "qemu-img info '$TMP/g.qcow2' | grep -q '^virtual size: 32 MiB'"
qemu-img convert -f qcow2 -O raw "$TMP/g.qcow2" "$TMP/g.raw"
check "qemu-img reads the data written before and after growing" \
  sh -c "cmp -s -n $((24 * 1024)) '$TMP/g.raw' '$TMP/p24k' && cmp -s -i $((2 * 1048576 - 24 * 1024)):0 -n $((24 * 1024)) '$TMP/g.raw' '$TMP/p24k' && cmp -s -i $((32 * 1048576 - 24 * 1024)):0 '$TMP/g.raw' '$TMP/p24k'"

tap_report "$TMP/results" 4 "the crash-state checks"
done_testing
