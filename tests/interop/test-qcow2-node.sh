#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the qcow2 node against qemu-img: images qemu-img makes (v2, v3,
# 4 KiB..2 MiB clusters, deflate and zstd compressed clusters, zero and
# unallocated clusters) read back exactly; writes (in place, into
# unallocated and into compressed clusters) give what qemu-img convert
# reads, with `qemu-img check` clean; broken or unsupported images are
# refused with a clear error.
. "$(dirname "$0")/../lib/lib.sh"
need qemu-img qemu-io python3 cmp
T=$top_builddir/tests/lib/qcow2-tool

# Compressible content with holes: text, random, zeros.
python3 - "$TMP/plain" <<'PY'
import os, sys
blocks = []
for i in range(48):
    kind = i % 3
    if kind == 0:
        blocks.append((b"qcow2 test block %d " % i) * (65536 // 20))
    elif kind == 1:
        blocks.append(os.urandom(65536))
    else:
        blocks.append(bytes(65536))
data = b"".join(b[:65536].ljust(65536, b"\0") for b in blocks)
open(sys.argv[1], "wb").write(data)
PY
size=$(stat -c %s "$TMP/plain")

row () {
  local name=$1; shift
  local img=$TMP/$name.qcow2
  qemu-img convert -f raw -O qcow2 "$@" "$TMP/plain" "$img"
  "$T" read "$img" "$TMP/out"
  check "$name: reads back exactly" cmp -s "$TMP/out" "$TMP/plain"
  # Unaligned writes: in place, into holes, across compressed clusters.
  cp "$TMP/plain" "$TMP/expect"
  for spec in "1000 5000" "131072 70000" "2000000 123" "2900000 200000"; do
    set -- $spec
    head -c "$2" /dev/urandom > "$TMP/w"
    "$T" write "$img" "$1" "$TMP/w" || { not_ok "$name: write $2 at $1"; return; }
    python3 -c "import sys; d=bytearray(open(sys.argv[1],'rb').read()); w=open(sys.argv[2],'rb').read(); o=int(sys.argv[3]); d[o:o+len(w)]=w; open(sys.argv[1],'wb').write(d)" "$TMP/expect" "$TMP/w" "$1"
  done
  qemu-img check -q "$img"
  check "$name: qemu-img check is clean after writes" test $? -eq 0
  qemu-img convert -f qcow2 -O raw "$img" "$TMP/conv"
  check "$name: qemu-img reads what was written" cmp -s "$TMP/conv" "$TMP/expect"
  "$T" read "$img" "$TMP/out"
  check "$name: the node reads what was written" cmp -s "$TMP/out" "$TMP/expect"
}

row v3-64k
row v2-compat010 -o compat=0.10
row v3-4k-clusters -o cluster_size=4096
row v3-2m-clusters -o cluster_size=2M
row deflate-compressed -c
row zstd-compressed -c -o compression_type=zstd
qemu-img convert -f raw -O qcow2 -c "$TMP/plain" "$TMP/c.qcow2"
check "the compressed image really has compressed clusters" \
  grep -q '"compressed-clusters": [1-9]' <(qemu-img check --output=json "$TMP/c.qcow2")

# Refusals.
qemu-img create -q -f qcow2 "$TMP/base.qcow2" 1M
patch_be () { python3 -c "import sys,struct; f=open(sys.argv[1],'r+b'); f.seek(int(sys.argv[2])); f.write(struct.pack(sys.argv[3], int(sys.argv[4], 0)))" "$@"; }
cp "$TMP/base.qcow2" "$TMP/corrupt.qcow2"; patch_be "$TMP/corrupt.qcow2" 72 '>Q' 2
check_fails_with "corrupt bit: read-write refused" "marked corrupt" "$T" open-rw "$TMP/corrupt.qcow2"
check "corrupt bit: read-only still opens" "$T" read "$TMP/corrupt.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/dirty.qcow2"; patch_be "$TMP/dirty.qcow2" 72 '>Q' 1
check_fails_with "dirty bit: read-write refused" "is dirty (lazy refcounts)" "$T" open-rw "$TMP/dirty.qcow2"
cp "$TMP/base.qcow2" "$TMP/unknown.qcow2"; patch_be "$TMP/unknown.qcow2" 72 '>Q' 0x40
check_fails_with "unknown incompatible feature refused" "unknown incompatible features 0x40" "$T" read "$TMP/unknown.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/cbits.qcow2"; patch_be "$TMP/cbits.qcow2" 20 '>I' 30
check_fails_with "cluster_bits 30 refused" "cluster_bits 30 outside 9..21" "$T" read "$TMP/cbits.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/big.qcow2"; patch_be "$TMP/big.qcow2" 24 '>Q' 0x8000000000000001
check_fails_with "size above 2^63 refused" "larger than 2^63" "$T" read "$TMP/big.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/l1.qcow2"; patch_be "$TMP/l1.qcow2" 40 '>Q' 0x7fff0000
check_fails_with "L1 table past EOF refused" "l1_table_offset" "$T" read "$TMP/l1.qcow2" "$TMP/out"
# Header fields: offset 36 l1_size, 40 l1_table_offset, 48
# refcount_table_offset, 56 refcount_table_clusters.
cp "$TMP/base.qcow2" "$TMP/l1big.qcow2"; patch_be "$TMP/l1big.qcow2" 36 '>I' 0x08000000
check_fails_with "L1 table too big refused" "L1 table of 1073741824 bytes exceeds" "$T" read "$TMP/l1big.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/l1small.qcow2"; patch_be "$TMP/l1small.qcow2" 24 '>Q' 0x100000000000
check_fails_with "L1 table too small for the size refused" "l1_size 1 is too small for the virtual size" "$T" read "$TMP/l1small.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/l1mis.qcow2"; patch_be "$TMP/l1mis.qcow2" 40 '>Q' 0x30200
check_fails_with "L1 table misaligned refused" "l1_table_offset 197120 is not cluster-aligned" "$T" read "$TMP/l1mis.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/rtmis.qcow2"; patch_be "$TMP/rtmis.qcow2" 48 '>Q' 0x10008
check_fails_with "refcount table misaligned refused" "refcount_table_offset 65544 is not cluster-aligned" "$T" read "$TMP/rtmis.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/rtbig.qcow2"; patch_be "$TMP/rtbig.qcow2" 56 '>I' 0x10000
check_fails_with "refcount table too big refused" "refcount table of 4294967296 bytes exceeds" "$T" read "$TMP/rtbig.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/rteof.qcow2"; patch_be "$TMP/rteof.qcow2" 48 '>Q' 0x7fff0000
check_fails_with "refcount table past EOF refused" "refcount_table_offset at 2147418112+65536 is past the end" "$T" read "$TMP/rteof.qcow2" "$TMP/out"
cp "$TMP/base.qcow2" "$TMP/hl.qcow2"; patch_be "$TMP/hl.qcow2" 100 '>I' 200000
check_fails_with "header_length beyond a cluster refused" "header_length 200000" "$T" read "$TMP/hl.qcow2" "$TMP/out"
qemu-img create -q -f qcow2 -b "$TMP/base.qcow2" -F qcow2 "$TMP/top.qcow2"
check_fails_with "backing file refused by default" "backing chains are refused unless the export says payload-backing=on" "$T" read "$TMP/top.qcow2" "$TMP/out"
qemu-img create -q -f qcow2 -u -F raw \
  -b 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/hostname"}}' "$TMP/json.qcow2" 1M
check_fails_with "json: backing names are always refused" "is a json: name" "$T" read "$TMP/json.qcow2" "$TMP/out"
qemu-img create -q -f qcow2 -o data_file="$TMP/ext.raw" "$TMP/ext.qcow2" 1M
check_fails_with "external data file refused" "external data files are not supported" "$T" read "$TMP/ext.qcow2" "$TMP/out"
# Broken L2 entries fail the request that meets them (EIO), nothing else.
qemu-img create -q -f qcow2 -o cluster_size=65536 "$TMP/l2.qcow2" 1M
qemu-io -f qcow2 -c "write -P 0x11 0 64k" -c "write -P 0x22 64k 64k" "$TMP/l2.qcow2" > /dev/null
patch_l2 () { # IMAGE INDEX EXPRESSION(old entry e): rewrites one L2 entry
  python3 - "$@" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
f.seek(40); l1 = struct.unpack(">Q", f.read(8))[0]
f.seek(l1); l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
at = l2 + 8 * int(sys.argv[2])
f.seek(at); e = struct.unpack(">Q", f.read(8))[0]
f.seek(at); f.write(struct.pack(">Q", eval(sys.argv[3])))
PY
}
patch_l2 "$TMP/l2.qcow2" 0 "e | (1 << 57)"
patch_l2 "$TMP/l2.qcow2" 1 "(1 << 63) | 0x40000000"
check_fails_with "L2 entry with reserved bits: that read fails" "L2 entry for cluster 0 has reserved bits set" \
  "$T" read-range "$TMP/l2.qcow2" 0 4096
check_fails_with "L2 entry past EOF: that read fails" "L2 entry for cluster 1 points to 1073741824, outside the image" \
  "$T" read-range "$TMP/l2.qcow2" 65536 4096
check "other clusters of that image still read" "$T" read-range "$TMP/l2.qcow2" 131072 65536
# An entry naming metadata as its data is corruption: trimming (freeing)
# it must fail and leave the metadata alone, not punch a hole in the L1
# table or the header (a data entry aimed at the L1 table; a compressed
# entry aimed at offset 0).
qemu-img create -q -f qcow2 -o cluster_size=65536 "$TMP/meta.qcow2" 1M
qemu-io -f qcow2 -c "write -P 0x11 0 128k" "$TMP/meta.qcow2" > /dev/null
l1=$(python3 -c "import struct,sys; f=open(sys.argv[1],'rb'); f.seek(40); print(struct.unpack('>Q', f.read(8))[0])" "$TMP/meta.qcow2")
patch_l2 "$TMP/meta.qcow2" 0 "(1 << 63) | $l1"
patch_l2 "$TMP/meta.qcow2" 1 "1 << 62"
cp "$TMP/meta.qcow2" "$TMP/meta.before"
check_fails_with "data entry naming the L1 table: a trim fails" "names the metadata cluster at $l1" \
  "$T" trim "$TMP/meta.qcow2" 0 65536
check_fails_with "compressed entry at offset 0: a trim fails" "compressed cluster at 0 is invalid" \
  "$T" trim "$TMP/meta.qcow2" 65536 65536
check "and neither touched a byte of the image" cmp -s "$TMP/meta.qcow2" "$TMP/meta.before"
head -c 100 "$TMP/base.qcow2" > "$TMP/trunc.qcow2"
check_fails_with "truncated image refused" "qcow2" "$T" read "$TMP/trunc.qcow2" "$TMP/out"
# The dispatch (formats/node.c) asserts the op contract: a read past a
# node's end is its caller's bug (clients are refused before, with
# errors), so it aborts instead of reaching the node.
qemu-img create -q -f qcow2 "$TMP/end.qcow2" 1M
rc=0
"$T" read-range "$TMP/end.qcow2" 1048064 1024 2> "$TMP/assert.err" || rc=$?
check "a read past the node's end aborts in the dispatch (SIGABRT, exit 134)" test "$rc" -eq 134
check "... on the range assert of formats/node.c" grep -qF "range_within (offset, count, n->size)" "$TMP/assert.err"
check "a read that ends at the node's end is served" "$T" read-range "$TMP/end.qcow2" 1047552 1024
done_testing
